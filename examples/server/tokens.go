package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// tokenIssuer is the iss claim of the server's own access tokens, and
// their aud.
const tokenIssuer = "halfred"

// maxRefreshPrefix is the longest API key prefix the refresh token prefix
// (the API key prefix and "rt") is built from: prefixes are at most 32
// characters.
const maxRefreshPrefix = 30

// trustConfig makes the server accept the access tokens of an external
// identity provider: those whose iss is issuer, meant for audience, and
// signed by a key of the JWK Set at jwksURL.
type trustConfig struct {
	jwksURL  string
	issuer   string
	audience string
	// remoteOptions are appended to the RemoteKeySet's options (tests set
	// intervals and clocks with them).
	remoteOptions []token.RemoteOption
}

// startError is a failure to start that is not a configuration error, such
// as an unreachable identity provider: exit status 1, not 2.
type startError struct{ err error }

func (e startError) Error() string { return e.err.Error() }
func (e startError) Unwrap() error { return e.err }

// tokens is the server's access-token machinery.
type tokens struct {
	issuer *token.Issuer
	// verifier accepts the server's own access tokens.
	verifier *token.Verifier
	// remote holds the identity provider's keys; nil without trust.
	remote *token.RemoteKeySet
	// authn is what the Guard asks: access tokens by their shape (own and
	// trusted), anything else as an API key.
	authn auth.Authenticator
}

// newTokens builds the issuer, the verifiers and the authenticator of the
// Guard. It fetches the identity provider's JWK Set once when cfg.trust is
// set; that failure is a startError.
func newTokens(ctx context.Context, cfg config, keys *keystore.Manager) (*tokens, error) {
	signer := cfg.signingKey
	if signer.Key == nil {
		var err error
		// A key per start: access tokens are short-lived and die with the
		// process; keys, refresh state and revocations are in the store.
		if signer, err = token.GenerateSigningKey(token.EdDSA, nil); err != nil {
			return nil, fmt.Errorf("generate the token signing key: %w", err)
		}
	}
	issuer, err := token.NewIssuer(tokenIssuer, signer, token.WithIssuerClock(cfg.now))
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	own, err := token.NewVerifier(issuer.KeySet(),
		token.WithExpectedIssuer(tokenIssuer),
		token.WithExpectedAudience(issuer.Audience()...),
		token.WithKeyChecker(keys),
		token.WithRevocations(cfg.revocations),
		token.WithVerifierClock(cfg.now),
	)
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}
	t := &tokens{issuer: issuer, verifier: own}
	if cfg.trust == nil {
		t.authn = auth.Dispatch(own, keys)
		return t, nil
	}

	tc := cfg.trust
	if tc.issuer == tokenIssuer {
		return nil, fmt.Errorf("-trust-issuer %q is the server's own issuer; an identity provider needs another", tc.issuer)
	}
	opts := append([]token.RemoteOption{
		token.WithRemoteClock(cfg.now),
		token.WithRemoteLogger(cfg.logger),
	}, tc.remoteOptions...)
	remote, err := token.NewRemoteKeySet(ctx, tc.jwksURL, opts...)
	if err != nil {
		if errors.Is(err, token.ErrInvalidConfig) {
			return nil, fmt.Errorf("-trust-jwks: %w", err)
		}
		return nil, startError{fmt.Errorf("-trust-jwks: %w", err)}
	}
	external, err := token.NewVerifier(remote,
		token.WithExpectedIssuer(tc.issuer),
		token.WithExpectedAudience(tc.audience),
		token.WithAlgorithms(token.EdDSA, token.ES256, token.RS256),
		token.WithTokenType(""), // many providers set typ "JWT" or none
		// The provider's client_id, project and sid are not ours.
		token.WithExternalTokens(),
		token.WithVerifierClock(cfg.now),
	)
	if err != nil {
		remote.Close()
		return nil, fmt.Errorf("-trust-issuer, -trust-audience: %w", err)
	}
	t.remote = remote
	t.authn = auth.Dispatch(&issuerRouter{own: own, external: external, externalIssuer: tc.issuer}, keys)
	cfg.logger.LogAttrs(ctx, slog.LevelInfo, "accepting the access tokens of an identity provider",
		slog.String("issuer", tc.issuer), slog.String("audience", tc.audience), slog.String("jwks", redactURL(tc.jwksURL)))
	return t, nil
}

// close stops the identity provider's key refresh.
func (t *tokens) close() {
	if t.remote != nil {
		t.remote.Close()
	}
}

// refreshFormat is the format of refresh tokens: the API key prefix
// followed by "rt" (halfredrt_…), so they can never pass for API keys.
func refreshFormat(apiKeyPrefix string) (*keystore.Format, error) {
	if len(apiKeyPrefix) > maxRefreshPrefix {
		apiKeyPrefix = apiKeyPrefix[:maxRefreshPrefix]
	}
	return keystore.NewFormat(keystore.WithPrefix(apiKeyPrefix + "rt"))
}

// issuerRouter sends each access token to the verifier of the issuer it
// names: a token whose iss is the trusted identity provider to the
// external verifier, every other one to the server's own.
//
// The iss claim is read without verification, but only to choose: the
// chosen verifier then checks everything, against its own keys and its
// own expected issuer. The server's keys are not in the provider's set,
// nor the provider's keys in the server's, so neither issuer's keys can
// verify the other's tokens, whatever a token claims.
type issuerRouter struct {
	own, external  *token.Verifier
	externalIssuer string
}

var (
	_ auth.Authenticator = (*issuerRouter)(nil)
	_ auth.Matcher       = (*issuerRouter)(nil)
)

// Match reports whether credential is shaped like a JWT.
func (r *issuerRouter) Match(credential string) bool { return r.own.Match(credential) }

// Authenticate verifies credential with the verifier of its issuer. A
// provider's token gives a principal with its subject and scopes only:
// the external verifier (token.WithExternalTokens) ignores the claims
// that name this server's keys, projects and sessions (client_id,
// project, sid), which mean nothing coming from another issuer.
func (r *issuerRouter) Authenticate(ctx context.Context, credential string) (auth.Principal, error) {
	if unverifiedIssuer(credential) != r.externalIssuer {
		return r.own.Authenticate(ctx, credential)
	}
	return r.external.Authenticate(ctx, credential)
}

// unverifiedIssuer returns the iss claim of a compact JWS without
// verifying anything, or "" if there is none. The name is matched exactly
// ("ISS" is not iss).
func unverifiedIssuer(jws string) string {
	_, rest, ok := strings.Cut(jws, ".")
	if !ok {
		return ""
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(b, &claims) != nil {
		return ""
	}
	var iss string
	if json.Unmarshal(claims["iss"], &iss) != nil {
		return ""
	}
	return iss
}

// isExternal reports whether p comes from the identity provider's token:
// the server's own credentials always name an API key.
func isExternal(p *auth.Principal) bool {
	return p.Method == auth.MethodAccessToken && p.KeyID == ""
}

var (
	errRevokeExternal = &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: "This access token was issued by the identity provider: revoke it there. Only this server's own access tokens are revoked here.",
	}
	errManageExternal = &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: "Keys are managed with an API key of this server, or an access token exchanged from one; an identity provider's token belongs to no project here.",
	}
)

// handleRevoke serves POST /v1/auth/revoke: the Service revokes the
// server's own access tokens; an identity provider's token is refused with
// 403, since it would go on working (only the provider can revoke it).
func (s *server) handleRevoke(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := mustPrincipal(r); isExternal(p) {
			w.Header().Set("Pragma", "no-cache")
			s.guard.WriteError(w, r, errRevokeExternal)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownPrincipal refuses, with 403, the callers that belong to no project
// of this server (the identity provider's tokens) before next runs.
func (s *server) ownPrincipal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := mustPrincipal(r); isExternal(p) || p.Project == "" {
			s.guard.WriteError(w, r, errManageExternal)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// redactURL drops the user information, query and fragment of a URL, for
// the logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
