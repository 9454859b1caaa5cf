package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// ExampleService mounts the three token endpoints and runs a session
// through them: exchange an API key for a pair, refresh it, revoke it.
func ExampleService() {
	ctx := context.Background()

	// API keys, and one key allowed to get tokens.
	keys, err := keystore.NewManager(keystore.NewMemoryStore())
	if err != nil {
		panic(err)
	}
	key, _, err := keys.Issue(ctx, keystore.KeySpec{
		Project: "default",
		Scopes:  []string{"models:read", "chat:write", token.ExchangeScope},
	})
	if err != nil {
		panic(err)
	}

	// An issuer, and a verifier that consults the same revocations and
	// the key manager, so that revoking a token or a key takes effect at
	// once.
	signer, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		panic(err)
	}
	const iss = "https://api.example.com"
	issuer, err := token.NewIssuer(iss, signer)
	if err != nil {
		panic(err)
	}
	revocations := token.NewMemoryRevocations()
	verifier, err := token.NewVerifier(issuer.KeySet(),
		token.WithExpectedIssuer(iss), token.WithExpectedAudience(iss),
		token.WithRevocations(revocations), token.WithKeyChecker(keys))
	if err != nil {
		panic(err)
	}
	refreshFormat := keystore.MustFormat(keystore.WithPrefix("halfredrt"))
	svc, err := token.NewService(issuer, verifier, token.NewMemoryRefreshStore(), revocations, keys,
		token.WithRefreshFormat(refreshFormat))
	if err != nil {
		panic(err)
	}

	// One Guard takes API keys and access tokens alike.
	guard, err := auth.New(auth.Dispatch(verifier, keys))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/auth/token", guard.Middleware(svc.TokenHandler()))
	mux.Handle("/v1/auth/refresh", svc.RefreshHandler())
	mux.Handle("/v1/auth/revoke", guard.Middleware(svc.RevokeHandler()))

	post := func(path, credential, body string) (int, token.Pair) {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		if credential != "" {
			r.Header.Set("Authorization", "Bearer "+credential)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		var pair token.Pair
		_ = json.Unmarshal(w.Body.Bytes(), &pair)
		return w.Code, pair
	}

	status, pair := post("/v1/auth/token", key.Plaintext(), `{"scopes":["models:read"]}`)
	fmt.Println("exchange:", status, pair.TokenType, pair.ExpiresIn, pair.Scope)

	status, next := post("/v1/auth/refresh", "", `{"refresh_token":"`+pair.RefreshToken+`"}`)
	fmt.Println("refresh:", status, next.RefreshToken != pair.RefreshToken)

	status, _ = post("/v1/auth/revoke", next.AccessToken, "")
	fmt.Println("revoke:", status)

	_, err = verifier.Verify(ctx, next.AccessToken)
	fmt.Println("access token revoked:", errors.Is(err, token.ErrRevoked))
	status, _ = post("/v1/auth/refresh", "", `{"refresh_token":"`+next.RefreshToken+`"}`)
	fmt.Println("refresh after revoke:", status)

	// Output:
	// exchange: 200 Bearer 900 models:read
	// refresh: 200 true
	// revoke: 204
	// access token revoked: true
	// refresh after revoke: 401
}
