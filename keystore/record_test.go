package keystore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func TestDigestEqual(t *testing.T) {
	t.Parallel()
	var a keystore.Digest
	for i := range a {
		a[i] = byte(i * 7)
	}
	if !a.Equal(a) {
		t.Fatal("a digest is not Equal to itself")
	}
	// A difference in any single bit of any byte is seen.
	for i := range keystore.DigestSize {
		for bit := range 8 {
			b := a
			b[i] ^= 1 << bit
			if a.Equal(b) || b.Equal(a) {
				t.Fatalf("digests differing in byte %d bit %d are Equal", i, bit)
			}
		}
	}
	if !(keystore.Digest{}).IsZero() || a.IsZero() {
		t.Fatal("IsZero is wrong")
	}
	if got := a.String(); len(got) != 64 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Fatalf("String() = %q, want 64 hex digits", got)
	}
}

func TestRecordRevokedExpiredBy(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name             string
		rec              keystore.Record
		revoked, expired bool
	}{
		{"fresh", keystore.Record{}, false, false},
		{"revoked earlier", keystore.Record{RevokedAt: now.Add(-time.Second)}, true, false},
		{"revoked exactly now", keystore.Record{RevokedAt: now}, true, false},
		{"revocation scheduled (grace)", keystore.Record{RevokedAt: now.Add(time.Second)}, false, false},
		{"expired earlier", keystore.Record{ExpiresAt: now.Add(-time.Second)}, false, true},
		{"expires exactly now", keystore.Record{ExpiresAt: now}, false, true},
		{"expires later", keystore.Record{ExpiresAt: now.Add(time.Second)}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.rec.RevokedBy(now); got != tt.revoked {
				t.Errorf("RevokedBy = %v, want %v", got, tt.revoked)
			}
			if got := tt.rec.ExpiredBy(now); got != tt.expired {
				t.Errorf("ExpiredBy = %v, want %v", got, tt.expired)
			}
		})
	}
}
