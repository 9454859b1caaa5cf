package keystore

// This file is in package keystore, not keystore_test, because it also
// holds the tests that need MemoryStore's internals: forcing ID hash
// collisions, and measuring the heap a key costs.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

const benchBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// benchRecord returns a realistic record: the kind a server creates.
func benchRecord(i int) Record {
	var b [16 + 4 + DigestSize]byte
	rand.Read(b[:])
	id := make([]byte, 0, 20)
	id = append(id, "key_"...)
	for _, c := range b[:16] {
		id = append(id, benchBase62[int(c)%len(benchBase62)])
	}
	tail := make([]byte, 4)
	for j, c := range b[16:20] {
		tail[j] = benchBase62[int(c)%len(benchBase62)]
	}
	return Record{
		ID:        string(id),
		Project:   "default",
		Name:      fmt.Sprintf("key-%06d", i),
		Hint:      "halfred_…" + string(tail),
		Digest:    Digest(b[20:]),
		Scopes:    []string{"models:read", "chat:write"},
		CreatedAt: time.Now(),
	}
}

// fill creates n realistic records in s and returns the first m.
func fill(tb testing.TB, s *MemoryStore, n, m int) []Record {
	tb.Helper()
	ctx := context.Background()
	var kept []Record
	for i := range n {
		r := benchRecord(i)
		if err := s.Create(ctx, r); err != nil {
			tb.Fatal(err)
		}
		if i < m {
			kept = append(kept, r)
		}
	}
	return kept
}

// bytesPerKey returns the heap a store of n realistic keys costs per key.
func bytesPerKey(tb testing.TB, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := NewMemoryStore()
	fill(tb, s, n, 0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.Len() != n {
		tb.Fatalf("Len() = %d, want %d", s.Len(), n)
	}
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

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

func BenchmarkMemoryStoreLookupDigest(b *testing.B) {
	const n = 100_000
	s := NewMemoryStore()
	recs := fill(b, s, n, 1024)
	ctx := context.Background()

	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.LookupDigest(ctx, recs[i%len(recs)].Digest); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		d := benchRecord(0).Digest
		for b.Loop() {
			if _, err := s.LookupDigest(ctx, d); err == nil {
				b.Fatal("found")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.LookupDigest(ctx, recs[i%len(recs)].Digest); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
	b.Run("parallel-with-writes", func(b *testing.B) {
		// One Touch per 64 lookups: the write lock's cost to readers.
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			now := time.Now()
			for pb.Next() {
				r := recs[i%len(recs)]
				if i%64 == 0 {
					if err := s.Touch(ctx, r.ID, now); err != nil {
						b.Fatal(err)
					}
				} else if _, err := s.LookupDigest(ctx, r.Digest); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
}

func BenchmarkMemoryStoreGet(b *testing.B) {
	s := NewMemoryStore()
	recs := fill(b, s, 100_000, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, recs[i%len(recs)].ID); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkMemoryStoreCreate(b *testing.B) {
	ctx := context.Background()
	recs := make([]Record, b.N)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	s := NewMemoryStore()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Create(ctx, recs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryStoreMemory reports the heap a key costs (B/key) in stores
// of 10^3, 10^5 and 10^6 realistic keys; ns/op is the time to fill one.
func BenchmarkMemoryStoreMemory(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			var perKey float64
			for range b.N {
				perKey = bytesPerKey(b, n)
			}
			b.ReportMetric(perKey, "B/key")
		})
	}
}
