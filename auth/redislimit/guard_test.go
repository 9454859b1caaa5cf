package redislimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth"
)

// commandCounter is a go-redis hook that counts the commands a client
// sends: one per round trip, as the limiter sends no pipelines.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

const (
	guardKey = "halfred_GoodKey000000000000000000000"
	badKey   = "halfred_WrongKey00000000000000000000"
)

// keyAuthenticator accepts guardKey as key_1 and nothing else.
var keyAuthenticator = auth.AuthenticatorFunc(func(_ context.Context, cred string) (auth.Principal, error) {
	if cred == guardKey {
		return auth.Principal{Method: auth.MethodAPIKey, KeyID: "key_1", Project: "p"}, nil
	}
	return auth.Principal{}, auth.ErrInvalidCredential
})

// guardOverRedis returns the middleware of a Guard with DefaultRateLimits
// kept in the Redis of KEYGATE_REDIS_ADDR, and the counter of the Redis
// commands it sends.
func guardOverRedis(tb testing.TB) (http.Handler, *commandCounter) {
	tb.Helper()
	c := redisClient(tb)
	counter := &commandCounter{}
	c.AddHook(counter)
	limits := auth.DefaultRateLimits(newLimiter(tb, c))
	limits.APIKey = auth.Limit{Name: "api_key", Requests: 1 << 30, Period: time.Minute}
	g, err := auth.New(keyAuthenticator, auth.WithRateLimits(limits))
	if err != nil {
		tb.Fatal(err)
	}
	return g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})), counter
}

func serveFrom(h http.Handler, addr, key string) int {
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	r.RemoteAddr = addr
	r.Header.Set("Authorization", "Bearer "+key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestGuardRoundTrips: with the limits kept in Redis, a request from a
// client that has not failed costs one round trip (its key's budget);
// a failure costs one per failure budget; and a client that failed has its
// failure budgets checked before it is authenticated.
//
// The Guard remembers recent failures in a table of slots with a random
// seed, where two keys share a slot once in about a thousand Guards; the
// middleware then peeks at a budget it need not have, a command more than
// counted below. So the steps run against up to three Guards, and pass
// when one of them sends exactly the commands each step allows.
func TestGuardRoundTrips(t *testing.T) {
	var failed []string
	for range 3 {
		if failed = guardRoundTrips(t); len(failed) == 0 {
			return
		}
	}
	for _, f := range failed {
		t.Error(f)
	}
}

// guardRoundTrips runs TestGuardRoundTrips' steps against a new Guard and
// returns how the commands sent differed from those allowed.
func guardRoundTrips(t *testing.T) []string {
	h, counter := guardOverRedis(t)
	const a, b = "192.0.2.1:1000", "198.51.100.2:1000"
	if got := serveFrom(h, a, guardKey); got != http.StatusOK { // loads the script
		t.Fatalf("first request: %d", got)
	}
	steps := []struct {
		name     string
		addr     string
		key      string
		status   int
		min, max int64 // commands
	}{
		{"clean client", a, guardKey, 200, 1, 1},
		{"clean client again", a, guardKey, 200, 1, 1},
		{"a failure: both failure budgets spent", b, badKey, 401, 2, 2},
		// The address's budget is in use now: peeked at, reserved from
		// and refunded, besides the key's own budget.
		{"a client that failed", b, guardKey, 200, 2, 4},
		{"another clean client", a, guardKey, 200, 1, 1},
	}
	var failed []string
	for _, s := range steps {
		before := counter.n.Load()
		if got := serveFrom(h, s.addr, s.key); got != s.status {
			t.Fatalf("%s: status %d, want %d", s.name, got, s.status)
		}
		if n := counter.n.Load() - before; n < s.min || n > s.max {
			failed = append(failed, fmt.Sprintf("%s: %d Redis commands, want %d to %d", s.name, n, s.min, s.max))
		}
	}
	return failed
}

// BenchmarkGuardRedisLimits measures the success path of a Guard whose
// DefaultRateLimits are kept in Redis, for a client that has not failed:
// one round trip. Run it with:
//
//	KEYGATE_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench GuardRedisLimits -benchmem
func BenchmarkGuardRedisLimits(b *testing.B) {
	h, counter := guardOverRedis(b)
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	r.RemoteAddr = "192.0.2.1:1000"
	r.Header.Set("Authorization", "Bearer "+guardKey)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
	b.ReportMetric(float64(counter.n.Load())/float64(b.N), "round-trips/op")
}
