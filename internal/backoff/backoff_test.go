package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		frac     float64
		min, max func(time.Duration) time.Duration
	}{
		{0, func(d time.Duration) time.Duration { return d }, func(d time.Duration) time.Duration { return d }},
		// The feeds' default: down by up to half.
		{0.5, func(d time.Duration) time.Duration { return d - d/2 }, func(d time.Duration) time.Duration { return d }},
		{1, func(time.Duration) time.Duration { return 0 }, func(d time.Duration) time.Duration { return d }},
	}
	for _, tc := range tests {
		for _, d := range []time.Duration{0, 1, 2, 3, 100 * time.Millisecond, 5 * time.Second} {
			for range 200 {
				if j := Jitter(d, tc.frac); j < tc.min(d) || j > tc.max(d) {
					t.Fatalf("Jitter(%v, %v) = %v, want within [%v, %v]", d, tc.frac, j, tc.min(d), tc.max(d))
				}
			}
		}
	}
	if got := Jitter(-time.Second, 0.5); got != -time.Second {
		t.Fatalf("Jitter(-1s, 0.5) = %v, want -1s unchanged", got)
	}
	// It does vary.
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[Jitter(time.Second, 0.5)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("Jitter gave %d distinct values in 100 draws", len(seen))
	}
}

func TestBackoffSequence(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name string
		p    Policy
		max  time.Duration
		want []time.Duration
	}{
		{"doubles up to max", Policy{Min: 100 * ms, Max: 1000 * ms}, 1000 * ms,
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1000 * ms, 1000 * ms}},
		{"max below min is min", Policy{Min: 300 * ms, Max: 10 * ms}, 300 * ms,
			[]time.Duration{300 * ms, 300 * ms, 300 * ms}},
		{"zero policy", Policy{}, 0, []time.Duration{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := New(tc.p)
			if b.Max() != tc.max {
				t.Fatalf("Max() = %v, want %v", b.Max(), tc.max)
			}
			for round := range 2 {
				for i, want := range tc.want {
					if got := b.Next(); got != want {
						t.Fatalf("round %d: delay %d = %v, want %v", round, i, got, want)
					}
				}
				b.Reset()
			}
		})
	}
}

func TestBackoffJittered(t *testing.T) {
	t.Parallel()
	b := New(Policy{Min: 100 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: 0.5})
	for i, d := range []time.Duration{100, 200, 400, 400} {
		d *= time.Millisecond
		if got := b.Next(); got < d/2 || got > d {
			t.Fatalf("delay %d = %v, want within [%v, %v]", i, got, d/2, d)
		}
	}
}

func TestSetBounds(t *testing.T) {
	t.Parallel()
	def := Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5}
	tests := []struct {
		name         string
		initial, max time.Duration
		want         Policy
	}{
		{"both", time.Second, 10 * time.Second, Policy{Min: time.Second, Max: 10 * time.Second, Jitter: 0.5}},
		{"non-positive keep the default", 0, -1, def},
		{"initial only", time.Second, 0, Policy{Min: time.Second, Max: 5 * time.Second, Jitter: 0.5}},
		{"max below initial kept until New", time.Second, time.Millisecond, Policy{Min: time.Second, Max: time.Millisecond, Jitter: 0.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := def
			p.SetBounds(tc.initial, tc.max)
			if p != tc.want {
				t.Fatalf("SetBounds(%v, %v) = %+v, want %+v", tc.initial, tc.max, p, tc.want)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if !Sleep(t.Context(), 20*time.Millisecond) {
		t.Fatal("Sleep with a live context reported false")
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("Sleep(20ms) returned after %v", el)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(10*time.Millisecond, cancel)
	start = time.Now()
	if Sleep(ctx, time.Minute) {
		t.Fatal("Sleep cut short by its context reported true")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Sleep took %v to notice its context", el)
	}

	if New(Policy{Min: time.Minute}).Wait(ctx) {
		t.Fatal("Wait with a done context reported true")
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	errDown := errors.New("down")
	tests := []struct {
		name       string
		failures   int  // attempts that fail before one succeeds
		cancelAt   int  // the attempt (from 1) during which ctx is cancelled; 0 for never
		wantOK     bool // Retry's second result
		wantCalls  int  // attempts made
		wantFailed int  // failures passed to failed
	}{
		{"first attempt succeeds", 0, 0, true, 1, 0},
		{"succeeds after failures", 3, 0, true, 4, 3},
		{"cancelled during a failing attempt", 5, 2, false, 2, 1},
		{"cancelled during a successful attempt", 1, 2, true, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			calls, failed := 0, 0
			got, ok := Retry(ctx, New(Policy{Min: time.Microsecond, Max: time.Millisecond}), func(context.Context) (int, error) {
				calls++
				if calls == tc.cancelAt {
					cancel()
				}
				if calls <= tc.failures {
					return -1, errDown
				}
				return calls, nil
			}, func(err error) {
				if !errors.Is(err, errDown) {
					t.Errorf("failed(%v), want errDown", err)
				}
				failed++
			})
			if ok != tc.wantOK || calls != tc.wantCalls || failed != tc.wantFailed {
				t.Fatalf("Retry: ok %v after %d attempts, %d failures; want %v, %d, %d",
					ok, calls, failed, tc.wantOK, tc.wantCalls, tc.wantFailed)
			}
			want := 0 // the zero value on failure
			if ok {
				want = calls // what the successful attempt returned
			}
			if got != want {
				t.Fatalf("Retry returned %d, want %d", got, want)
			}
		})
	}

	// A done context stops it before the first attempt.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, ok := Retry(ctx, New(Policy{Min: time.Minute}), func(context.Context) (int, error) {
		t.Fatal("attempt called with a done context")
		return 0, nil
	}, func(error) {}); ok {
		t.Fatal("Retry with a done context reported success")
	}
}
