package auth

import (
	"context"
)

// Authenticator decides who presented a credential. It is the one interface
// credential back ends implement: keystore's Manager for API keys, the token
// package for access tokens, or a user's own.
//
// Authenticate returns the Principal the credential belongs to, or an error
// that explains why not. Errors are classified by [errors.Is]:
//   - [ErrInvalidCredential] (malformed, unknown, revoked, expired,
//     disabled): 401 with error="invalid_token";
//   - [ErrMalformedRequest]: 400 with error="invalid_request";
//   - [ErrUnavailable], or any error that matches none of this package's
//     sentinels: the back end failed, 503, and the request is not served.
//
// Return an [*Error] to give the caller a helpful message. An
// Authenticator is called concurrently and must be safe for that.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (Principal, error)
}

// AuthenticatorFunc adapts a function to [Authenticator].
type AuthenticatorFunc func(ctx context.Context, credential string) (Principal, error)

// Authenticate calls f(ctx, credential).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, credential string) (Principal, error) {
	return f(ctx, credential)
}

// Matcher is implemented by an [Authenticator] that recognises its own
// credentials by their shape alone, without any I/O: a JWT by its two dots,
// say. [Dispatch] uses it to route a credential. Match must be cheap, must
// not allocate, and must be safe for concurrent use.
type Matcher interface {
	Match(credential string) bool
}

// Dispatch returns an Authenticator that routes each credential by its
// shape, so that one Authorization: Bearer header can carry either an API
// key or an access token.
//
// A credential goes to the first authenticator in the list that implements
// [Matcher] and matches it. If none matches, it goes to the first
// authenticator that does not implement Matcher (a catch-all, typically the
// API-key authenticator, whose error message tells the caller what a key
// looks like). If there is no catch-all either, the credential is invalid.
// Dispatch panics if given no authenticators.
func Dispatch(authenticators ...Authenticator) Authenticator {
	if len(authenticators) == 0 {
		panic("auth: Dispatch needs at least one Authenticator")
	}
	if len(authenticators) == 1 {
		return authenticators[0]
	}
	d := &dispatcher{}
	for _, a := range authenticators {
		if m, ok := a.(Matcher); ok {
			d.routes = append(d.routes, route{m, a})
		} else if d.fallback == nil {
			d.fallback = a
		}
	}
	return d
}

type route struct {
	m Matcher
	a Authenticator
}

type dispatcher struct {
	routes   []route
	fallback Authenticator
}

func (d *dispatcher) Authenticate(ctx context.Context, credential string) (Principal, error) {
	for _, r := range d.routes {
		if r.m.Match(credential) {
			return r.a.Authenticate(ctx, credential)
		}
	}
	if d.fallback != nil {
		return d.fallback.Authenticate(ctx, credential)
	}
	return Principal{}, errUnrecognised
}
