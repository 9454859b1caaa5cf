package auth

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testclock"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestLimiter(t testing.TB, opts ...MemoryLimiterOption) (*MemoryLimiter, *testclock.Clock) {
	t.Helper()
	clock := testclock.New(t0)
	l, err := NewMemoryLimiter(append([]MemoryLimiterOption{WithLimiterClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l, clock
}

// bucket is the reference model the GCRA is checked against: a token
// bucket holding credit, in nanoseconds, up to span; it gains one
// nanosecond of credit per nanosecond, and a request costs iv.
type bucket struct {
	credit, span, iv int64
	last             int64
}

func (b *bucket) at(now int64) {
	b.credit = min(b.span, b.credit+(now-b.last))
	b.last = now
}

func (b *bucket) decide(now int64, spend bool) Decision {
	b.at(now)
	var d Decision
	if b.credit < b.iv {
		d.RetryAfter = time.Duration(b.iv - b.credit)
		d.Reset = time.Duration(b.span - b.credit)
		return d
	}
	d.Allowed = true
	if spend {
		b.credit -= b.iv
	}
	d.Remaining = int(b.credit / b.iv)
	d.Reset = time.Duration(b.span - b.credit)
	return d
}

// TestGCRAMatchesTokenBucket drives the MemoryLimiter and the reference
// token bucket with the same random requests, peeks and clock steps, for
// random limits, and wants the same Decision every time.
func TestGCRAMatchesTokenBucket(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	for trial := range 300 {
		lim := Limit{
			Name:     "l" + strconv.Itoa(trial),
			Requests: 1 + rng.IntN(20),
			Period:   time.Duration(1+rng.IntN(5000)) * time.Millisecond,
			Burst:    rng.IntN(6),
		}
		l, clock := newTestLimiter(t)
		iv := int64(lim.Interval())
		ref := &bucket{span: int64(lim.MaxBurst()) * iv, iv: iv}
		ref.credit = ref.span
		now := int64(0)
		for step := range 200 {
			switch rng.IntN(4) {
			case 0: // a step of up to two intervals
				dt := rng.Int64N(2*iv + 1)
				clock.Advance(time.Duration(dt))
				now += dt
			case 1:
				got, err := l.Peek(ctx, "k", lim)
				want := ref.decide(now, false)
				want.Limit = lim
				if err != nil || got != want {
					t.Fatalf("trial %d %+v step %d: Peek = %+v, %v; reference %+v", trial, lim, step, got, err, want)
				}
			default:
				got, err := l.Allow(ctx, "k", lim)
				want := ref.decide(now, true)
				want.Limit = lim
				if err != nil || got != want {
					t.Fatalf("trial %d %+v step %d: Allow = %+v, %v; reference %+v", trial, lim, step, got, err, want)
				}
			}
		}
	}
}

// TestMemoryLimiterTable checks hand-computed decisions for 3 a minute
// with bursts of 2: one request every 20 s.
func TestMemoryLimiterTable(t *testing.T) {
	t.Parallel()
	lim := Limit{Name: "t", Requests: 3, Period: time.Minute, Burst: 2}
	l, clock := newTestLimiter(t)
	ctx := context.Background()
	steps := []struct {
		advance time.Duration
		peek    bool
		want    Decision
	}{
		{0, true, Decision{Allowed: true, Remaining: 2}},
		{0, false, Decision{Allowed: true, Remaining: 1, Reset: 20 * time.Second}},
		{5 * time.Second, false, Decision{Allowed: true, Remaining: 0, Reset: 35 * time.Second}},
		{0, false, Decision{Reset: 35 * time.Second, RetryAfter: 15 * time.Second}},
		{0, true, Decision{Reset: 35 * time.Second, RetryAfter: 15 * time.Second}},
		{14 * time.Second, false, Decision{Reset: 21 * time.Second, RetryAfter: time.Second}},
		{time.Second, false, Decision{Allowed: true, Remaining: 0, Reset: 40 * time.Second}},
		{time.Hour, true, Decision{Allowed: true, Remaining: 2}},
		{0, false, Decision{Allowed: true, Remaining: 1, Reset: 20 * time.Second}},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		var got Decision
		if s.peek {
			got, _ = l.Peek(ctx, "key", lim)
		} else {
			got, _ = l.Allow(ctx, "key", lim)
		}
		s.want.Limit = lim
		if got != s.want {
			t.Errorf("step %d: got %+v, want %+v", i, got, s.want)
		}
	}
}

func TestNewMemoryLimiterOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]MemoryLimiterOption{
		"nil option": {nil},
		"nil clock":  {WithLimiterClock(nil)},
		"zero keys":  {WithLimiterMaxKeys(0)},
	} {
		if l, err := NewMemoryLimiter(opts...); err == nil || l != nil {
			t.Errorf("%s: NewMemoryLimiter = %v, %v; want an error", name, l, err)
		}
	}
	for _, n := range []int{1, 7, 64, 100, 5000, 1 << 20} {
		l, err := NewMemoryLimiter(WithLimiterMaxKeys(n))
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for i := range l.shards {
			total += l.shards[i].cap
			if l.shards[i].cap < 1 {
				t.Errorf("max %d: shard %d has room for no key", n, i)
			}
		}
		if total != n {
			t.Errorf("max %d: shards hold %d keys in all", n, total)
		}
	}
}

// TestMemoryLimiterBounded floods a limiter of 10,000 keys with a million
// distinct keys (200,000 under the race detector, which makes each ten
// times slower): it keeps at most 10,000, and its memory stays bounded.
func TestMemoryLimiterBounded(t *testing.T) {
	const maxKeys = 10_000
	flood := 1_000_000
	if raceEnabled {
		flood = 200_000
	}
	l, err := NewMemoryLimiter(WithLimiterMaxKeys(maxKeys))
	if err != nil {
		t.Fatal(err)
	}
	lim := PerMinute("flood", 10)
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 0, 32)
	for i := range flood {
		buf = strconv.AppendInt(append(buf[:0], "key_"...), int64(i), 10)
		if d, _ := l.Allow(ctx, string(buf), lim); !d.Allowed {
			t.Fatalf("the first request of key %d was refused: %+v", i, d)
		}
		if i%100_000 == 0 && l.Len() > maxKeys {
			t.Fatalf("after %d keys the limiter holds %d, more than %d", i+1, l.Len(), maxKeys)
		}
	}
	if n := l.Len(); n > maxKeys || n < maxKeys/2 {
		t.Errorf("after %d keys the limiter holds %d, want at most %d (and not much fewer)", flood, n, maxKeys)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// 10,000 entries of two strings, an int64 and map overhead: well under
	// 4 MB. A limiter that kept every key would hold about 100 MB.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("heap grew by %d bytes for a limiter of %d keys", grown, maxKeys)
	}
	runtime.KeepAlive(l)
}

// TestMemoryLimiterEvictsFullBudgetsFirst: when a shard is full, budgets
// that are full again go first, then those closest to full; a spent budget
// survives a flood of new keys that fits in the room so freed.
func TestMemoryLimiterEvictsFullBudgetsFirst(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(t, WithLimiterMaxKeys(64)) // one shard of 64
	if len(l.shards) != 1 {
		t.Fatalf("%d shards, want 1", len(l.shards))
	}
	ctx := context.Background()
	short := PerMinute("short", 60) // a budget full again 1 s after one request
	long := Limit{Name: "long", Requests: 1, Period: time.Hour}
	if d, _ := l.Allow(ctx, "victim", long); !d.Allowed {
		t.Fatal("first request refused")
	}
	for i := range 63 {
		l.Allow(ctx, "old"+strconv.Itoa(i), short)
	}
	clock.Advance(2 * time.Second) // the 63 short budgets are full again
	for i := range 63 {
		l.Allow(ctx, "new"+strconv.Itoa(i), short)
		if n := l.Len(); n > 64 {
			t.Fatalf("%d keys in a limiter of 64", n)
		}
	}
	if d, _ := l.Peek(ctx, "victim", long); d.Allowed {
		t.Errorf("the spent budget was evicted while full ones could go: %+v", d)
	}
	// Now every budget is live: the next keys evict those closest to
	// full (the short ones), not the hour-long one.
	for i := range 20 {
		l.Allow(ctx, "newer"+strconv.Itoa(i), short)
	}
	if d, _ := l.Peek(ctx, "victim", long); d.Allowed {
		t.Errorf("the budget furthest from full was evicted first: %+v", d)
	}
	if n := l.Len(); n > 64 {
		t.Errorf("%d keys in a limiter of 64", n)
	}
}

// TestMemoryLimiterNamesShareKey: budgets of one key under several limit
// names are kept apart, and eviction removes only the budgets it should
// from a key's chain, wherever they are in it.
func TestMemoryLimiterNamesShareKey(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(t, WithLimiterMaxKeys(64)) // one shard of 64
	ctx := context.Background()
	short := func(name string) Limit { return PerMinute(name, 60) } // full again 1 s after one request
	long := func(name string) Limit { return Limit{Name: name, Requests: 1, Period: time.Hour} }

	// Three names on one key, the long-lived one in the middle of its
	// chain, then a key with only short budgets.
	for _, lim := range []Limit{short("a"), long("b"), short("c")} {
		if d, _ := l.Allow(ctx, "k", lim); !d.Allowed {
			t.Fatalf("%s: first request refused", lim.Name)
		}
	}
	l.Allow(ctx, "k2", short("a"))
	l.Allow(ctx, "k2", short("c"))
	if n := l.Len(); n != 5 {
		t.Fatalf("Len = %d, want 5", n)
	}
	if d, _ := l.Allow(ctx, "k", long("b")); d.Allowed {
		t.Fatal("b's budget of one request allowed a second")
	}
	for _, name := range []string{"a", "c"} {
		if d, _ := l.Peek(ctx, "k", short(name)); d.Remaining != 59 {
			t.Fatalf("k's %s budget: %+v, want 59 left", name, d)
		}
	}

	// Fill the shard with keys of two budgets each.
	for i := 0; l.Len() < 64; i++ {
		l.Allow(ctx, "pair"+strconv.Itoa(i), short("a"))
		l.Allow(ctx, "pair"+strconv.Itoa(i), short("c"))
	}
	clock.Advance(2 * time.Second) // every short budget is full again
	// The next new budget finds the shard full and evicts every full
	// budget, at the head of a chain or not: all but b's and its own.
	l.Allow(ctx, "new", short("a"))
	if n := l.Len(); n != 2 {
		t.Errorf("Len = %d after eviction, want 2: b's spent budget and the new one", n)
	}
	for i := range 64 {
		l.Allow(ctx, "new"+strconv.Itoa(i), short("a"))
		if n := l.Len(); n > 64 {
			t.Fatalf("%d budgets in a limiter of 64", n)
		}
	}
	if d, _ := l.Peek(ctx, "k", long("b")); d.Allowed {
		t.Errorf("the spent budget in the middle of a chain was evicted: %+v", d)
	}
	for _, name := range []string{"a", "c"} {
		if d, _ := l.Peek(ctx, "k", short(name)); d.Remaining != 60 {
			t.Errorf("k's %s budget: %+v, want full", name, d)
		}
	}
	// The count stays true to the chains: spending the rest of the room
	// never takes the limiter past its maximum or below what it holds.
	for i := range 200 {
		l.Allow(ctx, "newer"+strconv.Itoa(i), short("c"))
		if got, n := l.Len(), chainedBudgets(l); got != n || n > 64 {
			t.Fatalf("Len = %d, the chains hold %d, the maximum is 64", got, n)
		}
	}
}

// chainedBudgets counts the budgets l's shards hold, by walking every
// key's chain, for comparison with the counts Len adds up. l must not be
// in use.
func chainedBudgets(l *MemoryLimiter) int {
	n := 0
	for i := range l.shards {
		for _, b := range l.shards[i].m {
			for ; b != nil; b = b.next {
				n++
			}
		}
	}
	return n
}

// TestMemoryLimiterChainsConcurrent spends, peeks at and refunds budgets
// of keys under several names from several goroutines, in a limiter small
// enough to evict all the time: under -race, and with the shards' counts
// equal to what their chains hold at the end.
func TestMemoryLimiterChainsConcurrent(t *testing.T) {
	t.Parallel()
	l, err := NewMemoryLimiter(WithLimiterMaxKeys(64))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lims := []Limit{PerMinute("a", 5), PerMinute("b", 50), {Name: "c", Requests: 1, Period: time.Hour}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 5_000 {
				key, lim := "k"+strconv.Itoa(r.IntN(200)), lims[r.IntN(len(lims))]
				switch r.IntN(3) {
				case 0:
					l.Allow(ctx, key, lim)
				case 1:
					l.Peek(ctx, key, lim)
				default:
					l.Refund(ctx, key, lim)
				}
			}
		}()
	}
	wg.Wait()
	if n, held := l.Len(), chainedBudgets(l); n != held || n > 64 {
		t.Errorf("Len = %d, the chains hold %d, the maximum is 64", n, held)
	}
}

// TestMemoryLimiterParamsCache: Limits that differ in any of Requests,
// Period and Burst get their own parameters, whichever cache slot they
// share, and the cache agrees with gcraParams.
func TestMemoryLimiterParamsCache(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	var lims []Limit
	for _, r := range []int{1, 2, 3, 60, 600, 1 << 20} {
		for _, p := range []time.Duration{time.Second, time.Minute, time.Hour} {
			for _, b := range []int{0, 1, 5} {
				lims = append(lims, Limit{Name: "x", Requests: r, Period: p, Burst: b})
			}
		}
	}
	for round := range 3 {
		for i, lim := range lims {
			// Alternate directions so that slots are overwritten.
			if round == 1 {
				lim = lims[len(lims)-1-i]
			}
			wiv, wspan := gcraParams(lim)
			if iv, span := l.gcraParams(lim); iv != wiv || span != wspan {
				t.Fatalf("%+v: cached parameters %d, %d; want %d, %d", lim, iv, span, wiv, wspan)
			}
		}
	}
	// Concurrent writers and readers of the same slots: a reader never
	// gets a mix of two Limits' parameters.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20_000 {
				lim := lims[(i*7+g*13)%len(lims)]
				wiv, wspan := gcraParams(lim)
				if iv, span := l.gcraParams(lim); iv != wiv || span != wspan {
					t.Errorf("%+v: concurrently cached parameters %d, %d; want %d, %d", lim, iv, span, wiv, wspan)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Through Allow: two limits under one name with a shared key keep
	// their own burst.
	ctx := context.Background()
	one := Limit{Name: "n", Requests: 10, Period: time.Minute, Burst: 1}
	ten := Limit{Name: "n", Requests: 10, Period: time.Minute}
	if d, _ := l.Allow(ctx, "fresh", ten); d.Remaining != 9 {
		t.Errorf("burst 10: Remaining %d after one request, want 9", d.Remaining)
	}
	if d, _ := l.Allow(ctx, "fresh2", one); d.Remaining != 0 {
		t.Errorf("burst 1: Remaining %d after one request, want 0", d.Remaining)
	}
}

// TestMemoryLimiterAllocs: Allow and Peek on a known key allocate nothing.
func TestMemoryLimiterAllocs(t *testing.T) {
	l, _ := newTestLimiter(t)
	ctx := context.Background()
	lim := Limit{Name: "a", Requests: 1 << 30, Period: time.Minute}
	l.Allow(ctx, "key", lim)
	if n := testing.AllocsPerRun(100, func() { l.Allow(ctx, "key", lim) }); n != 0 {
		t.Errorf("Allow: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { l.Peek(ctx, "other", lim) }); n != 0 {
		t.Errorf("Peek: %v allocations", n)
	}
	// More Limits than the parameter cache holds, in turn: misses
	// recompute, they do not allocate.
	var lims []Limit
	for i := range 40 {
		lims = append(lims, Limit{Name: "a", Requests: 1<<30 + i, Period: time.Minute})
	}
	i := 0
	if n := testing.AllocsPerRun(200, func() { l.Allow(ctx, "key", lims[i%len(lims)]); i++ }); n != 0 {
		t.Errorf("Allow with %d Limits in turn: %v allocations", len(lims), n)
	}
}

func TestLimitValidate(t *testing.T) {
	t.Parallel()
	long := ""
	for range 65 {
		long += "a"
	}
	for _, tc := range []struct {
		l  Limit
		ok bool
	}{
		{Limit{}, true},
		{PerMinute("api_key", 600), true},
		{PerHour("a-b.c_D9", 1), true},
		{Limit{Name: "x", Requests: 1, Period: time.Millisecond, Burst: 5}, true},
		{Limit{Name: long[:64], Requests: 1, Period: time.Second}, true},
		{Limit{Name: long, Requests: 1, Period: time.Second}, false},
		{Limit{Name: "a:b", Requests: 1, Period: time.Second}, false},
		{Limit{Name: `a"b`, Requests: 1, Period: time.Second}, false},
		{Limit{Name: "a b", Requests: 1, Period: time.Second}, false},
		{Limit{Name: "a", Requests: 1, Period: time.Second, Burst: -1}, false},
		{Limit{Name: "a", Requests: 1, Period: time.Microsecond}, false},
		{Limit{Name: "a", Requests: 1, Period: time.Hour, Burst: 1 << 40}, false},
	} {
		if err := tc.l.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate = %v, want ok %v", tc.l, err, tc.ok)
		}
	}
	if got := (Limit{}).PolicyName(); got != "default" {
		t.Errorf("PolicyName of the zero Limit = %q", got)
	}
	if got := (Limit{Requests: 3, Period: time.Second}).Interval(); got != time.Second/3 {
		t.Errorf("Interval = %v", got)
	}
	if got := (Limit{Requests: 3, Period: time.Second, Burst: 7}).MaxBurst(); got != 7 {
		t.Errorf("MaxBurst = %v", got)
	}
}
