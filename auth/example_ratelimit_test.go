package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/keygate/keygate/auth"
)

// call sends a GET request from addr with credential as a Bearer token and
// prints the status, the RateLimit field and Retry-After.
func call(h http.Handler, addr, credential string) {
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	r.RemoteAddr = addr
	r.Header.Set("Authorization", "Bearer "+credential)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Println(strings.TrimSpace(fmt.Sprint(w.Code, " ", w.Header().Get("RateLimit"), " ", w.Header().Get("Retry-After"))))
}

// Limit each API key to 2 requests a minute, and each client address to 2
// failed authentications a minute. The limits show in the RateLimit
// response header field; a refused request gets 429 and Retry-After.
func ExampleWithRateLimits() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limiter, err := auth.NewMemoryLimiter(auth.WithLimiterClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	limits := auth.DefaultRateLimits(limiter) // 600 a minute per key, 20 failures per address
	limits.APIKey = auth.PerMinute("api_key", 2)
	limits.Failures = auth.PerMinute("auth_failures", 2)
	guard, err := auth.New(keys, auth.WithRateLimits(limits))
	if err != nil {
		panic(err)
	}
	h := guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	call(h, "192.0.2.1:1234", "halfred_reader")
	call(h, "192.0.2.1:1234", "halfred_reader")
	call(h, "192.0.2.1:1234", "halfred_reader") // over the key's limit
	call(h, "192.0.2.1:1234", "halfred_admin")  // another key, another budget

	call(h, "198.51.100.9:1234", "halfred_guess1")
	call(h, "198.51.100.9:1234", "halfred_guess2")
	call(h, "198.51.100.9:1234", "halfred_reader") // refused before the key is even checked
	// Output:
	// 200 "api_key";r=1;t=30
	// 200 "api_key";r=0;t=30
	// 429 "api_key";r=0;t=30 30
	// 200 "api_key";r=1;t=30
	// 401 "auth_failures";r=1;t=30
	// 401 "auth_failures";r=0;t=30
	// 429 "auth_failures";r=0;t=30 30
}

// A stricter limit for one endpoint, such as a token exchange, behind the
// Guard's middleware.
func ExampleGuard_Limit() {
	limiter, err := auth.NewMemoryLimiter()
	if err != nil {
		panic(err)
	}
	guard, err := auth.New(keys, auth.WithRateLimits(auth.DefaultRateLimits(limiter)))
	if err != nil {
		panic(err)
	}
	exchange := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h := guard.RequireScopes("models:read")(guard.Limit(auth.PerHour("token_exchange", 1))(exchange))

	r := httptest.NewRequest(http.MethodPost, "/v1/auth/token", nil)
	r.Header.Set("Authorization", "Bearer halfred_reader")
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Values("RateLimit-Policy"))
	}
	// Output:
	// 200 ["api_key";q=600;w=60 "token_exchange";q=1;w=3600]
	// 429 ["api_key";q=600;w=60 "token_exchange";q=1;w=3600]
}

// The in-memory limiter on its own: 3 requests a second, in bursts of 3.
func ExampleMemoryLimiter() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l, err := auth.NewMemoryLimiter(auth.WithLimiterClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	limit := auth.Limit{Name: "demo", Requests: 3, Period: time.Second}
	for range 4 {
		d, _ := l.Allow(ctx, "key_1", limit)
		fmt.Println(d.Allowed, d.Remaining, d.Reset, d.RetryAfter)
	}
	now = now.Add(time.Second / 3)
	d, _ := l.Allow(ctx, "key_1", limit)
	fmt.Println(d.Allowed, d.Remaining, d.Reset, d.RetryAfter)
	// Output:
	// true 2 333.333333ms 0s
	// true 1 666.666666ms 0s
	// true 0 999.999999ms 0s
	// false 0 999.999999ms 333.333333ms
	// true 0 999.999999ms 0s
}

// Report every authentication to an Observer: here, print the events.
func ExampleWithObserver() {
	obs := auth.ObserverFunc(func(ctx context.Context, e auth.Event) {
		fmt.Printf("%s key=%q hint=%q addr=%s status=%d\n", e.Kind, e.KeyID, e.Hint, e.ClientAddr, e.Status)
	})
	guard, err := auth.New(keys, auth.WithObserver(obs))
	if err != nil {
		panic(err)
	}
	h := guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	call(h, "192.0.2.1:1234", "halfred_reader")
	call(h, "192.0.2.1:1234", "halfred_0123456789abcdefghij")
	// Output:
	// auth.succeeded key="key_1" hint="" addr=192.0.2.1 status=0
	// 200
	// auth.failed key="" hint="halfred_…ghij" addr=192.0.2.1 status=401
	// 401
}
