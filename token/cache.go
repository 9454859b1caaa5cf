package token

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
)

// The verified-token cache.
//
// A token that passed every check is remembered under the SHA-256 of its
// exact bytes, so that the next request with the same token skips the
// base64 and JSON decoding, the key lookup and the signature check. What
// is cached is the outcome of the checks that depend only on the token's
// bytes and the passing of time; the checks that depend on state that
// may change at any moment (the revocation of the jti and the sid, the
// API key behind the token) run on every hit, and so does a lookup of the
// token's kid: if the key source no longer returns the very key that
// verified the signature (a key removed from a remote JWK Set, say), the
// hit becomes a miss and the token is verified in full.
//
// Properties:
//   - Keyed by the digest of the exact bytes: a token that differs in any
//     byte (a non-canonical signature encoding, say) is a miss and is
//     verified in full. The cache holds no token, only digests.
//   - Only tokens that passed verification are inserted, so forged or
//     expired tokens never take a slot, whatever their number.
//   - An entry is never served at or after the token's exp: from then on
//     it is a miss (the full verification then accepts the token within
//     the leeway, as without a cache, without inserting it again), and
//     the eviction hand takes its slot without a second chance.
//   - Bounded: at most the configured number of entries, spread over
//     shards of fixed capacity. A full shard evicts with CLOCK (second
//     chance): every hit sets the entry's reference bit, the eviction
//     hand clears set bits and takes the first entry whose bit is clear.
//     New entries start with a clear bit, so a flood of distinct tokens
//     used once each evicts its own kind, while a token used between
//     two passes of the hand stays.
//   - Hits take a shard's read lock and set the bit atomically (only when
//     it is clear, to keep the cache line clean); inserts take the write
//     lock.

// entry is the outcome of a successful verification: the claims (with
// storage for the dates and a short audience list, so that one allocation
// holds them all), the principal, and what the per-use checks need.
type entry struct {
	claims        Claims
	exp, nbf, iat jwt.NumericDate
	aud           [2]string
	principal     auth.Principal
	expires       int64           // exp in Unix nanoseconds: never served from then on
	sidKey        string          // "sid:" + sid, or ""
	kid           string          // the kid header
	key           VerificationKey // the key that verified the signature
}

// claimsCopy is a Claims with its own storage, as [Verifier.Verify]
// returns from a shared entry.
type claimsCopy struct {
	c             Claims
	exp, nbf, iat jwt.NumericDate
	aud           [2]string
}

// cloneClaims returns a copy of e's claims that shares no dates with e.
func (e *entry) cloneClaims() *Claims {
	b := &claimsCopy{c: e.claims}
	if e.claims.ExpiresAt != nil {
		b.exp = *e.claims.ExpiresAt
		b.c.ExpiresAt = &b.exp
	}
	if e.claims.NotBefore != nil {
		b.nbf = *e.claims.NotBefore
		b.c.NotBefore = &b.nbf
	}
	if e.claims.IssuedAt != nil {
		b.iat = *e.claims.IssuedAt
		b.c.IssuedAt = &b.iat
	}
	if n := len(e.claims.Audience); n <= len(b.aud) {
		copy(b.aud[:], e.claims.Audience)
		if e.claims.Audience != nil {
			b.c.Audience = b.aud[:n:n]
		}
	} else {
		b.c.Audience = append(jwt.ClaimStrings(nil), e.claims.Audience...)
	}
	return &b.c
}

// tokenCache is a bounded map from token digests to entries.
type tokenCache struct {
	shards []cacheShard
	mask   uint64
}

type cacheShard struct {
	mu    sync.RWMutex
	index map[[sha256.Size]byte]int32 // digest → slot
	slots []cacheSlot
	limit int
	hand  int
	_     [56]byte // keep shards on separate cache lines (128 bytes each)
}

type cacheSlot struct {
	key [sha256.Size]byte
	e   *entry
	ref atomic.Uint32
}

// newTokenCache returns a cache of at most capacity entries (capacity > 0).
// Shards hold at least 32 entries each, so that CLOCK has room to work,
// and there are at most 64 of them.
func newTokenCache(capacity int) *tokenCache {
	n := 1
	for n < 64 && capacity/(n*2) >= 32 {
		n *= 2
	}
	c := &tokenCache{shards: make([]cacheShard, n), mask: uint64(n - 1)}
	per, extra := capacity/n, capacity%n
	for i := range c.shards {
		limit := per
		if i < extra {
			limit++
		}
		c.shards[i].limit = limit
		c.shards[i].index = make(map[[sha256.Size]byte]int32)
	}
	return c
}

func (c *tokenCache) shard(key *[sha256.Size]byte) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint64(key[:8])&c.mask]
}

// get returns the entry of key if it is still valid at now (Unix
// nanoseconds), and marks it used; otherwise nil.
func (c *tokenCache) get(key *[sha256.Size]byte, now int64) *entry {
	sh := c.shard(key)
	sh.mu.RLock()
	i, ok := sh.index[*key]
	if !ok {
		sh.mu.RUnlock()
		return nil
	}
	s := &sh.slots[i]
	e := s.e
	if now >= e.expires {
		s.ref.Store(0) // reuse this slot first
		sh.mu.RUnlock()
		return nil
	}
	if s.ref.Load() == 0 {
		s.ref.Store(1)
	}
	sh.mu.RUnlock()
	return e
}

// put inserts e under key, evicting an expired or unreferenced entry if
// the shard is full.
func (c *tokenCache) put(key *[sha256.Size]byte, e *entry, now int64) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, ok := sh.index[*key]; ok {
		sh.slots[i].e = e
		return
	}
	if len(sh.slots) < sh.limit {
		sh.slots = append(sh.slots, cacheSlot{key: *key, e: e})
		sh.index[*key] = int32(len(sh.slots) - 1)
		return
	}
	if sh.limit == 0 {
		return
	}
	// CLOCK: at most one full turn clears every bit, so this ends.
	for {
		s := &sh.slots[sh.hand]
		if s.ref.Load() == 0 || now >= s.e.expires {
			break
		}
		s.ref.Store(0)
		sh.hand = (sh.hand + 1) % len(sh.slots)
	}
	victim := sh.hand
	s := &sh.slots[victim]
	delete(sh.index, s.key)
	s.key, s.e = *key, e
	s.ref.Store(0)
	sh.index[*key] = int32(victim)
	sh.hand = (victim + 1) % len(sh.slots)
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.index)
		sh.mu.RUnlock()
	}
	return n
}
