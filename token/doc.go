// Package token gives an API-key service short-lived access tokens: an
// API key is exchanged for a signed JWT (RFC 9068) that expires in
// minutes, can be refreshed and revoked, and is checked without a
// database lookup per request. It can also accept the access tokens of an
// external identity provider that publishes its keys as a JWK Set.
//
// Signing and signature checks use github.com/golang-jwt/jwt/v5; the
// parsing around them is this package's own, because a JWT library's
// defaults are where verifiers get hurt (see "Hardening" below).
//
// # Issuing
//
// A [SigningKey] is a private key bound to one algorithm: [EdDSA]
// (Ed25519, the default and the fastest to verify), [ES256], [RS256], or
// [HS256] with a secret of at least 32 bytes (a shorter or empty one is
// refused when the key is made). [GenerateSigningKey] makes one;
// [NewSigningKey] wraps an existing key. A SigningKey never prints its key
// material, whatever the fmt verb or logger.
//
// An [Issuer] signs tokens for the principal of a verified API key:
//
//	key, _ := token.GenerateSigningKey(token.EdDSA, nil)
//	issuer, _ := token.NewIssuer("https://api.example.com", key)
//	tok, claims, err := issuer.Issue(principal, []string{"models:read"}, session)
//
// The header is {"alg","kid","typ":"at+jwt"}; the claims are iss, aud
// (the issuer name unless [WithAudience] says otherwise), sub and
// client_id (the API key's public ID), exp (15 minutes by default,
// [WithLifetime], never beyond [WithMaxLifetime] nor beyond the key's own
// expiry), iat and nbf, a 128-bit random jti, scope, project, and sid (the
// refresh-token family, for session revocation). Requested scopes narrow
// the token to a subset of the key's; asking for more is an
// [auth.ErrInsufficientScope] error (403).
//
// # Verifying
//
// A [Verifier] checks tokens against a [KeySource]: the Issuer's
// [KeySet], or a [RemoteKeySet] for an identity provider. The expected
// issuer and audience are required:
//
//	verifier, err := token.NewVerifier(issuer.KeySet(),
//		token.WithExpectedIssuer(issuer.Name()),
//		token.WithExpectedAudience("https://api.example.com"),
//		token.WithRevocations(revocations), // jti and session revocation
//		token.WithKeyChecker(manager))      // the API key behind the token
//	claims, err := verifier.Verify(ctx, tok)
//
// Every rejection is an [*auth.Error] of kind [auth.ErrInvalidCredential]
// whose cause is one of this package's sentinels ([ErrExpired],
// [ErrSignature], …), with no message, so that every 401 is the same byte
// for byte whatever the reason; a failing back end (key source,
// revocations, key store) is [auth.ErrUnavailable], a 503.
//
// # Hardening
//
// Each of these is a test in attack_test.go:
//
//   - The token is at most 8 KiB ([WithMaxTokenSize]), checked before any
//     decoding; base64url is strict: no padding, no '+' or '/', no
//     whitespace or line breaks, and no non-canonical final character
//     (flipping the unused low bit of the last signature character makes
//     a different string that a lenient decoder maps to the same
//     signature; here it fails).
//   - The header and the claims must be I-JSON (RFC 7493): valid UTF-8,
//     no lone surrogates, and no member name twice, in any case or Unicode
//     case folding: {"sub":"a","sub":"b"}, "SUB" beside "sub", and even a
//     lone "Exp" or "ſub" fail, because encoding/json (which golang-jwt
//     uses) matches names case-insensitively and keeps the last duplicate.
//   - The algorithm allow-list is always on: EdDSA, ES256 and RS256 by
//     default, HS256 only when listed ([WithAlgorithms]); "none" never, in
//     any spelling. The alg header must also equal the algorithm of the
//     key the kid names, so an HS256 token "signed" with a public key's
//     bytes fails.
//   - typ must be at+jwt (or application/at+jwt, any case): an ID token or
//     a refresh token is not an access token ([WithTokenType]).
//   - A crit header fails: this verifier understands no extension
//     (RFC 7515 §4.1.11). jku, x5u, jwk and x5c are ignored: never
//     fetched, never trusted. Verification makes no outbound connection.
//   - The kid must be a string of at most 256 bytes. Hostile values (path
//     traversal, SQL, numbers, null, objects, 100 KiB) never panic and cost
//     no more than an unknown kid of the same length.
//   - exp is required. exp, nbf and iat must be JSON numbers above 0 and
//     below 2^53 (fractions allowed; "123", 1e300, 0 and -1 fail), checked
//     with a leeway of 30 s by default, at most 60 s ([WithLeeway]); a
//     token whose exp - iat exceeds the maximum lifetime fails.
//   - iss and aud are compared exactly; aud may be a string or an array
//     that must contain the expected audience.
//   - Revocation is by jti, and by "sid:"+sid for every token of a revoked
//     session, never by a digest of the token string; the API key a token
//     was exchanged from is checked on every request ([WithKeyChecker]),
//     so revoking or rotating the key kills its tokens at once.
//
// # Rotation and the JWK Set
//
// To rotate the signing key: serve the new key's public half in the JWK
// Set first, then sign with it while the old key stays in the set as a
// previous key ([WithPreviousKeys]) until the last token it signed has
// expired (the maximum lifetime), then drop it:
//
//	issuer, _ := token.NewIssuer(name, newKey, token.WithPreviousKeys(oldKey.Public()))
//	mux.Handle("GET /.well-known/jwks.json", issuer.KeySet().Handler())
//
// [KeySet.JWKS] is an RFC 7517 JWK Set of the public keys, with kid, alg
// and use "sig" (Ed25519 as OKP per RFC 8037, P-256 with 32-byte
// coordinates, RSA n and e); HS256 secrets are never published. The
// handler sends Cache-Control: public, max-age=300 and an ETag, and
// answers If-None-Match with 304.
//
// # The verified-token cache
//
// A client sends the same token on every request for minutes, so the
// Verifier remembers tokens that passed verification ([WithCache], 10,000
// by default), keyed by the SHA-256 of the exact token bytes. A hit skips
// the decoding, the key lookup and the signature, and costs about as much
// as an API-key check; it allocates nothing. What a hit never skips: the
// revocation of the jti and the sid, and the API-key check, which run on
// every request; the expiry: an entry is never served at or after the
// token's exp; and the key: if the key source no longer returns the key
// that verified the token (removed from a remote JWK Set, say), the token
// is verified again, and fails. Only verified tokens are inserted, so a flood of forged
// tokens cannot grow the cache or evict anything; the cache is bounded,
// and its eviction (CLOCK, second chance) keeps tokens that are in use
// while a flood of distinct valid tokens passes through.
//
// # With the auth middleware
//
// A Verifier is an [auth.Authenticator] and an [auth.Matcher] (it
// recognises a JWT by its shape), so one Authorization: Bearer header can
// carry either an API key or an access token:
//
//	guard, err := auth.New(auth.Dispatch(verifier, manager))
//	mux.Handle("GET /v1/models", guard.RequireScopes("models:read")(models))
//
// The principal of a token has Method [auth.MethodAccessToken], the
// token's scopes, its jti as TokenID and its sid as Session; KeyID is the
// API key it was exchanged from when a [KeyChecker] vouches for it.
//
// [Service] ties an Issuer, a Verifier and a refresh-token store into the
// token, refresh and revoke endpoints.
package token
