package keystore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/auth"
)

// Defaults of a [UsageRecorder].
const (
	// DefaultUsageInterval is how often a [UsageRecorder] flushes its
	// counters to the store. Ten seconds keeps the counters, LastUsedAt
	// and LastClientAddr in the store at most ten seconds (plus the flush
	// time) behind the requests, which is fresh enough for a dashboard,
	// and costs one write per batch of keys every ten seconds however
	// busy the keys are. A crash loses at most that much usage.
	DefaultUsageInterval = 10 * time.Second
	// DefaultUsageBatchSize is how many keys a [UsageRecorder] writes in
	// one [UsageWriter.RecordUsage] call.
	DefaultUsageBatchSize = 500
	// DefaultUsageMaxKeys bounds how many keys a [UsageRecorder] keeps
	// counters for in memory: about 70 bytes each, plus the key ID's
	// (measured at 10^5 keys), so about 10 MB at most.
	DefaultUsageMaxKeys = 100_000
)

// usageShards spreads a UsageRecorder's counters over several locks.
const usageShards = 64

// minFlushTimeout is the least time a background flush is given. A flush
// cut short by its context may have been applied by the database all the
// same, and its retry then counts it twice: the timeout is there for a
// hung database, not to keep flushes within a short interval.
const minFlushTimeout = 30 * time.Second

// UsageRecorder counts each key's requests in memory and writes the counts
// to a [UsageWriter] in batches, off the request path: it is the
// write-behind usage tracking of a busy service. It implements
// [auth.Observer]; give it to the Guard with [auth.WithObserver] (alone,
// or with other observers through [auth.Observers]) and it counts every [auth.EventAuthenticated] event that has a KeyID,
// whether the request carried the API key itself or an access token
// derived from it. Other events are ignored.
//
// # Counting
//
// Observe never blocks on I/O and, for a key it already counts, does not
// allocate: it takes one of 64 sharded locks, adds one to the key's
// counter, and keeps the latest request time (Event.Time, or the clock's
// time when it is zero) and the client address of the latest request whose
// address was known.
//
// # Flushing
//
// A goroutine flushes every interval ([WithUsageInterval], default
// [DefaultUsageInterval], 10 s): it takes every key's counts since the last
// flush and hands them to [UsageWriter.RecordUsage] in batches of at most
// the batch size ([WithUsageBatchSize], default [DefaultUsageBatchSize],
// 500). So the store sees at most ceil(keys/batch size) write calls per
// interval, whatever the request rate; on keygate's SQL store
// (keystore/sqlstore) each call is one statement on PostgreSQL and one
// transaction on SQLite. Keys idle for a
// whole interval are forgotten. [UsageRecorder.Flush] flushes at once;
// [UsageRecorder.Close] stops the goroutine and flushes one last time.
// Counts add up across instances sharing a store, since each flush adds
// its deltas.
//
// A flush that fails keeps the counts it could not write: they are merged
// back into the counters and written with the next flush; the failure is
// logged ([WithUsageLogger], default [slog.Default]) with counts and the
// error, never a key. A background flush gives up after one interval or
// 30 s, whichever is longer. Counts are exact unless a write's outcome is
// unknown (the connection broke after the statement was sent, or the
// flush timed out while the database was applying it): the retry may then
// count that batch twice. Usage counts are for dashboards and quotas
// with some slack, not for billing to the request.
//
// # Memory bound
//
// The recorder keeps counters for at most max keys ([WithUsageMaxKeys],
// default [DefaultUsageMaxKeys], 100,000; a little more under concurrent
// first requests). When it is full (the store has been failing for a
// while, or more keys are active per interval than the bound), keys it
// already counts keep counting, and the requests of other keys are
// dropped, counted in [UsageStats.Dropped] and logged: it never blocks a
// request and never grows without bound. Dropping new keys, rather than
// evicting old ones, keeps the counts that are kept exact.
//
// # Relation to the Manager's last-used writes
//
// A [Manager] writes last-used times itself, synchronously, once per key
// per minute ([WithLastUsedInterval]). A service with a UsageRecorder
// gets LastUsedAt from the recorder and should turn that off with
// WithLastUsedInterval(0).
//
// A UsageRecorder is safe for concurrent use. Make one with
// [NewUsageRecorder]; the zero value is not usable. It starts one
// goroutine (none with an interval of zero), which [UsageRecorder.Close]
// stops.
type UsageRecorder struct {
	w        UsageWriter
	interval time.Duration
	batch    int
	maxKeys  int64
	now      func() time.Time
	logger   *slog.Logger
	seed     maphash.Seed

	shards [usageShards]usageShard
	// keys counts the counters across shards.
	keys   atomic.Int64
	closed atomic.Bool

	// flushMu serialises flushes; it guards buf, and only a flush
	// deletes counters.
	flushMu sync.Mutex
	buf     []Usage

	stop      chan struct{} // closed by Close; nil without a goroutine
	done      chan struct{} // closed when the goroutine returns
	closeOnce sync.Once
	closeErr  error

	flushes, writes, failures, flushed, dropped atomic.Uint64
	// droppedLogged is the Dropped count the last log line reported.
	droppedLogged atomic.Uint64
}

type usageShard struct {
	mu sync.Mutex
	m  map[string]*usageCounter
	_  [48]byte // keep shards on separate cache lines
}

// usageCounter is one key's usage since the last flush.
type usageCounter struct {
	// n is the number of requests since the last flush.
	n int64
	// last is the time of the latest request seen, in Unix nanoseconds;
	// zero if none had a time. It is kept across flushes, so a request
	// reported late cannot set addr.
	last int64
	// addr is the client address of the latest request since the last
	// flush whose address was known.
	addr netip.Addr
}

var _ auth.Observer = (*UsageRecorder)(nil)

// UsageOption configures a [UsageRecorder].
type UsageOption func(*UsageRecorder) error

// WithUsageInterval sets how often the recorder flushes its counters to
// the store. Default: [DefaultUsageInterval] (10 s). Zero starts no
// goroutine: counters are written only by [UsageRecorder.Flush] and
// [UsageRecorder.Close]. A negative interval is an error.
func WithUsageInterval(d time.Duration) UsageOption {
	return func(r *UsageRecorder) error {
		if d < 0 {
			return fmt.Errorf("%w: negative usage interval", ErrInvalidSpec)
		}
		r.interval = d
		return nil
	}
}

// WithUsageBatchSize sets how many keys one [UsageWriter.RecordUsage] call
// writes at most. Default: [DefaultUsageBatchSize] (500). n must be at
// least 1.
func WithUsageBatchSize(n int) UsageOption {
	return func(r *UsageRecorder) error {
		if n < 1 {
			return fmt.Errorf("%w: usage batch size %d below 1", ErrInvalidSpec, n)
		}
		r.batch = n
		return nil
	}
}

// WithUsageMaxKeys bounds how many keys the recorder keeps counters for;
// see the memory bound in [UsageRecorder]. Default: [DefaultUsageMaxKeys]
// (100,000). n must be at least 1.
func WithUsageMaxKeys(n int) UsageOption {
	return func(r *UsageRecorder) error {
		if n < 1 {
			return fmt.Errorf("%w: usage max keys %d below 1", ErrInvalidSpec, n)
		}
		r.maxKeys = int64(n)
		return nil
	}
}

// WithUsageClock sets the clock read for events whose Time is zero.
// Default: [time.Now].
func WithUsageClock(now func() time.Time) UsageOption {
	return func(r *UsageRecorder) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidSpec)
		}
		r.now = now
		return nil
	}
}

// WithUsageLogger sets where the recorder reports failed background
// flushes and dropped requests. Default: [slog.Default]. It logs counts
// and errors, never keys.
func WithUsageLogger(l *slog.Logger) UsageOption {
	return func(r *UsageRecorder) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidSpec)
		}
		r.logger = l
		return nil
	}
}

// NewUsageRecorder returns a [UsageRecorder] that flushes to w, and starts
// its goroutine. It returns an error matching [ErrInvalidSpec] if w is nil
// or an option is invalid, and one matching [errors.ErrUnsupported] if w
// says so for an empty batch (a [CachedStore] over a store that is not a
// UsageWriter). Call [UsageRecorder.Close] when done.
func NewUsageRecorder(w UsageWriter, opts ...UsageOption) (*UsageRecorder, error) {
	if w == nil {
		return nil, fmt.Errorf("%w: nil UsageWriter", ErrInvalidSpec)
	}
	r := &UsageRecorder{
		w:        w,
		interval: DefaultUsageInterval,
		batch:    DefaultUsageBatchSize,
		maxKeys:  DefaultUsageMaxKeys,
		now:      time.Now,
		logger:   slog.Default(),
		seed:     maphash.MakeSeed(),
	}
	for _, opt := range opts {
		if err := opt(r); err != nil {
			return nil, err
		}
	}
	// An empty batch does nothing, by UsageWriter's contract; a wrapper
	// whose store cannot record usage says so at once.
	if err := w.RecordUsage(context.Background(), nil); errors.Is(err, errors.ErrUnsupported) {
		return nil, fmt.Errorf("keystore: usage recorder: %w", err)
	}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*usageCounter)
	}
	if r.interval > 0 {
		r.stop = make(chan struct{})
		r.done = make(chan struct{})
		go r.run()
	}
	return r, nil
}

// Observe implements [auth.Observer]: it counts an [auth.EventAuthenticated]
// event that has a KeyID, and ignores every other event. It never blocks
// on I/O, and does not allocate for a key already counted. Events observed
// after Close are dropped.
func (r *UsageRecorder) Observe(_ context.Context, e auth.Event) {
	if e.Kind != auth.EventAuthenticated || e.KeyID == "" {
		return
	}
	if r.closed.Load() {
		r.dropped.Add(1)
		return
	}
	t := e.Time
	if t.IsZero() {
		t = r.now()
	}
	if !r.add(e.KeyID, 1, unixNanos(t), e.ClientAddr, true) {
		r.dropped.Add(1)
	}
}

// add counts n requests of key id, the latest at Unix nanoseconds ts (0:
// unknown) from addr. It reports false if the recorder is full and had no
// counter for id.
func (r *UsageRecorder) add(id string, n, ts int64, addr netip.Addr, observed bool) bool {
	sh := &r.shards[maphash.String(r.seed, id)%usageShards]
	sh.mu.Lock()
	if observed && r.closed.Load() {
		// Close began after Observe checked: its final Flush may have
		// taken this shard already, and would never see this request.
		// (Close marks the recorder closed before that Flush, which
		// takes every shard's lock, so a request counted here, under
		// the lock, while not closed, is in it.)
		sh.mu.Unlock()
		return false
	}
	c := sh.m[id]
	if c == nil {
		if r.keys.Load() >= r.maxKeys {
			sh.mu.Unlock()
			return false
		}
		c = new(usageCounter)
		sh.m[id] = c
		r.keys.Add(1)
	}
	c.n += n
	if ts != 0 && ts >= c.last {
		c.last = ts
		if addr.IsValid() {
			c.addr = addr
		}
	}
	sh.mu.Unlock()
	return true
}

// unixNanos returns t in Unix nanoseconds, and 0 for the zero time. Known
// times are clamped to [1, MaxInt64]: a time before 1970 or after 2262 is
// a clock bug upstream, and must neither read as unknown nor overflow.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	switch sec := t.Unix(); {
	case sec < 0:
		return 1
	case sec >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return max(t.UnixNano(), 1)
}

// Flush writes every key's counts since the last flush to the store now,
// in batches, and returns the first error. On error the counts not written
// (those of the failed batch and of the batches after it) are kept for
// the next flush. Flushes are serialised: a Flush called during another
// waits for it. Flush works after Close too, to retry a failed final
// flush.
func (r *UsageRecorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.flushes.Add(1)

	buf := r.buf[:0]
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for id, c := range sh.m {
			if c.n == 0 {
				// Idle for a whole interval: forget the key.
				delete(sh.m, id)
				r.keys.Add(-1)
				continue
			}
			u := Usage{KeyID: id, Requests: c.n, ClientAddr: c.addr}
			if c.last != 0 {
				u.LastUsedAt = time.Unix(0, c.last).UTC()
			}
			buf = append(buf, u)
			c.n = 0
			c.addr = netip.Addr{}
		}
		sh.mu.Unlock()
	}
	defer func() {
		clear(buf) // drop the key IDs until the next flush
		r.buf = buf[:0]
	}()

	for start := 0; start < len(buf); start += r.batch {
		b := buf[start:min(start+r.batch, len(buf))]
		r.writes.Add(1)
		if err := r.w.RecordUsage(ctx, b); err != nil {
			r.failures.Add(1)
			for _, u := range buf[start:] {
				// Only Flush deletes counters, and this Flush holds
				// flushMu: every counter is still there, so add
				// cannot fail.
				r.add(u.KeyID, u.Requests, unixNanos(u.LastUsedAt), u.ClientAddr, false)
			}
			return fmt.Errorf("keystore: usage flush: %d of %d keys not written: %w", len(buf)-start, len(buf), err)
		}
		var n int64
		for _, u := range b {
			n += u.Requests
		}
		r.flushed.Add(uint64(n))
	}
	return nil
}

// run flushes every interval until Close.
func (r *UsageRecorder) run() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(r.interval, minFlushTimeout))
			if err := r.Flush(ctx); err != nil {
				r.logger.LogAttrs(ctx, slog.LevelWarn, "keygate: usage flush failed; counts kept for the next flush",
					slog.Int64("pending_keys", r.keys.Load()), slog.String("error", err.Error()))
			}
			cancel()
			r.logDropped()
		}
	}
}

// logDropped logs the requests dropped since the last time it logged.
func (r *UsageRecorder) logDropped() {
	d := r.dropped.Load()
	if prev := r.droppedLogged.Swap(d); d > prev {
		r.logger.LogAttrs(context.Background(), slog.LevelWarn, "keygate: usage recorder full; requests not counted",
			slog.Uint64("dropped", d-prev), slog.Int64("max_keys", r.maxKeys))
	}
}

// Close stops the flushing goroutine, waiting for a flush in progress, and
// flushes one last time with ctx, returning that flush's error (or ctx's,
// if it ends while waiting). Events observed after Close are dropped.
// Close is idempotent: later calls return the first call's result. After
// a failed Close, [UsageRecorder.Flush] may be called to try again.
func (r *UsageRecorder) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		if r.stop != nil {
			close(r.stop)
			select {
			case <-r.done:
			case <-ctx.Done():
				r.closeErr = fmt.Errorf("keystore: usage recorder close: %w", ctx.Err())
				return
			}
		}
		r.closeErr = r.Flush(ctx)
		r.logDropped()
	})
	return r.closeErr
}

// UsageStats are a [UsageRecorder]'s counters since it was made.
type UsageStats struct {
	// Keys is the number of keys the recorder holds counters for: those
	// with counts not yet flushed, and those seen in the last interval.
	Keys int
	// Flushes counts flushes, background and [UsageRecorder.Flush] calls.
	Flushes uint64
	// Writes counts [UsageWriter.RecordUsage] calls (batches).
	Writes uint64
	// Failures counts the Writes that returned an error.
	Failures uint64
	// Flushed counts the requests written to the store.
	Flushed uint64
	// Dropped counts the requests not counted: because the recorder was
	// full (see [WithUsageMaxKeys]) or closed.
	Dropped uint64
}

// Stats returns the recorder's counters. It is safe to call concurrently
// with everything else; the counters are read one by one, not as one
// snapshot.
func (r *UsageRecorder) Stats() UsageStats {
	return UsageStats{
		Keys:     int(r.keys.Load()),
		Flushes:  r.flushes.Load(),
		Writes:   r.writes.Load(),
		Failures: r.failures.Load(),
		Flushed:  r.flushed.Load(),
		Dropped:  r.dropped.Load(),
	}
}
