package keystore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// slowUsageStore is a MemoryStore whose RecordUsage waits for release,
// and which counts LookupDigest calls.
type slowUsageStore struct {
	*keystore.MemoryStore
	lookups atomic.Int64
	started chan struct{}
	release chan struct{}
}

func (s *slowUsageStore) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	s.lookups.Add(1)
	return s.MemoryStore.LookupDigest(ctx, d)
}

func (s *slowUsageStore) RecordUsage(ctx context.Context, batch []keystore.Usage) error {
	close(s.started)
	<-s.release
	return s.MemoryStore.RecordUsage(ctx, batch)
}

// TestCachedStoreUsageWriteKeepsCaching: while a usage batch is being
// written, other keys are still cached and concurrent misses still share
// one store call: a flush, which may take seconds with many keys, must not
// leave the store unprotected.
func TestCachedStoreUsageWriteKeepsCaching(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := &slowUsageStore{MemoryStore: keystore.NewMemoryStore(), started: make(chan struct{}), release: make(chan struct{})}
	written, other := newRecord(time.Now()), newRecord(time.Now())
	for _, r := range []keystore.Record{written, other} {
		if err := store.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	c := mustCache(t, store)
	if _, err := c.LookupDigest(ctx, written.Digest); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() {
		flushed <- c.RecordUsage(ctx, []keystore.Usage{{KeyID: written.ID, Requests: 5, LastUsedAt: time.Now()}})
	}()
	<-store.started

	before := store.lookups.Load()
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.LookupDigest(ctx, other.Digest); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range 100 {
		if _, err := c.LookupDigest(ctx, other.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.lookups.Load() - before; n > 5 {
		t.Errorf("%d store lookups of one key during a usage write, want it cached (at most a few)", n)
	}

	close(store.release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	got, err := c.LookupDigest(ctx, written.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got.UsageCount != 5 {
		t.Errorf("cached UsageCount = %d after the write, want 5", got.UsageCount)
	}
}
