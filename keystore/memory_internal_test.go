package keystore

// These tests need MemoryStore's internals: forcing ID hash collisions,
// and measuring the heap a key costs with the benchmarks' records.

import (
	"errors"
	"testing"
	"time"
)

func TestMemoryStoreBytesPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 keys")
	}
	const n, limit = 100_000, 300
	got := bytesPerKey(t, n)
	t.Logf("%d keys: %.0f B/key", n, got)
	if got > limit {
		t.Errorf("a stored key costs %.0f bytes of heap, want at most %d", got, limit)
	}
}

func TestMemoryStoreIDCollisions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := NewMemoryStore()
	s.idMask = 0 // every ID has the same index key

	var recs []Record
	for i := range 8 {
		r := benchRecord(i)
		recs = append(recs, r)
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if len(s.byID) != 1 {
		t.Fatalf("ID index has %d keys, want 1: the collision was not forced", len(s.byID))
	}
	for _, r := range recs {
		got, err := s.Get(ctx, r.ID)
		if err != nil || got.ID != r.ID || got.Digest != r.Digest {
			t.Errorf("Get(%s) = %s, %v", r.ID, got.ID, err)
		}
	}
	// Operations by ID reach the right record in the middle of a chain.
	mid := recs[3]
	if _, err := s.Revoke(ctx, mid.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetDisabled(ctx, recs[4].ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, recs[5].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		got, _ := s.LookupDigest(ctx, r.Digest)
		if revoked := !got.RevokedAt.IsZero(); revoked != (i == 3) {
			t.Errorf("record %d: revoked %v", i, revoked)
		}
		if got.Disabled != (i == 4) {
			t.Errorf("record %d: disabled %v", i, got.Disabled)
		}
		if touched := !got.LastUsedAt.IsZero(); touched != (i == 5) {
			t.Errorf("record %d: touched %v", i, touched)
		}
	}
	for _, id := range []string{"key_unknown", recs[0].ID[:len(recs[0].ID)-1], ""} {
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) with colliding IDs: %v, want ErrNotFound", id, err)
		}
	}
	dup := benchRecord(99)
	dup.ID = recs[6].ID
	if err := s.Create(ctx, dup); !errors.Is(err, ErrExists) {
		t.Errorf("Create with an ID in a chain: %v, want ErrExists", err)
	}
	next := benchRecord(100)
	next.ID = recs[7].ID
	if err := s.Replace(ctx, recs[0].ID, time.Now(), next); !errors.Is(err, ErrExists) {
		t.Errorf("Replace with an ID in a chain: %v, want ErrExists", err)
	}
}
