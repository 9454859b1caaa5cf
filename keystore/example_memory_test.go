package keystore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/keystore"
)

func ExampleMemoryStore() {
	ctx := context.Background()
	store := keystore.NewMemoryStore()
	issued := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	// The store keeps the digest of a key, never the key. (A Manager
	// computes digests with its Hasher; plain SHA-256 stands in here.)
	key := "halfred_3kTMd9x0aH2bQe7LzYw5Rv8NcJ4pUf1A"
	err := store.Create(ctx, keystore.Record{
		ID:        "key_3kTMd9x0aH2bQe7L",
		Project:   "default",
		Name:      "ci",
		Hint:      "halfred_…Uf1A",
		Digest:    sha256.Sum256([]byte(key)),
		Scopes:    []string{"models:read", "chat:write"},
		CreatedAt: issued,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Each request looks up the digest of the key it presents.
	r, err := store.LookupDigest(ctx, sha256.Sum256([]byte(key)))
	fmt.Println(r.ID, r.Scopes, err)
	_, err = store.LookupDigest(ctx, sha256.Sum256([]byte("halfred_guess")))
	fmt.Println(errors.Is(err, keystore.ErrNotFound))

	// A revocation is visible to the next lookup.
	if _, err := store.Revoke(ctx, r.ID, issued.Add(time.Hour)); err != nil {
		fmt.Println(err)
		return
	}
	r, _ = store.LookupDigest(ctx, sha256.Sum256([]byte(key)))
	fmt.Println("revoked:", r.RevokedBy(issued.Add(2*time.Hour)))

	// List shows revoked keys too, without their digests.
	list, _ := store.List(ctx, "default")
	fmt.Println(len(list), list[0].Hint, list[0].Digest.IsZero())
	// Output:
	// key_3kTMd9x0aH2bQe7L [models:read chat:write] <nil>
	// true
	// revoked: true
	// 1 halfred_…Uf1A true
}
