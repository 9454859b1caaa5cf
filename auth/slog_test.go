package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testalloc"
)

// jsonLogger returns a logger that writes JSON records of every level to
// the returned buffer.
func jsonLogger(level slog.Level) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})), &buf
}

// records parses the JSON lines in buf.
func records(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestSlogObserverAttributes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	full := Event{
		Kind:          EventKeyRotated,
		Time:          at,
		Method:        MethodAPIKey,
		KeyID:         "key_new",
		PreviousKeyID: "key_old",
		Project:       "default",
		Subject:       "user-7",
		TokenID:       "jti-1",
		Session:       "sess-1",
		Hint:          "halfred_…a1B2",
		ClientAddr:    netip.MustParseAddr("2001:db8::1"),
		Status:        401,
		Err:           errors.New("boom"),
		Duration:      1500 * time.Microsecond,
	}
	tests := []struct {
		name string
		e    Event
		want map[string]any
	}{
		{
			name: "every field",
			e:    full,
			want: map[string]any{
				"time":            "2026-11-27T12:00:00Z",
				"level":           "INFO",
				"msg":             "key.rotated",
				"event":           "key.rotated",
				"method":          "api_key",
				"key_id":          "key_new",
				"previous_key_id": "key_old",
				"project":         "default",
				"subject":         "user-7",
				"token_id":        "jti-1",
				"session":         "sess-1",
				"hint":            "halfred_…a1B2",
				"client_addr":     "2001:db8::1",
				"status":          float64(401),
				"error":           "boom",
				"duration_ms":     1.5,
			},
		},
		{
			name: "zero fields left out",
			e:    Event{Kind: EventKeyRevoked, Time: at, KeyID: "key_1", Project: "p"},
			want: map[string]any{
				"time":    "2026-11-27T12:00:00Z",
				"level":   "INFO",
				"msg":     "key.revoked",
				"event":   "key.revoked",
				"key_id":  "key_1",
				"project": "p",
			},
		},
		{
			name: "unknown kind",
			e:    Event{Kind: EventKind(200), Time: at},
			want: map[string]any{
				"time":  "2026-11-27T12:00:00Z",
				"level": "INFO",
				"msg":   "unknown",
				"event": "unknown",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, buf := jsonLogger(slog.LevelDebug)
			NewSlogObserver(l).Observe(context.Background(), tt.e)
			recs := records(t, buf)
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1: %s", len(recs), buf)
			}
			got := recs[0]
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := tt.want[k]; !ok {
					t.Errorf("unexpected attribute %s = %#v", k, got[k])
				}
			}
		})
	}
}

func TestSlogObserverTimeDefaultsToNow(t *testing.T) {
	t.Parallel()
	l, buf := jsonLogger(slog.LevelDebug)
	before := time.Now()
	NewSlogObserver(l).Observe(context.Background(), Event{Kind: EventKeyCreated})
	recs := records(t, buf)
	ts, err := time.Parse(time.RFC3339Nano, recs[0]["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("record time %v, want about %v", ts, before)
	}
}

func TestSlogObserverLevels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		e    Event
		opts []SlogOption
		want string
	}{
		{"authenticated", Event{Kind: EventAuthenticated}, nil, "DEBUG"},
		{"failed 401", Event{Kind: EventAuthFailed, Status: 401, Err: ErrInvalidCredential}, nil, "INFO"},
		{"failed 400", Event{Kind: EventAuthFailed, Status: 400, Err: ErrMalformedRequest}, nil, "INFO"},
		{"failed 403", Event{Kind: EventAuthFailed, Status: 403, Err: ErrInsufficientScope}, nil, "INFO"},
		{"failed 503", Event{Kind: EventAuthFailed, Status: 503, Err: ErrUnavailable}, nil, "ERROR"},
		{"failed 500", Event{Kind: EventAuthFailed, Status: 500, Err: ErrInternal}, nil, "ERROR"},
		{"failed, no status, invalid", Event{Kind: EventAuthFailed, Err: &Error{Kind: ErrInvalidCredential}}, nil, "INFO"},
		{"failed, no status, no credentials", Event{Kind: EventAuthFailed, Err: ErrNoCredentials}, nil, "INFO"},
		{"failed, no status, unavailable", Event{Kind: EventAuthFailed, Err: &Error{Kind: ErrUnavailable}}, nil, "ERROR"},
		{"failed, no status, unclassified", Event{Kind: EventAuthFailed, Err: context.DeadlineExceeded}, nil, "ERROR"},
		{"failed, no status, no error", Event{Kind: EventAuthFailed}, nil, "INFO"},
		{"rate limited", Event{Kind: EventRateLimited, Status: 429, Err: ErrRateLimited}, nil, "WARN"},
		{"key created", Event{Kind: EventKeyCreated}, nil, "INFO"},
		{"key rotated", Event{Kind: EventKeyRotated}, nil, "INFO"},
		{"key revoked", Event{Kind: EventKeyRevoked}, nil, "INFO"},
		{"token issued", Event{Kind: EventTokenIssued}, nil, "INFO"},
		{"token refreshed", Event{Kind: EventTokenRefreshed}, nil, "INFO"},
		{"token revoked", Event{Kind: EventTokenRevoked}, nil, "INFO"},
		{"refresh reuse", Event{Kind: EventRefreshReuse}, nil, "WARN"},
		{"override authenticated", Event{Kind: EventAuthenticated},
			[]SlogOption{WithEventLevel(EventAuthenticated, slog.LevelInfo)}, "INFO"},
		{"override failed applies to 5xx too", Event{Kind: EventAuthFailed, Status: 503},
			[]SlogOption{WithEventLevel(EventAuthFailed, slog.LevelWarn)}, "WARN"},
		{"override of an unknown kind ignored", Event{Kind: EventKeyCreated},
			[]SlogOption{WithEventLevel(EventKind(99), slog.LevelError), nil}, "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, buf := jsonLogger(slog.LevelDebug)
			NewSlogObserver(l, tt.opts...).Observe(context.Background(), tt.e)
			recs := records(t, buf)
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			if got := recs[0]["level"]; got != tt.want {
				t.Errorf("level %v, want %s", got, tt.want)
			}
		})
	}
}

func TestSlogObserverRespectsHandlerLevel(t *testing.T) {
	t.Parallel()
	l, buf := jsonLogger(slog.LevelInfo)
	o := NewSlogObserver(l)
	o.Observe(context.Background(), Event{Kind: EventAuthenticated, KeyID: "key_1"})
	if buf.Len() != 0 {
		t.Fatalf("EventAuthenticated logged under an Info handler: %s", buf)
	}
	o.Observe(context.Background(), Event{Kind: EventKeyCreated, KeyID: "key_1"})
	if recs := records(t, buf); len(recs) != 1 || recs[0]["msg"] != "key.created" {
		t.Fatalf("got %v, want one key.created record", recs)
	}
}

// TestSlogObserverDisabledDoesNotAllocate checks that an event below the
// handler's level costs nothing beyond the Enabled call.
func TestSlogObserverDisabledDoesNotAllocate(t *testing.T) {
	l, _ := jsonLogger(slog.LevelInfo)
	o := NewSlogObserver(l)
	ctx := context.Background()
	e := Event{Kind: EventAuthenticated, Method: MethodAPIKey, KeyID: "key_1", Project: "p",
		ClientAddr: netip.MustParseAddr("192.0.2.1"), Duration: time.Millisecond}
	if n := testalloc.Min(100, func() { o.Observe(ctx, e) }); n != 0 {
		t.Errorf("a disabled event allocates %v times, want 0", n)
	}
}

// TestSlogObserverNilLoggerUsesDefault checks that a nil logger means
// slog.Default when the event happens. It changes the default logger, so
// it is not parallel.
func TestSlogObserverNilLoggerUsesDefault(t *testing.T) {
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	o := NewSlogObserver(nil) // made before the default changes
	l, buf := jsonLogger(slog.LevelDebug)
	slog.SetDefault(l)
	o.Observe(context.Background(), Event{Kind: EventTokenRevoked, TokenID: "jti-9"})
	recs := records(t, buf)
	if len(recs) != 1 || recs[0]["msg"] != "token.revoked" || recs[0]["token_id"] != "jti-9" {
		t.Fatalf("default logger got %v, want one token.revoked record", recs)
	}
}

func TestSlogObserverNeverLogsCredential(t *testing.T) {
	t.Parallel()
	const (
		key = "halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4"
		jwt = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJrZXlfMSJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2ln"
		// shortKey is too short for its hint to show its last characters.
		shortKey = "halfred_abc123"
	)
	tests := []struct {
		name   string
		hint   string
		err    error
		secret string
		// keep is text of the error that must survive.
		keep string
	}{
		{
			name:   "credential in a wrapped cause",
			hint:   mask(key),
			err:    &Error{Kind: ErrUnavailable, Err: fmt.Errorf("lookup %q: %w", key, errors.New("connection refused"))},
			secret: key,
			keep:   "connection refused",
		},
		{
			name:   "credential in a message",
			hint:   mask(key),
			err:    &Error{Kind: ErrInvalidCredential, Message: "bad key " + key + "."},
			secret: key,
			keep:   "bad key",
		},
		{
			name:   "credential twice, glued to punctuation",
			hint:   mask(key),
			err:    fmt.Errorf("key=%s,again:(%s)", key, key),
			secret: key,
			keep:   "again:(",
		},
		{
			name:   "short credential",
			hint:   mask(shortKey),
			err:    fmt.Errorf("authenticator: unknown key %s", shortKey),
			secret: shortKey,
			keep:   "unknown key",
		},
		{
			name:   "JWT without a hint",
			err:    &Error{Kind: ErrInvalidCredential, Err: fmt.Errorf("parse %s: bad signature", jwt)},
			secret: jwt,
			keep:   "bad signature",
		},
		{
			name:   "JWT with its hint",
			hint:   mask(jwt),
			err:    fmt.Errorf("token %s revoked", jwt),
			secret: jwt,
			keep:   "revoked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, buf := jsonLogger(slog.LevelDebug)
			NewSlogObserver(l).Observe(context.Background(), Event{
				Kind: EventAuthFailed, Status: 503, Hint: tt.hint, Err: tt.err,
			})
			out := buf.String()
			if strings.Contains(out, tt.secret) {
				t.Fatalf("log contains the credential: %s", out)
			}
			// Nor a long piece of it.
			if piece := tt.secret[len(tt.secret)/2-4 : len(tt.secret)/2+4]; strings.Contains(out, piece) {
				t.Fatalf("log contains part %q of the credential: %s", piece, out)
			}
			recs := records(t, buf)
			msg, _ := recs[0]["error"].(string)
			if !strings.Contains(msg, tt.keep) {
				t.Errorf("error %q lost %q", msg, tt.keep)
			}
			if !strings.Contains(msg, "…") {
				t.Errorf("error %q shows no masked credential", msg)
			}
		})
	}
}

func TestScrubLeavesOrdinaryText(t *testing.T) {
	t.Parallel()
	tests := []struct{ s, hint string }{
		{"keystore: look up key: connection refused", "halfred_…a1B2"},
		{"Malformed API key: API keys start with halfred_", "halfred_…"},
		{"auth: invalid credential: keystore: unknown key", ""},
		{"", "halfred_…a1B2"},
		{"x.y.z eyJ", "…"},
	}
	for _, tt := range tests {
		if got := scrub(tt.s, tt.hint); got != tt.s {
			t.Errorf("scrub(%q, %q) = %q, want it unchanged", tt.s, tt.hint, got)
		}
	}
}

func FuzzScrub(f *testing.F) {
	f.Add("lookup halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4 failed", "halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4")
	f.Add("x", "sk-0123456789abcdefghij")
	f.Add("a eyJh.b.c d", "eyJh.b.c")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, text, cred string) {
		// A credential is a b64token, as the Bearer extractor accepts it.
		if cred == "" || len(cred) > 512 {
			return
		}
		body := strings.TrimRight(cred, "=")
		if body == "" {
			return
		}
		for i := 0; i < len(body); i++ {
			if !isTokenChar(body[i]) {
				return
			}
		}
		hint := mask(cred)
		if hint == "…" && !looksJWT(cred) {
			return // mask shows nothing to find the credential by
		}
		if strings.Replace(hint, "…", "", 1) == cred {
			return // all prefix, such as "a0_": nothing for mask to hide
		}
		s := text + " " + cred + " " + text
		got := scrub(s, hint)
		// The credential is masked where it stands as a word of its own.
		if strings.Contains(" "+got+" ", " "+cred+" ") && !strings.Contains(" "+text+" ", " "+cred+" ") {
			t.Fatalf("scrub(%q, %q) = %q still holds the credential", s, hint, got)
		}
	})
}

func BenchmarkSlogObserver(b *testing.B) {
	ctx := context.Background()
	e := Event{Kind: EventAuthFailed, Method: MethodAPIKey, KeyID: "key_1", Project: "p", Hint: "halfred_…a1B2",
		ClientAddr: netip.MustParseAddr("192.0.2.1"), Status: 401, Err: &Error{Kind: ErrInvalidCredential, Err: errors.New("keystore: key revoked")},
		Duration: 42 * time.Microsecond}
	for _, bc := range []struct {
		name  string
		level slog.Level
	}{
		{"enabled", slog.LevelInfo},
		{"disabled", slog.LevelError},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := NewSlogObserver(slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: bc.level})))
			b.ReportAllocs()
			for b.Loop() {
				o.Observe(ctx, e)
			}
		})
	}
}
