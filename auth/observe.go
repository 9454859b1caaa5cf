package auth

import (
	"context"
	"net/netip"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind uint8

// The events keygate reports to an [Observer]. The Guard reports the
// authentication events; a keystore Manager the key events; a token Service
// the token events.
const (
	// EventAuthenticated: a request authenticated. Metrics count it; audit
	// logs usually do not (the slog Observer logs it at Debug).
	EventAuthenticated EventKind = iota + 1
	// EventAuthFailed: a request's authentication failed (401, 400, 503
	// or 500). Event.Err says why.
	EventAuthFailed
	// EventRateLimited: a request was refused with 429.
	EventRateLimited
	// EventKeyCreated: an API key was issued.
	EventKeyCreated
	// EventKeyRotated: an API key was replaced by a new one; KeyID is the
	// new key, PreviousKeyID the old.
	EventKeyRotated
	// EventKeyRevoked: an API key was revoked.
	EventKeyRevoked
	// EventTokenIssued: an access token was issued in exchange for an
	// API key.
	EventTokenIssued
	// EventTokenRefreshed: a refresh token was spent for a new pair.
	EventTokenRefreshed
	// EventTokenRevoked: an access token and its session were revoked.
	EventTokenRevoked
	// EventRefreshReuse: a spent refresh token was presented again, and
	// its whole family was revoked.
	EventRefreshReuse
	// EventForbidden: an authenticated request was refused with 403,
	// because its principal lacks a scope the route requires (the
	// Guard's RequireScopes). Event.Err is the [*Error], whose Scopes are
	// the required ones; the request was reported as EventAuthenticated
	// first when the Guard authenticated it.
	EventForbidden
)

var eventNames = [...]string{
	EventAuthenticated:  "auth.succeeded",
	EventAuthFailed:     "auth.failed",
	EventRateLimited:    "auth.rate_limited",
	EventKeyCreated:     "key.created",
	EventKeyRotated:     "key.rotated",
	EventKeyRevoked:     "key.revoked",
	EventTokenIssued:    "token.issued",
	EventTokenRefreshed: "token.refreshed",
	EventTokenRevoked:   "token.revoked",
	EventRefreshReuse:   "token.refresh_reuse",
	EventForbidden:      "auth.forbidden",
}

// String returns the event's name as logs and metrics show it, such as
// "key.revoked", or "unknown" for a kind this package does not define.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one thing that happened to a credential. Fields that do not
// apply to a kind are zero. No field ever holds a secret: credentials
// appear only as Hint, a masked form such as halfred_…a1B2.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// Time is when it happened.
	Time time.Time
	// Method is how the caller authenticated, when known.
	Method Method
	// KeyID is the API key concerned: the key presented, the key an
	// access token derives from, or the key created, rotated or revoked.
	KeyID string
	// PreviousKeyID is the replaced key of an EventKeyRotated.
	PreviousKeyID string
	// Project is the key's or token's project, when known.
	Project string
	// Subject is the sub of an external identity provider's token.
	Subject string
	// TokenID is an access token's jti, for token events.
	TokenID string
	// Session is the refresh-token family, for token events.
	Session string
	// Hint is the masked credential of a failed authentication.
	Hint string
	// ClientAddr is the address of the client that made the request, for
	// events that come from a request; invalid when unknown.
	ClientAddr netip.Addr
	// Status is the HTTP status the request was answered with, for
	// EventAuthFailed and EventRateLimited.
	Status int
	// Err is why authentication failed or was refused, for
	// EventAuthFailed and EventRateLimited. Its text never contains the
	// credential. Classify it with errors.Is against this package's
	// sentinels.
	Err error
	// Duration is the time authentication took, for EventAuthenticated
	// and EventAuthFailed.
	Duration time.Duration
}

// Observer receives [Event]s: audit logs, metrics and usage counters are
// Observers. Observe is called synchronously on the request's goroutine
// and must be fast and safe for concurrent use; an Observer that does slow
// work (a network write) must queue it, and must not retain ctx. The
// Event is passed by value so that reporting it does not allocate.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// ObserverFunc adapts a function to [Observer].
type ObserverFunc func(ctx context.Context, e Event)

// Observe calls f(ctx, e).
func (f ObserverFunc) Observe(ctx context.Context, e Event) { f(ctx, e) }

// Observers returns an Observer that passes every Event to each of obs in
// order. Nil entries are skipped; with none left it returns nil.
func Observers(obs ...Observer) Observer {
	var list multiObserver
	for _, o := range obs {
		switch o := o.(type) {
		case nil:
		case multiObserver:
			list = append(list, o...)
		default:
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return list
}

type multiObserver []Observer

func (m multiObserver) Observe(ctx context.Context, e Event) {
	for _, o := range m {
		o.Observe(ctx, e)
	}
}
