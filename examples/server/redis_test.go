package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
)

// redisAddr returns the Redis server that KEYGATE_REDIS_ADDR names. It
// skips t when the variable is unset or the server unreachable, unless
// CI=true: then it fails t, so that CI cannot pass by skipping.
func redisAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("KEYGATE_REDIS_ADDR")
	ci := os.Getenv("CI") == "true"
	if addr == "" {
		if ci {
			t.Fatal("CI=true but KEYGATE_REDIS_ADDR is not set; CI must run the Redis tests")
		}
		t.Skip("KEYGATE_REDIS_ADDR not set: skipping the Redis tests (set it to e.g. 127.0.0.1:6379)")
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		if ci {
			t.Fatalf("Redis at KEYGATE_REDIS_ADDR is unreachable: %v", err)
		}
		t.Skipf("Redis at KEYGATE_REDIS_ADDR is unreachable, skipping: %v", err)
	}
	conn.Close()
	return addr
}

// redisPrefix returns a -redis-prefix no other test (or earlier run: the
// budgets outlive a test by up to their period) uses.
func redisPrefix(t *testing.T) string {
	b := make([]byte, 6)
	rand.Read(b)
	return "keygate:test:" + hex.EncodeToString(b) + ":"
}

// TestRedisSharedBudget: two instances on one store and one Redis share
// each key's budget: the limit holds across them, not per instance.
func TestRedisSharedBudget(t *testing.T) {
	t.Parallel()
	args := []string{"-addr", "127.0.0.1:0", "-postgres", postgresDSN(t),
		"-redis", redisAddr(t), "-redis-prefix", redisPrefix(t), "-rate-limit-keys", "4"}
	a, b, key := startPair(t, args...)
	if !strings.Contains(a.stderr.String(), "in Redis: shared by every instance") {
		t.Errorf("A does not say its budgets are in Redis:\n%s", a.stderr)
	}

	c := newClient()
	defer c.CloseIdleConnections()
	models := func(addr string) (int, http.Header) {
		t.Helper()
		r, err := http.NewRequest("GET", "http://"+addr+"/v1/models", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+key)
		res, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header
	}
	for i, tt := range []struct {
		addr      string
		status    int
		remaining int
	}{
		{a.addr, 200, 3}, {b.addr, 200, 2}, {a.addr, 200, 1}, {b.addr, 200, 0},
		{a.addr, 429, 0}, {b.addr, 429, 0},
	} {
		status, h := models(tt.addr)
		if status != tt.status {
			t.Fatalf("request %d: %d, want %d", i, status, tt.status)
		}
		if p := h.Values("RateLimit-Policy"); !slices.Equal(p, []string{`"api_key";q=4;w=60`}) {
			t.Errorf("request %d: RateLimit-Policy %q", i, p)
		}
		if l := h.Get("RateLimit"); !strings.HasPrefix(l, `"api_key";r=`+strconv.Itoa(tt.remaining)+";t=") {
			t.Errorf("request %d: RateLimit %q, want r=%d", i, l, tt.remaining)
		}
		if (status == 429) != (h.Get("Retry-After") != "") {
			t.Errorf("request %d: status %d with Retry-After %q", i, status, h.Get("Retry-After"))
		}
	}
}

// TestRedisFeedRevocation is -feed redis's acceptance test: two
// instances on one PostgreSQL database, hearing of each other's writes
// through Redis pub/sub instead of LISTEN/NOTIFY. A key revoked through A
// stops working at B, whose cache had it, as soon as B hears A's message;
// without a feed B would trust its cache for 10 s. It logs the delays
// over a few keys, and fails if one reaches a second.
func TestRedisFeedRevocation(t *testing.T) {
	t.Parallel()
	args := append([]string{"-addr", "127.0.0.1:0", "-postgres", postgresDSN(t),
		"-redis", redisAddr(t), "-redis-prefix", redisPrefix(t), "-feed", "redis"}, noRateLimits...)
	a, b, admin := startPair(t, args...)
	for _, s := range []*started{a, b} {
		if stderr := s.stderr.String(); !strings.Contains(stderr, "through Redis pub/sub (-feed redis)") || strings.Contains(stderr, "LISTEN/NOTIFY (-feed postgres)") {
			t.Fatalf("the instance does not use the Redis feed:\n%s", stderr)
		}
	}
	urlA, urlB := "http://"+a.addr, "http://"+b.addr
	c := newClient()
	defer c.CloseIdleConnections()

	const trials = 30
	lat := make([]time.Duration, trials)
	for i := range trials {
		status, created := c.must(t, "POST", urlA+"/v1/keys", admin, `{"name":"k`+strconv.Itoa(i)+`","scopes":["models:read"]}`)
		key, _ := created["key"].(string)
		id, _ := created["id"].(string)
		if status != http.StatusCreated {
			t.Fatalf("A: POST /v1/keys = %d %v", status, created)
		}
		for range 2 { // the second is served from B's cache
			if status, body := c.must(t, "GET", urlB+"/v1/models", key, ""); status != http.StatusOK {
				t.Fatalf("B: GET /v1/models with a new key = %d %v", status, body)
			}
		}
		if status, body := c.must(t, "DELETE", urlA+"/v1/keys/"+id, admin, ""); status != http.StatusNoContent {
			t.Fatalf("A: DELETE = %d %v", status, body)
		}
		revoked := time.Now()
		for {
			status, body := c.must(t, "GET", urlB+"/v1/models", key, "")
			if status == http.StatusUnauthorized {
				break
			}
			if status != http.StatusOK {
				t.Fatalf("B: GET /v1/models = %d %v", status, body)
			}
			if time.Since(revoked) > 2*time.Second {
				t.Fatalf("B still accepts a key revoked through A 2 s ago")
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat[i] = time.Since(revoked)
	}
	slices.Sort(lat)
	t.Logf("-feed redis: revoke through A → 401 at B over %d keys: p50 %v, p99 %v, max %v",
		trials, percentile(lat, 0.5), percentile(lat, 0.99), lat[trials-1])
	if lat[trials-1] > time.Second {
		t.Errorf("slowest revocation took %v, want well under the cache's TTL (10 s)", lat[trials-1])
	}
}

// TestRedisErrors: a Redis server that cannot be used stops the server at
// start (exit status 1), before it creates its database, and no output
// holds the Redis password.
func TestRedisErrors(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncbuf.Buffer
	env := map[string]string{redisPasswordEnv: dsnSecret}
	dir := t.TempDir()
	args := []string{"-db", filepath.Join(dir, "keygate.db"), "-redis", "127.0.0.1:1"}
	err := runEnv(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	if err == nil {
		t.Fatal("run = nil, want an error")
	}
	if errors.As(err, new(usageError)) || !errors.As(err, new(startError)) {
		t.Errorf("error %v is not a start error (exit status 1)", err)
	}
	all := stderr.String() + err.Error()
	if want := "-redis: cannot use the Redis server at 127.0.0.1:1"; !strings.Contains(all, want) {
		t.Errorf("output lacks %q:\n%s", want, all)
	}
	if strings.Contains(all, dsnSecret) {
		t.Errorf("output holds the Redis password:\n%s", all)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the server created files before checking Redis: %v", entries)
	}
}

// TestRedisPasswordNotLogged: the password of $KEYGATE_REDIS_PASSWORD is
// used and never printed. (The test server has no password, and Redis
// lets a client that sends one in.)
func TestRedisPasswordNotLogged(t *testing.T) {
	t.Parallel()
	s := startRun(t, map[string]string{redisPasswordEnv: dsnSecret},
		"-addr", "127.0.0.1:0", "-memory", "-redis", redisAddr(t), "-redis-prefix", redisPrefix(t))
	stopRun(t, s)
	if out := s.stderr.String() + s.stdout.String(); strings.Contains(out, dsnSecret) || !strings.Contains(out, "connected to Redis") {
		t.Errorf("output holds the password, or does not say it connected:\n%s", out)
	}
}
