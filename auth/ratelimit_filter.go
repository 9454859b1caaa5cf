package auth

import (
	"hash/maphash"
	"sync/atomic"
	"time"
)

// failureFilterSlots is how many slots a failureFilter has: 8 KiB of
// int64s. An attack that marks them all costs nothing but the peeks the
// filter saves, which the middleware then makes, as it would without one.
const failureFilterSlots = 1024

// failureFilterMargin is added to how long a failure is remembered, for a
// Limiter whose clock is not this process's (one shared through Redis
// answers from the server's clock, one round trip away).
const failureFilterMargin = time.Second

// failureFilter remembers, approximately, which failure budgets this Guard
// has recently spent from, so that the middleware peeks at a failure
// budget only when it may be in use. A client that has not failed lately,
// the usual case, then costs no Limiter call, and no budget key, before it
// is authenticated.
//
// Keys hash into a fixed array of slots. A slot holds the monotonic time
// until which a failure recorded there may still show in its budget: the
// time the budget takes to refill completely after it was last spent from,
// plus [failureFilterMargin]. A slot is never cleared early, so two keys
// that share a slot only make the middleware peek at a budget it need not
// have; the filter never hides a budget in use from a failure this Guard
// saw. Failures that other instances sharing the Limiter saw are not in
// it: an address or credential that failed only elsewhere is checked here
// once its first failure here is recorded, so each instance lets at most
// one unchecked failure of a key through per refill time.
//
// The zero failureFilter is not usable: make one with newFailureFilter.
// It is safe for concurrent use and never allocates.
type failureFilter struct {
	seed  maphash.Seed
	hold  int64 // ns a failure is remembered
	slots [failureFilterSlots]atomic.Int64
}

// filterEpoch is the origin of failureFilter times, which are monotonic
// nanoseconds since it, plus one so that zero means "never marked".
var filterEpoch = time.Now()

func filterNow() int64 {
	return int64(time.Since(filterEpoch)) + 1
}

// newFailureFilter returns a filter for the budgets of l.
func newFailureFilter(l Limit) *failureFilter {
	_, span := gcraParams(l)
	return &failureFilter{
		seed: maphash.MakeSeed(),
		hold: min(span, 1<<61) + int64(failureFilterMargin),
	}
}

func (f *failureFilter) slot(key string) *atomic.Int64 {
	return &f.slots[maphash.String(f.seed, key)%failureFilterSlots]
}

// mark records that key's budget was spent from, or found in use, now.
func (f *failureFilter) mark(key string) {
	s := f.slot(key)
	until := filterNow() + f.hold
	for {
		old := s.Load()
		if old >= until || s.CompareAndSwap(old, until) {
			return
		}
	}
}

// marked reports whether key's budget may be in use: whether a key of its
// slot was marked less than the hold time ago. An unmarked slot costs no
// clock reading.
func (f *failureFilter) marked(key string) bool {
	until := f.slot(key).Load()
	return until != 0 && filterNow() < until
}
