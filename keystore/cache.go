package keystore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a [CachedStore].
const (
	// DefaultPositiveTTL is how long a [CachedStore] trusts a record it
	// fetched, unless told otherwise. Without an invalidation feed it is
	// the bound on how long a change made outside this CachedStore (by
	// another instance, or directly in the database) can go unseen here;
	// with a healthy feed it is only the fallback for a message lost
	// without the feed noticing. Ten seconds is shorter than the 30 s to
	// 60 s caches of hosted gateways and still turns a hot key's lookups
	// into one store read per ten seconds per instance; services with a
	// feed can raise it.
	DefaultPositiveTTL = 10 * time.Second
	// DefaultNegativeTTL is how long a [CachedStore] remembers that a
	// digest or ID is unknown, so a flood of random keys costs one store
	// read per key per two seconds at most, and a key created elsewhere
	// is seen here within two seconds at worst.
	DefaultNegativeTTL = 2 * time.Second
	// DefaultMaxEntries bounds each of a [CachedStore]'s pools.
	DefaultMaxEntries = 100_000
	// DefaultStaleAfter is how long a [CachedStore] trusts a record while
	// its invalidation feed is down.
	DefaultStaleAfter = 5 * time.Second
)

// CachedStore is a verification cache in front of any [Store]: it keeps the
// records the request path reads ([CachedStore.LookupDigest] by digest, and
// [CachedStore.Get] by ID, which [Manager.CheckKey] uses) so that a key seen
// again costs a map lookup instead of a database round trip. It implements
// [Store], [Toucher], [Disabler] and [UsageWriter].
//
// # What is cached
//
//   - Found records (positive entries), for the positive TTL
//     ([WithPositiveTTL], default [DefaultPositiveTTL]); one entry serves
//     both lookups by digest and by ID.
//   - "Not found" answers (negative entries), by digest and by ID, for the
//     negative TTL ([WithNegativeTTL], default [DefaultNegativeTTL]), so that
//     a flood of random keys cannot hammer the store.
//   - Never errors: a store failure is returned as is (it is not turned into
//     [ErrNotFound]) and the next call goes to the store again.
//
// Concurrent misses for the same digest or ID share one store call
// (singleflight): a thousand requests with the same uncached key make one
// store read. They also share its error, which is not cached. A lookup does
// not join a store call that began before a write through this cache began
// or ended: it could return what the write has already replaced. A caller whose
// context ends stops waiting; if the caller that made the shared call had its
// context cancelled, the others retry with their own.
//
// # Size
//
// The positive pool, the negative pool by digest and the negative pool by
// ID each hold at most MaxEntries entries ([WithMaxEntries], default
// [DefaultMaxEntries]), so memory stays flat under a flood of distinct
// random keys, and a flood of unknown keys, which only fills the negative
// pools, cannot evict the records of valid keys. Eviction is CLOCK (second
// chance) per shard: a hot entry survives a flood of one-off entries.
// Expired entries are dropped when they are read or when a slot is needed;
// the cache starts no goroutines.
//
// # Writes and revocation
//
// Create, Revoke, Replace, SetDisabled and Touch go to the store first and
// then update this cache at once: a key revoked, rotated or disabled through
// this CachedStore fails here on the very next lookup, even one that was
// already waiting for the store when the write happened. Changes made
// elsewhere are learned from an invalidation feed ([CachedStore.Invalidate],
// [CachedStore.InvalidateAll], [CachedStore.SetFeedHealthy]) or by expiry.
// (Every write or invalidation keeps the store reads in flight at that
// moment out of the cache; their callers still get their answers.)
//
// A key revoked through another instance stops working here within:
//
//   - with no feed (the default: a single instance, whose own writes go
//     through this cache): the positive TTL;
//   - while the feed is healthy: the feed's delivery latency (falling back
//     to the positive TTL if a message is lost without the feed noticing);
//   - when the feed is down: StaleAfter ([WithStaleAfter], default
//     [DefaultStaleAfter]): records older than that go to the store.
//
// A key created through another instance is found here within the negative
// TTL at worst. Revocation times, expiry times and grace periods are always
// checked against the clock by the caller ([Manager.Verify]), so a cached
// record never outlives its key's RevokedAt or ExpiresAt.
//
// LastUsedAt in cached records can lag by up to the positive TTL when keys
// are touched through another instance; the [Manager] keeps its own memory
// of its writes, so this costs no extra writes.
//
// # Optional capabilities
//
// Touch, SetDisabled and RecordUsage call the store's [Toucher],
// [Disabler] and [UsageWriter] methods. When the store does not implement
// them, they return an error matching [errors.ErrUnsupported] (a [Manager]
// then records no last-used times).
// List is not cached.
//
// A CachedStore is safe for concurrent use (its locks are sharded) and
// starts no goroutines. Make one with [NewCachedStore]; the zero value is
// not usable.
type CachedStore struct {
	store    Store
	toucher  Toucher
	disabler Disabler

	posTTL     time.Duration
	negTTL     time.Duration
	staleAfter time.Duration
	now        func() time.Time

	// feed is feedNone, feedUp or feedDown.
	feed atomic.Int32
	// gen counts invalidations. A store read records gen before it starts,
	// and its answer is cached only if gen is unchanged when it is
	// inserted: a write that happened during the read invalidated it.
	gen atomic.Uint64
	// writing counts the writes in progress through this CachedStore;
	// nothing read from the store is cached while it is not zero.
	writing atomic.Int64

	pos   pool[Digest, Record]   // found records, by digest
	negD  pool[Digest, struct{}] // unknown digests
	negID pool[string, struct{}] // unknown IDs
	index pool[string, Digest]   // ID → digest of the positive entries
	seed  maphash.Seed

	byDigest flights[Digest]
	byID     flights[string]

	misses, storeCalls, coalesced atomic.Uint64
}

const (
	feedNone int32 = iota
	feedUp
	feedDown
)

// Interface checks.
var (
	_ Store       = (*CachedStore)(nil)
	_ Toucher     = (*CachedStore)(nil)
	_ Disabler    = (*CachedStore)(nil)
	_ UsageWriter = (*CachedStore)(nil)
)

// CacheOption configures a [CachedStore].
type CacheOption func(*CachedStore) error

// WithPositiveTTL sets how long a cached record is trusted without going
// back to the store while the invalidation feed is healthy, or when there
// is no feed. Default: [DefaultPositiveTTL] (10 s). Zero turns positive
// caching off; a negative TTL is an error.
func WithPositiveTTL(d time.Duration) CacheOption {
	return func(c *CachedStore) error {
		if d < 0 {
			return fmt.Errorf("%w: negative positive TTL", ErrInvalidSpec)
		}
		c.posTTL = d
		return nil
	}
}

// WithNegativeTTL sets how long an unknown digest or ID is remembered as
// unknown. Default: [DefaultNegativeTTL] (2 s). Zero turns negative caching
// off; a negative TTL is an error.
func WithNegativeTTL(d time.Duration) CacheOption {
	return func(c *CachedStore) error {
		if d < 0 {
			return fmt.Errorf("%w: negative negative TTL", ErrInvalidSpec)
		}
		c.negTTL = d
		return nil
	}
}

// WithMaxEntries bounds the cache: at most n records, n unknown digests and
// n unknown IDs. Default: [DefaultMaxEntries] (100,000). n must be at least
// 1.
func WithMaxEntries(n int) CacheOption {
	return func(c *CachedStore) error {
		if n < 1 || n > 1<<30 {
			return fmt.Errorf("%w: max entries %d out of range", ErrInvalidSpec, n)
		}
		c.pos.max = n
		return nil
	}
}

// WithStaleAfter sets how long a record is trusted while the invalidation
// feed is down ([CachedStore.SetFeedHealthy](false)): older records are
// read from the store again. Default: [DefaultStaleAfter] (5 s). Zero sends
// every lookup to the store while the feed is down; a negative duration is
// an error. It has no effect above the positive TTL.
func WithStaleAfter(d time.Duration) CacheOption {
	return func(c *CachedStore) error {
		if d < 0 {
			return fmt.Errorf("%w: negative stale-after duration", ErrInvalidSpec)
		}
		c.staleAfter = d
		return nil
	}
}

// WithCacheClock sets the clock the cache reads to age its entries.
// Default: [time.Now].
func WithCacheClock(now func() time.Time) CacheOption {
	return func(c *CachedStore) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidSpec)
		}
		c.now = now
		return nil
	}
}

// WithInvalidationFeed declares that an invalidation feed will report to
// the cache through [CachedStore.SetFeedHealthy], and makes the cache start
// with the feed down: until the feed first reports healthy, records are
// trusted for StaleAfter only. Without this option the cache starts with no
// feed, trusting records for the positive TTL, until the first call to
// SetFeedHealthy.
func WithInvalidationFeed() CacheOption {
	return func(c *CachedStore) error {
		c.feed.Store(feedDown)
		return nil
	}
}

// NewCachedStore returns a [CachedStore] in front of s. It returns an error
// matching [ErrInvalidSpec] if s is nil or an option is invalid.
func NewCachedStore(s Store, opts ...CacheOption) (*CachedStore, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidSpec)
	}
	c := &CachedStore{
		store:      s,
		posTTL:     DefaultPositiveTTL,
		negTTL:     DefaultNegativeTTL,
		staleAfter: DefaultStaleAfter,
		now:        time.Now,
		seed:       maphash.MakeSeed(),
	}
	c.pos.max = DefaultMaxEntries
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	c.toucher, _ = s.(Toucher)
	c.disabler, _ = s.(Disabler)
	n := c.pos.max
	c.pos.init(n)
	c.negD.init(n)
	c.negID.init(n)
	c.index.init(n)
	c.byDigest.init(len(c.pos.shards))
	c.byID.init(len(c.pos.shards))
	return c, nil
}

// Len returns the number of entries in the cache: records, unknown digests
// and unknown IDs. It is at most three times MaxEntries.
func (c *CachedStore) Len() int {
	return c.pos.len() + c.negD.len() + c.negID.len()
}

// CacheStats are a [CachedStore]'s counters since it was made.
type CacheStats struct {
	// Hits counts lookups (by digest or ID) answered with a cached record.
	Hits uint64
	// NegativeHits counts lookups answered "not found" from the cache.
	NegativeHits uint64
	// Misses counts lookups the cache could not answer.
	Misses uint64
	// StoreCalls counts lookups made to the store (LookupDigest and Get);
	// it is lower than Misses when concurrent misses shared a call.
	StoreCalls uint64
	// Coalesced counts misses that waited for another caller's store call
	// instead of making their own.
	Coalesced uint64
	// Evictions counts entries dropped to make room for new ones.
	Evictions uint64
	// Len is the number of entries, as [CachedStore.Len] returns it.
	Len int
}

// Stats returns the cache's counters. It is safe to call concurrently with
// lookups; the counters are read one by one, not as one snapshot.
func (c *CachedStore) Stats() CacheStats {
	pos, negD, negID := c.pos.stats(), c.negD.stats(), c.negID.stats()
	var s CacheStats
	s.Hits = pos.hits
	s.NegativeHits = negD.hits + negID.hits
	s.Evictions = pos.evictions + negD.evictions + negID.evictions
	s.Misses = c.misses.Load()
	s.StoreCalls = c.storeCalls.Load()
	s.Coalesced = c.coalesced.Load()
	s.Len = c.Len()
	return s
}

// digestShard picks a digest's shard. Digests are hashes; their bytes are
// already uniform.
func digestShard(d *Digest) uint64 { return binary.LittleEndian.Uint64(d[8:16]) }

func (c *CachedStore) idShard(id string) uint64 { return maphash.String(c.seed, id) }

// trusted reports whether a record fetched at time at may be used at now.
func (c *CachedStore) trusted(at, now time.Time) bool {
	age := now.Sub(at)
	if age < 0 || age >= c.posTTL {
		return false
	}
	return c.feed.Load() != feedDown || age < c.staleAfter
}

func (c *CachedStore) negTrusted(at, now time.Time) bool {
	age := now.Sub(at)
	return age >= 0 && age < c.negTTL
}

// LookupDigest implements [Lookuper]. A cache hit does not allocate; the
// record shares Scopes and Metadata with the cache and the store and must
// be treated as read-only. Store errors are returned as is and not cached.
func (c *CachedStore) LookupDigest(ctx context.Context, d Digest) (Record, error) {
	now := c.now()
	if r, ok := c.cachedDigest(d, now); ok {
		return r, nil
	}
	if c.negD.has(digestShard(&d), d, now, c.negTrusted) {
		return Record{}, ErrNotFound
	}
	c.misses.Add(1)
	return c.loadDigest(ctx, d)
}

func (c *CachedStore) cachedDigest(d Digest, now time.Time) (Record, bool) {
	sh := c.pos.shard(digestShard(&d))
	sh.mu.RLock()
	if i, ok := sh.idx[d]; ok {
		sl := &sh.slots[i]
		if c.trusted(sl.at, now) {
			r := sl.val
			sl.touch()
			sh.mu.RUnlock()
			sh.hits.Add(1)
			return r, true
		}
	}
	sh.mu.RUnlock()
	return Record{}, false
}

func (c *CachedStore) loadDigest(ctx context.Context, d Digest) (Record, error) {
	check := func() (Record, error, bool) {
		now := c.now()
		if r, ok := c.cachedDigest(d, now); ok {
			return r, nil, true
		}
		if c.negD.has(digestShard(&d), d, now, c.negTrusted) {
			return Record{}, ErrNotFound, true
		}
		return Record{}, nil, false
	}
	load := func(g uint64) (Record, error) {
		c.storeCalls.Add(1)
		r, err := c.store.LookupDigest(ctx, d)
		switch {
		case err == nil:
			if r.Digest == d {
				c.insertRecord(r, g)
			}
		case errors.Is(err, ErrNotFound):
			if c.negTTL > 0 {
				c.negD.insert(digestShard(&d), d, struct{}{}, c.now(), c.unchanged(g), c.negTrusted, nil)
			}
		}
		return r, err
	}
	return c.byDigest.do(ctx, c, digestShard(&d), d, check, load)
}

// Get implements [Store]. A cached record is returned with its own copies
// of Scopes and Metadata. Store errors are returned as is and not cached.
func (c *CachedStore) Get(ctx context.Context, id string) (Record, error) {
	now := c.now()
	h := c.idShard(id)
	if r, ok := c.cachedID(id, h, now); ok {
		return cloneRecord(r), nil
	}
	if c.negID.has(h, id, now, c.negTrusted) {
		return Record{}, errNoSuchID
	}
	c.misses.Add(1)
	check := func() (Record, error, bool) {
		now := c.now()
		if r, ok := c.cachedID(id, h, now); ok {
			return r, nil, true
		}
		if c.negID.has(h, id, now, c.negTrusted) {
			return Record{}, errNoSuchID, true
		}
		return Record{}, nil, false
	}
	load := func(g uint64) (Record, error) {
		c.storeCalls.Add(1)
		r, err := c.store.Get(ctx, id)
		switch {
		case err == nil:
			if r.ID == id && !r.Digest.IsZero() {
				c.insertRecord(r, g)
			}
		case errors.Is(err, ErrNotFound):
			if c.negTTL > 0 {
				c.negID.insert(h, id, struct{}{}, c.now(), c.unchanged(g), c.negTrusted, nil)
			}
		}
		return r, err
	}
	r, err := c.byID.do(ctx, c, h, id, check, load)
	if err != nil {
		return Record{}, err
	}
	return cloneRecord(r), nil
}

func cloneRecord(r Record) Record {
	if r.Scopes != nil {
		r.Scopes = slices.Clone(r.Scopes)
	}
	r.Metadata = maps.Clone(r.Metadata)
	return r
}

// cachedID finds id's record through the index.
func (c *CachedStore) cachedID(id string, h uint64, now time.Time) (Record, bool) {
	d, ok := c.index.get(h, id)
	if !ok {
		return Record{}, false
	}
	r, ok := c.cachedDigest(d, now)
	if !ok || r.ID != id {
		return Record{}, false
	}
	return r, true
}

// insertRecord caches r (fetched from the store after gen was g) under its
// digest, and indexes it by ID, unless an invalidation happened since.
//
// The index entry is written before the generation is checked, under the
// record's shard lock: an invalidation by ID increments gen and then reads
// the index, so either it finds the digest and drops the record, or the
// insertion sees the new generation and gives up.
func (c *CachedStore) insertRecord(r Record, g uint64) {
	if c.posTTL <= 0 {
		return
	}
	h := c.idShard(r.ID)
	c.pos.insert(digestShard(&r.Digest), r.Digest, r, c.now(), c.unchanged(g), c.trusted, &poolHooks[Digest, Record]{
		before: func() { c.index.put(h, r.ID, r.Digest) },
		undo: func() {
			c.unindex(h, r.ID, r.Digest)
		},
		evicted: func(d Digest, old Record) {
			c.unindex(c.idShard(old.ID), old.ID, d)
		},
	})
}

// unindex removes id from the index if it points to d.
func (c *CachedStore) unindex(h uint64, id string, d Digest) {
	c.index.deleteIf(h, id, func(v Digest) bool { return v == d })
}

// unchanged returns the check a store read made at generation g passes
// to be cached: no invalidation since, and no write in progress.
func (c *CachedStore) unchanged(g uint64) func() bool {
	return func() bool { return c.gen.Load() == g && c.writing.Load() == 0 }
}

// beginWrite and endWrite bracket a write to the store. Both drop the
// key's entries: before, so that no reader can be answered from the cache
// with what the write is changing while other readers already see the
// change in the store (Replace must look atomic); after, to drop what was
// read meanwhile. In between, nothing read from the store is cached.
func (c *CachedStore) beginWrite(id string, d Digest) {
	c.writing.Add(1)
	c.invalidate(id, d)
}

func (c *CachedStore) endWrite(id string, d Digest) {
	c.invalidate(id, d)
	c.writing.Add(-1)
}

// invalidate drops what the cache knows about the key with this ID and
// digest; either may be empty.
func (c *CachedStore) invalidate(id string, d Digest) {
	c.gen.Add(1)
	var indexed Digest
	var h uint64
	if id != "" {
		h = c.idShard(id)
		indexed, _ = c.index.get(h, id)
		c.negID.remove(h, id, nil)
	}
	for _, dd := range []Digest{d, indexed} {
		if dd.IsZero() {
			continue
		}
		c.pos.remove(digestShard(&dd), dd, func(old Record) {
			c.unindex(c.idShard(old.ID), old.ID, dd)
		})
		c.negD.remove(digestShard(&dd), dd, nil)
	}
}

// Invalidate drops the cached entries of the key with this ID and digest:
// its record, and any "not found" for either. The invalidation feed calls
// it when another instance revokes, rotates, disables or creates a key.
// Either argument may be empty (the zero Digest); with the ID alone the
// record is found through the cache's index. A lookup already waiting for
// the store when Invalidate is called is not cached.
func (c *CachedStore) Invalidate(id string, d Digest) { c.invalidate(id, d) }

// InvalidateAll drops every entry. The invalidation feed calls it when it
// reconnects, since it may have missed messages while it was away.
func (c *CachedStore) InvalidateAll() {
	c.gen.Add(1)
	// The index first: a load that starts after the generation changed
	// may cache its record and index it in between, and clearing the
	// index after the records would leave that record unindexed, out of
	// reach of an invalidation by ID. An index entry left pointing at
	// nothing is harmless.
	c.index.clear()
	c.pos.clear()
	c.negD.clear()
	c.negID.clear()
}

// SetFeedHealthy reports the invalidation feed's state. While the feed is
// down (false), records older than StaleAfter are read from the store
// again, so a partitioned instance cannot keep honouring a key revoked
// elsewhere. When the feed becomes healthy after being down (or for the
// first time), every entry is dropped as [CachedStore.InvalidateAll] does:
// messages may have been lost meanwhile. The first call switches the cache
// from "no feed" to feed mode for good.
//
// A feed calls SetFeedHealthy(false) as soon as it loses its connection,
// and SetFeedHealthy(true) once it is subscribed again (not before: a
// message published in between would be lost).
func (c *CachedStore) SetFeedHealthy(ok bool) {
	if !ok {
		c.feed.Store(feedDown)
		return
	}
	if c.feed.Load() != feedUp {
		c.InvalidateAll()
		c.feed.Store(feedUp)
	}
}

// Create implements [Store]. It drops any cached "not found" for the new
// record's ID and digest.
func (c *CachedStore) Create(ctx context.Context, r Record) error {
	c.beginWrite(r.ID, r.Digest)
	defer c.endWrite(r.ID, r.Digest)
	return c.store.Create(ctx, r)
}

// List implements [Store]. It is not cached.
func (c *CachedStore) List(ctx context.Context, project string) ([]Record, error) {
	return c.store.List(ctx, project)
}

// Revoke implements [Store]. The key's cached record is dropped, even if
// the store fails (the write may have happened).
func (c *CachedStore) Revoke(ctx context.Context, id string, at time.Time) (r Record, err error) {
	c.beginWrite(id, Digest{})
	defer func() { c.endWrite(id, r.Digest) }()
	return c.store.Revoke(ctx, id, at)
}

// Replace implements [Store]. The old key's record and anything cached for
// the new key are dropped, even if the store fails.
func (c *CachedStore) Replace(ctx context.Context, oldID string, revokeAt time.Time, next Record) error {
	c.beginWrite(oldID, Digest{})
	c.invalidate(next.ID, next.Digest)
	defer func() {
		c.invalidate(next.ID, next.Digest)
		c.endWrite(oldID, Digest{})
	}()
	return c.store.Replace(ctx, oldID, revokeAt, next)
}

// SetDisabled implements [Disabler] when the store does; otherwise it
// returns an error matching [errors.ErrUnsupported]. The key's cached
// record is dropped.
func (c *CachedStore) SetDisabled(ctx context.Context, id string, disabled bool) (r Record, err error) {
	if c.disabler == nil {
		return Record{}, fmt.Errorf("keystore: store %T cannot disable keys: %w", c.store, errors.ErrUnsupported)
	}
	c.beginWrite(id, Digest{})
	defer func() { c.endWrite(id, r.Digest) }()
	return c.disabler.SetDisabled(ctx, id, disabled)
}

// Touch implements [Toucher] when the store does; otherwise it returns an
// error matching [errors.ErrUnsupported]. The cached record's LastUsedAt is
// updated in place; last-used times do not affect verification, so Touch
// does not invalidate anything.
func (c *CachedStore) Touch(ctx context.Context, id string, at time.Time) error {
	if c.toucher == nil {
		return fmt.Errorf("keystore: store %T cannot record last-used times: %w", c.store, errors.ErrUnsupported)
	}
	if err := c.toucher.Touch(ctx, id, at); err != nil {
		return err
	}
	h := c.idShard(id)
	if d, ok := c.index.get(h, id); ok {
		c.pos.update(digestShard(&d), d, func(r *Record) {
			if r.ID == id && at.After(r.LastUsedAt) {
				r.LastUsedAt = at
			}
		})
	}
	return nil
}

// RecordUsage implements [UsageWriter] when the store does; otherwise it
// returns an error matching [errors.ErrUnsupported]. Once the store has
// written the batch, cached records get it applied in place (counts added,
// the later time and its client address kept), as the store applies it,
// so they show this cache's own usage writes at once; usage written by
// other instances is seen within the positive TTL.
//
// Usage fields are for display: they never decide whether a key is valid.
// So a usage write does not hold up the cache (caching and shared store
// calls go on for every key while a batch is written), at a small price:
// a record read from the store while the batch is being written may show
// that batch's counts once too few or once too many, until it expires. If
// the store fails, cached records are left as they are.
func (c *CachedStore) RecordUsage(ctx context.Context, batch []Usage) error {
	w, ok := c.store.(UsageWriter)
	if !ok {
		return fmt.Errorf("keystore: store %T cannot record usage: %w", c.store, errors.ErrUnsupported)
	}
	if err := w.RecordUsage(ctx, batch); err != nil {
		return err
	}
	for _, u := range batch {
		d, ok := c.index.get(c.idShard(u.KeyID), u.KeyID)
		if !ok {
			continue
		}
		c.pos.update(digestShard(&d), d, func(r *Record) {
			if r.ID != u.KeyID || u.Requests < 0 {
				return
			}
			r.UsageCount += u.Requests
			if u.LastUsedAt.IsZero() {
				return
			}
			if u.ClientAddr.IsValid() && !u.LastUsedAt.Before(r.LastUsedAt) {
				r.LastClientAddr = u.ClientAddr
			}
			if u.LastUsedAt.After(r.LastUsedAt) {
				r.LastUsedAt = u.LastUsedAt
			}
		})
	}
	return nil
}

// errStorePanicked is what callers sharing a store call get when the
// caller that made it panicked.
var errStorePanicked = errors.New("keystore: cache: store call panicked")

// flights coalesces concurrent store calls for the same key.
type flights[K comparable] struct {
	shards []flightShard[K]
}

type flightShard[K comparable] struct {
	mu sync.Mutex
	m  map[K]*flight
	_  [40]byte // keep shards on separate cache lines
}

type flight struct {
	done chan struct{}
	gen  uint64 // CachedStore.gen when the call began
	rec  Record
	err  error
	// abandoned: the call failed because its caller's context ended.
	// The callers sharing it retry with their own contexts; a store that
	// times out on its own is not retried once per waiter.
	abandoned bool
}

func (f *flights[K]) init(n int) {
	f.shards = make([]flightShard[K], n)
	for i := range f.shards {
		f.shards[i].m = make(map[K]*flight)
	}
}

// do returns check's answer if it has one, or joins the store call in
// flight for key, or makes it with load. check runs under the flight lock,
// and load caches its answer before its flight ends, so a caller that
// finds no flight finds the answer in the cache.
func (f *flights[K]) do(ctx context.Context, c *CachedStore, h uint64, key K,
	check func() (Record, error, bool), load func(gen uint64) (Record, error)) (Record, error) {
	sh := &f.shards[h&uint64(len(f.shards)-1)]
	for {
		sh.mu.Lock()
		if r, err, ok := check(); ok {
			sh.mu.Unlock()
			return r, err
		}
		if fl := sh.m[key]; fl != nil {
			sh.mu.Unlock()
			if fl.gen != c.gen.Load() || c.writing.Load() != 0 {
				// A write through this cache began or ended since the
				// call in flight read the store: its answer may be older
				// than one this caller's may already have seen (a new
				// key after Replace, say). Ask the store ourselves.
				return load(c.gen.Load())
			}
			c.coalesced.Add(1)
			select {
			case <-fl.done:
			case <-ctx.Done():
				return Record{}, ctx.Err()
			}
			if fl.abandoned && ctx.Err() == nil {
				continue // the caller that made the call gave up; we have not
			}
			return fl.rec, fl.err
		}
		fl := &flight{done: make(chan struct{}), gen: c.gen.Load()}
		sh.m[key] = fl
		sh.mu.Unlock()
		return f.lead(ctx, sh, key, fl, load)
	}
}

func (f *flights[K]) lead(ctx context.Context, sh *flightShard[K], key K, fl *flight, load func(uint64) (Record, error)) (Record, error) {
	finished := false
	defer func() {
		if !finished {
			fl.rec, fl.err = Record{}, errStorePanicked
		}
		sh.mu.Lock()
		delete(sh.m, key)
		sh.mu.Unlock()
		close(fl.done)
	}()
	fl.rec, fl.err = load(fl.gen)
	fl.abandoned = fl.err != nil && ctx.Err() != nil &&
		(errors.Is(fl.err, context.Canceled) || errors.Is(fl.err, context.DeadlineExceeded))
	finished = true
	return fl.rec, fl.err
}

// pool is a bounded, sharded map with CLOCK eviction and per-entry insert
// times.
type pool[K comparable, V any] struct {
	shards []poolShard[K, V]
	max    int
}

type poolStats struct{ hits, evictions uint64 }

type poolShard[K comparable, V any] struct {
	mu    sync.RWMutex
	idx   map[K]int32
	slots []slot[K, V]
	cap   int
	hand  int
	// hits and evictions are per shard so that hits on different shards
	// do not contend on one counter.
	hits      atomic.Uint64
	evictions atomic.Uint64
	_         [32]byte
}

type slot[K comparable, V any] struct {
	key K
	val V
	at  time.Time
	ref uint32 // CLOCK reference bit, set atomically under the read lock
}

func (s *slot[K, V]) touch() {
	if atomic.LoadUint32(&s.ref) == 0 {
		atomic.StoreUint32(&s.ref, 1)
	}
}

// poolHooks let the positive pool keep its ID index in step.
type poolHooks[K comparable, V any] struct {
	before  func()     // under the shard lock, before the generation check
	undo    func()     // under the shard lock, if the insertion is abandoned
	evicted func(K, V) // under the shard lock, for each entry dropped
}

func (p *pool[K, V]) init(n int) {
	p.max = n
	shards := 64
	for shards > 1 && n/shards < 16 {
		shards /= 2
	}
	p.shards = make([]poolShard[K, V], shards)
	for i := range p.shards {
		sh := &p.shards[i]
		sh.idx = make(map[K]int32)
		sh.cap = n / shards
		if i < n%shards {
			sh.cap++
		}
	}
}

func (p *pool[K, V]) shard(h uint64) *poolShard[K, V] {
	return &p.shards[h&uint64(len(p.shards)-1)]
}

func (p *pool[K, V]) len() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.RLock()
		n += len(sh.slots)
		sh.mu.RUnlock()
	}
	return n
}

func (p *pool[K, V]) stats() *poolStats {
	var s poolStats
	for i := range p.shards {
		s.hits += p.shards[i].hits.Load()
		s.evictions += p.shards[i].evictions.Load()
	}
	return &s
}

// has reports whether key is present and fresh by ok.
func (p *pool[K, V]) has(h uint64, key K, now time.Time, ok func(at, now time.Time) bool) bool {
	sh := p.shard(h)
	sh.mu.RLock()
	if i, found := sh.idx[key]; found {
		sl := &sh.slots[i]
		if ok(sl.at, now) {
			sl.touch()
			sh.mu.RUnlock()
			sh.hits.Add(1)
			return true
		}
	}
	sh.mu.RUnlock()
	return false
}

// get returns key's value, whatever its age.
func (p *pool[K, V]) get(h uint64, key K) (V, bool) {
	sh := p.shard(h)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if i, found := sh.idx[key]; found {
		return sh.slots[i].val, true
	}
	var zero V
	return zero, false
}

// put sets key's value with no generation check and no age (the index).
func (p *pool[K, V]) put(h uint64, key K, val V) {
	sh := p.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, found := sh.idx[key]; found {
		sh.slots[i].val = val
		return
	}
	// No bound here: the index holds exactly one entry per record in the
	// positive pool, which is bounded. Evicting an index entry would hide
	// a record from invalidation by ID.
	sh.idx[key] = int32(len(sh.slots))
	sh.slots = append(sh.slots, slot[K, V]{key: key, val: val})
}

// deleteIf removes key if match accepts its value.
func (p *pool[K, V]) deleteIf(h uint64, key K, match func(V) bool) {
	sh := p.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, found := sh.idx[key]; found && match(sh.slots[i].val) {
		sh.removeAt(int(i))
	}
}

// insert adds or replaces key's entry, stamped at, unless unchanged
// reports false (under the shard lock). It evicts with CLOCK when the shard is full, preferring
// entries that are no longer fresh by fresh.
func (p *pool[K, V]) insert(h uint64, key K, val V, at time.Time, unchanged func() bool,
	fresh func(at, now time.Time) bool, hooks *poolHooks[K, V]) {
	sh := p.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if hooks != nil && hooks.before != nil {
		hooks.before()
	}
	if !unchanged() {
		if _, found := sh.idx[key]; !found && hooks != nil && hooks.undo != nil {
			hooks.undo()
		}
		return
	}
	if i, found := sh.idx[key]; found {
		sl := &sh.slots[i]
		sl.val, sl.at = val, at
		return
	}
	if len(sh.slots) >= sh.cap {
		v := sh.victim(at, fresh)
		old := sh.slots[v]
		sh.removeAt(v)
		sh.evictions.Add(1)
		if hooks != nil && hooks.evicted != nil {
			hooks.evicted(old.key, old.val)
		}
	}
	sh.idx[key] = int32(len(sh.slots))
	sh.slots = append(sh.slots, slot[K, V]{key: key, val: val, at: at})
}

// victim picks the slot to evict: the first stale one, or the first whose
// reference bit is clear, clearing bits on the way (CLOCK). It is called
// with a full, non-empty shard, under the write lock.
func (sh *poolShard[K, V]) victim(now time.Time, fresh func(at, now time.Time) bool) int {
	n := len(sh.slots)
	for range 2*n + 1 {
		i := sh.hand % n
		sh.hand = i + 1
		sl := &sh.slots[i]
		if !fresh(sl.at, now) || sl.ref == 0 {
			return i
		}
		sl.ref = 0
	}
	return sh.hand % n
}

// removeAt deletes slot i, moving the last slot into its place. It is
// called under the write lock.
func (sh *poolShard[K, V]) removeAt(i int) {
	last := len(sh.slots) - 1
	delete(sh.idx, sh.slots[i].key)
	if i != last {
		sh.slots[i] = sh.slots[last]
		sh.idx[sh.slots[i].key] = int32(i)
	}
	sh.slots[last] = slot[K, V]{}
	sh.slots = sh.slots[:last]
}

// remove deletes key's entry, calling removed with its value.
func (p *pool[K, V]) remove(h uint64, key K, removed func(V)) {
	sh := p.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, found := sh.idx[key]; found {
		v := sh.slots[i].val
		sh.removeAt(int(i))
		if removed != nil {
			removed(v)
		}
	}
}

// update changes key's value in place.
func (p *pool[K, V]) update(h uint64, key K, fn func(*V)) {
	sh := p.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, found := sh.idx[key]; found {
		fn(&sh.slots[i].val)
	}
}

func (p *pool[K, V]) clear() {
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		clear(sh.idx)
		clear(sh.slots)
		sh.slots = sh.slots[:0]
		sh.hand = 0
		sh.mu.Unlock()
	}
}
