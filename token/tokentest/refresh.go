package tokentest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// recordLife is how long the records of the refresh suite live, from the
// time the suite starts. No time the suite passes to a store reaches it,
// so a store that forgets expired records never forgets one that a
// subtest still needs, even when the subtests share the store.
const recordLife = 24 * time.Hour

// RunRefreshStore runs the conformance suite against refresh stores made
// by newStore. Each subtest calls newStore for its own store, and the
// subtests run in parallel, so newStore must be safe for concurrent use;
// it may return the same store every time. It should register any cleanup
// with t.Cleanup. RunRefreshStore returns when every subtest has finished.
//
// The records the suite creates expire within a day of its start, and the
// times it passes to CreateRefresh (IssuedAt), SpendRefresh and
// RevokeFamily stay below that: a store may forget a record once its
// ExpiresAt has passed, by those times or by its own clock, and the suite
// accepts either outcome for an expired record (returned as it is, or
// forgotten) but requires every record, and the revocation of its family,
// to be kept until then.
// Invalid records (no Digest, Family or ExpiresAt) are not tested: what a
// store does with them is its own business. RunRefreshStore passes a live
// context and does not test cancellation.
func RunRefreshStore(t *testing.T, newStore func(t *testing.T) token.RefreshStore) {
	t.Helper()
	t0 := start()
	tests := []struct {
		name string
		fn   func(t *testing.T, s token.RefreshStore, t0 time.Time)
	}{
		{"CreateSpend", testCreateSpend},
		{"Reuse", testReuse},
		{"NotFound", testSpendNotFound},
		{"WholeDigest", testWholeDigest},
		{"CreateDuplicate", testCreateDuplicate},
		{"RevokeFamily", testRevokeFamily},
		{"UnknownFamily", testUnknownFamily},
		{"Expiry", testExpiry},
		{"SpendConcurrent", testSpendConcurrent},
		{"Concurrent", testRefreshConcurrent},
	}
	// The group makes RunRefreshStore wait for the parallel subtests, so a
	// caller can close its database once it returns.
	t.Run("RefreshStore", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := newStore(t)
				if s == nil {
					t.Fatal("newStore returned nil")
				}
				tc.fn(t, s, t0)
			})
		}
	})
}

// newRecord returns a record of family fam with every field set but
// SpentAt and RevokedAt, issued at issued and expiring recordLife after
// t0.
func newRecord(fam string, t0, issued time.Time) token.RefreshRecord {
	return token.RefreshRecord{
		Digest:    randDigest(),
		Family:    fam,
		KeyID:     randID("key_"),
		Project:   randID("tokentest-"),
		Scopes:    []string{"models:read", "chat:write"},
		IssuedAt:  issued,
		ExpiresAt: t0.Add(recordLife),
	}
}

// diffRecord lists how got differs from want. Nil and empty Scopes are the
// same.
func diffRecord(got, want token.RefreshRecord) []string {
	var d []string
	if got.Digest != want.Digest {
		d = append(d, "Digest differs from the digest stored")
	}
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s is %q, want %q", name, g, w))
		}
	}
	str("Family", got.Family, want.Family)
	str("KeyID", got.KeyID, want.KeyID)
	str("Project", got.Project, want.Project)
	if (len(got.Scopes) != 0 || len(want.Scopes) != 0) && !slices.Equal(got.Scopes, want.Scopes) {
		d = append(d, fmt.Sprintf("Scopes are %q, want %q", got.Scopes, want.Scopes))
	}
	tm := func(name string, g, w time.Time) {
		if !sameTime(g, w) {
			d = append(d, fmt.Sprintf("%s is %v, want %v", name, g, w))
		}
	}
	tm("IssuedAt", got.IssuedAt, want.IssuedAt)
	tm("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	tm("SpentAt", got.SpentAt, want.SpentAt)
	tm("RevokedAt", got.RevokedAt, want.RevokedAt)
	return d
}

// checkRecord reports how got differs from want, prefixed by what was
// done.
func checkRecord(t *testing.T, what string, got, want token.RefreshRecord) {
	t.Helper()
	if d := diffRecord(got, want); len(d) > 0 {
		t.Errorf("%s: %s", what, strings.Join(d, "; "))
	}
}

func mustCreateRefresh(t *testing.T, s token.RefreshStore, r token.RefreshRecord) {
	t.Helper()
	if err := s.CreateRefresh(t.Context(), r); err != nil {
		t.Fatalf("CreateRefresh of a new record: %v", err)
	}
}

func mustRevokeFamily(t *testing.T, s token.RefreshStore, fam string, at time.Time) {
	t.Helper()
	if err := s.RevokeFamily(t.Context(), fam, at); err != nil {
		t.Fatalf("RevokeFamily: %v", err)
	}
}

// wantSpent spends r's digest at at, which must be its first spend, and
// checks the record returned: r with SpentAt at and RevokedAt revokedAt.
// It returns what the store holds now.
func wantSpent(t *testing.T, s token.RefreshStore, what string, r token.RefreshRecord, at, revokedAt time.Time) token.RefreshRecord {
	t.Helper()
	got, err := s.SpendRefresh(t.Context(), r.Digest, at)
	if err != nil {
		t.Fatalf("%s: first SpendRefresh of a record: %v, want no error", what, err)
	}
	r.SpentAt, r.RevokedAt = at, revokedAt
	checkRecord(t, what+": record returned by the first SpendRefresh", got, r)
	return r
}

// wantReused spends r's digest again at at and checks that the store
// reports the reuse with r as it holds it: spent is r with its first
// SpentAt and its family's RevokedAt.
func wantReused(t *testing.T, s token.RefreshStore, what string, spent token.RefreshRecord, at time.Time) {
	t.Helper()
	got, err := s.SpendRefresh(t.Context(), spent.Digest, at)
	switch {
	case err == nil:
		t.Errorf("%s: SpendRefresh of a spent record succeeded; it must return an error matching token.ErrRefreshReused", what)
	case !errors.Is(err, token.ErrRefreshReused):
		t.Errorf("%s: SpendRefresh of a spent record: got %v, want an error matching token.ErrRefreshReused", what, err)
	case errors.Is(err, keystore.ErrNotFound):
		t.Errorf("%s: SpendRefresh of a spent record: %v matches keystore.ErrNotFound too", what, err)
	}
	checkRecord(t, what+": record returned with token.ErrRefreshReused (it must be the record, with its first SpentAt)", got, spent)
}

// wantNotFound checks that spending d reports "not found".
func wantNotFound(t *testing.T, s token.RefreshStore, what string, d keystore.Digest, at time.Time) {
	t.Helper()
	r, err := s.SpendRefresh(t.Context(), d, at)
	switch {
	case err == nil:
		t.Errorf("%s: SpendRefresh succeeded and returned a record of family %q; want an error matching keystore.ErrNotFound", what, r.Family)
	case !errors.Is(err, keystore.ErrNotFound):
		t.Errorf("%s: SpendRefresh: got %v, want an error matching keystore.ErrNotFound (errors.Is); other errors mean the back end failed", what, err)
	case errors.Is(err, token.ErrRefreshReused):
		t.Errorf("%s: SpendRefresh: %v matches token.ErrRefreshReused too", what, err)
	}
}

// wantFamilyRevoked checks FamilyRevoked(fam).
func wantFamilyRevoked(t *testing.T, s token.RefreshStore, what, fam string, want bool) {
	t.Helper()
	got, err := s.FamilyRevoked(t.Context(), fam)
	if err != nil {
		t.Errorf("%s: FamilyRevoked(%q): %v", what, fam, err)
	} else if got != want {
		t.Errorf("%s: FamilyRevoked(%q) = %v, want %v", what, fam, got, want)
	}
}

func testCreateSpend(t *testing.T, s token.RefreshStore, t0 time.Time) {
	fam := randID("fam-")
	full := newRecord(fam, t0, t0.Add(-time.Hour).UTC())
	full.Scopes = []string{"models:read", "chat:write", "keys:manage", "ünïcødé:✓"}
	withRevokedAt := newRecord(randID("fam-"), t0, t0)
	withRevokedAt.RevokedAt = t0
	records := []struct {
		name string
		r    token.RefreshRecord
	}{
		{"a record with every field set", full},
		{"a record with only Digest, Family and ExpiresAt set", token.RefreshRecord{Digest: randDigest(), Family: fam, ExpiresAt: t0.Add(recordLife)}},
		{"a record created with RevokedAt set (RevokedAt is filled from the family, never stored per record)", withRevokedAt},
	}
	for i := range 5 {
		records = append(records, struct {
			name string
			r    token.RefreshRecord
		}{fmt.Sprintf("record %d of a family", i+1), newRecord(fam, t0, t0)})
	}
	for _, rc := range records {
		mustCreateRefresh(t, s, rc.r)
	}
	// Each record is spent on its own: spending one of a family must not
	// spend the others.
	for i, rc := range records {
		r := rc.r
		r.RevokedAt = time.Time{}
		wantSpent(t, s, rc.name, r, t0.Add(time.Duration(i+1)*time.Minute), time.Time{})
	}
	wantFamilyRevoked(t, s, "the family of a record created with RevokedAt set (RevokedAt is filled from the family, never stored per record)", withRevokedAt.Family, false)
	wantFamilyRevoked(t, s, "a family never revoked", fam, false)
}

func testReuse(t *testing.T, s token.RefreshStore, t0 time.Time) {
	r := newRecord(randID("fam-"), t0, t0)
	other := newRecord(r.Family, t0, t0)
	mustCreateRefresh(t, s, r)
	mustCreateRefresh(t, s, other)
	spent := wantSpent(t, s, "fresh record", r, t0.Add(time.Minute), time.Time{})
	for _, tc := range []struct {
		name string
		at   time.Time
	}{
		{"later", t0.Add(2 * time.Minute)},
		{"at the same time", t0.Add(time.Minute)},
		{"earlier (the first SpentAt stays, not the earliest)", t0.Add(time.Second)},
		{"later again", t0.Add(time.Hour)},
	} {
		wantReused(t, s, "spent again "+tc.name, spent, tc.at)
	}
	// Reuse of one record changes nothing for its family.
	wantSpent(t, s, "another record of the family of a reused one", other, t0.Add(3*time.Minute), time.Time{})
	wantFamilyRevoked(t, s, "the family of a reused record (the store reports reuse; revoking is the caller's decision)", r.Family, false)
}

func testSpendNotFound(t *testing.T, s token.RefreshStore, t0 time.Time) {
	r := newRecord(randID("fam-"), t0, t0)
	mustCreateRefresh(t, s, r)
	at := t0.Add(time.Minute)
	flip := func(i int, bit byte) keystore.Digest {
		d := r.Digest
		d[i] ^= bit
		return d
	}
	prefix := func(n int) keystore.Digest {
		d := randDigest()
		copy(d[:n], r.Digest[:n])
		d[n] = r.Digest[n] ^ 1
		return d
	}
	var famBytes keystore.Digest
	copy(famBytes[:], r.Family)
	for _, tc := range []struct {
		name string
		d    keystore.Digest
	}{
		{"an unknown digest", randDigest()},
		{"the zero digest", keystore.Digest{}},
		{"the digest with its first bit flipped", flip(0, 0x80)},
		{"the digest with a middle bit flipped", flip(keystore.DigestSize/2, 0x10)},
		{"the digest with its last bit flipped", flip(keystore.DigestSize-1, 0x01)},
		{"a digest with the same first 8 bytes", prefix(8)},
		{"a digest with the same first 16 bytes", prefix(16)},
		{"a digest with the same first 31 bytes", prefix(keystore.DigestSize - 1)},
		{"the digest of the digest", sha256.Sum256(r.Digest[:])},
		{"the family name's bytes", famBytes},
	} {
		// Twice: a spend that finds nothing must not create anything.
		wantNotFound(t, s, "SpendRefresh of "+tc.name, tc.d, at)
		wantNotFound(t, s, "SpendRefresh of "+tc.name+" again", tc.d, at)
	}
	wantSpent(t, s, "the stored record after spends of digests like it (they must not spend it)", r, at, time.Time{})
}

// testWholeDigest creates records whose digests differ in one bit only:
// they are distinct records, created and spent each on its own.
func testWholeDigest(t *testing.T, s token.RefreshStore, t0 time.Time) {
	base := newRecord(randID("fam-"), t0, t0)
	twins := []token.RefreshRecord{base}
	for _, i := range []int{0, 1, keystore.DigestSize / 2, keystore.DigestSize - 1} {
		r := newRecord(base.Family, t0, t0)
		r.Digest = base.Digest
		r.Digest[i] ^= 1
		twins = append(twins, r)
	}
	for _, r := range twins {
		if err := s.CreateRefresh(t.Context(), r); err != nil {
			t.Fatalf("CreateRefresh of a record whose digest differs from another's in one bit: %v; digests are compared whole", err)
		}
	}
	for i, r := range twins {
		spent := wantSpent(t, s, fmt.Sprintf("twin %d (digests are compared whole)", i), r, t0.Add(time.Duration(i+1)*time.Second), time.Time{})
		wantReused(t, s, fmt.Sprintf("twin %d", i), spent, t0.Add(time.Hour))
	}
}

func testCreateDuplicate(t *testing.T, s token.RefreshStore, t0 time.Time) {
	orig := newRecord(randID("fam-"), t0, t0)
	mustCreateRefresh(t, s, orig)
	spent := wantSpent(t, s, "original record", orig, t0.Add(time.Minute), time.Time{})

	other := newRecord(randID("fam-"), t0, t0.Add(time.Second))
	other.Digest = orig.Digest
	other.ExpiresAt = orig.ExpiresAt.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		r    token.RefreshRecord
	}{
		{"the same record", orig},
		{"the same digest and every other field different", other},
	} {
		err := s.CreateRefresh(t.Context(), tc.r)
		if !errors.Is(err, keystore.ErrExists) {
			t.Errorf("CreateRefresh of %s: got %v, want an error matching keystore.ErrExists", tc.name, err)
		}
		wantReused(t, s, "after CreateRefresh of "+tc.name+" (the existing record, spent, must be unchanged)", spent, t0.Add(2*time.Minute))
	}
	// The rejected record's family was not created: revoking it changes
	// nothing, so a record created in it later is not revoked.
	mustRevokeFamily(t, s, other.Family, t0.Add(3*time.Minute))
	wantFamilyRevoked(t, s, "the family of a rejected CreateRefresh, revoked (it must not have been created)", other.Family, false)
	later := newRecord(other.Family, t0, t0.Add(4*time.Minute))
	mustCreateRefresh(t, s, later)
	wantSpent(t, s, "a record in the family of a rejected CreateRefresh, revoked before the family existed", later, t0.Add(5*time.Minute), time.Time{})
}

func testRevokeFamily(t *testing.T, s token.RefreshStore, t0 time.Time) {
	fam, other := randID("fam-"), randID("fam-")
	a := newRecord(fam, t0, t0)
	b := newRecord(fam, t0, t0)
	c := newRecord(other, t0, t0)
	for _, r := range []token.RefreshRecord{a, b, c} {
		mustCreateRefresh(t, s, r)
	}
	spentB := wantSpent(t, s, "record spent before its family is revoked", b, t0.Add(time.Minute), time.Time{})

	r1 := t0.Add(10 * time.Minute)
	mustRevokeFamily(t, s, fam, r1)
	wantFamilyRevoked(t, s, "a family, right after RevokeFamily (revocation is visible at once)", fam, true)
	wantFamilyRevoked(t, s, "another family", other, false)
	for _, v := range nameVariants(fam) {
		wantFamilyRevoked(t, s, "a name like a revoked family's (names are compared exactly)", v, false)
	}

	// SpendRefresh reports the revocation; it does not judge it.
	spentA := wantSpent(t, s, "unspent record of a revoked family (SpendRefresh spends it and returns the family's RevokedAt)", a, t0.Add(11*time.Minute), r1)
	spentB.RevokedAt = r1
	wantReused(t, s, "record spent before its family was revoked", spentB, t0.Add(11*time.Minute))
	wantSpent(t, s, "record of another family", c, t0.Add(11*time.Minute), time.Time{})
	d := newRecord(fam, t0, t0.Add(12*time.Minute))
	mustCreateRefresh(t, s, d)
	wantSpent(t, s, "record created after its family was revoked (RevokeFamily covers later records)", d, t0.Add(13*time.Minute), r1)

	// Idempotent, keeping the earlier time.
	for _, tc := range []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"again at a later time (the earlier time stays)", r1.Add(time.Hour), r1},
		{"again at the same time", r1, r1},
		{"again at an earlier time (the earlier time is taken)", r1.Add(-5 * time.Minute), r1.Add(-5 * time.Minute)},
	} {
		if err := s.RevokeFamily(t.Context(), fam, tc.at); err != nil {
			t.Errorf("RevokeFamily of a revoked family %s: %v; it must be idempotent", tc.name, err)
			continue
		}
		spentA.RevokedAt = tc.want
		wantReused(t, s, "after RevokeFamily "+tc.name, spentA, t0.Add(20*time.Minute))
		wantFamilyRevoked(t, s, "after RevokeFamily "+tc.name, fam, true)
	}
	wantFamilyRevoked(t, s, "another family, after its neighbour was revoked again", other, false)
}

func testUnknownFamily(t *testing.T, s token.RefreshStore, t0 time.Time) {
	fam := randID("fam-")
	wantFamilyRevoked(t, s, "a family never created", fam, false)
	if err := s.RevokeFamily(t.Context(), fam, t0); err != nil {
		t.Fatalf("RevokeFamily of an unknown family: %v; it is not an error", err)
	}
	wantFamilyRevoked(t, s, "an unknown family after RevokeFamily (nothing changes)", fam, false)
	// Nothing changed: the family, created now, is not revoked.
	r := newRecord(fam, t0, t0.Add(time.Minute))
	mustCreateRefresh(t, s, r)
	wantSpent(t, s, "record created in a family revoked while the store did not know it (RevokeFamily of an unknown family changes nothing)", r, t0.Add(2*time.Minute), time.Time{})
	wantFamilyRevoked(t, s, "a family revoked while the store did not know it", fam, false)
}

// shortLife is how long testExpiry's short-lived records live, from t0.
// It is later than every time the other subtests pass to a store (at most
// 8 hours after t0, in testRefreshConcurrent), so that a store they share
// has no reason to forget those records before testExpiry looks for them,
// and shorter than recordLife, so that testExpiry's own times make no
// other subtest's record expire.
const shortLife = 18 * time.Hour

// testExpiry checks that a store forgets nothing before it expires, and
// that once expired, a record is returned as is (the caller judges) or
// forgotten. The times stay below t0 + recordLife.
func testExpiry(t *testing.T, s token.RefreshStore, t0 time.Time) {
	ctx := t.Context()
	end := t0.Add(shortLife) // the expiry of the short-lived records
	short := func(fam string) token.RefreshRecord {
		r := newRecord(fam, t0, t0)
		r.ExpiresAt = end
		return r
	}
	fam := randID("fam-")
	long := newRecord(fam, t0, t0) // created first: the family outlives short
	long.ExpiresAt = end.Add(3 * time.Hour)
	unspent, spent := short(fam), short(fam)
	other, otherLater := short(randID("fam-")), short(randID("fam-"))
	for _, r := range []token.RefreshRecord{long, unspent, spent, other, otherLater} {
		mustCreateRefresh(t, s, r)
	}
	spentRec := wantSpent(t, s, "record spent long before it expires", spent, t0.Add(time.Second), time.Time{})
	revokedAt := t0.Add(2 * time.Second)
	mustRevokeFamily(t, s, fam, revokedAt)
	spentRec.RevokedAt = revokedAt

	// poke gives the store every chance to forget what expired by at.
	poke := func(at time.Time) {
		t.Helper()
		r := newRecord(randID("fam-"), t0, at)
		r.ExpiresAt = end.Add(3 * time.Hour)
		mustCreateRefresh(t, s, r)
		if _, err := s.SpendRefresh(ctx, r.Digest, at); err != nil {
			t.Fatalf("SpendRefresh of a new record: %v", err)
		}
		mustRevokeFamily(t, s, randID("fam-"), at)
	}

	// Just before the expiry, everything is kept.
	before := end.Add(-time.Second)
	poke(before)
	what := "a second before its expiry, after calls at that time"
	wantSpent(t, s, what+": unspent record of a revoked family", unspent, before, revokedAt)
	wantReused(t, s, what+": spent record (spent records are kept to detect reuse until they expire)", spentRec, before)
	wantSpent(t, s, what+": unspent record", other, before, time.Time{})
	wantFamilyRevoked(t, s, what+": revoked family", fam, true)

	// Past the expiry, the store may forget the short-lived records, but
	// must not judge them, and must keep the family while a record of it
	// lives.
	after := end.Add(time.Second)
	poke(after)
	what = "a second after its expiry, after calls at that time"
	got, err := s.SpendRefresh(ctx, otherLater.Digest, after)
	switch {
	case err == nil:
		want := otherLater
		want.SpentAt = after
		checkRecord(t, what+": unspent record, returned (the caller judges ExpiresAt)", got, want)
	case !errors.Is(err, keystore.ErrNotFound):
		t.Errorf("%s: SpendRefresh of an unspent record: %v; want the record (the caller judges expiry) or an error matching keystore.ErrNotFound (forgotten)", what, err)
	}
	got, err = s.SpendRefresh(ctx, spent.Digest, after)
	switch {
	case err == nil:
		t.Errorf("%s: SpendRefresh of a record spent before succeeded: an expired record is returned as spent or forgotten, never spendable again", what)
	case errors.Is(err, token.ErrRefreshReused):
		checkRecord(t, what+": spent record", got, spentRec)
	case !errors.Is(err, keystore.ErrNotFound):
		t.Errorf("%s: SpendRefresh of a spent record: %v; want an error matching token.ErrRefreshReused or keystore.ErrNotFound (forgotten)", what, err)
	}
	wantFamilyRevoked(t, s, what+": revoked family with a record that has not expired", fam, true)
	wantSpent(t, s, what+": the family's record that has not expired", long, after, revokedAt)
	newer := newRecord(fam, t0, after)
	newer.ExpiresAt = long.ExpiresAt
	mustCreateRefresh(t, s, newer)
	wantSpent(t, s, what+": record created in the revoked family", newer, after, revokedAt)
}

// testSpendConcurrent spends each of several records from many goroutines
// at once: exactly one spend wins, every other reports the reuse with the
// winner's SpentAt.
func testSpendConcurrent(t *testing.T, s token.RefreshStore, t0 time.Time) {
	const (
		rounds  = 5
		racers  = 16
		spacing = time.Millisecond
	)
	for round := range rounds {
		r := newRecord(randID("fam-"), t0, t0)
		mustCreateRefresh(t, s, r)
		type result struct {
			at  time.Time
			rec token.RefreshRecord
			err error
		}
		var (
			results [racers]result
			start   = make(chan struct{})
			wg      sync.WaitGroup
		)
		for i := range racers {
			at := t0.Add(time.Duration(round*racers+i+1) * spacing)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				rec, err := s.SpendRefresh(t.Context(), r.Digest, at)
				results[i] = result{at, rec, err}
			}()
		}
		close(start)
		wg.Wait()

		winners := 0
		var won token.RefreshRecord
		for _, res := range results {
			switch {
			case res.err == nil:
				winners++
				won = r
				won.SpentAt = res.at
				checkRecord(t, "record returned to the winner of concurrent spends", res.rec, won)
			case !errors.Is(res.err, token.ErrRefreshReused):
				t.Errorf("concurrent SpendRefresh of one record: %v, want nil or an error matching token.ErrRefreshReused", res.err)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d of %d concurrent SpendRefresh calls of one record succeeded, want exactly 1", round, winners, racers)
		}
		for _, res := range results {
			if errors.Is(res.err, token.ErrRefreshReused) {
				checkRecord(t, "record returned to a loser of concurrent spends (SpentAt must be the winner's)", res.rec, won)
			}
		}
		wantReused(t, s, "after concurrent spends", won, t0.Add(time.Hour))
	}
}

// testRefreshConcurrent creates, spends and revokes at once, then checks
// that the store is consistent.
func testRefreshConcurrent(t *testing.T, s token.RefreshStore, t0 time.Time) {
	ctx := t.Context()
	const (
		workers = 8
		each    = 6
	)
	shared := randID("fam-") // every worker adds to it and revokes it
	dup := newRecord(randID("fam-"), t0, t0)
	var (
		mine    [workers][]token.RefreshRecord // in shared, then in own families
		created sync.Map                       // digest → record, as spent
		wins    = make(chan struct{}, workers)
		start   = make(chan struct{})
		wg      sync.WaitGroup
	)
	for w := range workers {
		own := randID("fam-")
		for i := range each {
			fam := shared
			if i%2 == 1 {
				fam = own
			}
			mine[w] = append(mine[w], newRecord(fam, t0, t0.Add(time.Duration(i)*time.Second)))
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch err := s.CreateRefresh(ctx, dup); {
			case err == nil:
				wins <- struct{}{}
			case !errors.Is(err, keystore.ErrExists):
				t.Errorf("concurrent CreateRefresh of one record: %v, want nil or an error matching keystore.ErrExists", err)
			}
			for i, r := range mine[w] {
				if err := s.CreateRefresh(ctx, r); err != nil {
					t.Errorf("concurrent CreateRefresh: %v", err)
					return
				}
				at := t0.Add(time.Duration(i+1) * time.Minute)
				got, err := s.SpendRefresh(ctx, r.Digest, at)
				if err != nil {
					t.Errorf("SpendRefresh right after a concurrent CreateRefresh: %v", err)
					return
				}
				r.SpentAt = at
				r.RevokedAt = got.RevokedAt // checked at the end
				checkRecord(t, "record returned by a concurrent SpendRefresh", got, r)
				created.Store(r.Digest, r)
				if i == each/2 {
					if err := s.RevokeFamily(ctx, shared, t0.Add(time.Duration(w+1)*time.Hour)); err != nil {
						t.Errorf("concurrent RevokeFamily: %v", err)
						return
					}
					wantFamilyRevoked(t, s, "a family right after a concurrent RevokeFamily", shared, true)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(wins)
	if t.Failed() {
		return
	}
	if n := len(wins); n != 1 {
		t.Errorf("%d of %d concurrent CreateRefresh calls of one record succeeded, want exactly 1", n, workers)
	}
	// The earliest revocation wins, for every record of the family, and
	// no other family is revoked.
	created.Range(func(_, v any) bool {
		r := v.(token.RefreshRecord)
		r.RevokedAt = time.Time{}
		what := "after the concurrent run, record of a family never revoked"
		if r.Family == shared {
			r.RevokedAt = t0.Add(time.Hour)
			what = "after the concurrent run, record of the family revoked by every worker (the earliest time wins)"
		}
		wantReused(t, s, what, r, t0.Add(2*time.Hour))
		return true
	})
	wantFamilyRevoked(t, s, "after the concurrent run", shared, true)
	wantSpent(t, s, "the record every worker created", dup, t0.Add(2*time.Hour), time.Time{})
}
