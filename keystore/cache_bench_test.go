package keystore_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
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
	ctx := context.Background()
	h, err := keystore.NewHasher([]byte("a 32-byte pepper for benchmarks."))
	if err != nil {
		b.Fatal(err)
	}
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
		m, err := keystore.NewManager(store, keystore.WithHasher(h))
		if err != nil {
			b.Fatal(err)
		}
		var k keystore.Key
		for range 1001 {
			if k, _, err = m.Issue(ctx, keystore.KeySpec{Project: "p", Scopes: []string{"models:read"}}); err != nil {
				b.Fatal(err)
			}
		}
		g, err := auth.New(m)
		if err != nil {
			b.Fatal(err)
		}
		targets = append(targets, target{name, g.Middleware(okHandler), k.Plaintext()})
	}
	wr := writers{name: "discard"}
	for _, t := range targets {
		b.Run(t.name+"-valid", func(b *testing.B) { benchServe(b, wr, t.handler, t.valid, 200) })
		b.Run(t.name+"-unknown", func(b *testing.B) { benchServe(b, wr, t.handler, unknown.Plaintext(), 401) })
	}
	for _, t := range targets {
		b.Run("parallel-"+t.name+"-valid", func(b *testing.B) { benchServeParallel(b, wr, t.handler, t.valid, 200) })
	}
}
