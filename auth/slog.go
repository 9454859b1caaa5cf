package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// SlogOption configures the Observer of [NewSlogObserver].
type SlogOption func(*slogObserver)

// WithEventLevel sets the level at which the Observer of [NewSlogObserver]
// logs events of kind k, overriding its default (see NewSlogObserver).
// For EventAuthFailed it sets the level of every failure, 5xx ones
// included. To log EventAuthenticated as a usage record, for example:
//
//	auth.NewSlogObserver(logger, auth.WithEventLevel(auth.EventAuthenticated, slog.LevelInfo))
//
// A kind this package does not define is ignored.
func WithEventLevel(k EventKind, level slog.Level) SlogOption {
	return func(o *slogObserver) {
		if int(k) < len(o.levels) {
			o.levels[k] = level
			o.fixed[k] = true
		}
	}
}

// NewSlogObserver returns an [Observer] that writes each [Event] to l as
// one structured log record: an audit log. A nil l means [slog.Default]
// at the time of each event, so a later [slog.SetDefault] takes effect.
//
// The record's message is the event's kind ("key.revoked", see
// [EventKind.String]) and its time is Event.Time (the time of the call
// when that is zero). Its attributes are the event's fields that are not
// zero, under these keys:
//
//	event            the kind again, for handlers that drop the message
//	method           Method
//	key_id           KeyID
//	previous_key_id  PreviousKeyID
//	project          Project
//	subject          Subject
//	token_id         TokenID
//	session          Session
//	hint             Hint, the masked credential
//	client_addr      ClientAddr
//	status           Status
//	error            the text of Err
//	duration_ms      Duration in milliseconds, a float
//
// Levels, by default: EventAuthenticated at [slog.LevelDebug] (an audit
// log usually leaves successful requests out; metrics count them);
// EventAuthFailed at [slog.LevelInfo] for a 4xx and at [slog.LevelError]
// for a 5xx (a Status of 500 or more, or, without a Status, an Err that is
// [ErrUnavailable], [ErrInternal] or none of this package's sentinels);
// EventRateLimited and EventRefreshReuse at [slog.LevelWarn]; the key and
// token lifecycle events at [slog.LevelInfo]. [WithEventLevel] changes
// them.
//
// Secrets: an Event carries no credential, only its masked Hint, and its
// Err's text must never contain one. As a second line of defence the
// Observer masks, in the error text, every word that looks like the
// credential the Hint was made from (the Hint's prefix and last
// characters with the rest in between) and every word shaped like a JWT
// (eyJ… with two dots), replacing each with its masked form.
//
// The level is checked with [slog.Logger.Enabled] before anything else,
// so an event whose level the handler drops, such as EventAuthenticated
// under the usual Info threshold, costs one call and no allocation. The
// Observer is safe for concurrent use if l's handler is.
func NewSlogObserver(l *slog.Logger, opts ...SlogOption) Observer {
	o := &slogObserver{logger: l}
	for k := range o.levels {
		o.levels[k] = slog.LevelInfo
	}
	o.levels[EventAuthenticated] = slog.LevelDebug
	o.levels[EventRateLimited] = slog.LevelWarn
	o.levels[EventRefreshReuse] = slog.LevelWarn
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	return o
}

type slogObserver struct {
	logger *slog.Logger
	levels [len(eventNames)]slog.Level
	// fixed marks the kinds whose level WithEventLevel set, which the
	// 5xx rule of EventAuthFailed does not change.
	fixed [len(eventNames)]bool
}

func (o *slogObserver) level(e *Event) slog.Level {
	if int(e.Kind) >= len(o.levels) {
		return slog.LevelInfo
	}
	if e.Kind == EventAuthFailed && !o.fixed[EventAuthFailed] && serverFailure(e) {
		return slog.LevelError
	}
	return o.levels[e.Kind]
}

// serverFailure reports whether e's failure is the service's fault (a 5xx)
// rather than the caller's.
func serverFailure(e *Event) bool {
	if e.Status != 0 {
		return e.Status >= 500
	}
	if e.Err == nil {
		return false
	}
	switch {
	case errors.Is(e.Err, ErrUnavailable), errors.Is(e.Err, ErrInternal):
		return true
	case errors.Is(e.Err, ErrNoCredentials), errors.Is(e.Err, ErrInvalidCredential),
		errors.Is(e.Err, ErrMalformedRequest), errors.Is(e.Err, ErrInsufficientScope),
		errors.Is(e.Err, ErrRateLimited):
		return false
	}
	return true // an unclassified error is answered with a 503
}

func (o *slogObserver) Observe(ctx context.Context, e Event) {
	l := o.logger
	if l == nil {
		l = slog.Default()
	}
	level := o.level(&e)
	if ctx == nil {
		ctx = context.Background()
	}
	if !l.Enabled(ctx, level) {
		return
	}
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	name := e.Kind.String()
	r := slog.NewRecord(t, level, name, 0)
	var buf [14]slog.Attr
	attrs := append(buf[:0], slog.String("event", name))
	str := func(key, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(key, v))
		}
	}
	str("method", string(e.Method))
	str("key_id", e.KeyID)
	str("previous_key_id", e.PreviousKeyID)
	str("project", e.Project)
	str("subject", e.Subject)
	str("token_id", e.TokenID)
	str("session", e.Session)
	str("hint", e.Hint)
	if e.ClientAddr.IsValid() {
		attrs = append(attrs, slog.String("client_addr", e.ClientAddr.String()))
	}
	if e.Status != 0 {
		attrs = append(attrs, slog.Int("status", e.Status))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", scrub(e.Err.Error(), e.Hint)))
	}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Float64("duration_ms", float64(e.Duration)/float64(time.Millisecond)))
	}
	r.AddAttrs(attrs...)
	_ = l.Handler().Handle(ctx, r)
}

// scrub masks, in an error's text s, every word that looks like a
// credential: one that the hint could have been made from (see [mask]),
// or one shaped like a JWT. A word is a b64token of RFC 6750: a run of
// letters, digits and "-._~+/", then any '='; a sentence's full stop after
// it is not taken for part of the credential. It returns s itself when
// there is nothing to mask.
func scrub(s, hint string) string {
	prefix, suffix, hinted := strings.Cut(hint, "…")
	hinted = hinted && (prefix != "" || suffix != "")
	var b strings.Builder
	done := 0 // s[:done] has been written to b
	for i := 0; i < len(s); {
		if !isTokenChar(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && isTokenChar(s[j]) {
			j++
		}
		for j < len(s) && s[j] == '=' {
			j++
		}
		w := s[i:j]
		switch {
		case looksJWT(w) || hinted && looksHinted(w, prefix, suffix):
		case hinted && looksHinted(strings.TrimRight(w, "."), prefix, suffix):
			w = strings.TrimRight(w, ".")
		default:
			i = j
			continue
		}
		b.WriteString(s[done:i])
		b.WriteString(mask(w))
		done = i + len(w)
		i = j
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// looksHinted reports whether w could be the credential behind the hint
// prefix+"…"+suffix: it starts with prefix, ends with suffix, and is long
// enough for mask to have hidden something.
func looksHinted(w, prefix, suffix string) bool {
	if !strings.HasPrefix(w, prefix) || !strings.HasSuffix(w, suffix) {
		return false
	}
	if suffix == "" {
		return len(w) > len(prefix)
	}
	return len(w) >= len(prefix)+16
}

// looksJWT reports whether w is shaped like a compact JWS: it starts with
// the base64url of `{"` and has at least two dots.
func looksJWT(w string) bool {
	return strings.HasPrefix(w, "eyJ") && strings.Count(w, ".") >= 2
}

// isTokenChar reports whether c may appear in an RFC 6750 b64token before
// its trailing '='s.
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}
