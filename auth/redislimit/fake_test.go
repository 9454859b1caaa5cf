package redislimit_test

// Tests on an in-process Redis (miniredis) whose clock the test sets, so
// that durations can be checked exactly. They need no Redis server. The
// same script runs on a real Redis in limiter_test.go.

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/redislimit"
)

// TestExact walks budgets through time on a fake clock and checks every
// field of every Decision.
func TestExact(t *testing.T) {
	type step struct {
		advance time.Duration // before the call
		peek    bool          // Peek instead of Allow
		want    auth.Decision // Limit is filled in
	}
	allowed := func(remaining int, reset time.Duration) auth.Decision {
		return auth.Decision{Allowed: true, Remaining: remaining, Reset: reset}
	}
	refused := func(reset, retry time.Duration) auth.Decision {
		return auth.Decision{Reset: reset, RetryAfter: retry}
	}
	s := time.Second
	tests := []struct {
		name  string
		lim   auth.Limit
		steps []step
	}{
		{"3 a minute", auth.PerMinute("m", 3), []step{
			{0, true, allowed(3, 0)},
			{0, false, allowed(2, 20*s)},
			{0, false, allowed(1, 40*s)},
			{0, false, allowed(0, 60*s)},
			{0, false, refused(60*s, 20*s)},
			{0, true, refused(60*s, 20*s)},
			{5 * s, false, refused(55*s, 15*s)}, // refusals spend nothing
			{15 * s, true, allowed(1, 40*s)},
			{0, false, allowed(0, 60*s)},
			{60 * s, true, allowed(3, 0)},
			{time.Hour, false, allowed(2, 20*s)},
		}},
		{"burst 2 of 60 a minute", auth.Limit{Name: "b", Requests: 60, Period: time.Minute, Burst: 2}, []step{
			{0, false, allowed(1, s)},
			{0, false, allowed(0, 2*s)},
			{0, false, refused(2*s, s)},
			{500 * time.Millisecond, false, refused(1500*time.Millisecond, 500*time.Millisecond)},
			{500 * time.Millisecond, false, allowed(0, 2*s)},
			{1500 * time.Millisecond, true, allowed(1, 500*time.Millisecond)},
		}},
		{"burst 4 of 2 an hour", auth.Limit{Name: "h", Requests: 2, Period: time.Hour, Burst: 4}, []step{
			{0, false, allowed(3, 30*time.Minute)},
			{0, false, allowed(2, time.Hour)},
			{0, false, allowed(1, 90*time.Minute)},
			{0, false, allowed(0, 2*time.Hour)},
			{0, false, refused(2*time.Hour, 30*time.Minute)},
		}},
		// 3 per 100ns is below Validate's millisecond; 3 per second has an
		// interval of 333333333ns, which is no whole number of µs.
		{"interval with nanoseconds", auth.Limit{Name: "ns", Requests: 3, Period: s}, []step{
			{0, false, allowed(2, 333333333)},
			{0, false, allowed(1, 666666666)},
			{0, false, allowed(0, 999999999)},
			{0, false, refused(999999999, 333333333)},
			{333333 * time.Microsecond, false, refused(666666999, 333)},
			{time.Microsecond, false, allowed(0, 999999332)},
		}},
		{"empty name", auth.Limit{Requests: 1, Period: s}, []step{
			{0, false, allowed(0, s)},
			{0, false, refused(s, s)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newFakeRedis(t)
			l, err := redislimit.New(c, redislimit.WithTimeout(testTimeout))
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				f.advance(st.advance)
				fn := l.Allow
				if st.peek {
					fn = l.Peek
				}
				got, err := fn(context.Background(), "key", tt.lim)
				if err != nil {
					t.Fatalf("step %d: %v", i+1, err)
				}
				st.want.Limit = tt.lim
				if got != st.want {
					t.Fatalf("step %d (peek %v, +%v):\ngot  %+v\nwant %+v", i+1, st.peek, st.advance, got, st.want)
				}
			}
		})
	}
}

// TestFakeExpiry: the key lives exactly until the budget is full again,
// rounded up to the millisecond.
func TestFakeExpiry(t *testing.T) {
	f, c := newFakeRedis(t)
	l, err := redislimit.New(c, redislimit.WithTimeout(testTimeout))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lim := auth.Limit{Name: "e", Requests: 3, Period: time.Second} // 333333333ns each
	for i, want := range []time.Duration{334, 667, 1000} {
		if _, err := l.Allow(ctx, "k", lim); err != nil {
			t.Fatal(err)
		}
		if got := f.TTL(l.Key("k", lim)); got != want*time.Millisecond {
			t.Fatalf("after Allow %d: TTL %v, want %vms", i+1, got, want)
		}
	}
	f.advance(999 * time.Millisecond)
	if !f.Exists(l.Key("k", lim)) {
		t.Fatal("key gone before the budget was full")
	}
	f.advance(time.Millisecond)
	if f.Exists(l.Key("k", lim)) {
		t.Fatal("key still there when the budget was full")
	}
	if n := len(f.Keys()); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// TestMatchesMemoryLimiter runs random calls at random times against this
// Limiter and auth.MemoryLimiter on the same fake clock, and requires the
// same Decisions: the two implement one algorithm.
func TestMatchesMemoryLimiter(t *testing.T) {
	limits := []auth.Limit{
		auth.PerMinute("m", 3),
		auth.PerHour("h", 100),
		{Name: "b", Requests: 10, Period: time.Second, Burst: 2},
		{Name: "n", Requests: 7, Period: 3 * time.Second, Burst: 9},
		{Name: "ms", Requests: 1, Period: time.Millisecond},
	}
	f, c := newFakeRedis(t)
	r, err := redislimit.New(c, redislimit.WithTimeout(testTimeout))
	if err != nil {
		t.Fatal(err)
	}
	m, err := auth.NewMemoryLimiter(auth.WithLimiterClock(f.clock))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "c"}
	ctx := context.Background()
	for i := 0; i < 2000; i++ {
		// Mostly short steps, sometimes long ones, in whole µs: the
		// resolution of Redis's clock.
		var step time.Duration
		switch rng.IntN(10) {
		case 0:
			step = time.Duration(rng.Int64N(int64(10*time.Second))) / time.Microsecond * time.Microsecond
		case 1, 2, 3, 4:
			step = time.Duration(rng.Int64N(300_000)) * time.Microsecond
		}
		f.advance(step)
		lim := limits[rng.IntN(len(limits))]
		key := keys[rng.IntN(len(keys))]
		peek := rng.IntN(4) == 0
		var got, want auth.Decision
		var gerr, werr error
		if peek {
			got, gerr = r.Peek(ctx, key, lim)
			want, werr = m.Peek(ctx, key, lim)
		} else {
			got, gerr = r.Allow(ctx, key, lim)
			want, werr = m.Allow(ctx, key, lim)
		}
		if gerr != nil || werr != nil {
			t.Fatalf("call %d: errors %v, %v", i, gerr, werr)
		}
		if got != want {
			t.Fatalf("call %d (peek %v, %q under %+v):\nredis  %+v\nmemory %+v", i, peek, key, lim, got, want)
		}
	}
}
