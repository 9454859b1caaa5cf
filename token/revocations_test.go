package token

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/internal/testclock"
)

// newSvcClock returns a settable clock for the tests of revocations,
// refresh tokens and the Service.
func newSvcClock() *testclock.Clock {
	return testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// The Revocations contract is checked by tokentest.RunRevocations
// (memory_conformance_test.go); the tests below are of what only
// MemoryRevocations does.

func TestMemoryRevocationsZeroValue(t *testing.T) {
	t.Parallel()
	var m MemoryRevocations
	ctx := t.Context()
	if got, _ := m.IsRevoked(ctx, "a"); got {
		t.Fatal("empty set reports a revocation")
	}
	if err := m.Revoke(ctx, "a", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.IsRevoked(ctx, "a"); !got {
		t.Fatal("zero value lost a revocation")
	}
	if err := NewMemoryRevocations(nil).Revoke(ctx, "a", time.Now()); err != nil {
		t.Fatalf("nil option: %v", err)
	}
}

// TestMemoryRevocationsRecordsNothing: a refused ID, and a token so long
// expired that its entry would be dropped at once, take no memory.
func TestMemoryRevocationsRecordsNothing(t *testing.T) {
	t.Parallel()
	clock := newSvcClock()
	tests := []struct {
		name string
		id   string
		exp  time.Time
	}{
		{"empty ID", "", clock.Now().Add(time.Hour)},
		{"expired beyond the slack", "a", clock.Now().Add(-RevocationSlack)},
		{"expired long ago", "a", clock.Now().Add(-time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := NewMemoryRevocations(WithRevocationsClock(clock.Now))
			_ = m.Revoke(t.Context(), tt.id, tt.exp)
			if m.len() != 0 {
				t.Fatalf("len = %d, want 0", m.len())
			}
		})
	}
}

// TestMemoryRevocationsBounded revokes 100,000 tokens, lets them expire,
// and checks that the next revocation drops every one of them.
func TestMemoryRevocationsBounded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := newSvcClock()
	m := NewMemoryRevocations(WithRevocationsClock(clock.Now))
	const n = 100_000
	for i := range n {
		// Expiry times spread over 15 minutes, like access tokens.
		exp := clock.Now().Add(time.Duration(i%900) * time.Second)
		if err := m.Revoke(ctx, "jti-"+strconv.Itoa(i), exp); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.len(); got != n {
		t.Fatalf("len = %d, want %d", got, n)
	}
	clock.Advance(15*time.Minute + RevocationSlack + revocationBucket)
	if err := m.Revoke(ctx, "fresh", clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := m.len(); got != 1 {
		t.Fatalf("len = %d after every old entry expired, want 1", got)
	}
	for i := range revocationShards {
		sh := &m.shards[i]
		sh.mu.RLock()
		entries, buckets := len(sh.until), len(sh.queue.buckets)
		sh.mu.RUnlock()
		if entries > 1 || buckets > 1 {
			t.Errorf("shard %d holds %d entries and %d buckets", i, entries, buckets)
		}
	}
	if got, _ := m.IsRevoked(ctx, "jti-5"); got {
		t.Error("an expired entry is still reported")
	}
	if got, _ := m.IsRevoked(ctx, "fresh"); !got {
		t.Error("the fresh entry was dropped")
	}
}

// TestMemoryRevocationsHalfExpired checks that pruning keeps what has not
// expired.
func TestMemoryRevocationsHalfExpired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := newSvcClock()
	m := NewMemoryRevocations(WithRevocationsClock(clock.Now))
	for i := range 1000 {
		exp := clock.Now().Add(time.Minute)
		if i%2 == 1 {
			exp = clock.Now().Add(time.Hour)
		}
		if err := m.Revoke(ctx, fmt.Sprint(i), exp); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(10 * time.Minute)
	if err := m.Revoke(ctx, "x", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := m.len(); got != 501 {
		t.Fatalf("len = %d, want 501", got)
	}
	for i := range 1000 {
		got, _ := m.IsRevoked(ctx, fmt.Sprint(i))
		if want := i%2 == 1; got != want {
			t.Fatalf("IsRevoked(%d) = %v, want %v", i, got, want)
		}
	}
}

// TestMemoryRevocationsConcurrentCount revokes the same IDs from several
// goroutines at once: each ID counts once, since IsRevoked trusts the
// count to skip the locks when nothing is revoked.
func TestMemoryRevocationsConcurrentCount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := NewMemoryRevocations()
	const ids = 500
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				if err := m.Revoke(ctx, strconv.Itoa(i), time.Now().Add(time.Hour)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := m.len(); got != ids {
		t.Fatalf("len = %d, want %d", got, ids)
	}
}

func TestMemoryRevocationsIsRevokedDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryRevocations()
	if err := m.Revoke(ctx, "revoked", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"revoked", "not-revoked"} {
		if n := testalloc.Min(100, func() { _, _ = m.IsRevoked(ctx, id) }); n != 0 {
			t.Errorf("IsRevoked(%q) allocates %v times", id, n)
		}
	}
}

func TestExpiryQueue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		at   []int64
		now  int64
		want []int64 // keys handed back (a key is its own time)
	}{
		{"empty", nil, 100, nil},
		{"bucket not ended", []int64{11}, 15, nil},
		{"bucket ended", []int64{11, 19}, 20, []int64{11, 19}},
		{"exact bucket end", []int64{20}, 20, []int64{20}},
		{"only ended buckets", []int64{5, 25, 15, 35}, 20, []int64{5, 15}},
		{"negative times", []int64{-15, -5}, -10, []int64{-15}},
		{"huge times", []int64{math.MaxInt64, math.MaxInt64 - 3}, math.MaxInt64 - 1, nil},
		{"huge times ended", []int64{math.MaxInt64, math.MaxInt64 - 3}, math.MaxInt64, []int64{math.MaxInt64, math.MaxInt64 - 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var q expiryQueue[int64]
			for _, at := range tt.at {
				q.push(at, at, 10)
			}
			var got []int64
			q.expire(tt.now, func(k int64) { got = append(got, k) })
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("expired %v, want %v", got, tt.want)
			}
			for _, k := range got {
				if k > tt.now {
					t.Errorf("key %d handed back before its time %d", k, tt.now)
				}
			}
		})
	}
}

func TestUnixNanoClamps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		t    time.Time
		want int64
	}{
		{"epoch", time.Unix(0, 0), 0},
		{"year 3000", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), math.MaxInt64},
		{"year 1000", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), math.MinInt64},
		{"ordinary", time.Unix(1700000000, 5), 1700000000_000000005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := unixNano(tt.t); got != tt.want {
				t.Fatalf("unixNano = %d, want %d", got, tt.want)
			}
		})
	}
}

func BenchmarkIsRevoked(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{0, 10_000} {
		m := NewMemoryRevocations()
		for i := range size {
			if err := m.Revoke(ctx, "jti-"+strconv.Itoa(i), time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range []struct{ name, id string }{
			{"miss", "MzQ1Njc4OTAxMjM0NTY3OA"},
			{"hit", "jti-42"},
		} {
			if size == 0 && c.name == "hit" {
				continue
			}
			b.Run(fmt.Sprintf("entries=%d/%s", size, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					_, _ = m.IsRevoked(ctx, c.id)
				}
			})
			b.Run(fmt.Sprintf("entries=%d/%s/parallel", size, c.name), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						_, _ = m.IsRevoked(ctx, c.id)
					}
				})
			})
		}
	}
}

func BenchmarkRevoke(b *testing.B) {
	ctx := context.Background()
	m := NewMemoryRevocations()
	exp := time.Now().Add(time.Hour)
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "jti-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = m.Revoke(ctx, ids[i&(len(ids)-1)], exp)
		i++
	}
}
