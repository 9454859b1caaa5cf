package redisfeed_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/redisfeed"
)

// Wiring one instance of a service that runs several: writes go through a
// PublishingStore, and a Feed tells this instance's cache about the
// writes of all of them. (Not run: it needs a Redis server.)
func Example() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("KEYGATE_REDIS_ADDR")})
	defer rdb.Close()

	// The store every instance shares, such as a sqlstore.Store; a
	// MemoryStore stands in for it here.
	var shared keystore.Store = keystore.NewMemoryStore()

	pub, err := redisfeed.NewPublishingStore(shared, rdb)
	if err != nil {
		log.Fatal(err)
	}
	cache, err := keystore.NewCachedStore(pub, keystore.WithInvalidationFeed())
	if err != nil {
		log.Fatal(err)
	}
	feed, err := redisfeed.Listen(ctx, rdb, cache,
		redisfeed.WithBackoff(100*time.Millisecond, 5*time.Second),
		redisfeed.WithHealthCheck(time.Second, 2*time.Second))
	if err != nil {
		log.Fatal(err) // Redis unreachable or the password wrong
	}
	defer feed.Close()

	keys, err := keystore.NewManager(cache)
	if err != nil {
		log.Fatal(err)
	}
	// keys.Verify serves from the cache; keys.Revoke, keys.Rotate and
	// keys.SetDisabled reach every instance's cache within milliseconds.
	_ = keys
}

// A management handler answers ErrNotPublished with a 5xx, so that the
// client retries: the key is revoked, but other instances were not told,
// and revoking again publishes again. (Not run: it needs a Redis server.)
func ExampleErrNotPublished() {
	var keys *keystore.Manager // made as in the package example
	http.HandleFunc("POST /v1/keys/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		_, err := keys.Revoke(r.Context(), r.PathValue("id"))
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			http.Error(w, "no such key", http.StatusNotFound)
		case errors.Is(err, redisfeed.ErrNotPublished):
			w.Header().Set("Retry-After", "1")
			http.Error(w, "revoked here, not yet everywhere: retry", http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, "key store unavailable", http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}
