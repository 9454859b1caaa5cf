package keystore

import (
	"context"
	"net/netip"
	"time"
)

// Lookuper is the one method the request path needs: find a key's record by
// its digest.
//
// LookupDigest returns the record whose Digest is d, revoked, expired and
// disabled ones included (the caller decides what they mean), or an error
// matching [ErrNotFound] when there is none. Any other error means the back
// end failed; callers answer 503 and never treat it as "no such key". The
// lookup must be an exact match on the whole digest. The returned record may
// share Scopes and Metadata with the store: the caller does not modify them.
// LookupDigest is called concurrently and must be safe for that.
type Lookuper interface {
	LookupDigest(ctx context.Context, d Digest) (Record, error)
}

// Store keeps API key records. It is the interface a service implements to
// put keys in its own database; keygate ships [MemoryStore] and SQL stores.
// Every implementation should pass storetest.Run. All methods are called
// concurrently and must be safe for that. Errors other than the ones
// documented on a method mean the back end failed.
type Store interface {
	Lookuper

	// Create stores a new record. It returns an error matching [ErrExists]
	// if a record with the same ID or the same Digest exists.
	Create(ctx context.Context, r Record) error

	// Get returns the record with the given ID, with its Digest, or an
	// error matching [ErrNotFound].
	Get(ctx context.Context, id string) (Record, error)

	// List returns the project's records, revoked ones included, oldest
	// first (by CreatedAt, then ID), with Digest left zero. A project with
	// no keys gives an empty slice and a nil error.
	List(ctx context.Context, project string) ([]Record, error)

	// Revoke marks the record revoked at time at and returns it. It is
	// idempotent: revoking a revoked record keeps the earlier of the two
	// times and is not an error. It returns an error matching [ErrNotFound]
	// if there is no such record. A revocation is visible to every
	// following LookupDigest.
	Revoke(ctx context.Context, id string, at time.Time) (Record, error)

	// Replace atomically revokes the record oldID at time revokeAt and
	// creates next. No reader may ever see both keys dead or (when revokeAt
	// is not in the future) both alive. It returns an error matching
	// [ErrNotFound] if oldID does not exist, [ErrAlreadyRevoked] if it is
	// already revoked (RevokedAt set, even in the future), and [ErrExists]
	// if next's ID or Digest exists; on any error nothing changes.
	Replace(ctx context.Context, oldID string, revokeAt time.Time, next Record) error
}

// Toucher is an optional [Store] capability: recording when a key was last
// used. The [Manager] calls it at most once per key per last-used interval.
type Toucher interface {
	// Touch sets the record's LastUsedAt to at, unless it already holds a
	// later time. It returns an error matching [ErrNotFound] if there is
	// no such record.
	Touch(ctx context.Context, id string, at time.Time) error
}

// Disabler is an optional [Store] capability: suspending a key without
// revoking it.
type Disabler interface {
	// SetDisabled sets the record's Disabled flag and returns the record.
	// It is idempotent. It returns an error matching [ErrNotFound] if there
	// is no such record.
	SetDisabled(ctx context.Context, id string, disabled bool) (Record, error)
}

// Usage is one key's use since the last flush: what a [UsageRecorder]
// hands a [UsageWriter].
type Usage struct {
	// KeyID is the key's ID.
	KeyID string
	// Requests is how many requests the key made since the last flush:
	// a delta, added to the stored count. It is never negative.
	Requests int64
	// LastUsedAt is when the latest of those requests was made; zero if
	// unknown.
	LastUsedAt time.Time
	// ClientAddr is the client address of the latest request whose
	// address was known; the zero Addr if none was.
	ClientAddr netip.Addr
}

// UsageWriter is an optional [Store] capability: per-key usage counters
// written in batches, which a [UsageRecorder] flushes to. Stores that share
// one database between several instances get counts that add up across
// them, since every write is an increment.
type UsageWriter interface {
	// RecordUsage applies each [Usage] of batch to the record with its
	// KeyID: it adds Requests to UsageCount; sets LastUsedAt to the later
	// of the stored time and the given one (a zero given time changes
	// nothing); and sets LastClientAddr to ClientAddr when ClientAddr is
	// valid and the given LastUsedAt is not before the stored one, so
	// that LastClientAddr belongs to the latest request. Entries for IDs
	// no record has are skipped, not an error; an entry whose ID appears
	// twice in batch is applied twice, as if the two came in two calls.
	// An empty batch does nothing. An entry with negative Requests is an
	// error, and nothing is applied.
	//
	// The batch should be one transaction, and one round trip where the
	// database allows it: the write cost of usage tracking is then one
	// statement per batch, whatever the request rate. On error, the
	// caller may send the same deltas again; a store that cannot tell
	// whether a failed batch was applied may count it twice. RecordUsage
	// does not retain batch.
	RecordUsage(ctx context.Context, batch []Usage) error
}
