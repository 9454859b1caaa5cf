package keystore_test

import (
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/keygate/keygate/keystore"
)

// The numbers these benchmarks give on the development machine are quoted
// in the Hasher doc comment: run
//
//	go test -run '^$' -bench 'Digest|Bcrypt|Argon2' -benchmem ./keystore/

// BenchmarkDigest measures what every authenticated request pays to hash
// the presented key: plain SHA-256 and HMAC-SHA-256, for a 36-byte key.
func BenchmarkDigest(b *testing.B) {
	key := testVectors[0].key
	for _, bm := range []struct {
		name   string
		pepper []byte
	}{
		{"sha256", nil},
		{"hmac", testPepper},
	} {
		h, err := keystore.NewHasher(bm.pepper)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			var d keystore.Digest
			for b.Loop() {
				d = h.Digest(key)
			}
			_ = d
		})
		b.Run(bm.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var d keystore.Digest
				for pb.Next() {
					d = h.Digest(key)
				}
				_ = d
			})
		})
	}
}

// BenchmarkBcrypt is what a password hash would cost per key at bcrypt's
// DefaultCost (10): Generate when a key is issued, Compare on every request.
func BenchmarkBcrypt(b *testing.B) {
	key := []byte(testVectors[0].key)
	b.Run("Generate-DefaultCost", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bcrypt.GenerateFromPassword(key, bcrypt.DefaultCost); err != nil {
				b.Fatal(err)
			}
		}
	})
	hashed, err := bcrypt.GenerateFromPassword(key, bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Compare-DefaultCost", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := bcrypt.CompareHashAndPassword(hashed, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkArgon2 is what argon2id would cost per request with RFC 9106's
// second recommended parameters (t=3, m=64 MiB, p=4, section 4) and with
// OWASP's Password Storage Cheat Sheet minimum (t=2, m=19 MiB, p=1).
func BenchmarkArgon2(b *testing.B) {
	key := []byte(testVectors[0].key)
	salt := []byte("0123456789abcdef")
	for _, bm := range []struct {
		name    string
		t, m    uint32 // m in KiB
		threads uint8
	}{
		{"IDKey-RFC9106-t3-m64MiB-p4", 3, 64 * 1024, 4},
		{"IDKey-OWASP-t2-m19MiB-p1", 2, 19 * 1024, 1},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = argon2.IDKey(key, salt, bm.t, bm.m, bm.threads, 32)
			}
		})
	}
}
