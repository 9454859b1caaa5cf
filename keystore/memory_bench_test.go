package keystore

// The benchmarks are in package keystore so that they share benchRecord
// and bytesPerKey with memory_internal_test.go.

import (
	"context"
	"crypto/rand"
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

// BenchmarkMemoryStoreLookupScale measures a lookup hit as the store grows:
// 10³, 10⁵ and 10⁶ keys, looking up keys spread over the whole store (so
// that, at 10⁶, most lookups miss the CPU caches). Memory per key at the
// same sizes is BenchmarkMemoryStoreMemory.
func BenchmarkMemoryStoreLookupScale(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := NewMemoryStore()
			recs := fill(b, s, n, n)
			// Every 7th key, in a stride that walks the whole store.
			digests := make([]Digest, 0, n/7+1)
			for i := 0; i < n; i += 7 {
				digests = append(digests, recs[i].Digest)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := s.LookupDigest(ctx, digests[i%len(digests)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
