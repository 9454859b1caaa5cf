package keystore

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/keygate/keygate/auth"
)

// DigestSize is the size of a [Digest] in bytes.
const DigestSize = 32

// Digest is the hash of an API key: the only form of a key a [Store] ever
// sees. It is comparable and can be used as a map key. A Digest is not a
// secret in the sense a key is (a key cannot be recovered from it), but it
// identifies a key, so it is not shown to users either.
type Digest [DigestSize]byte

// IsZero reports whether d is the zero Digest, which no key hashes to.
func (d Digest) IsZero() bool { return d == Digest{} }

// Equal reports whether d and o are the same digest, in constant time: it
// reads every byte of both, whatever their differences.
func (d Digest) Equal(o Digest) bool {
	var diff uint64
	for i := 0; i < DigestSize; i += 8 {
		diff |= binary.LittleEndian.Uint64(d[i:]) ^ binary.LittleEndian.Uint64(o[i:])
	}
	return diff == 0
}

// String returns the digest in hexadecimal.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Record is what a [Store] keeps about one API key. It holds the key's
// digest, never the key.
//
// The zero time in CreatedAt, ExpiresAt, RevokedAt or LastUsedAt means
// "not set". Records returned by [Lookuper.LookupDigest] may share their
// Scopes and Metadata with the store: treat them as read-only.
type Record struct {
	// ID is the key's public identifier, such as key_3kTMd9x0aH2bQe7L. It
	// is random, not secret, and not derived from the key; the API uses it
	// to name a key in URLs and lists.
	ID string
	// Project is the project (tenant, account) the key belongs to.
	Project string
	// Name is a label chosen by the key's owner.
	Name string
	// Hint is a masked form of the key: the prefix and at most the last 4
	// characters, such as halfred_…a1B2.
	Hint string
	// Digest is the hash of the key. List results leave it zero.
	Digest Digest
	// Scopes are the permissions the key carries.
	Scopes []string
	// CreatedAt is when the key was issued.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// RevokedAt is when the key was, or will be, revoked: a rotation with
	// a grace period revokes the old key at a time in the future. Zero
	// means not revoked. Revocation is final.
	RevokedAt time.Time
	// LastUsedAt is when the key was last seen: to within the manager's
	// last-used interval (one minute by default, see
	// [WithLastUsedInterval]), or, with a [UsageRecorder], to within its
	// flush interval. Zero means never.
	LastUsedAt time.Time
	// UsageCount is how many requests the key (and the access tokens
	// derived from it) authenticated, as flushed to the store by every
	// instance's [UsageRecorder]; requests not yet flushed are not
	// counted. Zero without a UsageRecorder.
	UsageCount int64
	// LastClientAddr is the address of the client of the key's latest
	// request whose address was known, as flushed by a [UsageRecorder];
	// the zero Addr (invalid) means unknown. It is what the Guard took as
	// the client's address, so it is only as trustworthy as that.
	LastClientAddr netip.Addr
	// RateLimit is the key's own rate limit, overriding the limit the
	// Guard applies to its method; the zero Limit means "use the
	// method's limit". The [Manager] copies it into
	// [auth.Principal.RateLimit].
	RateLimit auth.Limit
	// Disabled suspends the key: it fails like an unknown key until it is
	// enabled again.
	Disabled bool
	// Metadata holds the owner's annotations.
	Metadata map[string]string
}

// RevokedBy reports whether the record is revoked at time now.
func (r *Record) RevokedBy(now time.Time) bool {
	return !r.RevokedAt.IsZero() && !now.Before(r.RevokedAt)
}

// ExpiredBy reports whether the record has expired at time now.
func (r *Record) ExpiredBy(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// validRateLimit checks a key's rate limit as [KeySpec.RateLimit]
// documents, with an error matching [ErrInvalidSpec].
func validRateLimit(l auth.Limit) error {
	if l == (auth.Limit{}) {
		return nil
	}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%w: rate limit: %w", ErrInvalidSpec, err)
	}
	switch {
	case l.Requests < 0:
		return fmt.Errorf("%w: rate limit: negative Requests", ErrInvalidSpec)
	case l.Requests == 0:
		// Zero requests is "no limit of its own": a name, period or
		// burst with it would be silently ignored.
		return fmt.Errorf("%w: rate limit: a Name, Period or Burst needs Requests", ErrInvalidSpec)
	}
	return nil
}
