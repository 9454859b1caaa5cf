package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
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

// The RefreshStore contract is checked by tokentest.RunRefreshStore
// (memory_conformance_test.go); the tests below are of what only
// MemoryRefreshStore does.

// TestMemoryRefreshStoreCreateInvalid: a record no caller should pass is
// refused with an error that matches no sentinel, and stores nothing.
func TestMemoryRefreshStoreCreateInvalid(t *testing.T) {
	t.Parallel()
	now := newSvcClock().Now()
	noDigest := rsRecord("a", "f", now)
	noDigest.Digest = keystore.Digest{}
	noExpiry := rsRecord("a", "f", now)
	noExpiry.ExpiresAt = time.Time{}
	tests := []struct {
		name string
		rec  RefreshRecord
	}{
		{"no digest", noDigest},
		{"no family", rsRecord("a", "", now)},
		{"no expiry", noExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := NewMemoryRefreshStore()
			err := s.CreateRefresh(t.Context(), tt.rec)
			if !errors.Is(err, errInvalidRefreshRecord) || errors.Is(err, keystore.ErrExists) || errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("CreateRefresh = %v, want errInvalidRefreshRecord and no sentinel", err)
			}
			if records, fams := s.len(); records != 0 || fams != 0 {
				t.Fatalf("store holds %d records and %d families after a refused record", records, fams)
			}
		})
	}
}

// TestMemoryRefreshStoreCopies: records are copied in and out.
func TestMemoryRefreshStoreCopies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := newSvcClock().Now()
	s := NewMemoryRefreshStore()
	in := rsRecord("a", "f", now)
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
	out.Scopes[0] = "changed again"
	again, err := s.SpendRefresh(ctx, in.Digest, now)
	if !errors.Is(err, ErrRefreshReused) || again.Scopes[0] != "chat:write" {
		t.Fatalf("returned records share Scopes with the store: %q, %v", again.Scopes, err)
	}
}

// TestMemoryRefreshStoreRevokeZeroTime: revoking a family at the zero time
// is a caller bug, refused as the SQL store refuses it, and never a silent
// no-op that would leave the family working.
func TestMemoryRefreshStoreRevokeZeroTime(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := newSvcClock().Now()
	s := NewMemoryRefreshStore()
	if err := s.CreateRefresh(ctx, rsRecord("a", "f", now)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFamily(ctx, "f", time.Time{}); err == nil {
		t.Fatal("RevokeFamily at the zero time: no error")
	}
	if revoked, err := s.FamilyRevoked(ctx, "f"); err != nil || revoked {
		t.Fatalf("FamilyRevoked = %v, %v after a refused revocation", revoked, err)
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
