package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/keygate/keygate/keystore"
)

// A CachedStore in front of a store: a key seen again costs no store call,
// and a key revoked through the cache fails on the very next request.
func ExampleCachedStore() {
	ctx := context.Background()
	cache, err := keystore.NewCachedStore(keystore.NewMemoryStore(), // or a SQL store
		keystore.WithPositiveTTL(10*time.Second),
		keystore.WithNegativeTTL(2*time.Second),
		keystore.WithMaxEntries(100_000),
	)
	if err != nil {
		log.Fatal(err)
	}
	keys, err := keystore.NewManager(cache)
	if err != nil {
		log.Fatal(err)
	}
	key, rec, err := keys.Issue(ctx, keystore.KeySpec{Project: "default"})
	if err != nil {
		log.Fatal(err)
	}

	for range 3 {
		if _, err := keys.Verify(ctx, key.Plaintext()); err != nil {
			log.Fatal(err)
		}
	}
	st := cache.Stats()
	fmt.Printf("3 requests: %d store call, %d hits\n", st.StoreCalls, st.Hits)

	// An invalidation feed would call cache.Invalidate for keys revoked by
	// other instances; a revocation through this cache needs nothing more.
	if _, err := keys.Revoke(ctx, rec.ID); err != nil {
		log.Fatal(err)
	}
	_, err = keys.Verify(ctx, key.Plaintext())
	fmt.Println("after Revoke:", errors.Is(err, keystore.ErrRevoked))
	// Output:
	// 3 requests: 1 store call, 2 hits
	// after Revoke: true
}
