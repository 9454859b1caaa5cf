package sqlstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// BenchmarkLookupDigest measures one LookupDigest (one query, one round
// trip) against a table of 1,000 keys, on a SQLite file and on
// PostgreSQL over loopback.
//
//	KEYGATE_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test -run '^$' -bench LookupDigest -benchmem
func BenchmarkLookupDigest(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(testing.TB) *Store
	}{
		{"sqlite", newSQLiteStore},
		{"postgres", newPostgresStore},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.open(b)
			ctx := b.Context()
			const n = 1000
			digests := make([]keystore.Digest, n)
			for i := range n {
				r := testRecord(fmt.Sprintf("key_bench%06d", i), time.Now())
				r.Metadata = map[string]string{"owner": "bench"}
				digests[i] = r.Digest
				if err := s.Create(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := s.LookupDigest(ctx, digests[i%n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIsRevoked measures one Revocations.IsRevoked of a token that is
// not revoked (the common case), against 1,000 revoked IDs.
func BenchmarkIsRevoked(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(testing.TB) *Store
	}{
		{"sqlite", newSQLiteStore},
		{"postgres", newPostgresStore},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rv := bc.open(b).Revocations()
			ctx := b.Context()
			for i := range 1000 {
				if err := rv.Revoke(ctx, fmt.Sprintf("jti_%06d", i), time.Now().Add(time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if revoked, err := rv.IsRevoked(ctx, "jti_live"); err != nil || revoked {
					b.Fatal(revoked, err)
				}
			}
		})
	}
}
