package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/stallproxy"
	"github.com/keygate/keygate/keystore"
)

// recorder is an Invalidator that forwards to a CachedStore and records
// what the feed reported.
type recorder struct {
	cache   *keystore.CachedStore
	health  chan bool
	all     atomic.Int64
	invalid atomic.Int64
}

func (r *recorder) Invalidate(id string, d keystore.Digest) {
	r.invalid.Add(1)
	r.cache.Invalidate(id, d)
}

func (r *recorder) InvalidateAll() {
	r.all.Add(1)
	r.cache.InvalidateAll()
}

func (r *recorder) SetFeedHealthy(ok bool) {
	r.cache.SetFeedHealthy(ok)
	select {
	case r.health <- ok:
	default:
	}
}

// waitHealth waits for the next health report and checks it is want.
func (r *recorder) waitHealth(t *testing.T, want bool) {
	t.Helper()
	select {
	case got := <-r.health:
		if got != want {
			t.Fatalf("SetFeedHealthy(%v), want SetFeedHealthy(%v)", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no SetFeedHealthy(%v) within 5 s", want)
	}
}

// feedFixture is two Stores on one fresh schema: a publishes, b is
// cached and fed by a Feed.
type feedFixture struct {
	a, b    *Store
	cache   *keystore.CachedStore
	rec     *recorder
	feed    *Feed
	channel string
	dsn     string
}

func newFeedFixture(t *testing.T) *feedFixture {
	t.Helper()
	dsn := postgresDSN(t)
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := pc.RuntimeParams["search_path"]
	if schema == "" {
		t.Fatal("test DSN has no search_path")
	}
	ch := DefaultChannel + "_" + schema
	ctx := t.Context()
	open := func() *Store {
		s, err := OpenPostgres(ctx, dsn, WithNotifyChannel(ch))
		if err != nil {
			t.Fatalf("OpenPostgres: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	fx := &feedFixture{a: open(), b: open(), channel: ch, dsn: dsn}
	fx.cache, err = keystore.NewCachedStore(fx.b, keystore.WithInvalidationFeed())
	if err != nil {
		t.Fatal(err)
	}
	fx.rec = &recorder{cache: fx.cache, health: make(chan bool, 16)}
	fx.feed, err = ListenPostgres(ctx, dsn, fx.rec, WithFeedChannel(ch),
		WithFeedBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithFeedLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatalf("ListenPostgres: %v", err)
	}
	t.Cleanup(func() { fx.feed.Close() })
	fx.rec.waitHealth(t, true)
	return fx
}

// listenerPID returns the backend PID of the feed's connection, or 0.
func (fx *feedFixture) listenerPID(t *testing.T) int {
	t.Helper()
	var pid int
	err := fx.a.DB().QueryRowContext(t.Context(),
		"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
		"LISTEN "+pgx.Identifier{fx.channel}.Sanitize()).Scan(&pid)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("find listener: %v", err)
	}
	return pid
}

// warm creates a key through a and caches it in b, checking that the
// second lookup is a cache hit.
func (fx *feedFixture) warm(t testing.TB, id string) keystore.Record {
	t.Helper()
	ctx := context.Background()
	r := testRecord(id, time.Now().UTC().Truncate(time.Microsecond))
	if err := fx.a.Create(ctx, r); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := fx.cache.LookupDigest(ctx, r.Digest); err != nil {
			t.Fatalf("LookupDigest: %v", err)
		}
	}
	if fx.cache.Len() == 0 {
		t.Fatal("record not cached in b")
	}
	return r
}

// within polls cond every 5 ms for up to 1 s and returns how long it took
// to hold.
func within(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < time.Second {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not seen through the cache within 1 s", what)
	return 0
}

func TestFeedPropagates(t *testing.T) {
	t.Parallel()
	fx := newFeedFixture(t)
	ctx := t.Context()
	lookup := func(d keystore.Digest) (keystore.Record, error) { return fx.cache.LookupDigest(ctx, d) }

	t.Run("revoke", func(t *testing.T) {
		r := fx.warm(t, "key_revoke0001")
		if _, err := fx.a.Revoke(ctx, r.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		within(t, "revocation", func() bool { got, err := lookup(r.Digest); return err == nil && !got.RevokedAt.IsZero() })
	})
	t.Run("disable", func(t *testing.T) {
		r := fx.warm(t, "key_disable001")
		if _, err := fx.a.SetDisabled(ctx, r.ID, true); err != nil {
			t.Fatal(err)
		}
		within(t, "disable", func() bool { got, err := lookup(r.Digest); return err == nil && got.Disabled })
	})
	t.Run("replace", func(t *testing.T) {
		r := fx.warm(t, "key_replace001")
		next := testRecord("key_replace002", time.Now().UTC())
		// Cache "not found" for the new key first.
		if _, err := lookup(next.Digest); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("lookup of next before Replace: %v, want ErrNotFound", err)
		}
		if err := fx.a.Replace(ctx, r.ID, time.Now(), next); err != nil {
			t.Fatal(err)
		}
		within(t, "old key revoked", func() bool { got, err := lookup(r.Digest); return err == nil && !got.RevokedAt.IsZero() })
		within(t, "new key", func() bool { _, err := lookup(next.Digest); return err == nil })
	})
	t.Run("create clears not found", func(t *testing.T) {
		r := testRecord("key_create0001", time.Now().UTC())
		for i := 0; i < 2; i++ {
			if _, err := lookup(r.Digest); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("lookup before Create: %v, want ErrNotFound", err)
			}
		}
		if fx.cache.Stats().NegativeHits == 0 {
			t.Fatal("not found was not cached")
		}
		if err := fx.a.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		within(t, "create", func() bool { _, err := lookup(r.Digest); return err == nil })
	})
	t.Run("failed write publishes nothing", func(t *testing.T) {
		before := fx.rec.invalid.Load()
		if _, err := fx.a.Revoke(ctx, "key_nosuchkey1", time.Now()); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Revoke of unknown ID: %v", err)
		}
		r := fx.warm(t, "key_failed0001")
		if err := fx.a.Replace(ctx, r.ID, time.Now(), r); !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("Replace with existing record: %v, want ErrExists", err)
		}
		// Only warm's Create was published: a later marker arrives after it.
		if _, err := fx.a.Revoke(ctx, r.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		within(t, "marker", func() bool { return fx.rec.invalid.Load() >= before+2 })
		time.Sleep(50 * time.Millisecond)
		if got := fx.rec.invalid.Load() - before; got != 2 {
			t.Fatalf("%d notifications, want 2 (create and revoke)", got)
		}
	})
	t.Run("malformed payload", func(t *testing.T) {
		before := fx.rec.all.Load()
		if _, err := fx.a.DB().ExecContext(ctx, "SELECT pg_notify($1, 'not json')", fx.channel); err != nil {
			t.Fatal(err)
		}
		within(t, "InvalidateAll", func() bool { return fx.rec.all.Load() > before })
	})
}

// TestFeedLatency revokes through one Store and measures how long another
// Store's cache takes to show it, over 100 trials.
func TestFeedLatency(t *testing.T) {
	t.Parallel()
	fx := newFeedFixture(t)
	ctx := t.Context()
	const trials = 100
	lat := make([]time.Duration, 0, trials)
	for i := range trials {
		r := fx.warm(t, fmt.Sprintf("key_lat%07d", i))
		start := time.Now()
		if _, err := fx.a.Revoke(ctx, r.ID, start); err != nil {
			t.Fatal(err)
		}
		for {
			got, err := fx.cache.LookupDigest(ctx, r.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if !got.RevokedAt.IsZero() {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("trial %d: revocation not seen within 1 s", i)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("revoke → visible in other instance's cache, %d trials (incl. the Revoke round trips, polled every 1 ms): p50 %v, p99 %v, max %v",
		trials, lat[trials/2], lat[trials*99/100-1], lat[trials-1])
}

// BenchmarkFeedRevokeVisible measures a Revoke through one Store until
// another Store's cache shows it (polled every 1 ms).
func BenchmarkFeedRevokeVisible(b *testing.B) {
	dsn := postgresDSN(b)
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	ch := DefaultChannel + "_" + pc.RuntimeParams["search_path"]
	ctx := context.Background()
	a, err := OpenPostgres(ctx, dsn, WithNotifyChannel(ch))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	bs, err := OpenPostgres(ctx, dsn, WithNotifyChannel(ch))
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	cache, err := keystore.NewCachedStore(bs, keystore.WithInvalidationFeed())
	if err != nil {
		b.Fatal(err)
	}
	feed, err := ListenPostgres(ctx, dsn, cache, WithFeedChannel(ch))
	if err != nil {
		b.Fatal(err)
	}
	defer feed.Close()
	fx := &feedFixture{a: a, b: bs, cache: cache}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		b.StopTimer()
		r := fx.warm(b, fmt.Sprintf("key_bench%06d", i))
		i++
		b.StartTimer()
		if _, err := a.Revoke(ctx, r.ID, time.Now()); err != nil {
			b.Fatal(err)
		}
		for {
			got, err := cache.LookupDigest(ctx, r.Digest)
			if err != nil {
				b.Fatal(err)
			}
			if !got.RevokedAt.IsZero() {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func TestFeedReconnects(t *testing.T) {
	t.Parallel()
	fx := newFeedFixture(t)
	ctx := t.Context()
	r := fx.warm(t, "key_reconnect1")
	pid := fx.listenerPID(t)
	if pid == 0 {
		t.Fatal("listener connection not found in pg_stat_activity")
	}
	var ok bool
	if err := fx.a.DB().QueryRowContext(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend: %v, %v", ok, err)
	}
	fx.rec.waitHealth(t, false)
	fx.rec.waitHealth(t, true)
	if n := fx.cache.Len(); n != 0 {
		t.Fatalf("cache holds %d entries after reconnecting, want 0", n)
	}
	if fx.listenerPID(t) == pid {
		t.Fatal("listener PID unchanged after reconnecting")
	}
	// The new connection delivers notifications.
	fx.warm(t, "key_reconnect2")
	if _, err := fx.a.Revoke(ctx, r.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	within(t, "revocation after reconnect", func() bool {
		got, err := fx.cache.LookupDigest(ctx, r.Digest)
		return err == nil && !got.RevokedAt.IsZero()
	})
}

func TestFeedClose(t *testing.T) {
	t.Parallel()
	fx := newFeedFixture(t)
	if fx.listenerPID(t) == 0 {
		t.Fatal("listener connection not found in pg_stat_activity")
	}
	if err := fx.feed.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fx.feed.done:
	default:
		t.Fatal("Close returned before the goroutine ended")
	}
	fx.rec.waitHealth(t, false)
	if err := fx.feed.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	within(t, "listener gone", func() bool { return fx.listenerPID(t) == 0 })
	before := fx.rec.invalid.Load()
	fx.warm(t, "key_afterclose")
	time.Sleep(50 * time.Millisecond)
	if got := fx.rec.invalid.Load(); got != before {
		t.Fatalf("%d Invalidate calls after Close", got-before)
	}
}

func TestListenPostgresErrors(t *testing.T) {
	t.Parallel()
	rec := &recorder{health: make(chan bool, 1)}
	ctx := t.Context()
	const pw = "s3cretpw"
	tests := []struct {
		name string
		dsn  string
		tgt  Invalidator
		opts []FeedOption
	}{
		{"nil target", "postgres://u@127.0.0.1:1/db", nil, nil},
		{"empty channel", "postgres://u@127.0.0.1:1/db", rec, []FeedOption{WithFeedChannel("")}},
		{"long channel", "postgres://u@127.0.0.1:1/db", rec, []FeedOption{WithFeedChannel(strings.Repeat("c", 64))}},
		{"invalid DSN", "postgres://u:" + pw + "@127.0.0.1:1/db?sslmode=bogus", rec, nil},
		{"unreachable", "postgres://u:" + pw + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", rec, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := ListenPostgres(ctx, tc.dsn, tc.tgt, tc.opts...)
			if err == nil {
				f.Close()
				t.Fatal("ListenPostgres succeeded")
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
	if len(rec.health) != 0 {
		t.Fatal("failed ListenPostgres reported health")
	}
}

func TestOpenRejectsBadChannel(t *testing.T) {
	t.Parallel()
	s := newSQLiteStore(t)
	for _, name := range []string{"", strings.Repeat("c", 64)} {
		if _, err := Open(t.Context(), s.DB(), SQLite, WithNotifyChannel(name)); err == nil {
			t.Fatalf("Open accepted channel of %d bytes", len(name))
		}
	}
}

// feedThrough starts a Feed like newFeedFixture's, but on dsn, with a
// fast health check, reporting to a recorder over fx's cache.
func (fx *feedFixture) feedThrough(t *testing.T, dsn string) *recorder {
	t.Helper()
	fx.feed.Close()
	fx.rec.waitHealth(t, false)
	rec := &recorder{cache: fx.cache, health: make(chan bool, 16)}
	feed, err := ListenPostgres(t.Context(), dsn, rec, WithFeedChannel(fx.channel),
		WithFeedBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithFeedHealthCheck(50*time.Millisecond, 300*time.Millisecond),
		WithFeedLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatalf("ListenPostgres: %v", err)
	}
	t.Cleanup(func() { feed.Close() })
	rec.waitHealth(t, true)
	return rec
}

// TestFeedIdlePings: an idle connection is pinged, not dropped: after
// many ping intervals without a notification the feed has reported no
// change of health (a new connection would have), and delivers.
func TestFeedIdlePings(t *testing.T) {
	t.Parallel()
	fx := newFeedFixture(t)
	rec := fx.feedThrough(t, fx.dsn)
	time.Sleep(400 * time.Millisecond) // 8 ping intervals
	select {
	case ok := <-rec.health:
		// A replaced connection reports false, then true.
		t.Fatalf("SetFeedHealthy(%v) while idle: the connection was dropped", ok)
	default:
	}
	r := fx.warm(t, "key_idle1")
	if _, err := fx.a.Revoke(t.Context(), r.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	within(t, "revocation after an idle spell", func() bool {
		got, err := fx.cache.LookupDigest(t.Context(), r.Digest)
		return err == nil && !got.RevokedAt.IsZero()
	})
}

// TestFeedPartition: a connection that goes silent without closing (the
// network drops every packet) is noticed by the health check within the
// ping interval and timeout, reported unhealthy, and replaced once the
// network is back.
func TestFeedPartition(t *testing.T) {
	t.Parallel()
	fx := newFeedFixture(t)
	u, err := url.Parse(fx.dsn)
	if err != nil {
		t.Skipf("the test DSN is not a URL (%v); the partition test needs one", err)
	}
	proxy := stallproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	rec := fx.feedThrough(t, u.String())

	start := time.Now()
	proxy.SetStalled(true)
	rec.waitHealth(t, false)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a silent connection was noticed after %v, want within about 350 ms", took)
	}
	proxy.SetStalled(false)
	rec.waitHealth(t, true)
	r := fx.warm(t, "key_partition1")
	if _, err := fx.a.Revoke(t.Context(), r.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	within(t, "revocation after the partition", func() bool {
		got, err := fx.cache.LookupDigest(t.Context(), r.Digest)
		return err == nil && !got.RevokedAt.IsZero()
	})
}
