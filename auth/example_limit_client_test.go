package auth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/keygate/keygate/auth"
)

// Limit an endpoint that takes no credential header, such as a token
// refresh endpoint, to 2 requests a minute per client address.
func ExampleGuard_LimitByClientAddr() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limiter, err := auth.NewMemoryLimiter(auth.WithLimiterClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	guard, err := auth.New(keys, auth.WithRateLimits(auth.DefaultRateLimits(limiter)))
	if err != nil {
		panic(err)
	}
	refresh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h := guard.LimitByClientAddr(auth.PerMinute("refresh", 2))(refresh)

	for _, addr := range []string{"192.0.2.1:1234", "192.0.2.1:5678", "192.0.2.1:1234", "198.51.100.9:1234"} {
		r := httptest.NewRequest(http.MethodPost, "/v1/auth/refresh", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprint(addr, " ", w.Code, " ", w.Header().Get("RateLimit"), " ", w.Header().Get("Retry-After"))))
	}
	// Output:
	// 192.0.2.1:1234 200 "refresh";r=1;t=30
	// 192.0.2.1:5678 200 "refresh";r=0;t=30
	// 192.0.2.1:1234 429 "refresh";r=0;t=30 30
	// 198.51.100.9:1234 200 "refresh";r=1;t=30
}
