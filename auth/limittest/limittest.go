// Package limittest checks that an [auth.Limiter] keeps the contract
// documented on the interface: keygate's in-memory limiter, a Redis one, or
// a user's.
//
//	func TestLimiter(t *testing.T) {
//		limittest.Run(t, func(t *testing.T) auth.Limiter {
//			return mylimiter.New(testClient(t))
//		})
//	}
//
// The suite checks that a Limiter behaves as the generic cell rate
// algorithm (GCRA) does, which is what a token bucket refilled continuously
// also does: a fresh budget allows Burst requests at once; after that one
// request every Period/Requests; a refused request spends nothing; Peek
// never spends; Remaining, Reset and RetryAfter are consistent with that;
// budgets of different keys, and of one key under different limit names,
// are independent, even when the concatenation of name and key is the same
// (name "a" with key "b.c" and name "a.b" with key "c"); the empty name and
// "default" are one budget; a zero [auth.Limit] always allows; and
// concurrent calls never allow more than the budget (run it with -race).
//
// The suite uses real time, with periods short enough that it finishes in
// about a second, and with bounds that allow for a loaded machine and for a
// backend that keeps time to the millisecond only. It uses random keys, so
// a limiter shared by every subtest, or one that already holds budgets,
// passes as well as a fresh one.
package limittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// slack is how far a duration the limiter reports may be off the exact
// value: backends that keep time to the millisecond (Redis) round.
const slack = 5 * time.Millisecond

// Run runs the conformance suite against limiters made by newLimiter. Each
// subtest calls newLimiter for its own limiter, and the subtests run in
// parallel, so newLimiter must be safe for concurrent use; it should
// register any cleanup with t.Cleanup. Being parallel, the subtests run
// after the calling test function returns, and before t's own cleanups:
// a limiter shared by the subtests may be closed in t.Cleanup, not by a
// defer after Run. Run passes a live context and does not test cancellation,
// which a limiter may or may not honour.
func Run(t *testing.T, newLimiter func(t *testing.T) auth.Limiter) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, l auth.Limiter)
	}{
		{"ZeroLimit", testZeroLimit},
		{"Budget", testBudget},
		{"BurstBelowRequests", testBurstBelowRequests},
		{"BurstAboveRequests", testBurstAboveRequests},
		{"Refill", testRefill},
		{"FullAfterReset", testFullAfterReset},
		{"PeekDoesNotSpend", testPeekDoesNotSpend},
		{"KeysIndependent", testKeysIndependent},
		{"NamesIndependent", testNamesIndependent},
		{"EmptyNameIsDefault", testEmptyNameIsDefault},
		{"Concurrent", testConcurrent},
		{"ConcurrentKeys", testConcurrentKeys},
		{"Refund", testRefund},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t)
			if l == nil {
				t.Fatal("newLimiter returned nil")
			}
			tt.fn(t, l)
		})
	}
}

// randomKey returns a key no other test uses, with a separator and a
// non-ASCII character in it: keys are opaque strings.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "limittest:" + hex.EncodeToString(b) + " ключ"
}

// randomName returns a limit name no other test uses, of letters, digits
// and '_'.
func randomName(t *testing.T, base string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base + "_" + hex.EncodeToString(b)
}

func allow(t *testing.T, l auth.Limiter, key string, lim auth.Limit) auth.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("Allow(%q, %+v): %v", key, lim, err)
	}
	return d
}

func peek(t *testing.T, l auth.Limiter, key string, lim auth.Limit) auth.Decision {
	t.Helper()
	d, err := l.Peek(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("Peek(%q, %+v): %v", key, lim, err)
	}
	return d
}

// interval is the time one request's worth of budget takes to come back.
func interval(l auth.Limit) time.Duration { return l.Period / time.Duration(l.Requests) }

func burst(l auth.Limit) int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Requests
}

// checkAllowed checks an allowed Decision: Limit echoed, Remaining as
// expected, no RetryAfter, and a Reset that is the time the spent budget
// takes to come back (within slack, less the time elapsed since the
// sequence started).
func checkAllowed(t *testing.T, what string, d auth.Decision, lim auth.Limit, remaining int, elapsed time.Duration) {
	t.Helper()
	if !d.Allowed {
		t.Fatalf("%s: Allowed = false, want true (%+v)", what, d)
	}
	if d.Limit != lim {
		t.Errorf("%s: Limit = %+v, want the limit passed in, %+v", what, d.Limit, lim)
	}
	if d.Remaining != remaining {
		t.Errorf("%s: Remaining = %d, want %d", what, d.Remaining, remaining)
	}
	if d.RetryAfter != 0 {
		t.Errorf("%s: RetryAfter = %v on an allowed request, want 0", what, d.RetryAfter)
	}
	spent := burst(lim) - remaining
	want := time.Duration(spent) * interval(lim)
	if d.Reset > want+slack || d.Reset < want-elapsed-slack {
		t.Errorf("%s: Reset = %v, want %v (less at most %v elapsed)", what, d.Reset, want, elapsed)
	}
}

// checkRefused checks a refused Decision: Remaining 0, and a RetryAfter of
// at most one interval, no less than the interval less the time elapsed
// since the budget was last spent.
func checkRefused(t *testing.T, what string, d auth.Decision, lim auth.Limit, elapsed time.Duration) {
	t.Helper()
	if d.Allowed {
		t.Fatalf("%s: Allowed = true, want false (%+v)", what, d)
	}
	if d.Limit != lim {
		t.Errorf("%s: Limit = %+v, want the limit passed in, %+v", what, d.Limit, lim)
	}
	if d.Remaining != 0 {
		t.Errorf("%s: Remaining = %d on a refused request, want 0", what, d.Remaining)
	}
	iv := interval(lim)
	if d.RetryAfter <= 0 || d.RetryAfter > iv+slack || d.RetryAfter < iv-elapsed-slack {
		t.Errorf("%s: RetryAfter = %v, want in (0, %v], at least %v less %v elapsed", what, d.RetryAfter, iv, iv, elapsed)
	}
	full := time.Duration(burst(lim)) * iv
	if d.Reset > full+slack || d.Reset < full-elapsed-slack {
		t.Errorf("%s: Reset = %v, want %v (less at most %v elapsed)", what, d.Reset, full, elapsed)
	}
}

func testZeroLimit(t *testing.T, l auth.Limiter) {
	key := randomKey(t)
	for _, lim := range []auth.Limit{
		{},
		{Name: randomName(t, "zero"), Period: time.Minute},
		{Name: randomName(t, "zero"), Requests: 1},
		{Name: randomName(t, "zero"), Requests: -1, Period: time.Minute},
		{Name: randomName(t, "zero"), Requests: 1, Period: -time.Minute},
	} {
		for i := range 50 {
			if d := allow(t, l, key, lim); !d.Allowed {
				t.Fatalf("Allow #%d under the zero limit %+v refused: %+v", i+1, lim, d)
			}
		}
		if d := peek(t, l, key, lim); !d.Allowed {
			t.Fatalf("Peek under the zero limit %+v refused: %+v", lim, d)
		}
	}
}

// testBudget spends a budget of 5 a minute (one request every 12 s): five
// allowed with Remaining 4 to 0, then refused with a RetryAfter of 12 s.
func testBudget(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "budget"), Requests: 5, Period: time.Minute}
	key := randomKey(t)
	start := time.Now()
	for i := range 5 {
		d := allow(t, l, key, lim)
		checkAllowed(t, "request "+itoa(i+1), d, lim, 4-i, time.Since(start))
	}
	for i := range 3 {
		d := allow(t, l, key, lim)
		checkRefused(t, "request "+itoa(6+i), d, lim, time.Since(start))
	}
}

// testBurstBelowRequests: 60 a minute with bursts of 3 allows 3 at once,
// then one a second.
func testBurstBelowRequests(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "burst"), Requests: 60, Period: time.Minute, Burst: 3}
	key := randomKey(t)
	start := time.Now()
	for i := range 3 {
		checkAllowed(t, "request "+itoa(i+1), allow(t, l, key, lim), lim, 2-i, time.Since(start))
	}
	elapsed := time.Since(start)
	d := allow(t, l, key, lim)
	if elapsed > interval(lim)/2 {
		t.Skipf("the machine is too slow for this test: 3 requests took %v", elapsed)
	}
	checkRefused(t, "request 4", d, lim, time.Since(start))
}

// testBurstAboveRequests: 2 a minute with bursts of 4 allows 4 at once.
func testBurstAboveRequests(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "burst"), Requests: 2, Period: time.Minute, Burst: 4}
	key := randomKey(t)
	start := time.Now()
	for i := range 4 {
		checkAllowed(t, "request "+itoa(i+1), allow(t, l, key, lim), lim, 3-i, time.Since(start))
	}
	checkRefused(t, "request 5", allow(t, l, key, lim), lim, time.Since(start))
}

// testRefill spends a burst of 2 at 10 per 2 s (one every 200 ms), is
// refused, is refused again (which must not push the time back), and after
// the first RetryAfter is allowed exactly one more.
func testRefill(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "refill"), Requests: 10, Period: 2 * time.Second, Burst: 2}
	key := randomKey(t)
	start := time.Now()
	allow(t, l, key, lim)
	allow(t, l, key, lim)
	d := allow(t, l, key, lim)
	if elapsed := time.Since(start); d.Allowed {
		if elapsed < interval(lim) {
			t.Fatalf("third request within %v of a burst of 2 allowed: %+v", elapsed, d)
		}
		t.Skipf("the machine is too slow for this test: 3 requests took %v", elapsed)
	}
	checkRefused(t, "request 3", d, lim, time.Since(start))
	for range 5 {
		if d := allow(t, l, key, lim); d.Allowed {
			if time.Since(start) < interval(lim) {
				t.Fatalf("request allowed before the interval passed: %+v", d)
			}
			t.Skipf("the machine is too slow for this test")
		}
	}
	time.Sleep(d.RetryAfter + 2*slack)
	wait := time.Now()
	d2 := allow(t, l, key, lim)
	// One interval has passed, or a little more on a loaded machine.
	if !d2.Allowed || d2.RetryAfter != 0 || d2.Remaining < 0 || d2.Remaining > 1 {
		t.Fatalf("request after RetryAfter = %+v, want allowed, Remaining 0 (or 1 if the sleep overran), RetryAfter 0", d2)
	}
	d3 := allow(t, l, key, lim)
	if d2.Remaining == 0 && d3.Allowed && time.Since(wait) < interval(lim)/2 {
		t.Fatalf("two requests allowed one interval after the budget ran out: %+v", d3)
	}
}

// testFullAfterReset: once Reset has passed, the budget is full again.
func testFullAfterReset(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "reset"), Requests: 4, Period: 400 * time.Millisecond}
	key := randomKey(t)
	var d auth.Decision
	for range 4 {
		d = allow(t, l, key, lim)
	}
	if d.Reset <= 0 || d.Reset > lim.Period+slack {
		t.Fatalf("Reset after spending the whole budget = %v, want in (0, %v]", d.Reset, lim.Period)
	}
	time.Sleep(d.Reset + 2*slack)
	p := peek(t, l, key, lim)
	if !p.Allowed || p.Remaining != 4 {
		t.Fatalf("Peek after Reset = %+v, want allowed with Remaining 4", p)
	}
	if p.Reset > slack {
		t.Errorf("Peek after Reset: Reset = %v, want 0 for a full budget", p.Reset)
	}
	checkAllowed(t, "request after Reset", allow(t, l, key, lim), lim, 3, 0)
}

// testPeekDoesNotSpend: Peek reports how many requests would be allowed
// now, without spending any, on a fresh, a used and a spent budget.
func testPeekDoesNotSpend(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "peek"), Requests: 3, Period: time.Minute}
	key := randomKey(t)
	for i := range 10 {
		p := peek(t, l, key, lim)
		if !p.Allowed || p.Remaining != 3 || p.RetryAfter != 0 || p.Reset > slack || p.Limit != lim {
			t.Fatalf("Peek #%d of a fresh budget = %+v, want allowed, Remaining 3, Reset 0, RetryAfter 0", i+1, p)
		}
	}
	start := time.Now()
	checkAllowed(t, "request 1", allow(t, l, key, lim), lim, 2, 0)
	for range 10 {
		p := peek(t, l, key, lim)
		if !p.Allowed || p.Remaining != 2 || p.RetryAfter != 0 {
			t.Fatalf("Peek after one request = %+v, want allowed, Remaining 2", p)
		}
		if iv := interval(lim); p.Reset > iv+slack || p.Reset < iv-time.Since(start)-slack {
			t.Fatalf("Peek after one request: Reset = %v, want %v", p.Reset, iv)
		}
	}
	checkAllowed(t, "request 2", allow(t, l, key, lim), lim, 1, time.Since(start))
	checkAllowed(t, "request 3", allow(t, l, key, lim), lim, 0, time.Since(start))
	for range 10 {
		p := peek(t, l, key, lim)
		checkRefused(t, "Peek of a spent budget", p, lim, time.Since(start))
	}
	checkRefused(t, "request 4", allow(t, l, key, lim), lim, time.Since(start))
}

// testRefund: a Limiter that implements auth.Refunder gives a spent
// request back, never beyond a full budget, and refunding a key it has
// no budget for does nothing. Other Limiters skip it.
func testRefund(t *testing.T, l auth.Limiter) {
	rf, ok := l.(auth.Refunder)
	if !ok {
		t.Skip("the Limiter does not implement auth.Refunder")
	}
	ctx := context.Background()
	lim := auth.Limit{Name: randomName(t, "refund"), Requests: 3, Period: time.Hour}
	key := randomKey(t)
	for i := range 3 {
		if d := allow(t, l, key, lim); !d.Allowed {
			t.Fatalf("request %d of 3: refused", i+1)
		}
	}
	if d := allow(t, l, key, lim); d.Allowed {
		t.Fatal("request 4 of 3 allowed")
	}
	if err := rf.Refund(ctx, key, lim); err != nil {
		t.Fatal(err)
	}
	if d := peek(t, l, key, lim); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("after a refund of a spent budget: %+v, want one request left", d)
	}
	for range 5 { // more refunds than requests spent
		if err := rf.Refund(ctx, key, lim); err != nil {
			t.Fatal(err)
		}
	}
	if d := peek(t, l, key, lim); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("after refunding more than was spent: %+v, want a full budget of 3, no more", d)
	}
	fresh := randomKey(t)
	if err := rf.Refund(ctx, fresh, lim); err != nil {
		t.Fatal(err)
	}
	if d := peek(t, l, fresh, lim); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("a refund of an untouched key changed its budget: %+v", d)
	}
}

// testKeysIndependent: spending one key's budget leaves every other key's
// whole, including keys that are prefixes or extensions of it.
func testKeysIndependent(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "keys"), Requests: 2, Period: time.Minute}
	key := randomKey(t)
	allow(t, l, key, lim)
	allow(t, l, key, lim)
	if d := allow(t, l, key, lim); d.Allowed {
		t.Fatalf("third request of a budget of 2 allowed: %+v", d)
	}
	for _, other := range []string{key + "x", key[:len(key)-1], "x" + key, randomKey(t)} {
		if p := peek(t, l, other, lim); !p.Allowed || p.Remaining != 2 {
			t.Errorf("Peek(%q) after spending %q = %+v, want a full budget", other, key, p)
		}
		checkAllowed(t, "other key", allow(t, l, other, lim), lim, 1, 0)
	}
}

// testNamesIndependent: one key has a budget per limit name, and
// concatenating name and key with a separator does not merge two budgets.
func testNamesIndependent(t *testing.T, l auth.Limiter) {
	base := randomName(t, "names")
	key := randomKey(t)
	a := auth.Limit{Name: base + "_a", Requests: 2, Period: time.Minute}
	b := auth.Limit{Name: base + "_b", Requests: 2, Period: time.Minute}
	allow(t, l, key, a)
	allow(t, l, key, a)
	if d := allow(t, l, key, a); d.Allowed {
		t.Fatalf("third request of a budget of 2 allowed: %+v", d)
	}
	if p := peek(t, l, key, b); !p.Allowed || p.Remaining != 2 {
		t.Errorf("Peek under %q after spending %q = %+v, want a full budget", b.Name, a.Name, p)
	}
	checkAllowed(t, "other name", allow(t, l, key, b), b, 1, 0)

	// Name N with key "k"+S+K, and name N+S+"k" with key K, for every
	// separator S that may appear in a name ('.', '_', '-', and none at
	// all): a limiter that joins name and key with S must not merge these
	// two budgets.
	for _, sep := range []string{"", ".", "_", "-"} {
		first := auth.Limit{Name: base, Requests: 1, Period: time.Minute}
		second := auth.Limit{Name: base + sep + "k", Requests: 1, Period: time.Minute}
		k := randomKey(t)
		if d := allow(t, l, "k"+sep+k, first); !d.Allowed {
			t.Fatalf("first request under %q refused: %+v", first.Name, d)
		}
		if d := allow(t, l, k, second); !d.Allowed {
			t.Errorf("separator %q: the budget of (%q, %q) was spent by (%q, %q): %+v",
				sep, second.Name, k, first.Name, "k"+sep+k, d)
		}
	}
}

// testEmptyNameIsDefault: a Limit's empty name means "default".
func testEmptyNameIsDefault(t *testing.T, l auth.Limiter) {
	key := randomKey(t)
	empty := auth.Limit{Requests: 2, Period: time.Minute}
	def := auth.Limit{Name: "default", Requests: 2, Period: time.Minute}
	// The budget's clock starts during the first call, which may be slow
	// (a shared limiter's first round trip loads its script), so time is
	// counted from before it.
	start := time.Now()
	checkAllowed(t, "empty name", allow(t, l, key, empty), empty, 1, 0)
	checkAllowed(t, `name "default"`, allow(t, l, key, def), def, 0, time.Since(start))
	checkRefused(t, "empty name, spent", allow(t, l, key, empty), empty, time.Since(start))
}

// testConcurrent: 8 goroutines making 20 requests each against a budget of
// 50 an hour get exactly 50 allowed.
func testConcurrent(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "concurrent"), Requests: 50, Period: time.Hour}
	key := randomKey(t)
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				d, err := l.Allow(context.Background(), key, lim)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if d.Allowed {
					allowed.Add(1)
				} else {
					refused.Add(1)
				}
				if _, err := l.Peek(context.Background(), key, lim); err != nil {
					t.Errorf("Peek: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Errorf("%d of 160 concurrent requests allowed, want exactly the budget, 50", got)
	}
	if got := refused.Load(); got != 110 {
		t.Errorf("%d of 160 concurrent requests refused, want 110", got)
	}
	if p := peek(t, l, key, lim); p.Allowed || p.Remaining != 0 {
		t.Errorf("Peek after the concurrent requests = %+v, want a spent budget", p)
	}
}

// testConcurrentKeys: concurrent requests on 16 keys each get their own
// budget, exactly.
func testConcurrentKeys(t *testing.T, l auth.Limiter) {
	lim := auth.Limit{Name: randomName(t, "concurrentkeys"), Requests: 5, Period: time.Hour}
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = randomKey(t)
	}
	counts := make([]atomic.Int64, len(keys))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 * len(keys) {
				k := (i + g) % len(keys)
				d, err := l.Allow(context.Background(), keys[k], lim)
				if err != nil {
					t.Errorf("Allow: %v", err)
					return
				}
				if d.Allowed {
					counts[k].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i := range counts {
		if got := counts[i].Load(); got != 5 {
			t.Errorf("key %d: %d of 40 requests allowed, want exactly 5", i, got)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
