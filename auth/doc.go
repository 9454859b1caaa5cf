// Package auth puts API-key and Bearer-token authentication in front of a
// net/http service.
//
// It knows three things: where a request carries its credential (the
// [Extractor]s), who decides whether a credential is good (an
// [Authenticator]), and how a failure is answered (the [ErrorHandler]). A
// [Guard] ties them together:
//
//	guard, err := auth.New(manager) // keystore's Manager is an Authenticator
//	if err != nil { … }
//	mux.Handle("GET /v1/models", guard.RequireScopes("models:read")(models))
//	mux.Handle("GET /v1/me", guard.Middleware(me))
//
// A protected handler reads the caller with [FromContext]. The decision is
// separate from the transport: [Guard.Authenticate] works on a request
// without writing a response, and an Authenticator can be called directly
// from a gRPC interceptor, a queue consumer or a CLI.
//
// # Credentials
//
// By default a Guard reads the credential from two places:
//
//   - Authorization: Bearer <credential> ([BearerExtractor]), parsed
//     strictly by RFC 6750 §2.1: the scheme in any case, one or more spaces,
//     exactly one b64token. Another scheme (Basic, Digest) is no
//     credential; a Bearer header with a tab, a second token, a comma,
//     quotes, or non-ASCII is a malformed request.
//   - api-key: <credential> ([HeaderExtractor]), a single token of visible
//     ASCII.
//
// Every source is asked. The same credential in both headers is accepted,
// since some clients send both; two different credentials are a malformed
// request, never "first wins". A header sent twice is a malformed request
// too. Every extractor checks the length of the raw value before it parses
// anything (8 KiB by default, [WithMaxCredentialLength]), so a megabyte of
// header costs neither parsing nor allocation, and the credential never
// reaches the Authenticator.
//
// [CookieExtractor] and [QueryExtractor] exist but are off unless enabled
// with [WithExtractors]. Browsers attach cookies to every request, so a
// cookie credential needs protection against cross-site request forgery,
// and API keys do not belong in browsers. Query strings end up in access
// logs, proxies, browser history and Referer headers, which is why RFC 6750
// §2.3 discourages them.
//
// # Errors
//
// [JSONErrorHandler], the default, answers every failure with a JSON body
// {"error":{"message":…,"type":…,"code":…}}, Content-Type
// application/json and Cache-Control: no-store:
//
//	situation                              status  type                   code                 header
//	no credentials                         401     authentication_error   missing_credentials  WWW-Authenticate: Bearer realm="api"
//	malformed, unknown, revoked, expired   401     authentication_error   invalid_token        WWW-Authenticate: Bearer realm="api", error="invalid_token"
//	malformed request (two credentials)    400     invalid_request_error  invalid_request      WWW-Authenticate: Bearer error="invalid_request"
//	missing scope                          403     permission_error       insufficient_scope   WWW-Authenticate: Bearer error="insufficient_scope", scope="a b"
//	rate limited                           429     rate_limit_error       rate_limit_exceeded  Retry-After: seconds
//	back end failed or timed out           503     api_error              service_unavailable
//	Authenticator panicked                 500     api_error              internal_error
//
// Errors are classified with [errors.Is] against this package's sentinels
// ([ErrNoCredentials], [ErrInvalidCredential], [ErrMalformedRequest],
// [ErrInsufficientScope], [ErrRateLimited], [ErrUnavailable],
// [ErrInternal]). An error that matches none of them, such as a raw
// database error or [context.DeadlineExceeded], is a 503: the request fails
// closed, it is never allowed, and never mistaken for a bad credential. The
// message shown is an [Error]'s Message or a fixed sentence; an error's
// text, which may hold internals, is never written. The Guard logs 5xx
// failures only (see [WithLogger]), with the credential masked.
//
// # Back ends
//
// An [Authenticator] turns a credential into a [Principal]. The keystore
// package's Manager authenticates API keys, the token package verifies
// access tokens; this package imports neither, and they plug in through
// the Authenticator interface. [Dispatch] lets one Bearer header carry
// either: an Authenticator that also implements [Matcher] claims the
// credentials of its shape (a JWT by its dots), and the first one that does
// not is the catch-all:
//
//	guard, err := auth.New(auth.Dispatch(tokens, manager))
//
// # Rate limits
//
// [WithRateLimits] makes the middleware enforce [RateLimits], kept by a
// [Limiter]: [MemoryLimiter] (GCRA, in memory, bounded, for one instance)
// or a shared one such as the Redis limiter of the nested module
// keygate/auth/redislimit. [DefaultRateLimits] gives 600 requests a minute
// per API key, 1,200 per key's access tokens, and 20 failed
// authentications a minute per client address:
//
//	limiter, err := auth.NewMemoryLimiter()
//	guard, err := auth.New(manager, auth.WithRateLimits(auth.DefaultRateLimits(limiter)))
//	mux.Handle("POST /v1/auth/token", guard.RequireScopes("tokens:issue")(
//		guard.Limit(auth.PerMinute("token_exchange", 10))(tokenHandler)))
//
// Budgets are keyed on what was verified, never on what was sent: a
// principal's key ID (an external identity provider's subject, under a
// name of its own, when there is no key ID), and for failures the
// client's address ([WithClientAddr]; IPv6 grouped by /64). A forged,
// unknown or truncated key therefore spends only its sender's failure
// budget, never the real key's. The failure budget of an address that has
// failed lately is peeked at before the credential is read, so once it is
// spent a brute-force flood is refused with 429 at the cost of a map
// lookup, without hashing or a store call. A
// key's own limit, [Principal.RateLimit] (stored on the key's record),
// replaces its method's.
//
// Refused requests get 429 with Retry-After. Every response to a limited
// request carries the RateLimit-Policy and RateLimit header fields of
// draft-ietf-httpapi-ratelimit-headers-11, such as
//
//	RateLimit-Policy: "api_key";q=600;w=60
//	RateLimit: "api_key";r=599;t=1
//
// When the Limiter fails, the Guard fails open by default (the request
// proceeds unlimited, and the failure is logged at most once every 10
// seconds), or closed with [RateLimits.FailClosed] (503). Failing open is
// the default because the limiter protects capacity, not access: a Redis
// outage should not take the API down with it. On a successful request
// from a client that has not failed lately the limits cost one spend in
// the Limiter (one round trip with a shared Limiter) and no allocation for
// an IPv4 client: the Guard remembers which addresses and credentials
// failed within their budget's refill time and peeks only at those
// ([RateLimits.Failures] says what that costs and allows), and the
// RateLimit value is written into the context object the request gets
// anyway (an IPv6 client's /64 key costs one allocation).
// BenchmarkMiddlewareLimits in package keystore measures them.
//
// # Observing
//
// [WithObserver] makes the middleware report an [Event] for every request
// it authenticates, fails, rate-limits or refuses for a missing scope, to
// an [Observer]: an audit log
// ([NewSlogObserver]), metrics, usage counters. Events hold the masked
// credential (its hint), never the credential. Reporting to an Observer
// that does not allocate allocates nothing; without one, nothing is
// measured.
//
// # Concurrency
//
// A Guard, the built-in extractors, the error handlers and [MemoryLimiter]
// are safe for concurrent use. On success the middleware allocates twice
// per request: the context that carries the Principal and the request that
// carries the context. The Principal itself is shared with the caller's
// other requests (the Guard keeps one per caller, in a table of 1,024) and
// copied only when the one the table holds is not equal to it: a caller's
// first request, or one whose key has changed. It is therefore read-only.
// Rate limits add no allocation for an IPv4 client that has not failed
// lately.
package auth
