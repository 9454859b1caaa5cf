package redisfeed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/keystore"
)

// instance is one service instance: a Manager over a cache over a
// publishing store over the store all instances share, and a Feed.
type instance struct {
	pub   *PublishingStore
	cache *keystore.CachedStore
	keys  *keystore.Manager
	rec   *recorder
	feed  *Feed
}

func newInstance(t *testing.T, shared keystore.Store, client redis.UniversalClient, ch string) *instance {
	t.Helper()
	in := &instance{}
	var err error
	if in.pub, err = NewPublishingStore(shared, client, WithChannel(ch), WithLogger(quiet)); err != nil {
		t.Fatal(err)
	}
	if in.cache, err = keystore.NewCachedStore(in.pub, keystore.WithInvalidationFeed()); err != nil {
		t.Fatal(err)
	}
	if in.keys, err = keystore.NewManager(in.cache); err != nil {
		t.Fatal(err)
	}
	in.rec = &recorder{next: in.cache}
	if in.feed, err = Listen(t.Context(), client, in.rec, fastFeed(ch)...); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { in.feed.Close() })
	return in
}

// verifyCached verifies key twice through in and checks that the second
// time was answered from the cache.
func (in *instance) verifyCached(t *testing.T, key keystore.Key) {
	t.Helper()
	ctx := context.Background()
	if _, err := in.keys.Verify(ctx, key.Plaintext()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	hits := in.cache.Stats().Hits
	if _, err := in.keys.Verify(ctx, key.Plaintext()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if in.cache.Stats().Hits == hits {
		t.Fatal("second Verify was not a cache hit")
	}
}

// TestTwoInstances runs two instances over one MemoryStore: a key revoked,
// rotated or disabled through A stops working on B, whose cache held it,
// well before B's cache would have expired it.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	client, _ := newClient(t, addr)
	ch := uniqueChannel()
	shared := keystore.NewMemoryStore()
	a := newInstance(t, shared, client, ch)
	b := newInstance(t, shared, client, ch)
	ctx := t.Context()

	// issue issues a key through A and warms both caches with it.
	issue := func(t *testing.T) (keystore.Key, keystore.Record) {
		t.Helper()
		key, rec, err := a.keys.Issue(ctx, keystore.KeySpec{Project: "p"})
		if err != nil {
			t.Fatal(err)
		}
		a.verifyCached(t, key)
		b.verifyCached(t, key)
		return key, rec
	}
	// failsOnB waits until B's Manager rejects key with want (a 401).
	failsOnB := func(t *testing.T, what string, key keystore.Key, want error) {
		t.Helper()
		took := eventually(t, what, func() bool {
			_, err := b.keys.Verify(ctx, key.Plaintext())
			return errors.Is(err, want)
		})
		t.Logf("%s seen by B after %v", what, took)
	}

	t.Run("control: a write that is not published is not seen", func(t *testing.T) {
		key, rec := issue(t)
		if _, err := shared.Revoke(ctx, rec.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := b.keys.Verify(ctx, key.Plaintext()); err != nil {
			t.Fatalf("B: Verify of a key revoked behind its cache's back: %v; the test cannot tell the feed from a cache miss", err)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		key, rec := issue(t)
		if _, err := a.keys.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		failsOnB(t, "revocation", key, keystore.ErrRevoked)
		if _, err := a.keys.Verify(ctx, key.Plaintext()); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("A: Verify after Revoke: %v, want ErrRevoked", err)
		}
	})
	t.Run("rotate", func(t *testing.T) {
		key, rec := issue(t)
		next, _, err := a.keys.Rotate(ctx, rec.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		failsOnB(t, "rotation", key, keystore.ErrRevoked)
		if _, err := b.keys.Verify(ctx, next.Plaintext()); err != nil {
			t.Fatalf("B: Verify of the new key: %v", err)
		}
		// The message carried the old key's digest, read back from the store.
		var got event
		for _, e := range b.rec.log() {
			if e.kind == "invalidate" && e.id == rec.ID {
				got = e
			}
		}
		if got.d != rec.Digest {
			t.Fatalf("B was told digest %v for the rotated key, want %v", got.d, rec.Digest)
		}
	})
	t.Run("disable and enable", func(t *testing.T) {
		key, rec := issue(t)
		if _, err := a.keys.SetDisabled(ctx, rec.ID, true); err != nil {
			t.Fatal(err)
		}
		failsOnB(t, "disable", key, keystore.ErrDisabled)
		if _, err := b.keys.Verify(ctx, key.Plaintext()); !errors.Is(err, keystore.ErrDisabled) {
			t.Fatal("B: disabled key not cached as disabled")
		}
		if _, err := a.keys.SetDisabled(ctx, rec.ID, false); err != nil {
			t.Fatal(err)
		}
		eventually(t, "enable", func() bool {
			_, err := b.keys.Verify(ctx, key.Plaintext())
			return err == nil
		})
	})
	t.Run("failed write publishes nothing", func(t *testing.T) {
		before := len(b.rec.log())
		if _, err := a.keys.Revoke(ctx, "key_nosuchkey"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Revoke of an unknown key: %v, want ErrNotFound", err)
		}
		if _, err := a.keys.SetDisabled(ctx, "key_nosuchkey", true); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("SetDisabled of an unknown key: %v, want ErrNotFound", err)
		}
		// A marker published after them arrives after anything they sent.
		_, rec := issue(t)
		if _, err := a.keys.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, "marker", func() bool {
			for _, e := range b.rec.log()[before:] {
				if e.id == rec.ID {
					return true
				}
			}
			return false
		})
		for _, e := range b.rec.log()[before:] {
			if e.kind == "invalidate" && e.id != rec.ID {
				t.Fatalf("B was told about %q", e.id)
			}
		}
	})
}
