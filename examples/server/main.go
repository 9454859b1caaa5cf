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
// http://ADDR" on standard error. Logs go to standard error and never
// contain a full key or token. SIGINT or SIGTERM shuts it down cleanly.
//
// Key records are cached in front of the database. A key revoked through
// this instance stops working at once. With -postgres, one revoked through
// another instance sharing the database stops working as soon as the
// PostgreSQL LISTEN/NOTIFY message arrives (milliseconds on a LAN), and
// within 5 s (keystore.DefaultStaleAfter) if that feed is down.
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
//	-log-format FMT    text or json (default text)
//	-trust-jwks URL      also accept the access tokens of an external identity
//	-trust-issuer ISS    provider whose JWK Set is at URL (http or https), whose
//	-trust-audience AUD  tokens have iss ISS and name AUD in aud; all three or
//	                     none (otherwise exit status 2)
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/sqlstore"
	"github.com/keygate/keygate/token"
)

// shutdownTimeout is how long a shutdown waits for requests in flight.
const shutdownTimeout = 10 * time.Second

func main() {
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
}

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
  POST   /v1/keys                (keys:manage) body {"name","scopes","expires_in"}
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
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format` on standard error: text or json")
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
	signingKeySet := false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "db":
			f.dbSet = true
		case "signing-key":
			signingKeySet = true
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
	// On PostgreSQL, those made by another instance sharing the database
	// arrive through LISTEN/NOTIFY within milliseconds, and while that
	// feed is down cached keys are trusted for at most
	// keystore.DefaultStaleAfter; on SQLite (one process) there is no one
	// else to hear from.
	var cacheOpts []keystore.CacheOption
	if f.postgres != "" {
		cacheOpts = append(cacheOpts, keystore.WithInvalidationFeed())
	}
	cached, err := keystore.NewCachedStore(keys, cacheOpts...)
	if err != nil {
		return fmt.Errorf("key cache: %w", err)
	}
	if f.postgres != "" {
		feed, err := sqlstore.ListenPostgres(ctx, f.postgres, cached, sqlstore.WithFeedLogger(logger))
		if err != nil {
			return startError{fmt.Errorf("-postgres: listen for invalidations: %w", err)}
		}
		defer feed.Close()
	}
	s, err := newServer(ctx, config{
		prefix:      f.prefix,
		pepper:      f.pepper,
		store:       cached,
		refresh:     refresh,
		revocations: revocations,
		logger:      logger,
		signingKey:  signer,
		trust:       f.trust,
	})
	if err != nil {
		if errors.As(err, new(startError)) {
			return err
		}
		return usageError{err: err}
	}
	defer s.close()
	if f.pepper == nil {
		logger.Info("no pepper set: keys are hashed with plain SHA-256", "pepper_env", f.pepperEnv)
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
