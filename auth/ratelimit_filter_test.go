package auth

import (
	"context"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestFailureFilterHold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit Limit
		want  time.Duration // the refill time, before the margin
	}{
		{PerMinute("f", 20), time.Minute},
		{Limit{Name: "f", Requests: 20, Period: time.Minute, Burst: 40}, 2 * time.Minute},
		{Limit{Name: "f", Requests: 10, Period: time.Second, Burst: 1}, 100 * time.Millisecond},
		{Limit{Name: "f", Requests: 1, Period: 1 << 62, Burst: 1 << 20}, 1 << 61}, // capped, no overflow
	}
	for _, tt := range tests {
		if got := newFailureFilter(tt.limit).hold; got != int64(tt.want+failureFilterMargin) {
			t.Errorf("hold of %+v = %v, want %v", tt.limit, time.Duration(got), tt.want+failureFilterMargin)
		}
	}
}

func TestFailureFilter(t *testing.T) {
	t.Parallel()
	f := newFailureFilter(PerMinute("f", 20))
	if f.marked("198.51.100.1") {
		t.Fatal("a new filter has a key marked")
	}
	f.mark("198.51.100.1")
	if !f.marked("198.51.100.1") {
		t.Fatal("a marked key is not marked")
	}
	// Another key is marked only when it shares the slot: find one that
	// does and one that does not.
	var same, other string
	for i := 0; same == "" || other == ""; i++ {
		k := fmt.Sprintf("203.0.113.%d", i)
		if f.slot(k) == f.slot("198.51.100.1") {
			same = k
		} else {
			other = k
		}
	}
	if !f.marked(same) {
		t.Error("a key sharing a marked slot is not marked: the filter would hide a budget in use")
	}
	if f.marked(other) {
		t.Error("a key of an unmarked slot is marked")
	}

	// A mark lasts the hold time, and a later mark of the slot never
	// shortens it.
	f.hold = int64(time.Hour)
	f.mark(other)
	until := f.slot(other).Load()
	f.hold = int64(time.Millisecond)
	f.mark(other)
	if got := f.slot(other).Load(); got != until {
		t.Errorf("a shorter mark moved the slot's end from %d to %d", until, got)
	}
	k := "192.0.2.200"
	f.mark(k)
	for deadline := time.Now().Add(5 * time.Second); f.marked(k); {
		if time.Now().After(deadline) {
			t.Fatal("a mark held for 1ms is still there after 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// peekCounter counts a Limiter's Peeks.
type peekCounter struct {
	Limiter
	peeks atomic.Int64
}

func (p *peekCounter) Peek(ctx context.Context, key string, l Limit) (Decision, error) {
	p.peeks.Add(1)
	return p.Limiter.Peek(ctx, key, l)
}

// separateFilterKeys reseeds g's failure filters until each of addrs
// (address budget keys) and each of creds has a slot of its own, so that a
// test can count peeks exactly. Keys that share a slot only make the
// middleware peek at a budget it need not have, which the filter allows,
// once in about a thousand Guards for two keys. g must not be in use yet.
func separateFilterKeys(g *Guard, addrs, creds []string) {
	for _, fk := range []struct {
		f    *failureFilter
		keys []string
	}{{g.limits.seenAddrs, addrs}, {g.limits.seenCreds, creds}} {
		for !distinctSlots(fk.f, fk.keys) {
			fk.f.seed = maphash.MakeSeed()
		}
	}
}

// distinctSlots reports whether keys all have different slots in f.
func distinctSlots(f *failureFilter, keys []string) bool {
	seen := map[*atomic.Int64]bool{}
	for _, k := range keys {
		s := f.slot(k)
		if seen[s] {
			return false
		}
		seen[s] = true
	}
	return true
}

// TestFailureBudgetsPeekedAfterFailure: a client that has not failed costs
// no Peek of its failure budgets; once it fails, its address and its
// credential are peeked at, and other clients still are not.
func TestFailureBudgetsPeekedAfterFailure(t *testing.T) {
	t.Parallel()
	ml, _ := newTestLimiter(t)
	l := &peekCounter{Limiter: ml}
	rl := testLimits(l)
	rl.APIKey = PerMinute("api_key", 100)
	rl.CredentialFailures = PerMinute("credential_failures", 5)
	const bad = "halfred_WrongKey0000000000000000000000"
	g := mustNew(t, keyAuth(nil), WithRateLimits(rl))
	separateFilterKeys(g, []string{"192.0.2.1", "198.51.100.7", "203.0.113.9"}, []string{goodKey, bad})
	h := g.Middleware(okHandler())
	serve := func(addr, cred string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, limitedRequest(addr, cred))
		return rec.Code
	}
	steps := []struct {
		addr, cred string
		status     int
		peeks      int64 // Peeks the request makes
	}{
		{a1, goodKey, 200, 0},
		{a1, goodKey, 200, 0},
		{a1, bad, 401, 0},     // the first failure: nothing was marked
		{a1, goodKey, 200, 1}, // the address failed; the credential did not
		{a2, bad, 401, 1},     // the credential failed; this address did not
		{a2, goodKey, 200, 1}, // this address failed now too
		{"203.0.113.9:443", goodKey, 200, 0},
	}
	for i, s := range steps {
		before := l.peeks.Load()
		if got := serve(s.addr, s.cred); got != s.status {
			t.Fatalf("step %d: status %d, want %d", i, got, s.status)
		}
		if got := l.peeks.Load() - before; got != s.peeks {
			t.Errorf("step %d (%s, %s): %d peeks, want %d", i, s.addr, mask(s.cred), got, s.peeks)
		}
	}
}

// TestFailureBudgetsSharedLimiter: two Guards (two instances) share a
// Limiter. A credential that spent its failure budget at one is refused
// at the other once the other has seen it fail once: each instance lets
// at most one unchecked failure of a key through per refill time.
func TestFailureBudgetsSharedLimiter(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	rl := RateLimits{Limiter: l, CredentialFailures: PerMinute("credential_failures", 3)}
	authnA, authnB := keyAuth(nil), keyAuth(nil)
	ha := mustNew(t, authnA, WithRateLimits(rl)).Middleware(okHandler())
	hb := mustNew(t, authnB, WithRateLimits(rl)).Middleware(okHandler())
	const replayed = "halfred_ReplayedRevokedKey0000000000"
	serve := func(h http.Handler, i int) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, limitedRequest(fmt.Sprintf("198.51.100.%d:443", i), replayed))
		return rec.Code
	}
	for i := range 3 {
		if got := serve(ha, i); got != http.StatusUnauthorized {
			t.Fatalf("A, failure %d: status %d", i, got)
		}
	}
	if got := serve(ha, 3); got != http.StatusTooManyRequests {
		t.Fatalf("A, spent: status %d, want 429", got)
	}
	if got := serve(hb, 4); got != http.StatusUnauthorized || authnB.calls.Load() != 1 {
		t.Fatalf("B, first sight: status %d after %d calls, want 401 after 1 (B had not seen it fail)", got, authnB.calls.Load())
	}
	for i := 5; i < 10; i++ {
		if got := serve(hb, i); got != http.StatusTooManyRequests {
			t.Fatalf("B, request %d: status %d, want 429", i, got)
		}
	}
	if n := authnB.calls.Load(); n != 1 {
		t.Errorf("B authenticated the spent credential %d times, want 1", n)
	}
}

// TestFailureBudgetUnpeekedLimiterDown: a failure from a client that had
// not failed is spent after authentication; when the Limiter fails then
// (open), the 401 carries no RateLimit fields, since no budget was read.
func TestFailureBudgetUnpeekedLimiterDown(t *testing.T) {
	t.Parallel()
	rl := RateLimits{Limiter: &failingLimiter{}, Failures: PerMinute("auth_failures", 2)}
	h := mustNew(t, keyAuth(nil), WithRateLimits(rl), quietLogger()).Middleware(okHandler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, limitedRequest(a1, "halfred_WrongKey0000000000000000000000"))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", rec.Code)
	}
	if policy, limit := rateHeaders(rec); policy != nil || limit != nil {
		t.Errorf("RateLimit-Policy %q, RateLimit %q with the Limiter down, want none", policy, limit)
	}
}
