package token

import (
	"context"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The signing algorithms keygate supports. Every key is bound to exactly
// one of them: a token is verified only with a key whose algorithm equals
// the token's alg header.
const (
	// EdDSA is Ed25519 (RFC 8037), the default.
	EdDSA = "EdDSA"
	// ES256 is ECDSA on P-256 with SHA-256.
	ES256 = "ES256"
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256, keys of at least 2048 bits.
	RS256 = "RS256"
	// HS256 is HMAC-SHA-256 with a shared secret of at least 32 bytes.
	// It is never published in a JWK Set.
	HS256 = "HS256"
)

// AccessTokenType is the typ header of keygate's access tokens (RFC 9068).
const AccessTokenType = "at+jwt"

// VerificationKey is a key that verifies tokens: a public key, or the
// shared secret of an HS256 key.
type VerificationKey struct {
	// KID is the key's ID, matched against the token's kid header.
	KID string
	// Alg is the only algorithm this key verifies.
	Alg string
	// Key is an ed25519.PublicKey, a *ecdsa.PublicKey, a *rsa.PublicKey,
	// or, for HS256, the []byte secret.
	Key any
}

// KeySource finds verification keys by their kid. A [KeySet] holds fixed
// keys (an [Issuer]'s own); a [RemoteKeySet] fetches an identity provider's
// JWK Set. Implementations are called on the request path, concurrently.
type KeySource interface {
	// VerificationKey returns the key with this kid, or an error matching
	// [ErrUnknownKID] when there is none. Any other error means the
	// source failed (the verifier answers 503). It must not make an
	// outbound request for every unknown kid.
	VerificationKey(ctx context.Context, kid string) (VerificationKey, error)
}

// Claims are the claims of a keygate access token (RFC 9068).
type Claims struct {
	jwt.RegisteredClaims
	// ClientID is the API key the token was exchanged from (RFC 9068
	// client_id); it equals Subject for keygate's own tokens.
	ClientID string `json:"client_id,omitempty"`
	// Scope is the space-separated list of the token's scopes.
	Scope string `json:"scope,omitempty"`
	// Project is the project of the API key.
	Project string `json:"project,omitempty"`
	// Session is the refresh-token family the token was issued in.
	Session string `json:"sid,omitempty"`
}

// Revocations records revoked access tokens by their jti (and whole
// sessions by "sid:" and the session ID). An entry must live past the
// token's expiry by the largest leeway any verifier allows
// ([RevocationSlack] covers the 60 s maximum), or the token would verify
// again inside the leeway.
type Revocations interface {
	// Revoke records that token jti is revoked. expiresAt is when the
	// token expires; the entry must be kept at least [RevocationSlack]
	// beyond it, after which the token fails on its expiry alone. It is
	// idempotent.
	Revoke(ctx context.Context, jti string, expiresAt time.Time) error
	// IsRevoked reports whether token jti is revoked. An error means the
	// back end failed (503), never "not revoked".
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// KeyChecker reports whether the API key an access token was derived from
// is still good, so that revoking or rotating a key ends its tokens at
// once. keystore.Manager implements it.
type KeyChecker interface {
	// CheckKey returns nil if key id is good, an error matching
	// auth.ErrInvalidCredential if it is unknown, revoked, disabled or
	// expired, and any other error if the check failed.
	CheckKey(ctx context.Context, id string) error
}
