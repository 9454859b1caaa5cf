package sqlstore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// rsDigest returns a distinct digest for each name.
func rsDigest(name string) keystore.Digest { return sha256.Sum256([]byte("refresh " + name)) }

// rsRecord returns a refresh record of family fam issued at now, expiring
// an hour later.
func rsRecord(name, fam string, now time.Time) token.RefreshRecord {
	return token.RefreshRecord{
		Digest:    rsDigest(name),
		Family:    fam,
		KeyID:     "key_1",
		Project:   "default",
		Scopes:    []string{"chat:write", "models:read"},
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
	}
}

// rsNow is a fixed time with a whole number of microseconds.
var rsNow = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func TestRefreshCreate(t *testing.T) {
	t.Parallel()
	now := rsNow
	noDigest := rsRecord("a", "f", now)
	noDigest.Digest = keystore.Digest{}
	noExpiry := rsRecord("a", "f", now)
	noExpiry.ExpiresAt = time.Time{}
	tests := []struct {
		name    string
		setup   []token.RefreshRecord
		rec     token.RefreshRecord
		wantErr error // nil, a sentinel, or errInvalidRefreshRecord
	}{
		{"new", nil, rsRecord("a", "f", now), nil},
		{"second of a family", []token.RefreshRecord{rsRecord("a", "f", now)}, rsRecord("b", "f", now), nil},
		{"duplicate digest", []token.RefreshRecord{rsRecord("a", "f", now)}, rsRecord("a", "g", now), keystore.ErrExists},
		{"no digest", nil, noDigest, errInvalidRefreshRecord},
		{"no family", nil, rsRecord("a", "", now), errInvalidRefreshRecord},
		{"no expiry", nil, noExpiry, errInvalidRefreshRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dialects(t, func(t *testing.T, s *Store) {
				ctx := t.Context()
				for _, r := range tt.setup {
					if err := s.CreateRefresh(ctx, r); err != nil {
						t.Fatal(err)
					}
				}
				err := s.CreateRefresh(ctx, tt.rec)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("CreateRefresh = %v, want %v", err, tt.wantErr)
				}
				var n int
				if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM refresh_tokens").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if want := len(tt.setup) + map[bool]int{true: 1}[err == nil]; n != want {
					t.Fatalf("store holds %d records, want %d", n, want)
				}
			})
		})
	}
}

func TestRefreshSpend(t *testing.T) {
	t.Parallel()
	now := rsNow
	later := now.Add(time.Minute)
	tests := []struct {
		name      string
		setup     func(t *testing.T, s *Store)
		spend     string
		at        time.Time
		wantErr   error
		wantSpent time.Time
		wantRevok bool
	}{
		{
			name:      "fresh",
			setup:     func(t *testing.T, s *Store) { mustCreateRefresh(t, s, rsRecord("a", "f", now)) },
			spend:     "a",
			at:        later,
			wantSpent: later,
		},
		{
			name:    "unknown",
			setup:   func(t *testing.T, s *Store) { mustCreateRefresh(t, s, rsRecord("a", "f", now)) },
			spend:   "b",
			at:      later,
			wantErr: keystore.ErrNotFound,
		},
		{
			name: "already spent: first time kept",
			setup: func(t *testing.T, s *Store) {
				mustCreateRefresh(t, s, rsRecord("a", "f", now))
				if _, err := s.SpendRefresh(t.Context(), rsDigest("a"), now); err != nil {
					t.Fatal(err)
				}
			},
			spend:     "a",
			at:        later,
			wantErr:   token.ErrRefreshReused,
			wantSpent: now,
		},
		{
			name: "family revoked: spent, reported",
			setup: func(t *testing.T, s *Store) {
				mustCreateRefresh(t, s, rsRecord("a", "f", now))
				mustRevokeFamily(t, s, "f", now)
			},
			spend:     "a",
			at:        later,
			wantSpent: later,
			wantRevok: true,
		},
		{
			name: "record created after its family was revoked",
			setup: func(t *testing.T, s *Store) {
				mustCreateRefresh(t, s, rsRecord("a", "f", now))
				mustRevokeFamily(t, s, "f", now)
				mustCreateRefresh(t, s, rsRecord("b", "f", now))
			},
			spend:     "b",
			at:        later,
			wantSpent: later,
			wantRevok: true,
		},
		{
			name: "other family revoked",
			setup: func(t *testing.T, s *Store) {
				mustCreateRefresh(t, s, rsRecord("a", "f", now))
				mustCreateRefresh(t, s, rsRecord("b", "g", now))
				mustRevokeFamily(t, s, "g", now)
			},
			spend:     "a",
			at:        later,
			wantSpent: later,
		},
		{
			name:      "expired but not forgotten: the caller judges",
			setup:     func(t *testing.T, s *Store) { mustCreateRefresh(t, s, rsRecord("a", "f", now)) },
			spend:     "a",
			at:        now.Add(2 * time.Hour),
			wantSpent: now.Add(2 * time.Hour),
		},
		{
			name: "expired and forgotten by a later create",
			setup: func(t *testing.T, s *Store) {
				mustCreateRefresh(t, s, rsRecord("a", "f", now))
				mustCreateRefresh(t, s, rsRecord("b", "g", now.Add(time.Hour)))
			},
			spend:   "a",
			at:      now.Add(time.Hour),
			wantErr: keystore.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dialects(t, func(t *testing.T, s *Store) {
				ctx := t.Context()
				tt.setup(t, s)
				rec, err := s.SpendRefresh(ctx, rsDigest(tt.spend), tt.at)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Fatalf("SpendRefresh = %v, want %v", err, tt.wantErr)
				}
				if errors.Is(err, keystore.ErrNotFound) {
					return
				}
				if rec.Digest != rsDigest(tt.spend) || rec.KeyID != "key_1" || rec.Project != "default" ||
					!slices.Equal(rec.Scopes, []string{"chat:write", "models:read"}) ||
					!rec.IssuedAt.Equal(now) || !rec.ExpiresAt.Equal(now.Add(time.Hour)) {
					t.Fatalf("record = %+v", rec)
				}
				if !rec.SpentAt.Equal(tt.wantSpent) {
					t.Errorf("SpentAt = %v, want %v", rec.SpentAt, tt.wantSpent)
				}
				if got := !rec.RevokedAt.IsZero(); got != tt.wantRevok {
					t.Errorf("RevokedAt = %v, want revoked %v", rec.RevokedAt, tt.wantRevok)
				}
				// Whatever happened, the token is spent now.
				if _, err := s.SpendRefresh(ctx, rsDigest(tt.spend), tt.at); !errors.Is(err, token.ErrRefreshReused) {
					t.Errorf("second spend = %v, want ErrRefreshReused", err)
				}
			})
		})
	}
}

func TestRefreshRevokeFamily(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		now := rsNow
		for _, r := range []token.RefreshRecord{rsRecord("a", "f", now), rsRecord("b", "f", now), rsRecord("c", "g", now)} {
			mustCreateRefresh(t, s, r)
		}
		for _, st := range []struct {
			name   string
			family string
			at     time.Time
		}{
			{"unknown family", "nope", now},
			{"first revocation", "f", now.Add(2 * time.Second)},
			{"again later: earlier time kept", "f", now.Add(3 * time.Second)},
			{"again earlier: earlier time taken", "f", now.Add(time.Second)},
		} {
			if err := s.RevokeFamily(ctx, st.family, st.at); err != nil {
				t.Fatalf("%s: RevokeFamily = %v", st.name, err)
			}
		}
		for _, c := range []struct {
			family string
			want   bool
		}{{"f", true}, {"g", false}, {"nope", false}} {
			if got, err := s.FamilyRevoked(ctx, c.family); err != nil || got != c.want {
				t.Errorf("FamilyRevoked(%q) = %v, %v; want %v", c.family, got, err, c.want)
			}
		}
		var fams int
		if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM refresh_families").Scan(&fams); err != nil {
			t.Fatal(err)
		}
		if fams != 2 {
			t.Errorf("families = %d, want 2: revoking an unknown family must not create it", fams)
		}
		rec, err := s.SpendRefresh(ctx, rsDigest("b"), now.Add(time.Minute))
		if err != nil || !rec.RevokedAt.Equal(now.Add(time.Second)) {
			t.Fatalf("SpendRefresh = %+v, %v; want RevokedAt %v", rec, err, now.Add(time.Second))
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
	})
}

// TestRefreshConcurrentSpend spends one token from 20 goroutines at once:
// exactly one succeeds, every other sees the reuse.
func TestRefreshConcurrentSpend(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustCreateRefresh(t, s, rsRecord("a", "f", rsNow))
		const n = 20
		var (
			wg         sync.WaitGroup
			start      = make(chan struct{})
			ok, reused atomic.Int64
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := s.SpendRefresh(ctx, rsDigest("a"), rsNow.Add(time.Duration(i)*time.Microsecond))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, token.ErrRefreshReused):
					reused.Add(1)
				default:
					t.Errorf("concurrent SpendRefresh: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || reused.Load() != n-1 {
			t.Errorf("%d succeeded, %d reused; want 1 and %d", ok.Load(), reused.Load(), n-1)
		}
	})
}

func TestRevocations(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		now := rsNow
		clock := now
		rv := s.Revocations().WithClock(func() time.Time { return clock })
		steps := []struct {
			name      string
			jti       string
			expiresAt time.Time
		}{
			{"live token", "t1", now.Add(time.Hour)},
			{"again, earlier expiry: later kept", "t1", now.Add(time.Minute)},
			{"short-lived token", "t2", now.Add(time.Second)},
			{"long expired: not recorded", "t3", now.Add(-time.Hour)},
			{"session", "sid:abc", now.Add(time.Hour)},
		}
		for _, st := range steps {
			if err := rv.Revoke(ctx, st.jti, st.expiresAt); err != nil {
				t.Fatalf("%s: Revoke = %v", st.name, err)
			}
		}
		if err := rv.Revoke(ctx, "", now); err == nil {
			t.Error("Revoke of an empty ID: no error")
		}
		check := func(when string, want map[string]bool) {
			t.Helper()
			for jti, w := range want {
				got, err := rv.IsRevoked(ctx, jti)
				if err != nil || got != w {
					t.Errorf("%s: IsRevoked(%q) = %v, %v; want %v", when, jti, got, err, w)
				}
			}
		}
		check("at once", map[string]bool{"t1": true, "t2": true, "t3": false, "sid:abc": true, "t4": false})

		// Past t2's expiry plus the slack, the next Revoke drops t2 but
		// keeps t1, whose later expiry was kept.
		clock = now.Add(time.Minute + token.RevocationSlack + time.Second)
		if err := rv.Revoke(ctx, "t4", now.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		check("after pruning", map[string]bool{"t1": true, "t2": false, "sid:abc": true, "t4": true})
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

func mustRevokeFamily(t *testing.T, s *Store, fam string, at time.Time) {
	t.Helper()
	if err := s.RevokeFamily(t.Context(), fam, at); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
}
