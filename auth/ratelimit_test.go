package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/internal/testalloc"
)

// testLimits are small limits for the Guard tests: 3 a minute per API
// key (one every 20 s), 6 a minute per token, 2 failures a minute per
// address.
func testLimits(l Limiter) RateLimits {
	return RateLimits{
		Limiter:     l,
		APIKey:      PerMinute("api_key", 3),
		AccessToken: PerMinute("access_token", 6),
		Failures:    PerMinute("auth_failures", 2),
	}
}

// Client addresses of the limit scripts (TestGuardRateLimits,
// TestLimitByClientAddr).
const (
	a1      = "192.0.2.1:1234"
	a2      = "198.51.100.7:80"
	v6      = "[2001:db8:1:2::1]:443"
	v6same  = "[2001:db8:1:2:ffff::9]:443" // the same /64 as v6
	v6other = "[2001:db8:1:3::1]:443"
)

// limitedRequest is a request from addr (RemoteAddr) carrying cred as a
// Bearer credential, or none when cred is empty.
func limitedRequest(addr, cred string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	r.RemoteAddr = addr
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	return r
}

// rateHeaders returns the RateLimit-Policy and RateLimit fields of rec.
func rateHeaders(rec *httptest.ResponseRecorder) (policy, limit []string) {
	return rec.Header().Values("RateLimit-Policy"), rec.Header().Values("RateLimit")
}

var resRateLimited = wantResponse{
	status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded",
	msg: msgRateLimited,
}

var resTooManyFailures = wantResponse{
	status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded",
	msg: msgTooManyFailure,
}

// TestGuardRateLimits walks a Guard with a fake-clock limiter through a
// script of requests and checks every response's status, RateLimit fields
// and Retry-After exactly.
func TestGuardRateLimits(t *testing.T) {
	t.Parallel()
	token := Principal{Method: MethodAccessToken, KeyID: "key_alice", TokenID: "jti1"}
	external := Principal{Method: MethodAccessToken, Subject: "key_alice"} // same string as a key ID
	custom := alice
	custom.KeyID = "key_custom"
	custom.RateLimit = Limit{Requests: 1, Period: time.Hour}
	plan := alice
	plan.KeyID = "key_plan"
	plan.RateLimit = Limit{Name: "gold", Requests: 2, Period: 10 * time.Second}
	badPlan := alice
	badPlan.KeyID = "key_badplan"
	badPlan.RateLimit = Limit{Name: "no spaces allowed", Requests: 1, Period: time.Hour}
	other := Principal{Method: "mtls", KeyID: "cert_1"}
	principals := map[string]Principal{
		"halfred_badplan":  badPlan,
		"halfred_alice":    alice,
		"jwt.token.alice":  token,
		"jwt.external.sub": external,
		"halfred_custom":   custom,
		"halfred_plan":     plan,
		"mtls_cert":        other,
	}
	// Each script gets its own Authenticator (sharing this function), so
	// that counting its calls is not disturbed by the scripts running in
	// parallel.
	authenticate := func(_ context.Context, cred string) (Principal, error) {
		if p, ok := principals[cred]; ok {
			return p, nil
		}
		if cred == "bad-request" {
			return Principal{}, ErrMalformedRequest
		}
		return Principal{}, ErrInvalidCredential
	}

	type step struct {
		advance     time.Duration
		addr, cred  string
		status      int
		policy      string // "" means no RateLimit-Policy field
		limit       string
		retryAfter  string
		authnCalled bool
	}
	apiPolicy := `"api_key";q=3;w=60`
	failPolicy := `"auth_failures";q=2;w=60`
	tokenPolicy := `"access_token";q=6;w=60`
	scripts := map[string][]step{
		"API key budget": {
			{0, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=2;t=20`, "", true},
			{0, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=1;t=40`, "", true},
			{0, a2, "halfred_alice", 204, apiPolicy, `"api_key";r=0;t=20`, "", true}, // keyed on the key, not the address
			{0, a1, "halfred_alice", 429, apiPolicy, `"api_key";r=0;t=20`, "20", true},
			{5 * time.Second, a1, "halfred_alice", 429, apiPolicy, `"api_key";r=0;t=15`, "15", true},
			{15 * time.Second, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=0;t=20`, "", true},
			{60 * time.Second, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=2;t=20`, "", true},
		},
		"failure budget": {
			{0, a1, "halfred_forged", 401, failPolicy, `"auth_failures";r=1;t=30`, "", true},
			{0, a1, "", 401, failPolicy, `"auth_failures";r=1;t=30`, "", false}, // no credential: not counted
			{0, a1, "bad-request", 400, failPolicy, `"auth_failures";r=0;t=30`, "", true},
			{0, a1, "halfred_alice", 429, failPolicy, `"auth_failures";r=0;t=30`, "30", false}, // refused before authentication
			{0, a1, "halfred_forged", 429, failPolicy, `"auth_failures";r=0;t=30`, "30", false},
			{0, a2, "halfred_alice", 204, apiPolicy, `"api_key";r=2;t=20`, "", true},                // another address
			{30 * time.Second, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=2;t=20`, "", true}, // the key's budget is full again
			{0, a1, "halfred_forged", 401, failPolicy, `"auth_failures";r=0;t=30`, "", true},
			{0, a1, "halfred_forged", 429, failPolicy, `"auth_failures";r=0;t=30`, "30", false},
		},
		"IPv6 grouped by /64": {
			{0, v6, "halfred_x", 401, failPolicy, `"auth_failures";r=1;t=30`, "", true},
			{0, v6same, "halfred_x", 401, failPolicy, `"auth_failures";r=0;t=30`, "", true},
			{0, v6, "halfred_x", 429, failPolicy, `"auth_failures";r=0;t=30`, "30", false},
			{0, v6other, "halfred_x", 401, failPolicy, `"auth_failures";r=1;t=30`, "", true},
		},
		"forged key does not spend the real key's budget": {
			{0, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=2;t=20`, "", true},
			{0, a2, "halfred_forged", 401, failPolicy, `"auth_failures";r=1;t=30`, "", true},
			{0, v6, "halfred_forged2", 401, failPolicy, `"auth_failures";r=1;t=30`, "", true},
			{0, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=1;t=40`, "", true},
		},
		"tokens, subjects and key IDs apart": {
			{0, a1, "halfred_alice", 204, apiPolicy, `"api_key";r=2;t=20`, "", true},
			{0, a1, "jwt.token.alice", 204, tokenPolicy, `"access_token";r=5;t=10`, "", true},
			{0, a1, "jwt.external.sub", 204, tokenPolicy, `"access_token";r=5;t=10`, "", true},
			{0, a1, "jwt.token.alice", 204, tokenPolicy, `"access_token";r=4;t=20`, "", true},
		},
		"a key's own limit": {
			{0, a1, "halfred_custom", 204, `"default";q=1;w=3600`, `"default";r=0;t=3600`, "", true},
			{0, a1, "halfred_custom", 429, `"default";q=1;w=3600`, `"default";r=0;t=3600`, "3600", true},
			{0, a1, "halfred_plan", 204, `"gold";q=2;w=10`, `"gold";r=1;t=5`, "", true},
			{0, a1, "halfred_plan", 204, `"gold";q=2;w=10`, `"gold";r=0;t=5`, "", true},
			{0, a1, "halfred_plan", 429, `"gold";q=2;w=10`, `"gold";r=0;t=5`, "5", true},
			{0, a1, "halfred_badplan", 204, apiPolicy, `"api_key";r=2;t=20`, "", true}, // an invalid own limit: the method's
		},
		"other methods are not limited": {
			{0, a1, "mtls_cert", 204, "", "", "", true},
			{0, a1, "mtls_cert", 204, "", "", "", true},
			{0, a1, "mtls_cert", 204, "", "", "", true},
			{0, a1, "mtls_cert", 204, "", "", "", true},
		},
		"unknown address: no failure limit": {
			{0, "pipe", "halfred_x", 401, "", "", "", true},
			{0, "pipe", "halfred_x", 401, "", "", "", true},
			{0, "pipe", "halfred_x", 401, "", "", "", true},
			// One colon, as an IPv4 address and port have, but no
			// address: the failure filter knows them by their text
			// until their budget is needed, and then finds none.
			{0, "01.2.3.4:5", "halfred_x", 401, "", "", "", true},
			{0, "01.2.3.4:5", "halfred_x", 401, "", "", "", true},
			{0, "01.2.3.4:5", "halfred_x", 401, "", "", "", true},
			{0, "192.0.2.9:99999", "halfred_x", 401, "", "", "", true},
			{0, "192.0.2.9:99999", "halfred_x", 401, "", "", "", true},
			{0, "192.0.2.9:99999", "halfred_x", 401, "", "", "", true},
			{0, "192.0.2.9", "halfred_x", 401, failPolicy, `"auth_failures";r=1;t=30`, "", true}, // no port
		},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l, clock := newTestLimiter(t)
			next := &recordingHandler{}
			authn := &fakeAuth{fn: authenticate}
			h := mustNew(t, authn, WithRateLimits(testLimits(l))).Middleware(next)
			for i, s := range script {
				clock.Advance(s.advance)
				before, beforeNext := authn.calls.Load(), next.called.Load()
				rec := serve(h, limitedRequest(s.addr, s.cred))
				what := fmt.Sprintf("step %d (%s, %q)", i, s.addr, s.cred)
				if rec.Code != s.status {
					t.Fatalf("%s: status %d, want %d (%s)", what, rec.Code, s.status, rec.Body)
				}
				if called := authn.calls.Load() != before; called != s.authnCalled {
					t.Errorf("%s: Authenticator called %v, want %v", what, called, s.authnCalled)
				}
				if served := next.called.Load() != beforeNext; served != (s.status == 204) {
					t.Errorf("%s: handler called %v", what, served)
				}
				policy, limit := rateHeaders(rec)
				if s.policy == "" {
					if len(policy) != 0 || len(limit) != 0 {
						t.Errorf("%s: RateLimit fields %q, %q; want none", what, policy, limit)
					}
				} else if !slices.Equal(policy, []string{s.policy}) || !slices.Equal(limit, []string{s.limit}) {
					t.Errorf("%s: RateLimit-Policy %q, RateLimit %q; want %q, %q", what, policy, limit, s.policy, s.limit)
				}
				switch {
				case s.status == 429 && s.policy == failPolicy:
					want := resTooManyFailures
					want.retryAfter = s.retryAfter
					checkErrorResponse(t, rec, want)
				case s.status == 429:
					want := resRateLimited
					want.retryAfter = s.retryAfter
					checkErrorResponse(t, rec, want)
				case rec.Header().Get("Retry-After") != "":
					t.Errorf("%s: Retry-After on a %d", what, rec.Code)
				}
			}
		})
	}
}

// TestRateLimitsOnEveryPath: Optional and RequireScopes limit as
// Middleware does, and a 403 carries the RateLimit fields too.
func TestRateLimitsOnEveryPath(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	g := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l)))
	next := &recordingHandler{}

	rec := serve(g.RequireScopes("keys:manage")(next), limitedRequest("192.0.2.1:1", goodKey))
	if rec.Code != 403 {
		t.Fatalf("RequireScopes without the scope: %d", rec.Code)
	}
	if p, lim := rateHeaders(rec); !slices.Equal(lim, []string{`"api_key";r=2;t=20`}) || len(p) != 1 {
		t.Errorf("403: RateLimit fields %q, %q", p, lim)
	}
	rec = serve(g.RequireScopes("models:read")(next), limitedRequest("192.0.2.1:1", goodKey))
	if _, lim := rateHeaders(rec); rec.Code != 204 || !slices.Equal(lim, []string{`"api_key";r=1;t=40`}) {
		t.Errorf("RequireScopes: %d, RateLimit %q", rec.Code, lim)
	}
	rec = serve(g.Optional(next), limitedRequest("192.0.2.1:1", goodKey))
	if _, lim := rateHeaders(rec); rec.Code != 204 || !slices.Equal(lim, []string{`"api_key";r=0;t=20`}) {
		t.Errorf("Optional: %d, RateLimit %q", rec.Code, lim)
	}
	rec = serve(g.Optional(next), limitedRequest("192.0.2.1:1", goodKey))
	if rec.Code != 429 {
		t.Errorf("Optional over the limit: %d", rec.Code)
	}
	// Anonymous: not limited, no fields.
	rec = serve(g.Optional(next), limitedRequest("192.0.2.1:1", ""))
	if p, lim := rateHeaders(rec); rec.Code != 204 || len(p)+len(lim) != 0 {
		t.Errorf("Optional without credential: %d, %q, %q", rec.Code, p, lim)
	}
	// An address over its failure budget is refused, even anonymously.
	for range 2 {
		serve(g.Optional(next), limitedRequest("192.0.2.2:1", otherKey))
	}
	if rec := serve(g.Optional(next), limitedRequest("192.0.2.2:1", "")); rec.Code != 429 {
		t.Errorf("Optional, anonymous, from an address over its failure budget: %d", rec.Code)
	}
	// Behind Middleware, RequireScopes does not spend again.
	l2, _ := newTestLimiter(t)
	g2 := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l2)))
	h := g2.Middleware(g2.RequireScopes("models:read")(next))
	rec = serve(h, limitedRequest("192.0.2.1:1", goodKey))
	if _, lim := rateHeaders(rec); !slices.Equal(lim, []string{`"api_key";r=2;t=20`}) {
		t.Errorf("Middleware+RequireScopes: RateLimit %q, want one request spent", lim)
	}
}

// TestBruteForceFlood: 10,000 requests with random credentials, well
// formed and not, from one address reach the Authenticator only as often
// as the failure budget allows.
func TestBruteForceFlood(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(t)
	authn := keyAuth(nil)
	limits := DefaultRateLimits(l)
	h := mustNew(t, authn, WithRateLimits(limits)).Middleware(okHandler())
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	counts := map[int]int{}
	for i := range 10_000 {
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteString("halfred_")
		}
		for range 28 {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		if rng.IntN(10) == 0 {
			b.WriteString(" x") // a malformed header: 400
		}
		rec := serve(h, limitedRequest("203.0.113.5:4444", b.String()))
		counts[rec.Code]++
		if i%100 == 99 {
			clock.Advance(time.Second) // the flood lasts 100 s
		}
	}
	// 20 at once, then one every 3 s for 100 s: about 53.
	if n := authn.calls.Load(); n > 60 {
		t.Errorf("the Authenticator was called %d times for 10,000 bad credentials from one address", n)
	}
	if counts[429] < 9900 {
		t.Errorf("responses %v: want almost all 429", counts)
	}
	// The real key still works from another address.
	if rec := serve(h, limitedRequest("198.51.100.1:1", goodKey)); rec.Code != 200 {
		t.Errorf("valid key from another address: %d", rec.Code)
	}
}

// failingLimiter fails every call.
type failingLimiter struct{}

var errLimiterDown = errors.New("limiter: connection refused")

func (f *failingLimiter) Allow(context.Context, string, Limit) (Decision, error) {
	return Decision{}, errLimiterDown
}

func (f *failingLimiter) Peek(context.Context, string, Limit) (Decision, error) {
	return Decision{}, errLimiterDown
}

func TestLimiterFailure(t *testing.T) {
	t.Parallel()
	for _, closed := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailClosed=%v", closed), func(t *testing.T) {
			t.Parallel()
			var logs syncbuf.Buffer
			limits := testLimits(&failingLimiter{})
			limits.FailClosed = closed
			g := mustNew(t, keyAuth(nil), WithRateLimits(limits), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			next := &recordingHandler{}
			h := g.Middleware(next)
			extra := g.Limit(PerMinute("exchange", 1))(next)
			for range 100 {
				rec := serve(h, limitedRequest("192.0.2.1:1", goodKey))
				p, lim := rateHeaders(rec)
				if len(p)+len(lim) != 0 {
					t.Fatalf("RateLimit fields %q %q from a failed limiter", p, lim)
				}
				if closed {
					checkErrorResponse(t, rec, wantResponse{status: 503, typ: "api_error", code: "service_unavailable",
						msg: "The request cannot be admitted right now. Try again later."})
				} else if rec.Code != 204 {
					t.Fatalf("fail open: status %d", rec.Code)
				}
				// The extra limit follows the same policy.
				r := limitedRequest("192.0.2.1:1", "")
				r = r.WithContext(NewContext(r.Context(), &alice))
				if rec := serve(extra, r); (rec.Code == 503) != closed {
					t.Fatalf("Guard.Limit: status %d", rec.Code)
				}
			}
			if closed && next.called.Load() != 0 {
				t.Errorf("fail closed: the handler ran %d times", next.called.Load())
			}
			if !closed && next.called.Load() != 200 {
				t.Errorf("fail open: the handler ran %d times, want 200", next.called.Load())
			}
			// 400 limiter failures, within 10 s: one log line.
			out := logs.String()
			if n := strings.Count(out, "rate limiter failed"); n != 1 {
				t.Errorf("%d log lines for 400 limiter failures, want 1:\n%s", n, out)
			}
			if !strings.Contains(out, "connection refused") {
				t.Errorf("log does not say why: %s", out)
			}
			if strings.Contains(out, goodKey) {
				t.Errorf("log holds the credential: %s", out)
			}
		})
	}
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	var ll logLimiter
	if ok, n := ll.allow(); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for range 5 {
		if ok, _ := ll.allow(); ok {
			t.Fatal("logged again within the interval")
		}
	}
	ll.last.Add(-int64(logInterval)) // as if 10 s had passed
	if ok, n := ll.allow(); !ok || n != 5 {
		t.Errorf("after the interval: %v, %d suppressed; want true, 5", ok, n)
	}
}

// TestGuardLimit: the extra per-principal limit adds its fields to the
// outer middleware's, and refuses with 429 on its own.
func TestGuardLimit(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(t)
	g := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l)))
	next := &recordingHandler{}
	h := g.Middleware(g.Limit(Limit{Name: "exchange", Requests: 1, Period: 10 * time.Second})(next))
	rec := serve(h, limitedRequest("192.0.2.1:1", goodKey))
	p, lim := rateHeaders(rec)
	if rec.Code != 204 ||
		!slices.Equal(p, []string{`"api_key";q=3;w=60`, `"exchange";q=1;w=10`}) ||
		!slices.Equal(lim, []string{`"api_key";r=2;t=20`, `"exchange";r=0;t=10`}) {
		t.Fatalf("first request: %d, %q, %q", rec.Code, p, lim)
	}
	clock.Advance(4 * time.Second)
	rec = serve(h, limitedRequest("192.0.2.1:1", goodKey))
	want := resRateLimited
	want.retryAfter = "6"
	checkErrorResponse(t, rec, want)
	p, lim = rateHeaders(rec)
	if !slices.Equal(lim, []string{`"api_key";r=1;t=36`, `"exchange";r=0;t=6`}) || len(p) != 2 {
		t.Errorf("refused: %q, %q", p, lim)
	}
	// The shared policy slice of the outer limit was not modified.
	if got := g.limits.apiKey.policy; !slices.Equal(got, []string{`"api_key";q=3;w=60`}) {
		t.Errorf("shared policy value modified: %q", got)
	}
	// Without a Principal: 401.
	rec = serve(g.Limit(PerMinute("x", 1))(next), limitedRequest("192.0.2.1:1", goodKey))
	checkErrorResponse(t, rec, resNoCredentials)
	// A zero limit returns next itself.
	if got := g.Limit(Limit{})(next); got != http.Handler(next) {
		t.Errorf("Guard.Limit(Limit{}) wraps next")
	}
	for name, f := range map[string]func(){
		"invalid limit": func() { g.Limit(Limit{Name: "a b", Requests: 1, Period: time.Second}) },
		"no limiter":    func() { mustNew(t, keyAuth(nil)).Limit(PerMinute("x", 1)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Guard.Limit did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestWithRateLimitsValidates(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	for name, rl := range map[string]RateLimits{
		"no limiter":                      {APIKey: PerMinute("a", 1)},
		"bad name":                        {Limiter: l, APIKey: PerMinute("a:b", 1)},
		"negative burst":                  {Limiter: l, Failures: Limit{Name: "f", Requests: 1, Period: time.Second, Burst: -1}},
		"failures share a name":           {Limiter: l, APIKey: PerMinute("x", 1), Failures: PerMinute("x", 1)},
		"failures share the default name": {Limiter: l, AccessToken: PerMinute("", 1), Failures: PerMinute("default", 1)},
	} {
		if g, err := New(keyAuth(nil), WithRateLimits(rl)); err == nil {
			t.Errorf("%s: New = %v, want an error", name, g)
		}
	}
	if _, err := New(keyAuth(nil), WithClientAddr(nil)); err == nil {
		t.Error("WithClientAddr(nil): no error")
	}
	for name, rl := range map[string]RateLimits{
		"zero":                         {},
		"limiter only":                 {Limiter: l},
		"defaults":                     DefaultRateLimits(l),
		"tokens and keys share a name": {Limiter: l, APIKey: PerMinute("x", 1), AccessToken: PerMinute("x", 2)},
	} {
		if _, err := New(keyAuth(nil), WithRateLimits(rl)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDefaultRateLimits(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	rl := DefaultRateLimits(l)
	if rl.Limiter != l || rl.FailClosed ||
		rl.APIKey != (Limit{Name: "api_key", Requests: 600, Period: time.Minute}) ||
		rl.AccessToken != (Limit{Name: "access_token", Requests: 1200, Period: time.Minute}) ||
		rl.Failures != (Limit{Name: "auth_failures", Requests: 20, Period: time.Minute}) {
		t.Errorf("DefaultRateLimits = %+v", rl)
	}
}

// TestWithClientAddr: a custom client address replaces RemoteAddr, for
// the failure budget and the events.
func TestWithClientAddr(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	var events []Event
	var mu sync.Mutex
	obs := ObserverFunc(func(_ context.Context, e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	fromHeader := func(r *http.Request) netip.Addr {
		a, _ := netip.ParseAddr(r.Header.Get("X-Client"))
		return a
	}
	h := mustNew(t, keyAuth(nil), WithRateLimits(testLimits(l)), WithClientAddr(fromHeader), WithObserver(obs)).Middleware(okHandler())
	for i, client := range []string{"192.0.2.10", "::ffff:192.0.2.10", "192.0.2.10"} {
		r := limitedRequest(fmt.Sprintf("10.0.0.%d:1", i), otherKey)
		r.Header.Set("X-Client", client)
		rec := serve(h, r)
		if want := []int{401, 401, 429}[i]; rec.Code != want {
			t.Errorf("request %d from %s: %d, want %d", i, client, rec.Code, want)
		}
	}
	if len(events) != 3 || events[0].ClientAddr != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("events %+v", events)
	}
}

// recorder is an Observer that keeps every Event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (o *recorder) Observe(_ context.Context, e Event) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
}

func (o *recorder) take() []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.events
	o.events = nil
	return e
}

// TestObserverEvents: each outcome is reported once, with the right
// fields, and no event holds the credential.
func TestObserverEvents(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	obs := &recorder{}
	rl := testLimits(l)
	rl.APIKey = PerMinute("api_key", 1)
	g := mustNew(t, keyAuth(nil), WithRateLimits(rl), WithObserver(obs), quietLogger())
	h := g.Middleware(okHandler())
	addr := netip.MustParseAddr("192.0.2.1")
	type want struct {
		kind   EventKind
		status int
		err    error
		keyID  string
		hint   string
	}
	cases := []struct {
		name string
		cred string
		want []want
	}{
		{"success", goodKey, []want{{EventAuthenticated, 0, nil, "key_alice", alice.Hint}}},
		{"over the key's limit", goodKey, []want{
			{EventAuthenticated, 0, nil, "key_alice", alice.Hint},
			{EventRateLimited, 429, ErrRateLimited, "key_alice", alice.Hint},
		}},
		{"no credential", "", []want{{EventAuthFailed, 401, ErrNoCredentials, "", ""}}},
		{"bad key", otherKey, []want{{EventAuthFailed, 401, ErrInvalidCredential, "", "halfred_…Z9Y8"}}},
		{"bad key again", otherKey, []want{{EventAuthFailed, 401, ErrInvalidCredential, "", "halfred_…Z9Y8"}}},
		{"over the failure limit", otherKey, []want{{EventRateLimited, 429, ErrRateLimited, "", ""}}},
	}
	for _, tc := range cases {
		start := time.Now()
		serve(h, limitedRequest("192.0.2.1:5555", tc.cred))
		got := obs.take()
		if len(got) != len(tc.want) {
			t.Fatalf("%s: events %+v, want %d", tc.name, got, len(tc.want))
		}
		for i, w := range tc.want {
			e := got[i]
			if e.Kind != w.kind || e.Status != w.status || e.KeyID != w.keyID || e.Hint != w.hint || e.ClientAddr != addr {
				t.Errorf("%s: event %d = %+v, want %+v", tc.name, i, e, w)
			}
			if (w.err == nil) != (e.Err == nil) || (w.err != nil && !errors.Is(e.Err, w.err)) {
				t.Errorf("%s: event %d Err = %v, want %v", tc.name, i, e.Err, w.err)
			}
			if e.Time.Before(start) || e.Time.After(time.Now()) {
				t.Errorf("%s: event %d Time %v outside the request", tc.name, i, e.Time)
			}
			if e.Kind != EventRateLimited && (e.Duration < 0 || e.Duration > time.Since(start)) {
				t.Errorf("%s: event %d Duration %v", tc.name, i, e.Duration)
			}
			if e.Kind == EventAuthenticated && (e.Method != MethodAPIKey || e.Project != "default") {
				t.Errorf("%s: event %d lacks the principal: %+v", tc.name, i, e)
			}
		}
		for _, e := range got {
			if s := fmt.Sprintf("%+v %v", e, e.Err); strings.Contains(s, goodKey) || strings.Contains(s, otherKey) {
				t.Errorf("%s: event holds the credential: %s", tc.name, s)
			}
		}
	}
	// A 503 of the Authenticator and a credential echoed in an error
	// message: reported, masked.
	echo := &fakeAuth{fn: func(_ context.Context, cred string) (Principal, error) {
		return Principal{}, &Error{Kind: ErrUnavailable, Message: "store down for " + cred, Err: errors.New("dial " + cred)}
	}}
	obs2 := &recorder{}
	serve(mustNew(t, echo, WithObserver(obs2), quietLogger()).Middleware(okHandler()), limitedRequest("192.0.2.1:1", goodKey))
	got := obs2.take()
	if len(got) != 1 || got[0].Kind != EventAuthFailed || got[0].Status != 503 || !errors.Is(got[0].Err, ErrUnavailable) {
		t.Fatalf("events %+v", got)
	}
	if m := asError(got[0].Err).Message; strings.Contains(m, goodKey) {
		t.Errorf("event's error message holds the credential: %q", m)
	}
}

// TestObserverForbidden: a 403 for a missing scope is reported as
// EventForbidden, with the principal and the required scopes, whether the
// Guard's RequireScopes authenticates the request itself or finds the
// Principal an outer Middleware put in the context. Package-level
// RequireScopes has no Observer and reports nothing.
func TestObserverForbidden(t *testing.T) {
	t.Parallel()
	obs := &recorder{}
	g := mustNew(t, keyAuth(nil), WithObserver(obs))
	addr := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name  string
		h     http.Handler
		kinds []EventKind
	}{
		{"RequireScopes authenticates", g.RequireScopes("keys:manage")(okHandler()), []EventKind{EventAuthenticated, EventForbidden}},
		{"behind Middleware", g.Middleware(g.RequireScopes("keys:manage")(okHandler())), []EventKind{EventAuthenticated, EventForbidden}},
		{"package-level RequireScopes", g.Middleware(RequireScopes("keys:manage")(okHandler())), []EventKind{EventAuthenticated}},
		{"scope held", g.RequireScopes("models:read")(okHandler()), []EventKind{EventAuthenticated}},
	}
	for _, tt := range tests {
		start := time.Now()
		rec := serve(tt.h, limitedRequest("192.0.2.1:5555", goodKey))
		got := obs.take()
		if len(got) != len(tt.kinds) {
			t.Fatalf("%s: status %d, events %+v, want kinds %v", tt.name, rec.Code, got, tt.kinds)
		}
		for i, k := range tt.kinds {
			if got[i].Kind != k {
				t.Errorf("%s: event %d is %v, want %v", tt.name, i, got[i].Kind, k)
			}
		}
		e := got[len(got)-1]
		if e.Kind != EventForbidden {
			if rec.Code == http.StatusForbidden && tt.name != "package-level RequireScopes" {
				t.Errorf("%s: 403 without an EventForbidden", tt.name)
			}
			continue
		}
		if rec.Code != http.StatusForbidden || e.Status != http.StatusForbidden || !errors.Is(e.Err, ErrInsufficientScope) {
			t.Errorf("%s: status %d, event %+v", tt.name, rec.Code, e)
		}
		if ae := asError(e.Err); ae == nil || !slices.Equal(ae.Scopes, []string{"keys:manage"}) {
			t.Errorf("%s: event's error %v does not carry the required scope", tt.name, e.Err)
		}
		if e.KeyID != alice.KeyID || e.Method != MethodAPIKey || e.Hint != alice.Hint || e.ClientAddr != addr {
			t.Errorf("%s: event %+v lacks the principal or the address", tt.name, e)
		}
		if e.Time.Before(start) || e.Time.After(time.Now()) {
			t.Errorf("%s: event Time %v outside the request", tt.name, e.Time)
		}
	}
	if EventForbidden.String() != "auth.forbidden" {
		t.Errorf("EventForbidden = %q", EventForbidden)
	}
}

// TestObserverAllocs: a no-op Observer adds no allocation to the success
// path, and neither do rate limits for an IPv4 client that has not failed:
// the RateLimit value of a full budget is built once, that of a budget in
// use lives in the context object the success path allocates anyway, and
// the failure budgets are not looked at. A client whose credential failed
// lately costs one more (its budget's key), and an IPv6 client one more
// (its /64 key).
func TestObserverAllocs(t *testing.T) {
	nop := ObserverFunc(func(context.Context, Event) {})
	l, err := NewMemoryLimiter()
	if err != nil {
		t.Fatal(err)
	}
	rl := DefaultRateLimits(l)
	rl.APIKey = Limit{Name: "api_key", Requests: 1 << 30, Period: time.Minute}
	w := &nopWriter{h: http.Header{}}
	r := limitedRequest("192.0.2.1:1234", goodKey)
	measureGuard := func(g *Guard) float64 {
		h := g.Middleware(okHandler())
		return testalloc.Min(100, func() { h.ServeHTTP(w, r); clear(w.h) })
	}
	measure := func(opts ...Option) float64 { return measureGuard(mustNew(t, fixedAuth(alice, nil), opts...)) }
	base := measure()
	if got := measure(WithObserver(nop)); got != base {
		t.Errorf("with a no-op Observer: %v allocations, without %v", got, base)
	}
	if got := measure(WithRateLimits(rl)); got != base {
		t.Errorf("with rate limits: %v allocations, without %v", got, base)
	}
	if got := measure(WithRateLimits(rl), WithObserver(nop)); got != base {
		t.Errorf("with rate limits and an Observer: %v allocations, without %v", got, base)
	}
	busy := rl
	// One request every 3.6 ms, bursts of a million: the budget is in
	// use, below full, for every request measured.
	busy.APIKey = Limit{Name: "api_key", Requests: 1_000_000, Period: time.Hour}
	if got := measure(WithRateLimits(busy)); got != base {
		t.Errorf("with rate limits, a budget in use: %v allocations, without %v", got, base)
	}
	g := mustNew(t, fixedAuth(alice, nil), WithRateLimits(rl))
	g.limits.seenCreds.mark(goodKey)
	if got := measureGuard(g); got != base+1 {
		t.Errorf("with rate limits, a credential that failed lately: %v allocations, without %v; want one more", got, base)
	}
	r = limitedRequest("[2001:db8::1]:1234", goodKey)
	if got := measure(WithRateLimits(rl)); got != base+1 {
		t.Errorf("with rate limits, IPv6: %v allocations, without %v; want one more", got, base)
	}
}

// TestLimitPolicyFresh: the RateLimit value built once for a request
// allowed from a full budget is used exactly when it is the value that
// would be formatted for the Decision, over the Decisions of a GCRA budget
// spent from, refused and refilled, for limits of several shapes.
func TestLimitPolicyFresh(t *testing.T) {
	t.Parallel()
	limits := []Limit{
		PerMinute("api_key", 600),
		{Name: "one", Requests: 1, Period: time.Hour},
		{Name: "burst", Requests: 10, Period: time.Second, Burst: 3},
		{Name: "fast", Requests: 1 << 30, Period: time.Minute},
		{Name: "slow", Requests: 5, Period: 24 * time.Hour, Burst: 1},
		{Requests: 7, Period: 1500 * time.Millisecond},
	}
	for _, l := range limits {
		t.Run(l.PolicyName(), func(t *testing.T) {
			t.Parallel()
			pol := newLimitPolicy(l)
			lim, clock := newTestLimiter(t)
			used := 0
			check := func(d Decision) {
				t.Helper()
				want := pol.value(d)
				if v := pol.fresh(d); v != nil {
					used++
					if v[0] != want {
						t.Fatalf("fresh(%+v) = %q, want %q", d, v[0], want)
					}
				} else if d.Allowed && d.Remaining == l.MaxBurst()-1 && want == pol.full[0] {
					t.Fatalf("fresh(%+v) = nil, though its value %q is the full budget's", d, want)
				}
			}
			steps := []time.Duration{0, 0, 0, time.Millisecond, l.Interval() / 2, l.Interval(), 0, 3 * l.Interval(), l.Period, l.Period + l.Interval()}
			for i := range 200 {
				d, err := lim.Allow(context.Background(), "k", l)
				if err != nil {
					t.Fatal(err)
				}
				check(d)
				clock.Advance(steps[i%len(steps)])
			}
			if used == 0 {
				t.Error("the full budget's value was never used")
			}
			// Decisions another Limiter might return: r of a full
			// budget with other times, and refusals.
			for _, d := range []Decision{
				{Allowed: true, Remaining: l.MaxBurst() - 1, Reset: l.Interval() + 2*time.Second},
				{Allowed: true, Remaining: l.MaxBurst() - 1, Reset: 0},
				{Allowed: true, Remaining: l.MaxBurst() - 1, Reset: l.Interval() - time.Nanosecond},
				{Allowed: false, Remaining: l.MaxBurst() - 1, Reset: l.Interval(), RetryAfter: l.Interval() + 3*time.Second},
				{Allowed: true, Remaining: l.MaxBurst(), Reset: l.Interval()},
			} {
				check(d)
			}
		})
	}
}

// TestNoObserverNoEvents: without an Observer nothing is reported, and a
// nil Observer is no Observer.
func TestNoObserverNoEvents(t *testing.T) {
	t.Parallel()
	g := mustNew(t, keyAuth(nil), WithObserver(nil))
	if g.observer != nil {
		t.Fatal("WithObserver(nil) set an observer")
	}
	if rec := serve(g.Middleware(okHandler()), limitedRequest("192.0.2.1:1", goodKey)); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
}

func TestAddrKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ remote, addr, key string }{
		{"192.0.2.1:1234", "192.0.2.1", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", "192.0.2.1"},
		{"[2001:db8:a:b:c:d:e:f]:80", "2001:db8:a:b:c:d:e:f", "2001:db8:a:b::/64"},
		{"[fe80::1%eth0]:80", "fe80::1%eth0", "fe80::/64"},
		{"2001:db8::1", "2001:db8::1", "2001:db8::/64"},
		{"pipe", "invalid IP", ""},
		{"", "invalid IP", ""},
		{"192.0.2.01:80", "invalid IP", ""},
	} {
		var g Guard
		a, key := g.clientAddr(&http.Request{RemoteAddr: tc.remote}, true)
		if a.String() != tc.addr || key != tc.key {
			t.Errorf("RemoteAddr %q: %v, %q; want %s, %q", tc.remote, a, key, tc.addr, tc.key)
		}
		if _, key := g.clientAddr(&http.Request{RemoteAddr: tc.remote}, false); key != tc.key {
			t.Errorf("RemoteAddr %q, address not needed: key %q, want %q", tc.remote, key, tc.key)
		}
	}
}

// FuzzClientAddr: for any RemoteAddr, the default client address and its
// budget key are those of the general path, and the remoteHost the failure
// filter knows it by until then is its key, so one client never has two
// budgets.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"192.0.2.1:1234", "192.0.2.1", "[::1]:80", "[::ffff:1.2.3.4]:5", "1.2.3.4:", "[fe80::1%en0]:1", "pipe", "", ":80", "01.2.3.4:5", "1.2.3.4%z:5", "255.255.255.255:65535", "256.1.1.1:1", "1.2.3.4:65536", "1.2.3.4:+1", "1.2.3:4", "1.2.3.4.5:6", "0.0.0.0:0", "1.2.3.4:00080", "1..3.4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, remote string) {
		var g Guard
		a, key := g.clientAddr(&http.Request{RemoteAddr: remote}, true)
		// Without an Observer the key may come from a shortcut that
		// does not parse the address: it must agree.
		if _, fast := g.clientAddr(&http.Request{RemoteAddr: remote}, false); fast != key {
			t.Fatalf("RemoteAddr %q: key %q without the address, %q with it", remote, fast, key)
		}
		if !a.IsValid() {
			if key != "" {
				t.Fatalf("invalid address with key %q", key)
			}
			return
		}
		if want := addrKey(a); key != want {
			t.Fatalf("RemoteAddr %q: key %q, want %q", remote, key, want)
		}
		// The middleware's failure filter knows an address by its
		// remoteHost until its key is needed: the two must agree
		// whenever there is a key.
		if h := remoteHost(remote); h != "" && h != key {
			t.Fatalf("RemoteAddr %q: remoteHost %q, key %q", remote, h, key)
		}
		if !bytes.Contains([]byte(remote), []byte(a.Unmap().WithZone("").String())) && a.Is4() {
			t.Fatalf("RemoteAddr %q: address %v not in it", remote, a)
		}
	})
}

// BenchmarkGuardLimits measures what rate limits and an Observer add to
// the middleware's success path, with an Authenticator that costs nothing,
// so that the difference is the limits' own cost. "on, no-op Limiter"
// splits that cost: the same limits kept by a Limiter that answers at once
// with a fixed Decision, so that what is left is the Guard's own part.
// Run it with:
//
//	go test -run '^$' -bench GuardLimits -benchmem ./auth/
func BenchmarkGuardLimits(b *testing.B) {
	l, err := NewMemoryLimiter()
	if err != nil {
		b.Fatal(err)
	}
	rl := DefaultRateLimits(l)
	rl.APIKey = Limit{Name: "api_key", Requests: 1 << 30, Period: time.Minute}
	fixed := rl
	fixed.Limiter = fixedLimiter{Decision{Allowed: true, Limit: rl.APIKey, Remaining: rl.APIKey.MaxBurst() - 1, Reset: rl.APIKey.Interval()}}
	nop := ObserverFunc(func(context.Context, Event) {})
	for _, bc := range []struct {
		name string
		opts []Option
		addr string
	}{
		{"off", nil, "192.0.2.1:1234"},
		{"on", []Option{WithRateLimits(rl)}, "192.0.2.1:1234"},
		{"on, no-op Limiter", []Option{WithRateLimits(fixed)}, "192.0.2.1:1234"},
		{"on, IPv6", []Option{WithRateLimits(rl)}, "[2001:db8::1]:1234"},
		{"observer", []Option{WithObserver(nop)}, "192.0.2.1:1234"},
		{"on+observer", []Option{WithRateLimits(rl), WithObserver(nop)}, "192.0.2.1:1234"},
		// A client whose address and credential failed lately: both
		// failure budgets are peeked at.
		{"on, failed lately", []Option{WithRateLimits(rl)}, "192.0.2.1:1234"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := mustNew(b, fixedAuth(alice, nil), bc.opts...)
			if bc.name == "on, failed lately" {
				g.limits.seenAddrs.mark("192.0.2.1")
				g.limits.seenCreds.mark(goodKey)
			}
			h := g.Middleware(okHandler())
			r := limitedRequest(bc.addr, goodKey)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
				clear(w.h)
			}
		})
	}
}

// fixedLimiter is a Limiter that answers every call with d, at once.
type fixedLimiter struct{ d Decision }

func (f fixedLimiter) Allow(context.Context, string, Limit) (Decision, error) { return f.d, nil }
func (f fixedLimiter) Peek(context.Context, string, Limit) (Decision, error)  { return f.d, nil }

// TestCredentialFailures: one bad credential replayed from many addresses
// is refused, once its own failure budget is spent, before the
// Authenticator sees it; other credentials, bad or good, are not affected.
func TestCredentialFailures(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(t)
	limits := testLimits(l)
	limits.CredentialFailures = PerMinute("credential_failures", 3)
	authn := keyAuth(nil)
	h := mustNew(t, authn, WithRateLimits(limits)).Middleware(okHandler())
	const replayed = "halfred_ReplayedRevokedKey0000000000"
	addr := func(i int) string { return fmt.Sprintf("198.51.100.%d:443", i) }
	policy := `"credential_failures";q=3;w=60`

	type step struct {
		addr, cred  string
		status      int
		authnCalled bool
		limit       string // the credential budget's RateLimit member; "" for none
	}
	steps := []step{
		{addr(1), replayed, 401, true, `"credential_failures";r=2;t=20`},
		{addr(2), replayed, 401, true, `"credential_failures";r=1;t=40`},
		{addr(3), replayed, 401, true, `"credential_failures";r=0;t=20`},
		{addr(4), replayed, 429, false, `"credential_failures";r=0;t=20`}, // a new address: the credential is spent
		{addr(5), replayed, 429, false, `"credential_failures";r=0;t=20`},
		{addr(6), "halfred_AnotherGuessedKey00000000000", 401, true, `"credential_failures";r=2;t=20`},
		{addr(4), goodKey, 200, true, ""}, // the valid key: its own budgets only
	}
	for i, s := range steps {
		before := authn.calls.Load()
		rec := serve(h, limitedRequest(s.addr, s.cred))
		what := fmt.Sprintf("step %d (%s, %q)", i, s.addr, s.cred)
		if rec.Code != s.status {
			t.Fatalf("%s: status %d, want %d (%s)", what, rec.Code, s.status, rec.Body)
		}
		if called := authn.calls.Load() != before; called != s.authnCalled {
			t.Errorf("%s: Authenticator called %v, want %v", what, called, s.authnCalled)
		}
		pol, lim := rateHeaders(rec)
		if s.limit == "" {
			if slices.Contains(pol, policy) {
				t.Errorf("%s: RateLimit-Policy %q names the credential budget", what, pol)
			}
			continue
		}
		if !slices.Contains(pol, policy) || !slices.Contains(lim, s.limit) {
			t.Errorf("%s: RateLimit-Policy %q, RateLimit %q; want %q and %q among them", what, pol, lim, policy, s.limit)
		}
		if s.status == 429 {
			if !strings.Contains(rec.Body.String(), msgTooManyCredentialFailures) || rec.Header().Get("Retry-After") != "20" {
				t.Errorf("%s: 429 body %s, Retry-After %q", what, rec.Body, rec.Header().Get("Retry-After"))
			}
			if strings.Contains(rec.Body.String(), replayed) {
				t.Errorf("%s: the body echoes the credential", what)
			}
		}
	}
	// A minute on, the budget is full again.
	clock.Advance(time.Minute)
	if rec := serve(h, limitedRequest(addr(7), replayed)); rec.Code != 401 {
		t.Errorf("a minute later: status %d, want 401", rec.Code)
	}
}

func TestRateLimitsNames(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	for _, tc := range []struct {
		name   string
		mutate func(*RateLimits)
		ok     bool
	}{
		{"defaults", func(*RateLimits) {}, true},
		{"credential failures named as the address failures", func(rl *RateLimits) { rl.CredentialFailures.Name = "auth_failures" }, false},
		{"credential failures named as API keys", func(rl *RateLimits) { rl.CredentialFailures.Name = "api_key" }, false},
		{"address failures named as access tokens", func(rl *RateLimits) { rl.Failures.Name = "access_token" }, false},
		{"API keys and tokens may share a name", func(rl *RateLimits) { rl.AccessToken.Name = "api_key" }, true},
		{"a zero credential limit may have any name", func(rl *RateLimits) { rl.CredentialFailures = Limit{Name: "api_key"} }, true},
		{"invalid credential limit", func(rl *RateLimits) { rl.CredentialFailures.Name = "no spaces" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl := DefaultRateLimits(l)
			tc.mutate(&rl)
			_, err := New(keyAuth(nil), WithRateLimits(rl))
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestCredentialKey: the per-credential budget key is a hash of the whole
// credential, never a piece of it: two credentials that share their last
// characters (a keygate key's checksum is its last six) get different
// budgets, and the key shows none of the credential's text.
func TestCredentialKey(t *testing.T) {
	t.Parallel()
	a := "halfred_AAAAAAAAAAAAAAAAAAAAAAsame16charsuffix"
	b := "halfred_BBBBBBBBBBBBBBBBBBBBBBsame16charsuffix"
	ka, kb := credentialKey(a), credentialKey(b)
	if ka == kb {
		t.Errorf("credentials with the same suffix share the budget key %q", ka)
	}
	if credentialKey(a) != ka || len(ka) != 16 {
		t.Errorf("credentialKey is not a stable 16-character key: %q, %q", ka, credentialKey(a))
	}
	for _, k := range []string{ka, kb} {
		if strings.Contains(a, k[:8]) || strings.Contains(b, k[:8]) || strings.Contains(k, "suffix") {
			t.Errorf("budget key %q shows part of the credential", k)
		}
	}
	// Instances sharing a Limiter, and versions of keygate in a rolling
	// deploy, must agree on every credential's key.
	for _, v := range []struct{ cred, key string }{
		{"", "0000000000000000"},
		{"a", "633b2c121b5e20dd"},
		{"1234567", "abed7a2efa8c641c"},
		{"12345678", "9624ac48d84939e4"},
		{"123456789", "1bed3add229950ae"},
		{a, "e9b69b37672d1f5c"},
	} {
		if got := credentialKey(v.cred); got != v.key {
			t.Errorf("credentialKey(%q) = %s, want %s", v.cred, got, v.key)
		}
	}
}

// TestFailureBudgetConcurrent: once an address has failed, its requests
// are taken from its failure budget before they are authenticated, so a
// burst of concurrent guesses cannot all slip past a nearly spent budget;
// and a client whose requests succeed gets them back, so one typo does
// not use up its budget.
func TestFailureBudgetConcurrent(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(t)
	limits := RateLimits{Limiter: l, Failures: PerMinute("auth_failures", 3)}
	var calls atomic.Int64
	slow := &fakeAuth{fn: func(_ context.Context, cred string) (Principal, error) {
		calls.Add(1)
		time.Sleep(5 * time.Millisecond) // a store lookup, wide enough for the requests to overlap
		if cred == goodKey {
			return alice, nil
		}
		return Principal{}, ErrInvalidCredential
	}}
	h := mustNew(t, slow, WithRateLimits(limits)).Middleware(okHandler())
	const addr = "192.0.2.50:1"

	// One typo, then good requests: they are taken up front and given
	// back, so the budget stays at two.
	if rec := serve(h, limitedRequest(addr, "halfred_typo")); rec.Code != 401 {
		t.Fatalf("typo: %d", rec.Code)
	}
	for i := range 10 {
		if rec := serve(h, limitedRequest(addr, goodKey)); rec.Code != 200 {
			t.Fatalf("good request %d after a typo: %d %s", i, rec.Code, rec.Body)
		}
	}

	// 100 concurrent guesses: two may be tried, the rest are refused
	// before the Authenticator.
	calls.Store(0)
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if serve(h, limitedRequest(addr, fmt.Sprintf("halfred_guess%d", i))).Code == 429 {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n > 2 {
		t.Errorf("%d guesses reached the Authenticator with two failures left in the budget", n)
	}
	if n := refused.Load(); n < 98 {
		t.Errorf("%d of 100 concurrent guesses refused, want at least 98", n)
	}
}

// countingFailingLimiter fails every call, and counts them.
type countingFailingLimiter struct{ calls atomic.Int64 }

func (l *countingFailingLimiter) Allow(context.Context, string, Limit) (Decision, error) {
	l.calls.Add(1)
	return Decision{}, errLimiterDown
}

func (l *countingFailingLimiter) Peek(context.Context, string, Limit) (Decision, error) {
	l.calls.Add(1)
	return Decision{}, errLimiterDown
}

// TestLimiterRests: after the Limiter fails, the Guard leaves it alone
// for limiterRest, so a dead Redis costs one request its timeout, not
// every request one per limit; the requests still follow the policy
// (here, fail open).
func TestLimiterRests(t *testing.T) {
	t.Parallel()
	l := &countingFailingLimiter{}
	h := mustNew(t, keyAuth(nil), WithRateLimits(DefaultRateLimits(l)), quietLogger()).Middleware(okHandler())
	for i := range 20 {
		if rec := serve(h, limitedRequest("192.0.2.1:1", goodKey)); rec.Code != 200 {
			t.Fatalf("request %d: %d, want 200 (fail open)", i, rec.Code)
		}
	}
	if n := l.calls.Load(); n != 1 {
		t.Errorf("the failing Limiter was called %d times by 20 requests within its rest, want 1", n)
	}
}

// TestFailClosedQuietClient: with only failure budgets set, a client that
// has not failed lately needs no Limiter call, so a failing Limiter does
// not refuse it, even when the Guard fails closed; once a failed
// authentication has to spend from a budget and the Limiter fails, every
// request is refused (503) while the Guard leaves the Limiter alone, the
// quiet client's included (see RateLimits.FailClosed).
func TestFailClosedQuietClient(t *testing.T) {
	t.Parallel()
	l := &countingFailingLimiter{}
	limits := RateLimits{
		Limiter:            l,
		Failures:           PerMinute("auth_failures", 5),
		CredentialFailures: PerMinute("credential_failures", 5),
		FailClosed:         true,
	}
	h := mustNew(t, keyAuth(nil), WithRateLimits(limits), quietLogger()).Middleware(okHandler())
	for i := range 10 {
		if rec := serve(h, limitedRequest("192.0.2.1:1", goodKey)); rec.Code != 200 {
			t.Fatalf("quiet client, request %d: %d, want 200", i, rec.Code)
		}
	}
	if n := l.calls.Load(); n != 0 {
		t.Fatalf("%d Limiter calls for a client that never failed, want 0", n)
	}
	// A wrong key from another address: 401, and its failure cannot be
	// spent.
	if rec := serve(h, limitedRequest("198.51.100.7:1", otherKey)); rec.Code != 401 {
		t.Fatalf("wrong key: %d, want 401", rec.Code)
	}
	if n := l.calls.Load(); n != 1 {
		t.Fatalf("%d Limiter calls after one failed authentication, want 1 (then it rests)", n)
	}
	if rec := serve(h, limitedRequest("192.0.2.1:1", goodKey)); rec.Code != 503 {
		t.Errorf("quiet client while the failed Limiter rests: %d, want 503 (fail closed)", rec.Code)
	}
}

// TestSpendMiddlewareLimiterDown: with a failing Limiter and FailClosed,
// Guard.Limit and Guard.LimitByClientAddr answer 503 and report it.
func TestSpendMiddlewareLimiterDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		wrap func(g *Guard) http.Handler
	}{
		{"Limit", func(g *Guard) http.Handler { return g.Middleware(g.Limit(PerMinute("exchange", 5))(okHandler())) }},
		{"LimitByClientAddr", func(g *Guard) http.Handler { return g.LimitByClientAddr(PerMinute("refresh", 5))(okHandler()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obs := &recorder{}
			g := mustNew(t, keyAuth(nil), WithRateLimits(RateLimits{Limiter: &failingLimiter{}, FailClosed: true}), WithObserver(obs), quietLogger())
			rec := serve(tc.wrap(g), limitedRequest("192.0.2.1:1", goodKey))
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", rec.Code)
			}
			var found bool
			for _, e := range obs.take() {
				if e.Kind == EventAuthFailed && e.Status == http.StatusServiceUnavailable && errors.Is(e.Err, ErrUnavailable) {
					found = true
				}
			}
			if !found {
				t.Error("no auth.failed 503 event reported")
			}
		})
	}
}

// TestObservers: Observers passes each Event to every Observer in order,
// skips nil ones, flattens nested fan-outs, and is nil when none is left.
func TestObservers(t *testing.T) {
	t.Parallel()
	var got []string
	named := func(name string) Observer {
		return ObserverFunc(func(_ context.Context, e Event) { got = append(got, name+":"+e.Kind.String()) })
	}
	if o := Observers(); o != nil {
		t.Errorf("Observers() = %v, want nil", o)
	}
	if o := Observers(nil, nil); o != nil {
		t.Errorf("Observers(nil, nil) = %v, want nil", o)
	}
	one := named("a")
	if o := Observers(nil, one); o == nil {
		t.Fatal("Observers(nil, a) = nil")
	}
	o := Observers(named("a"), nil, Observers(named("b"), named("c")))
	o.Observe(context.Background(), Event{Kind: EventKeyRevoked})
	want := []string{"a:key.revoked", "b:key.revoked", "c:key.revoked"}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if n := len(o.(multiObserver)); n != 3 {
		t.Errorf("nested fan-out not flattened: %d observers", n)
	}
}
