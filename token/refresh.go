package token

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
)

// RefreshRecord is what a [RefreshStore] keeps about one refresh token. It
// holds the token's digest, never the token.
//
// The refresh tokens of one session form a family: the token an API key
// was exchanged for, and each token that replaced it at a refresh. They
// share the Family ID, the key, the scopes and the expiry time.
type RefreshRecord struct {
	// Digest is the hash of the refresh token ([keystore.Hasher]).
	Digest keystore.Digest
	// Family is the session ID, shared by every refresh token of the
	// session and sent as the sid claim of its access tokens.
	Family string
	// KeyID is the ID of the API key the session was exchanged from.
	KeyID string
	// Project is the project of that key.
	Project string
	// Scopes are the scopes of the session's access tokens.
	Scopes []string
	// IssuedAt is when the token was created.
	IssuedAt time.Time
	// ExpiresAt is when the token stops working. Required: a store may
	// forget a record after it.
	ExpiresAt time.Time
	// SpentAt is when the token was exchanged for a new pair; zero means
	// not yet.
	SpentAt time.Time
	// RevokedAt is when the token's family was revoked; zero means not
	// revoked. Stores fill it from the family: it is not set per token.
	RevokedAt time.Time
}

// RefreshStore keeps the records of refresh tokens. It is the interface a
// service implements to keep refresh state in its own database; keygate
// ships [MemoryRefreshStore]. Every method is called concurrently and
// must be safe for that. An error other than the ones documented on a
// method means the back end failed: the [Service] answers 503, and never
// treats it as "no such token".
type RefreshStore interface {
	// CreateRefresh stores a new record. It returns an error matching
	// [keystore.ErrExists] if a record with the same Digest exists.
	CreateRefresh(ctx context.Context, r RefreshRecord) error

	// SpendRefresh atomically marks the record whose Digest is d spent at
	// time at, and returns it (with SpentAt set to at). Of any number of
	// concurrent calls for one digest, exactly one succeeds.
	//
	// If the record was already spent, SpendRefresh changes nothing and
	// returns the record, with its first SpentAt, and an error matching
	// [ErrRefreshReused]. If there is no such record it returns an error
	// matching [keystore.ErrNotFound]; a store may forget a record once
	// its ExpiresAt has passed. It does not judge expiry or revocation:
	// the returned record's ExpiresAt and RevokedAt (the family's
	// revocation time) are for the caller to check.
	SpendRefresh(ctx context.Context, d keystore.Digest, at time.Time) (RefreshRecord, error)

	// RevokeFamily marks every record of the family, and any record later
	// created in it, revoked at time at. It is idempotent: revoking a
	// revoked family keeps the earlier time and is not an error. A family
	// the store does not know (never created, or forgotten after its
	// records expired) is not an error either, and nothing changes. A
	// zero at is an error: revoking nothing must not pass silently.
	RevokeFamily(ctx context.Context, family string, at time.Time) error

	// FamilyRevoked reports whether the family was revoked. A family the
	// store does not know is not revoked.
	FamilyRevoked(ctx context.Context, family string) (bool, error)
}

// refreshBucket is the width of the expiry buckets of
// [MemoryRefreshStore]: a record is forgotten at most this long after it
// could be.
const refreshBucket = time.Minute

// errInvalidRefreshRecord is returned by [MemoryRefreshStore.CreateRefresh]
// for a record no caller should pass: no digest, no family or no expiry.
var errInvalidRefreshRecord = errors.New("token: invalid refresh record: it needs a digest, a family and an expiry time")

// Interface check.
var _ RefreshStore = (*MemoryRefreshStore)(nil)

// MemoryRefreshStore is a [RefreshStore] that keeps records in memory, for
// tests, examples and single-instance services that can afford to lose
// their sessions on restart.
//
// Every method takes constant time (amortized) under one mutex. The store
// has no clock and starts no goroutine: each call that writes first drops
// the records whose ExpiresAt is at or before the time it is given (the
// IssuedAt of CreateRefresh, the at of SpendRefresh and RevokeFamily,
// within a minute), so memory is
// bounded by the records that have not yet expired: the live tokens, and
// the spent ones kept to detect reuse until they would have expired. A
// family is forgotten with its last record.
//
// Records are copied in and out: the caller may change a record it passed
// or got back without touching the store's. Create rejects a record
// without a Digest, a Family or an ExpiresAt with an error matching none
// of the sentinels: that is a caller bug.
//
// The zero value is an empty store ready to use; [NewMemoryRefreshStore]
// returns one too. It is safe for concurrent use and must not be copied
// after first use.
type MemoryRefreshStore struct {
	mu       sync.Mutex
	tokens   map[keystore.Digest]*refreshEntry
	families map[string]*refreshFamily
	queue    expiryQueue[keystore.Digest]
}

type refreshEntry struct {
	rec RefreshRecord // RevokedAt unused: see family
	fam *refreshFamily
}

type refreshFamily struct {
	revokedAt time.Time
	records   int // entries in tokens that point here
}

// NewMemoryRefreshStore returns an empty [MemoryRefreshStore].
func NewMemoryRefreshStore() *MemoryRefreshStore {
	return &MemoryRefreshStore{}
}

// CreateRefresh implements [RefreshStore].
func (s *MemoryRefreshStore) CreateRefresh(_ context.Context, r RefreshRecord) error {
	if r.Digest.IsZero() || r.Family == "" || r.ExpiresAt.IsZero() {
		return errInvalidRefreshRecord
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.IssuedAt.IsZero() {
		s.prune(r.IssuedAt)
	}
	if s.tokens == nil {
		s.tokens = make(map[keystore.Digest]*refreshEntry)
		s.families = make(map[string]*refreshFamily)
	}
	if _, ok := s.tokens[r.Digest]; ok {
		return keystore.ErrExists
	}
	fam := s.families[r.Family]
	if fam == nil {
		fam = &refreshFamily{}
		s.families[r.Family] = fam
	}
	fam.records++
	r.Scopes = slices.Clone(r.Scopes)
	r.RevokedAt = time.Time{}
	s.tokens[r.Digest] = &refreshEntry{rec: r, fam: fam}
	s.queue.push(r.Digest, unixNano(r.ExpiresAt), int64(refreshBucket))
	return nil
}

// SpendRefresh implements [RefreshStore].
func (s *MemoryRefreshStore) SpendRefresh(_ context.Context, d keystore.Digest, at time.Time) (RefreshRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(at)
	e := s.tokens[d]
	if e == nil {
		return RefreshRecord{}, keystore.ErrNotFound
	}
	if !e.rec.SpentAt.IsZero() {
		return e.record(), ErrRefreshReused
	}
	e.rec.SpentAt = at
	return e.record(), nil
}

// RevokeFamily implements [RefreshStore].
func (s *MemoryRefreshStore) RevokeFamily(_ context.Context, family string, at time.Time) error {
	if at.IsZero() {
		return errors.New("token: revoke family: zero revocation time")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(at)
	if f := s.families[family]; f != nil && (f.revokedAt.IsZero() || at.Before(f.revokedAt)) {
		f.revokedAt = at
	}
	return nil
}

// FamilyRevoked implements [RefreshStore].
func (s *MemoryRefreshStore) FamilyRevoked(_ context.Context, family string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.families[family]
	return f != nil && !f.revokedAt.IsZero(), nil
}

// len returns the number of records and of families held.
func (s *MemoryRefreshStore) len() (records, families int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens), len(s.families)
}

// record returns a copy of the entry's record, with its family's
// revocation time.
func (e *refreshEntry) record() RefreshRecord {
	r := e.rec
	r.Scopes = slices.Clone(r.Scopes)
	r.RevokedAt = e.fam.revokedAt
	return r
}

// prune drops the records that expired before now, and the families left
// without records. s.mu must be held.
func (s *MemoryRefreshStore) prune(now time.Time) {
	n := unixNano(now)
	s.queue.expire(n, func(d keystore.Digest) {
		e := s.tokens[d]
		if e == nil || unixNano(e.rec.ExpiresAt) > n {
			return
		}
		delete(s.tokens, d)
		if e.fam.records--; e.fam.records == 0 {
			delete(s.families, e.rec.Family)
		}
	})
}
