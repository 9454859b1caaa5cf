// Package storetest checks that a [keystore.Store] keeps the contract
// documented on the interface and on [keystore.Toucher],
// [keystore.Disabler] and [keystore.UsageWriter]. Every store should pass it: keygate's own, and a
// user's SQL, Redis or other store.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) keystore.Store {
//			return mystore.New(testDB(t))
//		})
//	}
//
// The suite checks, among other things, that records round-trip with every
// field (Disabled, LastUsedAt, a RevokedAt in the future, RateLimit,
// UsageCount and LastClientAddr included); that
// LookupDigest matches whole digests only and returns revoked, expired and
// disabled records; that "not found" and "already exists" errors match
// [keystore.ErrNotFound] and [keystore.ErrExists] under [errors.Is]; that
// Revoke is idempotent and keeps the earlier time; that Replace is atomic,
// even to concurrent readers, and changes nothing when it fails; that List
// is ordered, includes revoked records and never returns a digest; that
// returned Scopes and Metadata are copies; and that concurrent use leaves
// the store consistent (run it with -race); and that RecordUsage adds
// counts exactly, keeps the latest time and its client address, skips
// unknown keys, and loses no increment under concurrent batches.
//
// The suite uses random IDs, digests and project names, and looks only at
// records it created itself, so a store shared by several subtests, or one
// that already holds records, passes just as well as a fresh one. Nil and
// empty Scopes or Metadata are treated as the same.
//
// # Time precision
//
// Times are compared with [time.Time.Equal], ignoring location and
// monotonic clock reading. A store may keep times to the microsecond only
// (as PostgreSQL and MySQL do): a time read back is accepted if it equals
// the time written, or that time truncated or rounded to the microsecond.
// Coarser precision fails.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// Run runs the conformance suite against stores made by newStore. Each
// subtest calls newStore for its own store, and the subtests run in
// parallel, so newStore must be safe for concurrent use; it should
// register any cleanup with t.Cleanup. Run returns when every subtest has
// finished.
//
// The optional [keystore.Toucher], [keystore.Disabler] and
// [keystore.UsageWriter] methods are tested when the store implements them; otherwise their subtests log that
// they were skipped. Run passes a live context and does not test
// cancellation, which a store may or may not honour.
func Run(t *testing.T, newStore func(t *testing.T) keystore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s keystore.Store)
	}{
		{"LookupDigest", testLookupDigest},
		{"LookupDigestUnusable", testLookupDigestUnusable},
		{"LookupDigestNotFound", testLookupDigestNotFound},
		{"Get", testGet},
		{"GetNotFound", testGetNotFound},
		{"NotFound", testNotFound},
		{"CreateDuplicate", testCreateDuplicate},
		{"Revoke", testRevoke},
		{"Replace", testReplace},
		{"ReplaceGrace", testReplaceGrace},
		{"ReplaceAlreadyRevoked", testReplaceAlreadyRevoked},
		{"ReplaceNextExists", testReplaceNextExists},
		{"ReplaceAtomic", testReplaceAtomic},
		{"List", testList},
		{"ListEmpty", testListEmpty},
		{"Copies", testCopies},
		{"Touch", testTouch},
		{"SetDisabled", testSetDisabled},
		{"RecordUsage", testRecordUsage},
		{"RecordUsageConcurrent", testRecordUsageConcurrent},
		{"Concurrent", testConcurrent},
	}
	// The group makes Run wait for the parallel subtests, so a caller can
	// close its database once Run returns.
	t.Run("storetest", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := newStore(t)
				if s == nil {
					t.Fatal("newStore returned nil")
				}
				tc.fn(t, s)
			})
		}
	})
}

// key is a made-up API key and the record a server would store for it.
type key struct {
	plaintext string
	keystore.Record
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randString returns n random base62 characters.
func randString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i, c := range b {
		b[i] = base62[int(c)%len(base62)]
	}
	return string(b)
}

func newProject() string { return "storetest-" + randString(12) }

// newKey makes a key with a fresh random plaintext, ID and digest, the
// usual fields set, and ExpiresAt, RevokedAt and LastUsedAt zero.
func newKey(project string, created time.Time) key {
	plain := "sttest_" + randString(32)
	return key{
		plaintext: plain,
		Record: keystore.Record{
			ID:        "key_" + randString(16),
			Project:   project,
			Name:      "storetest " + randString(6),
			Hint:      "sttest_…" + plain[len(plain)-4:],
			Digest:    keystore.Digest(sha256.Sum256([]byte(plain))),
			Scopes:    []string{"models:read", "chat:write"},
			CreatedAt: created,
			Metadata:  map[string]string{"owner": "storetest", "ticket": randString(8)},
		},
	}
}

// now returns the current time with a nanosecond part that microsecond
// storage must truncate or round, and no monotonic reading.
func now() time.Time {
	return time.Now().Truncate(time.Microsecond).Add(789 * time.Nanosecond).Round(0)
}

// sameTime reports whether got is want as a store may keep it: exactly,
// or to the microsecond.
func sameTime(got, want time.Time) bool {
	if want.IsZero() || got.IsZero() {
		return want.IsZero() && got.IsZero()
	}
	return got.Equal(want) ||
		got.Equal(want.Truncate(time.Microsecond)) ||
		got.Equal(want.Round(time.Microsecond))
}

// diff lists how got differs from want. Digest must be want's if
// withDigest, zero otherwise. Nil and empty Scopes or Metadata are the
// same.
func diff(got, want keystore.Record, withDigest bool) []string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s is %q, want %q", name, g, w))
		}
	}
	str("ID", got.ID, want.ID)
	str("Project", got.Project, want.Project)
	str("Name", got.Name, want.Name)
	str("Hint", got.Hint, want.Hint)
	switch {
	case withDigest && got.Digest != want.Digest:
		d = append(d, "Digest differs from the digest stored")
	case !withDigest && !got.Digest.IsZero():
		d = append(d, "Digest is set, want zero")
	}
	if (len(got.Scopes) != 0 || len(want.Scopes) != 0) && !slices.Equal(got.Scopes, want.Scopes) {
		d = append(d, fmt.Sprintf("Scopes are %q, want %q", got.Scopes, want.Scopes))
	}
	tm := func(name string, g, w time.Time) {
		if !sameTime(g, w) {
			d = append(d, fmt.Sprintf("%s is %v, want %v", name, g, w))
		}
	}
	tm("CreatedAt", got.CreatedAt, want.CreatedAt)
	tm("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	tm("RevokedAt", got.RevokedAt, want.RevokedAt)
	tm("LastUsedAt", got.LastUsedAt, want.LastUsedAt)
	if got.UsageCount != want.UsageCount {
		d = append(d, fmt.Sprintf("UsageCount is %d, want %d", got.UsageCount, want.UsageCount))
	}
	if got.LastClientAddr != want.LastClientAddr {
		d = append(d, fmt.Sprintf("LastClientAddr is %v, want %v", got.LastClientAddr, want.LastClientAddr))
	}
	if got.RateLimit != want.RateLimit {
		d = append(d, fmt.Sprintf("RateLimit is %+v, want %+v", got.RateLimit, want.RateLimit))
	}
	if got.Disabled != want.Disabled {
		d = append(d, fmt.Sprintf("Disabled is %v, want %v", got.Disabled, want.Disabled))
	}
	if (len(got.Metadata) != 0 || len(want.Metadata) != 0) && !maps.Equal(got.Metadata, want.Metadata) {
		d = append(d, fmt.Sprintf("Metadata is %v, want %v", got.Metadata, want.Metadata))
	}
	return d
}

// check reports how got differs from want, prefixed by what was done.
func check(t *testing.T, what string, got, want keystore.Record, withDigest bool) {
	t.Helper()
	if d := diff(got, want, withDigest); len(d) > 0 {
		t.Errorf("%s: record %s: %s", what, want.ID, strings.Join(d, "; "))
	}
}

func mustCreate(t *testing.T, s keystore.Store, r keystore.Record) {
	t.Helper()
	if err := s.Create(t.Context(), r); err != nil {
		t.Fatalf("Create(%s): %v", r.ID, err)
	}
}

func mustLookup(t *testing.T, s keystore.Store, what string, d keystore.Digest) keystore.Record {
	t.Helper()
	r, err := s.LookupDigest(t.Context(), d)
	if err != nil {
		t.Fatalf("%s: LookupDigest of a stored digest: %v", what, err)
	}
	return r
}

func mustGet(t *testing.T, s keystore.Store, what, id string) keystore.Record {
	t.Helper()
	r, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("%s: Get(%s): %v", what, id, err)
	}
	return r
}

// wantNotFound checks that err reports "not found".
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: got no error, want one matching keystore.ErrNotFound", what)
	case !errors.Is(err, keystore.ErrNotFound):
		t.Errorf("%s: got %v, want an error matching keystore.ErrNotFound (errors.Is); "+
			"other errors mean the back end failed", what, err)
	}
}

// wantAbsent checks that neither r's ID nor its digest is stored.
func wantAbsent(t *testing.T, what string, s keystore.Store, r keystore.Record) {
	t.Helper()
	_, err := s.Get(t.Context(), r.ID)
	wantNotFound(t, what+": Get of the record that must not exist", err)
	_, err = s.LookupDigest(t.Context(), r.Digest)
	wantNotFound(t, what+": LookupDigest of the record that must not exist", err)
}

// wantUnchanged checks that r is stored as is, digest included.
func wantUnchanged(t *testing.T, what string, s keystore.Store, r keystore.Record) {
	t.Helper()
	check(t, what+": Get", mustGet(t, s, what, r.ID), r, true)
	check(t, what+": LookupDigest", mustLookup(t, s, what, r.Digest), r, true)
}

func testLookupDigest(t *testing.T, s keystore.Store) {
	p := newProject()
	t0 := now()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)

	full := newKey(p, t0.In(zone))
	full.ExpiresAt = t0.Add(30 * 24 * time.Hour)
	full.RevokedAt = t0.Add(7 * 24 * time.Hour)
	full.LastUsedAt = t0.Add(time.Second).In(zone)
	full.Disabled = true
	full.Metadata = map[string]string{"owner": "ops", "note": "ünïcødé ✓", "empty": ""}
	full.Scopes = []string{"models:read", "chat:write", "keys:manage"}
	full.RateLimit = auth.Limit{Name: "tier-1.burst_x", Requests: 1 << 40, Period: 1500 * time.Millisecond, Burst: 7}
	full.UsageCount = 1<<53 + 1 // beyond a float64's integers
	full.LastClientAddr = netip.MustParseAddr("2001:db8::1")

	minimal := newKey(p, t0)
	minimal.Name, minimal.Hint, minimal.Scopes, minimal.Metadata = "", "", nil, nil

	// Client addresses come back exactly: an IPv4 address stays IPv4, and
	// an IPv4-mapped IPv6 address stays mapped.
	v4 := newKey(p, t0)
	v4.LastClientAddr = netip.MustParseAddr("192.0.2.1")
	v4.LastUsedAt = t0
	v4.UsageCount = 3
	mapped := newKey(p, t0)
	mapped.LastClientAddr = netip.MustParseAddr("::ffff:192.0.2.1")
	limitOnly := newKey(p, t0)
	limitOnly.RateLimit = auth.PerMinute("", 60)

	keys := []key{full, minimal, v4, mapped, limitOnly}
	for range 8 {
		keys = append(keys, newKey(p, t0.Add(time.Millisecond)))
	}
	for _, k := range keys {
		mustCreate(t, s, k.Record)
	}
	for _, k := range keys {
		got := mustLookup(t, s, "LookupDigest after Create", k.Digest)
		check(t, "LookupDigest after Create must return every field as created", got, k.Record, true)
	}
}

func testLookupDigestUnusable(t *testing.T, s keystore.Store) {
	p := newProject()
	t0 := now()
	revoked := newKey(p, t0.Add(-2*time.Hour))
	revoked.RevokedAt = t0.Add(-time.Hour)
	expired := newKey(p, t0.Add(-2*time.Hour))
	expired.ExpiresAt = t0.Add(-time.Hour)
	disabled := newKey(p, t0)
	disabled.Disabled = true
	for _, k := range []key{revoked, expired, disabled} {
		mustCreate(t, s, k.Record)
	}
	for _, tc := range []struct {
		name string
		k    key
	}{{"revoked", revoked}, {"expired", expired}, {"disabled", disabled}} {
		got, err := s.LookupDigest(t.Context(), tc.k.Digest)
		if err != nil {
			t.Errorf("LookupDigest of a %s key: %v; it must return revoked, expired and disabled records too, the caller decides what they mean", tc.name, err)
			continue
		}
		check(t, "LookupDigest of a "+tc.name+" key", got, tc.k.Record, true)
	}
}

func testLookupDigestNotFound(t *testing.T, s keystore.Store) {
	p := newProject()
	k := newKey(p, now())
	mustCreate(t, s, k.Record)

	flip := func(i int, bit byte) keystore.Digest {
		d := k.Digest
		d[i] ^= bit
		return d
	}
	prefix := func(n int) keystore.Digest {
		d := keystore.Digest(sha256.Sum256([]byte(k.plaintext + "x")))
		copy(d[:n], k.Digest[:n])
		if d == k.Digest {
			d[n] ^= 1
		}
		return d
	}
	var idBytes keystore.Digest
	copy(idBytes[:], k.ID)
	cases := []struct {
		name string
		d    keystore.Digest
	}{
		{"another key", keystore.Digest(sha256.Sum256([]byte(newKey(p, now()).plaintext)))},
		{"first bit flipped", flip(0, 0x80)},
		{"bit in byte 8 flipped", flip(8, 0x01)},
		{"middle bit flipped", flip(keystore.DigestSize/2, 0x10)},
		{"last bit flipped", flip(keystore.DigestSize-1, 0x01)},
		{"same first 8 bytes", prefix(8)},
		{"same first 16 bytes", prefix(16)},
		{"same first 31 bytes", prefix(keystore.DigestSize - 1)},
		{"zero digest", keystore.Digest{}},
		{"ID bytes as digest", idBytes},
		{"digest of the ID", keystore.Digest(sha256.Sum256([]byte(k.ID)))},
		{"digest of the hint", keystore.Digest(sha256.Sum256([]byte(k.Hint)))},
	}
	for _, tc := range cases {
		r, err := s.LookupDigest(t.Context(), tc.d)
		wantNotFound(t, "LookupDigest of "+tc.name+" (lookups must match the whole digest exactly)", err)
		if err == nil {
			t.Errorf("LookupDigest of %s returned record %s", tc.name, r.ID)
		}
	}
	// The stored key itself is still found.
	check(t, "LookupDigest after failed lookups", mustLookup(t, s, "LookupDigest", k.Digest), k.Record, true)
}

func testGet(t *testing.T, s keystore.Store) {
	p := newProject()
	var keys []key
	for i := range 5 {
		k := newKey(p, now().Add(time.Duration(i)*time.Millisecond))
		k.ExpiresAt = k.CreatedAt.Add(time.Hour)
		keys = append(keys, k)
		mustCreate(t, s, k.Record)
	}
	for _, k := range keys {
		check(t, "Get after Create must return every field, Digest included", mustGet(t, s, "Get", k.ID), k.Record, true)
	}
}

func testGetNotFound(t *testing.T, s keystore.Store) {
	k := newKey(newProject(), now())
	mustCreate(t, s, k.Record)
	for _, tc := range []struct{ name, id string }{
		{"unknown ID", "key_" + randString(16)},
		{"empty ID", ""},
		{"ID in upper case (IDs are case-sensitive)", strings.ToUpper(k.ID)},
		{"ID without its last character (no prefix matching)", k.ID[:len(k.ID)-1]},
		{"ID with a trailing space", k.ID + " "},
		{"ID with a SQL wildcard", k.ID[:len(k.ID)-1] + "%"},
		{"hex digest", k.Digest.String()},
		{"plaintext key", k.plaintext},
	} {
		r, err := s.Get(t.Context(), tc.id)
		wantNotFound(t, "Get of "+tc.name, err)
		if err == nil {
			t.Errorf("Get of %s returned record %s", tc.name, r.ID)
		}
	}
}

func testNotFound(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	unknown := "key_" + randString(16)
	at := now()

	_, err := s.Revoke(ctx, unknown, at)
	wantNotFound(t, "Revoke of an unknown ID", err)

	next := newKey(p, at)
	err = s.Replace(ctx, unknown, at, next.Record)
	wantNotFound(t, "Replace of an unknown ID", err)
	wantAbsent(t, "Replace of an unknown ID must not create the new key", s, next.Record)

	if ts, ok := s.(keystore.Toucher); ok {
		wantNotFound(t, "Touch of an unknown ID", ts.Touch(ctx, unknown, at))
	} else {
		t.Log("store does not implement keystore.Toucher; Touch not tested")
	}
	if ds, ok := s.(keystore.Disabler); ok {
		_, err := ds.SetDisabled(ctx, unknown, true)
		wantNotFound(t, "SetDisabled of an unknown ID", err)
	} else {
		t.Log("store does not implement keystore.Disabler; SetDisabled not tested")
	}
	if _, err := s.Get(ctx, unknown); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Get of an unknown ID after the calls above: got %v, want keystore.ErrNotFound; they must not create records", err)
	}
}

func testCreateDuplicate(t *testing.T, s keystore.Store) {
	p := newProject()
	orig := newKey(p, now())
	mustCreate(t, s, orig.Record)

	sameID := newKey(p, now())
	sameID.ID = orig.ID
	sameDigest := newKey(p, now())
	sameDigest.Digest = orig.Digest
	identical := orig

	for _, tc := range []struct {
		name string
		k    key
	}{
		{"the same ID and another digest", sameID},
		{"the same digest and another ID", sameDigest},
		{"the same ID and digest", identical},
	} {
		err := s.Create(t.Context(), tc.k.Record)
		if !errors.Is(err, keystore.ErrExists) {
			t.Errorf("Create of a record with %s: got %v, want an error matching keystore.ErrExists", tc.name, err)
		}
		wantUnchanged(t, "after Create of a record with "+tc.name+" the existing record must be unchanged", s, orig.Record)
	}
	_, err := s.LookupDigest(t.Context(), sameID.Digest)
	wantNotFound(t, "LookupDigest of the digest of a rejected Create (duplicate ID)", err)
	_, err = s.Get(t.Context(), sameDigest.ID)
	wantNotFound(t, "Get of the ID of a rejected Create (duplicate digest)", err)
}

func testRevoke(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	t0 := now()
	k := newKey(p, t0)
	other := newKey(p, t0)
	mustCreate(t, s, k.Record)
	mustCreate(t, s, other.Record)

	t1 := t0.Add(time.Minute)
	got, err := s.Revoke(ctx, k.ID, t1)
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	want := k.Record
	want.RevokedAt = t1
	check(t, "record returned by Revoke", got, want, true)
	r := mustLookup(t, s, "LookupDigest after Revoke", k.Digest)
	if r.RevokedAt.IsZero() {
		t.Fatal("LookupDigest after Revoke: RevokedAt is zero; revocation must be visible immediately")
	}
	check(t, "LookupDigest after Revoke", r, want, true)
	check(t, "Get after Revoke", mustGet(t, s, "Get after Revoke", k.ID), want, true)

	// Idempotent: a later time keeps the earlier one.
	if _, err := s.Revoke(ctx, k.ID, t1.Add(time.Hour)); err != nil {
		t.Fatalf("second Revoke of a revoked record: %v; Revoke must be idempotent", err)
	}
	r = mustLookup(t, s, "LookupDigest after a second Revoke", k.Digest)
	if !sameTime(r.RevokedAt, t1) {
		t.Errorf("Revoke at a later time changed RevokedAt from %v to %v; it must keep the earlier time", t1, r.RevokedAt)
	}
	// An earlier time wins.
	got, err = s.Revoke(ctx, k.ID, t0)
	if err != nil {
		t.Fatalf("third Revoke of a revoked record: %v; Revoke must be idempotent", err)
	}
	if !sameTime(got.RevokedAt, t0) {
		t.Errorf("Revoke at an earlier time returned RevokedAt %v, want the earlier time %v", got.RevokedAt, t0)
	}
	want.RevokedAt = t0
	check(t, "Get after Revoke at an earlier time", mustGet(t, s, "Get", k.ID), want, true)

	// Revoked records stay listed; other records are untouched.
	list, err := s.List(ctx, p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	i := slices.IndexFunc(list, func(r keystore.Record) bool { return r.ID == k.ID })
	if i < 0 {
		t.Errorf("List after Revoke does not include the revoked record; List must include revoked records")
	} else {
		check(t, "List after Revoke", list[i], want, false)
	}
	wantUnchanged(t, "Revoke of another record", s, other.Record)
}

func testReplace(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	t0 := now()
	old := newKey(p, t0.Add(-time.Hour))
	mustCreate(t, s, old.Record)
	next := newKey(p, t0)
	next.Name = old.Name
	next.RateLimit = auth.PerHour("rotated", 1000)

	if err := s.Replace(ctx, old.ID, t0, next.Record); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	wantOld := old.Record
	wantOld.RevokedAt = t0
	r := mustLookup(t, s, "LookupDigest of the old key after Replace", old.Digest)
	if r.RevokedAt.IsZero() {
		t.Error("LookupDigest of the old key after Replace: RevokedAt is zero; Replace must revoke the old key")
	}
	check(t, "LookupDigest of the old key after Replace", r, wantOld, true)
	check(t, "LookupDigest of the new key after Replace", mustLookup(t, s, "LookupDigest of the new key after Replace", next.Digest), next.Record, true)
	check(t, "Get of the new key after Replace", mustGet(t, s, "Get", next.ID), next.Record, true)
	check(t, "Get of the old key after Replace", mustGet(t, s, "Get", old.ID), wantOld, true)

	// The new key can be replaced in turn.
	third := newKey(p, t0.Add(time.Second))
	if err := s.Replace(ctx, next.ID, t0.Add(time.Second), third.Record); err != nil {
		t.Fatalf("Replace of the key created by Replace: %v", err)
	}
	list, err := s.List(ctx, p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 3 {
		t.Errorf("List after two Replaces has %d records, want 3 (replaced keys stay listed)", len(list))
	}
}

func testReplaceGrace(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	t0 := now()
	old := newKey(p, t0)
	mustCreate(t, s, old.Record)
	next := newKey(p, t0)
	grace := t0.Add(24 * time.Hour)

	if err := s.Replace(ctx, old.ID, grace, next.Record); err != nil {
		t.Fatalf("Replace with a revocation time in the future: %v", err)
	}
	r := mustLookup(t, s, "LookupDigest of the old key during its grace period", old.Digest)
	if !sameTime(r.RevokedAt, grace) {
		t.Errorf("LookupDigest of the old key during its grace period: RevokedAt is %v, want %v; a future revocation time is stored as is", r.RevokedAt, grace)
	}
	if r.RevokedBy(time.Now()) {
		t.Error("the old key is revoked now; during the grace period it must stay usable")
	}
	mustLookup(t, s, "LookupDigest of the new key", next.Digest)

	// A key revoked in the future is revoked: it cannot be replaced again.
	again := newKey(p, t0)
	err := s.Replace(ctx, old.ID, t0, again.Record)
	if !errors.Is(err, keystore.ErrAlreadyRevoked) {
		t.Errorf("second Replace of a key in its grace period: got %v, want keystore.ErrAlreadyRevoked (RevokedAt set, even in the future)", err)
	}
	wantAbsent(t, "second Replace of a key in its grace period", s, again.Record)
	r = mustLookup(t, s, "LookupDigest of the old key after a failed second Replace", old.Digest)
	if !sameTime(r.RevokedAt, grace) {
		t.Errorf("failed second Replace changed the old key's RevokedAt to %v, want %v; on error nothing changes", r.RevokedAt, grace)
	}
}

func testReplaceAlreadyRevoked(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	t0 := now()
	for _, tc := range []struct {
		name      string
		revokedAt time.Time
	}{
		{"revoked in the past", t0.Add(-time.Hour)},
		{"revoked in the future", t0.Add(time.Hour)},
	} {
		old := newKey(p, t0.Add(-2*time.Hour))
		mustCreate(t, s, old.Record)
		if _, err := s.Revoke(ctx, old.ID, tc.revokedAt); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		old.RevokedAt = tc.revokedAt
		next := newKey(p, t0)
		err := s.Replace(ctx, old.ID, t0, next.Record)
		if !errors.Is(err, keystore.ErrAlreadyRevoked) {
			t.Errorf("Replace of a key %s: got %v, want keystore.ErrAlreadyRevoked", tc.name, err)
		}
		wantAbsent(t, "Replace of a key "+tc.name+" must not create the new key", s, next.Record)
		wantUnchanged(t, "Replace of a key "+tc.name+" must not change it", s, old.Record)
	}
}

func testReplaceNextExists(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	t0 := now()
	old := newKey(p, t0)
	other := newKey(p, t0)
	mustCreate(t, s, old.Record)
	mustCreate(t, s, other.Record)

	withID := func(id string) key { k := newKey(p, t0); k.ID = id; return k }
	withDigest := func(d keystore.Digest) key { k := newKey(p, t0); k.Digest = d; return k }
	for _, tc := range []struct {
		name string
		next key
	}{
		{"another key's ID", withID(other.ID)},
		{"another key's digest", withDigest(other.Digest)},
		{"the old key's ID", withID(old.ID)},
		{"the old key's digest", withDigest(old.Digest)},
	} {
		err := s.Replace(ctx, old.ID, t0, tc.next.Record)
		if !errors.Is(err, keystore.ErrExists) {
			t.Errorf("Replace with a new key that has %s: got %v, want keystore.ErrExists", tc.name, err)
		}
		what := "Replace with a new key that has " + tc.name + " failed, so nothing may change"
		wantUnchanged(t, what+" (old key)", s, old.Record)
		wantUnchanged(t, what+" (other key)", s, other.Record)
	}
}

// testReplaceAtomic replaces keys while readers look both up, in both
// orders: a reader that sees the new key must see the old one revoked, and
// a reader that sees the old one revoked must see the new key.
func testReplaceAtomic(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	const (
		rounds  = 50
		readers = 4
	)
	p := newProject()
	chain := make([]key, rounds+1)
	for i := range chain {
		chain[i] = newKey(p, now())
	}
	mustCreate(t, s, chain[0].Record)

	var (
		cur    atomic.Int64 // chain[cur] is being replaced by chain[cur+1]
		checks atomic.Int64
		failed atomic.Bool
		done   = make(chan struct{})
		wg     sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		if failed.CompareAndSwap(false, true) { // one report is enough
			t.Errorf(format, args...)
		}
	}
	lookup := func(d keystore.Digest, what string) (keystore.Record, bool) {
		r, err := s.LookupDigest(ctx, d)
		if err != nil && !errors.Is(err, keystore.ErrNotFound) {
			fail("LookupDigest of the %s key during Replace: %v", what, err)
		}
		return r, err == nil
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				i := cur.Load()
				old, next := chain[i], chain[i+1]

				// New, then old: if the new key exists, the old one
				// must already be revoked.
				_, newFound := lookup(next.Digest, "new")
				o, oldFound := lookup(old.Digest, "old")
				if !oldFound {
					fail("LookupDigest of a key being replaced: not found; Replace must keep the old record")
				}
				if newFound && o.RevokedAt.IsZero() {
					fail("Replace is not atomic: a reader found the new key, then the old key not revoked (both alive)")
				}

				// Old, then new: if the old key is revoked, the new one
				// must exist.
				o, _ = lookup(old.Digest, "old")
				_, newFound = lookup(next.Digest, "new")
				if !o.RevokedAt.IsZero() && !newFound {
					fail("Replace is not atomic: a reader found the old key revoked, then the new key missing (both dead)")
				}
				checks.Add(1)
				runtime.Gosched()
			}
		}()
	}
	for i := range rounds {
		cur.Store(int64(i))
		// Let the readers get going on this pair first.
		for start := checks.Load(); checks.Load() < start+readers && !failed.Load(); {
			runtime.Gosched()
		}
		if err := s.Replace(ctx, chain[i].ID, now(), chain[i+1].Record); err != nil {
			fail("Replace round %d: %v", i, err)
			break
		}
	}
	close(done)
	wg.Wait()
}

func testList(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p, q := newProject(), newProject()
	t0 := now()

	var keys []key
	for i := range 6 {
		keys = append(keys, newKey(p, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	// Two keys created at the same time are ordered by ID.
	tie := t0.Add(2500 * time.Microsecond)
	tieA, tieB := newKey(p, tie), newKey(p, tie)
	tieB.ID = tieA.ID + "b"
	tieA.ID += "a"
	keys = append(keys, tieB, tieA)
	// Another project's keys, created around the same times.
	var others []key
	for i := range 3 {
		others = append(others, newKey(q, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	// Create out of order.
	order := []int{4, 0, 7, 2, 6, 5, 1, 3}
	for i, j := range order {
		mustCreate(t, s, keys[j].Record)
		if i < len(others) {
			mustCreate(t, s, others[i].Record)
		}
	}
	if _, err := s.Revoke(ctx, keys[2].ID, t0.Add(time.Minute)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	keys[2].RevokedAt = t0.Add(time.Minute)

	want := slices.Clone(keys)
	slices.SortFunc(want, func(a, b key) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	got, err := s.List(ctx, p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var gotIDs, wantIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.ID)
	}
	for _, k := range want {
		wantIDs = append(wantIDs, k.ID)
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("List returned IDs\n\t%q\nwant\n\t%q\n(only the project's records, revoked ones included, oldest first by CreatedAt, then ID)", gotIDs, wantIDs)
	}
	for i, r := range got {
		check(t, "List", r, want[i].Record, false)
		if !r.Digest.IsZero() {
			t.Errorf("List: record %s has a Digest; List must leave it zero", r.ID)
		}
		// Nothing in a listed record may be confused with the key or
		// give away its digest.
		d := want[i].Digest
		secrets := []string{
			want[i].plaintext,
			hex.EncodeToString(d[:]),
			strings.ToUpper(hex.EncodeToString(d[:])),
			base64.StdEncoding.EncodeToString(d[:]),
			base64.RawStdEncoding.EncodeToString(d[:]),
			base64.URLEncoding.EncodeToString(d[:]),
			base64.RawURLEncoding.EncodeToString(d[:]),
			string(d[:]),
		}
		fields := append([]string{r.ID, r.Project, r.Name, r.Hint}, r.Scopes...)
		for k, v := range r.Metadata {
			fields = append(fields, k, v)
		}
		for _, f := range fields {
			for _, sec := range secrets {
				if strings.Contains(f, sec) {
					t.Errorf("List: record %s has a field that contains the key or its digest; List must never return them", r.ID)
				}
			}
		}
	}

	gotQ, err := s.List(ctx, q)
	if err != nil {
		t.Fatalf("List of a second project: %v", err)
	}
	if len(gotQ) != len(others) {
		t.Errorf("List of a second project returned %d records, want %d", len(gotQ), len(others))
	}
	for _, r := range gotQ {
		if r.Project != q {
			t.Errorf("List(%q) returned record %s of project %q", q, r.ID, r.Project)
		}
	}
}

func testListEmpty(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	got, err := s.List(ctx, p)
	if err != nil || len(got) != 0 {
		t.Errorf("List of a project with no keys: got %d records and error %v, want none and a nil error", len(got), err)
	}
	// A prefix of a project's name is another project.
	mustCreate(t, s, newKey(p+"x", now()).Record)
	got, err = s.List(ctx, p)
	if err != nil || len(got) != 0 {
		t.Errorf("List of a project whose name is a prefix of another's: got %d records and error %v, want none and a nil error", len(got), err)
	}
}

func testCopies(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	p := newProject()
	k := newKey(p, now())
	want := k.Record
	want.Scopes = slices.Clone(k.Scopes)
	want.Metadata = maps.Clone(k.Metadata)

	mustCreate(t, s, k.Record)
	k.Scopes[0] = "admin"
	k.Metadata["owner"] = "mallory"
	k.Metadata["added"] = "x"
	wantUnchanged(t, "changing the Scopes and Metadata passed to Create must not change the store", s, want)

	mutate := func(r keystore.Record) {
		if len(r.Scopes) > 0 {
			r.Scopes[0] = "admin"
		}
		if r.Metadata != nil {
			r.Metadata["owner"] = "mallory"
			r.Metadata["added"] = "x"
		}
	}
	mutate(mustGet(t, s, "Get", k.ID))
	wantUnchanged(t, "changing the Scopes and Metadata of a record returned by Get must not change the store", s, want)

	list, err := s.List(ctx, p)
	if err != nil || len(list) != 1 {
		t.Fatalf("List: got %d records and error %v, want 1 record", len(list), err)
	}
	mutate(list[0])
	wantUnchanged(t, "changing the Scopes and Metadata of a record returned by List must not change the store", s, want)

	if ds, ok := s.(keystore.Disabler); ok {
		r, err := ds.SetDisabled(ctx, k.ID, false)
		if err != nil {
			t.Fatalf("SetDisabled: %v", err)
		}
		mutate(r)
		wantUnchanged(t, "changing the Scopes and Metadata of a record returned by SetDisabled must not change the store", s, want)
	}

	r, err := s.Revoke(ctx, k.ID, want.CreatedAt.Add(time.Hour))
	if err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	want.RevokedAt = want.CreatedAt.Add(time.Hour)
	mutate(r)
	wantUnchanged(t, "changing the Scopes and Metadata of a record returned by Revoke must not change the store", s, want)
}

func testTouch(t *testing.T, s keystore.Store) {
	ts, ok := s.(keystore.Toucher)
	if !ok {
		t.Log("store does not implement keystore.Toucher; Touch not tested")
		return
	}
	ctx := t.Context()
	p := newProject()
	t0 := now()
	k := newKey(p, t0)
	other := newKey(p, t0)
	mustCreate(t, s, k.Record)
	mustCreate(t, s, other.Record)

	t1 := t0.Add(time.Minute)
	if err := ts.Touch(ctx, k.ID, t1); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	k.LastUsedAt = t1
	wantUnchanged(t, "after Touch, LastUsedAt must be the time touched and nothing else may change", s, k.Record)

	if err := ts.Touch(ctx, k.ID, t0); err != nil {
		t.Fatalf("Touch with an earlier time: %v", err)
	}
	wantUnchanged(t, "Touch with an earlier time must keep the later LastUsedAt", s, k.Record)

	t2 := t1.Add(time.Minute)
	if err := ts.Touch(ctx, k.ID, t2); err != nil {
		t.Fatalf("Touch with a later time: %v", err)
	}
	k.LastUsedAt = t2
	wantUnchanged(t, "Touch with a later time must set LastUsedAt", s, k.Record)
	wantUnchanged(t, "Touch of another record", s, other.Record)
}

func testSetDisabled(t *testing.T, s keystore.Store) {
	ds, ok := s.(keystore.Disabler)
	if !ok {
		t.Log("store does not implement keystore.Disabler; SetDisabled not tested")
		return
	}
	ctx := t.Context()
	p := newProject()
	k := newKey(p, now())
	other := newKey(p, now())
	mustCreate(t, s, k.Record)
	mustCreate(t, s, other.Record)

	for i, disabled := range []bool{true, true, false, false, true} {
		r, err := ds.SetDisabled(ctx, k.ID, disabled)
		if err != nil {
			t.Fatalf("SetDisabled(%v) call %d: %v; SetDisabled must be idempotent", disabled, i+1, err)
		}
		k.Disabled = disabled
		what := fmt.Sprintf("SetDisabled(%v) call %d", disabled, i+1)
		check(t, what+": record returned", r, k.Record, true)
		wantUnchanged(t, what+": only Disabled may change, and at once", s, k.Record)
	}
	wantUnchanged(t, "SetDisabled of another record", s, other.Record)
}

// testConcurrent runs creates, lookups, revocations, replacements and lists
// at once, then checks that the store is consistent.
func testConcurrent(t *testing.T, s keystore.Store) {
	ctx := t.Context()
	const (
		workers = 8
		perKeys = 12
	)
	p := newProject()
	t0 := now()
	ts, _ := s.(keystore.Toucher)

	keys := make([][]key, workers)
	for w := range keys {
		for i := range perKeys {
			keys[w] = append(keys[w], newKey(p, t0.Add(time.Duration(w*perKeys+i)*time.Millisecond)))
		}
	}
	dup := newKey(p, t0.Add(-3*time.Second))    // every worker creates it
	target := newKey(p, t0.Add(-2*time.Second)) // every worker revokes it
	rot := newKey(p, t0.Add(-time.Second))      // every worker replaces it
	mustCreate(t, s, target.Record)
	mustCreate(t, s, rot.Record)
	nexts := make([]key, workers)
	for w := range nexts {
		nexts[w] = newKey(p, t0.Add(-time.Second/2))
	}

	var (
		created, replaced atomic.Int64
		start             = make(chan struct{})
		wg                sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch err := s.Create(ctx, dup.Record); {
			case err == nil:
				created.Add(1)
			case !errors.Is(err, keystore.ErrExists):
				t.Errorf("concurrent Create of the same record: %v, want nil or keystore.ErrExists", err)
			}
			if _, err := s.Revoke(ctx, target.ID, t0.Add(time.Duration(w+1)*time.Minute)); err != nil {
				t.Errorf("concurrent Revoke of the same record: %v", err)
			}
			switch err := s.Replace(ctx, rot.ID, t0, nexts[w].Record); {
			case err == nil:
				replaced.Add(1)
			case !errors.Is(err, keystore.ErrAlreadyRevoked):
				t.Errorf("concurrent Replace of the same record: %v, want nil or keystore.ErrAlreadyRevoked", err)
			}
			for i, k := range keys[w] {
				if err := s.Create(ctx, k.Record); err != nil {
					t.Errorf("concurrent Create: %v", err)
					return
				}
				r, err := s.LookupDigest(ctx, k.Digest)
				if err != nil || r.ID != k.ID {
					t.Errorf("LookupDigest right after a concurrent Create: got record %q and error %v, want record %s", r.ID, err, k.ID)
				}
				if i%2 == 1 {
					if _, err := s.Revoke(ctx, k.ID, t0.Add(time.Hour)); err != nil {
						t.Errorf("concurrent Revoke: %v", err)
					}
				}
				if ts != nil {
					if err := ts.Touch(ctx, k.ID, t0.Add(time.Duration(i)*time.Second)); err != nil {
						t.Errorf("concurrent Touch: %v", err)
					}
				}
				if i%4 == 3 {
					list, err := s.List(ctx, p)
					if err != nil {
						t.Errorf("concurrent List: %v", err)
						continue
					}
					for _, mine := range keys[w][:i+1] {
						if !slices.ContainsFunc(list, func(r keystore.Record) bool { return r.ID == mine.ID }) {
							t.Errorf("concurrent List does not include record %s created before it", mine.ID)
						}
					}
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	if n := created.Load(); n != 1 {
		t.Errorf("%d of %d concurrent Creates of the same record succeeded, want exactly 1", n, workers)
	}
	if n := replaced.Load(); n != 1 {
		t.Errorf("%d of %d concurrent Replaces of the same record succeeded, want exactly 1", n, workers)
	}
	target.RevokedAt = t0.Add(time.Minute)
	wantUnchanged(t, "after concurrent Revokes the earliest time must win", s, target.Record)

	wantIDs := map[string]bool{dup.ID: true, target.ID: true, rot.ID: true}
	for _, n := range nexts {
		if _, err := s.Get(ctx, n.ID); err == nil {
			wantIDs[n.ID] = true
		}
	}
	for w := range keys {
		for i, k := range keys[w] {
			wantIDs[k.ID] = true
			if i%2 == 1 {
				k.RevokedAt = t0.Add(time.Hour)
			}
			if ts != nil {
				k.LastUsedAt = t0.Add(time.Duration(i) * time.Second)
			}
			wantUnchanged(t, "after the concurrent run", s, k.Record)
		}
	}
	list, err := s.List(ctx, p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != len(wantIDs) {
		t.Errorf("List after the concurrent run has %d records, want %d", len(list), len(wantIDs))
	}
	for i, r := range list {
		if !wantIDs[r.ID] {
			t.Errorf("List after the concurrent run has unexpected record %s", r.ID)
		}
		if i > 0 {
			prev := list[i-1]
			if c := prev.CreatedAt.Compare(r.CreatedAt); c > 0 || c == 0 && prev.ID >= r.ID {
				t.Errorf("List after the concurrent run is out of order at %d: %s (%v) before %s (%v)", i, prev.ID, prev.CreatedAt, r.ID, r.CreatedAt)
			}
		}
	}
}

// usageWriter returns s as a UsageWriter, or logs that it is not one.
func usageWriter(t *testing.T, s keystore.Store) (keystore.UsageWriter, bool) {
	t.Helper()
	w, ok := s.(keystore.UsageWriter)
	if !ok {
		t.Log("store does not implement keystore.UsageWriter; RecordUsage not tested")
	}
	return w, ok
}

func mustRecordUsage(t *testing.T, w keystore.UsageWriter, what string, batch ...keystore.Usage) {
	t.Helper()
	if err := w.RecordUsage(t.Context(), batch); err != nil {
		t.Fatalf("%s: RecordUsage: %v", what, err)
	}
}

// testRecordUsage applies batches one after the other and checks every
// record after each: counts add, the later time wins, the client address
// follows the latest time, unknown IDs are skipped and nothing else
// changes.
func testRecordUsage(t *testing.T, s keystore.Store) {
	w, ok := usageWriter(t, s)
	if !ok {
		return
	}
	p := newProject()
	t0 := now()
	a, b, idle := newKey(p, t0), newKey(p, t0), newKey(p, t0)
	a.RateLimit = auth.PerMinute("a", 10)
	for _, k := range []*key{&a, &b, &idle} {
		mustCreate(t, s, k.Record)
	}
	addr1 := netip.MustParseAddr("192.0.2.10")
	addr2 := netip.MustParseAddr("2001:db8::7")
	addr3 := netip.MustParseAddr("::ffff:198.51.100.3")
	unknown := "key_" + randString(16)
	type state struct{ a, b key }
	steps := []struct {
		name  string
		batch []keystore.Usage
		apply func(st *state)
	}{
		{
			name: "first use of two keys",
			batch: []keystore.Usage{
				{KeyID: a.ID, Requests: 5, LastUsedAt: t0.Add(time.Second), ClientAddr: addr1},
				{KeyID: b.ID, Requests: 1, LastUsedAt: t0.Add(2 * time.Second), ClientAddr: addr2},
			},
			apply: func(st *state) {
				st.a.UsageCount, st.a.LastUsedAt, st.a.LastClientAddr = 5, t0.Add(time.Second), addr1
				st.b.UsageCount, st.b.LastUsedAt, st.b.LastClientAddr = 1, t0.Add(2*time.Second), addr2
			},
		},
		{
			name: "an earlier time adds the count and keeps the later time and its address",
			batch: []keystore.Usage{
				{KeyID: a.ID, Requests: 2, LastUsedAt: t0, ClientAddr: addr2},
			},
			apply: func(st *state) { st.a.UsageCount = 7 },
		},
		{
			name: "a later time with an address sets both",
			batch: []keystore.Usage{
				{KeyID: a.ID, Requests: 1, LastUsedAt: t0.Add(time.Minute), ClientAddr: addr3},
			},
			apply: func(st *state) {
				st.a.UsageCount, st.a.LastUsedAt, st.a.LastClientAddr = 8, t0.Add(time.Minute), addr3
			},
		},
		{
			name: "a later time without an address keeps the address",
			batch: []keystore.Usage{
				{KeyID: a.ID, Requests: 1, LastUsedAt: t0.Add(2 * time.Minute)},
			},
			apply: func(st *state) { st.a.UsageCount, st.a.LastUsedAt = 9, t0.Add(2*time.Minute) },
		},
		{
			name: "the same time with an address sets the address",
			batch: []keystore.Usage{
				{KeyID: a.ID, Requests: 1, LastUsedAt: t0.Add(2 * time.Minute), ClientAddr: addr1},
			},
			apply: func(st *state) { st.a.UsageCount, st.a.LastClientAddr = 10, addr1 },
		},
		{
			name: "a zero time adds the count and changes nothing else",
			batch: []keystore.Usage{
				{KeyID: b.ID, Requests: 4, ClientAddr: addr1},
			},
			apply: func(st *state) { st.b.UsageCount = 5 },
		},
		{
			name: "unknown IDs are skipped and the rest applied",
			batch: []keystore.Usage{
				{KeyID: unknown, Requests: 9, LastUsedAt: t0.Add(time.Hour), ClientAddr: addr1},
				{KeyID: b.ID, Requests: 3, LastUsedAt: t0.Add(3 * time.Minute), ClientAddr: addr3},
				{KeyID: "", Requests: 1, LastUsedAt: t0.Add(time.Hour)},
				{KeyID: strings.ToUpper(a.ID), Requests: 1, LastUsedAt: t0.Add(time.Hour)},
			},
			apply: func(st *state) {
				st.b.UsageCount, st.b.LastUsedAt, st.b.LastClientAddr = 8, t0.Add(3*time.Minute), addr3
			},
		},
		{
			name: "an ID twice in a batch is applied twice",
			batch: []keystore.Usage{
				{KeyID: b.ID, Requests: 10, LastUsedAt: t0.Add(5 * time.Minute), ClientAddr: addr2},
				{KeyID: a.ID, Requests: 1, LastUsedAt: t0.Add(3 * time.Minute)},
				{KeyID: b.ID, Requests: 20, LastUsedAt: t0.Add(4 * time.Minute), ClientAddr: addr1},
			},
			apply: func(st *state) {
				st.b.UsageCount, st.b.LastUsedAt, st.b.LastClientAddr = 38, t0.Add(5*time.Minute), addr2
				st.a.UsageCount, st.a.LastUsedAt = 11, t0.Add(3*time.Minute)
			},
		},
		{
			name:  "an empty batch changes nothing",
			batch: nil,
			apply: func(*state) {},
		},
		{
			name: "zero requests with a later time set the time",
			batch: []keystore.Usage{
				{KeyID: a.ID, Requests: 0, LastUsedAt: t0.Add(6 * time.Minute), ClientAddr: addr2},
			},
			apply: func(st *state) { st.a.LastUsedAt, st.a.LastClientAddr = t0.Add(6*time.Minute), addr2 },
		},
	}
	st := state{a, b}
	for _, step := range steps {
		mustRecordUsage(t, w, step.name, step.batch...)
		step.apply(&st)
		wantUnchanged(t, "RecordUsage, "+step.name, s, st.a.Record)
		wantUnchanged(t, "RecordUsage, "+step.name+" (second key)", s, st.b.Record)
		wantUnchanged(t, "RecordUsage, "+step.name+" (a key not in any batch)", s, idle.Record)
	}
	list, err := s.List(t.Context(), p)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, r := range list {
		if r.ID == a.ID {
			check(t, "List after RecordUsage", r, st.a.Record, false)
		}
	}
	_, err = s.Get(t.Context(), unknown)
	wantNotFound(t, "RecordUsage of an unknown ID must not create a record", err)

	// Touch and RecordUsage share LastUsedAt: a usage older than a touch
	// does not take the time, nor set the address.
	if ts, ok := s.(keystore.Toucher); ok {
		if err := ts.Touch(t.Context(), b.ID, t0.Add(time.Hour)); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		mustRecordUsage(t, w, "after Touch", keystore.Usage{KeyID: b.ID, Requests: 1, LastUsedAt: t0.Add(30 * time.Minute), ClientAddr: addr1})
		st.b.UsageCount, st.b.LastUsedAt = 39, t0.Add(time.Hour)
		wantUnchanged(t, "RecordUsage older than a Touch", s, st.b.Record)
	}

	// A negative delta is a caller bug: an error, and nothing applied.
	err = w.RecordUsage(t.Context(), []keystore.Usage{
		{KeyID: a.ID, Requests: 1, LastUsedAt: t0.Add(time.Hour)},
		{KeyID: b.ID, Requests: -1},
	})
	if err == nil {
		t.Error("RecordUsage with negative Requests: no error")
	}
	wantUnchanged(t, "a failed RecordUsage must change nothing", s, st.a.Record)
}

// testRecordUsageConcurrent writes batches from several goroutines at once,
// as the UsageRecorders of several instances do: no increment may be lost,
// and each key keeps its latest time with its address. Which writer gives
// a key's latest time changes from key to key, so that a store that keeps
// the last write fails unless every one of those writers lands last,
// however the goroutines are scheduled (the writer started last tends to
// finish last).
func testRecordUsageConcurrent(t *testing.T, s keystore.Store) {
	w, ok := usageWriter(t, s)
	if !ok {
		return
	}
	const (
		writers = 6
		rounds  = 10
		nkeys   = 40
	)
	p := newProject()
	t0 := now()
	keys := make([]key, nkeys)
	for i := range keys {
		keys[i] = newKey(p, t0)
		mustCreate(t, s, keys[i].Record)
	}
	var wg sync.WaitGroup
	for wr := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range rounds {
				batch := make([]keystore.Usage, 0, nkeys+1)
				for i, k := range keys {
					batch = append(batch, keystore.Usage{
						KeyID:      k.ID,
						Requests:   int64(i + 1),
						LastUsedAt: t0.Add(time.Duration(round*writers+(wr+i)%writers) * time.Second),
						ClientAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(wr)}),
					})
				}
				batch = append(batch, keystore.Usage{KeyID: "key_" + randString(16), Requests: 1})
				if err := w.RecordUsage(context.WithoutCancel(t.Context()), batch); err != nil {
					t.Errorf("concurrent RecordUsage: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// A key's latest time is the last round of the writer wr with
	// (wr+i) mod writers = writers-1, whose address comes with it.
	last := t0.Add(time.Duration(rounds*writers-1) * time.Second)
	for i, k := range keys {
		k.UsageCount = int64(writers * rounds * (i + 1))
		k.LastUsedAt = last
		k.LastClientAddr = netip.AddrFrom4([4]byte{192, 0, 2, byte((writers - 1 - i%writers + writers) % writers)})
		wantUnchanged(t, "after concurrent RecordUsage, counts add up exactly", s, k.Record)
	}
}
