package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/limittest"
	"github.com/keygate/keygate/auth/redislimit"
	"github.com/keygate/keygate/internal/redistest"
)

// slack is how far a duration may be off where real time passes between
// the test's calls: Redis keeps time to the microsecond, a loaded machine
// is slow.
const slack = 50 * time.Millisecond

func TestConformance(t *testing.T) {
	c := redisClient(t)
	limittest.Run(t, func(t *testing.T) auth.Limiter { return newLimiter(t, c) })
}

// TestConformanceShared runs the suite with one Limiter for every subtest,
// as a service has.
func TestConformanceShared(t *testing.T) {
	c := redisClient(t)
	l := newLimiter(t, c)
	limittest.Run(t, func(t *testing.T) auth.Limiter { return l })
}

func TestNew(t *testing.T) {
	ok := redis.NewClient(&redis.Options{Addr: redistest.ClosedAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { ok.Close() })
	noCtx := redis.NewClient(&redis.Options{Addr: redistest.ClosedAddr(t)})
	t.Cleanup(func() { noCtx.Close() })
	noCtxCluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{redistest.ClosedAddr(t)}})
	t.Cleanup(func() { noCtxCluster.Close() })
	noCtxRing := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": redistest.ClosedAddr(t)}})
	t.Cleanup(func() { noCtxRing.Close() })
	ctxCluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{redistest.ClosedAddr(t)}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { ctxCluster.Close() })

	tests := []struct {
		name    string
		client  redis.Scripter
		opts    []redislimit.Option
		wantErr error  // matched with errors.Is, when set
		errText string // contained in the error, when set
	}{
		{name: "defaults", client: ok},
		{name: "options", client: ok, opts: []redislimit.Option{redislimit.WithPrefix("p:"), redislimit.WithTimeout(0)}},
		{name: "cluster", client: ctxCluster},
		{name: "nil client", errText: "nil client"},
		{name: "nil *redis.Client", client: (*redis.Client)(nil), errText: "nil client"},
		{name: "nil option", client: ok, opts: []redislimit.Option{nil}, errText: "nil option"},
		{name: "empty prefix", client: ok, opts: []redislimit.Option{redislimit.WithPrefix("")}, errText: "empty key prefix"},
		{name: "negative timeout", client: ok, opts: []redislimit.Option{redislimit.WithTimeout(-time.Second)}, errText: "negative timeout"},
		{name: "client ignores context", client: noCtx, wantErr: redislimit.ErrContextTimeoutDisabled},
		{name: "cluster ignores context", client: noCtxCluster, wantErr: redislimit.ErrContextTimeoutDisabled},
		{name: "ring ignores context", client: noCtxRing, wantErr: redislimit.ErrContextTimeoutDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := redislimit.New(tt.client, tt.opts...)
			if tt.wantErr == nil && tt.errText == "" {
				if err != nil || l == nil {
					t.Fatalf("New = %v, %v; want a Limiter", l, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("New error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("New error = %q, want it to say %q", err, tt.errText)
			}
		})
	}
}

func TestKey(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.ClosedAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	def, _ := redislimit.New(c)
	own, _ := redislimit.New(c, redislimit.WithPrefix("svc:"))
	tests := []struct {
		l    *redislimit.Limiter
		key  string
		lim  auth.Limit
		want string
	}{
		{def, "key_1", auth.PerMinute("api", 10), "keygate:rl:api:key_1"},
		{def, "key_1", auth.PerMinute("", 10), "keygate:rl:default:key_1"},
		{def, "203.0.113.7", auth.PerMinute("ip", 10), "keygate:rl:ip:203.0.113.7"},
		{def, "a:b\x00\xff", auth.PerMinute("x", 10), "keygate:rl:x:a:b\x00\xff"},
		{own, "k", auth.PerHour("h", 1), "svc:h:k"},
	}
	for _, tt := range tests {
		if got := tt.l.Key(tt.key, tt.lim); got != tt.want {
			t.Errorf("Key(%q, %q) = %q, want %q", tt.key, tt.lim.Name, got, tt.want)
		}
	}
}

// TestNoRoundTrip: the zero Limit, an invalid Limit and a done context are
// answered without asking Redis, here a Redis that is down.
func TestNoRoundTrip(t *testing.T) {
	l, err := redislimit.New(offlineClient(t, redistest.ClosedAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]func(context.Context, string, auth.Limit) (auth.Decision, error){"Allow": l.Allow, "Peek": l.Peek}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	tests := []struct {
		name    string
		ctx     context.Context
		lim     auth.Limit
		wantErr error // nil: allowed
	}{
		{"zero limit", context.Background(), auth.Limit{}, nil},
		{"no requests", context.Background(), auth.Limit{Name: "a", Period: time.Minute}, nil},
		{"no period", context.Background(), auth.Limit{Name: "a", Requests: 5}, nil},
		{"zero limit, done context", canceled, auth.Limit{}, nil},
		{"name with a colon", context.Background(), auth.PerMinute("a:b", 5), redislimit.ErrInvalidLimit},
		{"name with a space", context.Background(), auth.PerMinute("a b", 5), redislimit.ErrInvalidLimit},
		{"negative burst", context.Background(), auth.Limit{Requests: 5, Period: time.Minute, Burst: -1}, redislimit.ErrInvalidLimit},
		{"period below a millisecond", context.Background(), auth.Limit{Requests: 5, Period: time.Microsecond}, redislimit.ErrInvalidLimit},
		{"budget over 10 years", context.Background(), auth.Limit{Requests: 1, Period: 24 * time.Hour, Burst: 10000}, redislimit.ErrInvalidLimit},
		{"canceled context", canceled, auth.PerMinute("a", 5), context.Canceled},
		{"expired context", expired, auth.PerMinute("a", 5), context.DeadlineExceeded},
	}
	for _, tt := range tests {
		for op, fn := range ops {
			t.Run(tt.name+"/"+op, func(t *testing.T) {
				start := time.Now()
				d, err := fn(tt.ctx, "key", tt.lim)
				if elapsed := time.Since(start); elapsed > time.Second {
					t.Errorf("took %v", elapsed)
				}
				if tt.wantErr == nil {
					if err != nil || !d.Allowed || d.Limit != tt.lim {
						t.Fatalf("= %+v, %v; want allowed under %+v", d, err, tt.lim)
					}
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if d.Allowed {
					t.Errorf("Allowed with an error: %+v", d)
				}
			})
		}
	}
}

// TestBudget spends budgets of several shapes on a real Redis: Burst
// requests at once with Remaining counting down, then refusals with
// Remaining 0 and RetryAfter one interval, all with a long enough period
// that the few milliseconds the test takes hardly matter.
func TestBudget(t *testing.T) {
	c := redisClient(t)
	tests := []struct {
		lim   auth.Limit
		burst int
	}{
		{auth.PerMinute("one", 1), 1},
		{auth.PerMinute("five", 5), 5},
		{auth.Limit{Name: "burst3", Requests: 60, Period: time.Hour, Burst: 3}, 3},
		{auth.Limit{Name: "burst10", Requests: 2, Period: time.Hour, Burst: 10}, 10},
		{auth.PerHour("thirds", 7), 7}, // an interval that is not a whole µs
	}
	for _, tt := range tests {
		t.Run(tt.lim.Name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t, c)
			ctx := context.Background()
			iv := tt.lim.Period / time.Duration(tt.lim.Requests)
			start := time.Now()
			for i := 1; i <= tt.burst; i++ {
				d, err := l.Allow(ctx, "k", tt.lim)
				if err != nil {
					t.Fatal(err)
				}
				elapsed := time.Since(start)
				wantReset := time.Duration(i) * iv
				if !d.Allowed || d.Remaining != tt.burst-i || d.RetryAfter != 0 || d.Limit != tt.lim ||
					d.Reset > wantReset || d.Reset < wantReset-elapsed-slack {
					t.Fatalf("request %d = %+v, want allowed, Remaining %d, Reset %v", i, d, tt.burst-i, wantReset)
				}
			}
			for i := 0; i < 3; i++ {
				d, err := l.Allow(ctx, "k", tt.lim)
				if err != nil {
					t.Fatal(err)
				}
				elapsed := time.Since(start)
				full := time.Duration(tt.burst) * iv
				if d.Allowed || d.Remaining != 0 || d.Limit != tt.lim ||
					d.RetryAfter > iv || d.RetryAfter < iv-elapsed-slack ||
					d.Reset > full || d.Reset < full-elapsed-slack {
					t.Fatalf("request past the burst = %+v, want refused, RetryAfter %v, Reset %v", d, iv, full)
				}
			}
			p, err := l.Peek(ctx, "k", tt.lim)
			if err != nil {
				t.Fatal(err)
			}
			if p.Allowed || p.Remaining != 0 || p.RetryAfter <= 0 || p.RetryAfter > iv {
				t.Fatalf("Peek of a spent budget = %+v", p)
			}
		})
	}
}

// TestPeek: Peek never spends and never writes a key.
func TestPeek(t *testing.T) {
	c := redisClient(t)
	l := newLimiter(t, c)
	ctx := context.Background()
	lim := auth.PerMinute("peek", 3)
	for i := 0; i < 5; i++ {
		p, err := l.Peek(ctx, "k", lim)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Allowed || p.Remaining != 3 || p.Reset != 0 || p.RetryAfter != 0 {
			t.Fatalf("Peek of a fresh budget = %+v", p)
		}
	}
	if n := c.Exists(ctx, l.Key("k", lim)).Val(); n != 0 {
		t.Fatalf("Peek wrote the key")
	}
	for want := 2; want >= 0; want-- {
		if d, err := l.Allow(ctx, "k", lim); err != nil || !d.Allowed || d.Remaining != want {
			t.Fatalf("Allow = %+v, %v; want Remaining %d", d, err, want)
		}
		for i := 0; i < 3; i++ {
			p, err := l.Peek(ctx, "k", lim)
			if err != nil {
				t.Fatal(err)
			}
			if p.Allowed != (want > 0) || p.Remaining != want {
				t.Fatalf("Peek after Allow = %+v, want Remaining %d", p, want)
			}
		}
	}
}

// TestKeysAnyBytes: keys are binary-safe; each has its own budget, and a
// key that contains the separator does not reach another's budget.
func TestKeysAnyBytes(t *testing.T) {
	c := redisClient(t)
	l := newLimiter(t, c)
	ctx := context.Background()
	lim := auth.PerHour("bytes", 1)
	keys := []string{
		"", ":", "::", "a", "a:", ":a", "\x00", "\x00\x01\xff\xfe", "line\nbreak", "{hash}tag", "*", "ключ",
		"\xc3\x28", // invalid UTF-8
		strings.Repeat("k", 4096),
		"2001:db8::1",
	}
	for _, k := range keys {
		d, err := l.Allow(ctx, k, lim)
		if err != nil || !d.Allowed {
			t.Fatalf("first Allow(%q) = %+v, %v; want allowed", k, d, err)
		}
		if got := c.Get(ctx, l.Key(k, lim)).Err(); got != nil {
			t.Fatalf("key for %q not stored under %q: %v", k, l.Key(k, lim), got)
		}
	}
	for _, k := range keys {
		if d, err := l.Allow(ctx, k, lim); err != nil || d.Allowed {
			t.Fatalf("second Allow(%q) = %+v, %v; want refused", k, d, err)
		}
	}
	// Name "a" with key "b:c" and name "a:b" (not a valid name) cannot
	// meet: names never contain ':'.
	if _, err := l.Allow(ctx, "c", auth.PerHour("a:b", 1)); !errors.Is(err, redislimit.ErrInvalidLimit) {
		t.Fatalf("name with ':' = %v, want ErrInvalidLimit", err)
	}
}

// TestSharedBudget: two Limiters with two clients (two processes, as far
// as Redis can tell) share one budget exactly, under concurrency.
func TestSharedBudget(t *testing.T) {
	c1 := redisClient(t)
	c2 := redisClient(t)
	prefix := testPrefix(t, c1)
	var limiters []*redislimit.Limiter
	for _, c := range []*redis.Client{c1, c2} {
		l, err := redislimit.New(c, redislimit.WithPrefix(prefix), redislimit.WithTimeout(testTimeout))
		if err != nil {
			t.Fatal(err)
		}
		limiters = append(limiters, l)
	}
	const budget, goroutines, calls = 100, 8, 40
	lim := auth.PerHour("shared", budget)
	var allowed, refused [2]atomic.Int64
	// Each Limiter spends one request first, in turn: the second sees
	// the first's spent, whatever the goroutines' schedule does later
	// (one Limiter's goroutines may spend the whole rest before the
	// other's first call lands).
	for i, l := range limiters {
		d, err := l.Allow(context.Background(), "client", lim)
		if err != nil || !d.Allowed || d.Remaining != budget-1-i {
			t.Fatalf("limiter %d, first request: %+v, %v; want allowed with %d remaining", i, d, err, budget-1-i)
		}
		allowed[i].Add(1)
	}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		i := g % 2
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < calls; n++ {
				d, err := limiters[i].Allow(context.Background(), "client", lim)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					allowed[i].Add(1)
				} else {
					refused[i].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	total := allowed[0].Load() + allowed[1].Load()
	if total != budget {
		t.Errorf("%d requests allowed in all, want exactly the budget, %d", total, budget)
	}
	if want := goroutines*calls + len(limiters) - budget; refused[0].Load()+refused[1].Load() != int64(want) {
		t.Errorf("%d refused, want %d", refused[0].Load()+refused[1].Load(), want)
	}
	for i, l := range limiters {
		if p, err := l.Peek(context.Background(), "client", lim); err != nil || p.Allowed || p.Remaining != 0 {
			t.Errorf("limiter %d: Peek after = %+v, %v; want the spent budget", i, p, err)
		}
	}
}

// TestExpiry: a budget's key expires when the budget is full again, so
// idle keys cost Redis nothing; refused requests do not extend it.
func TestExpiry(t *testing.T) {
	c := redisClient(t)
	l := newLimiter(t, c)
	ctx := context.Background()
	lim := auth.Limit{Name: "expiry", Requests: 2, Period: 400 * time.Millisecond} // one every 200ms
	key := l.Key("k", lim)

	var last auth.Decision
	for i := 1; i <= 2; i++ {
		d, err := l.Allow(ctx, "k", lim)
		if err != nil || !d.Allowed {
			t.Fatalf("Allow %d = %+v, %v", i, d, err)
		}
		ttl := c.PTTL(ctx, key).Val()
		// The key lives until the TAT, rounded up to the millisecond.
		if ttl <= 0 || ttl > d.Reset+time.Millisecond {
			t.Fatalf("after Allow %d: PTTL = %v, want in (0, %v]", i, ttl, d.Reset+time.Millisecond)
		}
		last = d
	}
	before := c.PTTL(ctx, key).Val()
	if d, err := l.Allow(ctx, "k", lim); err != nil || d.Allowed {
		t.Fatalf("third Allow = %+v, %v; want refused", d, err)
	}
	if after := c.PTTL(ctx, key).Val(); after > before {
		t.Errorf("a refused request extended the key's life from %v to %v", before, after)
	}
	time.Sleep(last.Reset + 20*time.Millisecond)
	if n := c.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("key still there %v after the budget was full again", last.Reset+20*time.Millisecond)
	}
	if p, err := l.Peek(ctx, "k", lim); err != nil || !p.Allowed || p.Remaining != 2 {
		t.Fatalf("Peek after expiry = %+v, %v; want a full budget", p, err)
	}
}

// TestScriptFlush: after SCRIPT FLUSH (as after a restart or a failover),
// the next call loads the script again and works.
func TestScriptFlush(t *testing.T) {
	c := redisClient(t)
	l := newLimiter(t, c)
	ctx := context.Background()
	lim := auth.PerMinute("flush", 3)
	for want := 2; want >= 1; want-- {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		d, err := l.Allow(ctx, "k", lim)
		if err != nil || !d.Allowed || d.Remaining != want {
			t.Fatalf("Allow after SCRIPT FLUSH = %+v, %v; want allowed, Remaining %d", d, err, want)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if p, err := l.Peek(ctx, "k", lim); err != nil || p.Remaining != want {
			t.Fatalf("Peek after SCRIPT FLUSH = %+v, %v; want Remaining %d", p, err, want)
		}
	}
}

// TestRedisDown: with nothing listening, calls fail within the Limiter's
// timeout (go-redis retries the dial meanwhile), or at once when the client
// dials only once, with an error that does not show the password.
func TestRedisDown(t *testing.T) {
	addr := redistest.ClosedAddr(t)
	tests := []struct {
		name     string
		client   *redis.Client
		wantText string
	}{
		{"dial retries", offlineClient(t, addr), "no answer within 100ms"},
		{"one dial", redis.NewClient(&redis.Options{
			Addr: addr, Password: "hunter2-do-not-log", ContextTimeoutEnabled: true, DialerRetries: 1, MaxRetries: -1,
		}), "connection refused"},
	}
	for _, tt := range tests {
		t.Cleanup(func() { tt.client.Close() })
		l, err := redislimit.New(tt.client)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range []string{"allow", "peek"} {
			t.Run(tt.name+"/"+op, func(t *testing.T) {
				fn := l.Allow
				if op == "peek" {
					fn = l.Peek
				}
				start := time.Now()
				d, err := fn(context.Background(), "k", auth.PerMinute("down", 5))
				elapsed := time.Since(start)
				if err == nil || d.Allowed {
					t.Fatalf("= %+v, %v; want an error", d, err)
				}
				if elapsed > time.Second {
					t.Errorf("took %v to fail", elapsed)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "redislimit: "+op+` "down"`) || !strings.Contains(msg, tt.wantText) {
					t.Errorf("error %q does not say what failed (%s)", msg, tt.wantText)
				}
				if strings.Contains(msg, "hunter2") {
					t.Errorf("error %q shows the password", msg)
				}
			})
		}
	}
}

// TestDeadlines: against a Redis that never answers, the caller's
// deadline and the Limiter's own timeout both cut the call short.
func TestDeadlines(t *testing.T) {
	addr := redistest.SilentServer(t)
	tests := []struct {
		name     string
		timeout  time.Duration // the Limiter's
		ctx      time.Duration // the caller's; 0: none
		wantText string
	}{
		{"caller's deadline", 0, 50 * time.Millisecond, "context deadline exceeded"},
		{"caller's deadline first", time.Minute, 50 * time.Millisecond, "context deadline exceeded"},
		{"limiter's timeout", 50 * time.Millisecond, 0, "no answer within 50ms"},
		{"limiter's timeout first", 50 * time.Millisecond, time.Minute, "no answer within 50ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := redislimit.New(offlineClient(t, addr), redislimit.WithTimeout(tt.timeout))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctx)
				defer cancel()
			}
			start := time.Now()
			d, err := l.Allow(ctx, "k", auth.PerMinute("hang", 5))
			elapsed := time.Since(start)
			if err == nil || d.Allowed {
				t.Fatalf("= %+v, %v; want an error", d, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q is not context.DeadlineExceeded", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
			if elapsed < 40*time.Millisecond || elapsed > 2*time.Second {
				t.Errorf("took %v, want about 50ms", elapsed)
			}
		})
	}
}

// TestRoundTripLatency makes 1,000 calls on a real Redis, checks that
// exactly the budget was allowed, and logs the round trip's percentiles
// (run with -v to see them; BenchmarkRedisLimiterAllow reports them too).
func TestRoundTripLatency(t *testing.T) {
	c := redisClient(t)
	l := newLimiter(t, c)
	ctx := context.Background()
	const calls, budget = 1000, 600
	lim := auth.PerHour("latency", budget)
	lat := make([]time.Duration, 0, calls)
	allowed := 0
	for i := 0; i < calls; i++ {
		start := time.Now()
		d, err := l.Allow(ctx, "k", lim)
		lat = append(lat, time.Since(start))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != budget {
		t.Errorf("%d of %d allowed, want %d", allowed, calls, budget)
	}
	p50, p99 := percentiles(lat)
	t.Logf("Allow round trip over %d calls: p50 %v, p99 %v, max %v", calls, p50, p99, lat[len(lat)-1])
}

// percentiles sorts lat and returns its 50th and 99th percentiles.
func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)*50/100], lat[len(lat)*99/100]
}

func BenchmarkRedisLimiterAllow(b *testing.B) {
	c := redisClient(b)
	l := newLimiter(b, c, redislimit.WithTimeout(redislimit.DefaultTimeout))
	ctx := context.Background()
	lim := auth.Limit{Name: "bench", Requests: 1 << 30, Period: time.Hour}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := l.Allow(ctx, "key", lim); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	p50, p99 := percentiles(lat)
	b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
}

// BenchmarkRedisLimiterAllowParallel spreads calls over GOMAXPROCS
// goroutines and 1,000 keys: the throughput of one instance.
func BenchmarkRedisLimiterAllowParallel(b *testing.B) {
	c := redisClient(b)
	l := newLimiter(b, c, redislimit.WithTimeout(redislimit.DefaultTimeout))
	lim := auth.Limit{Name: "bench", Requests: 1 << 30, Period: time.Hour}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("key%d", i)
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := l.Allow(ctx, keys[next.Add(1)%uint64(len(keys))], lim); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
