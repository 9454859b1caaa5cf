package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// hResponse is a recorded response, decoded.
type hResponse struct {
	status int
	header http.Header
	raw    string
	fields map[string]any // the JSON object, if the body is one
	err    struct{ Message, Type, Code string }
}

// hServe sends a request with principal p (nil: none) in its context to h.
func hServe(t *testing.T, h http.Handler, method, body string, p *auth.Principal) hResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, "/v1/auth/x", rd)
	if p != nil {
		r = r.WithContext(auth.NewContext(r.Context(), p))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return hDecode(t, w.Result())
}

func hDecode(t *testing.T, res *http.Response) hResponse {
	t.Helper()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := hResponse{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.fields); err != nil {
			t.Fatalf("body is not a JSON object: %q", raw)
		}
		var e struct {
			Error struct{ Message, Type, Code string }
		}
		if json.Unmarshal(raw, &e) == nil {
			out.err = e.Error
		}
	}
	return out
}

// hCheckTokenHeaders checks the headers every token endpoint response has.
func hCheckTokenHeaders(t *testing.T, r hResponse) {
	t.Helper()
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := r.header.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", got)
	}
	if r.raw != "" {
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
	}
}

// hCheckPair checks a 200 token response and returns the pair.
func hCheckPair(t *testing.T, r hResponse, wantScope string) Pair {
	t.Helper()
	keys := make([]string, 0, len(r.fields))
	for k := range r.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"access_token", "expires_in", "refresh_token", "scope", "token_type"}; !slices.Equal(keys, want) {
		t.Fatalf("fields %q, want %q", keys, want)
	}
	var p Pair
	if err := json.Unmarshal([]byte(r.raw), &p); err != nil {
		t.Fatal(err)
	}
	if p.TokenType != "Bearer" || p.ExpiresIn != 900 || p.Scope != wantScope || p.AccessToken == "" || p.RefreshToken == "" {
		t.Fatalf("pair %v, want Bearer, 900 s, scope %q", p, wantScope)
	}
	return p
}

func TestTokenHandler(t *testing.T) {
	t.Parallel()
	bigBody := `{"scopes":["` + strings.Repeat("a", MaxRequestBody) + `"]}`
	tests := []struct {
		name      string
		method    string
		body      string
		principal func(t *testing.T, f *svcFixture) *auth.Principal
		status    int
		typ, code string
		msg       string // part of the message
		scope     string // for 200
		header    map[string]string
	}{
		{name: "no body", body: "", status: 200, scope: "chat:write models:read tokens:issue"},
		{name: "empty object", body: "{}", status: 200, scope: "chat:write models:read tokens:issue"},
		{name: "null", body: "null", status: 200, scope: "chat:write models:read tokens:issue"},
		{name: "null scopes", body: `{"scopes":null}`, status: 200, scope: "chat:write models:read tokens:issue"},
		{name: "empty scopes", body: `{"scopes":[]}`, status: 200, scope: "chat:write models:read tokens:issue"},
		{name: "narrowed", body: `{"scopes":["models:read"]}`, status: 200, scope: "models:read"},
		{name: "whitespace around", body: " \n{\"scopes\":[\"chat:write\"]}\n ", status: 200, scope: "chat:write"},
		{
			name: "scope the key lacks", body: `{"scopes":["models:read","keys:manage"]}`,
			status: 403, typ: "permission_error", code: "insufficient_scope", msg: "keys:manage",
			header: map[string]string{"Www-Authenticate": `Bearer error="insufficient_scope", scope="keys:manage"`},
		},
		{name: "unknown field", body: `{"scope":"models:read"}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "extra field", body: `{"scopes":[],"audience":"x"}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "not JSON", body: "scopes=models:read", status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "scopes as a string", body: `{"scopes":"models:read"}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "array", body: `[1]`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "trailing data", body: `{"scopes":[]}{}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "truncated", body: `{"scopes":[`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "too large", body: bigBody, status: 413, typ: "invalid_request_error", code: "request_too_large"},
		{name: "GET", method: http.MethodGet, status: 405, typ: "invalid_request_error", code: "method_not_allowed", header: map[string]string{"Allow": "POST"}},
		{name: "PUT", method: http.MethodPut, status: 405, typ: "invalid_request_error", code: "method_not_allowed", header: map[string]string{"Allow": "POST"}},
		{
			name: "no principal", principal: func(*testing.T, *svcFixture) *auth.Principal { return nil },
			status: 401, typ: "authentication_error", code: "missing_credentials",
		},
		{
			name: "access token",
			principal: func(t *testing.T, f *svcFixture) *auth.Principal {
				p := f.accessPrincipal(t, f.exchange(t).AccessToken)
				return &p
			},
			status: 403, typ: "permission_error", code: "insufficient_scope", msg: "Exchange an API key, not a token",
		},
		{
			name: "key without tokens:issue",
			principal: func(t *testing.T, f *svcFixture) *auth.Principal {
				p := f.principal
				p.Scopes = []string{"models:read"}
				return &p
			},
			status: 403, typ: "permission_error", code: "insufficient_scope", msg: ExchangeScope,
			header: map[string]string{"Www-Authenticate": `Bearer error="insufficient_scope", scope="tokens:issue"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, svcOptions{})
			p := &f.principal
			if tt.principal != nil {
				p = tt.principal(t, f)
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			res := hServe(t, f.svc.TokenHandler(), method, tt.body, p)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.status, tt.status, res.raw)
			}
			hCheckTokenHeaders(t, res)
			for k, v := range tt.header {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.status == 200 {
				pair := hCheckPair(t, res, tt.scope)
				if _, err := f.claims(pair.AccessToken); err != nil {
					t.Errorf("access token does not verify: %v", err)
				}
				return
			}
			if res.err.Type != tt.typ || res.err.Code != tt.code || res.err.Message == "" {
				t.Errorf("error %+v, want type %q code %q", res.err, tt.typ, tt.code)
			}
			if !strings.Contains(res.err.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", res.err.Message, tt.msg)
			}
			if n, _ := f.refresh.len(); n != 0 && tt.principal == nil {
				t.Errorf("a refused request stored %d refresh tokens", n)
			}
		})
	}
}

func TestRefreshHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		method    string
		body      func(t *testing.T, f *svcFixture) string
		status    int
		typ, code string
		header    map[string]string
	}{
		{name: "refresh token", status: 200, body: func(t *testing.T, f *svcFixture) string {
			return `{"refresh_token":"` + f.exchange(t).RefreshToken + `"}`
		}},
		{name: "spent refresh token", status: 401, typ: "authentication_error", code: "invalid_grant",
			header: map[string]string{"Www-Authenticate": `Bearer realm="api", error="invalid_token"`},
			body: func(t *testing.T, f *svcFixture) string {
				rt := f.exchange(t).RefreshToken
				if _, err := f.svc.Refresh(context.Background(), rt); err != nil {
					t.Fatal(err)
				}
				return `{"refresh_token":"` + rt + `"}`
			}},
		{name: "unknown refresh token", status: 401, typ: "authentication_error", code: "invalid_grant",
			header: map[string]string{"Www-Authenticate": `Bearer realm="api", error="invalid_token"`},
			body: func(t *testing.T, f *svcFixture) string {
				k, _ := defaultRefreshFormat.Generate()
				return `{"refresh_token":"` + k.Plaintext() + `"}`
			}},
		{name: "access token", status: 400, typ: "invalid_request_error", code: "invalid_grant",
			body: func(t *testing.T, f *svcFixture) string {
				return `{"refresh_token":"` + f.exchange(t).AccessToken + `"}`
			}},
		{name: "API key", status: 400, typ: "invalid_request_error", code: "invalid_grant",
			body: func(t *testing.T, f *svcFixture) string { return `{"refresh_token":"` + f.apiKey + `"}` }},
		{name: "garbage token", status: 400, typ: "invalid_request_error", code: "invalid_grant",
			body: func(*testing.T, *svcFixture) string { return `{"refresh_token":"xyz"}` }},
		{name: "empty token", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(*testing.T, *svcFixture) string { return `{"refresh_token":""}` }},
		{name: "no token", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(*testing.T, *svcFixture) string { return `{}` }},
		{name: "no body", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(*testing.T, *svcFixture) string { return `` }},
		{name: "null", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(*testing.T, *svcFixture) string { return `null` }},
		{name: "number", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(*testing.T, *svcFixture) string { return `{"refresh_token":42}` }},
		{name: "form encoded", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(*testing.T, *svcFixture) string { return `grant_type=refresh_token&refresh_token=x` }},
		{name: "unknown field", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(t *testing.T, f *svcFixture) string {
				return `{"refresh_token":"` + f.exchange(t).RefreshToken + `","grant_type":"refresh_token"}`
			}},
		{name: "trailing data", status: 400, typ: "invalid_request_error", code: "invalid_request",
			body: func(t *testing.T, f *svcFixture) string {
				return `{"refresh_token":"` + f.exchange(t).RefreshToken + `"} x`
			}},
		{name: "too large", status: 413, typ: "invalid_request_error", code: "request_too_large",
			body: func(*testing.T, *svcFixture) string {
				return `{"refresh_token":"` + strings.Repeat("a", MaxRequestBody) + `"}`
			}},
		{name: "GET", method: http.MethodGet, status: 405, typ: "invalid_request_error", code: "method_not_allowed",
			header: map[string]string{"Allow": "POST"},
			body:   func(*testing.T, *svcFixture) string { return "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, svcOptions{})
			body := tt.body(t, f)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			res := hServe(t, f.svc.RefreshHandler(), method, body, nil)
			if res.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.status, tt.status, res.raw)
			}
			hCheckTokenHeaders(t, res)
			for k, v := range tt.header {
				if got := res.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.status != 401 && res.header.Get("Www-Authenticate") != "" {
				t.Errorf("WWW-Authenticate on a %d", res.status)
			}
			if tt.status == 200 {
				hCheckPair(t, res, "chat:write models:read tokens:issue")
				return
			}
			if res.err.Type != tt.typ || res.err.Code != tt.code || res.err.Message == "" {
				t.Errorf("error %+v, want type %q code %q", res.err, tt.typ, tt.code)
			}
			var in struct {
				RefreshToken string `json:"refresh_token"`
			}
			if json.Unmarshal([]byte(body), &in) == nil && len(in.RefreshToken) > 3 && strings.Contains(res.raw, in.RefreshToken) {
				t.Errorf("the response echoes the token: %s", res.raw)
			}
		})
	}
}

// TestRefreshHandlerIdenticalRefusals checks that unknown, spent, expired
// and revoked refresh tokens get byte-identical answers.
func TestRefreshHandlerIdenticalRefusals(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	spent := f.exchange(t).RefreshToken
	if _, err := f.svc.Refresh(ctx, spent); err != nil {
		t.Fatal(err)
	}
	revoked := f.exchange(t)
	if err := f.svc.Revoke(ctx, f.accessPrincipal(t, revoked.AccessToken)); err != nil {
		t.Fatal(err)
	}
	unknown, _ := defaultRefreshFormat.Generate()
	var first string
	for name, tok := range map[string]string{"spent": spent, "revoked": revoked.RefreshToken, "unknown": unknown.Plaintext()} {
		res := hServe(t, f.svc.RefreshHandler(), http.MethodPost, `{"refresh_token":"`+tok+`"}`, nil)
		if res.status != 401 {
			t.Fatalf("%s: status %d", name, res.status)
		}
		got := res.raw + "|" + res.header.Get("Www-Authenticate")
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("%s: response %q differs from %q", name, got, first)
		}
	}
}

func TestRevokeHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		method    string
		principal func(t *testing.T, f *svcFixture, pair Pair) *auth.Principal
		status    int
		typ, code string
	}{
		{name: "access token", status: 204, principal: func(t *testing.T, f *svcFixture, pair Pair) *auth.Principal {
			p := f.accessPrincipal(t, pair.AccessToken)
			return &p
		}},
		{name: "API key", status: 403, typ: "permission_error", code: "insufficient_scope",
			principal: func(_ *testing.T, f *svcFixture, _ Pair) *auth.Principal { return &f.principal }},
		{name: "no principal", status: 401, typ: "authentication_error", code: "missing_credentials",
			principal: func(*testing.T, *svcFixture, Pair) *auth.Principal { return nil }},
		{name: "GET", method: http.MethodGet, status: 405, typ: "invalid_request_error", code: "method_not_allowed",
			principal: func(t *testing.T, f *svcFixture, pair Pair) *auth.Principal {
				p := f.accessPrincipal(t, pair.AccessToken)
				return &p
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, svcOptions{})
			pair := f.exchange(t)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			res := hServe(t, f.svc.RevokeHandler(), method, `{"ignored":true}`, tt.principal(t, f, pair))
			if res.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", res.status, tt.status, res.raw)
			}
			hCheckTokenHeaders(t, res)
			_, verr := f.claims(pair.AccessToken)
			if tt.status == 204 {
				if res.raw != "" {
					t.Errorf("204 with a body: %q", res.raw)
				}
				if !errors.Is(verr, ErrRevoked) {
					t.Errorf("after 204, Verify = %v, want ErrRevoked", verr)
				}
				return
			}
			if verr != nil {
				t.Errorf("a refused revocation revoked the token: %v", verr)
			}
			if res.err.Type != tt.typ || res.err.Code != tt.code {
				t.Errorf("error %+v, want type %q code %q", res.err, tt.typ, tt.code)
			}
			if tt.status == 405 && res.header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", res.header.Get("Allow"))
			}
		})
	}
}

// TestHandlersBackEndFailure checks the 503s, and that the default error
// handler's failures are logged.
func TestHandlersBackEndFailure(t *testing.T) {
	t.Parallel()
	store := &svcFailingStore{RefreshStore: NewMemoryRefreshStore()}
	revs := &svcFailingRevocations{Revocations: NewMemoryRevocations()}
	f := newSvcFixture(t, svcOptions{refresh: store, revs: revs})
	pair := f.exchange(t)
	ap := f.accessPrincipal(t, pair.AccessToken)
	store.fail.Store(true)
	revs.fail.Store(true)
	for name, call := range map[string]func() hResponse{
		"token": func() hResponse { return hServe(t, f.svc.TokenHandler(), http.MethodPost, "", &f.principal) },
		"refresh": func() hResponse {
			return hServe(t, f.svc.RefreshHandler(), http.MethodPost, `{"refresh_token":"`+pair.RefreshToken+`"}`, nil)
		},
		"revoke": func() hResponse { return hServe(t, f.svc.RevokeHandler(), http.MethodPost, "", &ap) },
	} {
		res := call()
		if res.status != 503 || res.err.Type != "api_error" {
			t.Errorf("%s: status %d, error %+v; want 503 api_error", name, res.status, res.err)
		}
		hCheckTokenHeaders(t, res)
		if strings.Contains(res.raw, errSvcBackend.Error()) {
			t.Errorf("%s: the response shows the internal error: %s", name, res.raw)
		}
	}
	logs := f.logs.String()
	if got := strings.Count(logs, "level=ERROR"); got != 3 {
		t.Errorf("%d errors logged, want 3:\n%s", got, logs)
	}
	if strings.Contains(logs, pair.RefreshToken) || strings.Contains(logs, pair.AccessToken) {
		t.Errorf("the log contains a token:\n%s", logs)
	}
}

func TestServiceErrorHandler(t *testing.T) {
	t.Parallel()
	var got []error
	h := func(w http.ResponseWriter, r *http.Request, err error) {
		got = append(got, err)
		w.WriteHeader(http.StatusTeapot)
	}
	f := newSvcFixture(t, svcOptions{service: []ServiceOption{WithServiceErrorHandler(h), WithServiceRealm("halfred")}})
	res := hServe(t, f.svc.RevokeHandler(), http.MethodPost, "", &f.principal)
	if res.status != http.StatusTeapot || len(got) != 1 || !errors.Is(got[0], auth.ErrInsufficientScope) {
		t.Fatalf("status %d, handler saw %v", res.status, got)
	}
	if res.header.Get("Pragma") != "no-cache" || res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", res.header)
	}
	// The refresh endpoint's own errors do not go through it, and use
	// the realm.
	res = hServe(t, f.svc.RefreshHandler(), http.MethodPost, `{"refresh_token":"`+mustGenerate(t)+`"}`, nil)
	if res.status != 401 || len(got) != 1 {
		t.Fatalf("status %d, handler calls %d", res.status, len(got))
	}
	if want := `Bearer realm="halfred", error="invalid_token"`; res.header.Get("Www-Authenticate") != want {
		t.Errorf("WWW-Authenticate = %q, want %q", res.header.Get("Www-Authenticate"), want)
	}
}

func mustGenerate(t *testing.T) string {
	t.Helper()
	k, err := defaultRefreshFormat.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.Plaintext()
}

// TestHandlersBehindGuard runs the whole flow over HTTP, as the example
// server mounts it: the token and revoke endpoints behind an auth.Guard
// that takes API keys and access tokens, the refresh endpoint open, and
// the Guard's WriteError as the error handler.
func TestHandlersBehindGuard(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	guard, err := auth.New(auth.Dispatch(f.verifier, f.keys), auth.WithRealm("halfred"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(f.issuer, f.verifier, f.refresh, f.revs, f.keys,
		WithServiceClock(f.clock.Now), WithServiceErrorHandler(guard.WriteError), WithServiceRealm("halfred"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/auth/token", guard.Middleware(svc.TokenHandler()))
	mux.Handle("/v1/auth/refresh", svc.RefreshHandler())
	mux.Handle("/v1/auth/revoke", guard.Middleware(svc.RevokeHandler()))
	mux.Handle("/v1/me", guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		_, _ = io.WriteString(w, string(p.Method))
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	do := func(path, credential, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		if credential != "" {
			req.Header.Set("Authorization", "Bearer "+credential)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	res, _ := do("/v1/auth/token", "", "")
	if res.StatusCode != 401 || res.Header.Get("Www-Authenticate") != `Bearer realm="halfred"` {
		t.Fatalf("no credentials: %d %q", res.StatusCode, res.Header.Get("Www-Authenticate"))
	}
	res, body := do("/v1/auth/token", f.apiKey, `{"scopes":["models:read","chat:write"]}`)
	if res.StatusCode != 200 {
		t.Fatalf("exchange: %d %s", res.StatusCode, body)
	}
	var pair Pair
	if err := json.Unmarshal([]byte(body), &pair); err != nil {
		t.Fatal(err)
	}
	if res, body = do("/v1/me", pair.AccessToken, ""); res.StatusCode != 200 || body != "access_token" {
		t.Fatalf("/v1/me with the access token: %d %s", res.StatusCode, body)
	}
	if res, _ = do("/v1/auth/token", pair.AccessToken, ""); res.StatusCode != 403 {
		t.Fatalf("exchanging an access token: %d", res.StatusCode)
	}
	if res, _ = do("/v1/auth/revoke", f.apiKey, ""); res.StatusCode != 403 {
		t.Fatalf("revoking with an API key: %d", res.StatusCode)
	}
	res, body = do("/v1/auth/refresh", "", `{"refresh_token":"`+pair.RefreshToken+`"}`)
	if res.StatusCode != 200 {
		t.Fatalf("refresh: %d %s", res.StatusCode, body)
	}
	var next Pair
	if err := json.Unmarshal([]byte(body), &next); err != nil {
		t.Fatal(err)
	}
	if next.Scope != "chat:write models:read" {
		t.Errorf("scope after refresh = %q", next.Scope)
	}
	if res, _ = do("/v1/auth/revoke", next.AccessToken, ""); res.StatusCode != 204 {
		t.Fatalf("revoke: %d", res.StatusCode)
	}
	for _, tok := range []string{next.AccessToken, pair.AccessToken} {
		res, _ = do("/v1/me", tok, "")
		if res.StatusCode != 401 || !strings.Contains(res.Header.Get("Www-Authenticate"), `error="invalid_token"`) {
			t.Errorf("/v1/me with a revoked session's token: %d %q", res.StatusCode, res.Header.Get("Www-Authenticate"))
		}
	}
	if res, _ = do("/v1/auth/refresh", "", `{"refresh_token":"`+next.RefreshToken+`"}`); res.StatusCode != 401 {
		t.Errorf("refresh after revoke: %d", res.StatusCode)
	}
	if res, _ = do("/v1/me", f.apiKey, ""); res.StatusCode != 200 {
		t.Errorf("the API key stopped working: %d", res.StatusCode)
	}
}

// FuzzRefreshHandler sends arbitrary bodies to the refresh endpoint: it
// never panics, never succeeds with a made-up token, answers with one of
// its documented errors, and never echoes the token.
func FuzzRefreshHandler(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"refresh_token":""}`, `{"refresh_token":null}`,
		`{"refresh_token":"halfredrt_0123456789012345678901abcdef"}`,
		`{"refresh_token":"eyJhbGciOiJFZERTQSJ9.eyJ9.c2ln"}`,
		`{"refresh_token":"halfred_0123456789012345678901abcdef"}`,
		`{"refresh_token":"x","refresh_token":"y"}`,
		`{"REFRESH_TOKEN":"x"}`, `{"refresh_token":"x"} {}`, "{\"refresh_token\":\"\\u0000\"}",
		`{"refresh_token":["x"]}`, `{"refresh_token":"x"`,
	} {
		f.Add(seed)
	}
	fx := newSvcFixture(f, svcOptions{})
	h := fx.svc.RefreshHandler()
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/auth/refresh", strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 400 && w.Code != 401 && w.Code != 413 {
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var e struct {
			Error struct{ Message, Type, Code string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Type == "" {
			t.Fatalf("body %q for %q", w.Body, body)
		}
		var in struct {
			RefreshToken string `json:"refresh_token"`
		}
		if json.Unmarshal([]byte(body), &in) == nil && len(in.RefreshToken) >= 12 && strings.Contains(w.Body.String(), in.RefreshToken) {
			t.Fatalf("response %q echoes the token", w.Body)
		}
	})
}

// Compile-time check that the fixture's Manager is a KeyChecker.
var _ KeyChecker = (*keystore.Manager)(nil)
