package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/testalloc"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	goodKey  = "halfred_GoodKey0123456789abcdefA1B2"
	otherKey = "halfred_OtherKey0123456789abcdeZ9Y8"
)

var alice = Principal{
	Method:  MethodAPIKey,
	KeyID:   "key_alice",
	Project: "default",
	Scopes:  []string{"models:read", "chat:write"},
	Hint:    "halfred_…A1B2",
}

// fakeAuth is an Authenticator that counts its calls.
type fakeAuth struct {
	calls atomic.Int64
	fn    func(ctx context.Context, cred string) (Principal, error)
}

func (f *fakeAuth) Authenticate(ctx context.Context, cred string) (Principal, error) {
	f.calls.Add(1)
	return f.fn(ctx, cred)
}

// keyAuth accepts goodKey as alice and answers every other credential with
// err (ErrInvalidCredential when nil).
func keyAuth(err error) *fakeAuth {
	if err == nil {
		err = ErrInvalidCredential
	}
	return &fakeAuth{fn: func(_ context.Context, cred string) (Principal, error) {
		if cred == goodKey {
			return alice, nil
		}
		return Principal{}, err
	}}
}

// fixedAuth answers every credential with p and err.
func fixedAuth(p Principal, err error) *fakeAuth {
	return &fakeAuth{fn: func(context.Context, string) (Principal, error) { return p, err }}
}

func mustNew(t testing.TB, a Authenticator, opts ...Option) *Guard {
	t.Helper()
	g, err := New(a, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

// quietLogger discards, so that tests of 5xx answers do not write to the
// test output.
func quietLogger() Option {
	return WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// recordingHandler is a handler that records whether it ran and the
// Principal it saw.
type recordingHandler struct {
	called    atomic.Int64
	principal atomic.Pointer[Principal]
}

func (h *recordingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.called.Add(1)
	if p, ok := FromContext(r.Context()); ok {
		h.principal.Store(p)
	}
	w.WriteHeader(http.StatusNoContent)
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// wantResponse is an error response, exactly.
type wantResponse struct {
	status          int
	typ, code, msg  string
	wwwAuthenticate string // "" means the header must be absent
	retryAfter      string // "" means the header must be absent
}

// checkErrorResponse checks status, headers and the JSON body of rec.
func checkErrorResponse(t *testing.T, rec *httptest.ResponseRecorder, want wantResponse) {
	t.Helper()
	if rec.Code != want.status {
		t.Errorf("status = %d, want %d (body %s)", rec.Code, want.status, rec.Body)
	}
	h := rec.Header()
	for name, want := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Www-Authenticate":       want.wwwAuthenticate,
		"Retry-After":            want.retryAfter,
	} {
		got := h.Values(name)
		switch {
		case want == "" && len(got) != 0:
			t.Errorf("%s = %q, want no such header", name, got)
		case want != "" && !slices.Equal(got, []string{want}):
			t.Errorf("%s = %q, want [%q]", name, got, want)
		}
	}
	body := decodeBody(t, rec.Body.Bytes())
	if got, want := body, (errorDetail{Message: want.msg, Type: want.typ, Code: want.code}); got != want {
		t.Errorf("body = %+v, want %+v", got, want)
	}
}

// decodeBody parses an error body strictly: one object with exactly the
// key "error", holding exactly message, type and code.
func decodeBody(t *testing.T, b []byte) errorDetail {
	t.Helper()
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(b, &outer); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", b, err)
	}
	if len(outer) != 1 || outer["error"] == nil {
		t.Fatalf("body %s: want exactly the key \"error\"", b)
	}
	var inner map[string]string
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		t.Fatalf("body %s: error is not an object of strings: %v", b, err)
	}
	if len(inner) != 3 {
		t.Fatalf("body %s: want exactly message, type and code", b)
	}
	return errorDetail{Message: inner["message"], Type: inner["type"], Code: inner["code"]}
}

var (
	resNoCredentials = wantResponse{
		status: 401, typ: "authentication_error", code: "missing_credentials",
		msg:             "No API key or token was provided: send it in the Authorization header, as 'Authorization: Bearer YOUR_KEY'.",
		wwwAuthenticate: `Bearer realm="api"`,
	}
	resInvalid = wantResponse{
		status: 401, typ: "authentication_error", code: "invalid_token",
		msg:             "Invalid API key or token.",
		wwwAuthenticate: `Bearer realm="api", error="invalid_token"`,
	}
	resTooLong = wantResponse{
		status: 401, typ: "authentication_error", code: "invalid_token",
		msg:             "The credential is too long.",
		wwwAuthenticate: `Bearer realm="api", error="invalid_token"`,
	}
	resTwoCredentials = wantResponse{
		status: 400, typ: "invalid_request_error", code: "invalid_request",
		msg:             errTwoCredentials.Message,
		wwwAuthenticate: `Bearer error="invalid_request"`,
	}
	resUnavailable = wantResponse{
		status: 503, typ: "api_error", code: "service_unavailable",
		msg: "The credential cannot be checked right now. Try again later.",
	}
	resInternal = wantResponse{
		status: 500, typ: "api_error", code: "internal_error",
		msg: "The server failed to check the credential.",
	}
)

func TestMiddlewareSuccess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		header http.Header
	}{
		{"Authorization Bearer", http.Header{"Authorization": {"Bearer " + goodKey}}},
		{"api-key header", http.Header{"Api-Key": {goodKey}}},
		{"both headers with the same credential", http.Header{"Authorization": {"Bearer " + goodKey}, "Api-Key": {goodKey}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := keyAuth(nil)
			next := &recordingHandler{}
			rec := serve(mustNew(t, a).Middleware(next), newRequest("/v1/models", tc.header))
			if rec.Code != http.StatusNoContent || next.called.Load() != 1 {
				t.Fatalf("status %d, next called %d times; want 204, once", rec.Code, next.called.Load())
			}
			if got := next.principal.Load(); got == nil || !reflect.DeepEqual(*got, alice) {
				t.Fatalf("principal in context = %+v, want %+v", got, alice)
			}
			if n := a.calls.Load(); n != 1 {
				t.Fatalf("Authenticator called %d times, want 1", n)
			}
		})
	}
}

func TestMiddlewarePassesContextToAuthenticator(t *testing.T) {
	t.Parallel()
	type key struct{}
	var got any
	a := fixedAuth(alice, nil)
	a.fn = func(ctx context.Context, _ string) (Principal, error) {
		got = ctx.Value(key{})
		return alice, nil
	}
	r := newRequest("/", http.Header{"Api-Key": {goodKey}})
	r = r.WithContext(context.WithValue(r.Context(), key{}, "v"))
	serve(mustNew(t, a).Middleware(&recordingHandler{}), r)
	if got != "v" {
		t.Fatalf("Authenticator saw context value %v, want the request's", got)
	}
}

// TestMiddlewareErrors checks every row of the error table, through the
// middleware, and that the protected handler never runs.
func TestMiddlewareErrors(t *testing.T) {
	t.Parallel()
	bearer := http.Header{"Authorization": {"Bearer " + otherKey}}
	cases := []struct {
		name   string
		auth   *fakeAuth
		opts   []Option
		target string
		header http.Header
		want   wantResponse
		calls  int64 // Authenticator calls
	}{
		{
			name: "no credentials", auth: keyAuth(nil), header: http.Header{},
			want: resNoCredentials,
		},
		{
			name: "non-Bearer Authorization scheme is no credentials", auth: keyAuth(nil),
			header: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}},
			want:   resNoCredentials,
		},
		{
			name: "query credential ignored by default", auth: keyAuth(nil), target: "/?api_key=" + goodKey,
			want: resNoCredentials,
		},
		{
			name: "cookie credential ignored by default", auth: keyAuth(nil),
			header: http.Header{"Cookie": {"api_key=" + goodKey}},
			want:   resNoCredentials,
		},
		{
			name: "custom realm", auth: keyAuth(nil), opts: []Option{WithRealm("Halfred API")},
			want: wantResponse{
				status: 401, typ: "authentication_error", code: "missing_credentials", msg: resNoCredentials.msg,
				wwwAuthenticate: `Bearer realm="Halfred API"`,
			},
		},
		{
			name: "invalid credential", auth: keyAuth(nil), header: bearer, calls: 1,
			want: resInvalid,
		},
		{
			name: "invalid credential with a message", header: bearer, calls: 1,
			auth: keyAuth(&Error{Kind: ErrInvalidCredential, Message: "API keys start with halfred_"}),
			want: wantResponse{
				status: 401, typ: "authentication_error", code: "invalid_token",
				msg: "API keys start with halfred_", wwwAuthenticate: resInvalid.wwwAuthenticate,
			},
		},
		{
			name: "invalid credential with custom realm", header: bearer, calls: 1,
			auth: keyAuth(nil), opts: []Option{WithRealm("halfred")},
			want: wantResponse{
				status: 401, typ: "authentication_error", code: "invalid_token", msg: resInvalid.msg,
				wwwAuthenticate: `Bearer realm="halfred", error="invalid_token"`,
			},
		},
		{
			name: "credential over the length cap", auth: keyAuth(nil),
			header: http.Header{"Api-Key": {strings.Repeat("k", defaultMaxCredentialLength+1)}},
			want:   resTooLong,
		},
		{
			name: "credential over a configured length cap", auth: keyAuth(nil), opts: []Option{WithMaxCredentialLength(10)},
			header: http.Header{"Authorization": {"Bearer " + goodKey}},
			want:   resTooLong,
		},
		{
			name: "malformed Authorization header", auth: keyAuth(nil),
			header: http.Header{"Authorization": {"Bearer\t" + goodKey}},
			want: wantResponse{
				status: 400, typ: "invalid_request_error", code: "invalid_request",
				msg: errBearerSeparator.Message, wwwAuthenticate: `Bearer error="invalid_request"`,
			},
		},
		{
			name: "two Authorization headers", auth: keyAuth(nil),
			header: http.Header{"Authorization": {"Bearer " + goodKey, "Bearer " + goodKey}},
			want: wantResponse{
				status: 400, typ: "invalid_request_error", code: "invalid_request",
				msg: errAuthorizationTwice.Message, wwwAuthenticate: `Bearer error="invalid_request"`,
			},
		},
		{
			name: "two different credentials", auth: keyAuth(nil),
			header: http.Header{"Authorization": {"Bearer " + goodKey}, "Api-Key": {otherKey}},
			want:   resTwoCredentials,
		},
		{
			name: "two different credentials, the first one bad", auth: keyAuth(nil),
			header: http.Header{"Authorization": {"Bearer " + otherKey}, "Api-Key": {goodKey}},
			want:   resTwoCredentials,
		},
		{
			name: "malformed request from the Authenticator", header: bearer, calls: 1,
			auth: keyAuth(ErrMalformedRequest),
			want: wantResponse{
				status: 400, typ: "invalid_request_error", code: "invalid_request",
				msg: "The request's credentials are malformed.", wwwAuthenticate: `Bearer error="invalid_request"`,
			},
		},
		{
			name: "insufficient scope from the Authenticator", header: bearer, calls: 1,
			auth: keyAuth(&Error{Kind: ErrInsufficientScope, Scopes: []string{"chat:write", "models:read"}}),
			want: wantResponse{
				status: 403, typ: "permission_error", code: "insufficient_scope",
				msg:             "The credential does not carry a scope this request needs.",
				wwwAuthenticate: `Bearer error="insufficient_scope", scope="chat:write models:read"`,
			},
		},
		{
			name: "rate limited", header: bearer, calls: 1,
			auth: keyAuth(&Error{Kind: ErrRateLimited, RetryAfter: 1500 * time.Millisecond}),
			want: wantResponse{
				status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded",
				msg:        "Too many requests. Retry after the number of seconds in the Retry-After header.",
				retryAfter: "2",
			},
		},
		{
			name: "rate limited without a delay", header: bearer, calls: 1,
			auth: keyAuth(ErrRateLimited),
			want: wantResponse{
				status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded",
				msg:        "Too many requests. Retry after the number of seconds in the Retry-After header.",
				retryAfter: "1",
			},
		},
		{
			name: "store unavailable", header: bearer, calls: 1, auth: keyAuth(ErrUnavailable),
			want: resUnavailable,
		},
		{
			name: "store unavailable with a message", header: bearer, calls: 1,
			auth: keyAuth(&Error{Kind: ErrUnavailable, Message: "The key store is down.", Err: errors.New("dial tcp: refused")}),
			want: wantResponse{status: 503, typ: "api_error", code: "service_unavailable", msg: "The key store is down."},
		},
		{
			name: "raw store error fails closed as unavailable", header: bearer, calls: 1,
			auth: keyAuth(errors.New("pq: dial tcp 10.0.0.7:5432: connection refused")),
			want: resUnavailable,
		},
		{
			name: "context deadline exceeded is unavailable", header: bearer, calls: 1,
			auth: keyAuth(context.DeadlineExceeded),
			want: resUnavailable,
		},
		{
			name: "wrapped context deadline is unavailable", header: bearer, calls: 1,
			auth: keyAuth(fmt.Errorf("keystore: lookup: %w", context.DeadlineExceeded)),
			want: resUnavailable,
		},
		{
			name: "context canceled is unavailable", header: bearer, calls: 1,
			auth: keyAuth(context.Canceled),
			want: resUnavailable,
		},
		{
			name: "internal error", header: bearer, calls: 1, auth: keyAuth(ErrInternal),
			want: resInternal,
		},
		{
			name: "Authenticator panics", header: bearer, calls: 1,
			auth: &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic("boom") }},
			want: resInternal,
		},
		{
			name: "Authenticator panics with nil", header: bearer, calls: 1,
			auth: &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic(nil) }},
			want: resInternal,
		},
		{
			name: "Authenticator returns a zero Principal without error", header: bearer, calls: 1,
			auth: fixedAuth(Principal{}, nil),
			want: resInternal,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := &recordingHandler{}
			g := mustNew(t, tc.auth, append([]Option{quietLogger()}, tc.opts...)...)
			target := tc.target
			if target == "" {
				target = "/v1/models"
			}
			rec := serve(g.Middleware(next), newRequest(target, tc.header))
			if n := next.called.Load(); n != 0 {
				t.Errorf("protected handler called %d times, want never", n)
			}
			if n := tc.auth.calls.Load(); n != tc.calls {
				t.Errorf("Authenticator called %d times, want %d", n, tc.calls)
			}
			checkErrorResponse(t, rec, tc.want)
		})
	}
}

// TestInvalidResponsesAreIdentical: an unknown, a revoked, an expired and
// a disabled key get the same response, byte for byte, so a caller cannot
// tell them apart.
func TestInvalidResponsesAreIdentical(t *testing.T) {
	t.Parallel()
	causes := []error{
		errors.New("keystore: unknown API key"),
		errors.New("keystore: API key revoked"),
		errors.New("keystore: API key expired"),
		errors.New("keystore: API key disabled"),
	}
	var first *httptest.ResponseRecorder
	for _, cause := range causes {
		g := mustNew(t, keyAuth(&Error{Kind: ErrInvalidCredential, Err: cause}))
		rec := serve(g.Middleware(&recordingHandler{}), newRequest("/", http.Header{"Api-Key": {otherKey}}))
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("%v: status %d, want 401", cause, rec.Code)
		}
		if bytes.Contains(rec.Body.Bytes(), []byte("keystore")) {
			t.Fatalf("%v: body %s reveals the cause", cause, rec.Body)
		}
		if first == nil {
			first = rec
			continue
		}
		if !bytes.Equal(rec.Body.Bytes(), first.Body.Bytes()) {
			t.Errorf("%v: body %q, differs from %q", cause, rec.Body, first.Body)
		}
		if !reflect.DeepEqual(rec.Header(), first.Header()) {
			t.Errorf("%v: headers %v, differ from %v", cause, rec.Header(), first.Header())
		}
	}
}

func TestOptional(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		auth      *fakeAuth
		header    http.Header
		status    int
		called    bool
		principal bool
	}{
		{"no credentials reaches next anonymously", keyAuth(nil), http.Header{}, 204, true, false},
		{"other Authorization scheme reaches next anonymously", keyAuth(nil), http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 204, true, false},
		{"valid credential reaches next with principal", keyAuth(nil), http.Header{"Api-Key": {goodKey}}, 204, true, true},
		{"bad credential is still 401", keyAuth(nil), http.Header{"Api-Key": {otherKey}}, 401, false, false},
		{"malformed request is still 400", keyAuth(nil), http.Header{"Authorization": {"Bearer a b"}}, 400, false, false},
		{"two different credentials are still 400", keyAuth(nil), http.Header{"Authorization": {"Bearer " + goodKey}, "Api-Key": {otherKey}}, 400, false, false},
		{"too long is still 401", keyAuth(nil), http.Header{"Api-Key": {strings.Repeat("k", 9000)}}, 401, false, false},
		{"store down is still 503", keyAuth(ErrUnavailable), http.Header{"Api-Key": {otherKey}}, 503, false, false},
		{"Authenticator's ErrNoCredentials is not anonymous", keyAuth(ErrNoCredentials), http.Header{"Api-Key": {otherKey}}, 401, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := &recordingHandler{}
			rec := serve(mustNew(t, tc.auth, quietLogger()).Optional(next), newRequest("/", tc.header))
			if rec.Code != tc.status {
				t.Errorf("status = %d, want %d", rec.Code, tc.status)
			}
			if got := next.called.Load() == 1; got != tc.called {
				t.Errorf("next called = %v, want %v", got, tc.called)
			}
			if got := next.principal.Load() != nil; got != tc.principal {
				t.Errorf("principal in context = %v, want %v", got, tc.principal)
			}
		})
	}
}

func TestGuardRequireScopes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		scopes []string
		header http.Header
		want   *wantResponse // nil: next is called
	}{
		{name: "all scopes present", scopes: []string{"models:read", "chat:write"}, header: http.Header{"Api-Key": {goodKey}}},
		{name: "no scopes required", header: http.Header{"Api-Key": {goodKey}}},
		{
			name: "one scope missing", scopes: []string{"models:read", "keys:manage"}, header: http.Header{"Api-Key": {goodKey}},
			want: &wantResponse{
				status: 403, typ: "permission_error", code: "insufficient_scope",
				msg:             "The credential lacks the scope this request needs: keys:manage.",
				wwwAuthenticate: `Bearer error="insufficient_scope", scope="models:read keys:manage"`,
			},
		},
		{
			name: "two scopes missing", scopes: []string{"keys:manage", "tokens:issue"}, header: http.Header{"Api-Key": {goodKey}},
			want: &wantResponse{
				status: 403, typ: "permission_error", code: "insufficient_scope",
				msg:             "The credential lacks scopes this request needs: keys:manage, tokens:issue.",
				wwwAuthenticate: `Bearer error="insufficient_scope", scope="keys:manage tokens:issue"`,
			},
		},
		{name: "no credentials", scopes: []string{"models:read"}, header: http.Header{}, want: &resNoCredentials},
		{name: "bad credential", scopes: []string{"models:read"}, header: http.Header{"Api-Key": {otherKey}}, want: &resInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := &recordingHandler{}
			a := keyAuth(nil)
			rec := serve(mustNew(t, a).RequireScopes(tc.scopes...)(next), newRequest("/", tc.header))
			if tc.want == nil {
				if rec.Code != 204 || next.called.Load() != 1 || next.principal.Load() == nil {
					t.Fatalf("status %d, next called %d, principal %v; want 204, once, set",
						rec.Code, next.called.Load(), next.principal.Load())
				}
				return
			}
			if n := next.called.Load(); n != 0 {
				t.Errorf("next called %d times, want never", n)
			}
			checkErrorResponse(t, rec, *tc.want)
		})
	}
}

// TestGuardRequireScopesReusesPrincipal: behind an outer Middleware, the
// credential is checked once.
func TestGuardRequireScopesReusesPrincipal(t *testing.T) {
	t.Parallel()
	a := keyAuth(nil)
	g := mustNew(t, a)
	for _, tc := range []struct {
		scope  string
		status int
	}{{"chat:write", 204}, {"keys:manage", 403}} {
		next := &recordingHandler{}
		h := g.Middleware(g.RequireScopes(tc.scope)(next))
		before := a.calls.Load()
		rec := serve(h, newRequest("/", http.Header{"Api-Key": {goodKey}}))
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.scope, rec.Code, tc.status)
		}
		if n := a.calls.Load() - before; n != 1 {
			t.Errorf("%s: Authenticator called %d times, want once", tc.scope, n)
		}
	}
}

// TestGuardRequireScopesErrorHandlerSeesPrincipal: a custom error handler
// can log who was refused.
func TestGuardRequireScopesErrorHandlerSeesPrincipal(t *testing.T) {
	t.Parallel()
	var got *Principal
	var gotErr error
	g := mustNew(t, keyAuth(nil), WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		got, _ = FromContext(r.Context())
		gotErr = err
		w.WriteHeader(http.StatusTeapot)
	}))
	rec := serve(g.RequireScopes("keys:manage")(&recordingHandler{}), newRequest("/", http.Header{"Api-Key": {goodKey}}))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("status %d, want the custom handler's 418", rec.Code)
	}
	if got == nil || got.KeyID != alice.KeyID {
		t.Errorf("error handler saw principal %+v, want alice", got)
	}
	var e *Error
	if !errors.As(gotErr, &e) || !errors.Is(gotErr, ErrInsufficientScope) || !slices.Equal(e.Scopes, []string{"keys:manage"}) {
		t.Errorf("error handler got %#v, want an insufficient-scope *Error listing keys:manage", gotErr)
	}
}

func TestRequireScopes(t *testing.T) {
	t.Parallel()
	withPrincipal := func(p *Principal) *http.Request {
		r := newRequest("/", nil)
		return r.WithContext(NewContext(r.Context(), p))
	}
	cases := []struct {
		name   string
		scopes []string
		r      *http.Request
		want   *wantResponse
	}{
		{name: "scope present", scopes: []string{"chat:write"}, r: withPrincipal(&alice)},
		{name: "no principal is 401", scopes: []string{"chat:write"}, r: newRequest("/", http.Header{"Api-Key": {goodKey}}), want: &resNoCredentials},
		{
			name: "missing scope is 403", scopes: []string{"chat:write", "keys:manage"}, r: withPrincipal(&alice),
			want: &wantResponse{
				status: 403, typ: "permission_error", code: "insufficient_scope",
				msg:             "The credential lacks the scope this request needs: keys:manage.",
				wwwAuthenticate: `Bearer error="insufficient_scope", scope="chat:write keys:manage"`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := &recordingHandler{}
			rec := serve(RequireScopes(tc.scopes...)(next), tc.r)
			if tc.want == nil {
				if rec.Code != 204 || next.called.Load() != 1 {
					t.Fatalf("status %d, next called %d; want 204, once", rec.Code, next.called.Load())
				}
				return
			}
			if next.called.Load() != 0 {
				t.Error("next called, want never")
			}
			checkErrorResponse(t, rec, *tc.want)
		})
	}
	t.Run("behind Middleware", func(t *testing.T) {
		t.Parallel()
		h := mustNew(t, keyAuth(nil)).Middleware(RequireScopes("models:read")(&recordingHandler{}))
		if rec := serve(h, newRequest("/", http.Header{"Api-Key": {goodKey}})); rec.Code != 204 {
			t.Fatalf("status %d, want 204", rec.Code)
		}
	})
}

func TestRequireScopesPanicsOnInvalidScope(t *testing.T) {
	t.Parallel()
	g := mustNew(t, keyAuth(nil))
	for _, scope := range []string{"", "a b", `a"b`, `a\b`, "a\x00", "hä"} {
		for name, f := range map[string]func(...string) func(http.Handler) http.Handler{
			"RequireScopes":       RequireScopes,
			"Guard.RequireScopes": g.RequireScopes,
		} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s(%q) did not panic", name, scope)
					}
				}()
				f("models:read", scope)
			}()
		}
	}
}

func TestRequireScopesCopiesScopes(t *testing.T) {
	t.Parallel()
	scopes := []string{"keys:manage"}
	mw := RequireScopes(scopes...)
	scopes[0] = "chat:write" // alice has it; the middleware must not see the change
	r := newRequest("/", nil)
	r = r.WithContext(NewContext(r.Context(), &alice))
	if rec := serve(mw(&recordingHandler{}), r); rec.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", rec.Code)
	}
}

func TestCustomErrorHandler(t *testing.T) {
	t.Parallel()
	var got []error
	g := mustNew(t, keyAuth(nil), WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		got = append(got, err)
		http.Error(w, "nope", http.StatusTeapot)
	}))
	h := g.Middleware(&recordingHandler{})
	for _, hdr := range []http.Header{{}, {"Api-Key": {otherKey}}, {"Authorization": {"Bearer a b"}}} {
		if rec := serve(h, newRequest("/", hdr)); rec.Code != http.StatusTeapot {
			t.Errorf("%v: status %d, want 418", hdr, rec.Code)
		}
	}
	want := []error{ErrNoCredentials, ErrInvalidCredential, ErrMalformedRequest}
	if len(got) != len(want) {
		t.Fatalf("handler called %d times, want %d", len(got), len(want))
	}
	for i := range want {
		if !errors.Is(got[i], want[i]) {
			t.Errorf("call %d: err %v, want %v", i, got[i], want[i])
		}
	}
	// WriteError uses the same handler.
	rec := httptest.NewRecorder()
	g.WriteError(rec, newRequest("/", nil), ErrRateLimited)
	if rec.Code != http.StatusTeapot || !errors.Is(got[len(got)-1], ErrRateLimited) {
		t.Fatalf("WriteError: status %d, err %v; want the custom handler", rec.Code, got[len(got)-1])
	}
}

func TestWriteErrorDefault(t *testing.T) {
	t.Parallel()
	g := mustNew(t, keyAuth(nil), WithRealm("halfred"))
	rec := httptest.NewRecorder()
	g.WriteError(rec, newRequest("/", nil), &Error{Kind: ErrRateLimited, RetryAfter: 30 * time.Second, Message: "Slow down."})
	checkErrorResponse(t, rec, wantResponse{
		status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded", msg: "Slow down.", retryAfter: "30",
	})
	rec = httptest.NewRecorder()
	g.WriteError(rec, newRequest("/", nil), ErrNoCredentials)
	checkErrorResponse(t, rec, wantResponse{
		status: 401, typ: "authentication_error", code: "missing_credentials", msg: resNoCredentials.msg,
		wwwAuthenticate: `Bearer realm="halfred"`,
	})
}

func TestCustomExtractor(t *testing.T) {
	t.Parallel()
	fromHeader := func(name string) Extractor {
		return ExtractorFunc(func(r *http.Request) (string, error) { return r.Header.Get(name), nil })
	}
	cases := []struct {
		name   string
		e      Extractor
		header http.Header
		status int
		calls  int64
	}{
		{"credential found", fromHeader("X-Key"), http.Header{"X-Key": {goodKey}}, 204, 1},
		{"nothing found", fromHeader("X-Key"), http.Header{}, 401, 0},
		{"over the cap is checked after Extract", fromHeader("X-Key"), http.Header{"X-Key": {strings.Repeat("k", 9000)}}, 401, 0},
		{"plain error is a malformed request", ExtractorFunc(func(*http.Request) (string, error) { return "", errors.New("bad") }), nil, 400, 0},
		{"sentinel error is kept", ExtractorFunc(func(*http.Request) (string, error) { return "", ErrInvalidCredential }), nil, 401, 0},
		{"unavailable error is kept", ExtractorFunc(func(*http.Request) (string, error) { return "", ErrUnavailable }), nil, 503, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := keyAuth(nil)
			g := mustNew(t, a, WithExtractors(tc.e), quietLogger())
			rec := serve(g.Middleware(&recordingHandler{}), newRequest("/", tc.header))
			if rec.Code != tc.status || a.calls.Load() != tc.calls {
				t.Fatalf("status %d, Authenticator calls %d; want %d, %d", rec.Code, a.calls.Load(), tc.status, tc.calls)
			}
		})
	}
}

func TestOptInExtractors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		opts   []Option
		target string
		header http.Header
		status int
	}{
		{"query credential when enabled", []Option{WithExtractors(BearerExtractor(), QueryExtractor("api_key"))}, "/?api_key=" + goodKey, nil, 204},
		{"query and header agree", []Option{WithExtractors(BearerExtractor(), QueryExtractor("api_key"))}, "/?api_key=" + goodKey, http.Header{"Authorization": {"Bearer " + goodKey}}, 204},
		{"query and header disagree", []Option{WithExtractors(BearerExtractor(), QueryExtractor("api_key"))}, "/?api_key=" + otherKey, http.Header{"Authorization": {"Bearer " + goodKey}}, 400},
		{"query credential when only cookie enabled", []Option{WithExtractors(CookieExtractor("api_key"))}, "/?api_key=" + goodKey, nil, 401},
		{"cookie credential when enabled", []Option{WithExtractors(CookieExtractor("api_key"))}, "/", http.Header{"Cookie": {"api_key=" + goodKey}}, 204},
		{"cookie ignored when only headers enabled", []Option{WithExtractors(HeaderExtractor("X-Api-Key"))}, "/", http.Header{"Cookie": {"api_key=" + goodKey}}, 401},
		{"custom header name", []Option{WithExtractors(HeaderExtractor("X-Api-Key"))}, "/", http.Header{"X-Api-Key": {goodKey}}, 204},
		{"default api-key header off when extractors replaced", []Option{WithExtractors(HeaderExtractor("X-Api-Key"))}, "/", http.Header{"Api-Key": {goodKey}}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := mustNew(t, keyAuth(nil), tc.opts...)
			rec := serve(g.Middleware(&recordingHandler{}), newRequest(tc.target, tc.header))
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
		})
	}
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	a := keyAuth(nil)
	cases := []struct {
		name string
		a    Authenticator
		opts []Option
	}{
		{"nil Authenticator", nil, nil},
		{"nil Option", a, []Option{nil}},
		{"no extractors", a, []Option{WithExtractors()}},
		{"nil extractor", a, []Option{WithExtractors(BearerExtractor(), nil)}},
		{"realm with a quote", a, []Option{WithRealm(`a"b`)}},
		{"realm with a backslash", a, []Option{WithRealm(`a\b`)}},
		{"realm with a newline", a, []Option{WithRealm("a\nb")}},
		{"realm with non-ASCII", a, []Option{WithRealm("hälfred")}},
		{"zero length cap", a, []Option{WithMaxCredentialLength(0)}},
		{"negative length cap", a, []Option{WithMaxCredentialLength(-1)}},
		{"nil error handler", a, []Option{WithErrorHandler(nil)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, err := New(tc.a, tc.opts...)
			if err == nil || g != nil {
				t.Fatalf("New = %v, %v; want nil and an error", g, err)
			}
			if !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	t.Run("valid options", func(t *testing.T) {
		t.Parallel()
		_, err := New(a, WithRealm(""), WithRealm("Halfred API v1"), WithMaxCredentialLength(1),
			WithLogger(nil), WithErrorHandler(JSONErrorHandler("x")), WithExtractors(BearerExtractor()))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestWithExtractorsCopiesSlice(t *testing.T) {
	t.Parallel()
	es := []Extractor{HeaderExtractor("X-Key")}
	g := mustNew(t, keyAuth(nil), WithExtractors(es...))
	es[0] = BearerExtractor()
	rec := serve(g.Middleware(&recordingHandler{}), newRequest("/", http.Header{"X-Key": {goodKey}}))
	if rec.Code != 204 {
		t.Fatalf("status %d, want 204", rec.Code)
	}
}

func TestZeroGuard(t *testing.T) {
	t.Parallel()
	var g Guard
	next := &recordingHandler{}
	rec := serve(g.Middleware(next), newRequest("/", http.Header{"Api-Key": {goodKey}}))
	if rec.Code != http.StatusUnauthorized || next.called.Load() != 0 {
		t.Fatalf("Middleware: status %d, next called %d; want 401, never", rec.Code, next.called.Load())
	}
	rec = serve(g.Optional(next), newRequest("/", http.Header{"Api-Key": {goodKey}}))
	if rec.Code != 204 || next.principal.Load() != nil {
		t.Fatalf("Optional: status %d, principal %v; want 204 anonymous", rec.Code, next.principal.Load())
	}
	if _, err := g.Authenticate(newRequest("/", nil)); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("Authenticate: %v, want ErrNoCredentials", err)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	storeErr := errors.New("store down")
	cases := []struct {
		name    string
		auth    *fakeAuth
		header  http.Header
		want    Principal
		wantErr []error // all must match
	}{
		{name: "success", auth: keyAuth(nil), header: http.Header{"Api-Key": {goodKey}}, want: alice},
		{name: "no credentials", auth: keyAuth(nil), header: http.Header{}, wantErr: []error{ErrNoCredentials}},
		{name: "invalid", auth: keyAuth(nil), header: http.Header{"Api-Key": {otherKey}}, wantErr: []error{ErrInvalidCredential}},
		{name: "error returned unchanged", auth: keyAuth(storeErr), header: http.Header{"Api-Key": {otherKey}}, wantErr: []error{storeErr}},
		{name: "malformed", auth: keyAuth(nil), header: http.Header{"Authorization": {"Bearer "}}, wantErr: []error{ErrMalformedRequest}},
		{
			name: "panic", header: http.Header{"Api-Key": {goodKey}}, wantErr: []error{ErrInternal},
			auth: &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic(errors.New("kaboom")) }},
		},
		{name: "zero principal", auth: fixedAuth(Principal{}, nil), header: http.Header{"Api-Key": {goodKey}}, wantErr: []error{ErrInternal}},
		{
			name: "principal with an error is dropped", auth: fixedAuth(alice, ErrInvalidCredential),
			header: http.Header{"Api-Key": {goodKey}}, wantErr: []error{ErrInvalidCredential},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := mustNew(t, tc.auth)
			p, err := g.Authenticate(newRequest("/", tc.header))
			if len(tc.wantErr) == 0 {
				if err != nil || !reflect.DeepEqual(p, tc.want) {
					t.Fatalf("Authenticate = %+v, %v; want %+v", p, err, tc.want)
				}
				return
			}
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want it to match %v", err, want)
				}
			}
			if !reflect.DeepEqual(p, Principal{}) {
				t.Errorf("principal = %+v with an error, want zero", p)
			}
		})
	}
	t.Run("panic error names only the type", func(t *testing.T) {
		t.Parallel()
		g := mustNew(t, &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic("secret " + goodKey) }})
		_, err := g.Authenticate(newRequest("/", http.Header{"Api-Key": {goodKey}}))
		if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "string") {
			t.Fatalf("err = %v, want the panic's type only", err)
		}
	})
}

// TestNextPanicIsNotRecovered: a panic in the protected handler is
// net/http's to handle, not the Guard's.
func TestNextPanicIsNotRecovered(t *testing.T) {
	t.Parallel()
	g := mustNew(t, keyAuth(nil))
	h := g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("next") }))
	defer func() {
		if v := recover(); v != "next" {
			t.Fatalf("recovered %v, want the handler's panic", v)
		}
	}()
	serve(h, newRequest("/", http.Header{"Api-Key": {goodKey}}))
	t.Fatal("panic swallowed")
}

// TestSecretHygiene sends a credential through every failure, with
// Authenticators that misbehave by putting it in their errors and panics,
// and checks that it never appears in a response or a log line.
func TestSecretHygiene(t *testing.T) {
	t.Parallel()
	const secret = "halfred_S3cretS3cretS3cret0123456789wXyZ"
	const hint = "halfred_…wXyZ"
	echo := func(format string) *fakeAuth {
		return fixedAuth(Principal{}, fmt.Errorf(format, secret))
	}
	cases := []struct {
		name   string
		auth   *fakeAuth
		header http.Header
		status int
		logged bool
	}{
		{"raw error containing the credential", echo("pq: lookup %s: connection refused"), http.Header{"Api-Key": {secret}}, 503, true},
		{"deadline wrapped with the credential", fixedAuth(Principal{}, fmt.Errorf("verify %s: %w", secret, context.DeadlineExceeded)), http.Header{"Authorization": {"Bearer " + secret}}, 503, true},
		{"unavailable *Error with the credential everywhere", fixedAuth(Principal{}, &Error{Kind: ErrUnavailable, Message: "store down for " + secret, Err: errors.New(secret)}), http.Header{"Api-Key": {secret}}, 503, true},
		{"raw error naming an internal failure", echo("internal: %s"), http.Header{"Api-Key": {secret}}, 503, true},
		{"ErrInternal wrapped with the credential", fixedAuth(Principal{}, fmt.Errorf("%w: %s", ErrInternal, secret)), http.Header{"Api-Key": {secret}}, 500, true},
		{"panic with a string holding the credential", &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic("bad key " + secret) }}, http.Header{"Api-Key": {secret}}, 500, true},
		{"panic with an error holding the credential", &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic(fmt.Errorf("bad key %s", secret)) }}, http.Header{"Api-Key": {secret}}, 500, true},
		{"panic with a struct holding the credential", &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic(struct{ Key string }{secret}) }}, http.Header{"Api-Key": {secret}}, 500, true},
		{"invalid with the credential in the message", fixedAuth(Principal{}, &Error{Kind: ErrInvalidCredential, Message: "key " + secret + " is revoked"}), http.Header{"Api-Key": {secret}}, 401, false},
		{"invalid with the credential in the cause", fixedAuth(Principal{}, &Error{Kind: ErrInvalidCredential, Err: fmt.Errorf("keystore: unknown key %s", secret)}), http.Header{"Api-Key": {secret}}, 401, false},
		{"plain invalid", fixedAuth(Principal{}, ErrInvalidCredential), http.Header{"Api-Key": {secret}}, 401, false},
		{"rate limited", fixedAuth(Principal{}, &Error{Kind: ErrRateLimited, Err: errors.New(secret)}), http.Header{"Api-Key": {secret}}, 429, false},
		{"two different credentials", keyAuth(nil), http.Header{"Api-Key": {secret}, "Authorization": {"Bearer " + goodKey}}, 400, false},
		{"malformed Bearer", keyAuth(nil), http.Header{"Authorization": {"Bearer " + secret + " " + secret}}, 400, false},
		{"malformed api-key", keyAuth(nil), http.Header{"Api-Key": {"Bearer " + secret}}, 400, false},
		{"Bearer with a tab", keyAuth(nil), http.Header{"Authorization": {"Bearer\t" + secret}}, 400, false},
		{"too long", keyAuth(nil), http.Header{"Api-Key": {strings.Repeat(secret, 300)}}, 401, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			g := mustNew(t, tc.auth, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			for _, mw := range []func(http.Handler) http.Handler{g.Middleware, g.Optional, g.RequireScopes("models:read")} {
				next := &recordingHandler{}
				rec := serve(mw(next), newRequest("/v1/models", tc.header))
				if rec.Code != tc.status || next.called.Load() != 0 {
					t.Fatalf("status %d, next called %d; want %d, never", rec.Code, next.called.Load(), tc.status)
				}
				var dump bytes.Buffer
				_ = rec.Header().Write(&dump)
				dump.Write(rec.Body.Bytes())
				if strings.Contains(dump.String(), secret) {
					t.Errorf("response contains the credential:\n%s", dump.String())
				}
			}
			out := logs.String()
			if strings.Contains(out, secret) {
				t.Errorf("log contains the credential:\n%s", out)
			}
			if !tc.logged {
				if out != "" {
					t.Errorf("client error was logged:\n%s", out)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 {
				t.Fatalf("got %d log lines, want one per request:\n%s", len(lines), out)
			}
			var entry map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
				t.Fatalf("log line %q: %v", lines[0], err)
			}
			if entry["level"] != "ERROR" || entry["credential"] != hint || entry["path"] != nil {
				t.Errorf("log entry %v: want level ERROR, credential %q and no path (a key pasted into a URL must not reach the log)", entry, hint)
			}
			if tc.status == 500 && strings.Contains(tc.name, "panic") && (entry["panic_type"] == "" || entry["stack"] == "") {
				t.Errorf("panic log entry %v lacks the panic's type or stack", entry)
			}
		})
	}
}

func TestPanicLogMasksValue(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	g := mustNew(t, &fakeAuth{fn: func(context.Context, string) (Principal, error) { panic("bad key " + goodKey) }},
		WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	serve(g.Middleware(&recordingHandler{}), newRequest("/", http.Header{"Api-Key": {goodKey}}))
	var entry map[string]any
	if err := json.Unmarshal(logs.Bytes(), &entry); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if got, want := entry["panic"], "bad key halfred_…A1B2"; got != want {
		t.Errorf("panic = %q, want %q", got, want)
	}
	if got, want := entry["panic_type"], "string"; got != want {
		t.Errorf("panic_type = %q, want %q", got, want)
	}
	if s, _ := entry["stack"].(string); !strings.Contains(s, "TestPanicLogMasksValue") {
		t.Errorf("stack does not show the panicking call:\n%s", s)
	}
}

func TestLoggerDefaultsToSlogDefault(t *testing.T) {
	// Not parallel: it replaces slog's default logger.
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	g := mustNew(t, keyAuth(ErrUnavailable)) // created before and used after SetDefault
	serve(g.Middleware(&recordingHandler{}), newRequest("/", http.Header{"Api-Key": {otherKey}}))
	if !strings.Contains(logs.String(), `"code":"service_unavailable"`) {
		t.Fatalf("slog.Default got %q, want the 503 logged", logs.String())
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"halfred_GoodKey0123456789abcdefA1B2", "halfred_…A1B2"},
		{"halfred_short", "halfred_…"},
		{"halfred_", "halfred_…"},
		{"", "…"},
		{"x", "…"},
		{"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "…dXJl"},
		{"sk_live_0123456789abcdefghij", "sk_…ghij"},
		{"Halfred_0123456789abcdefghij", "…ghij"},             // prefix must be lower case
		{"a_0123456789abcdefghij", "…ghij"},                   // one-letter runs are not a prefix
		{"averyveryverylongprefix_0123456789abcdef", "…cdef"}, // nor long ones
		{"halfred_0123456789abcdef\x00\x01\x02", "halfred_…"},
	}
	for _, tc := range cases {
		if got := mask(tc.in); got != tc.want {
			t.Errorf("mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestGuardConcurrent runs one Guard from many goroutines, for -race.
func TestGuardConcurrent(t *testing.T) {
	t.Parallel()
	g := mustNew(t, keyAuth(nil))
	h := g.Middleware(&recordingHandler{})
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				key := goodKey
				want := 204
				if (i+j)%2 == 1 {
					key, want = otherKey, 401
				}
				if rec := serve(h, newRequest("/", http.Header{"Api-Key": {key}})); rec.Code != want {
					t.Errorf("status %d, want %d", rec.Code, want)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}

// nopWriter is a ResponseWriter that allocates nothing per request.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// sinkPrincipal keeps the last Principal okHandler saw, so that reading
// it is not optimised away; atomic, since parallel tests share it.
var sinkPrincipal atomic.Pointer[Principal]

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := FromContext(r.Context())
		sinkPrincipal.Store(p)
	})
}

// TestMiddlewareAllocs: on success the Guard adds exactly two allocations
// to a request (the context and the request copy).
func TestMiddlewareAllocs(t *testing.T) {
	g := mustNew(t, fixedAuth(alice, nil))
	w := &nopWriter{h: http.Header{}}
	bare := okHandler()
	cases := []struct {
		name   string
		h      http.Handler
		header http.Header
	}{
		{"Middleware, Bearer", g.Middleware(bare), http.Header{"Authorization": {"Bearer " + goodKey}}},
		{"Middleware, api-key", g.Middleware(bare), http.Header{"Api-Key": {goodKey}}},
		{"Middleware, both headers", g.Middleware(bare), http.Header{"Authorization": {"Bearer " + goodKey}, "Api-Key": {goodKey}}},
		{"Optional, Bearer", g.Optional(bare), http.Header{"Authorization": {"Bearer " + goodKey}}},
		{"RequireScopes, Bearer", g.RequireScopes("models:read")(bare), http.Header{"Authorization": {"Bearer " + goodKey}}},
	}
	for _, tc := range cases {
		r := newRequest("/v1/models", tc.header)
		base := testalloc.Min(100, func() { bare.ServeHTTP(w, r) })
		got := testalloc.Min(100, func() { tc.h.ServeHTTP(w, r) })
		if got-base != 2 {
			t.Errorf("%s: %v allocations per request, bare handler %v; want exactly 2 more", tc.name, got, base)
		}
	}
	// Behind Middleware, RequireScopes and Optional without credentials
	// add nothing.
	r := newRequest("/", http.Header{"Api-Key": {goodKey}})
	base := testalloc.Min(100, func() { bare.ServeHTTP(w, r) })
	for name, h := range map[string]http.Handler{
		"Middleware+RequireScopes":         g.Middleware(g.RequireScopes("models:read")(bare)),
		"Middleware+package RequireScopes": g.Middleware(RequireScopes("models:read")(bare)),
	} {
		if got := testalloc.Min(100, func() { h.ServeHTTP(w, r) }); got-base != 2 {
			t.Errorf("%s: %v allocations, bare handler %v; want exactly 2 more", name, got, base)
		}
	}
	anon := g.Optional(bare)
	r = newRequest("/", nil)
	if got := testalloc.Min(100, func() { anon.ServeHTTP(w, r) }); got != base {
		t.Errorf("Optional without credentials: %v allocations, want the bare handler's %v", got, base)
	}
}

// TestOversizedCredentialAllocs: a 1 MiB header costs no more than a short
// bad credential, and never reaches the Authenticator.
//
// The allocation counts are taken with an error handler that only writes
// the status: the default one uses encoding/json, whose buffer pool drops
// items at random under the race detector, which would make the counts
// noisy. The default handler is checked for the answer itself.
func TestOversizedCredentialAllocs(t *testing.T) {
	a := keyAuth(nil)
	h := mustNew(t, a).Middleware(okHandler())
	hMin := mustNew(t, a, WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(classify(err).status)
	})).Middleware(okHandler())
	w := &nopWriter{h: http.Header{}}
	big := strings.Repeat("k", 1<<20)
	small := strings.Repeat("k", 100)
	cases := []struct {
		name       string
		big, small http.Header
	}{
		{"Authorization", http.Header{"Authorization": {"Bearer " + big}}, http.Header{"Authorization": {"Bearer " + small}}},
		{"api-key", http.Header{"Api-Key": {big}}, http.Header{"Api-Key": {small}}},
		{"malformed Authorization", http.Header{"Authorization": {"Bearer " + big + " x"}}, http.Header{"Authorization": {"Bearer " + small}}},
		{"both headers", http.Header{"Authorization": {"Bearer " + big}, "Api-Key": {big}}, http.Header{"Authorization": {"Bearer " + small}, "Api-Key": {small}}},
	}
	for _, tc := range cases {
		bigReq, smallReq := newRequest("/", tc.big), newRequest("/", tc.small)
		before := a.calls.Load()
		rec := serve(h, bigReq)
		if n := a.calls.Load() - before; n != 0 {
			t.Errorf("%s: Authenticator called %d times for 1 MiB", tc.name, n)
		}
		checkErrorResponse(t, rec, resTooLong)
		bigAllocs := testalloc.Min(50, func() { hMin.ServeHTTP(w, bigReq) })
		smallAllocs := testalloc.Min(50, func() { hMin.ServeHTTP(w, smallReq) })
		if bigAllocs > smallAllocs || bigAllocs != 0 {
			t.Errorf("%s: 1 MiB header %v allocations, 100-byte %v; want none", tc.name, bigAllocs, smallAllocs)
		}
		if n := a.calls.Load() - before; n != 50+1 { // the small runs, and AllocsPerRun's warm-up
			t.Errorf("%s: Authenticator called %d times, want only for the small requests", tc.name, n)
		}
	}
}

func BenchmarkGuard(b *testing.B) {
	g := mustNew(b, fixedAuth(alice, nil))
	bare := okHandler()
	bearer := http.Header{"Authorization": {"Bearer " + goodKey}}
	cases := []struct {
		name   string
		h      http.Handler
		header http.Header
	}{
		{"bare handler", bare, bearer},
		{"Middleware, Bearer", g.Middleware(bare), bearer},
		{"Middleware, api-key", g.Middleware(bare), http.Header{"Api-Key": {goodKey}}},
		{"Middleware, both headers", g.Middleware(bare), http.Header{"Authorization": {"Bearer " + goodKey}, "Api-Key": {goodKey}}},
		{"Optional, anonymous", g.Optional(bare), http.Header{}},
		{"RequireScopes, Bearer", g.RequireScopes("models:read", "chat:write")(bare), bearer},
		{"Middleware+RequireScopes, Bearer", g.Middleware(RequireScopes("models:read")(bare)), bearer},
		{"Middleware, 1MiB header", g.Middleware(bare), http.Header{"Authorization": {"Bearer " + strings.Repeat("k", 1<<20)}}},
		{"Middleware, invalid", mustNew(b, keyAuth(nil)).Middleware(bare), http.Header{"Api-Key": {otherKey}}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			r := newRequest("/v1/models", bc.header)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(w, r)
				clear(w.h)
			}
		})
	}
}
