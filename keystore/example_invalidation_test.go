package keystore_test

import (
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// A custom invalidation feed (over a message queue, say) sends the same
// messages as the PostgreSQL and Redis feeds: the sender encodes the
// changed key, the receiver parses the message and tells its cache.
func ExampleParseInvalidation() {
	cache, err := keystore.NewCachedStore(keystore.NewMemoryStore(), keystore.WithInvalidationFeed())
	if err != nil {
		panic(err)
	}

	// Sender.
	msg, err := keystore.Invalidation{ID: "key_3kTMd9x0aH2bQe7L"}.MarshalText()
	if err != nil {
		panic(err)
	}
	fmt.Println(string(msg))

	// Receiver: a message it cannot read means something was missed.
	m, err := keystore.ParseInvalidation(string(msg))
	if err != nil {
		cache.InvalidateAll()
		return
	}
	cache.Invalidate(m.ID, m.Digest)
	fmt.Println("invalidated", m.ID)

	_, err = keystore.ParseInvalidation(`{"digest":"00"}`)
	fmt.Println(err)
	// Output:
	// {"id":"key_3kTMd9x0aH2bQe7L"}
	// invalidated key_3kTMd9x0aH2bQe7L
	// keystore: malformed invalidation message: no id
}
