package token

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// RevocationSlack is how long past its expiry time a revocation must be
// kept, by every [Revocations] store (MemoryRevocations and the SQL store
// do so; [Service] passes the token's own expiry). A
// [Verifier] accepts a token up to its leeway (at most one minute) after
// exp, so a revocation dropped at exp would let a revoked token work again
// for that long; two minutes covers the largest leeway with room to spare.
const RevocationSlack = 2 * time.Minute

// revocationShards spreads [MemoryRevocations] over several locks, so that
// concurrent IsRevoked calls do not all write the same reader count.
const revocationShards = 16

// revocationBucket is the width of the expiry buckets of
// [MemoryRevocations]: an entry is forgotten at most this long after it
// could be.
const revocationBucket = 10 * time.Second

// errEmptyRevocation is returned by [MemoryRevocations.Revoke] for an
// empty ID, which no token has: it is a caller bug.
var errEmptyRevocation = errors.New("token: revoke: empty token ID")

// Interface check.
var _ Revocations = (*MemoryRevocations)(nil)

// MemoryRevocations is a [Revocations] that keeps revoked token IDs in
// memory, for a single instance (several instances need a shared store).
// Give the same MemoryRevocations to the [Verifier] (see
// [WithRevocations]) and to the [Service], so that a token the Service
// revokes fails verification at once.
//
// Each entry is kept until [RevocationSlack] after the expiresAt given to
// Revoke, then dropped by a later Revoke: memory is bounded by the tokens
// revoked within one token lifetime, however many have been revoked
// overall. Dropping expired entries costs amortized constant time per
// entry; there is no background goroutine.
//
// IsRevoked takes a read lock on one of 16 shards and does not allocate;
// while nothing is revoked it takes no lock at all. It does not read the
// clock: an entry still held after its expiry is reported as revoked,
// which is harmless since the token has expired too.
//
// The zero value is an empty set that reads [time.Now]; so is
// [NewMemoryRevocations] without options. A MemoryRevocations is safe for
// concurrent use and must not be copied after first use.
type MemoryRevocations struct {
	now    func() time.Time
	count  atomic.Int64 // entries held, in all shards
	shards [revocationShards]revocationShard
}

// revocationShard holds the entries whose ID hashes to it.
type revocationShard struct {
	mu sync.RWMutex
	// until maps a revoked ID to when its entry may be dropped, in Unix
	// nanoseconds.
	until map[string]int64
	queue expiryQueue[string]
	_     [64]byte // keep shards on separate cache lines
}

// RevocationsOption configures a [MemoryRevocations].
type RevocationsOption func(*MemoryRevocations)

// WithRevocationsClock sets the clock that decides when entries may be
// dropped. Default (and for nil): [time.Now]. Tests that move a fake
// clock must give the [Verifier] the same one.
func WithRevocationsClock(now func() time.Time) RevocationsOption {
	return func(m *MemoryRevocations) { m.now = now }
}

// NewMemoryRevocations returns an empty [MemoryRevocations].
func NewMemoryRevocations(opts ...RevocationsOption) *MemoryRevocations {
	m := &MemoryRevocations{}
	for _, o := range opts {
		if o != nil {
			o(m)
		}
	}
	return m
}

func (m *MemoryRevocations) clock() time.Time {
	if m.now == nil {
		return time.Now()
	}
	return m.now()
}

// shard returns the shard of id: FNV-1a of at most its last 16 bytes.
// keygate's token IDs end in random characters; for IDs chosen by someone
// else a skewed spread costs speed, never correctness.
func (m *MemoryRevocations) shard(id string) *revocationShard {
	h := uint32(2166136261)
	for i := max(0, len(id)-16); i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return &m.shards[h%revocationShards]
}

// Revoke records that id is revoked until expiresAt plus
// [RevocationSlack]. Revoking an ID again keeps the later of the two
// times. An expiresAt so far in the past that the entry would already be
// dropped records nothing: that token no longer verifies anyway. Revoke
// also drops the entries whose time has passed, in every shard. It returns
// an error only for an empty id. It never blocks on I/O; ctx is not used.
func (m *MemoryRevocations) Revoke(_ context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errEmptyRevocation
	}
	now := unixNano(m.clock())
	until := unixNano(expiresAt.Add(RevocationSlack))
	for i := range m.shards {
		m.shards[i].prune(&m.count, now)
	}
	if until <= now {
		return nil
	}
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.until == nil {
		sh.until = make(map[string]int64)
	}
	old, ok := sh.until[id]
	if ok && old >= until {
		return nil
	}
	sh.until[id] = until
	sh.queue.push(id, until, int64(revocationBucket))
	if !ok {
		m.count.Add(1)
	}
	return nil
}

// IsRevoked reports whether id is revoked. It never fails and does not
// allocate.
func (m *MemoryRevocations) IsRevoked(_ context.Context, id string) (bool, error) {
	if m.count.Load() == 0 {
		return false, nil
	}
	sh := m.shard(id)
	sh.mu.RLock()
	_, ok := sh.until[id]
	sh.mu.RUnlock()
	return ok, nil
}

// len returns the number of entries held, expired ones not yet dropped
// included.
func (m *MemoryRevocations) len() int { return int(m.count.Load()) }

// prune drops the shard's entries whose time is at or before now.
func (sh *revocationShard) prune(count *atomic.Int64, now int64) {
	sh.mu.RLock()
	due := sh.queue.due(now)
	sh.mu.RUnlock()
	if !due {
		return
	}
	sh.mu.Lock()
	sh.queue.expire(now, func(id string) {
		if u, ok := sh.until[id]; ok && u <= now {
			delete(sh.until, id)
			count.Add(-1)
		}
	})
	sh.mu.Unlock()
}

// unixNano returns t in Unix nanoseconds, clamped to the range of an
// int64 (years 1678 to 2262), where [time.Time.UnixNano] is undefined.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// expiryQueue remembers when keys may be forgotten, so that a store can
// drop them in bulk without scanning everything it holds. Keys are grouped
// into buckets by time, each bucket ending at a multiple of the step the
// caller chooses; a bucket is handed back once its end has passed, so a
// key comes back at most one step after its time. Adding a key costs
// amortized constant time (a heap operation only when its bucket is new),
// and each key is handed back once. The zero value is empty. It is not
// safe for concurrent use.
type expiryQueue[K comparable] struct {
	buckets map[int64][]K // bucket end (Unix nanoseconds) → keys
	ends    endHeap       // the ends of the buckets, earliest first
}

// push adds k, which may be forgotten from time at on (Unix nanoseconds),
// to the bucket of width step that holds at.
func (q *expiryQueue[K]) push(k K, at, step int64) {
	end := at
	if r := at % step; r > 0 && at <= math.MaxInt64-step {
		end += step - r
	} else if r > 0 {
		end = math.MaxInt64
	} else if r < 0 {
		end -= r
	}
	if q.buckets == nil {
		q.buckets = make(map[int64][]K)
	}
	ks, ok := q.buckets[end]
	if !ok {
		heap.Push(&q.ends, end)
	}
	q.buckets[end] = append(ks, k)
}

// due reports whether a bucket has ended by now.
func (q *expiryQueue[K]) due(now int64) bool {
	return len(q.ends) > 0 && q.ends[0] <= now
}

// expire removes the buckets that have ended by now and calls f with each
// of their keys. A key pushed several times comes back once per push;
// f decides whether it is really due.
func (q *expiryQueue[K]) expire(now int64, f func(K)) {
	for q.due(now) {
		end := heap.Pop(&q.ends).(int64)
		for _, k := range q.buckets[end] {
			f(k)
		}
		delete(q.buckets, end)
	}
}

// endHeap is a min-heap of bucket ends for [container/heap].
type endHeap []int64

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
