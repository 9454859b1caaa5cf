package tokentest

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/token"
)

// DropGrace is how late after its time a [token.Revocations] entry may
// still be held: [RunRevocations] requires an entry revoked with expiry
// time exp to be gone once the clock has passed exp +
// [token.RevocationSlack] + DropGrace and Revoke has been called since.
// [token.MemoryRevocations] drops entries in 10-second buckets.
const DropGrace = time.Minute

// RunRevocations runs the conformance suite against the [token.Revocations]
// made by newRevocations, which must read the current time from now: the
// time that decides when an entry may be dropped. The suite moves that
// clock forward, from the real time by a few hours in all, and expects
// each entry to be
//
//   - reported as revoked at once, and only for the exact ID revoked;
//   - kept until [token.RevocationSlack] after the expiry time given to
//     Revoke, the later one when an ID is revoked twice, even if that time
//     had already passed when Revoke was called;
//   - gone by [DropGrace] after that, once Revoke has been called again
//     (the bound on the memory or the table a store uses).
//
// It also expects Revoke to refuse an empty ID with an error, and
// concurrent calls to leave the store consistent.
//
// The subtests run one after another on one clock that only moves
// forward, so newRevocations may return views of one shared table: an
// entry that one subtest lets expire is never one that another still
// needs. It should register any cleanup with t.Cleanup. RunRevocations
// passes a live context and does not test cancellation.
func RunRevocations(t *testing.T, newRevocations func(t *testing.T, now func() time.Time) token.Revocations) {
	t.Helper()
	c := &clock{}
	c.ns.Store(start().UnixNano())
	tests := []struct {
		name string
		fn   func(t *testing.T, r token.Revocations, c *clock)
	}{
		{"Revoke", testRevoke},
		{"EmptyID", testEmptyID},
		{"KeptThroughSlack", testKeptThroughSlack},
		{"Dropped", testDropped},
		{"LaterExpiry", testLaterExpiry},
		{"Concurrent", testRevocationsConcurrent},
	}
	t.Run("Revocations", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := newRevocations(t, c.now)
				if r == nil {
					t.Fatal("newRevocations returned nil")
				}
				tc.fn(t, r, c)
			})
		}
	})
}

// clock is the suite's clock: safe for concurrent use, moved only by the
// subtest running.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()) }

// advanceTo moves the clock to at, if that is later.
func (c *clock) advanceTo(at time.Time) {
	if n := at.UnixNano(); n > c.ns.Load() {
		c.ns.Store(n)
	}
}

func mustRevoke(t *testing.T, r token.Revocations, what, id string, exp time.Time) {
	t.Helper()
	if err := r.Revoke(t.Context(), id, exp); err != nil {
		t.Fatalf("%s: Revoke: %v", what, err)
	}
}

// wantRevoked checks IsRevoked(id).
func wantRevoked(t *testing.T, r token.Revocations, what, id string, want bool) {
	t.Helper()
	got, err := r.IsRevoked(t.Context(), id)
	if err != nil {
		t.Errorf("%s: IsRevoked: %v", what, err)
	} else if got != want {
		t.Errorf("%s: IsRevoked(%.40q) = %v, want %v", what, id, got, want)
	}
}

// pokeAt moves the clock to at and revokes a new ID, which lets the store
// drop what it may.
func pokeAt(t *testing.T, r token.Revocations, c *clock, at time.Time) {
	t.Helper()
	c.advanceTo(at)
	mustRevoke(t, r, "revoking a new ID", randID("jti-"), c.now().Add(time.Hour))
}

func testRevoke(t *testing.T, r token.Revocations, c *clock) {
	id := randID("jti-")
	long := strings.Repeat("x", 300) + id
	sid := "sid:" + id
	exp := c.now().Add(15 * time.Minute)
	wantRevoked(t, r, "an ID never revoked", id, false)
	for _, x := range []string{id, long, sid} {
		mustRevoke(t, r, "an ID", x, exp)
		wantRevoked(t, r, "an ID right after Revoke (revocation is visible at once)", x, true)
	}
	unrevoked := append(nameVariants(id),
		"",
		strings.TrimPrefix(sid, "sid:")+":",
		"sid:"+id+"x",
		long[:len(long)-1]+"!", // a store must not cut long IDs short
		"y"+long[1:],
	)
	for _, x := range unrevoked {
		wantRevoked(t, r, "an ID like a revoked one (IDs are compared exactly)", x, false)
	}
	// Idempotent.
	for i := range 2 {
		if err := r.Revoke(t.Context(), id, exp); err != nil {
			t.Errorf("Revoke of a revoked ID, call %d: %v; Revoke must be idempotent", i+2, err)
		}
		wantRevoked(t, r, "an ID revoked again", id, true)
	}
}

func testEmptyID(t *testing.T, r token.Revocations, c *clock) {
	if err := r.Revoke(t.Context(), "", c.now().Add(time.Hour)); err == nil {
		t.Error("Revoke of an empty ID: no error; no token has an empty ID, so it is a caller bug")
	}
	wantRevoked(t, r, "the empty ID after a refused Revoke", "", false)
}

func testKeptThroughSlack(t *testing.T, r token.Revocations, c *clock) {
	t0 := c.now()
	live, expired := randID("jti-"), randID("jti-")
	mustRevoke(t, r, "a token that expires in a minute", live, t0.Add(time.Minute))
	// A token that expired a second ago may still verify within the
	// verifier's leeway: its revocation counts.
	mustRevoke(t, r, "a token that expired a second ago", expired, t0.Add(-time.Second))
	wantRevoked(t, r, "a token that expired a second before Revoke", expired, true)

	pokeAt(t, r, c, t0.Add(-time.Second+token.RevocationSlack-time.Millisecond))
	wantRevoked(t, r, "a token that expired a second before Revoke, just before its expiry plus token.RevocationSlack", expired, true)
	wantRevoked(t, r, "a token, at its expiry plus token.RevocationSlack minus a second", live, true)

	pokeAt(t, r, c, t0.Add(time.Minute+token.RevocationSlack-time.Millisecond))
	wantRevoked(t, r, "a token just before its expiry plus token.RevocationSlack (entries are kept that long)", live, true)
}

func testDropped(t *testing.T, r token.Revocations, c *clock) {
	t0 := c.now()
	id, old := randID("jti-"), randID("jti-")
	exp := t0.Add(time.Minute)
	mustRevoke(t, r, "a token that expires in a minute", id, exp)
	// Long expired: recorded or not, it is dropped like any other.
	if err := r.Revoke(t.Context(), old, t0.Add(-token.RevocationSlack-time.Minute)); err != nil {
		t.Errorf("Revoke of a token that expired long ago: %v; it is not an error", err)
	}

	pokeAt(t, r, c, t0.Add(DropGrace))
	wantRevoked(t, r, fmt.Sprintf("a token that expired long before Revoke, %v later", DropGrace), old, false)
	wantRevoked(t, r, "a token before its expiry", id, true)

	pokeAt(t, r, c, exp.Add(token.RevocationSlack+DropGrace))
	wantRevoked(t, r, "a token past its expiry plus token.RevocationSlack plus tokentest.DropGrace, after another Revoke (entries must not be kept forever)", id, false)
}

func testLaterExpiry(t *testing.T, r token.Revocations, c *clock) {
	t0 := c.now()
	soon, late := t0.Add(time.Minute), t0.Add(time.Hour)
	shortened, extended := randID("jti-"), randID("jti-")
	mustRevoke(t, r, "first Revoke", shortened, late)
	mustRevoke(t, r, "second Revoke, earlier expiry", shortened, soon)
	mustRevoke(t, r, "first Revoke", extended, soon)
	mustRevoke(t, r, "second Revoke, later expiry", extended, late)

	pokeAt(t, r, c, soon.Add(token.RevocationSlack+DropGrace))
	wantRevoked(t, r, "an ID revoked with a late expiry, then an early one, past the early one (the later expiry is kept)", shortened, true)
	wantRevoked(t, r, "an ID revoked with an early expiry, then a late one, past the early one (the later expiry is kept)", extended, true)

	pokeAt(t, r, c, late.Add(token.RevocationSlack+DropGrace))
	wantRevoked(t, r, "an ID revoked twice, past the later expiry", shortened, false)
	wantRevoked(t, r, "an ID revoked twice, past the later expiry", extended, false)
}

// testRevocationsConcurrent revokes and checks at once: each worker its
// own IDs, and every worker each of a few shared IDs, with an expiry of
// its own, of which the latest must be kept. The workers meet before each
// shared ID and revoke it together, so that the calls overlap however the
// goroutines are scheduled (a worker that lags behind the others would
// otherwise come last to every shared ID); and which worker gives the
// latest expiry changes from one shared ID to the next, so that no one
// worker's timing decides them all. A store that keeps the last write, or
// compares with a stale expiry, then fails all but every time.
func testRevocationsConcurrent(t *testing.T, r token.Revocations, c *clock) {
	ctx := t.Context()
	const (
		workers = 8
		each    = 20
		shares  = 16 // shared IDs, revoked by every worker at its steps 0 to 15
		step    = 10 * time.Minute
	)
	t0 := c.now()
	var (
		ids    [workers][]string
		shared [shares]string
		met    [shares]sync.WaitGroup // the workers' meeting before each shared ID
		start  = make(chan struct{})
		wg     sync.WaitGroup
	)
	for w := range workers {
		for range each {
			ids[w] = append(ids[w], randID("jti-"))
		}
	}
	for i := range shared {
		shared[i] = randID("jti-")
		met[i].Add(workers)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := 0 // the next meeting
			defer func() {
				// A worker that stops early still counts at the
				// meetings it missed, so that the others go on.
				for ; next < shares; next++ {
					met[next].Done()
				}
			}()
			<-start
			for i, id := range ids[w] {
				if err := r.Revoke(ctx, id, t0.Add(time.Hour)); err != nil {
					t.Errorf("concurrent Revoke: %v", err)
					return
				}
				if ok, err := r.IsRevoked(ctx, id); err != nil || !ok {
					t.Errorf("IsRevoked right after a concurrent Revoke = %v, %v; want true", ok, err)
				}
				if ok, err := r.IsRevoked(ctx, id+"-never"); err != nil || ok {
					t.Errorf("concurrent IsRevoked of an ID never revoked = %v, %v; want false", ok, err)
				}
				if i < shares {
					met[i].Done()
					next++
					met[i].Wait()
					// Expiries 1 to workers steps after t0, the
					// latest from worker (workers-1-i) mod workers.
					exp := t0.Add(time.Duration((w+i)%workers+1) * step)
					if err := r.Revoke(ctx, shared[i], exp); err != nil {
						t.Errorf("concurrent Revoke of one ID: %v", err)
						return
					}
					if ok, err := r.IsRevoked(ctx, shared[i]); err != nil || !ok {
						t.Errorf("IsRevoked right after a concurrent Revoke of one ID = %v, %v; want true", ok, err)
					}
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	for w := range ids {
		for _, id := range ids[w] {
			wantRevoked(t, r, "after the concurrent run", id, true)
		}
	}
	// Past every expiry given for the shared IDs but the latest.
	pokeAt(t, r, c, t0.Add((workers-1)*step+token.RevocationSlack+DropGrace))
	for _, id := range shared {
		wantRevoked(t, r, "an ID revoked concurrently with several expiries, past all but the latest (the latest is kept)", id, true)
	}
	pokeAt(t, r, c, t0.Add(workers*step+token.RevocationSlack+DropGrace))
	for _, id := range shared {
		wantRevoked(t, r, "an ID revoked concurrently with several expiries, past the latest", id, false)
	}
}
