package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// A Manager issues a key once, verifies it on every request, and rotates
// or revokes it.
func ExampleManager() {
	ctx := context.Background()
	hasher, err := keystore.NewHasher([]byte("pepper: keep it out of the database"))
	if err != nil {
		panic(err)
	}
	m, err := keystore.NewManager(keystore.NewMemoryStore(), keystore.WithHasher(hasher))
	if err != nil {
		panic(err)
	}

	key, rec, err := m.Issue(ctx, keystore.KeySpec{
		Project: "default",
		Name:    "ci",
		Scopes:  []string{"models:read"},
	})
	if err != nil {
		panic(err)
	}
	// Show key.Plaintext() to the user once; the store keeps only a digest.
	fmt.Println("hint shape:", strings.HasPrefix(rec.Hint, "halfred_…"), len(rec.Hint) == len("halfred_…")+4)

	got, err := m.Verify(ctx, key.Plaintext())
	fmt.Println("verify:", got.ID == rec.ID, err)

	next, _, err := m.Rotate(ctx, rec.ID, 0) // "revoke key & get a new one"
	if err != nil {
		panic(err)
	}
	_, err = m.Verify(ctx, key.Plaintext())
	fmt.Println("old key:", errors.Is(err, keystore.ErrRevoked))
	_, err = m.Verify(ctx, next.Plaintext())
	fmt.Println("new key:", err)

	_, err = m.Verify(ctx, "HALFRED_"+next.Plaintext()[len("halfred_"):])
	fmt.Println(err)
	// Output:
	// hint shape: true true
	// verify: true <nil>
	// old key: true
	// new key: <nil>
	// keystore: wrong API key prefix: API keys start with "halfred_"
}
