package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/keystore"
)

// usageLog is a UsageWriter that keeps a copy of every batch, passes it on
// to next (if set), and fails when fail says so.
type usageLog struct {
	next keystore.UsageWriter

	mu      sync.Mutex
	batches [][]keystore.Usage
	// fail, if set, is asked before each non-empty call (numbered from 1).
	fail func(call int) error
	// block, if set, is waited on by each non-empty call.
	block chan struct{}
}

func (l *usageLog) RecordUsage(ctx context.Context, batch []keystore.Usage) error {
	if len(batch) == 0 {
		return nil
	}
	if l.block != nil {
		select {
		case <-l.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.mu.Lock()
	l.batches = append(l.batches, slices.Clone(batch))
	call := len(l.batches)
	fail := l.fail
	l.mu.Unlock()
	if fail != nil {
		if err := fail(call); err != nil {
			return err
		}
	}
	if l.next != nil {
		return l.next.RecordUsage(ctx, batch)
	}
	return nil
}

// calls returns the batches received so far and forgets them.
func (l *usageLog) take() [][]keystore.Usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.batches
	l.batches = nil
	return b
}

// totals sums batches by key, keeping the latest time and its address.
func totals(batches [][]keystore.Usage) map[string]keystore.Usage {
	m := map[string]keystore.Usage{}
	for _, b := range batches {
		for _, u := range b {
			t := m[u.KeyID]
			t.KeyID = u.KeyID
			t.Requests += u.Requests
			if !u.LastUsedAt.Before(t.LastUsedAt) {
				t.LastUsedAt = u.LastUsedAt
				if u.ClientAddr.IsValid() {
					t.ClientAddr = u.ClientAddr
				}
			}
			m[u.KeyID] = t
		}
	}
	return m
}

func startRecorder(t testing.TB, w keystore.UsageWriter, opts ...keystore.UsageOption) *keystore.UsageRecorder {
	t.Helper()
	opts = append([]keystore.UsageOption{keystore.WithUsageInterval(0)}, opts...)
	r, err := keystore.NewUsageRecorder(w, opts...)
	if err != nil {
		t.Fatalf("NewUsageRecorder: %v", err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

var usageT0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func authenticated(id string, at time.Time, addr string) auth.Event {
	e := auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, KeyID: id, Time: at}
	if addr != "" {
		e.ClientAddr = netip.MustParseAddr(addr)
	}
	return e
}

func TestUsageRecorderObserve(t *testing.T) {
	t.Parallel()
	clock := newClock()
	tests := []struct {
		name   string
		events []auth.Event
		want   []keystore.Usage // sorted by KeyID
	}{
		{
			name:   "one request",
			events: []auth.Event{authenticated("key_a", usageT0, "192.0.2.1")},
			want:   []keystore.Usage{{KeyID: "key_a", Requests: 1, LastUsedAt: usageT0, ClientAddr: netip.MustParseAddr("192.0.2.1")}},
		},
		{
			name: "the latest time and its address win, whatever the order",
			events: []auth.Event{
				authenticated("key_a", usageT0.Add(2*time.Second), "2001:db8::2"),
				authenticated("key_a", usageT0, "192.0.2.1"),
				authenticated("key_b", usageT0, ""),
				authenticated("key_a", usageT0.Add(time.Second), "192.0.2.3"),
			},
			want: []keystore.Usage{
				{KeyID: "key_a", Requests: 3, LastUsedAt: usageT0.Add(2 * time.Second), ClientAddr: netip.MustParseAddr("2001:db8::2")},
				{KeyID: "key_b", Requests: 1, LastUsedAt: usageT0},
			},
		},
		{
			name: "a later request without an address keeps the last known one",
			events: []auth.Event{
				authenticated("key_a", usageT0, "192.0.2.1"),
				authenticated("key_a", usageT0.Add(time.Second), ""),
			},
			want: []keystore.Usage{{KeyID: "key_a", Requests: 2, LastUsedAt: usageT0.Add(time.Second), ClientAddr: netip.MustParseAddr("192.0.2.1")}},
		},
		{
			name: "an access token derived from a key counts for the key",
			events: []auth.Event{
				{Kind: auth.EventAuthenticated, Method: auth.MethodAccessToken, KeyID: "key_a", TokenID: "jti", Time: usageT0},
			},
			want: []keystore.Usage{{KeyID: "key_a", Requests: 1, LastUsedAt: usageT0}},
		},
		{
			name: "times out of range are clamped, not lost",
			events: []auth.Event{
				authenticated("key_a", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), ""),
				authenticated("key_b", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), ""),
			},
			want: []keystore.Usage{
				{KeyID: "key_a", Requests: 1, LastUsedAt: time.Unix(0, 1).UTC()},
				{KeyID: "key_b", Requests: 1, LastUsedAt: time.Unix(0, math.MaxInt64).UTC()},
			},
		},
		{
			name:   "a zero time reads the clock",
			events: []auth.Event{{Kind: auth.EventAuthenticated, KeyID: "key_a"}},
			want:   []keystore.Usage{{KeyID: "key_a", Requests: 1, LastUsedAt: clock.Now()}},
		},
		{
			name: "other events and events without a key are ignored",
			events: []auth.Event{
				{Kind: auth.EventAuthFailed, KeyID: "key_a", Time: usageT0},
				{Kind: auth.EventRateLimited, KeyID: "key_a", Time: usageT0},
				{Kind: auth.EventKeyCreated, KeyID: "key_a", Time: usageT0},
				{Kind: auth.EventTokenIssued, KeyID: "key_a", Time: usageT0},
				{Kind: auth.EventAuthenticated, Subject: "user@idp", Time: usageT0},
				{Time: usageT0, KeyID: "key_a"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log := &usageLog{}
			r := startRecorder(t, log, keystore.WithUsageClock(clock.Now))
			for _, e := range tt.events {
				r.Observe(t.Context(), e)
			}
			if err := r.Flush(t.Context()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			var got []keystore.Usage
			for _, b := range log.take() {
				got = append(got, b...)
			}
			slices.SortFunc(got, func(a, b keystore.Usage) int { return strings.Compare(a.KeyID, b.KeyID) })
			if !slices.Equal(got, tt.want) {
				t.Errorf("flushed %+v\nwant %+v", got, tt.want)
			}
			if err := r.Flush(t.Context()); err != nil {
				t.Fatalf("second Flush: %v", err)
			}
			if b := log.take(); len(b) != 0 {
				t.Errorf("a Flush with nothing new wrote %d batches, want none", len(b))
			}
		})
	}
}

func TestUsageRecorderDeltas(t *testing.T) {
	t.Parallel()
	log := &usageLog{}
	r := startRecorder(t, log)
	ctx := t.Context()
	a := netip.MustParseAddr("192.0.2.1")
	for range 3 {
		r.Observe(ctx, authenticated("key_a", usageT0, "192.0.2.1"))
	}
	r.Flush(ctx)
	// The next flush sends what came since, not the running total; an
	// address seen before the last flush is not sent again.
	r.Observe(ctx, authenticated("key_a", usageT0.Add(time.Minute), ""))
	r.Observe(ctx, authenticated("key_a", usageT0.Add(time.Second), "192.0.2.9")) // late: older than the last flush's
	r.Flush(ctx)
	got := log.take()
	want := [][]keystore.Usage{
		{{KeyID: "key_a", Requests: 3, LastUsedAt: usageT0, ClientAddr: a}},
		{{KeyID: "key_a", Requests: 2, LastUsedAt: usageT0.Add(time.Minute)}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("batches %+v\nwant %+v", got, want)
	}
}

func TestUsageRecorderBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		keys, batch int
		wantWrites  int
	}{
		{keys: 1, batch: 500, wantWrites: 1},
		{keys: 500, batch: 500, wantWrites: 1},
		{keys: 501, batch: 500, wantWrites: 2},
		{keys: 100, batch: 32, wantWrites: 4},
		{keys: 7, batch: 1, wantWrites: 7},
		{keys: 0, batch: 10, wantWrites: 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d keys, batches of %d", tt.keys, tt.batch), func(t *testing.T) {
			t.Parallel()
			log := &usageLog{}
			r := startRecorder(t, log, keystore.WithUsageBatchSize(tt.batch))
			for i := range tt.keys {
				for range i%3 + 1 {
					r.Observe(t.Context(), authenticated(fmt.Sprintf("key_%04d", i), usageT0, ""))
				}
			}
			if err := r.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			batches := log.take()
			if len(batches) != tt.wantWrites {
				t.Errorf("%d writes, want %d", len(batches), tt.wantWrites)
			}
			for _, b := range batches {
				if len(b) > tt.batch {
					t.Errorf("a batch of %d keys, want at most %d", len(b), tt.batch)
				}
			}
			tot := totals(batches)
			if len(tot) != tt.keys {
				t.Errorf("%d keys written, want %d", len(tot), tt.keys)
			}
			for i := range tt.keys {
				id := fmt.Sprintf("key_%04d", i)
				if got := tot[id].Requests; got != int64(i%3+1) {
					t.Errorf("%s: %d requests written, want %d", id, got, i%3+1)
				}
			}
			if st := r.Stats(); st.Writes != uint64(tt.wantWrites) || st.Failures != 0 {
				t.Errorf("Stats %+v, want %d writes and no failures", st, tt.wantWrites)
			}
		})
	}
}

// TestUsageRecorderFailedFlush: a failed batch, and every batch after it,
// are kept and written by the next flush, merged with what came since.
func TestUsageRecorderFailedFlush(t *testing.T) {
	t.Parallel()
	errDown := errors.New("store down")
	var failing atomic.Bool
	log := &usageLog{fail: func(call int) error {
		if failing.Load() && call%3 == 2 { // the second batch of the flush fails
			return errDown
		}
		return nil
	}}
	r := startRecorder(t, log, keystore.WithUsageBatchSize(2))
	ctx := t.Context()
	for i := range 6 {
		r.Observe(ctx, authenticated(fmt.Sprintf("key_%d", i), usageT0, "192.0.2.1"))
	}
	failing.Store(true)
	err := r.Flush(ctx)
	if !errors.Is(err, errDown) {
		t.Fatalf("Flush with a failing store: %v, want the store's error", err)
	}
	written := log.take()
	if len(written) != 2 {
		t.Fatalf("a flush whose second batch failed made %d calls, want 2 (it stops at the failure)", len(written))
	}
	stored := totals(written[:1]) // the first batch went through
	if st := r.Stats(); st.Failures != 1 || st.Flushed != 2 {
		t.Errorf("Stats after a failed flush: %+v, want 1 failure and 2 requests flushed", st)
	}

	// More requests, then a flush that works: everything not stored is
	// written, once.
	failing.Store(false)
	for i := range 6 {
		r.Observe(ctx, authenticated(fmt.Sprintf("key_%d", i), usageT0.Add(time.Second), "2001:db8::1"))
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush after the store came back: %v", err)
	}
	retried := log.take()
	if len(retried) != 3 {
		t.Errorf("the retry made %d calls, want 3 (6 keys in batches of 2)", len(retried))
	}
	for id, u := range totals(retried) {
		want := int64(2)
		if _, ok := stored[id]; ok {
			want = 1
		}
		if u.Requests != want {
			t.Errorf("%s: retry wrote %d requests, want %d", id, u.Requests, want)
		}
		if !u.LastUsedAt.Equal(usageT0.Add(time.Second)) || u.ClientAddr != netip.MustParseAddr("2001:db8::1") {
			t.Errorf("%s: retry wrote time %v and address %v, want the latest", id, u.LastUsedAt, u.ClientAddr)
		}
	}
	if st := r.Stats(); st.Flushed != 12 || st.Dropped != 0 {
		t.Errorf("Stats: %+v, want all 12 requests flushed and none dropped", st)
	}
}

func TestUsageRecorderMaxKeys(t *testing.T) {
	t.Parallel()
	log := &usageLog{}
	r := startRecorder(t, log, keystore.WithUsageMaxKeys(3))
	ctx := t.Context()
	for _, id := range []string{"key_a", "key_b", "key_c", "key_d", "key_a", "key_e", "key_c"} {
		r.Observe(ctx, authenticated(id, usageT0, ""))
	}
	if st := r.Stats(); st.Keys != 3 || st.Dropped != 2 {
		t.Errorf("Stats of a full recorder: %+v, want 3 keys and 2 requests dropped", st)
	}
	r.Flush(ctx)
	got := totals(log.take())
	want := map[string]int64{"key_a": 2, "key_b": 1, "key_c": 2}
	if len(got) != len(want) {
		t.Errorf("flushed keys %v, want %v", got, want)
	}
	for id, n := range want {
		if got[id].Requests != n {
			t.Errorf("%s: %d requests flushed, want %d (keys already counted keep counting)", id, got[id].Requests, n)
		}
	}
	// Keys idle for a whole interval are forgotten, which makes room.
	r.Observe(ctx, authenticated("key_a", usageT0, ""))
	r.Flush(ctx)
	if st := r.Stats(); st.Keys != 1 {
		t.Errorf("after a flush with one key active, %d keys are kept, want 1", st.Keys)
	}
	r.Observe(ctx, authenticated("key_d", usageT0, ""))
	r.Flush(ctx)
	if got := totals(log.take()); got["key_d"].Requests != 1 {
		t.Errorf("a new key once there is room: %d requests flushed, want 1", got["key_d"].Requests)
	}
}

// TestUsageRecorderFailingStoreBoundsMemory: while the store fails, counts
// accumulate in the existing counters, and the number of keys stays
// bounded.
func TestUsageRecorderFailingStoreBoundsMemory(t *testing.T) {
	t.Parallel()
	log := &usageLog{fail: func(int) error { return errors.New("down") }}
	r := startRecorder(t, log, keystore.WithUsageMaxKeys(10))
	ctx := t.Context()
	for round := range 5 {
		for i := range 20 {
			r.Observe(ctx, authenticated(fmt.Sprintf("key_%02d", (i+round)%20), usageT0, ""))
		}
		if err := r.Flush(ctx); err == nil {
			t.Fatal("Flush with a failing store: no error")
		}
		if st := r.Stats(); st.Keys > 10 {
			t.Fatalf("round %d: %d keys kept, want at most 10", round, st.Keys)
		}
	}
	log.mu.Lock()
	log.fail = nil
	log.mu.Unlock()
	log.take()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	var total int64
	for _, u := range totals(log.take()) {
		total += u.Requests
	}
	if uint64(total) != st.Flushed || total+int64(st.Dropped) != 100 {
		t.Errorf("flushed %d (stats %+v), want flushed + dropped = 100 requests observed", total, st)
	}
}

func TestUsageRecorderClose(t *testing.T) {
	t.Parallel()
	t.Run("final flush", func(t *testing.T) {
		t.Parallel()
		log := &usageLog{}
		r, err := keystore.NewUsageRecorder(log) // with its goroutine, default interval
		if err != nil {
			t.Fatal(err)
		}
		r.Observe(t.Context(), authenticated("key_a", usageT0, ""))
		if err := r.Close(t.Context()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if got := totals(log.take())["key_a"].Requests; got != 1 {
			t.Errorf("Close flushed %d requests, want 1", got)
		}
		r.Observe(t.Context(), authenticated("key_a", usageT0, ""))
		if err := r.Close(t.Context()); err != nil {
			t.Errorf("second Close: %v", err)
		}
		r.Flush(t.Context())
		if b := log.take(); len(b) != 0 {
			t.Errorf("an event after Close was written: %v", b)
		}
		if st := r.Stats(); st.Dropped != 1 {
			t.Errorf("Stats after Close: %+v, want the event after Close dropped", st)
		}
	})
	t.Run("failed final flush can be retried", func(t *testing.T) {
		t.Parallel()
		var down atomic.Bool
		down.Store(true)
		log := &usageLog{fail: func(int) error {
			if down.Load() {
				return errors.New("down")
			}
			return nil
		}}
		r, err := keystore.NewUsageRecorder(log, keystore.WithUsageInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		r.Observe(t.Context(), authenticated("key_a", usageT0, ""))
		if err := r.Close(t.Context()); err == nil {
			t.Fatal("Close with a failing store: no error")
		}
		down.Store(false)
		log.take()
		if err := r.Flush(t.Context()); err != nil {
			t.Fatalf("Flush after a failed Close: %v", err)
		}
		if got := totals(log.take())["key_a"].Requests; got != 1 {
			t.Errorf("Flush after a failed Close wrote %d requests, want 1", got)
		}
	})
	t.Run("context ends while a flush hangs", func(t *testing.T) {
		t.Parallel()
		log := &usageLog{block: make(chan struct{})}
		r, err := keystore.NewUsageRecorder(log, keystore.WithUsageInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		r.Observe(t.Context(), authenticated("key_a", usageT0, ""))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if err := r.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close with a hung store: %v, want the context's error", err)
		}
	})
}

// TestUsageRecorderBackground: the goroutine flushes on its own, every
// interval, and Close stops it.
func TestUsageRecorderBackground(t *testing.T) {
	t.Parallel()
	log := &usageLog{}
	r, err := keystore.NewUsageRecorder(log, keystore.WithUsageInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	for i := range 50 {
		r.Observe(t.Context(), authenticated(fmt.Sprintf("key_%d", i%5), time.Now(), ""))
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Flushed < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("the background flush did not write the requests: %+v", r.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := r.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	flushes := r.Stats().Flushes
	time.Sleep(30 * time.Millisecond)
	if got := r.Stats().Flushes; got != flushes {
		t.Errorf("%d flushes after Close, want none: the goroutine did not stop", got-flushes)
	}
	var total int64
	for _, u := range totals(log.take()) {
		total += u.Requests
	}
	if total != 50 {
		t.Errorf("%d requests written, want 50", total)
	}
}

// TestUsageRecorderBackgroundLogs: a failed background flush is logged,
// with no key in the message.
func TestUsageRecorderBackgroundLogs(t *testing.T) {
	t.Parallel()
	var buf syncbuf.Buffer
	log := &usageLog{fail: func(int) error { return errors.New("connection refused") }}
	r, err := keystore.NewUsageRecorder(log,
		keystore.WithUsageInterval(5*time.Millisecond),
		keystore.WithUsageMaxKeys(1),
		keystore.WithUsageLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	r.Observe(t.Context(), authenticated("key_a", time.Now(), ""))
	r.Observe(t.Context(), authenticated("key_b", time.Now(), "")) // dropped: full
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "usage flush failed") || !strings.Contains(buf.String(), "dropped=1") {
		if time.Now().After(deadline) {
			t.Fatalf("no failure and drop logged: %q", buf.String())
		}
		time.Sleep(time.Millisecond)
	}
	if out := buf.String(); !strings.Contains(out, "connection refused") || strings.Contains(out, "key_a") {
		t.Errorf("log %q: want the store's error and no key ID", out)
	}
}

// TestUsageRecorderConcurrent observes from many goroutines while flushes
// run: every request is written exactly once.
func TestUsageRecorderConcurrent(t *testing.T) {
	t.Parallel()
	const (
		workers = 8
		perWork = 2000
		keys    = 50
	)
	store := keystore.NewMemoryStore()
	ctx := t.Context()
	for i := range keys {
		r := usageKeyRecord(i)
		if err := store.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var failNext atomic.Bool
	log := &usageLog{next: store, fail: func(int) error {
		if failNext.CompareAndSwap(true, false) {
			return errors.New("transient")
		}
		return nil
	}}
	r := startRecorder(t, log, keystore.WithUsageBatchSize(7))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWork {
				r.Observe(ctx, authenticated(usageKeyID((w*perWork+i)%keys), usageT0.Add(time.Duration(i)*time.Millisecond), "192.0.2.1"))
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for flushing := true; flushing; {
		select {
		case <-done:
			flushing = false
		default:
		}
		failNext.Store(true) // every other flush fails once
		r.Flush(ctx)
	}
	for r.Flush(ctx) != nil {
	}
	var total int64
	for i := range keys {
		rec, err := store.Get(ctx, usageKeyID(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(workers * perWork / keys); rec.UsageCount != want {
			t.Errorf("%s: UsageCount %d, want %d", rec.ID, rec.UsageCount, want)
		}
		total += rec.UsageCount
	}
	if st := r.Stats(); uint64(total) != st.Flushed || st.Dropped != 0 {
		t.Errorf("store holds %d requests, Stats %+v", total, st)
	}
}

func usageKeyID(i int) string { return fmt.Sprintf("key_usage%07d", i) }

func usageKeyRecord(i int) keystore.Record {
	id := usageKeyID(i)
	var d keystore.Digest
	copy(d[:], id)
	d[31] = 1
	return keystore.Record{ID: id, Project: "usage", Digest: d, CreatedAt: usageT0}
}

// TestUsageRecorderObserveAllocs: counting a key already counted does not
// allocate. (Not parallel: AllocsPerRun counts the whole process.)
func TestUsageRecorderObserveAllocs(t *testing.T) {
	r := startRecorder(t, &usageLog{})
	ctx := context.Background()
	e := authenticated("key_a", usageT0, "192.0.2.1")
	r.Observe(ctx, e)
	if n := testalloc.Min(1000, func() { r.Observe(ctx, e) }); n != 0 {
		t.Errorf("Observe of a counted key: %v allocations, want 0", n)
	}
	ignored := auth.Event{Kind: auth.EventAuthFailed, Time: usageT0}
	if n := testalloc.Min(1000, func() { r.Observe(ctx, ignored) }); n != 0 {
		t.Errorf("Observe of an ignored event: %v allocations, want 0", n)
	}
	// Across a flush too: the counter stays until the key is idle for a
	// whole interval.
	r.Flush(ctx)
	if n := testalloc.Min(1000, func() { r.Observe(ctx, e) }); n != 0 {
		t.Errorf("Observe of a counted key after a flush: %v allocations, want 0", n)
	}
}

func TestNewUsageRecorderErrors(t *testing.T) {
	t.Parallel()
	plain, err := keystore.NewCachedStore(storeOnly{keystore.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		w    keystore.UsageWriter
		opts []keystore.UsageOption
		want error
	}{
		{"nil writer", nil, nil, keystore.ErrInvalidSpec},
		{"negative interval", &usageLog{}, []keystore.UsageOption{keystore.WithUsageInterval(-time.Second)}, keystore.ErrInvalidSpec},
		{"zero batch", &usageLog{}, []keystore.UsageOption{keystore.WithUsageBatchSize(0)}, keystore.ErrInvalidSpec},
		{"zero max keys", &usageLog{}, []keystore.UsageOption{keystore.WithUsageMaxKeys(0)}, keystore.ErrInvalidSpec},
		{"nil clock", &usageLog{}, []keystore.UsageOption{keystore.WithUsageClock(nil)}, keystore.ErrInvalidSpec},
		{"nil logger", &usageLog{}, []keystore.UsageOption{keystore.WithUsageLogger(nil)}, keystore.ErrInvalidSpec},
		{"cache over a store without usage", plain, nil, errors.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := keystore.NewUsageRecorder(tt.w, tt.opts...)
			if !errors.Is(err, tt.want) {
				t.Errorf("NewUsageRecorder: %v, want %v", err, tt.want)
			}
			if r != nil {
				r.Close(t.Context())
				t.Error("NewUsageRecorder returned a recorder with its error")
			}
		})
	}
}

// storeOnly hides every optional capability of a Store.
type storeOnly struct{ keystore.Store }

// TestCachedStoreRecordUsage: the cache passes batches on, and its cached
// records show them at once, counted once.
func TestCachedStoreRecordUsage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mem := keystore.NewMemoryStore()
	c, err := keystore.NewCachedStore(mem)
	if err != nil {
		t.Fatal(err)
	}
	rec := usageKeyRecord(1)
	if err := c.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupDigest(ctx, rec.Digest); err != nil { // cache it
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.1")
	for i := range 3 {
		if err := c.RecordUsage(ctx, []keystore.Usage{{KeyID: rec.ID, Requests: 2, LastUsedAt: usageT0.Add(time.Duration(i) * time.Second), ClientAddr: addr}}); err != nil {
			t.Fatal(err)
		}
	}
	for name, get := range map[string]func() (keystore.Record, error){
		"LookupDigest": func() (keystore.Record, error) { return c.LookupDigest(ctx, rec.Digest) },
		"Get":          func() (keystore.Record, error) { return c.Get(ctx, rec.ID) },
		"store":        func() (keystore.Record, error) { return mem.Get(ctx, rec.ID) },
	} {
		got, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if got.UsageCount != 6 || !got.LastUsedAt.Equal(usageT0.Add(2*time.Second)) || got.LastClientAddr != addr {
			t.Errorf("%s after RecordUsage: count %d, last used %v, address %v; want 6, %v, %v",
				name, got.UsageCount, got.LastUsedAt, got.LastClientAddr, usageT0.Add(2*time.Second), addr)
		}
	}
	if st := c.Stats(); st.StoreCalls != 1 {
		t.Errorf("%d store lookups, want 1: RecordUsage must update the cached record, not drop it", st.StoreCalls)
	}

	// A store without the capability: ErrUnsupported, nothing else.
	plain, _ := keystore.NewCachedStore(storeOnly{mem})
	if err := plain.RecordUsage(ctx, []keystore.Usage{{KeyID: rec.ID, Requests: 1}}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("RecordUsage through a cache over a store without it: %v, want errors.ErrUnsupported", err)
	}
}

// TestUsageRecorderLoad drives the Guard's middleware, with the Manager and
// the recorder as its observer, at increasing request counts over the same
// 100 keys and flush intervals, and checks what the store sees: the number
// of write calls per flush stays at ceil(keys/batch) however many requests
// there are, and the counts add up exactly. Flushes are made by hand at
// the end of each "interval", so the test does not depend on timing.
func TestUsageRecorderLoad(t *testing.T) {
	t.Parallel()
	const (
		nkeys     = 100
		batch     = 32
		intervals = 10
		maxWrites = (nkeys + batch - 1) / batch // 4
	)
	levels := []int{1_000, 10_000, 100_000}
	if testing.Short() {
		levels = levels[:2]
	}
	for _, total := range levels {
		t.Run(fmt.Sprintf("%d requests", total), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			store := keystore.NewMemoryStore()
			log := &usageLog{next: store}
			rec := startRecorder(t, log, keystore.WithUsageBatchSize(batch))
			m, err := keystore.NewManager(store, keystore.WithLastUsedInterval(0))
			if err != nil {
				t.Fatal(err)
			}
			g, err := auth.New(m, auth.WithObserver(rec))
			if err != nil {
				t.Fatal(err)
			}
			h := g.Middleware(okHandler)
			reqs := make([]*http.Request, nkeys)
			ids := make([]string, nkeys)
			for i := range reqs {
				k, r, err := m.Issue(ctx, keystore.KeySpec{Project: "load"})
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = r.ID
				reqs[i] = httptest.NewRequest(http.MethodGet, "/v1/models", nil)
				reqs[i].Header.Set("Authorization", "Bearer "+k.Plaintext())
				reqs[i].RemoteAddr = fmt.Sprintf("192.0.2.%d:4242", i+1)
			}
			perInterval := total / intervals
			const workers = 4
			for iv := range intervals {
				var wg sync.WaitGroup
				var failed atomic.Int64
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rw := &statusWriter{}
						for i := w; i < perInterval; i += workers {
							rw.code = 0
							h.ServeHTTP(rw, reqs[i%nkeys])
							if rw.code != http.StatusOK {
								failed.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				if n := failed.Load(); n > 0 {
					t.Fatalf("interval %d: %d requests not answered 200", iv, n)
				}
				if err := rec.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				writes := log.take()
				if len(writes) > maxWrites {
					t.Errorf("interval %d: %d store writes for %d requests over %d keys, want at most %d",
						iv, len(writes), perInterval, nkeys, maxWrites)
				}
			}
			for i, id := range ids {
				r, err := store.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if want := int64(total / nkeys); r.UsageCount != want {
					t.Errorf("%s: UsageCount %d, want %d", id, r.UsageCount, want)
				}
				if want := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}); r.LastClientAddr != want || r.LastUsedAt.IsZero() {
					t.Errorf("%s: last used %v from %v, want a time and %v", id, r.LastUsedAt, r.LastClientAddr, want)
				}
			}
			st := rec.Stats()
			if st.Writes > intervals*maxWrites || st.Flushed != uint64(total) || st.Dropped != 0 {
				t.Errorf("Stats %+v: want at most %d writes in all, %d requests flushed, none dropped",
					st, intervals*maxWrites, total)
			}
			t.Logf("%d requests, %d keys: %d store writes in %d flushes", total, nkeys, st.Writes, st.Flushes)
		})
	}
}

// statusWriter is a ResponseWriter that keeps only the status code.
type statusWriter struct {
	h    http.Header
	code int
}

func (d *statusWriter) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}

func (d *statusWriter) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return len(b), nil
}

func (d *statusWriter) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

// BenchmarkUsageRecorderObserve measures counting one authenticated
// request: a key already counted, serially and from all CPUs over 100
// keys. Run with:
//
//	go test -run '^$' -bench UsageRecorderObserve -benchmem ./keystore/
func BenchmarkUsageRecorderObserve(b *testing.B) {
	ctx := context.Background()
	r := startRecorder(b, &usageLog{})
	events := make([]auth.Event, 100)
	for i := range events {
		events[i] = authenticated(usageKeyID(i), usageT0, "192.0.2.1")
		r.Observe(ctx, events[i])
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Observe(ctx, events[0])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				r.Observe(ctx, events[i%len(events)])
				i++
			}
		})
	})
	b.Run("ignored", func(b *testing.B) {
		b.ReportAllocs()
		e := auth.Event{Kind: auth.EventAuthFailed, Time: usageT0}
		for b.Loop() {
			r.Observe(ctx, e)
		}
	})
}

// A UsageRecorder counts requests in memory and writes them to the store
// in batches. Give it to the Guard as its observer, and turn off the
// Manager's own last-used writes.
func ExampleUsageRecorder() {
	ctx := context.Background()
	store := keystore.NewMemoryStore() // or sqlstore, or a CachedStore
	usage, err := keystore.NewUsageRecorder(store,
		keystore.WithUsageInterval(10*time.Second), // the default
	)
	if err != nil {
		panic(err)
	}
	// On shutdown: stop the goroutine and write what is pending.
	defer usage.Close(ctx)

	keys, err := keystore.NewManager(store, keystore.WithLastUsedInterval(0))
	if err != nil {
		panic(err)
	}
	guard, err := auth.New(keys, auth.WithObserver(usage))
	if err != nil {
		panic(err)
	}
	h := guard.Middleware(okHandler)

	key, rec, err := keys.Issue(ctx, keystore.KeySpec{Project: "default"})
	if err != nil {
		panic(err)
	}
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key.Plaintext())
		req.RemoteAddr = "203.0.113.7:50000"
		h.ServeHTTP(httptest.NewRecorder(), req)
	}

	if err := usage.Flush(ctx); err != nil { // the goroutine would, within 10 s
		panic(err)
	}
	got, err := keys.Get(ctx, rec.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("requests:", got.UsageCount)
	fmt.Println("last client:", got.LastClientAddr)
	fmt.Println("last used set:", !got.LastUsedAt.IsZero())
	// Output:
	// requests: 3
	// last client: 203.0.113.7
	// last used set: true
}

// TestUsageRecorderCloseRace: requests observed while Close runs are
// either in its final flush or counted as dropped, never lost between the
// two.
func TestUsageRecorderCloseRace(t *testing.T) {
	t.Parallel()
	for round := range 20 {
		r := startRecorder(t, &usageLog{})
		var observed atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r.Observe(context.Background(), authenticated(fmt.Sprintf("key_%d_%d", g, i%50), usageT0, ""))
					observed.Add(1)
				}
			}()
		}
		time.Sleep(time.Millisecond)
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		s := r.Stats()
		if got := int64(s.Flushed + s.Dropped); got != observed.Load() {
			t.Fatalf("round %d: %d requests observed, %d flushed + %d dropped = %d", round, observed.Load(), s.Flushed, s.Dropped, got)
		}
	}
}
