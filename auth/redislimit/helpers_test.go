package redislimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth/redislimit"
	"github.com/keygate/keygate/internal/redistest"
)

// testTimeout is the per-call timeout of the limiters in tests that check
// behaviour, not latency: generous, so that a loaded machine does not fail
// them.
const testTimeout = 5 * time.Second

// redisClient returns a client of the Redis that KEYGATE_REDIS_ADDR names,
// closed when tb ends. It skips or fails tb as [redistest.Addr] does when
// the variable is unset or Redis is unreachable.
func redisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: redistest.Addr(tb), ContextTimeoutEnabled: true})
	tb.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix no other test uses, and deletes every
// key under it when tb ends.
func testPrefix(tb testing.TB, c redis.UniversalClient) string {
	tb.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	prefix := "keygate:test:rl:" + hex.EncodeToString(b) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Errorf("cleaning up %s*: %v", prefix, err)
		}
	})
	return prefix
}

// newLimiter returns a Limiter over c with a prefix of its own and the
// generous test timeout, unless opts say otherwise.
func newLimiter(tb testing.TB, c redis.UniversalClient, opts ...redislimit.Option) *redislimit.Limiter {
	tb.Helper()
	opts = append([]redislimit.Option{redislimit.WithPrefix(testPrefix(tb, c)), redislimit.WithTimeout(testTimeout)}, opts...)
	l, err := redislimit.New(c, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// offlineClient returns a client of addr, closed when tb ends, that does
// not retry, so that tests of failures see the first one.
func offlineClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		Password:              "hunter2-do-not-log",
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// fakeRedis is an in-process Redis (miniredis) whose clock the test sets:
// it answers TIME with the fake time and expires keys when the test
// advances it.
type fakeRedis struct {
	*miniredis.Miniredis
	now time.Time
}

// newFakeRedis starts a fakeRedis at a fixed time and returns it with a
// client of it; both stop when tb ends.
func newFakeRedis(tb testing.TB) (*fakeRedis, *redis.Client) {
	tb.Helper()
	m := miniredis.RunT(tb)
	f := &fakeRedis{Miniredis: m, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	m.SetTime(f.now)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	tb.Cleanup(func() { c.Close() })
	return f, c
}

// advance moves the fake clock forward by d, expiring keys as it goes.
func (f *fakeRedis) advance(d time.Duration) {
	f.now = f.now.Add(d)
	f.SetTime(f.now)
	f.FastForward(d)
}

// clock returns the fake time, for a MemoryLimiter that should agree.
func (f *fakeRedis) clock() time.Time { return f.now }
