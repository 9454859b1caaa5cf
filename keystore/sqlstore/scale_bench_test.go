package sqlstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"testing"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/benchhttp"
	"github.com/keygate/keygate/keystore"
)

// The benchmarks of this file answer issue 4's performance questions in one
// run each:
//
//	KEYGATE_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test -run '^$' -bench 'CachedMiddleware|LookupScale' -benchmem
//
// BenchmarkCachedMiddleware: keygate's middleware with a SQL store behind a
// keystore.CachedStore against the same middleware over a MemoryStore (the
// target is the cached path within 1.2× of the MemoryStore path), and the
// uncached PostgreSQL path (one round trip per request).
//
// BenchmarkLookupScale: an uncached lookup, and the database's size per
// key, at 10³, 10⁵ and 10⁶ keys.

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

func BenchmarkCachedMiddleware(b *testing.B) {
	ctx := context.Background()
	h, err := keystore.NewHasher([]byte("a 32-byte pepper for benchmarks."))
	if err != nil {
		b.Fatal(err)
	}
	type target struct {
		name  string
		store func(testing.TB) keystore.Store
	}
	cached := func(open func(testing.TB) *Store) func(testing.TB) keystore.Store {
		return func(tb testing.TB) keystore.Store {
			c, err := keystore.NewCachedStore(open(tb))
			if err != nil {
				tb.Fatal(err)
			}
			return c
		}
	}
	for _, t := range []target{
		{"memory", func(testing.TB) keystore.Store { return keystore.NewMemoryStore() }},
		{"sqlite-cached", cached(newSQLiteStore)},
		{"postgres-cached", cached(newPostgresStore)},
		{"postgres-uncached", func(tb testing.TB) keystore.Store { return newPostgresStore(tb) }},
	} {
		b.Run(t.name, func(b *testing.B) {
			m, err := keystore.NewManager(t.store(b), keystore.WithHasher(h))
			if err != nil {
				b.Fatal(err)
			}
			var k keystore.Key
			for range 1001 { // the last one is presented; the others fill the store
				if k, _, err = m.Issue(ctx, keystore.KeySpec{Project: "p", Scopes: []string{"models:read"}}); err != nil {
					b.Fatal(err)
				}
			}
			g, err := auth.New(m)
			if err != nil {
				b.Fatal(err)
			}
			benchhttp.Serve(b, g.Middleware(okHandler), k.Plaintext(), http.StatusOK)
		})
	}
}

// scaleDigest is the digest of the i-th key of a filled table: SHA-256 of
// i as 8 big-endian bytes, which PostgreSQL computes as sha256(int8send(i)).
func scaleDigest(i int) keystore.Digest {
	return keystore.Digest(sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))))
}

// fillKeys inserts n keys numbered 1 to n straight into s's table, in bulk:
// Store.Create's one transaction per key would take an hour at 10⁶ keys.
func fillKeys(tb testing.TB, s *Store, n int) {
	tb.Helper()
	ctx := context.Background()
	const cols = "id, digest, project, hint, scopes, created_at"
	if s.dialect == Postgres {
		if _, err := s.db.ExecContext(ctx, "INSERT INTO keys ("+cols+`)
SELECT 'key_s' || lpad(i::text, 8, '0'), sha256(int8send(i)), 'scale', 'halfred_…abcd', '["models:read"]', 1700000000000000
FROM generate_series(1, $1::bigint) AS i`, n); err != nil {
			tb.Fatal(err)
		}
		if _, err := s.db.ExecContext(ctx, "ANALYZE keys"); err != nil {
			tb.Fatal(err)
		}
		return
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO keys ("+cols+`) VALUES ($1, $2, 'scale', 'halfred_…abcd', '["models:read"]', 1700000000000000)`)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		d := scaleDigest(i)
		if _, err := stmt.ExecContext(ctx, fmt.Sprintf("key_s%08d", i), d[:]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// bytesPerKey is the size of the keys table with its indexes, per key.
func bytesPerKey(tb testing.TB, s *Store, n int) float64 {
	tb.Helper()
	q := "SELECT pg_total_relation_size('keys')"
	if s.dialect != Postgres {
		q = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
	}
	var size int64
	if err := s.db.QueryRowContext(context.Background(), q).Scan(&size); err != nil {
		tb.Fatal(err)
	}
	return float64(size) / float64(n)
}

func BenchmarkLookupScale(b *testing.B) {
	ctx := context.Background()
	for _, db := range []struct {
		name string
		open func(testing.TB) *Store
	}{
		{"sqlite", newSQLiteStore},
		{"postgres", newPostgresStore},
	} {
		for _, n := range []int{1_000, 100_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/keys=%d", db.name, n), func(b *testing.B) {
				s := db.open(b)
				fillKeys(b, s, n)
				perKey := bytesPerKey(b, s, n)
				// Every 7th key, in a stride that walks the whole table.
				var digests []keystore.Digest
				for i := 1; i <= n; i += 7 {
					digests = append(digests, scaleDigest(i))
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
				b.ReportMetric(perKey, "dbB/key")
			})
		}
	}
}
