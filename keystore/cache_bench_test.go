package keystore_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/benchhttp"
	"github.com/keygate/keygate/keystore"
)

// The cache benchmarks compare, in one run, a CachedStore hit with a
// MemoryStore lookup, and keygate's middleware over a cached MemoryStore
// with the same middleware over the MemoryStore itself (issue 4's target:
// the cached path within 1.2× of the MemoryStore path). Run them with:
//
//	go test -run '^$' -bench 'Cache' -benchmem ./keystore/

// BenchmarkCachedStoreLookupDigest measures LookupDigest: a MemoryStore
// directly, a cache hit, a cached "not found", and a lookup the cache
// must pass on because its TTLs are zero.
func BenchmarkCachedStoreLookupDigest(b *testing.B) {
	ctx := context.Background()
	mem := keystore.NewMemoryStore()
	var known keystore.Record
	for i := range 1001 {
		r := newRecord(time.Now())
		if err := mem.Create(ctx, r); err != nil {
			b.Fatal(err)
		}
		if i == 1000 {
			known = r
		}
	}
	cached := mustCache(b, mem)
	passThrough := mustCache(b, mem, keystore.WithPositiveTTL(0), keystore.WithNegativeTTL(0))
	unknown := randomDigest(b)
	for _, tc := range []struct {
		name    string
		s       keystore.Lookuper
		d       keystore.Digest
		wantErr error
	}{
		{"memory-hit", mem, known.Digest, nil},
		{"cached-hit", cached, known.Digest, nil},
		{"memory-unknown", mem, unknown, keystore.ErrNotFound},
		{"cached-negative-hit", cached, unknown, keystore.ErrNotFound},
		{"uncached-hit", passThrough, known.Digest, nil},
	} {
		if _, err := tc.s.LookupDigest(ctx, tc.d); err != tc.wantErr {
			b.Fatalf("%s: %v", tc.name, err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.s.LookupDigest(ctx, tc.d); err != tc.wantErr {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel-"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tc.s.LookupDigest(ctx, tc.d); err != tc.wantErr {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCachedMiddleware runs keygate's middleware (HMAC hasher, 1,001
// keys) over a MemoryStore and over a CachedStore in front of one, with
// the helpers of middleware_bench_test.go.
func BenchmarkCachedMiddleware(b *testing.B) {
	h := mustHasher(b, benchPepper)
	unknown, _ := keystore.DefaultFormat().Generate()
	type target struct {
		name    string
		handler http.Handler
		valid   string
	}
	var targets []target
	for _, name := range []string{"memory", "cached"} {
		var store keystore.Store = keystore.NewMemoryStore()
		if name == "cached" {
			store = mustCache(b, store)
		}
		m, valid := newBenchManager(b, store, h)
		targets = append(targets, target{name, benchMiddleware(b, m), valid})
	}
	for _, t := range targets {
		b.Run(t.name+"-valid", func(b *testing.B) { benchhttp.Serve(b, t.handler, t.valid, 200) })
		b.Run(t.name+"-unknown", func(b *testing.B) { benchhttp.Serve(b, t.handler, unknown.Plaintext(), 401) })
	}
	for _, t := range targets {
		b.Run("parallel-"+t.name+"-valid", func(b *testing.B) { benchhttp.ServeParallel(b, t.handler, t.valid, 200) })
	}
}

// BenchmarkCachedStoreScale measures a cache hit, and the heap the cache
// holds per entry (B/entry, on top of the store's own memory), with 10³,
// 10⁵ and 10⁶ keys cached (WithMaxEntries set to fit them all). Lookups
// walk the whole cache in a stride, so that at 10⁶ most miss the CPU
// caches. ns/op does not include filling. Run it with:
//
//	go test -run '^$' -bench CachedStoreScale -benchmem ./keystore/
func BenchmarkCachedStoreScale(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			mem := keystore.NewMemoryStore()
			digests := make([]keystore.Digest, n)
			now := time.Now()
			for i := range n {
				r := newRecord(now)
				digests[i] = r.Digest
				if err := mem.Create(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			before := heapInUse()
			// Twice the room needed: entries spread over shards unevenly,
			// and a full shard would evict; and an hour-long TTL, so that
			// no entry expires while 10⁶ keys are being filled.
			c := mustCache(b, mem, keystore.WithMaxEntries(2*n), keystore.WithPositiveTTL(time.Hour))
			for _, d := range digests {
				if _, err := c.LookupDigest(ctx, d); err != nil {
					b.Fatal(err)
				}
			}
			perEntry := float64(heapInUse()-before) / float64(n)
			warm := c.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := c.LookupDigest(ctx, digests[(i*7)%n]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			if s := c.Stats(); s.Misses > warm.Misses || s.Evictions > 0 {
				b.Fatalf("%d misses, %d evictions after warming: the timed loop was not all cache hits",
					s.Misses-warm.Misses, s.Evictions)
			}
			b.ReportMetric(perEntry, "B/entry")
			runtime.KeepAlive(mem)
		})
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
