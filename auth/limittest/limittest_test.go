package limittest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/limittest"
)

func TestMemoryLimiter(t *testing.T) {
	limittest.Run(t, func(t *testing.T) auth.Limiter {
		l, err := auth.NewMemoryLimiter()
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// TestMemoryLimiterShared runs the suite with one limiter shared by every
// subtest, as a Redis limiter would be.
func TestMemoryLimiterShared(t *testing.T) {
	l, err := auth.NewMemoryLimiter()
	if err != nil {
		t.Fatal(err)
	}
	limittest.Run(t, func(t *testing.T) auth.Limiter { return l })
}

// fixedWindow is a wrong Limiter: a fixed-window counter that allows
// Requests per Period, resetting at the window's end. It has no burst and
// no continuous refill, and shares budgets between names joined with '.'.
type fixedWindow struct {
	mu sync.Mutex
	m  map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func (f *fixedWindow) do(key string, l auth.Limit, spend bool) auth.Decision {
	if l.IsZero() {
		return auth.Decision{Allowed: true, Limit: l}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := l.Name + "." + key
	w := f.m[k]
	now := time.Now()
	if w == nil || now.Sub(w.start) >= l.Period {
		w = &window{start: now}
		f.m[k] = w
	}
	d := auth.Decision{Limit: l, Reset: w.start.Add(l.Period).Sub(now)}
	if w.n < l.Requests {
		d.Allowed = true
		if spend {
			w.n++
		}
		d.Remaining = l.Requests - w.n
	} else {
		d.RetryAfter = d.Reset
	}
	return d
}

func (f *fixedWindow) Allow(_ context.Context, key string, l auth.Limit) (auth.Decision, error) {
	return f.do(key, l, true), nil
}

func (f *fixedWindow) Peek(_ context.Context, key string, l auth.Limit) (auth.Decision, error) {
	return f.do(key, l, false), nil
}

// TestSuiteCatchesWrongLimiter checks that the suite can fail: it runs
// the suite against the fixed-window limiter in a child process and
// expects the subtests that a fixed window breaks to fail.
func TestSuiteCatchesWrongLimiter(t *testing.T) {
	if os.Getenv("LIMITTEST_WRONG") == "1" {
		limittest.Run(t, func(t *testing.T) auth.Limiter {
			return &fixedWindow{m: map[string]*window{}}
		})
		return
	}
	if testing.Short() {
		t.Skip("runs the suite in a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSuiteCatchesWrongLimiter$", "-test.v")
	cmd.Env = append(os.Environ(), "LIMITTEST_WRONG=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed a fixed-window limiter:\n%s", out)
	}
	for _, sub := range []string{"BurstAboveRequests", "Refill", "NamesIndependent", "EmptyNameIsDefault"} {
		if !strings.Contains(string(out), "--- FAIL: TestSuiteCatchesWrongLimiter/"+sub+" ") {
			t.Errorf("subtest %s did not fail against a fixed-window limiter:\n%s", sub, out)
		}
	}
}
