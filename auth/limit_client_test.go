package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
)

var resTooManyFromAddr = wantResponse{
	status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded",
	msg: msgTooManyFromAddr,
}

// TestLimitByClientAddr walks the per-address middleware through scripts
// of requests with a fake clock and checks every response exactly.
func TestLimitByClientAddr(t *testing.T) {
	t.Parallel()
	const a1port = "192.0.2.1:999" // a1's address, another port
	type step struct {
		advance    time.Duration
		addr, cred string
		status     int
		policy     string // "" means no RateLimit-Policy field
		limit      string
		retryAfter string
	}
	const policy = `"refresh";q=2;w=60`
	scripts := map[string][]step{
		"budget per address": {
			{0, a1, "", 204, policy, `"refresh";r=1;t=30`, ""},
			{0, a1port, "anything", 204, policy, `"refresh";r=0;t=30`, ""}, // a credential or none: counted the same
			{0, a1, "", 429, policy, `"refresh";r=0;t=30`, "30"},
			{0, a2, "", 204, policy, `"refresh";r=1;t=30`, ""}, // another address, another budget
			{10 * time.Second, a1, "", 429, policy, `"refresh";r=0;t=20`, "20"},
			{20 * time.Second, a1, "", 204, policy, `"refresh";r=0;t=30`, ""},
			{60 * time.Second, a1, "", 204, policy, `"refresh";r=1;t=30`, ""},
		},
		"IPv6 grouped by /64": {
			{0, v6, "", 204, policy, `"refresh";r=1;t=30`, ""},
			{0, v6same, "", 204, policy, `"refresh";r=0;t=30`, ""},
			{0, v6, "", 429, policy, `"refresh";r=0;t=30`, "30"},
			{0, v6other, "", 204, policy, `"refresh";r=1;t=30`, ""},
		},
		"unknown address: not limited": {
			{0, "pipe", "", 204, "", "", ""},
			{0, "pipe", "", 204, "", "", ""},
			{0, "pipe", "", 204, "", "", ""},
			{0, "192.0.2.9", "", 204, policy, `"refresh";r=1;t=30`, ""}, // no port
		},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l, clock := newTestLimiter(t)
			next := &recordingHandler{}
			h := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l))).
				LimitByClientAddr(PerMinute("refresh", 2))(next)
			for i, s := range script {
				clock.Advance(s.advance)
				before := next.called.Load()
				rec := serve(h, limitedRequest(s.addr, s.cred))
				what := fmt.Sprintf("step %d (%s)", i, s.addr)
				if rec.Code != s.status {
					t.Fatalf("%s: status %d, want %d (%s)", what, rec.Code, s.status, rec.Body)
				}
				if served := next.called.Load() != before; served != (s.status == 204) {
					t.Errorf("%s: handler called %v", what, served)
				}
				p, lim := rateHeaders(rec)
				if s.policy == "" {
					if len(p)+len(lim) != 0 {
						t.Errorf("%s: RateLimit fields %q, %q; want none", what, p, lim)
					}
				} else if !slices.Equal(p, []string{s.policy}) || !slices.Equal(lim, []string{s.limit}) {
					t.Errorf("%s: RateLimit-Policy %q, RateLimit %q; want %q, %q", what, p, lim, s.policy, s.limit)
				}
				if s.status == 429 {
					want := resTooManyFromAddr
					want.retryAfter = s.retryAfter
					checkErrorResponse(t, rec, want)
				} else if ra := rec.Header().Get("Retry-After"); ra != "" {
					t.Errorf("%s: Retry-After %q on a %d", what, ra, rec.Code)
				}
			}
		})
	}
}

// TestLimitByClientAddrComposes: the per-address limit adds its fields to
// an outer limit's, the address function of WithClientAddr is used, and a
// refused request is reported to the Observer.
func TestLimitByClientAddrComposes(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	obs := &recorder{}
	client := netip.MustParseAddr("203.0.113.5")
	g := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l)), WithObserver(obs),
		WithClientAddr(func(*http.Request) netip.Addr { return client }))
	next := &recordingHandler{}
	h := g.Middleware(g.LimitByClientAddr(PerHour("signup", 1))(next))

	rec := serve(h, limitedRequest("192.0.2.1:1", goodKey))
	p, lim := rateHeaders(rec)
	if rec.Code != 204 ||
		!slices.Equal(p, []string{`"api_key";q=3;w=60`, `"signup";q=1;w=3600`}) ||
		!slices.Equal(lim, []string{`"api_key";r=2;t=20`, `"signup";r=0;t=3600`}) {
		t.Fatalf("first request: %d, %q, %q", rec.Code, p, lim)
	}
	obs.take()
	// Another peer, but WithClientAddr says the same client.
	rec = serve(h, limitedRequest("198.51.100.1:1", goodKey))
	want := resTooManyFromAddr
	want.retryAfter = "3600"
	checkErrorResponse(t, rec, want)
	if next.called.Load() != 1 {
		t.Errorf("handler called %d times, want 1", next.called.Load())
	}
	events := obs.take()
	if len(events) != 2 || events[0].Kind != EventAuthenticated {
		t.Fatalf("events = %+v, want EventAuthenticated then EventRateLimited", events)
	}
	e := events[1]
	if e.Kind != EventRateLimited || e.ClientAddr != client || e.Status != 429 ||
		!errors.Is(e.Err, ErrRateLimited) || e.Time.IsZero() || e.KeyID != "" {
		t.Errorf("rate-limited event = %+v", e)
	}
	// The shared policy slice of the outer limit was not modified.
	if got := g.limits.apiKey.policy; !slices.Equal(got, []string{`"api_key";q=3;w=60`}) {
		t.Errorf("shared policy value modified: %q", got)
	}
}

func TestLimitByClientAddrLimiterFailure(t *testing.T) {
	t.Parallel()
	for _, closed := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailClosed=%v", closed), func(t *testing.T) {
			t.Parallel()
			var logs syncbuf.Buffer
			limits := testLimits(&failingLimiter{})
			limits.FailClosed = closed
			g := mustNew(t, keyAuth(nil), WithRateLimits(limits), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			next := &recordingHandler{}
			h := g.LimitByClientAddr(PerMinute("refresh", 1))(next)
			for range 3 {
				rec := serve(h, limitedRequest("192.0.2.1:1", ""))
				if p, lim := rateHeaders(rec); len(p)+len(lim) != 0 {
					t.Errorf("RateLimit fields %q %q from a failed limiter", p, lim)
				}
				if closed {
					checkErrorResponse(t, rec, wantResponse{status: 503, typ: "api_error", code: "service_unavailable",
						msg: "The request cannot be admitted right now. Try again later."})
				} else if rec.Code != 204 {
					t.Errorf("fail open: status %d", rec.Code)
				}
			}
			if got, want := next.called.Load(), map[bool]int64{false: 3, true: 0}[closed]; got != want {
				t.Errorf("handler called %d times, want %d", got, want)
			}
		})
	}
}

func TestLimitByClientAddrConfig(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	g := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l)))
	next := &recordingHandler{}
	if got := g.LimitByClientAddr(Limit{})(next); got != http.Handler(next) {
		t.Errorf("LimitByClientAddr(Limit{}) wraps next")
	}
	// A zero limit needs no Limiter.
	if got := mustNew(t, keyAuth(nil)).LimitByClientAddr(Limit{})(next); got != http.Handler(next) {
		t.Errorf("LimitByClientAddr(Limit{}) without a Limiter wraps next")
	}
	for name, f := range map[string]func(){
		"invalid limit": func() { g.LimitByClientAddr(Limit{Name: "a b", Requests: 1, Period: time.Second}) },
		"no limiter":    func() { mustNew(t, keyAuth(nil)).LimitByClientAddr(PerMinute("x", 1)) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("LimitByClientAddr did not panic")
				}
			}()
			f()
		})
	}
}

func BenchmarkLimitByClientAddr(b *testing.B) {
	l, err := NewMemoryLimiter()
	if err != nil {
		b.Fatal(err)
	}
	g := mustNew(b, keyAuth(nil), WithRateLimits(RateLimits{Limiter: l}))
	h := g.LimitByClientAddr(Limit{Name: "refresh", Requests: 1 << 30, Period: time.Second})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := limitedRequest("192.0.2.1:1234", "")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		clear(w.Header())
		h.ServeHTTP(w, r)
	}
}
