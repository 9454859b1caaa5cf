package token_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// An Issuer signs short-lived access tokens for API-key principals; a
// Verifier over the Issuer's KeySet checks them.
func ExampleIssuer() {
	ctx := context.Background()
	key, err := token.GenerateSigningKey(token.EdDSA, nil) // keep it in a secret store
	if err != nil {
		panic(err)
	}
	issuer, err := token.NewIssuer("https://api.example.com", key) // 15-minute tokens
	if err != nil {
		panic(err)
	}
	verifier, err := token.NewVerifier(issuer.KeySet(),
		token.WithExpectedIssuer(issuer.Name()),
		token.WithExpectedAudience("https://api.example.com"))
	if err != nil {
		panic(err)
	}

	// The principal of a verified API key, as the auth middleware puts it
	// in the request context.
	apiKey := auth.Principal{
		Method:  auth.MethodAPIKey,
		KeyID:   "key_3kTMd9x0aH2bQe7L",
		Project: "acme",
		Scopes:  []string{"models:read", "chat:write", "tokens:issue"},
	}
	tok, _, err := issuer.Issue(apiKey, []string{"models:read", "chat:write"}, "")
	if err != nil {
		panic(err)
	}

	claims, err := verifier.Verify(ctx, tok)
	if err != nil {
		panic(err)
	}
	fmt.Println("sub:", claims.Subject)
	fmt.Println("scope:", claims.Scope)
	fmt.Println("project:", claims.Project)
	fmt.Println("aud:", claims.Audience)
	fmt.Println("lifetime:", claims.ExpiresAt.Sub(claims.IssuedAt.Time))
	// Output:
	// sub: key_3kTMd9x0aH2bQe7L
	// scope: chat:write models:read
	// project: acme
	// aud: [https://api.example.com]
	// lifetime: 15m0s
}

// With auth.Dispatch, one Authorization: Bearer header carries either an
// API key or an access token: the Verifier recognises JWTs by their shape,
// and the keystore Manager takes everything else. Revoking the API key
// ends the tokens exchanged from it on their next request.
func ExampleVerifier_Authenticate() {
	ctx := context.Background()
	manager, err := keystore.NewManager(keystore.NewMemoryStore())
	if err != nil {
		panic(err)
	}
	key, _, err := manager.Issue(ctx, keystore.KeySpec{Project: "acme", Scopes: []string{"models:read", "tokens:issue"}})
	if err != nil {
		panic(err)
	}

	signer, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		panic(err)
	}
	issuer, err := token.NewIssuer("https://api.example.com", signer)
	if err != nil {
		panic(err)
	}
	verifier, err := token.NewVerifier(issuer.KeySet(),
		token.WithExpectedIssuer(issuer.Name()),
		token.WithExpectedAudience("https://api.example.com"),
		token.WithRevocations(token.NewMemoryRevocations()),
		token.WithKeyChecker(manager)) // revoking the key ends its tokens
	if err != nil {
		panic(err)
	}

	guard, err := auth.New(auth.Dispatch(verifier, manager))
	if err != nil {
		panic(err)
	}
	handler := guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		fmt.Fprintf(w, "%s %s", p.Method, strings.Join(p.Scopes, ","))
	}))
	call := func(credential string) {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.Header.Set("Authorization", "Bearer "+credential)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
			return
		}
		fmt.Println(w.Code, w.Body)
	}

	// Exchange the API key for a token narrowed to models:read.
	p, err := manager.Authenticate(ctx, key.Plaintext())
	if err != nil {
		panic(err)
	}
	tok, _, err := issuer.Issue(p, []string{"models:read"}, "")
	if err != nil {
		panic(err)
	}

	call(key.Plaintext())
	call(tok)
	if _, err := manager.Revoke(ctx, p.KeyID); err != nil {
		panic(err)
	}
	call(tok)
	// Output:
	// 200 api_key models:read,tokens:issue
	// 200 access_token models:read
	// 401 Bearer realm="api", error="invalid_token"
}
