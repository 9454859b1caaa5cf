package sqlstore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/token/tokentest"
)

// rsDigest returns a distinct digest for each name.
func rsDigest(name string) keystore.Digest { return sha256.Sum256([]byte("refresh " + name)) }

// rsRecord returns a record with only what a store requires: a digest
// for name, family fam, and an expiry an hour after now, when it is
// issued.
func rsRecord(name, fam string, now time.Time) token.RefreshRecord {
	return token.RefreshRecord{Digest: rsDigest(name), Family: fam, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
}

// rsNow is a fixed time with a whole number of microseconds.
var rsNow = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

// The contracts of token.RefreshStore and token.Revocations are checked
// by the tokentest suites; the tests below them are of what only this
// store does: rejecting invalid records, dropping expired rows, and
// reporting a lost database as a back-end error.

func TestSQLiteRefreshConformance(t *testing.T) {
	t.Parallel()
	tokentest.RunRefreshStore(t, func(t *testing.T) token.RefreshStore { return newSQLiteStore(t) })
}

func TestPostgresRefreshConformance(t *testing.T) {
	t.Parallel()
	s := newPostgresStore(t) // one schema, shared by the subtests
	tokentest.RunRefreshStore(t, func(*testing.T) token.RefreshStore { return s })
}

func TestRevocationsConformance(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		tokentest.RunRevocations(t, func(_ *testing.T, now func() time.Time) token.Revocations {
			return s.Revocations().WithClock(now)
		})
	})
}

// TestRefreshCreateInvalid: a record without a digest, a family or an
// expiry is refused with an error that matches no sentinel, and stores
// nothing.
func TestRefreshCreateInvalid(t *testing.T) {
	t.Parallel()
	noDigest := rsRecord("a", "f", rsNow)
	noDigest.Digest = keystore.Digest{}
	noExpiry := rsRecord("a", "f", rsNow)
	noExpiry.ExpiresAt = time.Time{}
	tests := []struct {
		name string
		rec  token.RefreshRecord
	}{
		{"no digest", noDigest},
		{"no family", rsRecord("a", "", rsNow)},
		{"no expiry", noExpiry},
	}
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		for _, tt := range tests {
			err := s.CreateRefresh(ctx, tt.rec)
			if !errors.Is(err, errInvalidRefreshRecord) || errors.Is(err, keystore.ErrExists) || errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("%s: CreateRefresh = %v, want errInvalidRefreshRecord and no sentinel", tt.name, err)
			}
		}
		for _, table := range []string{"refresh_tokens", "refresh_families"} {
			var n int
			if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s holds %d rows after refused records, want 0", table, n)
			}
		}
	})
}

// TestRefreshBounded: expired records and families are dropped by a later
// CreateRefresh; live ones are kept.
func TestRefreshBounded(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		now := rsNow
		for i := range 50 {
			r := rsRecord(fmt.Sprint("old", i), fmt.Sprint("fam", i%5), now)
			mustCreateRefresh(t, s, r)
			if i%2 == 0 {
				if _, err := s.SpendRefresh(ctx, r.Digest, now); err != nil {
					t.Fatal(err)
				}
			}
		}
		live := rsRecord("live", "live", now.Add(time.Hour))
		mustCreateRefresh(t, s, live)
		var records, fams int
		if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM refresh_tokens").Scan(&records); err != nil {
			t.Fatal(err)
		}
		if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM refresh_families").Scan(&fams); err != nil {
			t.Fatal(err)
		}
		if records != 1 || fams != 1 {
			t.Fatalf("after expiry: %d records, %d families; want 1, 1", records, fams)
		}
		if _, err := s.SpendRefresh(ctx, live.Digest, now.Add(time.Hour)); err != nil {
			t.Fatalf("live record lost: %v", err)
		}
		if _, err := s.SpendRefresh(ctx, rsDigest("old1"), now.Add(time.Hour)); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("expired record: %v, want keystore.ErrNotFound", err)
		}
	})
}

func TestTokensLostConnection(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		s.DB().Close()
		if _, err := s.SpendRefresh(ctx, rsDigest("a"), rsNow); err == nil || errors.Is(err, keystore.ErrNotFound) || errors.Is(err, token.ErrRefreshReused) {
			t.Errorf("SpendRefresh on a closed database = %v, want a back-end error", err)
		}
		if _, err := s.FamilyRevoked(ctx, "f"); err == nil {
			t.Error("FamilyRevoked on a closed database: no error")
		}
		if _, err := s.Revocations().IsRevoked(ctx, "t1"); err == nil {
			t.Error("IsRevoked on a closed database: no error, it must never mean \"not revoked\"")
		}
	})
}

func mustCreateRefresh(t *testing.T, s *Store, r token.RefreshRecord) {
	t.Helper()
	if err := s.CreateRefresh(t.Context(), r); err != nil {
		t.Fatalf("CreateRefresh: %v", err)
	}
}
