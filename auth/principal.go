package auth

import (
	"context"
	"slices"
	"time"
)

// Method says how a [Principal] authenticated.
type Method string

// The authentication methods keygate knows. Their string values appear in
// the example server's /v1/me response and in audit events.
const (
	// MethodAPIKey is a long-lived API key such as halfred_….
	MethodAPIKey Method = "api_key"
	// MethodAccessToken is a short-lived access token (a JWT).
	MethodAccessToken Method = "access_token"
)

// Principal is the authenticated caller of one request.
//
// A Principal is a plain value: an [Authenticator] returns it, the
// middleware stores an equal Principal in the request context, and
// [FromContext] returns a pointer to it. That Principal may be shared with
// other requests of the same caller (the middleware keeps one per caller
// rather than copying it into every request), and Scopes may share memory
// with the store's record: treat the Principal, and the slice, as
// read-only.
type Principal struct {
	// Method is how the caller authenticated.
	Method Method
	// KeyID is the public ID of the API key behind the credential: the key
	// itself, or the key an access token was exchanged from. It is never
	// secret and never derived from the key.
	KeyID string
	// Subject is the caller's identity when it is not an API key of this
	// service, such as the sub claim of an external identity provider's
	// token. It is empty for API keys.
	Subject string
	// Project is the project (tenant, account) the credential belongs to.
	Project string
	// Scopes are the permissions the credential carries.
	Scopes []string
	// ExpiresAt is when the credential stops working; zero means never.
	ExpiresAt time.Time
	// TokenID is the access token's unique ID (its jti); empty for API keys.
	TokenID string
	// Session identifies the refresh-token family an access token was
	// issued in, so that revoking the token can end the whole session;
	// empty for API keys and for tokens of other issuers.
	Session string
	// Hint is a masked form of the credential that is safe to log, such
	// as halfred_…a1B2. It never holds the credential itself.
	Hint string
	// RateLimit is this credential's own rate limit, overriding the
	// Guard's limit for its method; the zero Limit means "use the
	// method's limit". The keystore Manager copies it from the key's
	// record.
	RateLimit Limit
}

// HasScope reports whether p carries scope. A nil Principal has no scopes.
func (p *Principal) HasScope(scope string) bool {
	return p != nil && slices.Contains(p.Scopes, scope)
}

// MissingScopes returns the scopes in required that p does not carry, in
// the order given, or nil when p carries them all.
func (p *Principal) MissingScopes(required ...string) []string {
	var missing []string
	for _, s := range required {
		if !p.HasScope(s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// principalKey is the context key of the Principal. Its address is unique to
// this package, so no other package can read or overwrite the value.
type principalKey struct{}

// principalContext carries a Principal that is never modified: one the
// middleware shares between requests ([principalTable]), or a copy of its
// own.
type principalContext struct {
	context.Context
	p *Principal
}

func (c *principalContext) Value(key any) any {
	if key == (principalKey{}) {
		return c.p
	}
	return c.Context.Value(key)
}

func (c *principalContext) String() string {
	return "auth.principalContext"
}

// NewContext returns a copy of ctx that carries a copy of p. A nil p returns
// ctx unchanged.
func NewContext(ctx context.Context, p *Principal) context.Context {
	if p == nil {
		return ctx
	}
	c := *p
	return &principalContext{Context: ctx, p: &c}
}

// FromContext returns the Principal that the middleware, or [NewContext],
// stored in ctx, and whether there was one. The result is shared by every
// caller that reads the same context, and the middleware's by other
// requests of the same caller: do not modify it.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}
