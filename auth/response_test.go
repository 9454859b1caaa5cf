package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/testalloc"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rateLimitedError matches ErrRateLimited through an Is method.
type rateLimitedError struct{}

func (rateLimitedError) Error() string        { return "too fast" }
func (rateLimitedError) Is(target error) bool { return target == ErrRateLimited }

func TestJSONErrorHandler(t *testing.T) {
	t.Parallel()
	const challenge = `Bearer realm="halfred"`
	const invalidChallenge = `Bearer realm="halfred", error="invalid_token"`
	noCreds := wantResponse{status: 401, typ: "authentication_error", code: "missing_credentials", msg: resNoCredentials.msg, wwwAuthenticate: challenge}
	invalid := wantResponse{status: 401, typ: "authentication_error", code: "invalid_token", msg: resInvalid.msg, wwwAuthenticate: invalidChallenge}
	malformed := wantResponse{status: 400, typ: "invalid_request_error", code: "invalid_request", msg: "The request's credentials are malformed.", wwwAuthenticate: `Bearer error="invalid_request"`}
	scope := wantResponse{status: 403, typ: "permission_error", code: "insufficient_scope", msg: "The credential does not carry a scope this request needs.", wwwAuthenticate: `Bearer error="insufficient_scope"`}
	limited := wantResponse{status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded", msg: "Too many requests. Retry after the number of seconds in the Retry-After header.", retryAfter: "1"}
	unavailable := resUnavailable
	internal := resInternal
	with := func(w wantResponse, f func(*wantResponse)) wantResponse { f(&w); return w }

	cases := []struct {
		name string
		err  error
		want wantResponse
	}{
		{"ErrNoCredentials", ErrNoCredentials, noCreds},
		{"ErrInvalidCredential", ErrInvalidCredential, invalid},
		{"ErrMalformedRequest", ErrMalformedRequest, malformed},
		{"ErrInsufficientScope without scopes", ErrInsufficientScope, scope},
		{"ErrRateLimited", ErrRateLimited, limited},
		{"ErrUnavailable", ErrUnavailable, unavailable},
		{"ErrInternal", ErrInternal, internal},

		{"*Error message is shown", &Error{Kind: ErrInvalidCredential, Message: "API keys start with halfred_"},
			with(invalid, func(w *wantResponse) { w.msg = "API keys start with halfred_" })},
		{"*Error found through wrapping", fmt.Errorf("keystore: %w", &Error{Kind: ErrMalformedRequest, Message: "Use one header."}),
			with(malformed, func(w *wantResponse) { w.msg = "Use one header." })},
		{"*Error found through a join", errors.Join(errors.New("x"), &Error{Kind: ErrInvalidCredential, Message: "Expired."}),
			with(invalid, func(w *wantResponse) { w.msg = "Expired." })},
		{"scopes listed", &Error{Kind: ErrInsufficientScope, Scopes: []string{"keys:manage", "tokens:issue"}},
			with(scope, func(w *wantResponse) {
				w.wwwAuthenticate = `Bearer error="insufficient_scope", scope="keys:manage tokens:issue"`
			})},
		{"invalid scopes left out of the challenge", &Error{Kind: ErrInsufficientScope, Scopes: []string{"a b", `x"y`, "", "ok", "c\\d"}},
			with(scope, func(w *wantResponse) { w.wwwAuthenticate = `Bearer error="insufficient_scope", scope="ok"` })},
		{"no valid scope omits the attribute", &Error{Kind: ErrInsufficientScope, Scopes: []string{"a b"}}, scope},
		{"Retry-After rounded up", &Error{Kind: ErrRateLimited, RetryAfter: 2*time.Second + time.Millisecond},
			with(limited, func(w *wantResponse) { w.retryAfter = "3" })},
		{"rate limit through an Is method", rateLimitedError{}, limited},

		{"unknown error is unavailable", errors.New("pq: password authentication failed for user keygate"), unavailable},
		{"deadline is unavailable", context.DeadlineExceeded, unavailable},
		{"nil error fails closed", nil, unavailable},
		{"typed nil *Error fails closed", (*Error)(nil), unavailable},
		{"*Error without a kind is unavailable", &Error{Err: errors.New("boom")}, unavailable},
		{"server failure wins over a client error", errors.Join(ErrInvalidCredential, ErrUnavailable), unavailable},
		{"internal wins over unavailable", errors.Join(ErrUnavailable, ErrInternal), internal},
		{"cause that is unavailable wins over the kind", &Error{Kind: ErrInvalidCredential, Err: ErrUnavailable}, unavailable},
		{"malformed wins over invalid", &Error{Kind: ErrInvalidCredential, Err: ErrMalformedRequest}, malformed},
	}
	h := JSONErrorHandler("halfred")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodGet, "/", nil), tc.err)
			checkErrorResponse(t, rec, tc.want)
			if tc.err != nil && tc.want.status >= 500 && strings.Contains(rec.Body.String(), "pq:") {
				t.Errorf("body %s reveals the error", rec.Body)
			}
		})
	}
}

func TestJSONErrorHandlerEscapesMessage(t *testing.T) {
	t.Parallel()
	msg := "Say \"hi\" <b>&</b>\n\\ \u2028 done"
	rec := httptest.NewRecorder()
	JSONErrorHandler("")(rec, httptest.NewRequest(http.MethodGet, "/", nil), &Error{Kind: ErrMalformedRequest, Message: msg})
	if got := decodeBody(t, rec.Body.Bytes()); got.Message != msg {
		t.Fatalf("message = %q, want %q", got.Message, msg)
	}
	if strings.ContainsAny(rec.Body.String(), "<>\u2028") {
		t.Errorf("body %q holds unescaped HTML or line separators", rec.Body)
	}
	if !strings.HasSuffix(rec.Body.String(), "}\n") {
		t.Errorf("body %q does not end in a newline", rec.Body)
	}
}

func TestJSONErrorHandlerRealm(t *testing.T) {
	t.Parallel()
	for realm, want := range map[string]string{
		"":                 `Bearer realm="api"`,
		"api":              `Bearer realm="api"`,
		"Halfred API (v1)": `Bearer realm="Halfred API (v1)"`,
	} {
		rec := httptest.NewRecorder()
		JSONErrorHandler(realm)(rec, httptest.NewRequest(http.MethodGet, "/", nil), ErrNoCredentials)
		if got := rec.Header().Get("WWW-Authenticate"); got != want {
			t.Errorf("realm %q: WWW-Authenticate = %q, want %q", realm, got, want)
		}
	}
	for _, realm := range []string{`a"b`, `a\b`, "a\r\nSet-Cookie: x=y", "a\x00", "a\x7f", "hälfred"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("JSONErrorHandler(%q) did not panic", realm)
				}
			}()
			JSONErrorHandler(realm)
		}()
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "1"},
		{0, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{1500 * time.Millisecond, "2"},
		{2 * time.Second, "2"},
		{90 * time.Second, "90"},
		{time.Hour, "3600"},
	}
	for _, tc := range cases {
		if got := retryAfter(tc.d); got != tc.want {
			t.Errorf("retryAfter(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestValidScope(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		want := c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e)
		if got := ValidScope(string([]byte{byte(c)})); got != want {
			t.Errorf("ValidScope(%q) = %v, want %v", byte(c), got, want)
		}
	}
	if ValidScope("") {
		t.Error("empty scope is valid")
	}
}

func TestCheckRealm(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		want := c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
		if got := checkRealm("r"+string([]byte{byte(c)})) == nil; got != want {
			t.Errorf("checkRealm with %q: ok = %v, want %v", byte(c), got, want)
		}
	}
}

// TestRankMatchesErrorsIs: the allocation-free classification agrees
// with errors.Is in the table's order.
func TestRankMatchesErrorsIs(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	errs := []error{
		nil, cause, context.Canceled, rateLimitedError{},
		&Error{}, &Error{Err: cause}, &Error{Kind: ErrRateLimited}, &Error{Kind: cause, Err: ErrInternal},
		&Error{Kind: ErrInvalidCredential, Err: &Error{Kind: ErrUnavailable}},
		fmt.Errorf("a: %w", fmt.Errorf("b: %w", &Error{Kind: ErrMalformedRequest})),
		errors.Join(cause, ErrInsufficientScope, nil),
		errors.Join(ErrNoCredentials, ErrInvalidCredential),
		fmt.Errorf("%w and %w", rateLimitedError{}, ErrNoCredentials),
		fmt.Errorf("%w", errors.Join(fmt.Errorf("%w", ErrInternal))),
	}
	for _, kind := range []error{ErrNoCredentials, ErrInvalidCredential, ErrMalformedRequest, ErrInsufficientScope, ErrRateLimited, ErrUnavailable, ErrInternal} {
		errs = append(errs, kind, &Error{Kind: kind}, fmt.Errorf("w: %w", kind))
	}
	for _, err := range errs {
		want := len(errorClasses)
		for i := range errorClasses {
			if errors.Is(err, errorClasses[i].kind) {
				want = i
				break
			}
		}
		if got := rank(err, len(errorClasses)); got != want {
			t.Errorf("rank(%v) = %d, want %d", err, got, want)
		}
		var wantE *Error
		if !errors.As(err, &wantE) {
			wantE = nil
		}
		if got := asError(err); got != wantE {
			t.Errorf("asError(%v) = %p, want %p", err, got, wantE)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &Error{Kind: ErrInvalidCredential, Err: errors.New("x")})
	if n := testalloc.Min(100, func() { classify(err); asError(err) }); n != 0 {
		t.Errorf("classify and asError allocate %v times, want 0", n)
	}
}

// TestErrorBodyCacheBounded checks that an Authenticator that makes a new
// message for every request gets correct bodies without growing the
// handler's cache of rendered bodies without bound.
func TestErrorBodyCacheBounded(t *testing.T) {
	t.Parallel()
	var bc bodyCache
	c := classify(ErrInvalidCredential)
	for i := range 3 * maxCachedBodies {
		msg := fmt.Sprintf("message %d", i)
		var got errorBody
		if err := json.Unmarshal(bc.get(c, msg), &got); err != nil {
			t.Fatal(err)
		}
		if got.Error.Message != msg || got.Error.Code != "invalid_token" {
			t.Fatalf("body for %q = %+v", msg, got)
		}
	}
	if n := bc.len(); n != maxCachedBodies {
		t.Fatalf("cache holds %d bodies, want the bound %d", n, maxCachedBodies)
	}
	// A cached body is returned again, not re-rendered.
	if a, b := bc.get(c, "message 0"), bc.get(c, "message 0"); &a[0] != &b[0] {
		t.Fatal("a cached body was rendered again")
	}
}

// TestClassMemo: remembered classes are the classes classify finds, for
// errors that share a slot too, and a remembered *Error costs no
// allocation.
func TestClassMemo(t *testing.T) {
	errs := []error{
		&Error{Kind: ErrInvalidCredential, Message: "bad key"},
		&Error{Kind: ErrInvalidCredential, Err: fmt.Errorf("%w: %w", ErrUnavailable, errors.New("db down"))}, // fails closed
		&Error{Kind: ErrMalformedRequest},
		&Error{Kind: ErrRateLimited, Err: errors.Join(errors.New("x"), ErrInternal)},
		&Error{Err: errors.New("no kind")},
		ErrNoCredentials,                          // not an *Error: not remembered
		fmt.Errorf("w: %w", ErrInsufficientScope), // nor this
		(*Error)(nil),
	}
	// Enough *Errors that some share a slot.
	for i := range 3 * classMemoSlots {
		kind := []error{ErrInvalidCredential, ErrInsufficientScope, ErrUnavailable}[i%3]
		errs = append(errs, &Error{Kind: kind, Message: fmt.Sprint(i)})
	}
	var m classMemo
	for round := range 3 {
		for i, err := range errs {
			if got, want := m.classify(err), classify(err); got != want {
				t.Fatalf("round %d, error %d (%v): class %s, want %s", round, i, err, got.code, want.code)
			}
		}
	}
	e := errs[1]
	m.classify(e)
	if n := testalloc.Min(100, func() { m.classify(e) }); n != 0 {
		t.Errorf("classifying a remembered *Error allocates %v times, want 0", n)
	}
}
