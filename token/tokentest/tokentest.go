// Package tokentest checks that a [token.RefreshStore] and a
// [token.Revocations] keep the contracts documented on those interfaces.
// Every implementation should pass it: keygate's own, and a user's SQL,
// Redis or other store.
//
//	func TestRefreshStore(t *testing.T) {
//		tokentest.RunRefreshStore(t, func(t *testing.T) token.RefreshStore {
//			return mystore.New(testDB(t))
//		})
//	}
//
//	func TestRevocations(t *testing.T) {
//		tokentest.RunRevocations(t, func(t *testing.T, now func() time.Time) token.Revocations {
//			return mystore.NewRevocations(testDB(t), mystore.WithClock(now))
//		})
//	}
//
// [RunRefreshStore] checks, among other things, that a record round-trips
// with every field; that the first SpendRefresh of a digest wins and every
// later one reports [token.ErrRefreshReused] with the record and its first
// SpentAt; that of concurrent spends exactly one wins; that lookups match
// the whole digest only and "not found" matches [keystore.ErrNotFound];
// that a family revocation is visible at once, reaches records created
// later, keeps the earlier time, and leaves unknown families unknown; and
// that a store forgets nothing before it has expired.
//
// [RunRevocations] checks that a revoked ID is reported at once and
// exactly; that an entry is kept until [token.RevocationSlack] after the
// token's expiry, the later expiry winning, and dropped after that; that
// an empty ID is refused; and that concurrent use is consistent.
//
// Both suites use random digests, family names and token IDs and look only
// at what they created, so a store shared by several subtests, or one that
// already holds records, passes just as well as a fresh one. Run the
// tests with -race.
//
// # Time
//
// Times are compared with [time.Time.Equal], ignoring location and
// monotonic clock reading. A store may keep times to the microsecond only
// (as PostgreSQL does): a time read back is accepted if it equals the time
// written, or that time truncated or rounded to the microsecond. Coarser
// precision fails.
//
// The refresh-store suite passes times from the real clock up to a day
// ahead of it (the records it expects a store to keep expire within a day
// of its start), and the revocations suite moves a clock of its own
// forward by a few hours; see each function for what a store may forget.
// A store that forgets expired entries by those times may drop, in a
// database it shares with other tests, their entries that expire sooner.
package tokentest

import (
	"crypto/rand"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// randID returns a random lower-case name with the given prefix: lower
// case, so that a store comparing names case-insensitively is caught by
// the upper-case variant.
func randID(prefix string) string {
	return prefix + strings.ToLower(rand.Text())
}

// randDigest returns a random digest.
func randDigest() keystore.Digest {
	var d keystore.Digest
	rand.Read(d[:])
	return d
}

// start returns the current time with a nanosecond part that microsecond
// storage must truncate or round, no monotonic reading, in a zone that is
// not UTC, so that a store must keep the instant and not the wall clock.
func start() time.Time {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	return time.Now().Truncate(time.Microsecond).Add(789 * time.Nanosecond).Round(0).In(zone)
}

// sameTime reports whether got is want as a store may keep it: exactly,
// or to the microsecond. Zero is only the same as zero.
func sameTime(got, want time.Time) bool {
	if got.IsZero() || want.IsZero() {
		return got.IsZero() == want.IsZero()
	}
	for _, w := range []time.Time{want, want.Truncate(time.Microsecond), want.Round(time.Microsecond)} {
		if got.Equal(w) {
			return true
		}
	}
	return false
}

// nameVariants returns names a store must not confuse with name: other
// case, a prefix, an extension, a trailing space, SQL wildcards.
func nameVariants(name string) []string {
	cut := name[:len(name)-1]
	return []string{
		strings.ToUpper(name),
		cut,
		name + "x",
		name + " ",
		" " + name,
		cut + "%",
		cut + "_",
		"%",
	}
}
