package keystore_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// eventLog is an auth.Observer that keeps what it is told.
type eventLog struct {
	mu     sync.Mutex
	events []auth.Event
	ctxs   []context.Context
}

func (l *eventLog) Observe(ctx context.Context, e auth.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	l.ctxs = append(l.ctxs, ctx)
}

// take returns the events reported since the last call.
func (l *eventLog) take() []auth.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.events
	l.events, l.ctxs = nil, nil
	return e
}

// microStore keeps times to the microsecond, as SQL stores do.
type microStore struct{ *keystore.MemoryStore }

func (s microStore) Revoke(ctx context.Context, id string, at time.Time) (keystore.Record, error) {
	return s.MemoryStore.Revoke(ctx, id, at.Truncate(time.Microsecond))
}

// failingCreateStore fails every Create.
type failingCreateStore struct{ *keystore.MemoryStore }

func (failingCreateStore) Create(context.Context, keystore.Record) error {
	return errors.New("disk full")
}

type ctxKey struct{}

func TestManagerEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// store, when set, replaces the MemoryStore.
		store func() keystore.Store
		// run does something to the Manager and returns the events it
		// should have reported. It gets a fresh key "k" of project "p".
		run func(t *testing.T, m *keystore.Manager, c *testclock.Clock, k keystore.Record) []auth.Event
	}{
		{
			name: "issue",
			run: func(t *testing.T, m *keystore.Manager, c *testclock.Clock, _ keystore.Record) []auth.Event {
				_, rec := issue(t, m, keystore.KeySpec{Project: "q", Name: "n"})
				return []auth.Event{{Kind: auth.EventKeyCreated, Time: c.Now(), KeyID: rec.ID, Project: "q"}}
			},
		},
		{
			name: "issue with a bad spec",
			run: func(t *testing.T, m *keystore.Manager, _ *testclock.Clock, _ keystore.Record) []auth.Event {
				if _, _, err := m.Issue(context.Background(), keystore.KeySpec{}); !errors.Is(err, keystore.ErrInvalidSpec) {
					t.Fatalf("Issue without a project: %v, want ErrInvalidSpec", err)
				}
				return nil
			},
		},
		{
			name: "rotate",
			run: func(t *testing.T, m *keystore.Manager, c *testclock.Clock, k keystore.Record) []auth.Event {
				c.Advance(time.Minute)
				_, next, err := m.Rotate(context.Background(), k.ID, 0)
				if err != nil {
					t.Fatal(err)
				}
				return []auth.Event{{Kind: auth.EventKeyRotated, Time: c.Now(), KeyID: next.ID, PreviousKeyID: k.ID, Project: "p"}}
			},
		},
		{
			name: "rotate a revoked key",
			run: func(t *testing.T, m *keystore.Manager, c *testclock.Clock, k keystore.Record) []auth.Event {
				if _, err := m.Revoke(context.Background(), k.ID); err != nil {
					t.Fatal(err)
				}
				revokedAt := c.Now()
				c.Advance(time.Minute)
				if _, _, err := m.Rotate(context.Background(), k.ID, 0); !errors.Is(err, keystore.ErrAlreadyRevoked) {
					t.Fatalf("Rotate of a revoked key: %v, want ErrAlreadyRevoked", err)
				}
				return []auth.Event{{Kind: auth.EventKeyRevoked, Time: revokedAt, KeyID: k.ID, Project: "p"}}
			},
		},
		{
			name: "rotate an unknown key",
			run: func(t *testing.T, m *keystore.Manager, _ *testclock.Clock, _ keystore.Record) []auth.Event {
				if _, _, err := m.Rotate(context.Background(), "key_nope", 0); !errors.Is(err, keystore.ErrNotFound) {
					t.Fatalf("Rotate of an unknown key: %v, want ErrNotFound", err)
				}
				return nil
			},
		},
		{
			name: "revoke twice reports once",
			run: func(t *testing.T, m *keystore.Manager, c *testclock.Clock, k keystore.Record) []auth.Event {
				c.Advance(time.Second)
				at := c.Now()
				for range 2 {
					if _, err := m.Revoke(context.Background(), k.ID); err != nil {
						t.Fatal(err)
					}
					c.Advance(time.Second)
				}
				return []auth.Event{{Kind: auth.EventKeyRevoked, Time: at, KeyID: k.ID, Project: "p"}}
			},
		},
		{
			name: "revoke an unknown key",
			run: func(t *testing.T, m *keystore.Manager, _ *testclock.Clock, _ keystore.Record) []auth.Event {
				if _, err := m.Revoke(context.Background(), "key_nope"); !errors.Is(err, keystore.ErrNotFound) {
					t.Fatalf("Revoke of an unknown key: %v, want ErrNotFound", err)
				}
				return nil
			},
		},
		{
			name: "revoke during a rotation's grace period",
			run: func(t *testing.T, m *keystore.Manager, c *testclock.Clock, k keystore.Record) []auth.Event {
				rotatedAt := c.Now()
				_, next, err := m.Rotate(context.Background(), k.ID, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				c.Advance(time.Minute)
				if _, err := m.Revoke(context.Background(), k.ID); err != nil {
					t.Fatal(err)
				}
				return []auth.Event{
					{Kind: auth.EventKeyRotated, Time: rotatedAt, KeyID: next.ID, PreviousKeyID: k.ID, Project: "p"},
					{Kind: auth.EventKeyRevoked, Time: c.Now(), KeyID: k.ID, Project: "p"},
				}
			},
		},
		{
			name:  "revoke with a store that keeps microseconds",
			store: func() keystore.Store { return microStore{keystore.NewMemoryStore()} },
			run: func(t *testing.T, m *keystore.Manager, c *testclock.Clock, k keystore.Record) []auth.Event {
				c.Advance(1234567 * time.Nanosecond) // not a whole microsecond
				at := c.Now()
				if _, err := m.Revoke(context.Background(), k.ID); err != nil {
					t.Fatal(err)
				}
				c.Advance(time.Second)
				if _, err := m.Revoke(context.Background(), k.ID); err != nil {
					t.Fatal(err)
				}
				return []auth.Event{{Kind: auth.EventKeyRevoked, Time: at, KeyID: k.ID, Project: "p"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var store keystore.Store = keystore.NewMemoryStore()
			if tt.store != nil {
				store = tt.store()
			}
			c := newClock()
			log := &eventLog{}
			m := newManager(t, store, c, keystore.WithObserver(log))
			_, k := issue(t, m, keystore.KeySpec{Project: "p"})
			if got := log.take(); len(got) != 1 || got[0].Kind != auth.EventKeyCreated || got[0].KeyID != k.ID {
				t.Fatalf("Issue reported %+v, want one key.created for %s", got, k.ID)
			}
			want := tt.run(t, m, c, k)
			got := log.take()
			if !slices.EqualFunc(got, want, sameEvent) {
				t.Fatalf("reported\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestManagerRequestPathReportsNothing checks that verifying keys, good
// or bad, reports nothing: the Guard reports authentication.
func TestManagerRequestPathReportsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := &eventLog{}
	m := newManager(t, keystore.NewMemoryStore(), newClock(), keystore.WithObserver(log))
	good, rec := issue(t, m, keystore.KeySpec{Project: "p"})
	revoked, revokedRec := issue(t, m, keystore.KeySpec{Project: "p"})
	if _, err := m.Revoke(ctx, revokedRec.ID); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 3 {
		t.Fatalf("Issue, Issue, Revoke reported %d events, want 3", len(got))
	}
	for _, cred := range []string{good.Plaintext(), revoked.Plaintext(), "halfred_nope", "sk-other"} {
		_, _ = m.Verify(ctx, cred)
		_, _ = m.Authenticate(ctx, cred)
	}
	for _, id := range []string{rec.ID, revokedRec.ID, "key_nope"} {
		_ = m.CheckKey(ctx, id)
		_, _ = m.Get(ctx, id)
	}
	_, _ = m.List(ctx, "p")
	if got := log.take(); len(got) != 0 {
		t.Fatalf("the request path reported %+v", got)
	}
}

func sameEvent(a, b auth.Event) bool {
	at, bt := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && at.Equal(bt)
}

func TestManagerEventsFailedCreate(t *testing.T) {
	t.Parallel()
	log := &eventLog{}
	m := newManager(t, failingCreateStore{keystore.NewMemoryStore()}, newClock(), keystore.WithObserver(log))
	if _, _, err := m.Issue(context.Background(), keystore.KeySpec{Project: "p"}); err == nil {
		t.Fatal("Issue succeeded with a failing store")
	}
	if got := log.take(); len(got) != 0 {
		t.Fatalf("a failed Issue reported %+v", got)
	}
}

func TestManagerEventsContext(t *testing.T) {
	t.Parallel()
	log := &eventLog{}
	m := newManager(t, keystore.NewMemoryStore(), newClock(), keystore.WithObserver(log))
	ctx := context.WithValue(context.Background(), ctxKey{}, "request-7")
	if _, _, err := m.Issue(ctx, keystore.KeySpec{Project: "p"}); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.ctxs) != 1 || log.ctxs[0].Value(ctxKey{}) != "request-7" {
		t.Fatal("the Observer did not get the caller's context")
	}
}

func TestManagerWithoutObserver(t *testing.T) {
	t.Parallel()
	// A nil Observer is none: the lifecycle works and nothing panics.
	m := newManager(t, keystore.NewMemoryStore(), newClock(), keystore.WithObserver(nil))
	_, k := issue(t, m, keystore.KeySpec{Project: "p"})
	if _, _, err := m.Rotate(context.Background(), k.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Revoke(context.Background(), k.ID); err != nil {
		t.Fatal(err)
	}
}

// unannouncedStore revokes, then fails as keystore/redisfeed does when it
// cannot publish: the record and an error.
type unannouncedStore struct{ *keystore.MemoryStore }

var errNotAnnounced = errors.New("written, but other instances were not told")

func (s unannouncedStore) Revoke(ctx context.Context, id string, at time.Time) (keystore.Record, error) {
	r, err := s.MemoryStore.Revoke(ctx, id, at)
	if err != nil {
		return r, err
	}
	return r, errNotAnnounced
}

// TestManagerEventsRevokeWrittenWithError: a revocation the store wrote
// but returned an error for is reported once, by that call; the retry the
// error asks for finds the key revoked already and reports nothing.
func TestManagerEventsRevokeWrittenWithError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := &eventLog{}
	clock := newClock()
	m := newManager(t, unannouncedStore{keystore.NewMemoryStore()}, clock, keystore.WithObserver(log))
	_, rec, err := m.Issue(ctx, keystore.KeySpec{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	log.take()
	if _, err := m.Revoke(ctx, rec.ID); !errors.Is(err, errNotAnnounced) {
		t.Fatalf("Revoke = %v, want the store's error", err)
	}
	got := log.take()
	if len(got) != 1 || got[0].Kind != auth.EventKeyRevoked || got[0].KeyID != rec.ID {
		t.Fatalf("events %+v, want one key.revoked for %s", got, rec.ID)
	}
	clock.Advance(time.Second)
	m.Revoke(ctx, rec.ID) // the retry
	if got := log.take(); len(got) != 0 {
		t.Fatalf("the retry reported %+v", got)
	}
	// A store error without a record reports nothing.
	if _, err := m.Revoke(ctx, "key_unknown"); err == nil {
		t.Fatal("Revoke of an unknown key succeeded")
	}
	if got := log.take(); len(got) != 0 {
		t.Fatalf("a failed Revoke reported %+v", got)
	}
}
