package keystore_test

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// Report key lifecycle events: to an audit log (auth.NewSlogObserver),
// to metrics (the auth/promobserver module), or, here, to a function.
func ExampleWithObserver() {
	events := auth.ObserverFunc(func(_ context.Context, e auth.Event) {
		fmt.Println(e.Kind, e.Project, e.PreviousKeyID != "")
	})
	keys, err := keystore.NewManager(keystore.NewMemoryStore(), keystore.WithObserver(events))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_, old, err := keys.Issue(ctx, keystore.KeySpec{Project: "default"})
	if err != nil {
		panic(err)
	}
	_, next, err := keys.Rotate(ctx, old.ID, 0)
	if err != nil {
		panic(err)
	}
	if _, err := keys.Revoke(ctx, next.ID); err != nil {
		panic(err)
	}
	// Output:
	// key.created default false
	// key.rotated default true
	// key.revoked default false
}
