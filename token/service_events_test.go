package token

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// svcEvents is an auth.Observer that keeps what it is told.
type svcEvents struct {
	mu     sync.Mutex
	events []auth.Event
}

func (o *svcEvents) Observe(_ context.Context, e auth.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

// take returns the events reported since the last call.
func (o *svcEvents) take() []auth.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.events
	o.events = nil
	return e
}

// eventsFixture is a Service fixture that reports to an svcEvents, with
// the refresh store and the revocations able to fail.
type eventsFixture struct {
	*svcFixture
	events *svcEvents
	store  *svcFailingStore
	revs   *svcFailingRevocations
}

func newEventsFixture(t *testing.T) *eventsFixture {
	t.Helper()
	ev := &svcEvents{}
	store := &svcFailingStore{RefreshStore: NewMemoryRefreshStore()}
	revs := &svcFailingRevocations{Revocations: NewMemoryRevocations()}
	f := newSvcFixture(t, svcOptions{refresh: store, revs: revs, service: []ServiceOption{WithServiceObserver(ev)}})
	return &eventsFixture{svcFixture: f, events: ev, store: store, revs: revs}
}

// issuedEvent returns the event an exchange or refresh that returned pair
// should have reported.
func (f *eventsFixture) issuedEvent(t *testing.T, kind auth.EventKind, pair Pair) auth.Event {
	t.Helper()
	c, err := f.claims(pair.AccessToken)
	if err != nil {
		t.Fatalf("the new access token: %v", err)
	}
	if c.ID == "" || c.Session == "" {
		t.Fatalf("the new access token has jti %q and sid %q", c.ID, c.Session)
	}
	return auth.Event{Kind: kind, Time: f.clock.Now(), KeyID: f.principal.KeyID, Project: "default", TokenID: c.ID, Session: c.Session}
}

func TestServiceEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// run acts on the Service and returns the events it should have
		// reported; the events of its set-up are taken before it.
		run func(t *testing.T, f *eventsFixture) []auth.Event
	}{
		{
			name: "exchange",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				return []auth.Event{f.issuedEvent(t, auth.EventTokenIssued, f.exchange(t))}
			},
		},
		{
			name: "exchange refused",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				p := f.principal
				p.Scopes = []string{"models:read"}
				if _, err := f.svc.Exchange(t.Context(), p, nil); !errors.Is(err, auth.ErrInsufficientScope) {
					t.Fatalf("Exchange without %s = %v", ExchangeScope, err)
				}
				if _, err := f.svc.Exchange(t.Context(), f.principal, []string{"admin"}); !errors.Is(err, auth.ErrInsufficientScope) {
					t.Fatalf("Exchange for a scope the key lacks = %v", err)
				}
				return nil
			},
		},
		{
			name: "exchange with the refresh store down",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				f.store.fail.Store(true)
				if _, err := f.svc.Exchange(t.Context(), f.principal, nil); !errors.Is(err, auth.ErrUnavailable) {
					t.Fatalf("Exchange = %v, want auth.ErrUnavailable", err)
				}
				return nil
			},
		},
		{
			name: "refresh",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				first := f.exchange(t)
				f.events.take()
				f.clock.Advance(time.Minute)
				next, err := f.svc.Refresh(t.Context(), first.RefreshToken)
				if err != nil {
					t.Fatal(err)
				}
				want := f.issuedEvent(t, auth.EventTokenRefreshed, next)
				if c, _ := f.claims(first.AccessToken); c.Session != want.Session || c.ID == want.TokenID {
					t.Fatalf("refreshed token: session %s and jti %s, first token's %s and %s", want.Session, want.TokenID, c.Session, c.ID)
				}
				return []auth.Event{want}
			},
		},
		{
			name: "refresh refused",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				pair := f.exchange(t)
				f.events.take()
				unknown, err := defaultRefreshFormat.Generate()
				if err != nil {
					t.Fatal(err)
				}
				for _, tok := range []string{pair.AccessToken, f.apiKey, unknown.Plaintext()} {
					if _, err := f.svc.Refresh(t.Context(), tok); !errors.Is(err, ErrInvalidGrant) {
						t.Fatalf("Refresh(%s) = %v, want ErrInvalidGrant", maskToken(tok), err)
					}
				}
				return nil
			},
		},
		{
			name: "reuse",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				first := f.exchange(t)
				session := f.issuedEvent(t, auth.EventTokenIssued, first).Session
				f.events.take()
				if _, err := f.svc.Refresh(t.Context(), first.RefreshToken); err != nil {
					t.Fatal(err)
				}
				f.events.take()
				f.clock.Advance(time.Minute)
				if _, err := f.svc.Refresh(t.Context(), first.RefreshToken); !errors.Is(err, ErrRefreshReused) {
					t.Fatalf("reuse = %v, want ErrRefreshReused", err)
				}
				return []auth.Event{{Kind: auth.EventRefreshReuse, Time: f.clock.Now(), KeyID: f.principal.KeyID, Project: "default", Session: session}}
			},
		},
		{
			name: "reuse after the session ended",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				first := f.exchange(t)
				if _, err := f.svc.Refresh(t.Context(), first.RefreshToken); err != nil {
					t.Fatal(err)
				}
				f.events.take()
				f.clock.Advance(DefaultRefreshLifetime + time.Second)
				if _, err := f.svc.Refresh(t.Context(), first.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
					t.Fatalf("Refresh after the session = %v, want ErrInvalidGrant", err)
				}
				return nil
			},
		},
		{
			name: "revoke",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				p := f.accessPrincipal(t, f.exchange(t).AccessToken)
				f.events.take()
				if err := f.svc.Revoke(t.Context(), p); err != nil {
					t.Fatal(err)
				}
				if p.TokenID == "" || p.Session == "" {
					t.Fatalf("access token principal without a jti or sid: %+v", p)
				}
				return []auth.Event{{Kind: auth.EventTokenRevoked, Time: f.clock.Now(), Method: auth.MethodAccessToken,
					KeyID: f.principal.KeyID, Project: "default", Subject: p.Subject, TokenID: p.TokenID, Session: p.Session}}
			},
		},
		{
			name: "revoke another issuer's token",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				p := auth.Principal{Method: auth.MethodAccessToken, Subject: "user-1", TokenID: "external-jti", ExpiresAt: f.clock.Now().Add(time.Hour)}
				if err := f.svc.Revoke(t.Context(), p); err != nil {
					t.Fatal(err)
				}
				return []auth.Event{{Kind: auth.EventTokenRevoked, Time: f.clock.Now(), Method: auth.MethodAccessToken,
					Subject: "user-1", TokenID: "external-jti"}}
			},
		},
		{
			name: "revoke refused or failed",
			run: func(t *testing.T, f *eventsFixture) []auth.Event {
				p := f.accessPrincipal(t, f.exchange(t).AccessToken)
				f.events.take()
				if err := f.svc.Revoke(t.Context(), f.principal); !errors.Is(err, auth.ErrInsufficientScope) {
					t.Fatalf("Revoke of an API key = %v", err)
				}
				f.store.fail.Store(true)
				if err := f.svc.Revoke(t.Context(), p); !errors.Is(err, auth.ErrUnavailable) {
					t.Fatalf("Revoke with the refresh store down = %v", err)
				}
				f.store.fail.Store(false)
				f.revs.fail.Store(true)
				if err := f.svc.Revoke(t.Context(), p); !errors.Is(err, auth.ErrUnavailable) {
					t.Fatalf("Revoke with the revocations down = %v", err)
				}
				return nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newEventsFixture(t)
			want := tt.run(t, f)
			got := f.events.take()
			if len(got) != len(want) {
				t.Fatalf("reported %d events %+v, want %+v", len(got), got, want)
			}
			for i := range got {
				if !sameSvcEvent(got[i], want[i]) {
					t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestServiceEventReuseRevocationFails checks that a detected reuse is
// reported even when revoking the session fails, with the failure as Err.
func TestServiceEventReuseRevocationFails(t *testing.T) {
	t.Parallel()
	f := newEventsFixture(t)
	first := f.exchange(t)
	if _, err := f.svc.Refresh(t.Context(), first.RefreshToken); err != nil {
		t.Fatal(err)
	}
	f.events.take()
	f.revs.fail.Store(true)
	if _, err := f.svc.Refresh(t.Context(), first.RefreshToken); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("reuse with the revocations down = %v, want auth.ErrUnavailable", err)
	}
	got := f.events.take()
	if len(got) != 1 || got[0].Kind != auth.EventRefreshReuse {
		t.Fatalf("reported %+v, want one token.refresh_reuse", got)
	}
	if !errors.Is(got[0].Err, auth.ErrUnavailable) || !errors.Is(got[0].Err, errSvcBackend) {
		t.Errorf("Err = %v, want the failure to revoke the session", got[0].Err)
	}
}

// TestServiceWithoutObserver runs the lifecycle with a nil Observer.
func TestServiceWithoutObserver(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{service: []ServiceOption{WithServiceObserver(nil)}})
	pair := f.exchange(t)
	if _, err := f.svc.Refresh(t.Context(), pair.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Refresh(t.Context(), pair.RefreshToken); !errors.Is(err, ErrRefreshReused) {
		t.Fatalf("reuse = %v", err)
	}
	if err := f.svc.Revoke(t.Context(), f.accessPrincipal(t, f.exchange(t).AccessToken)); err != nil {
		t.Fatal(err)
	}
}

func sameSvcEvent(a, b auth.Event) bool {
	at, bt := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && at.Equal(bt)
}
