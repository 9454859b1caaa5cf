package tokentest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/token/tokentest"
)

// The suites are tested against a small reference store and revocation
// set, which must pass, and against copies of them broken in one way
// each, which must fail with the message of the check meant to catch
// them. A broken copy runs in a child process (a test cannot watch
// another test fail in its own process).

// mutantEnv names the broken copy the child process runs.
const mutantEnv = "TOKENTEST_MUTANT"

// refStore is a simple correct [token.RefreshStore], or a broken one when
// bug is set.
type refStore struct {
	bug  string
	mu   sync.Mutex
	recs map[keystore.Digest]*token.RefreshRecord // RevokedAt unused but for bug "per-record-revocation"
	fams map[string]*refFamily
}

type refFamily struct {
	expires, revoked time.Time
}

func newRefStore(bug string) *refStore {
	return &refStore{bug: bug, recs: map[keystore.Digest]*token.RefreshRecord{}, fams: map[string]*refFamily{}}
}

func (s *refStore) key(d keystore.Digest) keystore.Digest {
	if s.bug == "digest-prefix" {
		clear(d[16:])
	}
	return d
}

func (s *refStore) famKey(f string) string {
	if s.bug == "family-case" {
		return strings.ToLower(f)
	}
	return f
}

// prune forgets the records and families that expired by now.
func (s *refStore) prune(now time.Time) {
	if now.IsZero() || s.bug == "judges-expiry" { // a store that never forgets, but judges
		return
	}
	if s.bug == "prune-early" {
		now = now.Add(time.Hour)
	}
	for k, r := range s.recs {
		if !r.ExpiresAt.After(now) || s.bug == "forget-spent" && !r.SpentAt.IsZero() {
			delete(s.recs, k)
		}
	}
	for k, f := range s.fams {
		if !f.expires.After(now) {
			delete(s.fams, k)
		}
	}
}

func (s *refStore) CreateRefresh(_ context.Context, r token.RefreshRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(r.IssuedAt)
	fk := s.famKey(r.Family)
	if s.bug == "failed-create-makes-family" && s.fams[fk] == nil {
		s.fams[fk] = &refFamily{expires: r.ExpiresAt}
	}
	if _, ok := s.recs[s.key(r.Digest)]; ok && s.bug != "create-upserts" {
		return keystore.ErrExists
	}
	f := s.fams[fk]
	switch {
	case f == nil:
		s.fams[fk] = &refFamily{expires: r.ExpiresAt}
	case s.bug == "family-expiry-last" || r.ExpiresAt.After(f.expires):
		f.expires = r.ExpiresAt
	}
	r.Scopes = append([]string(nil), r.Scopes...)
	if s.bug != "keeps-revokedat" {
		r.RevokedAt = time.Time{}
	}
	s.recs[s.key(r.Digest)] = &r
	return nil
}

// record returns a copy of r with its family's revocation time.
func (s *refStore) record(r *token.RefreshRecord) token.RefreshRecord {
	out := *r
	out.Scopes = append([]string(nil), r.Scopes...)
	if f := s.fams[s.famKey(r.Family)]; f != nil && s.bug != "per-record-revocation" &&
		(s.bug != "keeps-revokedat" || !f.revoked.IsZero()) {
		out.RevokedAt = f.revoked
	}
	return out
}

func (s *refStore) SpendRefresh(_ context.Context, d keystore.Digest, at time.Time) (token.RefreshRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(at)
	r := s.recs[s.key(d)]
	switch {
	case r == nil && s.bug == "not-found-error":
		return token.RefreshRecord{}, errors.New("no such token")
	case r == nil:
		return token.RefreshRecord{}, keystore.ErrNotFound
	case s.bug == "judges-expiry" && !at.Before(r.ExpiresAt):
		return token.RefreshRecord{}, errors.New("expired")
	case s.bug == "judges-revocation" && !s.record(r).RevokedAt.IsZero():
		return token.RefreshRecord{}, errors.New("revoked")
	}
	if !r.SpentAt.IsZero() {
		switch s.bug {
		case "reuse-succeeds":
			return s.record(r), nil
		case "reuse-respends":
			r.SpentAt = at
		case "reuse-empty-record":
			return token.RefreshRecord{}, token.ErrRefreshReused
		}
		return s.record(r), token.ErrRefreshReused
	}
	if s.bug == "spend-not-atomic" {
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
		s.mu.Lock()
	}
	r.SpentAt = at
	if s.bug == "spent-seconds" {
		r.SpentAt = at.Truncate(time.Second)
	}
	return s.record(r), nil
}

func (s *refStore) RevokeFamily(_ context.Context, family string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(at)
	fk := s.famKey(family)
	if s.bug == "per-record-revocation" {
		for _, r := range s.recs {
			if r.Family == family && (r.RevokedAt.IsZero() || at.Before(r.RevokedAt)) {
				r.RevokedAt = at
			}
		}
		return nil
	}
	f := s.fams[fk]
	if f == nil && s.bug == "revoke-creates-family" {
		f = &refFamily{expires: at.Add(24 * time.Hour)}
		s.fams[fk] = f
	}
	if f != nil && (f.revoked.IsZero() || at.Before(f.revoked) || s.bug == "revoke-last-wins") {
		f.revoked = at
	}
	return nil
}

func (s *refStore) FamilyRevoked(_ context.Context, family string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bug == "per-record-revocation" {
		for _, r := range s.recs {
			if r.Family == family && !r.RevokedAt.IsZero() {
				return true, nil
			}
		}
		return false, nil
	}
	f := s.fams[s.famKey(family)]
	return f != nil && !f.revoked.IsZero(), nil
}

// refRevocations is a simple correct [token.Revocations], or a broken one
// when bug is set.
type refRevocations struct {
	bug   string
	now   func() time.Time
	mu    sync.Mutex
	until map[string]time.Time
}

func (r *refRevocations) key(id string) string {
	switch r.bug {
	case "id-case":
		return strings.ToLower(id)
	case "id-truncated":
		return id[:min(len(id), 64)]
	}
	return id
}

func (r *refRevocations) Revoke(_ context.Context, id string, exp time.Time) error {
	if id == "" && r.bug != "accepts-empty-id" {
		return errors.New("empty id")
	}
	now := r.now()
	keep := exp.Add(token.RevocationSlack)
	switch r.bug {
	case "no-slack":
		keep = exp
	case "skips-expired":
		if exp.Before(now) {
			return nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bug != "never-drops" {
		for k, u := range r.until {
			if !u.After(now) {
				delete(r.until, k)
			}
		}
	}
	if !keep.After(now) {
		return nil
	}
	old, ok := r.until[r.key(id)]
	if r.bug == "expiry-not-atomic" {
		// Check, then act on what was read: right one call at a time,
		// wrong when another Revoke of the ID lands in between.
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
		r.mu.Lock()
	}
	switch {
	case r.bug == "expiry-last-wins":
		r.until[r.key(id)] = keep
	case r.bug == "expiry-first-wins":
		if !ok {
			r.until[r.key(id)] = keep
		}
	case !ok || keep.After(old):
		r.until[r.key(id)] = keep
	}
	return nil
}

func (r *refRevocations) IsRevoked(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.until[r.key(id)]
	return ok, nil
}

func runRefresh(t *testing.T, bug string) {
	tokentest.RunRefreshStore(t, func(*testing.T) token.RefreshStore { return newRefStore(bug) })
}

func runRevocations(t *testing.T, bug string) {
	tokentest.RunRevocations(t, func(_ *testing.T, now func() time.Time) token.Revocations {
		return &refRevocations{bug: bug, now: now, until: map[string]time.Time{}}
	})
}

// TestReference: the reference store and revocation set pass.
func TestReference(t *testing.T) {
	t.Parallel()
	t.Run("refresh", func(t *testing.T) { t.Parallel(); runRefresh(t, "") })
	t.Run("revocations", func(t *testing.T) { t.Parallel(); runRevocations(t, "") })
}

// TestMutant runs the broken copy that mutantEnv names; TestMutants
// starts it.
func TestMutant(t *testing.T) {
	m := os.Getenv(mutantEnv)
	if m == "" {
		t.Skip(mutantEnv + " not set: this test runs in a child process of TestMutants")
	}
	suite, bug, _ := strings.Cut(m, ":")
	if suite == "refresh" {
		runRefresh(t, bug)
	} else {
		runRevocations(t, bug)
	}
}

// TestMutants checks that each broken copy fails the suite, with the
// message of the check meant to catch it.
func TestMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process per broken store")
	}
	tests := []struct {
		suite, bug, want string
	}{
		{"refresh", "reuse-succeeds", "SpendRefresh of a spent record succeeded"},
		{"refresh", "reuse-respends", "SpentAt is"},
		{"refresh", "reuse-empty-record", "Family is \"\""},
		{"refresh", "not-found-error", "want an error matching keystore.ErrNotFound"},
		{"refresh", "digest-prefix", "digests are compared whole"},
		{"refresh", "spend-not-atomic", "concurrent SpendRefresh calls of one record succeeded, want exactly 1"},
		{"refresh", "spent-seconds", "SpentAt is"},
		{"refresh", "create-upserts", "want an error matching keystore.ErrExists"},
		{"refresh", "failed-create-makes-family", "the family of a rejected CreateRefresh"},
		{"refresh", "keeps-revokedat", "RevokedAt is filled from the family"},
		{"refresh", "per-record-revocation", "record created after its family was revoked"},
		{"refresh", "revoke-last-wins", "again at a later time (the earlier time stays)"},
		{"refresh", "revoke-creates-family", "RevokeFamily of an unknown family changes nothing"},
		{"refresh", "family-case", "names are compared exactly"},
		{"refresh", "judges-expiry", "the caller judges expiry"},
		{"refresh", "judges-revocation", "unspent record of a revoked family"},
		{"refresh", "prune-early", "a second before its expiry"},
		{"refresh", "forget-spent", "spent records are kept to detect reuse"},
		{"refresh", "family-expiry-last", "revoked family with a record that has not expired"},
		{"revocations", "accepts-empty-id", "Revoke of an empty ID: no error"},
		{"revocations", "id-case", "IDs are compared exactly"},
		{"revocations", "id-truncated", "IDs are compared exactly"},
		{"revocations", "no-slack", "entries are kept that long"},
		{"revocations", "skips-expired", "a token that expired a second before Revoke"},
		{"revocations", "never-drops", "entries must not be kept forever"},
		{"revocations", "expiry-last-wins", "then an early one, past the early one (the later expiry is kept)"},
		{"revocations", "expiry-first-wins", "then a late one, past the early one (the later expiry is kept)"},
		{"revocations", "expiry-not-atomic", "past all but the latest (the latest is kept)"},
	}
	for _, tc := range tests {
		t.Run(tc.suite+"/"+tc.bug, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMutant$", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+tc.suite+":"+tc.bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a %s store broken by %q", tc.suite, tc.bug)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("the suite failed a %s store broken by %q, but without the message %q:\n%s", tc.suite, tc.bug, tc.want, out)
			}
		})
	}
}
