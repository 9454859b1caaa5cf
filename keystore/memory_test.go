package keystore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	t.Run("NewMemoryStore", func(t *testing.T) {
		storetest.Run(t, func(*testing.T) keystore.Store { return keystore.NewMemoryStore() })
	})
	t.Run("ZeroValue", func(t *testing.T) {
		storetest.Run(t, func(*testing.T) keystore.Store { return new(keystore.MemoryStore) })
	})
	t.Run("Shared", func(t *testing.T) {
		// The suite uses fresh random names, so one store can serve
		// every subtest.
		s := keystore.NewMemoryStore()
		storetest.Run(t, func(*testing.T) keystore.Store { return s })
	})
}

// digest returns a digest made of fill repeated, with its last byte set to
// last: digests with the same fill share their first 31 bytes.
func digest(fill, last byte) keystore.Digest {
	var d keystore.Digest
	for i := range d {
		d[i] = fill
	}
	d[len(d)-1] = last
	return d
}

func record(id string, d keystore.Digest) keystore.Record {
	return keystore.Record{
		ID:        id,
		Project:   "p",
		Name:      "name of " + id,
		Hint:      "halfred_…" + id,
		Digest:    d,
		Scopes:    []string{"models:read"},
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
	}
}

func TestMemoryStoreDigestCollisions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := keystore.NewMemoryStore()

	// All these digests share the first 8 bytes (the index key), and most
	// share 31.
	var recs []keystore.Record
	for i := range 6 {
		d := digest(0xAB, byte(i+1))
		if i == 5 {
			d = digest(0xAB, 0)
			d[8] = 0xCD // differs right after the index key
		}
		recs = append(recs, record(fmt.Sprintf("key_%d", i), d))
	}
	for _, r := range recs {
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create(%s): %v", r.ID, err)
		}
	}
	if got, want := s.Len(), len(recs); got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	for _, r := range recs {
		got, err := s.LookupDigest(ctx, r.Digest)
		if err != nil || got.ID != r.ID || got.Digest != r.Digest {
			t.Errorf("LookupDigest(%s's digest) = %q, %v; want %s", r.ID, got.ID, err, r.ID)
		}
	}

	for _, tc := range []struct {
		name string
		d    keystore.Digest
	}{
		{"same 31 bytes", digest(0xAB, 0xFF)},
		{"same 8 bytes", func() keystore.Digest { d := digest(0xAB, 1); d[20] = 0; return d }()},
		{"same 8 bytes, zero tail", func() keystore.Digest { var d keystore.Digest; copy(d[:8], recs[0].Digest[:8]); return d }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.LookupDigest(ctx, tc.d); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("LookupDigest of a colliding but unknown digest: %v, want ErrNotFound", err)
			}
		})
	}

	// A duplicate is found anywhere in the chain, including its middle.
	dup := record("key_dup", recs[2].Digest)
	if err := s.Create(ctx, dup); !errors.Is(err, keystore.ErrExists) {
		t.Errorf("Create with a digest in the middle of a chain: %v, want ErrExists", err)
	}
	// Replace into the same chain.
	next := record("key_next", digest(0xAB, 0x80))
	if err := s.Replace(ctx, recs[3].ID, recs[3].CreatedAt, next); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if r, err := s.LookupDigest(ctx, recs[3].Digest); err != nil || r.RevokedAt.IsZero() {
		t.Errorf("old key after Replace: %+v, %v; want it revoked", r, err)
	}
	if r, err := s.LookupDigest(ctx, next.Digest); err != nil || r.ID != next.ID {
		t.Errorf("new key after Replace: %q, %v; want %s", r.ID, err, next.ID)
	}
	if got, want := s.Len(), len(recs)+1; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}

func TestMemoryStoreLookupDigestAllocs(t *testing.T) {
	ctx := context.Background()
	s := keystore.NewMemoryStore()
	r := record("key_a", digest(1, 1))
	r.Metadata = map[string]string{"a": "b"}
	r.ExpiresAt = r.CreatedAt.Add(time.Hour)
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, r.ID, r.CreatedAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		d    keystore.Digest
		err  error
	}{
		{"hit", r.Digest, nil},
		{"miss", digest(2, 2), keystore.ErrNotFound},
		{"chain miss", digest(1, 2), keystore.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			allocs := testalloc.Min(100, func() { _, err = s.LookupDigest(ctx, tc.d) })
			if !errors.Is(err, tc.err) {
				t.Fatalf("LookupDigest: %v, want %v", err, tc.err)
			}
			if allocs != 0 {
				t.Errorf("LookupDigest allocates %v times per call, want 0", allocs)
			}
		})
	}
}

func TestMemoryStoreLen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var s keystore.MemoryStore // the zero value is usable
	if n := s.Len(); n != 0 {
		t.Fatalf("zero MemoryStore: Len() = %d, want 0", n)
	}
	steps := []struct {
		name string
		do   func() error
		len  int
	}{
		{"create", func() error { return s.Create(ctx, record("a", digest(1, 1))) }, 1},
		{"create another", func() error { return s.Create(ctx, record("b", digest(2, 2))) }, 2},
		{"duplicate", func() error {
			if err := s.Create(ctx, record("a", digest(3, 3))); !errors.Is(err, keystore.ErrExists) {
				return fmt.Errorf("got %v, want ErrExists", err)
			}
			return nil
		}, 2},
		{"revoke", func() error { _, err := s.Revoke(ctx, "a", time.Now()); return err }, 2},
		{"replace", func() error { return s.Replace(ctx, "b", time.Now(), record("c", digest(3, 3))) }, 3},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if n := s.Len(); n != st.len {
			t.Fatalf("after %s: Len() = %d, want %d", st.name, n, st.len)
		}
	}
}

// TestMemoryStoreTimes checks times outside the compact int64 range, and
// the Unix epoch, which the compact form cannot tell from zero.
func TestMemoryStoreTimes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	zone := time.FixedZone("X", -7*3600)
	times := map[string]time.Time{
		"epoch":          time.Unix(0, 0),
		"year 9999":      time.Date(9999, 12, 31, 23, 59, 59, 999999999, zone),
		"year 1500":      time.Date(1500, 6, 1, 0, 0, 0, 1, time.UTC),
		"year 1":         time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		"nanoseconds":    time.Date(2025, 5, 6, 7, 8, 9, 123456789, zone),
		"before 1970":    time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		"with monotonic": time.Now(),
	}
	i := 0
	for name, tm := range times {
		i++
		t.Run(name, func(t *testing.T) {
			s := keystore.NewMemoryStore()
			r := record("key_"+name, digest(byte(i), 7))
			r.CreatedAt, r.ExpiresAt, r.RevokedAt, r.LastUsedAt = tm, tm, tm, tm
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			got, err := s.LookupDigest(ctx, r.Digest)
			if err != nil {
				t.Fatal(err)
			}
			for field, g := range map[string]time.Time{
				"CreatedAt": got.CreatedAt, "ExpiresAt": got.ExpiresAt,
				"RevokedAt": got.RevokedAt, "LastUsedAt": got.LastUsedAt,
			} {
				if !g.Equal(tm) {
					t.Errorf("%s = %v, want %v", field, g, tm)
				}
				if g.Location() != time.UTC {
					t.Errorf("%s is in %v, want UTC", field, g.Location())
				}
			}

			// Setting them afterwards, from a compact time.
			r2 := record("key2_"+name, digest(byte(i), 8))
			r2.CreatedAt = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			if err := s.Create(ctx, r2); err != nil {
				t.Fatal(err)
			}
			if tm.After(r2.CreatedAt) {
				if err := s.Touch(ctx, r2.ID, tm); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Revoke(ctx, r2.ID, tm); err != nil {
				t.Fatal(err)
			}
			got, err = s.Get(ctx, r2.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !got.RevokedAt.Equal(tm) {
				t.Errorf("RevokedAt after Revoke = %v, want %v", got.RevokedAt, tm)
			}
			if tm.After(r2.CreatedAt) && !got.LastUsedAt.Equal(tm) {
				t.Errorf("LastUsedAt after Touch = %v, want %v", got.LastUsedAt, tm)
			}
		})
	}
}

// TestMemoryStoreListOrder checks List order with wide times and ties.
func TestMemoryStoreListOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := keystore.NewMemoryStore()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	created := []time.Time{
		base, base.Add(time.Second), time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, 0), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), {}, base, base.Add(-time.Second),
	}
	ids := []string{"h", "g", "f", "e", "d", "c", "b", "a"}
	for i, id := range ids {
		r := record(id, digest(byte(i+1), 1))
		r.CreatedAt = created[i]
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range list {
		got = append(got, r.ID)
	}
	want := []string{"c", "d", "e", "a", "b", "h", "g", "f"}
	if !slices.Equal(got, want) {
		t.Errorf("List order = %q, want %q", got, want)
	}
}

func TestMemoryStoreInvalid(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := keystore.NewMemoryStore()
	good := record("key_good", digest(9, 9))
	if err := s.Create(ctx, good); err != nil {
		t.Fatal(err)
	}
	noID := record("", digest(1, 1))
	noDigest := record("key_x", keystore.Digest{})
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"create without ID", func() error { return s.Create(ctx, noID) }},
		{"create without digest", func() error { return s.Create(ctx, noDigest) }},
		{"replace with next without ID", func() error { return s.Replace(ctx, good.ID, time.Now(), noID) }},
		{"replace with next without digest", func() error { return s.Replace(ctx, good.ID, time.Now(), noDigest) }},
		{"replace at zero time", func() error { return s.Replace(ctx, good.ID, time.Time{}, record("key_y", digest(3, 3))) }},
		{"revoke at zero time", func() error { _, err := s.Revoke(ctx, good.ID, time.Time{}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if err == nil {
				t.Fatal("no error")
			}
			for _, sentinel := range []error{keystore.ErrNotFound, keystore.ErrExists, keystore.ErrAlreadyRevoked} {
				if errors.Is(err, sentinel) {
					t.Errorf("error %q matches %v; a caller bug is not a store condition", err, sentinel)
				}
			}
		})
	}
	if n := s.Len(); n != 1 {
		t.Errorf("Len() = %d after rejected calls, want 1", n)
	}
	if r, err := s.Get(ctx, good.ID); err != nil || !r.RevokedAt.IsZero() {
		t.Errorf("Get after rejected calls: %+v, %v; want the record unrevoked", r, err)
	}
}

// TestMemoryStoreSharedScopes checks that records with the same scopes do
// not see each other's changes, even through a careless append to a
// LookupDigest result.
func TestMemoryStoreSharedScopes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := keystore.NewMemoryStore()
	a, b := record("a", digest(1, 1)), record("b", digest(2, 2))
	a.Scopes = []string{"x", "y"}
	b.Scopes = []string{"x", "y"}
	for _, r := range []keystore.Record{a, b} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ra, _ := s.LookupDigest(ctx, a.Digest)
	_ = append(ra.Scopes, "admin")
	rb, _ := s.LookupDigest(ctx, b.Digest)
	_ = append(rb.Scopes, "other")
	for _, r := range []keystore.Record{a, b} {
		got, err := s.Get(ctx, r.ID)
		if err != nil || !slices.Equal(got.Scopes, []string{"x", "y"}) {
			t.Errorf("Get(%s).Scopes = %q, %v; want [x y]", r.ID, got.Scopes, err)
		}
	}

	// Scope lists that differ only in how they split are different.
	c, d := record("c", digest(3, 3)), record("d", digest(4, 4))
	c.Scopes = []string{"ab", "c"}
	d.Scopes = []string{"a", "bc"}
	e := record("e", digest(5, 5))
	e.Scopes = []string{}
	f := record("f", digest(6, 6))
	f.Scopes = nil
	for _, r := range []keystore.Record{c, d, e, f} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []keystore.Record{c, d, e, f} {
		got, err := s.LookupDigest(ctx, r.Digest)
		if err != nil || !slices.Equal(got.Scopes, r.Scopes) || (got.Scopes == nil) != (r.Scopes == nil) {
			t.Errorf("LookupDigest(%s).Scopes = %#v, %v; want %#v", r.ID, got.Scopes, err, r.Scopes)
		}
	}
}

// TestMemoryStoreMetadata checks that Metadata keeps nil and empty
// apart, and that Get copies it.
func TestMemoryStoreMetadata(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := keystore.NewMemoryStore()
	for i, md := range []map[string]string{nil, {}, {"k": "v"}} {
		r := record(fmt.Sprint("m", i), digest(byte(i+1), 1))
		r.Metadata = md
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if (got.Metadata == nil) != (md == nil) || len(got.Metadata) != len(md) {
			t.Errorf("Metadata %#v came back as %#v", md, got.Metadata)
		}
	}
}

func TestMemoryStoreDigestOfKey(t *testing.T) {
	// A realistic flow: the server hashes a key, stores the digest, and
	// later looks up the digest of what a client presents.
	t.Parallel()
	ctx := t.Context()
	s := keystore.NewMemoryStore()
	d := keystore.Digest(sha256.Sum256([]byte("halfred_example")))
	if err := s.Create(ctx, record("key_1", d)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		presented string
		found     bool
	}{{"halfred_example", true}, {"halfred_Example", false}, {"halfred_example ", false}} {
		_, err := s.LookupDigest(ctx, sha256.Sum256([]byte(tc.presented)))
		if found := err == nil; found != tc.found {
			t.Errorf("LookupDigest(sha256(%q)): found %v, want %v (err %v)", tc.presented, found, tc.found, err)
		}
	}
}
