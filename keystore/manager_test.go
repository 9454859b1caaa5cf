package keystore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// newClock returns a settable clock for tests.
func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
}

// countingStore wraps a MemoryStore, counts calls and can be made to fail.
type countingStore struct {
	*keystore.MemoryStore
	lookups atomic.Int64
	touches atomic.Int64
	fail    atomic.Pointer[error]
	// stale, when set, makes LookupDigest hide LastUsedAt, as a cache in
	// front of the store would.
	stale atomic.Bool
}

func newCountingStore() *countingStore {
	return &countingStore{MemoryStore: keystore.NewMemoryStore()}
}

func (s *countingStore) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	s.lookups.Add(1)
	if err := s.fail.Load(); err != nil {
		return keystore.Record{}, *err
	}
	r, err := s.MemoryStore.LookupDigest(ctx, d)
	if s.stale.Load() {
		r.LastUsedAt = time.Time{}
	}
	return r, err
}

func (s *countingStore) Touch(ctx context.Context, id string, at time.Time) error {
	s.touches.Add(1)
	return s.MemoryStore.Touch(ctx, id, at)
}

func (s *countingStore) failWith(err error) { s.fail.Store(&err) }

func newManager(t *testing.T, store keystore.Store, c *testclock.Clock, opts ...keystore.ManagerOption) *keystore.Manager {
	t.Helper()
	opts = append([]keystore.ManagerOption{keystore.WithClock(c.Now)}, opts...)
	m, err := keystore.NewManager(store, opts...)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

func issue(t *testing.T, m *keystore.Manager, spec keystore.KeySpec) (keystore.Key, keystore.Record) {
	t.Helper()
	if spec.Project == "" {
		spec.Project = "default"
	}
	k, r, err := m.Issue(context.Background(), spec)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return k, r
}

func TestManagerIssue(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := newCountingStore()
	m := newManager(t, store, c)
	ctx := context.Background()

	k, rec := issue(t, m, keystore.KeySpec{
		Name:      "ci",
		Scopes:    []string{"models:read", "chat:write", "models:read"},
		ExpiresAt: c.Now().Add(time.Hour),
		Metadata:  map[string]string{"owner": "ops"},
	})
	if _, err := m.Format().Parse(k.Plaintext()); err != nil {
		t.Fatalf("issued key does not parse: %v", err)
	}
	if got, want := rec.Hint, k.Hint(); got != want {
		t.Errorf("Hint = %q, want %q", got, want)
	}
	if !strings.HasPrefix(rec.ID, "key_") || len(rec.ID) != 20 {
		t.Errorf("ID = %q, want key_ and 16 characters", rec.ID)
	}
	if strings.Contains(rec.ID, k.Plaintext()[8:]) {
		t.Errorf("ID is derived from the key")
	}
	if got := strings.Join(rec.Scopes, " "); got != "chat:write models:read" {
		t.Errorf("Scopes = %q, want sorted and without duplicates", got)
	}
	if !rec.CreatedAt.Equal(c.Now()) {
		t.Errorf("CreatedAt = %v, want %v", rec.CreatedAt, c.Now())
	}

	stored, err := store.Get(ctx, rec.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	h, _ := keystore.NewHasher(nil)
	if !stored.Digest.Equal(h.Digest(k.Plaintext())) {
		t.Errorf("stored digest is not the SHA-256 of the key")
	}
	for _, field := range []string{stored.ID, stored.Name, stored.Hint, stored.Project, stored.Digest.String()} {
		if strings.Contains(field, k.Plaintext()) {
			t.Fatalf("the store holds the plaintext key in %q", field)
		}
	}

	// Two keys are never alike.
	k2, rec2 := issue(t, m, keystore.KeySpec{})
	if k2.Plaintext() == k.Plaintext() || rec2.ID == rec.ID {
		t.Fatalf("two issued keys share a key or an ID")
	}
}

func TestManagerIssueInvalid(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := newManager(t, keystore.NewMemoryStore(), c)
	tests := []struct {
		name string
		spec keystore.KeySpec
	}{
		{"no project", keystore.KeySpec{Name: "x"}},
		{"scope with space", keystore.KeySpec{Project: "p", Scopes: []string{"chat write"}}},
		{"empty scope", keystore.KeySpec{Project: "p", Scopes: []string{""}}},
		{"scope with quote", keystore.KeySpec{Project: "p", Scopes: []string{`a"b`}}},
		{"non-ASCII scope", keystore.KeySpec{Project: "p", Scopes: []string{"modèles"}}},
		{"expiry now", keystore.KeySpec{Project: "p", ExpiresAt: c.Now()}},
		{"expiry in the past", keystore.KeySpec{Project: "p", ExpiresAt: c.Now().Add(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := m.Issue(context.Background(), tt.spec)
			if !errors.Is(err, keystore.ErrInvalidSpec) {
				t.Fatalf("Issue(%+v) error = %v, want ErrInvalidSpec", tt.spec, err)
			}
		})
	}
	list, err := m.List(context.Background(), "p")
	if err != nil || len(list) != 0 {
		t.Fatalf("invalid specs stored keys: %v, %v", list, err)
	}
}

func TestManagerVerify(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := newCountingStore()
	m := newManager(t, store, c)
	ctx := context.Background()

	good, goodRec := issue(t, m, keystore.KeySpec{Scopes: []string{"models:read"}})
	revoked, revokedRec := issue(t, m, keystore.KeySpec{})
	if _, err := m.Revoke(ctx, revokedRec.ID); err != nil {
		t.Fatal(err)
	}
	expiring, _ := issue(t, m, keystore.KeySpec{ExpiresAt: c.Now().Add(time.Minute)})
	disabled, disabledRec := issue(t, m, keystore.KeySpec{})
	if _, err := m.SetDisabled(ctx, disabledRec.ID, true); err != nil {
		t.Fatal(err)
	}
	unknown, _ := keystore.DefaultFormat().Generate()
	c.Advance(2 * time.Minute) // the expiring key is now expired

	body := good.Plaintext()[len("halfred_"):]
	tests := []struct {
		name      string
		key       string
		want      error
		wantStore bool // whether the store may be consulted
	}{
		{"valid", good.Plaintext(), nil, true},
		{"unknown", unknown.Plaintext(), keystore.ErrUnknownKey, true},
		{"revoked", revoked.Plaintext(), keystore.ErrRevoked, true},
		{"expired", expiring.Plaintext(), keystore.ErrExpired, true},
		{"disabled", disabled.Plaintext(), keystore.ErrDisabled, true},
		{"upper-case prefix", "HALFRED_" + body, keystore.ErrPrefix, false},
		{"dash separator", "halfred-" + body, keystore.ErrPrefix, false},
		{"truncated", good.Plaintext()[:35], keystore.ErrLength, false},
		{"empty", "", keystore.ErrMalformedKey, false},
		{"plus sign", good.Plaintext()[:20] + "+" + good.Plaintext()[21:], keystore.ErrCharset, false},
		{"checksum", flipLast(good.Plaintext()), keystore.ErrChecksum, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := store.lookups.Load()
			rec, err := m.Verify(ctx, tt.key)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if rec.ID != goodRec.ID {
					t.Fatalf("Verify returned %s, want %s", rec.ID, goodRec.ID)
				}
			} else if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if err != nil && tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Fatalf("error %q contains the key", err)
			}
			if looked := store.lookups.Load() - before; !tt.wantStore && looked != 0 {
				t.Fatalf("a malformed key cost %d store lookups, want 0", looked)
			}
		})
	}

	// Enabling the disabled key makes it work again; revocation is final.
	if _, err := m.SetDisabled(ctx, disabledRec.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, disabled.Plaintext()); err != nil {
		t.Fatalf("re-enabled key: %v", err)
	}
}

func flipLast(s string) string {
	b := []byte(s)
	if b[len(b)-1] == 'a' {
		b[len(b)-1] = 'b'
	} else {
		b[len(b)-1] = 'a'
	}
	return string(b)
}

func TestManagerVerifyStoreFailure(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := newCountingStore()
	m := newManager(t, store, c)
	k, _ := issue(t, m, keystore.KeySpec{})

	for _, cause := range []error{errors.New("connection refused"), context.DeadlineExceeded} {
		store.failWith(cause)
		_, err := m.Verify(context.Background(), k.Plaintext())
		if !errors.Is(err, cause) {
			t.Fatalf("Verify error = %v, want it to wrap %v", err, cause)
		}
		for _, invalid := range []error{keystore.ErrUnknownKey, keystore.ErrRevoked, keystore.ErrExpired, keystore.ErrNotFound} {
			if errors.Is(err, invalid) {
				t.Fatalf("a store failure was reported as %v", invalid)
			}
		}
		_, err = m.Authenticate(context.Background(), k.Plaintext())
		if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidCredential) {
			t.Fatalf("Authenticate error = %v, want ErrUnavailable only", err)
		}
	}
}

// wrongDigestStore returns a record for any digest: a broken store.
type wrongDigestStore struct{ *keystore.MemoryStore }

func (s wrongDigestStore) LookupDigest(context.Context, keystore.Digest) (keystore.Record, error) {
	return keystore.Record{ID: "key_x", Project: "p", Digest: keystore.Digest{1}}, nil
}

func TestManagerRejectsRecordForAnotherDigest(t *testing.T) {
	t.Parallel()
	m := newManager(t, wrongDigestStore{keystore.NewMemoryStore()}, newClock())
	k, _ := keystore.DefaultFormat().Generate()
	_, err := m.Verify(context.Background(), k.Plaintext())
	if err == nil {
		t.Fatal("Verify accepted a record whose digest differs from the key's")
	}
	if _, err := m.Authenticate(context.Background(), k.Plaintext()); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Authenticate error = %v, want ErrUnavailable", err)
	}
}

func TestManagerPepperRotation(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := keystore.NewMemoryStore()
	oldPepper := []byte("old pepper, 32 bytes long.......")
	newPepper := []byte("new pepper, 32 bytes long.......")
	hOld, err := keystore.NewHasher(oldPepper)
	if err != nil {
		t.Fatal(err)
	}
	hNew, err := keystore.NewHasher(newPepper, oldPepper)
	if err != nil {
		t.Fatal(err)
	}
	hOnlyNew, err := keystore.NewHasher(newPepper)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	before := newManager(t, store, c, keystore.WithHasher(hOld))
	oldKey, _ := issue(t, before, keystore.KeySpec{})

	after := newManager(t, store, c, keystore.WithHasher(hNew))
	if _, err := after.Verify(ctx, oldKey.Plaintext()); err != nil {
		t.Fatalf("a key issued under the previous pepper stopped working: %v", err)
	}
	newKey, _ := issue(t, after, keystore.KeySpec{})
	if _, err := after.Verify(ctx, newKey.Plaintext()); err != nil {
		t.Fatalf("a key issued under the new pepper: %v", err)
	}

	dropped := newManager(t, store, c, keystore.WithHasher(hOnlyNew))
	if _, err := dropped.Verify(ctx, oldKey.Plaintext()); !errors.Is(err, keystore.ErrUnknownKey) {
		t.Fatalf("after dropping the old pepper: error = %v, want ErrUnknownKey", err)
	}
	if _, err := before.Verify(ctx, newKey.Plaintext()); !errors.Is(err, keystore.ErrUnknownKey) {
		t.Fatalf("a manager without the new pepper accepted a new key: %v", err)
	}
}

func TestManagerRotate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("immediate", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		m := newManager(t, keystore.NewMemoryStore(), c)
		old, oldRec := issue(t, m, keystore.KeySpec{
			Name: "prod", Scopes: []string{"chat:write"},
			ExpiresAt: c.Now().Add(24 * time.Hour), Metadata: map[string]string{"team": "a"},
		})
		c.Advance(time.Hour)
		next, nextRec, err := m.Rotate(ctx, oldRec.ID, 0)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if _, err := m.Verify(ctx, old.Plaintext()); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("old key after rotation: %v, want ErrRevoked", err)
		}
		if _, err := m.Verify(ctx, next.Plaintext()); err != nil {
			t.Fatalf("new key: %v", err)
		}
		if nextRec.ID == oldRec.ID || nextRec.Project != oldRec.Project || nextRec.Name != "prod" ||
			strings.Join(nextRec.Scopes, ",") != "chat:write" || nextRec.Metadata["team"] != "a" {
			t.Fatalf("replacement does not carry the old key's attributes: %+v", nextRec)
		}
		if got, want := nextRec.ExpiresAt, c.Now().Add(24*time.Hour); !got.Equal(want) {
			t.Fatalf("replacement expires at %v, want the old lifetime from now (%v)", got, want)
		}
		if _, _, err := m.Rotate(ctx, oldRec.ID, 0); !errors.Is(err, keystore.ErrAlreadyRevoked) {
			t.Fatalf("second rotation of the same key: %v, want ErrAlreadyRevoked", err)
		}
	})

	t.Run("grace period", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		m := newManager(t, keystore.NewMemoryStore(), c)
		old, oldRec := issue(t, m, keystore.KeySpec{})
		next, _, err := m.Rotate(ctx, oldRec.ID, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c.Advance(9 * time.Minute)
		if _, err := m.Verify(ctx, old.Plaintext()); err != nil {
			t.Fatalf("old key inside its grace period: %v", err)
		}
		c.Advance(time.Minute)
		if _, err := m.Verify(ctx, old.Plaintext()); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("old key after its grace period: %v, want ErrRevoked", err)
		}
		if _, err := m.Verify(ctx, next.Plaintext()); err != nil {
			t.Fatalf("new key: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		m := newManager(t, keystore.NewMemoryStore(), c)
		_, rec := issue(t, m, keystore.KeySpec{})
		if _, _, err := m.Rotate(ctx, "key_missing", 0); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("unknown ID: %v, want ErrNotFound", err)
		}
		if _, _, err := m.Rotate(ctx, rec.ID, -time.Second); !errors.Is(err, keystore.ErrInvalidSpec) {
			t.Errorf("negative grace: %v, want ErrInvalidSpec", err)
		}
		if _, err := m.Revoke(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Rotate(ctx, rec.ID, 0); !errors.Is(err, keystore.ErrAlreadyRevoked) {
			t.Errorf("revoked key: %v, want ErrAlreadyRevoked", err)
		}
	})
}

func TestManagerRevokeIdempotent(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := newManager(t, keystore.NewMemoryStore(), c)
	ctx := context.Background()
	k, rec := issue(t, m, keystore.KeySpec{})
	first, err := m.Revoke(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	second, err := m.Revoke(ctx, rec.ID)
	if err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if !second.RevokedAt.Equal(first.RevokedAt) {
		t.Fatalf("second Revoke moved RevokedAt from %v to %v", first.RevokedAt, second.RevokedAt)
	}
	if _, err := m.Verify(ctx, k.Plaintext()); !errors.Is(err, keystore.ErrRevoked) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := m.Revoke(ctx, "key_missing"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Revoke unknown: %v, want ErrNotFound", err)
	}
}

func TestManagerLastUsedCoalesced(t *testing.T) {
	t.Parallel()
	for _, stale := range []bool{false, true} {
		name := "fresh records"
		if stale {
			name = "stale cached records"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			store := newCountingStore()
			store.stale.Store(stale)
			m := newManager(t, store, c)
			ctx := context.Background()
			k, rec := issue(t, m, keystore.KeySpec{})

			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 250 {
						if _, err := m.Verify(ctx, k.Plaintext()); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if got := store.touches.Load(); got != 1 {
				t.Fatalf("2000 verifications in one minute wrote last-used %d times, want 1", got)
			}
			got, _ := store.Get(ctx, rec.ID)
			if !got.LastUsedAt.Equal(c.Now()) {
				t.Fatalf("LastUsedAt = %v, want %v", got.LastUsedAt, c.Now())
			}
			c.Advance(30 * time.Second)
			m.Verify(ctx, k.Plaintext())
			if got := store.touches.Load(); got != 1 {
				t.Fatalf("after 30 s: %d writes, want 1", got)
			}
			c.Advance(31 * time.Second)
			m.Verify(ctx, k.Plaintext())
			if got := store.touches.Load(); got != 2 {
				t.Fatalf("after 61 s: %d writes, want 2", got)
			}
		})
	}

	t.Run("off", func(t *testing.T) {
		t.Parallel()
		store := newCountingStore()
		m := newManager(t, store, newClock(), keystore.WithLastUsedInterval(0))
		k, _ := issue(t, m, keystore.KeySpec{})
		m.Verify(context.Background(), k.Plaintext())
		if got := store.touches.Load(); got != 0 {
			t.Fatalf("tracking off wrote %d times", got)
		}
	})
}

func TestManagerAuthenticate(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := newCountingStore()
	var logs bytes.Buffer
	m := newManager(t, store, c, keystore.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	ctx := context.Background()

	good, rec := issue(t, m, keystore.KeySpec{Scopes: []string{"models:read", "chat:write"}, ExpiresAt: c.Now().Add(time.Hour)})
	p, err := m.Authenticate(ctx, good.Plaintext())
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	want := auth.Principal{Method: auth.MethodAPIKey, KeyID: rec.ID, Project: "default",
		Scopes: rec.Scopes, ExpiresAt: rec.ExpiresAt, Hint: rec.Hint}
	if p.Method != want.Method || p.KeyID != want.KeyID || p.Project != want.Project ||
		strings.Join(p.Scopes, " ") != "chat:write models:read" || !p.ExpiresAt.Equal(want.ExpiresAt) || p.Hint != want.Hint {
		t.Fatalf("Principal = %+v, want %+v", p, want)
	}

	revoked, revokedRec := issue(t, m, keystore.KeySpec{})
	m.Revoke(ctx, revokedRec.ID)
	expired, _ := issue(t, m, keystore.KeySpec{ExpiresAt: c.Now().Add(time.Second)})
	unknown, _ := keystore.DefaultFormat().Generate()
	c.Advance(time.Minute)

	// Unknown, revoked and expired keys must be indistinguishable to HTTP
	// callers: same kind, same (empty) public message.
	var firstMsg *string
	for name, tc := range map[string]struct {
		key   string
		cause error
	}{
		"unknown": {unknown.Plaintext(), keystore.ErrUnknownKey},
		"revoked": {revoked.Plaintext(), keystore.ErrRevoked},
		"expired": {expired.Plaintext(), keystore.ErrExpired},
	} {
		_, err := m.Authenticate(ctx, tc.key)
		var ae *auth.Error
		if !errors.As(err, &ae) || !errors.Is(err, auth.ErrInvalidCredential) || !errors.Is(err, tc.cause) {
			t.Fatalf("%s: error = %v, want *auth.Error with ErrInvalidCredential and %v", name, err, tc.cause)
		}
		if firstMsg == nil {
			firstMsg = &ae.Message
		} else if ae.Message != *firstMsg {
			t.Fatalf("%s: public message %q differs from %q", name, ae.Message, *firstMsg)
		}
	}

	_, err = m.Authenticate(ctx, "sk-"+good.Plaintext())
	var ae *auth.Error
	if !errors.As(err, &ae) || !errors.Is(err, auth.ErrInvalidCredential) || !errors.Is(err, keystore.ErrPrefix) {
		t.Fatalf("wrong prefix: %v", err)
	}
	if !strings.Contains(ae.Message, "halfred_") || strings.Contains(ae.Message, good.Plaintext()) {
		t.Fatalf("wrong-prefix message %q should name the prefix and not echo the key", ae.Message)
	}
	if logs.Len() != 0 && strings.Contains(logs.String(), good.Plaintext()) {
		t.Fatalf("the manager logged a key: %s", logs.String())
	}
}

// TestManagerAuthenticateMalformed: each way a key is malformed gets the
// message that explains it, under the Manager's own format, and the
// reason's sentinel as the cause.
func TestManagerAuthenticateMalformed(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"halfred", "acme"} {
		format, err := keystore.NewFormat(keystore.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		m := newManager(t, keystore.NewMemoryStore(), newClock(), keystore.WithFormat(format))
		k, _ := format.Generate()
		key := k.Plaintext()
		// One character of the random part changed: CRC-32 catches
		// every one-byte change, so the checksum cannot match.
		i := len(format.Prefix())
		typo := key[:i] + map[bool]string{true: "b", false: "a"}[key[i] == 'a'] + key[i+1:]
		tests := []struct {
			name, key string
			cause     error
			msg       string // in the public message
		}{
			{"prefix", "sk-" + key, keystore.ErrPrefix, "API keys start with " + prefix + "_."},
			{"length", key + "0", keystore.ErrLength, "API keys are " + strconv.Itoa(len(key)) + " characters long"},
			{"charset", key[:len(key)-1] + "-", keystore.ErrCharset, "not a letter or a digit"},
			{"checksum", typo, keystore.ErrChecksum, "checksum does not match"},
		}
		for _, tt := range tests {
			_, err := m.Authenticate(context.Background(), tt.key)
			var ae *auth.Error
			if !errors.As(err, &ae) || !errors.Is(err, auth.ErrInvalidCredential) || !errors.Is(err, tt.cause) || !errors.Is(err, keystore.ErrMalformedKey) {
				t.Errorf("%s, %s: error %v, want ErrInvalidCredential caused by %v", prefix, tt.name, err, tt.cause)
				continue
			}
			if !strings.Contains(ae.Message, tt.msg) {
				t.Errorf("%s, %s: message %q lacks %q", prefix, tt.name, ae.Message, tt.msg)
			}
		}
	}
}

func TestManagerConcurrentVerifyRevoke(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := newManager(t, keystore.NewMemoryStore(), c)
	ctx := context.Background()
	keys := make([]keystore.Key, 20)
	ids := make([]string, 20)
	for i := range keys {
		var rec keystore.Record
		keys[i], rec = issue(t, m, keystore.KeySpec{})
		ids[i] = rec.ID
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				_, err := m.Verify(ctx, keys[(i+g)%len(keys)].Plaintext())
				if err != nil && !errors.Is(err, keystore.ErrRevoked) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for _, id := range ids[:10] {
		if _, err := m.Revoke(ctx, id); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	for i, k := range keys {
		_, err := m.Verify(ctx, k.Plaintext())
		if revoked := i < 10; revoked != errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("key %d: revoked=%v but Verify error = %v", i, revoked, err)
		}
	}
}

func TestNewManagerOptions(t *testing.T) {
	t.Parallel()
	if _, err := keystore.NewManager(nil); !errors.Is(err, keystore.ErrInvalidSpec) {
		t.Errorf("nil store: %v", err)
	}
	store := keystore.NewMemoryStore()
	for name, opt := range map[string]keystore.ManagerOption{
		"nil format": keystore.WithFormat(nil),
		"nil hasher": keystore.WithHasher(nil),
		"nil clock":  keystore.WithClock(nil),
		"nil random": keystore.WithIDRandom(nil),
		"nil logger": keystore.WithLogger(nil),
	} {
		if _, err := keystore.NewManager(store, opt); !errors.Is(err, keystore.ErrInvalidSpec) {
			t.Errorf("%s: %v, want ErrInvalidSpec", name, err)
		}
	}
	// A custom format is used for issuing and verifying.
	f := keystore.MustFormat(keystore.WithPrefix("acme"))
	m, err := keystore.NewManager(store, keystore.WithFormat(f))
	if err != nil {
		t.Fatal(err)
	}
	k, _, err := m.Issue(context.Background(), keystore.KeySpec{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Plaintext(), "acme_") {
		t.Fatalf("custom format ignored: %s", k.Hint())
	}
	if _, err := m.Verify(context.Background(), k.Plaintext()); err != nil {
		t.Fatal(err)
	}
	_, err = m.Authenticate(context.Background(), "halfred_abc")
	var ae *auth.Error
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "acme_") {
		t.Fatalf("the prefix message should name the custom prefix: %v", err)
	}
}

func TestManagerCheckKey(t *testing.T) {
	t.Parallel()
	c := newClock()
	store := newCountingStore()
	m := newManager(t, store, c)
	ctx := context.Background()
	_, good := issue(t, m, keystore.KeySpec{})
	_, revoked := issue(t, m, keystore.KeySpec{})
	m.Revoke(ctx, revoked.ID)
	_, disabled := issue(t, m, keystore.KeySpec{})
	m.SetDisabled(ctx, disabled.ID, true)
	_, expiring := issue(t, m, keystore.KeySpec{ExpiresAt: c.Now().Add(time.Second)})
	c.Advance(time.Minute)

	tests := []struct {
		name string
		id   string
		want error // nil, or the keystore sentinel
	}{
		{"good", good.ID, nil},
		{"unknown", "key_unknown", keystore.ErrUnknownKey},
		{"revoked", revoked.ID, keystore.ErrRevoked},
		{"disabled", disabled.ID, keystore.ErrDisabled},
		{"expired", expiring.ID, keystore.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.CheckKey(ctx, tt.id)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CheckKey: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, auth.ErrInvalidCredential) {
				t.Fatalf("CheckKey error = %v, want %v and auth.ErrInvalidCredential", err, tt.want)
			}
		})
	}
}

// getFailStore fails every Get.
type getFailStore struct{ *keystore.MemoryStore }

func (getFailStore) Get(context.Context, string) (keystore.Record, error) {
	return keystore.Record{}, errors.New("connection reset")
}

func TestManagerCheckKeyStoreFailure(t *testing.T) {
	t.Parallel()
	m := newManager(t, getFailStore{keystore.NewMemoryStore()}, newClock())
	err := m.CheckKey(context.Background(), "key_x")
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidCredential) {
		t.Fatalf("CheckKey with a failing store: %v, want ErrUnavailable only", err)
	}
}

// TestManagerTouchUnsupportedIsQuiet: over a CachedStore whose store keeps
// no last-used times, Touch answers ErrUnsupported; that is not a failure
// worth a log line on every key every minute.
func TestManagerTouchUnsupportedIsQuiet(t *testing.T) {
	t.Parallel()
	plain := struct{ keystore.Store }{keystore.NewMemoryStore()} // no Toucher
	cached, err := keystore.NewCachedStore(plain)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m := newManager(t, cached, newClock(), keystore.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	k, _ := issue(t, m, keystore.KeySpec{})
	if _, err := m.Verify(context.Background(), k.Plaintext()); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Fatalf("the Manager logged: %s", logs.String())
	}
}
