package redisfeed

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/backoff"
	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/internal/stallproxy"
	"github.com/keygate/keygate/keystore"
)

// listen starts a Feed reporting to a recorder, closed at the end of the
// test, and checks what Listen reported.
func listen(t *testing.T, client redis.UniversalClient, ch string, opts ...Option) (*Feed, *recorder) {
	t.Helper()
	rec := &recorder{}
	f, err := Listen(t.Context(), client, rec, append(fastFeed(ch), opts...)...)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if got := rec.kinds(0); !slices.Equal(got, []string{"all", "healthy"}) {
		t.Fatalf("Listen reported %v, want [all healthy]", got)
	}
	return f, rec
}

func TestFeedMessages(t *testing.T) {
	t.Parallel()
	client, _ := newClient(t, redistest.Addr(t))
	ch := uniqueChannel()
	f, rec := listen(t, client, ch)
	if f.Channel() != ch {
		t.Fatalf("Channel() = %q, want %q", f.Channel(), ch)
	}
	ctx := t.Context()
	d := testRecord("key_msg").Digest
	tests := []struct {
		name    string
		payload string
		want    event // kind, id and d
	}{
		{"id and digest", `{"id":"key_msg","digest":"` + d.String() + `"}`, event{kind: "invalidate", id: "key_msg", d: d}},
		{"id only", `{"id":"key_msg2"}`, event{kind: "invalidate", id: "key_msg2"}},
		{"not json", `not json, and maybe halfred_secret`, event{kind: "all"}},
		{"no id", `{"digest":"` + d.String() + `"}`, event{kind: "all"}},
		{"too long", `{"id":"` + strings.Repeat("k", keystore.MaxInvalidationSize) + `"}`, event{kind: "all"}},
	}
	for _, tc := range tests {
		from := len(rec.log())
		if err := client.Publish(ctx, ch, tc.payload).Err(); err != nil {
			t.Fatal(err)
		}
		eventually(t, tc.name, func() bool { return len(rec.log()) > from })
		time.Sleep(10 * time.Millisecond)
		got := rec.log()[from:]
		if len(got) != 1 || got[0].kind != tc.want.kind || got[0].id != tc.want.id || got[0].d != tc.want.d {
			t.Fatalf("%s: target got %+v, want one %+v", tc.name, got, tc.want)
		}
	}
	// Another channel is not heard.
	from := len(rec.log())
	if err := client.Publish(ctx, ch+"x", `{"id":"key_other"}`).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := rec.log()[from:]; len(got) != 0 {
		t.Fatalf("message on another channel reached the target: %+v", got)
	}
}

// TestFeedConnectionKilled kills the Feed's connection from another
// client: the target hears unhealthy, then (subscribed again on a new
// connection) InvalidateAll and healthy, and messages flow again.
func TestFeedConnectionKilled(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	admin, _ := newClient(t, addr)
	client, name := newClient(t, addr)
	ch := uniqueChannel()
	mem := keystore.NewMemoryStore()
	cache, err := keystore.NewCachedStore(mem, keystore.WithInvalidationFeed())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: cache}
	f, err := Listen(t.Context(), client, rec, fastFeed(ch)...)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := t.Context()

	for round := range 3 {
		r := testRecord(fmt.Sprintf("key_kill%d", round))
		if err := mem.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := cache.LookupDigest(ctx, r.Digest); err != nil {
			t.Fatal(err)
		}
		if cache.Len() == 0 {
			t.Fatal("record not cached")
		}
		ids := clientIDs(t, admin, name)
		if len(ids) != 1 {
			t.Fatalf("round %d: %d subscribed connections named %s, want 1", round, len(ids), name)
		}
		from := len(rec.log())
		if err := admin.ClientKillByFilter(ctx, "ID", fmt.Sprint(ids[0])).Err(); err != nil {
			t.Fatalf("CLIENT KILL ID: %v", err)
		}
		rec.waitKinds(t, from, "unhealthy", "all", "healthy")
		if n := cache.Len(); n != 0 {
			t.Fatalf("round %d: cache holds %d entries after the feed came back, want 0", round, n)
		}
		if now := clientIDs(t, admin, name); len(now) != 1 || now[0] == ids[0] {
			t.Fatalf("round %d: subscribed connections %v after reconnecting, had %v", round, now, ids)
		}
		// The new subscription delivers.
		from = len(rec.log())
		if err := client.Publish(ctx, ch, `{"id":"key_after"}`).Err(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "delivery after reconnecting", func() bool {
			return slices.ContainsFunc(rec.log()[from:], func(e event) bool { return e.id == "key_after" })
		})
	}
}

// TestFeedPartition stalls the network between the Feed and Redis without
// closing anything: the health check notices, the Feed reports unhealthy,
// keeps trying, and recovers when the network does.
func TestFeedPartition(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	proxy := stallproxy.New(t, addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), DialTimeout: time.Second})
	defer client.Close()
	direct, _ := newClient(t, addr)
	ch := uniqueChannel()
	const interval, timeout = 100 * time.Millisecond, 300 * time.Millisecond
	_, rec := listen(t, client, ch, WithHealthCheck(interval, timeout))
	ctx := t.Context()

	from := len(rec.log())
	start := time.Now()
	proxy.SetStalled(true)
	rec.waitKinds(t, from, "unhealthy")
	noticed := time.Since(start)
	t.Logf("partition noticed after %v (health check %v + %v)", noticed, interval, timeout)
	if noticed > interval+timeout+time.Second {
		t.Fatalf("partition noticed after %v, want about %v", noticed, interval+timeout)
	}
	// Attempts to subscribe through the stalled network fail.
	time.Sleep(2 * timeout)
	if got := rec.kinds(from); !slices.Equal(got, []string{"unhealthy"}) {
		t.Fatalf("during the partition: %v, want [unhealthy] only", got)
	}
	proxy.SetStalled(false)
	rec.waitKinds(t, from, "unhealthy", "all", "healthy")
	from = len(rec.log())
	if err := direct.Publish(ctx, ch, `{"id":"key_healed"}`).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery after the partition", func() bool {
		return slices.ContainsFunc(rec.log()[from:], func(e event) bool { return e.id == "key_healed" })
	})
}

// TestFeedIdle: an idle, healthy connection is pinged but never dropped
// or replaced.
func TestFeedIdle(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	admin, _ := newClient(t, addr)
	client, name := newClient(t, addr)
	ch := uniqueChannel()
	_, rec := listen(t, client, ch, WithHealthCheck(20*time.Millisecond, time.Second))
	ids := clientIDs(t, admin, name)
	if len(ids) != 1 {
		t.Fatalf("%d subscribed connections, want 1", len(ids))
	}
	time.Sleep(500 * time.Millisecond) // about 25 pings
	if got := rec.kinds(0); !slices.Equal(got, []string{"all", "healthy"}) {
		t.Fatalf("idle feed reported %v, want [all healthy] only", got)
	}
	if now := clientIDs(t, admin, name); !slices.Equal(now, ids) {
		t.Fatalf("subscribed connections %v after idling, want %v", now, ids)
	}
	// The pings really went out: the server counted them.
	info, err := admin.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if strings.Contains(line, fmt.Sprintf("id=%d ", ids[0])) && !strings.Contains(line, "cmd=ping") {
			t.Fatalf("the feed's last command was not PING: %s", line)
		}
	}
}

// TestFeedClose: Close stops the goroutine and the connection, leaves the
// target unhealthy, is idempotent, and leaks no goroutine.
func TestFeedClose(t *testing.T) {
	// Not parallel: it counts goroutines.
	addr := redistest.Addr(t)
	admin, _ := newClient(t, addr)
	client, name := newClient(t, addr)
	if err := client.Ping(t.Context()).Err(); err != nil { // start the client's own goroutines
		t.Fatal(err)
	}
	ch := uniqueChannel()
	baseline := runtime.NumGoroutine()
	rec := &recorder{}
	f, err := Listen(t.Context(), client, rec, fastFeed(ch)...)
	if err != nil {
		t.Fatal(err)
	}
	if len(clientIDs(t, admin, name)) != 1 {
		t.Fatal("no subscribed connection")
	}
	from := len(rec.log())
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.done:
	default:
		t.Fatal("Close returned before the goroutine ended")
	}
	if got := rec.kinds(from); !slices.Equal(got, []string{"unhealthy"}) {
		t.Fatalf("Close reported %v, want [unhealthy]", got)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	eventually(t, "connection closed", func() bool { return len(clientIDs(t, admin, name)) == 0 })
	from = len(rec.log())
	if err := client.Publish(t.Context(), ch, `{"id":"key_afterclose"}`).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := rec.log()[from:]; len(got) != 0 {
		t.Fatalf("target called after Close: %+v", got)
	}
	checkGoroutines(t, baseline)
}

// TestFeedCloseWhileDown: Close returns promptly while the Feed is trying
// to subscribe again through a stalled network.
func TestFeedCloseWhileDown(t *testing.T) {
	t.Parallel()
	proxy := stallproxy.New(t, redistest.Addr(t))
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr()})
	defer client.Close()
	f, rec := listen(t, client, uniqueChannel(), WithHealthCheck(50*time.Millisecond, 5*time.Second))
	proxy.SetStalled(true)
	time.Sleep(100 * time.Millisecond) // the PING is out, unanswered
	start := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %v with a 5 s ping timeout pending", took)
	}
	if got := rec.kinds(0); !slices.Equal(got, []string{"all", "healthy", "unhealthy"}) {
		t.Fatalf("target heard %v", got)
	}
}

// checkGoroutines waits up to 2 s for the number of goroutines to fall
// back to baseline, and dumps them if it does not.
func checkGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after Close, %d before Listen:\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	if n := runtime.Stack(buf, true); strings.Contains(string(buf[:n]), "redisfeed.(*Feed)") {
		t.Fatalf("a Feed goroutine is still running:\n%s", buf[:n])
	}
}

func TestListenErrors(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	const pw = "s3cretpw-listen"
	rec := &recorder{}
	good := redis.NewClient(&redis.Options{Addr: addr})
	defer good.Close()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		client *redis.Options // nil: no client
		target Invalidator
		opts   []Option
	}{
		{"nil client", t.Context(), nil, rec, nil},
		{"nil target", t.Context(), &redis.Options{Addr: addr}, nil, nil},
		{"empty channel", t.Context(), &redis.Options{Addr: addr}, rec, []Option{WithChannel("")}},
		{"unreachable", t.Context(), &redis.Options{Addr: "127.0.0.1:1", Password: pw}, rec, nil},
		// (The default user of a server without a password accepts any
		// password; an unknown user is refused.)
		{"wrong user", t.Context(), &redis.Options{Addr: addr, Username: "nobody-" + pw, Password: pw}, rec, nil},
		{"cancelled context", cancelled, &redis.Options{Addr: addr}, rec, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var client redis.UniversalClient
			if tc.client != nil {
				c := redis.NewClient(tc.client)
				defer c.Close()
				client = c
			}
			start := time.Now()
			f, err := Listen(tc.ctx, client, tc.target, append([]Option{WithLogger(quiet)}, tc.opts...)...)
			if err == nil {
				f.Close()
				t.Fatal("Listen succeeded")
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error shows the password: %v", err)
			}
			if took := time.Since(start); took > 2*DefaultPingTimeout+time.Second {
				t.Fatalf("Listen took %v to fail", took)
			}
			t.Logf("%v", err)
		})
	}
	t.Cleanup(func() {
		if len(rec.log()) != 0 {
			t.Errorf("a failed Listen reported %v", rec.kinds(0))
		}
	})
}

// TestDeliveryLatency measures, over 300 revocations, the time from the
// start of a Revoke through a PublishingStore to the Invalidate call on
// another instance's Feed.
func TestDeliveryLatency(t *testing.T) {
	t.Parallel()
	addr := redistest.Addr(t)
	pubClient, _ := newClient(t, addr)
	subClient, _ := newClient(t, addr)
	ch := uniqueChannel()
	rec := &recorder{ids: make(chan event, 1)}
	f, err := Listen(t.Context(), subClient, rec, fastFeed(ch)...)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem := keystore.NewMemoryStore()
	pub, err := NewPublishingStore(mem, pubClient, WithChannel(ch))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const trials = 300
	lat := make([]time.Duration, 0, trials)
	for i := range trials {
		r := testRecord(fmt.Sprintf("key_lat%05d", i))
		if err := mem.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := pub.Revoke(ctx, r.ID, start); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-rec.ids:
			if e.id != r.ID || e.d != r.Digest {
				t.Fatalf("trial %d: Invalidate(%q, %v), want %q", i, e.id, e.d, r.ID)
			}
			lat = append(lat, e.at.Sub(start))
		case <-time.After(2 * time.Second):
			t.Fatalf("trial %d: no Invalidate within 2 s", i)
		}
	}
	slices.Sort(lat)
	t.Logf("Revoke through a PublishingStore → Invalidate on another Feed, %d trials: p50 %v, p90 %v, p99 %v, max %v",
		trials, lat[trials/2], lat[trials*90/100], lat[trials*99/100], lat[trials-1])
}

// BenchmarkRevokeToInvalidate measures one Revoke through a
// PublishingStore until another Feed has called Invalidate for it.
func BenchmarkRevokeToInvalidate(b *testing.B) {
	addr := redistest.Addr(b)
	pubClient, _ := newClient(b, addr)
	subClient, _ := newClient(b, addr)
	ch := uniqueChannel()
	rec := &recorder{ids: make(chan event, 1)}
	f, err := Listen(context.Background(), subClient, rec, fastFeed(ch)...)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	mem := keystore.NewMemoryStore()
	pub, err := NewPublishingStore(mem, pubClient, WithChannel(ch))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r := testRecord("key_bench")
	if err := mem.Create(ctx, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		// Revoke is idempotent: each call publishes again.
		if _, err := pub.Revoke(ctx, r.ID, time.Now()); err != nil {
			b.Fatal(err)
		}
		<-rec.ids
	}
}

func TestHandle(t *testing.T) {
	t.Parallel()
	const ch = "keygate:keys"
	d := testRecord("key_h").Digest
	tests := []struct {
		name    string
		msg     any
		want    []string // kinds heard
		wantErr bool
	}{
		{"message", &redis.Message{Channel: ch, Payload: `{"id":"key_h","digest":"` + d.String() + `"}`}, []string{"invalidate"}, false},
		{"malformed message", &redis.Message{Channel: ch, Payload: `{`}, []string{"all"}, false},
		{"array payload", &redis.Message{Channel: ch, PayloadSlice: []string{"a"}}, []string{"all"}, false},
		{"pong", &redis.Pong{}, nil, false},
		{"silent resubscription", &redis.Subscription{Kind: "subscribe", Channel: ch, Count: 1}, []string{"unhealthy", "all", "healthy"}, false},
		{"unsubscribed", &redis.Subscription{Kind: "unsubscribe", Channel: ch}, nil, true},
		{"other channel", &redis.Subscription{Kind: "subscribe", Channel: "other"}, nil, true},
		{"unknown", "something", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			f := &Feed{target: rec, cfg: config{channel: ch, logger: quiet}}
			err := f.handle(tc.msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("handle: %v, wantErr %v", err, tc.wantErr)
			}
			var got []string
			for _, e := range rec.log() {
				got = append(got, e.kind)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("target heard %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIsTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("read: %w", errTimeout{}), true},
		{errors.New("EOF"), false},
		{redis.ErrClosed, false},
	}
	for _, tc := range tests {
		if got := isTimeout(tc.err); got != tc.want {
			t.Errorf("isTimeout(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

func TestOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  []Option
		check func(config) bool
	}{
		{"defaults", nil, func(c config) bool {
			return c.channel == DefaultChannel && c.backoff.Min == DefaultMinBackoff && c.backoff.Max == DefaultMaxBackoff &&
				c.backoff.Jitter == DefaultJitter && c.pingInterval == DefaultPingInterval && c.pingTimeout == DefaultPingTimeout &&
				c.publishTimeout == DefaultPublishTimeout && c.logger != nil
		}},
		{"backoff", []Option{WithBackoff(time.Second, 10*time.Second)}, func(c config) bool {
			return c.backoff.Min == time.Second && c.backoff.Max == 10*time.Second
		}},
		{"max below initial", []Option{WithBackoff(time.Second, time.Millisecond)}, func(c config) bool {
			return c.backoff.Min == time.Second && backoff.New(c.backoff).Max() == time.Second
		}},
		{"non-positive backoff keeps defaults", []Option{WithBackoff(0, -1)}, func(c config) bool {
			return c.backoff.Min == DefaultMinBackoff && c.backoff.Max == DefaultMaxBackoff
		}},
		{"jitter clamped high", []Option{WithJitter(3)}, func(c config) bool { return c.backoff.Jitter == 1 }},
		{"jitter clamped low", []Option{WithJitter(-1)}, func(c config) bool { return c.backoff.Jitter == 0 }},
		{"jitter NaN", []Option{WithJitter(zero / zero)}, func(c config) bool { return c.backoff.Jitter == 0 }},
		{"health check", []Option{WithHealthCheck(time.Second, 3*time.Second)}, func(c config) bool {
			return c.pingInterval == time.Second && c.pingTimeout == 3*time.Second
		}},
		{"publish timeout", []Option{WithPublishTimeout(time.Minute)}, func(c config) bool { return c.publishTimeout == time.Minute }},
		{"nil logger discards", []Option{WithLogger(nil)}, func(c config) bool { return c.logger != nil }},
		{"nil option", []Option{nil}, func(c config) bool { return c.channel == DefaultChannel }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

var zero float64
