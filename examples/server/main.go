// Command server runs the Halfred API: a small OpenAI-style API protected by
// keygate. It is the example a user meets first and the project's
// end-to-end test target: its tests pin the behaviour described here.
//
// Run it from the repository root:
//
//	go run ./examples/server
//
// It keeps its keys, the state of its refresh tokens and its revoked
// access tokens in a SQLite file, keygate.db in the working directory
// unless -db names another, or in PostgreSQL with -postgres: they survive
// a restart. (-memory keeps them in memory instead, lost at exit: for
// trying things out and benchmarks.) On a start with an empty store it
// issues a key holding every scope, in project "default", and prints it
// once on standard output:
//
//	API key: halfred_…
//
// Later starts on the same store print no key: keep the first one (or
// start on a new -db file to get another). It then prints "listening on
// http://ADDR" on standard error. Logs go to standard error, as JSON
// unless -log-format text, and never contain a full key or token. SIGINT
// or SIGTERM shuts it down cleanly: requests in flight are finished, then
// the usage counts not yet written are written, then the store is closed.
//
// Key records are cached in front of the database. A key revoked through
// this instance stops working at once. With -postgres, one revoked through
// another instance sharing the database stops working as soon as the
// invalidation message arrives (milliseconds on a LAN): PostgreSQL's
// LISTEN/NOTIFY by default, Redis pub/sub with -redis ADDR -feed redis;
// and within 5 s (keystore.DefaultStaleAfter) if that feed is down.
//
// # Flags
//
//	-addr ADDR         listen address (default 127.0.0.1:8080; port 0 picks a free port)
//	-prefix NAME       API key prefix, lower-case letters and digits (default halfred)
//	-db PATH           SQLite file of the store, created if need be (default
//	                   keygate.db in the working directory)
//	-postgres DSN      use the PostgreSQL database at DSN instead of -db (several
//	                   instances may share it); e.g.
//	                   postgres://user@host:5432/db?sslmode=verify-full
//	-memory            keep everything in memory instead of -db, lost at exit
//	-signing-key FILE  PEM file of the private key that signs access tokens
//	                   (Ed25519 or ECDSA P-256, PKCS#8), created with mode 0600
//	                   if missing (default: the -db file's name followed by
//	                   .signing-key.pem; none with -postgres or -memory, see
//	                   "Access tokens")
//	-pepper-env NAME   environment variable holding the hashing pepper
//	                   (default KEYGATE_PEPPER); unset or empty means no pepper,
//	                   otherwise it must be at least 16 bytes
//	-log-format FMT    json or text (default json), audit records included
//	-trust-jwks URL      also accept the access tokens of an external identity
//	-trust-issuer ISS    provider whose JWK Set is at URL (http or https), whose
//	-trust-audience AUD  tokens have iss ISS and name AUD in aud; all three or
//	                     none (otherwise exit status 2)
//	-rate-limit-keys N      requests a minute per API key (default 600)
//	-rate-limit-tokens N    requests a minute of each API key's access tokens,
//	                        together (default 1200)
//	-rate-limit-failures N  failed authentications a minute per client address
//	                        (default 20; IPv6 per /64)
//	-rate-limit-credential-failures N
//	                        failed authentications a minute per credential, from
//	                        any address (default 10)
//	-rate-limit-exchange N  POST /v1/auth/token a minute per API key (default 10)
//	-rate-limit-refresh N   POST /v1/auth/refresh a minute per client address
//	                        (default 60)
//	                        (0 turns a limit off; each allows bursts of N)
//	-rate-limit-fail-closed answer 503 when the limiter (Redis) fails, instead of
//	                        letting the request through
//	-redis ADDR        Redis host:port keeping the rate-limit budgets, shared by
//	                   every instance given it; password in $KEYGATE_REDIS_PASSWORD
//	-redis-prefix P    prefix of the Redis keys (Prl:…) and channel (Pkeys)
//	                   (default keygate:)
//	-feed NAME         with -postgres: how instances hear of one another's
//	                   revocations, postgres (LISTEN/NOTIFY, the default) or
//	                   redis (pub/sub on -redis)
//	-usage-interval D  how often usage counts are written to the store
//	                   (default 10s; also at shutdown)
//	-metrics ADDR      serve Prometheus metrics at http://ADDR/metrics, on a
//	                   listener of their own (default: off)
//
// # Endpoints
//
// Every endpoint but the refresh and JWKS endpoints takes a credential, an
// API key or an access token, as "Authorization: Bearer CREDENTIAL" (the
// scheme in any case) or "api-key: CREDENTIAL"; both with different values
// is 400, and a credential in the query string is ignored. Access tokens
// are told from API keys by their shape (a JWT).
//
//	GET    /v1/models              models:read   the models: standard, fast, deep
//	POST   /v1/chat/completions    chat:write    a chat.completion echoing the last user message
//	GET    /v1/me                  any           {"method","key_id","project","scopes"} (+ "subject" for tokens)
//	POST   /v1/keys                keys:manage   201, a new key in the caller's project
//	GET    /v1/keys                keys:manage   the project's keys, without plaintext
//	POST   /v1/keys/{id}/rotate    keys:manage   201, the key revoked and a new one returned
//	DELETE /v1/keys/{id}           keys:manage   204, the key revoked at once
//	POST   /v1/auth/token          tokens:issue  an API key exchanged for a token pair
//	POST   /v1/auth/refresh        (none)        a refresh token exchanged for a new pair
//	POST   /v1/auth/revoke         access token  204, the token and its session revoked
//	GET    /.well-known/jwks.json  (none)        the public keys of the access tokens
//
// With the key the server printed in $KEY:
//
//	curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/models
//	curl -H "api-key: $KEY" http://127.0.0.1:8080/v1/chat/completions \
//	    -d '{"model":"standard","messages":[{"role":"user","content":"Hello"}]}'
//	curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/me
//	curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/keys \
//	    -d '{"name":"reader","scopes":["models:read"],"expires_in":86400}'
//	curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/keys
//	curl -H "Authorization: Bearer $KEY" -X POST http://127.0.0.1:8080/v1/keys/key_…/rotate
//	curl -H "Authorization: Bearer $KEY" -X DELETE http://127.0.0.1:8080/v1/keys/key_…
//	curl -H "Authorization: Bearer $KEY" -X POST http://127.0.0.1:8080/v1/auth/token \
//	    -d '{"scopes":["models:read"]}'
//	curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8080/v1/models
//	curl http://127.0.0.1:8080/v1/auth/refresh -d '{"refresh_token":"'$REFRESH_TOKEN'"}'
//	curl -H "Authorization: Bearer $ACCESS_TOKEN" -X POST http://127.0.0.1:8080/v1/auth/revoke
//	curl http://127.0.0.1:8080/.well-known/jwks.json
//
// # Requests and errors
//
// Request bodies are read as JSON whatever their Content-Type (so curl -d
// works without -H) and are limited to 1 MiB; a longer one is 413
// (code request_too_large). Every error is
// {"error":{"message","type","code"}}; authentication errors (401, 400,
// 403, 503) carry the WWW-Authenticate challenge of RFC 6750 with realm
// "halfred". An unknown path is 404 (code not_found) and a known path with
// another method 405 (code method_not_allowed) with an Allow header.
//
// POST /v1/chat/completions accepts and ignores OpenAI parameters it does not
// use (temperature, max_tokens, …), as OpenAI's client libraries send them
// freely. It answers 400 for a body that is not a JSON object, a missing or
// unknown model, missing or empty messages, a role other than system,
// developer, user, assistant or tool, no user message, and "stream": true
// (streaming is not supported). Usage counts words, not real tokens.
//
// POST /v1/keys takes {"name","scopes","expires_in"}, all optional, and
// refuses unknown fields (400), so that a typo cannot silently widen a key.
// Scopes must be known (400) and held by the caller (403,
// insufficient_scope: a key can only give out scopes it has); omitted, they
// are the caller's. expires_in is whole seconds from 1 to 10 years; omitted,
// the key does not expire. Times in responses are Unix seconds, or null.
//
// Rotating or deleting a key of another project, or an unknown ID, is 404.
// Rotating a revoked key is 409 (code key_revoked); rotating a key with
// scopes the caller lacks is 403. Deleting is idempotent: deleting a revoked
// key is 204 again.
//
// POST /v1/keys also takes "rate_limit": {"requests": N, "per_seconds": S}
// (N from 1 to 1,000,000, S from 1 to 86,400): the key's own limit, at
// most N requests every S seconds in bursts of up to N, which replaces
// -rate-limit-keys for that key and survives its rotation. It may not be
// wider than -rate-limit-keys (neither a larger N nor a faster rate than
// that many a minute): 400 otherwise, like a missing or out-of-range
// member (invalid_parameter, missing_parameter) or an unknown one
// (unknown_parameter). GET /v1/keys lists each key with its "rate_limit"
// (null for the server's), "usage_count" (requests it and its access
// tokens authenticated, refused ones included), "last_used_at" and
// "last_client_addr" (null when unknown), as written by the last flush:
// usage is counted in memory and written every -usage-interval and at
// shutdown, so it shows up to that much late.
//
// # Rate limits
//
// Requests are limited per API key (-rate-limit-keys; a key's own
// rate_limit instead), per API key's access tokens (-rate-limit-tokens),
// and per client address for failed authentications (-rate-limit-failures:
// once an address has spent its budget, its requests are refused before
// their credential is even read, so a brute-force flood costs neither
// hashing nor a store lookup), and per credential for failed
// authentications from any address (-rate-limit-credential-failures: a
// revoked or guessed key replayed by many machines is refused before it is
// hashed). POST /v1/auth/token has a stricter limit
// per key on top (-rate-limit-exchange), and POST /v1/auth/refresh, which
// takes no credential header, one per client address
// (-rate-limit-refresh). The client address is the TCP peer's address:
// behind a reverse proxy every client shares the proxy's.
//
// A refused request is 429 with type rate_limit_error (code
// rate_limit_exceeded), a Retry-After header in seconds and no
// WWW-Authenticate. Every limited response, refused or not, carries the
// RateLimit-Policy and RateLimit header fields
// (draft-ietf-httpapi-ratelimit-headers), one member per limit applied:
//
//	RateLimit-Policy: "api_key";q=600;w=60
//	RateLimit: "api_key";r=599;t=1
//
// The limit names are api_key, access_token, auth_failures,
// credential_failures, token_exchange and token_refresh. Budgets are kept in memory, per
// instance, or with -redis in Redis, where every instance given the same
// -redis and -redis-prefix shares them. If the limiter fails (Redis down
// or slower than 100 ms), the request proceeds unlimited and the failure
// is logged at most every 10 s; with -rate-limit-fail-closed it is
// refused with 503 instead.
//
// # Audit log and metrics
//
// The key, token and authentication events are logged on standard error,
// one record each, whose msg and event are the event's name: key.created,
// key.rotated, key.revoked, token.issued, token.refreshed, token.revoked,
// token.refresh_reuse (Warn), auth.failed, auth.rate_limited (Warn), and,
// at Debug so not by default, auth.succeeded. They hold key IDs, projects,
// token IDs, sessions, the client address, the HTTP status, the reason of
// a failure and, for a request made with a credential, "by", the caller's
// key ID; a credential appears only as its hint (halfred_…a1B2).
//
// With -metrics ADDR the server serves Prometheus metrics at
// http://ADDR/metrics, on a listener of its own (the API's port does not
// serve them): keygate_auth_requests_total{method,outcome},
// keygate_auth_duration_seconds, keygate_events_total{event}, the usage
// recorder's keygate_usage_* counters and the Go runtime's metrics. It
// prints "metrics on http://ADDR/metrics" on standard error.
//
// # Access tokens
//
// POST /v1/auth/token exchanges the API key it is called with (it needs
// tokens:issue; an access token is 403) for a pair:
//
//	{"access_token":"eyJ…","token_type":"Bearer","expires_in":900,"refresh_token":"halfredrt_…","scope":"…"}
//
// The access token is a JWT (RFC 9068, typ at+jwt, iss and aud "halfred")
// signed with EdDSA, good for 15 minutes, with the key's scopes or, given
// a body {"scopes":[…]}, a subset of them (a scope the key lacks is 403
// insufficient_scope). The refresh token is opaque, single use and good for
// the session: 30 days from the exchange, never past the key's expiry.
// POST /v1/auth/refresh with {"refresh_token":"…"} and no credential header
// spends it and returns a new pair; presenting a spent refresh token is 401
// (code invalid_grant) and revokes the whole session, access tokens
// included (RFC 9700 reuse detection); an access token there is 400
// (invalid_grant). POST /v1/auth/revoke, called with an access token,
// revokes it and its session at once (204). Revoking, rotating or expiring
// the API key a token was exchanged from ends its tokens and refresh
// tokens at once. An expired, revoked, forged or malformed token is 401
// (invalid_token), the same response byte for byte whatever the reason.
// Every token response carries Cache-Control: no-store and Pragma:
// no-cache.
//
// The signing key is read from the PEM file -signing-key names, which
// defaults to the -db file's name followed by .signing-key.pem
// (keygate.db.signing-key.pem): access tokens, like keys, refresh tokens
// and revocations, survive a restart. A missing file is created with a
// new Ed25519 key, mode 0600, atomically (two instances starting at once
// on a new file end up with the same key). An existing file must hold an
// Ed25519 or ECDSA P-256 private key in PEM (PKCS#8, or SEC 1 for ECDSA)
// and be private to its owner: a file that group or others may access, or
// that holds anything else, stops the server with exit status 1 and an
// error naming the problem (never the file's contents). The key ID is the
// key's RFC 7638 thumbprint, so it is the same at every start. Its public
// key is published at GET /.well-known/jwks.json (Cache-Control: public,
// max-age=300).
//
// With -postgres (or -memory) there is no default file: without
// -signing-key the server signs with an Ed25519 key made at start and
// logs a warning, since its access tokens are then accepted only by the
// instance that issued them, and only until it stops. Give every instance
// sharing a database the same -signing-key file; after a restart without
// one, a client refreshes its pair (refresh tokens are in the store) or
// exchanges its API key again.
//
// # External identity provider
//
// With -trust-jwks, -trust-issuer and -trust-audience the server also
// accepts the access tokens of an identity provider, on every endpoint that
// takes an access token: /v1/me reports them with method access_token,
// their sub claim as subject, no key_id and no project, and their scope
// claim (space-separated) as scopes. A token whose iss is the provider's
// goes to a verifier that knows only the provider's keys; every other token
// to the server's own, which knows only its own key: neither issuer's keys
// ever verify the other's tokens. The verification is the same hardened
// one: RS256, ES256 or EdDSA only, each key with the algorithm its JWK
// names; exp required; iss and aud exact (an aud array must contain AUD);
// nbf and iat honoured with 30 s of leeway; typ not checked (many
// providers set none); crit headers refused; jku, x5u, jwk and x5c never
// followed; duplicate claim names refused. The JWK Set is fetched at start
// (the server exits with status 1 if that fails), every minute after, and
// again on a token with an unknown kid, at most once every 5 s: a new key
// is trusted within seconds, a removed one stops being trusted within a
// minute, and a flood of random kids costs the provider almost nothing. A
// provider's token cannot manage keys (403: it belongs to no project),
// cannot be exchanged (403) and cannot be revoked here (403: revoke it at
// the provider).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/sqlstore"
	"github.com/keygate/keygate/token"
)

// shutdownTimeout is how long a shutdown waits for requests in flight.
const shutdownTimeout = 10 * time.Second

func main() {
	redis.SetLogger(redisLogging{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(usageError)):
		var ue usageError
		if errors.As(err, &ue) && !ue.printed {
			fmt.Fprintln(os.Stderr, "server:", err)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// usageError is a bad command line or configuration: exit status 2.
// When printed is set, the flag package has already reported it.
type usageError struct {
	err     error
	printed bool
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// flags is the parsed command line.
type flags struct {
	addr     string
	prefix   string
	db       string
	dbSet    bool
	postgres string
	memory   bool
	// signingKey is the -signing-key file; "" for a key made at start.
	signingKey string
	pepperEnv  string
	logFormat  string
	pepper     []byte
	trust      *trustConfig // nil without -trust-*
	limits     rateLimits
	// redis is the -redis address; "" for none. redisPassword is read
	// from $KEYGATE_REDIS_PASSWORD, never from the command line.
	redis         string
	redisPassword string
	redisPrefix   string
	// feed is how the cache hears of other instances' writes: feedNone,
	// feedPostgres or feedRedis.
	feed          string
	usageInterval time.Duration
	// metrics is the -metrics address; "" for none.
	metrics string
}

// The invalidation feeds of -feed.
const (
	feedNone     = "none" // one process owns the store (-db, -memory)
	feedPostgres = "postgres"
	feedRedis    = "redis"
)

// redisPasswordEnv is the environment variable holding the Redis password:
// kept off the command line, where ps and shell histories show it.
const redisPasswordEnv = "KEYGATE_REDIS_PASSWORD"

const usageText = `Usage: go run ./examples/server [flags]

Runs the Halfred API, a small OpenAI-style API protected by keygate.

On a start with an empty store it issues one key holding every scope
(models:read chat:write keys:manage tokens:issue) in project "default" and
prints it once, on standard output, as "API key: halfred_…". It then prints
"listening on http://ADDR" on standard error. Logs go to standard error and
never contain a full key. SIGINT or SIGTERM shuts the server down cleanly.

Send the key, or an access token, as "Authorization: Bearer KEY" or
"api-key: KEY":

  GET    /v1/models              (models:read)
  POST   /v1/chat/completions    (chat:write)
  GET    /v1/me                  (any valid key or token)
  POST   /v1/keys                (keys:manage) body {"name","scopes","expires_in","rate_limit"}
  GET    /v1/keys                (keys:manage)
  POST   /v1/keys/{id}/rotate    (keys:manage)
  DELETE /v1/keys/{id}           (keys:manage)
  POST   /v1/auth/token          (tokens:issue, API key only) optional body {"scopes":[…]}
  POST   /v1/auth/refresh        (no credential header) body {"refresh_token":"…"}
  POST   /v1/auth/revoke         (the access token to revoke)
  GET    /.well-known/jwks.json  (none) the public keys of the access tokens

  curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/models

Keys, the state of refresh tokens and revoked access tokens are kept in the
SQLite file -db (keygate.db in the working directory) or, with -postgres, in
PostgreSQL: they survive a restart, and a later start on the same store
prints no key. With -memory they are kept in memory and lost at exit.

Access tokens last 15 minutes and are signed with the key in the PEM file
-signing-key (by default the -db file's name followed by .signing-key.pem),
created with mode 0600 if missing: they survive a restart too. With
-postgres or -memory there is no default: without -signing-key, access
tokens are signed with a key made at start, accepted by that instance only
and only until it stops. Give every instance sharing a database the same
-signing-key file.

Rate limits are on by default (per minute, in bursts of as many): 600
requests per API key, 1200 per API key's access tokens, 20 failed
authentications per client address (after which the address is refused
before its credential is even checked), 10 token exchanges per API key and
60 refreshes per client address; 0 turns one off. A refused request is 429
(rate_limit_error) with Retry-After; limited responses carry the
RateLimit-Policy and RateLimit header fields. A key created with
"rate_limit": {"requests": N, "per_seconds": S} has that limit instead of
-rate-limit-keys (never a wider one). The client address is the TCP peer's:
behind a proxy every client shares the proxy's failure budget.

Each instance keeps its budgets in memory unless -redis names a Redis
server, which every instance given it shares (one budget per key across
all of them). If Redis fails, requests are let through (logged at most
every 10 s), or refused with 503 with -rate-limit-fail-closed. The Redis
password, if any, is read from $KEYGATE_REDIS_PASSWORD.

Key records are cached. Instances sharing a PostgreSQL database hear of one
another's revocations through PostgreSQL's LISTEN/NOTIFY (-feed postgres,
the default: sent inside the write's transaction, so never lost by a crash
between the write and the message), or through Redis pub/sub with -redis
ADDR -feed redis (published after the write commits: a crash in between
leaves other instances trusting the key until their cache expires, 10 s).
With -db or -memory the store belongs to one process and there is no feed.

Usage counts: each key's request count, last-used time and last client address
are counted in memory and written to the store every -usage-interval, and
at shutdown; GET /v1/keys shows them (usage_count, last_used_at,
last_client_addr), up to that much late.

Audit: key, token and authentication events (key.created, key.rotated,
key.revoked, token.issued, token.refreshed, token.revoked,
token.refresh_reuse, auth.failed, auth.rate_limited) are logged, as JSON
by default, on standard error; never with a full key or token.

Metrics: with -metrics ADDR, Prometheus metrics are served at
http://ADDR/metrics, on a listener of their own, not on the API's.

Flags:
`

// parseFlags parses the command line; getenv reads the pepper's variable.
// It returns flag.ErrHelp for -help and a usageError for anything invalid.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "listen `address`; port 0 picks a free port, and the one chosen is printed")
	fs.StringVar(&f.prefix, "prefix", "halfred", "API key `prefix`: 1 to 32 lower-case letters and digits, starting with a letter")
	fs.StringVar(&f.db, "db", "keygate.db", "SQLite database `file` keeping keys, refresh tokens and revocations; created if need be")
	fs.StringVar(&f.postgres, "postgres", "", "PostgreSQL `DSN` (postgres://user@host:5432/db?sslmode=verify-full, or key=value pairs)\nto use instead of -db, e.g. for several instances sharing one store")
	fs.BoolVar(&f.memory, "memory", false, "keep keys, refresh tokens and revocations in memory instead of -db: lost at exit\n(for trying things out and benchmarks)")
	fs.StringVar(&f.signingKey, "signing-key", "", "PEM `file` of the private key signing access tokens (Ed25519 or ECDSA P-256, PKCS#8),\ncreated with mode 0600 if missing; it must not be accessible to group or others.\nDefault: the -db file's name followed by "+signingKeySuffix+"; with -postgres or -memory,\na key made at start (access tokens then work on one instance only, until it stops)")
	fs.StringVar(&f.pepperEnv, "pepper-env", "KEYGATE_PEPPER", "name of the environment `variable` holding the pepper mixed into every key's hash;\nunset or empty means no pepper (plain SHA-256), otherwise it must be at least 16 bytes.\nThe pepper is never printed or logged")
	fs.StringVar(&f.logFormat, "log-format", "json", "log `format` on standard error, audit records included: json or text")
	fs.IntVar(&f.limits.apiKey, "rate-limit-keys", defaultLimitAPIKey, "requests a minute per API key (`N`, in bursts of up to N); 0: no limit.\nA key's own \"rate_limit\" replaces it")
	fs.IntVar(&f.limits.accessToken, "rate-limit-tokens", defaultLimitAccessToken, "requests a minute of the access tokens of each API key (`N`, together); 0: no limit")
	fs.IntVar(&f.limits.credentialFailures, "rate-limit-credential-failures", defaultLimitCredFails, "failed authentications a minute per credential (`N`), from any address; once spent,\nthe credential is refused with 429 before it is hashed or looked up; 0: no limit")
	fs.IntVar(&f.limits.failures, "rate-limit-failures", defaultLimitFailures, "failed authentications a minute per client address (`N`; IPv6 per /64); once spent,\nthe address is refused with 429 before its credential is checked; 0: no limit")
	fs.IntVar(&f.limits.exchange, "rate-limit-exchange", defaultLimitExchange, "POST /v1/auth/token a minute per API key (`N`), on top of -rate-limit-keys; 0: no limit")
	fs.IntVar(&f.limits.refresh, "rate-limit-refresh", defaultLimitRefresh, "POST /v1/auth/refresh a minute per client address (`N`); 0: no limit")
	fs.BoolVar(&f.limits.failClosed, "rate-limit-fail-closed", false, "answer 503 when the rate limiter (Redis) fails; by default such requests are let through")
	fs.StringVar(&f.redis, "redis", "", "Redis `address` (host:port) keeping the rate-limit budgets, shared by every instance\ngiven it; the password, if any, is read from $"+redisPasswordEnv+". See also -feed")
	fs.StringVar(&f.redisPrefix, "redis-prefix", "keygate:", "`prefix` of the Redis keys (PREFIXrl:…) and pub/sub channel (PREFIXkeys) the server uses;\ndeployments sharing a Redis server need different ones")
	fs.StringVar(&f.feed, "feed", "", "`name` of the feed by which instances sharing a -postgres store hear of one another's\nrevocations: postgres (LISTEN/NOTIFY, transactional; the default) or redis (pub/sub on -redis).\nOnly with -postgres")
	fs.DurationVar(&f.usageInterval, "usage-interval", keystore.DefaultUsageInterval, "how often each key's usage counts, last-used time and last client address are written\nto the store (`duration`; also at shutdown)")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9090), on a listener of\ntheir own; off by default")
	var trust trustConfig
	fs.StringVar(&trust.jwksURL, "trust-jwks", "", "also accept the access tokens of an identity provider whose JWK Set is at `URL` (http or https;\nfetched at start, refreshed every minute); needs -trust-issuer and -trust-audience")
	fs.StringVar(&trust.issuer, "trust-issuer", "", "the identity provider's `issuer`: its tokens' iss claim, matched exactly")
	fs.StringVar(&trust.audience, "trust-audience", "", "the `audience` the identity provider's tokens must be meant for (their aud claim)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flags{}, err
		}
		return flags{}, usageError{err: err, printed: true}
	}
	signingKeySet, metricsSet := false, false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "db":
			f.dbSet = true
		case "signing-key":
			signingKeySet = true
		case "metrics":
			metricsSet = true
		}
	})
	switch {
	case fs.NArg() > 0:
		return flags{}, usageError{err: fmt.Errorf("unexpected argument %q; the server takes flags only (see -help)", fs.Arg(0))}
	case f.postgres != "" && f.dbSet:
		return flags{}, usageError{err: errors.New("-db and -postgres name two stores: give one")}
	case f.memory && (f.dbSet || f.postgres != ""):
		return flags{}, usageError{err: errors.New("-memory and -db or -postgres name two stores: give one")}
	case f.db == "" && f.postgres == "" && !f.memory:
		return flags{}, usageError{err: errors.New("-db must name a file")}
	case signingKeySet && f.signingKey == "":
		return flags{}, usageError{err: errors.New("-signing-key must name a file")}
	case f.logFormat != "text" && f.logFormat != "json":
		return flags{}, usageError{err: fmt.Errorf("-log-format must be text or json, not %q", f.logFormat)}
	case f.pepperEnv == "":
		return flags{}, usageError{err: errors.New("-pepper-env must name an environment variable")}
	case metricsSet && f.metrics == "":
		return flags{}, usageError{err: errors.New("-metrics must name an address, such as 127.0.0.1:9090")}
	case f.usageInterval <= 0:
		return flags{}, usageError{err: fmt.Errorf("-usage-interval must be a positive duration, such as 10s, not %v", f.usageInterval)}
	case f.redisPrefix == "":
		return flags{}, usageError{err: errors.New("-redis-prefix must not be empty")}
	}
	if err := f.limits.validate(); err != nil {
		return flags{}, usageError{err: err}
	}
	if f.redis != "" {
		if !validHostPort(f.redis) {
			return flags{}, usageError{err: fmt.Errorf("-redis must be host:port, such as 127.0.0.1:6379 (the password goes in $%s)", redisPasswordEnv)}
		}
		f.redisPassword = getenv(redisPasswordEnv)
	}
	switch {
	case f.feed == "" && f.postgres != "":
		f.feed = feedPostgres
	case f.feed == "":
		f.feed = feedNone
	case f.feed != feedPostgres && f.feed != feedRedis:
		return flags{}, usageError{err: fmt.Errorf("-feed must be postgres or redis, not %q", f.feed)}
	case f.postgres == "":
		return flags{}, usageError{err: errors.New("-feed applies to -postgres only: with -db or -memory one process owns the store, and no other instance writes to it")}
	case f.feed == feedRedis && f.redis == "":
		return flags{}, usageError{err: errors.New("-feed redis needs -redis ADDR")}
	}
	// Checked here, not only by newServer, so that a bad prefix creates
	// no database file.
	if _, err := keystore.NewFormat(keystore.WithPrefix(f.prefix)); err != nil {
		return flags{}, usageError{err: fmt.Errorf("invalid -prefix: %w", err)}
	}
	switch n := countSet(trust.jwksURL, trust.issuer, trust.audience); {
	case n == 3:
		if u, err := url.Parse(trust.jwksURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return flags{}, usageError{err: errors.New("-trust-jwks must be an absolute http or https URL")}
		}
		if trust.issuer == tokenIssuer {
			return flags{}, usageError{err: fmt.Errorf("-trust-issuer %q is the server's own issuer; an identity provider needs another", trust.issuer)}
		}
		f.trust = &trust
	case n > 0:
		return flags{}, usageError{err: errors.New("-trust-jwks, -trust-issuer and -trust-audience go together: give all three or none")}
	}
	if !signingKeySet && f.postgres == "" && !f.memory {
		f.signingKey = f.db + signingKeySuffix
	}
	if p := getenv(f.pepperEnv); p != "" {
		if len(p) < 16 {
			return flags{}, usageError{err: fmt.Errorf("the pepper in $%s is %d bytes long; it must be at least 16 bytes", f.pepperEnv, len(p))}
		}
		f.pepper = []byte(p)
	}
	return f, nil
}

// validHostPort reports whether s is host:port with a host and a port
// number, such as 127.0.0.1:6379, redis.internal:6379 or [::1]:6379.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/@?#") {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

// countSet returns how many of values are not empty.
func countSet(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

// run runs the server until ctx is done, then shuts it down. It prints the
// bootstrap key, if it issues one, to stdout, and everything else to
// stderr. It returns flag.ErrHelp after -help and a usageError for a bad
// command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runEnv(ctx, args, os.Getenv, stdout, stderr)
}

// runEnv is run with the environment read through getenv.
func runEnv(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	stderr = &lockedWriter{w: stderr}
	f, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	var handler slog.Handler
	if f.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, nil)
	} else {
		handler = slog.NewTextHandler(stderr, nil)
	}
	logger := slog.New(handler)

	// Redis first, if any: a wrong address or password stops the server
	// before it creates anything.
	var rdb *redis.Client
	if f.redis != "" {
		redisLog.Store(logger)
		if rdb, err = connectRedis(ctx, f); err != nil {
			return err
		}
		defer rdb.Close()
		logger.Info("connected to Redis", "redis", f.redis, "prefix", f.redisPrefix)
	}

	// With -memory, newServer's defaults keep refresh tokens and
	// revocations in memory.
	var (
		keys        keystore.Store
		refresh     token.RefreshStore
		revocations token.Revocations
	)
	if f.memory {
		keys = keystore.NewMemoryStore()
		logger.Warn("keys, refresh tokens and revocations are kept in memory (-memory): they are lost at exit")
	} else {
		st, err := openStore(ctx, f)
		if err != nil {
			return err
		}
		defer func() {
			if err := st.Close(); err != nil {
				logger.Warn("close the store", "error", err)
			}
		}()
		keys, refresh, revocations = st, st, st.Revocations()
		if f.postgres != "" {
			logger.Info("keys, refresh tokens and revocations are kept in PostgreSQL", "postgres", dsnTarget(f.postgres))
		} else {
			logger.Info("keys, refresh tokens and revocations are kept in SQLite", "db", f.db)
		}
	}
	signer, err := signingKey(f, logger)
	if err != nil {
		return err
	}
	// The cache serves the request path: a key seen again costs no
	// database read. This instance's own revocations reach it at once.
	// With -postgres, those made by another instance sharing the
	// database arrive through the feed (PostgreSQL's LISTEN/NOTIFY, or
	// Redis pub/sub with -feed redis) within milliseconds, and while
	// the feed is down cached keys are trusted for at most
	// keystore.DefaultStaleAfter; with -db or -memory there is no one
	// else to hear from.
	var cacheOpts []keystore.CacheOption
	if f.feed != feedNone {
		cacheOpts = append(cacheOpts, keystore.WithInvalidationFeed())
	}
	if f.feed == feedRedis {
		// Every revocation is published after the store has made it.
		if keys, err = newPublishingStore(keys, rdb, f, logger); err != nil {
			return err
		}
	}
	cached, err := keystore.NewCachedStore(keys, cacheOpts...)
	if err != nil {
		return fmt.Errorf("key cache: %w", err)
	}
	switch f.feed {
	case feedPostgres:
		feed, err := sqlstore.ListenPostgres(ctx, f.postgres, cached, sqlstore.WithFeedLogger(logger))
		if err != nil {
			return startError{fmt.Errorf("-postgres: listen for invalidations: %w", err)}
		}
		defer feed.Close()
		logger.Info("instances sharing the database hear of one another's revocations through PostgreSQL LISTEN/NOTIFY (-feed postgres)")
	case feedRedis:
		feed, err := listenRedis(ctx, rdb, cached, f, logger)
		if err != nil {
			return err
		}
		defer feed.Close()
		logger.Info("instances sharing the database hear of one another's revocations through Redis pub/sub (-feed redis)", "channel", feed.Channel())
	}

	var limiter auth.Limiter
	if rdb != nil && f.limits.any() {
		if limiter, err = newRedisLimiter(rdb, f); err != nil {
			return err
		}
	}
	logLimits(logger, f.limits, limiter != nil)

	var metrics *metricsServer
	if f.metrics != "" {
		if metrics, err = newMetricsServer(f.metrics, logger); err != nil {
			return err
		}
		defer metrics.close()
	}

	s, err := newServer(ctx, config{
		prefix:        f.prefix,
		pepper:        f.pepper,
		store:         cached,
		refresh:       refresh,
		revocations:   revocations,
		logger:        logger,
		signingKey:    signer,
		trust:         f.trust,
		limits:        f.limits,
		limiter:       limiter,
		usageInterval: f.usageInterval,
		metrics:       metrics.observer(),
	})
	if err != nil {
		if errors.As(err, new(startError)) {
			return err
		}
		return usageError{err: err}
	}
	// Last deferred, so first run: the last usage counts are written
	// before the feed, the store and Redis are closed.
	defer s.close() //nolint:errcheck // close logs its failure
	if f.pepper == nil {
		logger.Info("no pepper set: keys are hashed with plain SHA-256", "pepper_env", f.pepperEnv)
	}

	if metrics != nil {
		metrics.serve(s.usage)
		fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", metrics.addr())
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	defer ln.Close()

	key, issued, err := s.bootstrap(ctx)
	if err != nil {
		return err
	}
	if issued {
		if _, err := fmt.Fprintf(stdout, "API key: %s\n", key.Plaintext()); err != nil {
			return fmt.Errorf("print the bootstrap key: %w", err)
		}
	} else {
		logger.Info("the store already holds keys: no new key issued; use a key from an earlier start", "project", defaultProject)
	}

	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "listening on http://%s\n", ln.Addr())

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	// No request is in flight any more: write the last usage counts now,
	// then close the feed and the store (deferred).
	if err := s.close(); err != nil {
		return fmt.Errorf("write the last usage counts: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// signingKey returns the key that signs access tokens: the one in the
// -signing-key file (created if need be), or, without a file (-postgres or
// -memory without -signing-key), the zero SigningKey, for which newServer
// makes a key. It logs which, never the key.
func signingKey(f flags, logger *slog.Logger) (token.SigningKey, error) {
	switch {
	case f.signingKey != "":
		key, created, err := loadOrCreateSigningKey(f.signingKey)
		if err != nil {
			return token.SigningKey{}, fmt.Errorf("-signing-key: %w", err)
		}
		msg := "access tokens are signed with the key in the signing key file: they survive a restart, and every instance given this file accepts them"
		if created {
			msg = "created the signing key file (mode 0600): access tokens survive a restart, and every instance given this file accepts them"
		}
		logger.Info(msg, "file", f.signingKey, "kid", key.KID, "alg", key.Alg)
		return key, nil
	case f.memory:
		logger.Info("access tokens are signed with a key made at start: they do not survive a restart (nothing does with -memory)")
	default:
		logger.Warn("no -signing-key: access tokens are signed with a key made at start, so they are per-instance: only this instance accepts them, and only until it stops; give every instance the same -signing-key FILE")
	}
	return token.SigningKey{}, nil
}

// openTimeout bounds opening the store: connecting to PostgreSQL and
// applying the migrations.
const openTimeout = 30 * time.Second

// openStore opens the store the flags name: the PostgreSQL database of
// -postgres, or else the SQLite file of -db, created if need be. Its
// errors never hold the DSN's password.
func openStore(ctx context.Context, f flags) (*sqlstore.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if f.postgres != "" {
		st, err := sqlstore.OpenPostgres(ctx, f.postgres)
		if err != nil {
			if pw := dsnPassword(f.postgres); pw != "" && strings.Contains(err.Error(), pw) {
				err = errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
			}
			return nil, fmt.Errorf("-postgres: open the PostgreSQL store: %w", err)
		}
		return st, nil
	}
	st, err := sqlstore.OpenSQLite(ctx, f.db)
	if err != nil {
		return nil, fmt.Errorf("-db: open the SQLite store %q: %w", f.db, err)
	}
	return st, nil
}

// dsnPassword returns the password a PostgreSQL DSN holds, in its user
// information or a password parameter (URL form), or as password=… (key
// and value form); "" if none.
func dsnPassword(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return ""
		}
		if pw, ok := u.User.Password(); ok && pw != "" {
			return pw
		}
		return u.Query().Get("password")
	}
	_, rest, ok := strings.Cut(dsn, "password")
	for ok {
		v := strings.TrimLeft(rest, " \t")
		if v, isValue := strings.CutPrefix(v, "="); isValue {
			v = strings.TrimLeft(v, " \t")
			if q, quoted := strings.CutPrefix(v, "'"); quoted {
				end := strings.Index(q, "'")
				if end < 0 {
					end = len(q)
				}
				return q[:end]
			}
			if end := strings.IndexAny(v, " \t"); end >= 0 {
				v = v[:end]
			}
			return v
		}
		_, rest, ok = strings.Cut(rest, "password")
	}
	return ""
}

// dsnTarget describes a PostgreSQL DSN for the logs: host and database of
// a URL, without user information or parameters; "" for key and value
// pairs, which it does not parse.
func dsnTarget(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return redactURL(dsn)
	}
	return ""
}

// lockedWriter serializes writes, so that log lines and the "listening on"
// line never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
