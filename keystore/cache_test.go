package keystore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// newFakeClock returns a settable clock, safe for concurrent use.
func newFakeClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

var errBackend = errors.New("backend down")

// spyStore wraps a MemoryStore, counts the lookups that reach it, and can
// fail or block them.
type spyStore struct {
	*keystore.MemoryStore

	lookups, gets atomic.Int64

	mu        sync.Mutex
	perDigest map[keystore.Digest]int
	err       error         // returned by lookups when set
	gate      chan struct{} // lookups wait on it when set
	entered   chan struct{} // a lookup sends on it before waiting, when set
}

func newSpyStore() *spyStore {
	return &spyStore{MemoryStore: keystore.NewMemoryStore(), perDigest: map[keystore.Digest]int{}}
}

func (s *spyStore) setErr(err error) { s.mu.Lock(); s.err = err; s.mu.Unlock() }

func (s *spyStore) setGate(gate, entered chan struct{}) {
	s.mu.Lock()
	s.gate, s.entered = gate, entered
	s.mu.Unlock()
}

func (s *spyStore) intercept() error {
	s.mu.Lock()
	gate, entered := s.gate, s.entered
	s.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *spyStore) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	s.lookups.Add(1)
	s.mu.Lock()
	s.perDigest[d]++
	s.mu.Unlock()
	r, lerr := s.MemoryStore.LookupDigest(ctx, d)
	if err := s.intercept(); err != nil {
		return keystore.Record{}, err
	}
	return r, lerr
}

func (s *spyStore) Get(ctx context.Context, id string) (keystore.Record, error) {
	s.gets.Add(1)
	r, gerr := s.MemoryStore.Get(ctx, id)
	if err := s.intercept(); err != nil {
		return keystore.Record{}, err
	}
	return r, gerr
}

func (s *spyStore) callsFor(d keystore.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perDigest[d]
}

// plainStore has only the Store methods: no Toucher, no Disabler.
type plainStore struct{ keystore.Store }

func mustCache(t testing.TB, s keystore.Store, opts ...keystore.CacheOption) *keystore.CachedStore {
	t.Helper()
	c, err := keystore.NewCachedStore(s, opts...)
	if err != nil {
		t.Fatalf("NewCachedStore: %v", err)
	}
	return c
}

var recordSeq atomic.Int64

// newRecord makes a record with a unique ID and digest.
func newRecord(created time.Time) keystore.Record {
	n := recordSeq.Add(1)
	id := "key_cache" + strconv.FormatInt(n, 10)
	return keystore.Record{
		ID:        id,
		Project:   "p",
		Hint:      "halfred_…" + strconv.FormatInt(n%10000, 10),
		Digest:    keystore.Digest(sha256.Sum256([]byte(id))),
		Scopes:    []string{"models:read"},
		CreatedAt: created,
		Metadata:  map[string]string{"owner": "cache-test"},
	}
}

func randomDigest(t testing.TB) keystore.Digest {
	var d keystore.Digest
	if _, err := rand.Read(d[:]); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCachedStoreConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []keystore.CacheOption
	}{
		{"defaults", nil},
		{"tiny", []keystore.CacheOption{keystore.WithMaxEntries(4)}},
		{"feed down", []keystore.CacheOption{keystore.WithInvalidationFeed(), keystore.WithStaleAfter(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) keystore.Store {
				return mustCache(t, keystore.NewMemoryStore(), tc.opts...)
			})
		})
	}
}

func TestNewCachedStoreInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		store keystore.Store
		opt   keystore.CacheOption
	}{
		{"nil store", nil, nil},
		{"negative positive TTL", keystore.NewMemoryStore(), keystore.WithPositiveTTL(-time.Second)},
		{"negative negative TTL", keystore.NewMemoryStore(), keystore.WithNegativeTTL(-time.Second)},
		{"negative stale after", keystore.NewMemoryStore(), keystore.WithStaleAfter(-time.Second)},
		{"zero max entries", keystore.NewMemoryStore(), keystore.WithMaxEntries(0)},
		{"nil clock", keystore.NewMemoryStore(), keystore.WithCacheClock(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []keystore.CacheOption
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			c, err := keystore.NewCachedStore(tc.store, opts...)
			if !errors.Is(err, keystore.ErrInvalidSpec) || c != nil {
				t.Errorf("NewCachedStore: got %v, %v; want nil and an error matching ErrInvalidSpec", c, err)
			}
		})
	}
}

// TestCachedStoreTTL checks what is cached and for how long, by digest
// and by ID.
func TestCachedStoreTTL(t *testing.T) {
	t.Parallel()
	type lookup func(c *keystore.CachedStore, r keystore.Record) error
	byDigest := func(c *keystore.CachedStore, r keystore.Record) error {
		got, err := c.LookupDigest(context.Background(), r.Digest)
		if err == nil && got.ID != r.ID {
			return errors.New("wrong record " + got.ID)
		}
		return err
	}
	byID := func(c *keystore.CachedStore, r keystore.Record) error {
		got, err := c.Get(context.Background(), r.ID)
		if err == nil && got.Digest != r.Digest {
			return errors.New("wrong record " + got.ID)
		}
		return err
	}
	for _, path := range []struct {
		name  string
		do    lookup
		calls func(s *spyStore) int64
	}{
		{"LookupDigest", byDigest, func(s *spyStore) int64 { return s.lookups.Load() }},
		{"Get", byID, func(s *spyStore) int64 { return s.gets.Load() }},
	} {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				name    string
				stored  bool
				ttl     time.Duration
				wantErr error
			}{
				{"found records for the positive TTL", true, 30 * time.Second, nil},
				{"not found for the negative TTL", false, 2 * time.Second, keystore.ErrNotFound},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					clock := newFakeClock()
					s := newSpyStore()
					c := mustCache(t, s, keystore.WithCacheClock(clock.Now),
						keystore.WithPositiveTTL(30*time.Second), keystore.WithNegativeTTL(2*time.Second))
					r := newRecord(clock.Now())
					if tc.stored {
						if err := s.Create(context.Background(), r); err != nil {
							t.Fatal(err)
						}
					}
					want := func(step string, calls int64) {
						t.Helper()
						if err := path.do(c, r); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
							t.Fatalf("%s: got error %v, want %v", step, err, tc.wantErr)
						}
						if got := path.calls(s); got != calls {
							t.Fatalf("%s: %d store calls, want %d", step, got, calls)
						}
					}
					want("first lookup", 1)
					want("second lookup", 1)
					clock.Advance(tc.ttl - time.Nanosecond)
					want("lookup just before the TTL ends", 1)
					clock.Advance(time.Nanosecond)
					want("lookup when the TTL has ended", 2)
					want("lookup after the refresh", 2)
				})
			}
			t.Run("errors are not cached", func(t *testing.T) {
				t.Parallel()
				s := newSpyStore()
				c := mustCache(t, s)
				r := newRecord(time.Now())
				if err := s.Create(context.Background(), r); err != nil {
					t.Fatal(err)
				}
				s.setErr(errBackend)
				for i := range 3 {
					err := path.do(c, r)
					if !errors.Is(err, errBackend) || errors.Is(err, keystore.ErrNotFound) {
						t.Fatalf("lookup %d with the store failing: got %v, want the store's error as is", i, err)
					}
					if got := path.calls(s); got != int64(i+1) {
						t.Fatalf("lookup %d with the store failing: %d store calls, want %d (errors must not be cached)", i, got, i+1)
					}
				}
				s.setErr(nil)
				if err := path.do(c, r); err != nil {
					t.Fatalf("lookup after the store recovered: %v", err)
				}
			})
		})
	}
}

// TestCachedStoreSingleflight makes 1,000 concurrent lookups of one
// uncached digest and checks they share one store call.
func TestCachedStoreSingleflight(t *testing.T) {
	const callers = 1000
	for _, tc := range []struct {
		name    string
		stored  bool
		err     error
		wantErr error
	}{
		{"found", true, nil, nil},
		{"not found", false, nil, keystore.ErrNotFound},
		{"store error", true, errBackend, errBackend},
		// A store that times out on its own (the caller's context is
		// live) is not retried once per waiter.
		{"store timeout", true, context.DeadlineExceeded, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpyStore()
			c := mustCache(t, s)
			r := newRecord(time.Now())
			if tc.stored {
				if err := s.Create(context.Background(), r); err != nil {
					t.Fatal(err)
				}
			}
			s.setErr(tc.err)
			gate := make(chan struct{})
			s.setGate(gate, nil)

			var wg sync.WaitGroup
			errs := make([]error, callers)
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = c.LookupDigest(context.Background(), r.Digest)
				}()
			}
			// Release the store call once every other caller waits on it.
			deadline := time.Now().Add(10 * time.Second)
			for c.Stats().Coalesced < callers-1 {
				if time.Now().After(deadline) {
					close(gate)
					wg.Wait()
					t.Fatalf("only %d of %d callers joined the store call in flight", c.Stats().Coalesced, callers-1)
				}
				time.Sleep(time.Millisecond)
			}
			close(gate)
			wg.Wait()
			s.setGate(nil, nil)

			if n := s.lookups.Load(); n != 1 {
				t.Errorf("%d concurrent lookups made %d store calls, want 1", callers, n)
			}
			for i, err := range errs {
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
					t.Fatalf("caller %d: got %v, want %v", i, err, tc.wantErr)
				}
			}
			_, err := c.LookupDigest(context.Background(), r.Digest)
			wantCalls := int64(1)
			if tc.err != nil {
				wantCalls = 2 // the shared error was not cached
			}
			if n := s.lookups.Load(); n != wantCalls {
				t.Errorf("lookup after the shared call: %d store calls in all, want %d (error: %v)", n, wantCalls, err)
			}
		})
	}
}

// TestCachedStoreSingleflightContext checks that a caller that stops
// waiting gets its context's error, and that a cancelled leader does not
// fail the callers waiting on it.
func TestCachedStoreSingleflightContext(t *testing.T) {
	s := newSpyStore()
	c := mustCache(t, s)
	r := newRecord(time.Now())
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	gate, entered := make(chan struct{}), make(chan struct{}, 2)
	s.setGate(gate, entered)

	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.LookupDigest(leaderCtx, r.Digest)
		leaderErr <- err
	}()
	<-entered // the leader is in the store

	waiterCtx, cancelWaiter := context.WithCancel(context.Background())
	cancelWaiter()
	if _, err := c.LookupDigest(waiterCtx, r.Digest); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a cancelled context: got %v, want context.Canceled", err)
	}

	patient := make(chan error, 1)
	go func() {
		_, err := c.LookupDigest(context.Background(), r.Digest)
		patient <- err
	}()
	for c.Stats().Coalesced < 2 {
		time.Sleep(time.Millisecond)
	}
	// The leader's store call fails with the leader's cancellation.
	s.setErr(context.Canceled)
	cancelLeader()
	gate <- struct{}{}
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: got %v, want context.Canceled", err)
	}
	// The patient waiter retries with its own context.
	select {
	case <-entered:
		s.setErr(nil)
		close(gate)
		if err := <-patient; err != nil {
			t.Errorf("waiter whose leader was cancelled: got %v, want it to retry and succeed", err)
		}
	case err := <-patient:
		close(gate)
		t.Errorf("waiter whose leader was cancelled: got %v without retrying, want it to retry with its own context", err)
	}
	s.setGate(nil, nil)
}

func TestCachedStoreStorePanics(t *testing.T) {
	s := newSpyStore()
	r := newRecord(time.Now())
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	s.setGate(gate, entered)
	pc := mustCache(t, &panicStore{Store: s})

	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		pc.LookupDigest(context.Background(), r.Digest)
	}()
	<-entered
	waiter := make(chan error, 1)
	go func() {
		_, err := pc.LookupDigest(context.Background(), r.Digest)
		waiter <- err
	}()
	for pc.Stats().Coalesced < 1 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	if p := <-recovered; p == nil {
		t.Error("the store's panic did not reach the caller that made the call")
	}
	if err := <-waiter; err == nil || errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("waiter on a store call that panicked: got %v, want a store failure", err)
	}
}

type panicStore struct{ keystore.Store }

func (p *panicStore) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	p.Store.LookupDigest(ctx, d)
	panic("store exploded")
}

// TestCachedStoreBounded floods the cache with distinct random digests:
// Len never exceeds the bound and the heap stays flat.
func TestCachedStoreBounded(t *testing.T) {
	const bound = 1000
	flood := 1_000_000
	if testing.Short() || raceEnabled { // raceEnabled is in format_test.go
		flood = 200_000 // the race detector makes a miss about 8 times slower
	}
	c := mustCache(t, keystore.NewMemoryStore(), keystore.WithMaxEntries(bound))
	ctx := context.Background()
	seed := randomDigest(t)
	var d keystore.Digest
	next := func(i int) keystore.Digest {
		d = seed
		binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(seed[8:])+uint64(i)*0x9E3779B97F4A7C15)
		binary.LittleEndian.PutUint64(d[:8], uint64(i))
		return d
	}
	var before, after runtime.MemStats
	for i := range flood {
		if i == bound*10 { // warm: every slot allocated
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		if _, err := c.LookupDigest(ctx, next(i)); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("lookup %d: %v", i, err)
		}
		if i%1000 == 0 {
			if n := c.Len(); n > bound {
				t.Fatalf("after %d distinct digests Len is %d, above the bound %d", i+1, n, bound)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := c.Len(); n > bound || n < bound/2 {
		t.Errorf("Len after the flood is %d, want at most %d and most slots in use", n, bound)
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d lookups: heap %d → %d bytes (growth %d), %d evictions",
		flood, before.HeapAlloc, after.HeapAlloc, growth, c.Stats().Evictions)
	if growth > 1<<20 {
		t.Errorf("heap grew by %d bytes over %d lookups with a bound of %d entries; want it flat (< 1 MiB)", growth, flood, bound)
	}
	if ev := c.Stats().Evictions; ev < uint64(flood-bound) {
		t.Errorf("%d evictions after %d distinct digests with a bound of %d", ev, flood, bound)
	}
}

// TestCachedStoreFloodKeepsValidKeys checks that unknown keys cannot evict
// valid ones, and that a hot entry survives a flood of one-off entries of
// its own kind (CLOCK).
func TestCachedStoreFloodKeepsValidKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("unknown keys do not evict records", func(t *testing.T) {
		t.Parallel()
		// 200 records fit a bound of 1,000 however they fall into shards.
		const bound, records = 1000, 200
		s := newSpyStore()
		c := mustCache(t, s, keystore.WithMaxEntries(bound))
		var valid []keystore.Record
		for range records {
			r := newRecord(time.Now())
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			valid = append(valid, r)
			if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
				t.Fatal(err)
			}
		}
		for range 20 * bound {
			c.LookupDigest(ctx, randomDigest(t))
		}
		if ev := c.Stats().Evictions; ev < 19*bound {
			t.Fatalf("only %d evictions: the flood did not fill the negative pool", ev)
		}
		before := s.lookups.Load()
		for _, r := range valid {
			if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.lookups.Load() - before; n != 0 {
			t.Errorf("after a flood of unknown keys, %d of %d valid keys had been evicted", n, records)
		}
	})
	t.Run("hot record survives one-off records", func(t *testing.T) {
		t.Parallel()
		const bound = 64
		s := newSpyStore()
		c := mustCache(t, s, keystore.WithMaxEntries(bound))
		hot := newRecord(time.Now())
		if err := s.Create(ctx, hot); err != nil {
			t.Fatal(err)
		}
		for i := range 20 * bound {
			if _, err := c.LookupDigest(ctx, hot.Digest); err != nil {
				t.Fatal(err)
			}
			r := newRecord(time.Now())
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
				t.Fatalf("one-off %d: %v", i, err)
			}
		}
		if n := s.callsFor(hot.Digest); n != 1 {
			t.Errorf("the hot key went to the store %d times during a flood of one-off keys, want 1 (evicted)", n)
		}
		if ev := c.Stats().Evictions; ev == 0 {
			t.Error("no evictions: the flood did not fill the cache")
		}
	})
}

// TestCachedStoreWriteThrough checks that writes through the cache are
// visible in it at once.
func TestCachedStoreWriteThrough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, c *keystore.CachedStore, r keystore.Record) keystore.Record // the expected record
	}{
		{"Revoke", func(t *testing.T, c *keystore.CachedStore, r keystore.Record) keystore.Record {
			got, err := c.Revoke(ctx, r.ID, r.CreatedAt.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			r.RevokedAt = got.RevokedAt
			return r
		}},
		{"Replace", func(t *testing.T, c *keystore.CachedStore, r keystore.Record) keystore.Record {
			next := newRecord(r.CreatedAt)
			// "not found" for the new key is cached first.
			if _, err := c.LookupDigest(ctx, next.Digest); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, next.ID); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatal(err)
			}
			if err := c.Replace(ctx, r.ID, r.CreatedAt.Add(time.Minute), next); err != nil {
				t.Fatal(err)
			}
			if got, err := c.LookupDigest(ctx, next.Digest); err != nil || got.ID != next.ID {
				t.Errorf("LookupDigest of the new key after Replace: %v, %v", got.ID, err)
			}
			if got, err := c.Get(ctx, next.ID); err != nil || got.ID != next.ID {
				t.Errorf("Get of the new key after Replace: %v, %v", got.ID, err)
			}
			r.RevokedAt = r.CreatedAt.Add(time.Minute)
			return r
		}},
		{"SetDisabled", func(t *testing.T, c *keystore.CachedStore, r keystore.Record) keystore.Record {
			if _, err := c.SetDisabled(ctx, r.ID, true); err != nil {
				t.Fatal(err)
			}
			r.Disabled = true
			return r
		}},
		{"Touch", func(t *testing.T, c *keystore.CachedStore, r keystore.Record) keystore.Record {
			if err := c.Touch(ctx, r.ID, r.CreatedAt.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			r.LastUsedAt = r.CreatedAt.Add(time.Hour)
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSpyStore()
			c := mustCache(t, s)
			r := newRecord(time.Now().UTC().Truncate(time.Second))
			if err := c.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			// Warm both paths.
			if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
			want := tc.write(t, c, r)
			got, err := c.LookupDigest(ctx, r.Digest)
			if err != nil {
				t.Fatal(err)
			}
			check := func(how string, got keystore.Record) {
				t.Helper()
				if !got.RevokedAt.Equal(want.RevokedAt) || got.Disabled != want.Disabled || !got.LastUsedAt.Equal(want.LastUsedAt) {
					t.Errorf("%s right after %s through the cache: revoked %v, disabled %v, last used %v; want %v, %v, %v",
						how, tc.name, got.RevokedAt, got.Disabled, got.LastUsedAt, want.RevokedAt, want.Disabled, want.LastUsedAt)
				}
			}
			check("LookupDigest", got)
			got, err = c.Get(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			check("Get", got)
		})
	}
	t.Run("Create after a cached not found", func(t *testing.T) {
		t.Parallel()
		c := mustCache(t, keystore.NewMemoryStore())
		r := newRecord(time.Now())
		if _, err := c.LookupDigest(ctx, r.Digest); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, r.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatal(err)
		}
		if err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
			t.Errorf("LookupDigest right after Create: %v", err)
		}
		if _, err := c.Get(ctx, r.ID); err != nil {
			t.Errorf("Get right after Create: %v", err)
		}
	})
}

// TestCachedStoreRevokeDuringLookup revokes a key while a lookup that read
// the old record is still on its way back: that record must not be cached.
func TestCachedStoreRevokeDuringLookup(t *testing.T) {
	ctx := context.Background()
	s := newSpyStore()
	c := mustCache(t, s)
	r := newRecord(time.Now())
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	s.setGate(gate, entered)
	stale := make(chan keystore.Record, 1)
	go func() {
		got, _ := c.LookupDigest(ctx, r.Digest)
		stale <- got
	}()
	<-entered // the lookup has read the record, not yet revoked
	s.setGate(nil, nil)
	if _, err := c.Revoke(ctx, r.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A lookup after Revoke returned must not share the store call that
	// read the record before it.
	after := make(chan keystore.Record, 1)
	go func() {
		got, _ := c.LookupDigest(ctx, r.Digest)
		after <- got
	}()
	select {
	case got := <-after:
		if got.RevokedAt.IsZero() {
			t.Error("a lookup made after Revoke returned got the record from before it")
		}
	case <-time.After(5 * time.Second):
		t.Error("a lookup made after Revoke returned is waiting on the store call made before it")
	}
	close(gate)
	if got := <-stale; !got.RevokedAt.IsZero() {
		t.Fatal("test setup: the racing lookup already saw the revocation")
	}
	got, err := c.LookupDigest(ctx, r.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got.RevokedAt.IsZero() {
		t.Error("a record read before a Revoke through the cache was cached after it: the revoked key still works")
	}
}

// TestCachedStoreFeed revokes a cached key directly in the store, as
// another instance would, and checks how long this cache keeps honouring
// it in each feed state.
func TestCachedStoreFeed(t *testing.T) {
	t.Parallel()
	const (
		posTTL     = 30 * time.Second
		staleAfter = 5 * time.Second
	)
	for _, tc := range []struct {
		name    string
		opts    []keystore.CacheOption
		setup   func(c *keystore.CachedStore)
		message bool          // the feed delivers the invalidation
		bound   time.Duration // how long the revoked key is still honoured
	}{
		{"no feed", nil, nil, false, posTTL},
		{"healthy feed, message delivered", nil, func(c *keystore.CachedStore) { c.SetFeedHealthy(true) }, true, 0},
		{"healthy feed, message lost", nil, func(c *keystore.CachedStore) { c.SetFeedHealthy(true) }, false, posTTL},
		{"feed down", nil, func(c *keystore.CachedStore) { c.SetFeedHealthy(true); c.SetFeedHealthy(false) }, false, staleAfter},
		{"feed declared, never up", []keystore.CacheOption{keystore.WithInvalidationFeed()}, nil, false, staleAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := newFakeClock()
			s := newSpyStore()
			opts := append([]keystore.CacheOption{keystore.WithCacheClock(clock.Now),
				keystore.WithPositiveTTL(posTTL), keystore.WithStaleAfter(staleAfter)}, tc.opts...)
			c := mustCache(t, s, opts...)
			if tc.setup != nil {
				tc.setup(c)
			}
			r := newRecord(clock.Now())
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
				t.Fatal(err)
			}
			// Another instance revokes the key.
			if _, err := s.Revoke(ctx, r.ID, clock.Now()); err != nil {
				t.Fatal(err)
			}
			if tc.message {
				c.Invalidate(r.ID, keystore.Digest{})
			}
			revoked := func() bool {
				got, err := c.LookupDigest(ctx, r.Digest)
				if err != nil {
					t.Fatal(err)
				}
				return !got.RevokedAt.IsZero()
			}
			if tc.bound > 0 {
				clock.Advance(tc.bound - time.Millisecond)
				if revoked() {
					t.Errorf("revocation seen after %v, before the documented bound %v: the cache is not caching", tc.bound-time.Millisecond, tc.bound)
				}
				clock.Advance(time.Millisecond)
			}
			if !revoked() {
				t.Errorf("a key revoked elsewhere still works after %v, the documented bound", tc.bound)
			}
		})
	}

	t.Run("feed back up drops everything", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newSpyStore()
		c := mustCache(t, s)
		c.SetFeedHealthy(true)
		r := newRecord(time.Now())
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			name  string
			do    func()
			calls int64
		}{
			{"first lookup", func() {}, 1},
			{"cached", func() {}, 1},
			{"feed down, record fresh", func() { c.SetFeedHealthy(false) }, 1},
			{"feed back up", func() { c.SetFeedHealthy(true) }, 2},
			{"healthy again, cached", func() { c.SetFeedHealthy(true) }, 2},
			{"InvalidateAll", c.InvalidateAll, 3},
			{"Invalidate by digest", func() { c.Invalidate("", r.Digest) }, 4},
			{"Invalidate by ID", func() { c.Invalidate(r.ID, keystore.Digest{}) }, 5},
			{"Invalidate another key", func() { c.Invalidate("key_other", randomDigest(t)) }, 5},
		} {
			step.do()
			if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
				t.Fatal(err)
			}
			if n := s.lookups.Load(); n != step.calls {
				t.Errorf("%s: %d store calls, want %d", step.name, n, step.calls)
			}
		}
		if st := c.Stats(); st.Hits != 4 || st.Misses != 5 || st.StoreCalls != 5 {
			t.Errorf("Stats = %+v, want 4 hits, 5 misses, 5 store calls", st)
		}
	})
}

// TestCachedStoreHitAllocs checks that a cache hit does not allocate. Not
// parallel: AllocsPerRun panics in parallel tests.
func TestCachedStoreHitAllocs(t *testing.T) {
	ctx := context.Background()
	c := mustCache(t, keystore.NewMemoryStore())
	r := newRecord(time.Now())
	if err := c.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	unknown := randomDigest(t)
	c.LookupDigest(ctx, r.Digest)
	c.LookupDigest(ctx, unknown)
	for _, tc := range []struct {
		name string
		d    keystore.Digest
	}{{"hit", r.Digest}, {"negative hit", unknown}} {
		t.Run(tc.name, func(t *testing.T) {
			if n := testalloc.Min(1000, func() { c.LookupDigest(ctx, tc.d) }); n != 0 {
				t.Errorf("LookupDigest %s: %v allocations, want 0", tc.name, n)
			}
		})
	}
	if st := c.Stats(); st.Hits < 1000 || st.NegativeHits < 1000 || st.StoreCalls != 2 {
		t.Errorf("Stats = %+v, want ≥ 1000 hits and negative hits, 2 store calls", st)
	}
}

func TestCachedStoreUnsupported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := mustCache(t, plainStore{keystore.NewMemoryStore()})
	r := newRecord(time.Now())
	if err := c.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := c.Touch(ctx, r.ID, time.Now()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Touch over a store without Touch: %v, want errors.ErrUnsupported", err)
	}
	if _, err := c.SetDisabled(ctx, r.ID, true); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("SetDisabled over a store without SetDisabled: %v, want errors.ErrUnsupported", err)
	}
}

// TestCachedStoreManager runs a Manager over the cache: a key revoked or
// disabled through the Manager fails at once, by Verify and CheckKey.
func TestCachedStoreManager(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSpyStore()
	c := mustCache(t, s)
	m, err := keystore.NewManager(c)
	if err != nil {
		t.Fatal(err)
	}
	key, rec, err := m.Issue(ctx, keystore.KeySpec{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Verify(ctx, key.Plaintext()); err != nil {
			t.Fatal(err)
		}
		if err := m.CheckKey(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
	}
	// CheckKey's Get finds the record LookupDigest cached, by ID.
	if l, g := s.lookups.Load(), s.gets.Load(); l != 1 || g != 0 {
		t.Errorf("3 Verify and 3 CheckKey made %d LookupDigest and %d Get store calls, want 1 and 0", l, g)
	}
	if _, err := m.SetDisabled(ctx, rec.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, key.Plaintext()); !errors.Is(err, keystore.ErrDisabled) {
		t.Errorf("Verify right after SetDisabled: %v, want ErrDisabled", err)
	}
	if _, err := m.SetDisabled(ctx, rec.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, key.Plaintext()); !errors.Is(err, keystore.ErrRevoked) {
		t.Errorf("Verify right after Revoke: %v, want ErrRevoked", err)
	}
	if err := m.CheckKey(ctx, rec.ID); !errors.Is(err, keystore.ErrRevoked) {
		t.Errorf("CheckKey right after Revoke: %v, want ErrRevoked", err)
	}
}

// TestCachedStoreConcurrent mixes lookups, revocations and invalidations;
// afterwards every revoked key must look revoked. Run with -race.
func TestCachedStoreConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := keystore.NewMemoryStore()
	c := mustCache(t, s, keystore.WithMaxEntries(32))
	var recs []keystore.Record
	for range 64 {
		r := newRecord(time.Now())
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				r := recs[(i*7+w)%len(recs)]
				switch i % 50 {
				case 0:
					if w%2 == 0 {
						c.Revoke(ctx, r.ID, time.Now())
					}
				case 1:
					c.Invalidate(r.ID, r.Digest)
				case 2:
					c.Touch(ctx, r.ID, time.Now())
				case 3:
					c.Get(ctx, r.ID)
				default:
					if _, err := c.LookupDigest(ctx, r.Digest); err != nil {
						t.Errorf("LookupDigest: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range recs {
		want, _ := s.Get(ctx, r.ID)
		got, err := c.LookupDigest(ctx, r.Digest)
		if err != nil || !got.RevokedAt.Equal(want.RevokedAt) {
			t.Errorf("after the run, key %s: cached RevokedAt %v (%v), store %v", r.ID, got.RevokedAt, err, want.RevokedAt)
		}
	}
	if n := c.Len(); n > 32*3 {
		t.Errorf("Len %d above the bound", n)
	}
}
