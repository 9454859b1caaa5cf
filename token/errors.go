package token

import "errors"

// Errors of token verification. Verify wraps each failure so that
// errors.Is matches one of these; the HTTP layer answers every one of them
// with the same 401 invalid_token response.
var (
	// ErrMalformed: not a compact JWS of three strict base64url parts
	// holding JSON objects, or a claim of the wrong type or range.
	ErrMalformed = errors.New("token: malformed token")
	// ErrTooLarge: the token is longer than the verifier's size cap; it
	// was rejected before any decoding.
	ErrTooLarge = errors.New("token: token too large")
	// ErrAlgorithm: the alg header is not allowed, or is not the
	// algorithm of the key named by kid ("none" always fails).
	ErrAlgorithm = errors.New("token: algorithm not allowed")
	// ErrUnknownKID: no verification key has the token's kid.
	ErrUnknownKID = errors.New("token: unknown key ID")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("token: invalid signature")
	// ErrHeader: a header the verifier does not accept: a crit header it
	// does not understand, or a wrong typ.
	ErrHeader = errors.New("token: unacceptable header")
	// ErrDuplicateClaim: a claim or header name appears twice, in any
	// case ({"sub":"a","SUB":"b"}).
	ErrDuplicateClaim = errors.New("token: duplicate claim")
	// ErrExpired: exp has passed (beyond the leeway), or is missing.
	ErrExpired = errors.New("token: token expired")
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("token: token not yet valid")
	// ErrLifetime: exp - iat exceeds the verifier's maximum lifetime.
	ErrLifetime = errors.New("token: token lifetime too long")
	// ErrIssuer: iss is not the expected issuer.
	ErrIssuer = errors.New("token: wrong issuer")
	// ErrAudience: aud does not contain the expected audience.
	ErrAudience = errors.New("token: wrong audience")
	// ErrRevoked: the token's jti was revoked.
	ErrRevoked = errors.New("token: token revoked")
	// ErrKeyRevoked: the API key the token was derived from is revoked,
	// rotated, disabled, expired or gone.
	ErrKeyRevoked = errors.New("token: API key of the token no longer valid")
)

// Errors of issuing and refreshing.
var (
	// ErrWeakKey: a signing or verification key is too weak or of an
	// unsupported type (an HS256 secret under 32 bytes, RSA under 2048
	// bits, an ECDSA key not on P-256).
	ErrWeakKey = errors.New("token: unsupported or weak key")
	// ErrInvalidConfig: an option or argument is unusable.
	ErrInvalidConfig = errors.New("token: invalid configuration")
	// ErrInvalidGrant: a refresh token that is unknown, expired, revoked,
	// or not a refresh token at all (an access token, say): RFC 6749
	// invalid_grant.
	ErrInvalidGrant = errors.New("token: invalid grant")
	// ErrRefreshReused: a refresh token was presented after it had been
	// spent. Its whole family has been revoked (RFC 9700 §4.14.2).
	ErrRefreshReused = errors.New("token: refresh token reused")
)
