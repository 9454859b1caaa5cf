package auth

import (
	"context"
	"errors"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
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
// Allow and Peek never allocate, except when Allow stores a new key (its
// 8-byte budget, and its shard's map when it grows). A MemoryLimiter starts no goroutine and needs no
// Close. Create one with [NewMemoryLimiter]; it is safe for concurrent use.
type MemoryLimiter struct {
	now    func() time.Time // nil: time.Now
	base   time.Time        // times are kept as nanoseconds since base
	seed   maphash.Seed
	mask   uint64
	shards []limiterShard
}

var (
	_ Limiter  = (*MemoryLimiter)(nil)
	_ Refunder = (*MemoryLimiter)(nil)
)

// limiterKey is a budget's map key: the limit's name and the key, kept
// apart without joining them into a new string.
type limiterKey struct{ name, key string }

type limiterShard struct {
	mu  sync.Mutex
	m   map[limiterKey]*int64 // theoretical arrival time, ns since base; a pointer so that Allow looks a key up once
	cap int
	_   [40]byte // keep shards on separate cache lines
}

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
// 100 bytes besides its key. n must be positive.
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

// Allow spends one request from key's budget under lim if the budget
// allows it; see [Limiter]. The zero Limit always allows, without keeping
// a budget. It never returns an error.
func (l *MemoryLimiter) Allow(_ context.Context, key string, lim Limit) (Decision, error) {
	if lim.IsZero() {
		return Decision{Allowed: true, Limit: lim}, nil
	}
	iv, span := gcraParams(lim)
	k := limiterKey{lim.PolicyName(), key}
	s := l.shard(key)
	now := l.clock()
	s.mu.Lock()
	p := s.m[k] // one lookup: the budget is updated through p
	var tat int64
	if p != nil {
		tat = *p
	}
	d, next := gcra(tat, p != nil, now, iv, span, true)
	if d.Allowed {
		if p == nil {
			s.makeRoom(now)
			p = new(int64)
			s.m[k] = p
		}
		*p = next
	}
	s.mu.Unlock()
	d.Limit = lim
	return d, nil
}

// Refund gives back one request of key's budget under lim; see
// [Refunder]. It never returns an error.
func (l *MemoryLimiter) Refund(_ context.Context, key string, lim Limit) error {
	if lim.IsZero() {
		return nil
	}
	iv, _ := gcraParams(lim)
	k := limiterKey{lim.PolicyName(), key}
	s := l.shard(key)
	s.mu.Lock()
	if p := s.m[k]; p != nil {
		// A theoretical arrival time in the past is a full budget:
		// going further back gives no more.
		*p -= iv
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
	k := limiterKey{lim.PolicyName(), key}
	s := l.shard(key)
	s.mu.Lock()
	var tat int64
	p := s.m[k]
	if p != nil {
		tat = *p
	}
	s.mu.Unlock()
	if p == nil {
		// A full budget, whatever the time: the common case of a
		// failure budget peeked at for a client that never failed.
		return Decision{Allowed: true, Limit: lim, Remaining: lim.MaxBurst()}, nil
	}
	iv, span := gcraParams(lim)
	d, _ := gcra(tat, true, l.clock(), iv, span, false)
	d.Limit = lim
	return d, nil
}

// Len returns how many budgets l keeps, including budgets that are full
// again and not yet forgotten. It is for tests and metrics.
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
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
		s.m = make(map[limiterKey]*int64)
	}
	if len(s.m) < s.cap {
		return
	}
	var sample [32]int64
	n := 0
	for _, tat := range s.m {
		sample[n] = *tat
		if n++; n == len(sample) {
			break
		}
	}
	slices.Sort(sample[:n])
	threshold := max(sample[max(n/8, 1)-1], now)
	for k, tat := range s.m {
		if *tat <= threshold {
			delete(s.m, k)
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
// emission interval iv and a full budget spanning span. With spend it
// decides a request and returns the new arrival time to store when the
// request is allowed; without, it only reports.
func gcra(tat int64, found bool, now, iv, span int64, spend bool) (Decision, int64) {
	if !found || tat < now {
		tat = now
	}
	var d Decision
	allowAt := tat + iv - span // the earliest time one more request fits
	if now < allowAt {
		d.RetryAfter = time.Duration(allowAt - now)
		d.Reset = time.Duration(tat - now)
		return d, tat
	}
	d.Allowed = true
	if !spend {
		d.Remaining = remaining(now-(tat-span), iv)
		d.Reset = time.Duration(tat - now)
		return d, tat
	}
	next := tat + iv
	d.Remaining = remaining(now-allowAt, iv)
	d.Reset = time.Duration(next - now)
	return d, next
}

// remaining returns how many whole intervals iv fit in room, as an int.
func remaining(room, iv int64) int {
	n := room / iv
	if n > int64(^uint(0)>>1) {
		return int(^uint(0) >> 1)
	}
	return int(n)
}
