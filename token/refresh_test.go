package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// rsDigest returns a distinct digest for each name.
func rsDigest(name string) keystore.Digest { return sha256.Sum256([]byte(name)) }

// rsRecord returns a refresh record of family fam issued at now, expiring
// an hour later.
func rsRecord(name, fam string, now time.Time) RefreshRecord {
	return RefreshRecord{
		Digest:    rsDigest(name),
		Family:    fam,
		KeyID:     "key_1",
		Project:   "default",
		Scopes:    []string{"chat:write", "models:read"},
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
	}
}

func TestMemoryRefreshStoreCreate(t *testing.T) {
	t.Parallel()
	now := newSvcClock().Now()
	tests := []struct {
		name    string
		setup   []RefreshRecord
		rec     RefreshRecord
		wantErr error // nil, a sentinel, or errInvalidRefreshRecord
	}{
		{"new", nil, rsRecord("a", "f", now), nil},
		{"second of a family", []RefreshRecord{rsRecord("a", "f", now)}, rsRecord("b", "f", now), nil},
		{"duplicate digest", []RefreshRecord{rsRecord("a", "f", now)}, rsRecord("a", "g", now), keystore.ErrExists},
		{"no digest", nil, func() RefreshRecord { r := rsRecord("a", "f", now); r.Digest = keystore.Digest{}; return r }(), errInvalidRefreshRecord},
		{"no family", nil, rsRecord("a", "", now), errInvalidRefreshRecord},
		{"no expiry", nil, func() RefreshRecord { r := rsRecord("a", "f", now); r.ExpiresAt = time.Time{}; return r }(), errInvalidRefreshRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := NewMemoryRefreshStore()
			for _, r := range tt.setup {
				if err := s.CreateRefresh(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			err := s.CreateRefresh(ctx, tt.rec)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("CreateRefresh = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, errInvalidRefreshRecord) && (errors.Is(err, keystore.ErrExists) || errors.Is(err, keystore.ErrNotFound)) {
				t.Fatalf("caller bug %v matches a store sentinel", err)
			}
			records, _ := s.len()
			if want := len(tt.setup) + map[bool]int{true: 1}[err == nil]; records != want {
				t.Fatalf("store holds %d records, want %d", records, want)
			}
		})
	}
}

func TestMemoryRefreshStoreSpend(t *testing.T) {
	t.Parallel()
	now := newSvcClock().Now()
	later := now.Add(time.Minute)
	tests := []struct {
		name      string
		setup     func(context.Context, *MemoryRefreshStore)
		spend     string
		at        time.Time
		wantErr   error
		wantSpent time.Time
		wantRevok bool
	}{
		{
			name:      "fresh",
			setup:     func(ctx context.Context, s *MemoryRefreshStore) { _ = s.CreateRefresh(ctx, rsRecord("a", "f", now)) },
			spend:     "a",
			at:        later,
			wantSpent: later,
		},
		{
			name:    "unknown",
			setup:   func(ctx context.Context, s *MemoryRefreshStore) { _ = s.CreateRefresh(ctx, rsRecord("a", "f", now)) },
			spend:   "b",
			at:      later,
			wantErr: keystore.ErrNotFound,
		},
		{
			name: "already spent: first time kept",
			setup: func(ctx context.Context, s *MemoryRefreshStore) {
				_ = s.CreateRefresh(ctx, rsRecord("a", "f", now))
				_, _ = s.SpendRefresh(ctx, rsDigest("a"), now)
			},
			spend:     "a",
			at:        later,
			wantErr:   ErrRefreshReused,
			wantSpent: now,
		},
		{
			name: "family revoked: spent, reported",
			setup: func(ctx context.Context, s *MemoryRefreshStore) {
				_ = s.CreateRefresh(ctx, rsRecord("a", "f", now))
				_ = s.RevokeFamily(ctx, "f", now)
			},
			spend:     "a",
			at:        later,
			wantSpent: later,
			wantRevok: true,
		},
		{
			name: "record created after its family was revoked",
			setup: func(ctx context.Context, s *MemoryRefreshStore) {
				_ = s.CreateRefresh(ctx, rsRecord("a", "f", now))
				_ = s.RevokeFamily(ctx, "f", now)
				_ = s.CreateRefresh(ctx, rsRecord("b", "f", now))
			},
			spend:     "b",
			at:        later,
			wantSpent: later,
			wantRevok: true,
		},
		{
			name: "other family revoked",
			setup: func(ctx context.Context, s *MemoryRefreshStore) {
				_ = s.CreateRefresh(ctx, rsRecord("a", "f", now))
				_ = s.CreateRefresh(ctx, rsRecord("b", "g", now))
				_ = s.RevokeFamily(ctx, "g", now)
			},
			spend:     "a",
			at:        later,
			wantSpent: later,
		},
		{
			name:      "expired but not yet forgotten: the caller judges",
			setup:     func(ctx context.Context, s *MemoryRefreshStore) { _ = s.CreateRefresh(ctx, rsRecord("a", "f", now)) },
			spend:     "a",
			at:        now.Add(time.Hour),
			wantSpent: now.Add(time.Hour),
		},
		{
			name:    "expired and forgotten",
			setup:   func(ctx context.Context, s *MemoryRefreshStore) { _ = s.CreateRefresh(ctx, rsRecord("a", "f", now)) },
			spend:   "a",
			at:      now.Add(time.Hour + refreshBucket),
			wantErr: keystore.ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := NewMemoryRefreshStore()
			tt.setup(ctx, s)
			rec, err := s.SpendRefresh(ctx, rsDigest(tt.spend), tt.at)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("SpendRefresh = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, keystore.ErrNotFound) {
				return
			}
			if rec.Digest != rsDigest(tt.spend) || rec.KeyID != "key_1" || rec.Project != "default" ||
				!slices.Equal(rec.Scopes, []string{"chat:write", "models:read"}) {
				t.Fatalf("record = %+v", rec)
			}
			if !rec.SpentAt.Equal(tt.wantSpent) {
				t.Errorf("SpentAt = %v, want %v", rec.SpentAt, tt.wantSpent)
			}
			if got := !rec.RevokedAt.IsZero(); got != tt.wantRevok {
				t.Errorf("RevokedAt = %v, want revoked %v", rec.RevokedAt, tt.wantRevok)
			}
			// Whatever happened, the token is spent now.
			if _, err := s.SpendRefresh(ctx, rsDigest(tt.spend), tt.at); !errors.Is(err, ErrRefreshReused) {
				t.Errorf("second spend = %v, want ErrRefreshReused", err)
			}
		})
	}
}

func TestMemoryRefreshStoreRevokeFamily(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := newSvcClock().Now()
	s := NewMemoryRefreshStore()
	for _, r := range []RefreshRecord{rsRecord("a", "f", now), rsRecord("b", "f", now), rsRecord("c", "g", now)} {
		if err := s.CreateRefresh(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name   string
		family string
		at     time.Time
	}{
		{"unknown family", "nope", now},
		{"first revocation", "f", now.Add(2 * time.Second)},
		{"again later: earlier time kept", "f", now.Add(3 * time.Second)},
		{"again earlier: earlier time taken", "f", now.Add(time.Second)},
	}
	for _, st := range steps {
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
	if _, fams := s.len(); fams != 2 {
		t.Errorf("families = %d, want 2: revoking an unknown family must not create it", fams)
	}
	rec, err := s.SpendRefresh(ctx, rsDigest("b"), now.Add(time.Minute))
	if err != nil || !rec.RevokedAt.Equal(now.Add(time.Second)) {
		t.Fatalf("SpendRefresh = %+v, %v; want RevokedAt %v", rec, err, now.Add(time.Second))
	}
}

func TestMemoryRefreshStoreCopies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := newSvcClock().Now()
	s := new(MemoryRefreshStore) // the zero value is ready to use
	in := rsRecord("a", "f", now)
	in.RevokedAt = now // ignored: revocation is per family
	if err := s.CreateRefresh(ctx, in); err != nil {
		t.Fatal(err)
	}
	in.Scopes[0] = "changed by the caller"
	out, err := s.SpendRefresh(ctx, in.Digest, now)
	if err != nil {
		t.Fatal(err)
	}
	if out.Scopes[0] != "chat:write" {
		t.Fatalf("the store shares Scopes with the caller's record: %q", out.Scopes)
	}
	if !out.RevokedAt.IsZero() {
		t.Fatalf("RevokedAt = %v from the caller's record; revocation is per family", out.RevokedAt)
	}
	out.Scopes[0] = "changed again"
	again, err := s.SpendRefresh(ctx, in.Digest, now)
	if !errors.Is(err, ErrRefreshReused) || again.Scopes[0] != "chat:write" {
		t.Fatalf("returned records share Scopes with the store: %q, %v", again.Scopes, err)
	}
}

// TestMemoryRefreshStoreBounded checks that expired records, spent or not,
// and their families are dropped by later calls, and live ones kept.
func TestMemoryRefreshStoreBounded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := newSvcClock()
	s := NewMemoryRefreshStore()
	const n = 10_000
	for i := range n {
		r := rsRecord(fmt.Sprint("old", i), fmt.Sprint("fam", i%100), clock.Now())
		if err := s.CreateRefresh(ctx, r); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := s.SpendRefresh(ctx, r.Digest, clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if i%1000 == 0 {
			clock.Advance(time.Second)
		}
	}
	live := rsRecord("live", "live", clock.Now())
	live.ExpiresAt = clock.Now().Add(24 * time.Hour)
	if err := s.CreateRefresh(ctx, live); err != nil {
		t.Fatal(err)
	}
	if records, fams := s.len(); records != n+1 || fams != 101 {
		t.Fatalf("before expiry: %d records, %d families", records, fams)
	}
	clock.Advance(time.Hour + refreshBucket)
	if err := s.RevokeFamily(ctx, "whatever", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if records, fams := s.len(); records != 1 || fams != 1 {
		t.Fatalf("after expiry: %d records, %d families; want 1, 1", records, fams)
	}
	if len(s.queue.buckets) != 1 || len(s.queue.ends) != 1 {
		t.Fatalf("expiry queue holds %d buckets, %d ends; want 1", len(s.queue.buckets), len(s.queue.ends))
	}
	if _, err := s.SpendRefresh(ctx, live.Digest, clock.Now()); err != nil {
		t.Fatalf("live record lost: %v", err)
	}
	if _, err := s.SpendRefresh(ctx, rsDigest("old0"), clock.Now()); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("expired spent record: %v, want ErrNotFound", err)
	}
}

// TestMemoryRefreshStoreConcurrentSpend spends one token from 50
// goroutines at once: exactly one succeeds, every other sees the reuse.
func TestMemoryRefreshStoreConcurrentSpend(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := newSvcClock().Now()
	s := NewMemoryRefreshStore()
	if err := s.CreateRefresh(ctx, rsRecord("a", "f", now)); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var (
		wg              sync.WaitGroup
		start           = make(chan struct{})
		mu              sync.Mutex
		ok, reused, bad int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.SpendRefresh(ctx, rsDigest("a"), now.Add(time.Duration(i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrRefreshReused):
				reused++
			default:
				bad++
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok != 1 || reused != n-1 || bad != 0 {
		t.Fatalf("%d successes, %d reuses, %d other errors; want 1, %d, 0", ok, reused, bad, n-1)
	}
}

// BenchmarkSpendRefresh creates a record and spends it, as each refresh
// does.
func BenchmarkSpendRefresh(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	const n = 1 << 16
	recs := make([]RefreshRecord, n)
	for i := range recs {
		recs[i] = rsRecord(fmt.Sprint(i), fmt.Sprint("f", i), now)
	}
	s := NewMemoryRefreshStore()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			s, i = NewMemoryRefreshStore(), 0
		}
		_ = s.CreateRefresh(ctx, recs[i])
		_, _ = s.SpendRefresh(ctx, recs[i].Digest, now)
		i++
	}
}
