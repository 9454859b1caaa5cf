package token_test

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// Report token lifecycle events, here to a function; in a service, to
// auth.NewSlogObserver for an audit log and the auth/promobserver module
// for metrics, joined with auth.Observers.
func ExampleWithServiceObserver() {
	ctx := context.Background()
	events := auth.ObserverFunc(func(_ context.Context, e auth.Event) {
		fmt.Println(e.Kind, e.Project, e.TokenID != "", e.Session != "")
	})

	keys, err := keystore.NewManager(keystore.NewMemoryStore())
	if err != nil {
		panic(err)
	}
	key, _, err := keys.Issue(ctx, keystore.KeySpec{Project: "default", Scopes: []string{token.ExchangeScope}})
	if err != nil {
		panic(err)
	}
	principal, err := keys.Authenticate(ctx, key.Plaintext())
	if err != nil {
		panic(err)
	}
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
	svc, err := token.NewService(issuer, verifier, token.NewMemoryRefreshStore(), revocations, keys,
		token.WithServiceObserver(events))
	if err != nil {
		panic(err)
	}

	pair, err := svc.Exchange(ctx, principal, nil)
	if err != nil {
		panic(err)
	}
	if _, err := svc.Refresh(ctx, pair.RefreshToken); err != nil {
		panic(err)
	}
	_, _ = svc.Refresh(ctx, pair.RefreshToken) // spent already: a reuse

	pair, err = svc.Exchange(ctx, principal, nil)
	if err != nil {
		panic(err)
	}
	p, err := verifier.Authenticate(ctx, pair.AccessToken)
	if err != nil {
		panic(err)
	}
	if err := svc.Revoke(ctx, p); err != nil {
		panic(err)
	}
	// Output:
	// token.issued default true true
	// token.refreshed default true true
	// token.refresh_reuse default false true
	// token.issued default true true
	// token.revoked default true true
}
