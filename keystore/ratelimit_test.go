package keystore_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// TestGuardLimitsBruteForce: 10,000 requests from one address, with
// random keys half of which are well formed (right prefix, length and
// checksum), reach the key store only as often as the Guard's failure
// budget allows, and the real key keeps working from elsewhere.
func TestGuardLimitsBruteForce(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := newCountingStore()
	m := newManager(t, store, c)
	key, _, err := m.Issue(context.Background(), keystore.KeySpec{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	h := limitedMiddleware(t, m, c)
	rng := rand.New(rand.NewPCG(5, 6))
	counts := map[int]int{}
	wellFormed := 0
	for i := range 10_000 {
		var cred string
		if rng.IntN(2) == 0 {
			k, err := keystore.DefaultFormat().Generate()
			if err != nil {
				t.Fatal(err)
			}
			cred = k.Plaintext()
			wellFormed++
		} else {
			b := []byte(key.Plaintext())
			b[8+rng.IntN(len(b)-8)] ^= 1 // a typo: the checksum fails
			cred = string(b)
		}
		r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		r.RemoteAddr = "203.0.113.9:5000"
		r.Header.Set("Authorization", "Bearer "+cred)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		counts[w.Code]++
		if i%100 == 99 {
			c.Advance(time.Second)
		}
	}
	// 20 failures at once, then one every 3 s for 100 s: at most 54
	// credentials are checked, half of them well formed.
	if n := store.lookups.Load(); n > 54 {
		t.Errorf("%d store lookups for %d well-formed keys from one address, want at most 54", n, wellFormed)
	}
	if counts[http.StatusTooManyRequests] < 9_900 {
		t.Errorf("responses %v, want almost all 429", counts)
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	r.RemoteAddr = "198.51.100.2:5000"
	r.Header.Set("Authorization", "Bearer "+key.Plaintext())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("the real key from another address: %d", w.Code)
	}
}

// TestGuardLimitsKeyOwnLimit: a key's own RateLimit, stored on its
// record, replaces the Guard's API-key limit for that key only.
func TestGuardLimitsKeyOwnLimit(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := newManager(t, newCountingStore(), c)
	ctx := context.Background()
	slow, _, err := m.Issue(ctx, keystore.KeySpec{Project: "p", RateLimit: auth.Limit{Name: "free", Requests: 2, Period: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	normal, _, err := m.Issue(ctx, keystore.KeySpec{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	h := limitedMiddleware(t, m, c)
	do := func(key keystore.Key) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		r.Header.Set("Authorization", "Bearer "+key.Plaintext())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i, want := range []struct {
		key    keystore.Key
		status int
		policy string
		limit  string
	}{
		{slow, 200, `"free";q=2;w=60`, `"free";r=1;t=30`},
		{slow, 200, `"free";q=2;w=60`, `"free";r=0;t=30`},
		{slow, 429, `"free";q=2;w=60`, `"free";r=0;t=30`},
		{normal, 200, `"api_key";q=600;w=60`, `"api_key";r=599;t=1`},
	} {
		w := do(want.key)
		if w.Code != want.status ||
			!slices.Equal(w.Header().Values("RateLimit-Policy"), []string{want.policy}) ||
			!slices.Equal(w.Header().Values("RateLimit"), []string{want.limit}) {
			t.Errorf("request %d: %d %q %q; want %d %q %q", i, w.Code,
				w.Header().Values("RateLimit-Policy"), w.Header().Values("RateLimit"), want.status, want.policy, want.limit)
		}
	}
}

// limitedMiddleware is m behind a Guard with DefaultRateLimits, kept by a
// MemoryLimiter on clock c, in front of a handler that does nothing.
func limitedMiddleware(t *testing.T, m *keystore.Manager, c *testclock.Clock) http.Handler {
	t.Helper()
	lim, err := auth.NewMemoryLimiter(auth.WithLimiterClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	g, err := auth.New(m, auth.WithRateLimits(auth.DefaultRateLimits(lim)))
	if err != nil {
		t.Fatal(err)
	}
	return g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}
