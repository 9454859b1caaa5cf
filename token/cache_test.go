package token

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/internal/testclock"
)

// Internal tests of the verified-token cache. Helpers are prefixed fxi so
// that they cannot collide with other internal test files.

// fxiCounter is a deterministic io.Reader for keys and token IDs.
type fxiCounter struct {
	mu sync.Mutex
	n  uint64
}

func (r *fxiCounter) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		r.n++
		p[i] = byte(r.n*0x9E3779B97F4A7C15>>56) ^ byte(r.n)
	}
	return len(p), nil
}

// fxiRevocations is a map-based Revocations that counts its calls and
// does not allocate.
type fxiRevocations struct {
	mu      sync.RWMutex
	revoked map[string]bool
	calls   atomic.Int64
}

func (r *fxiRevocations) Revoke(_ context.Context, id string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[id] = true
	return nil
}

func (r *fxiRevocations) IsRevoked(_ context.Context, id string) (bool, error) {
	r.calls.Add(1)
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revoked[id], nil
}

// fxiKeys is a KeyChecker that counts its calls.
type fxiKeys struct {
	mu    sync.RWMutex
	bad   map[string]bool
	calls atomic.Int64
}

var fxiKeyRevoked = &auth.Error{Kind: auth.ErrInvalidCredential, Err: errors.New("revoked")}

func (k *fxiKeys) CheckKey(_ context.Context, id string) error {
	k.calls.Add(1)
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.bad[id] {
		return fxiKeyRevoked
	}
	return nil
}

// fxiSetup is an HS256 issuer and a verifier with a cache of the given
// size, a signature counter, and the clock both share.
type fxiSetup struct {
	clock *testclock.Clock
	iss   *Issuer
	v     *Verifier
	rev   *fxiRevocations
	keys  *fxiKeys
	sigs  atomic.Int64
}

func newFxiSetup(t testing.TB, cache int, opts ...VerifierOption) *fxiSetup {
	t.Helper()
	s := &fxiSetup{clock: testclock.New(time.Unix(1_760_000_000, 0)), rev: &fxiRevocations{revoked: map[string]bool{}}, keys: &fxiKeys{bad: map[string]bool{}}}
	rnd := &fxiCounter{}
	k, err := GenerateSigningKey(HS256, rnd)
	if err != nil {
		t.Fatal(err)
	}
	s.iss, err = NewIssuer("https://iss.test", k, WithAudience("api"), WithIssuerClock(s.clock.Now), WithIssuerRandom(rnd),
		WithLifetime(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	base := []VerifierOption{
		WithExpectedIssuer("https://iss.test"), WithExpectedAudience("api"), WithAlgorithms(HS256),
		WithVerifierClock(s.clock.Now), WithCache(cache),
	}
	s.v, err = NewVerifier(s.iss.KeySet(), append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.v.onSignature = func() { s.sigs.Add(1) }
	return s
}

func (s *fxiSetup) issue(t testing.TB, key, session string) string {
	t.Helper()
	tok, _, err := s.iss.Issue(auth.Principal{Method: auth.MethodAPIKey, KeyID: key, Project: "p", Scopes: []string{"a", "b"}}, nil, session)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCacheShardsAndCapacity(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 5, 31, 64, 100, 1000, 10000, 12345} {
		c := newTokenCache(n)
		total := 0
		for i := range c.shards {
			total += c.shards[i].limit
		}
		if total != n {
			t.Errorf("capacity %d: shard limits add up to %d", n, total)
		}
		if len(c.shards)&(len(c.shards)-1) != 0 || len(c.shards) > 64 {
			t.Errorf("capacity %d: %d shards", n, len(c.shards))
		}
		if len(c.shards) > 1 && n/len(c.shards) < 32 {
			t.Errorf("capacity %d: %d shards of %d", n, len(c.shards), n/len(c.shards))
		}
	}
}

// TestCacheHotEntrySurvivesFlood: a token used between every insert stays
// cached while ten times the capacity of other valid tokens pass through,
// and the cache never holds more than its capacity.
func TestCacheHotEntrySurvivesFlood(t *testing.T) {
	t.Parallel()
	const capacity = 64
	s := newFxiSetup(t, capacity)
	ctx := context.Background()
	hot := s.issue(t, "key_hot", "")
	if _, err := s.v.Authenticate(ctx, hot); err != nil {
		t.Fatal(err)
	}
	flood := make([]string, 10*capacity)
	for i := range flood {
		flood[i] = s.issue(t, fmt.Sprintf("key_%d", i), "")
	}
	before := s.sigs.Load()
	for i, tok := range flood {
		if _, err := s.v.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := s.v.Authenticate(ctx, hot); err != nil {
			t.Fatal(err)
		}
		if n := s.v.cache.len(); n > capacity {
			t.Fatalf("after %d inserts the cache holds %d entries, capacity %d", i+1, n, capacity)
		}
	}
	if got, want := s.sigs.Load()-before, int64(len(flood)); got != want {
		t.Fatalf("%d signature checks for %d flood tokens and %d hot hits: the hot token was evicted %d times",
			got, len(flood), len(flood), got-want)
	}
	if n := s.v.cache.len(); n != capacity {
		t.Errorf("cache holds %d entries, want it full (%d)", n, capacity)
	}
}

// TestCacheForgedFloodDoesNotGrow: invalid tokens are never inserted.
func TestCacheForgedFloodDoesNotGrow(t *testing.T) {
	t.Parallel()
	s := newFxiSetup(t, 64)
	ctx := context.Background()
	hot := s.issue(t, "key_hot", "")
	if _, err := s.v.Authenticate(ctx, hot); err != nil {
		t.Fatal(err)
	}
	base := s.issue(t, "key_x", "")
	for i := range 1000 {
		// A valid header and claims with a wrong signature, all distinct.
		forged := base[:len(base)-8] + fmt.Sprintf("%08d", i)
		forged = forged[:len(forged)-1] + "A"
		if _, err := s.v.Authenticate(ctx, forged); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if n := s.v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries after a flood of forged tokens, want 1", n)
	}
	sigs := s.sigs.Load()
	if _, err := s.v.Authenticate(ctx, hot); err != nil || s.sigs.Load() != sigs {
		t.Fatalf("hot token: %v, %d signature checks", err, s.sigs.Load()-sigs)
	}
}

// TestCacheNeverOutlivesExp: at exp the cache stops answering; within the
// leeway the full verification still accepts the token, after it rejects.
func TestCacheNeverOutlivesExp(t *testing.T) {
	t.Parallel()
	s := newFxiSetup(t, 100)
	ctx := context.Background()
	tok := s.issue(t, "key_1", "")
	exp := s.clock.Now().Add(10 * time.Minute)
	check := func(when time.Time, wantErr error, wantSigs int64) {
		t.Helper()
		s.clock.Set(when)
		before := s.sigs.Load()
		_, err := s.v.Authenticate(ctx, tok)
		if !errors.Is(err, wantErr) && !(err == nil && wantErr == nil) {
			t.Fatalf("at exp%+v: %v, want %v", when.Sub(exp), err, wantErr)
		}
		if got := s.sigs.Load() - before; got != wantSigs {
			t.Fatalf("at exp%+v: %d signature checks, want %d", when.Sub(exp), got, wantSigs)
		}
	}
	start := s.clock.Now()
	check(start, nil, 1)                         // miss: verified and cached
	check(start.Add(time.Minute), nil, 0)        // hit
	check(exp.Add(-time.Nanosecond), nil, 0)     // still a hit
	check(exp, nil, 1)                           // not served: verified again, within the leeway
	check(exp.Add(10*time.Second), nil, 1)       // and again: not re-inserted
	check(exp.Add(DefaultLeeway), ErrExpired, 1) // past the leeway
	check(exp.Add(DefaultLeeway+time.Hour), ErrExpired, 1)
}

// TestCacheRechecksOnEveryHit: revocation (jti and sid) and the API key
// are checked on every hit, not only when the token is verified.
func TestCacheRechecksOnEveryHit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("jti", func(t *testing.T) {
		t.Parallel()
		s := newFxiSetup(t, 100)
		s.v.revocations = s.rev
		tok := s.issue(t, "key_1", "")
		for i := range 5 {
			if _, err := s.v.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if got := s.rev.calls.Load(); got != int64(i+1) {
				t.Fatalf("after %d requests, %d revocation checks", i+1, got)
			}
		}
		c, err := s.v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.rev.Revoke(ctx, c.ID, time.Time{})
		if _, err := s.v.Authenticate(ctx, tok); !errors.Is(err, ErrRevoked) {
			t.Fatalf("revoked jti on a cache hit: %v", err)
		}
		if s.sigs.Load() != 1 {
			t.Fatalf("%d signature checks: the revocation was not found on a hit", s.sigs.Load())
		}
	})
	t.Run("sid", func(t *testing.T) {
		t.Parallel()
		s := newFxiSetup(t, 100)
		s.v.revocations = s.rev
		tok := s.issue(t, "key_1", "fam-1")
		for range 3 {
			if _, err := s.v.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.rev.calls.Load(); got != 6 {
			t.Fatalf("%d revocation checks for 3 requests with a sid, want 6", got)
		}
		_ = s.rev.Revoke(ctx, "sid:fam-1", time.Time{})
		if _, err := s.v.Authenticate(ctx, tok); !errors.Is(err, ErrRevoked) {
			t.Fatalf("revoked session on a cache hit: %v", err)
		}
	})
	t.Run("API key", func(t *testing.T) {
		t.Parallel()
		s := newFxiSetup(t, 100)
		s.v.keyChecker = s.keys
		tok := s.issue(t, "key_1", "")
		for i := range 3 {
			if _, err := s.v.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
			if got := s.keys.calls.Load(); got != int64(i+1) {
				t.Fatalf("after %d requests, %d key checks", i+1, got)
			}
		}
		s.keys.mu.Lock()
		s.keys.bad["key_1"] = true
		s.keys.mu.Unlock()
		if _, err := s.v.Authenticate(ctx, tok); !errors.Is(err, ErrKeyRevoked) {
			t.Fatalf("revoked API key on a cache hit: %v", err)
		}
	})
}

// TestCacheHitAllocations: a hit allocates nothing, with revocation and
// key checks that do not allocate themselves.
func TestCacheHitAllocations(t *testing.T) { // not parallel: AllocsPerRun
	s := newFxiSetup(t, 100, WithRevocations(&fxiRevocations{revoked: map[string]bool{}}), WithKeyChecker(&fxiKeys{}))
	ctx := context.Background()
	tok := s.issue(t, "key_1", "fam")
	if _, err := s.v.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if n := testalloc.Min(200, func() {
		if _, err := s.v.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Authenticate on a cache hit allocates %v times", n)
	}
	// Verify copies the claims: one allocation.
	if n := testalloc.Min(200, func() { _, _ = s.v.Verify(ctx, tok) }); n != 1 {
		t.Errorf("Verify on a cache hit allocates %v times, want 1", n)
	}
}

// TestCacheClaimsAreCopies: changing the claims Verify returns does not
// change what the cache serves next.
func TestCacheClaimsAreCopies(t *testing.T) {
	t.Parallel()
	s := newFxiSetup(t, 100)
	ctx := context.Background()
	tok := s.issue(t, "key_1", "")
	first, err := s.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	exp := first.ExpiresAt.Time
	first.Subject = "mallory"
	first.ExpiresAt.Time = exp.Add(time.Hour)
	first.Audience[0] = "other"
	second, err := s.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if second.Subject != "key_1" || !second.ExpiresAt.Equal(exp) || second.Audience[0] != "api" {
		t.Fatalf("cached claims changed through a returned copy: %+v", second)
	}
	if s.sigs.Load() != 1 {
		t.Fatalf("%d signature checks, want 1 (the second Verify is a hit)", s.sigs.Load())
	}
}

// TestCacheConcurrentFlood mixes hits, inserts and evictions from many
// goroutines, for the race detector, and checks the bound afterwards.
func TestCacheConcurrentFlood(t *testing.T) {
	t.Parallel()
	c := newTokenCache(100)
	e := &entry{expires: time.Now().Add(time.Hour).UnixNano()}
	now := time.Now().UnixNano()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				var k [sha256.Size]byte
				binary.LittleEndian.PutUint64(k[:], uint64(g*100000+i))
				k = sha256.Sum256(k[:])
				if c.get(&k, now) == nil {
					c.put(&k, e, now)
				}
			}
		}()
	}
	wg.Wait()
	if n := c.len(); n > 100 {
		t.Fatalf("cache holds %d entries, capacity 100", n)
	}
	for i := range c.shards {
		sh := &c.shards[i]
		if len(sh.index) != len(sh.slots) {
			t.Fatalf("shard %d: index of %d, %d slots", i, len(sh.index), len(sh.slots))
		}
		for k, j := range sh.index {
			if sh.slots[j].key != k {
				t.Fatalf("shard %d: index points at the wrong slot", i)
			}
		}
	}
}

// TestCacheDisabled: WithCache(0) verifies every time.
func TestCacheDisabled(t *testing.T) {
	t.Parallel()
	s := newFxiSetup(t, 0)
	tok := s.issue(t, "key_1", "")
	for range 3 {
		if _, err := s.v.Authenticate(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if s.sigs.Load() != 3 || s.v.cache != nil {
		t.Fatalf("%d signature checks with the cache off, want 3", s.sigs.Load())
	}
}

// fxiSwitchKeys is a KeySource whose keys can change, like a remote JWK
// Set after a refresh.
type fxiSwitchKeys struct {
	mu   sync.Mutex
	keys map[string]VerificationKey
}

func (s *fxiSwitchKeys) VerificationKey(_ context.Context, kid string) (VerificationKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return VerificationKey{}, ErrUnknownKID
}

func (s *fxiSwitchKeys) set(kid string, k *VerificationKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k == nil {
		delete(s.keys, kid)
		return
	}
	s.keys[kid] = *k
}

// TestCacheHonoursKeyChanges: a cached token stops being served when its
// key is removed from, or replaced in, the key source.
func TestCacheHonoursKeyChanges(t *testing.T) {
	t.Parallel()
	s := newFxiSetup(t, 100)
	signer := s.iss.signer
	pub := signer.Public()
	src := &fxiSwitchKeys{keys: map[string]VerificationKey{pub.KID: pub}}
	s.v.keys = src
	ctx := context.Background()
	tok := s.issue(t, "key_1", "")
	for range 3 {
		if _, err := s.v.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if s.sigs.Load() != 1 {
		t.Fatalf("%d signature checks, want 1", s.sigs.Load())
	}
	// A copy of the same key (a refreshed JWK Set) keeps the hit.
	again := VerificationKey{KID: pub.KID, Alg: pub.Alg, Key: append([]byte(nil), pub.Key.([]byte)...)}
	src.set(pub.KID, &again)
	if _, err := s.v.Authenticate(ctx, tok); err != nil || s.sigs.Load() != 1 {
		t.Fatalf("same key, new copy: %v, %d signature checks", err, s.sigs.Load())
	}
	// Another key under the same kid: verified again, and refused.
	other := VerificationKey{KID: pub.KID, Alg: HS256, Key: make([]byte, 32)}
	src.set(pub.KID, &other)
	if _, err := s.v.Authenticate(ctx, tok); !errors.Is(err, ErrSignature) {
		t.Fatalf("replaced key: %v", err)
	}
	// The key removed: refused as an unknown kid.
	src.set(pub.KID, nil)
	if _, err := s.v.Authenticate(ctx, tok); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("removed key: %v", err)
	}
	// And back: accepted again.
	src.set(pub.KID, &pub)
	if _, err := s.v.Authenticate(ctx, tok); err != nil {
		t.Fatalf("restored key: %v", err)
	}
}
