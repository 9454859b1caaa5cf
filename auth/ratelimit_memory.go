package auth

import (
	"context"
	"errors"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxLimiterKeys is how many budgets a [MemoryLimiter] keeps by
// default: about 10 MB at most.
const DefaultMaxLimiterKeys = 100_000

// MemoryLimiter is a [Limiter] that keeps budgets in memory, with the
// generic cell rate algorithm (GCRA): one int64 per budget, the budget's
// theoretical arrival time. It suits a single instance; instances behind a
// load balancer each keep their own budgets, so a client gets the limit
// once per instance (use a shared Limiter, such as a Redis one, for one
// budget across instances).
//
// Memory is bounded: a MemoryLimiter keeps at most a fixed number of
// budgets ([WithLimiterMaxKeys], 100,000 by default), in up to 32 shards
// each with its own lock. When a shard is full it forgets, in one pass,
// the budgets that are full again (their theoretical arrival time is in
// the past, so forgetting them changes nothing) and, when those are fewer
// than about an eighth of the shard, the budgets closest to full (the
// lowest eighth of arrival times in a sample of 32). A flood of distinct
// keys therefore costs a bounded amount of memory, and at worst gives
// keys that had nearly recovered their budget a fresh one early.
//
// Allow and Peek never allocate, except when Allow stores a new budget
// (32 bytes, and its shard's map when it grows). A MemoryLimiter starts no
// goroutine and needs no Close. Create one with [NewMemoryLimiter]; it is
// safe for concurrent use.
type MemoryLimiter struct {
	now    func() time.Time // nil: time.Now
	base   time.Time        // times are kept as nanoseconds since base
	seed   maphash.Seed
	mask   uint64
	shards []limiterShard
	// params caches the GCRA parameters of recently used Limits,
	// indexed by a hash of their fields.
	params [gcraCacheSlots]gcraSlot
}

var (
	_ Limiter  = (*MemoryLimiter)(nil)
	_ Refunder = (*MemoryLimiter)(nil)
)

// gcraBudget is one budget of a limiterShard: a key's budget under one limit
// name. The budgets of a key under other names chain through next, so
// that the shard's map is keyed by the key alone and a lookup hashes one
// string.
type gcraBudget struct {
	name string
	tat  int64 // theoretical arrival time, ns since base
	next *gcraBudget
}

type limiterShard struct {
	mu  sync.Mutex
	m   map[string]*gcraBudget // by key; see gcraBudget
	n   int                    // budgets in m, chained ones included
	cap int
	_   [32]byte // keep shards on separate cache lines
}

// find returns key's budget under name, or nil. The caller holds s.mu.
func (s *limiterShard) find(key, name string) *gcraBudget {
	for b := s.m[key]; b != nil; b = b.next {
		if b.name == name {
			return b
		}
	}
	return nil
}

// gcraSlot caches one Limit's GCRA parameters (see gcraParams), with the
// fields of the Limit they were computed from, without allocating: a
// writer makes seq odd, writes the fields and makes seq even again, and a
// reader trusts what it read only if seq was even and the same before and
// after. Every field is atomic, so readers and writers never race.
type gcraSlot struct {
	seq                     atomic.Uint64 // 0: never written
	requests, period, burst atomic.Int64
	iv, span                atomic.Int64
}

// load returns the parameters in c if they are lim's.
func (c *gcraSlot) load(lim Limit) (iv, span int64, ok bool) {
	seq := c.seq.Load()
	if seq == 0 || seq&1 != 0 ||
		c.requests.Load() != int64(lim.Requests) || c.period.Load() != int64(lim.Period) || c.burst.Load() != int64(lim.Burst) {
		return 0, 0, false
	}
	iv, span = c.iv.Load(), c.span.Load()
	return iv, span, c.seq.Load() == seq
}

// store puts lim's parameters in c, unless another writer is at it.
func (c *gcraSlot) store(lim Limit, iv, span int64) {
	seq := c.seq.Load()
	if seq&1 != 0 || !c.seq.CompareAndSwap(seq, seq+1) {
		return
	}
	c.requests.Store(int64(lim.Requests))
	c.period.Store(int64(lim.Period))
	c.burst.Store(int64(lim.Burst))
	c.iv.Store(iv)
	c.span.Store(span)
	c.seq.Store(seq + 2)
}

// gcraCacheSlots is how many Limits' parameters a MemoryLimiter keeps, so
// that a request does not divide to find its Limit's emission interval.
const gcraCacheSlots = 8

// MemoryLimiterOption configures a [MemoryLimiter] in [NewMemoryLimiter].
type MemoryLimiterOption func(*memoryLimiterConfig)

type memoryLimiterConfig struct {
	now     func() time.Time
	maxKeys int
	err     error
}

// WithLimiterClock sets the clock of a [MemoryLimiter]; the default is
// [time.Now]. now must not be nil, must be safe for concurrent use, and
// should not go backwards (a clock that does makes budgets refill late).
func WithLimiterClock(now func() time.Time) MemoryLimiterOption {
	return func(c *memoryLimiterConfig) {
		if now == nil {
			c.err = errors.Join(c.err, errors.New("auth: WithLimiterClock: nil clock"))
			return
		}
		c.now = now
	}
}

// WithLimiterMaxKeys sets how many budgets a [MemoryLimiter] keeps at
// most; the default is [DefaultMaxLimiterKeys], 100,000. Each takes about
// 70 bytes besides its key (measured at 100,000 keys). n must be positive.
func WithLimiterMaxKeys(n int) MemoryLimiterOption {
	return func(c *memoryLimiterConfig) {
		if n < 1 {
			c.err = errors.Join(c.err, errors.New("auth: WithLimiterMaxKeys: the maximum must be positive"))
			return
		}
		c.maxKeys = n
	}
}

// NewMemoryLimiter returns an empty [MemoryLimiter]. It returns an error if
// an option is invalid.
func NewMemoryLimiter(opts ...MemoryLimiterOption) (*MemoryLimiter, error) {
	c := memoryLimiterConfig{maxKeys: DefaultMaxLimiterKeys}
	for _, o := range opts {
		if o == nil {
			c.err = errors.Join(c.err, errors.New("auth: NewMemoryLimiter: nil option"))
			continue
		}
		o(&c)
	}
	if c.err != nil {
		return nil, c.err
	}
	// 32 shards, fewer for a small limiter so that each holds at least 64
	// budgets and the shards' capacities add up to maxKeys at most.
	n := 32
	for n > 1 && c.maxKeys/n < 64 {
		n /= 2
	}
	l := &MemoryLimiter{
		now:    c.now,
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]limiterShard, n),
	}
	if l.now == nil {
		l.base = time.Now()
	} else {
		l.base = l.now()
	}
	for i := range l.shards {
		l.shards[i].cap = c.maxKeys / n
		if i < c.maxKeys%n {
			l.shards[i].cap++
		}
	}
	return l, nil
}

// clock returns the current time as nanoseconds since l.base. With the
// default clock it uses the monotonic reading, so wall-clock jumps do not
// touch budgets.
func (l *MemoryLimiter) clock() int64 {
	if l.now == nil {
		return int64(time.Since(l.base))
	}
	return int64(l.now().Sub(l.base))
}

func (l *MemoryLimiter) shard(key string) *limiterShard {
	return &l.shards[maphash.String(l.seed, key)&l.mask]
}

// gcraParams returns gcraParams(lim), from l's cache when it holds lim's.
func (l *MemoryLimiter) gcraParams(lim Limit) (iv, span int64) {
	h := uint64(lim.Requests) ^ uint64(lim.Period)>>20 ^ uint64(lim.Burst)<<3
	slot := &l.params[(h^h>>7^h>>17)%gcraCacheSlots]
	if iv, span, ok := slot.load(lim); ok {
		return iv, span
	}
	iv, span = gcraParams(lim)
	slot.store(lim, iv, span)
	return iv, span
}

// Allow spends one request from key's budget under lim if the budget
// allows it; see [Limiter]. The zero Limit always allows, without keeping
// a budget. It never returns an error.
func (l *MemoryLimiter) Allow(_ context.Context, key string, lim Limit) (Decision, error) {
	d := Decision{Limit: lim}
	if lim.IsZero() {
		d.Allowed = true
		return d, nil
	}
	iv, span := l.gcraParams(lim)
	name := lim.PolicyName()
	s := l.shard(key)
	now := l.clock()
	s.mu.Lock()
	b := s.find(key, name) // one lookup: the budget is updated through b
	var tat int64
	if b != nil {
		tat = b.tat
	}
	next := gcra(&d, tat, b != nil, now, iv, span, true)
	if d.Allowed {
		if b == nil {
			s.makeRoom(now)
			b = &gcraBudget{name: name, next: s.m[key]}
			s.m[key] = b
			s.n++
		}
		b.tat = next
	}
	s.mu.Unlock()
	return d, nil
}

// Refund gives back one request of key's budget under lim; see
// [Refunder]. It never returns an error.
func (l *MemoryLimiter) Refund(_ context.Context, key string, lim Limit) error {
	if lim.IsZero() {
		return nil
	}
	iv, _ := l.gcraParams(lim)
	s := l.shard(key)
	s.mu.Lock()
	if b := s.find(key, lim.PolicyName()); b != nil {
		// A theoretical arrival time in the past is a full budget:
		// going further back gives no more.
		b.tat -= iv
	}
	s.mu.Unlock()
	return nil
}

// Peek reports key's budget under lim without spending any; see
// [Limiter]. It never stores a budget and never returns an error.
func (l *MemoryLimiter) Peek(_ context.Context, key string, lim Limit) (Decision, error) {
	if lim.IsZero() {
		return Decision{Allowed: true, Limit: lim}, nil
	}
	s := l.shard(key)
	s.mu.Lock()
	var tat int64
	b := s.find(key, lim.PolicyName())
	if b != nil {
		tat = b.tat
	}
	s.mu.Unlock()
	if b == nil {
		// A full budget, whatever the time: the common case of a
		// failure budget peeked at for a client that never failed.
		return Decision{Allowed: true, Limit: lim, Remaining: lim.MaxBurst()}, nil
	}
	iv, span := l.gcraParams(lim)
	d := Decision{Limit: lim}
	gcra(&d, tat, true, l.clock(), iv, span, false)
	return d, nil
}

// Len returns how many budgets l keeps, including budgets that are full
// again and not yet forgotten. It is for tests and metrics.
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// makeRoom makes room in s for one more budget. The caller holds s.mu.
//
// When the shard is full it takes a sample of 32 arrival times (map order
// is random), and in one pass forgets every budget whose arrival time is
// no later than the sample's lowest eighth, or than now, whichever is
// later: every budget that is full again, and, when those are fewer than
// about an eighth, the budgets closest to full. At least one budget goes
// (the smallest of the sample), so the shard never exceeds its capacity.
func (s *limiterShard) makeRoom(now int64) {
	if s.m == nil {
		s.m = make(map[string]*gcraBudget)
	}
	if s.n < s.cap {
		return
	}
	var sample [32]int64
	n := 0
sampling:
	for _, b := range s.m {
		for ; b != nil; b = b.next {
			sample[n] = b.tat
			if n++; n == len(sample) {
				break sampling
			}
		}
	}
	slices.Sort(sample[:n])
	threshold := max(sample[max(n/8, 1)-1], now)
	for k, first := range s.m {
		kept := first
		var prev *gcraBudget
		for b := first; b != nil; b = b.next {
			if b.tat > threshold {
				prev = b
				continue
			}
			s.n--
			if prev == nil {
				kept = b.next
			} else {
				prev.next = b.next
			}
		}
		switch {
		case kept == nil:
			delete(s.m, k)
		case kept != first:
			s.m[k] = kept
		}
	}
}

// gcraParams returns lim's emission interval and the time a full budget
// spans, MaxBurst intervals, in nanoseconds, saturating instead of
// overflowing.
func gcraParams(lim Limit) (iv, span int64) {
	iv = int64(lim.Interval())
	hi, lo := bits.Mul64(uint64(lim.MaxBurst()), uint64(iv))
	if hi != 0 || lo > 1<<62 {
		return iv, 1 << 62
	}
	return iv, int64(lo)
}

// gcra applies the generic cell rate algorithm to a budget whose
// theoretical arrival time is tat (when found), at time now, for an
// emission interval iv and a full budget spanning span, and fills in d's
// Allowed, Remaining, Reset and RetryAfter, which it expects zero. With
// spend it decides a request and returns the new arrival time to store
// when the request is allowed; without, it only reports. It fills in d
// rather than return a Decision, which would be copied on the way out.
func gcra(d *Decision, tat int64, found bool, now, iv, span int64, spend bool) int64 {
	if !found || tat < now {
		tat = now
	}
	allowAt := tat + iv - span // the earliest time one more request fits
	if now < allowAt {
		d.RetryAfter = time.Duration(allowAt - now)
		d.Reset = time.Duration(tat - now)
		return tat
	}
	d.Allowed = true
	if !spend {
		d.Remaining = remaining(now-(tat-span), iv)
		d.Reset = time.Duration(tat - now)
		return tat
	}
	next := tat + iv
	d.Remaining = remaining(now-allowAt, iv)
	d.Reset = time.Duration(next - now)
	return next
}

// remaining returns how many whole intervals iv fit in room, as an int.
func remaining(room, iv int64) int {
	n := room / iv
	if n > int64(^uint(0)>>1) {
		return int(^uint(0) >> 1)
	}
	return int(n)
}
