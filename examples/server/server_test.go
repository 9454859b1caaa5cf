package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/keygate/keygate/internal/syncbuf"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth/promobserver"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

// Exact WWW-Authenticate challenges of the contract's error table.
const (
	challengeMissing = `Bearer realm="halfred"`
	challengeInvalid = `Bearer realm="halfred", error="invalid_token"`
	challengeRequest = `Bearer error="invalid_request"`
)

func challengeScope(scopes string) string {
	return `Bearer error="insufficient_scope", scope="` + scopes + `"`
}

// flakyStore is a MemoryStore whose lookups, or management calls, can be
// made to fail as if the database were down. It counts the calls that
// change keys, to prove that a request was not served.
type flakyStore struct {
	*keystore.MemoryStore
	failLookup atomic.Bool
	failManage atomic.Bool
	writes     atomic.Int64
	// lookups counts LookupDigest calls: the request path's store reads.
	lookups atomic.Int64
}

var errDown = errors.New("connection refused")

func (f *flakyStore) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	f.lookups.Add(1)
	if f.failLookup.Load() {
		return keystore.Record{}, errDown
	}
	return f.MemoryStore.LookupDigest(ctx, d)
}

func (f *flakyStore) Create(ctx context.Context, r keystore.Record) error {
	f.writes.Add(1)
	if f.failManage.Load() {
		return errDown
	}
	return f.MemoryStore.Create(ctx, r)
}

func (f *flakyStore) Get(ctx context.Context, id string) (keystore.Record, error) {
	if f.failManage.Load() {
		return keystore.Record{}, errDown
	}
	return f.MemoryStore.Get(ctx, id)
}

func (f *flakyStore) List(ctx context.Context, project string) ([]keystore.Record, error) {
	if f.failManage.Load() {
		return nil, errDown
	}
	return f.MemoryStore.List(ctx, project)
}

func (f *flakyStore) Revoke(ctx context.Context, id string, at time.Time) (keystore.Record, error) {
	f.writes.Add(1)
	if f.failManage.Load() {
		return keystore.Record{}, errDown
	}
	return f.MemoryStore.Revoke(ctx, id, at)
}

func (f *flakyStore) Replace(ctx context.Context, oldID string, at time.Time, next keystore.Record) error {
	f.writes.Add(1)
	if f.failManage.Load() {
		return errDown
	}
	return f.MemoryStore.Replace(ctx, oldID, at, next)
}

// env is a server under test, behind a real HTTP listener.
type env struct {
	t     *testing.T
	srv   *server
	url   string
	clock *testclock.Clock
	store *flakyStore
	logs  *syncbuf.Buffer
	root  string // the bootstrap key
	// rootID is the bootstrap key's ID. The bootstrap key is issued an
	// hour before epoch, so it comes first in every list.
	rootID string
}

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the config changed by configure, if not nil,
// before the server is built.
func newEnvWith(t *testing.T, configure func(*config)) *env {
	t.Helper()
	e := &env{
		t:     t,
		clock: testclock.New(epoch.Add(-time.Hour)),
		store: &flakyStore{MemoryStore: keystore.NewMemoryStore()},
		logs:  &syncbuf.Buffer{},
	}
	cfg := config{
		store: e.store,
		now:   e.clock.Now,
		// JSON, as the server logs by default; at Debug, so that the
		// audit log's auth.succeeded records are checked for secrets too.
		logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if configure != nil {
		configure(&cfg)
	}
	s, err := newServer(context.Background(), cfg)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	t.Cleanup(func() { s.close() })
	e.srv = s
	key, issued, err := s.bootstrap(context.Background())
	if err != nil || !issued {
		t.Fatalf("bootstrap = %v, %v", issued, err)
	}
	e.root = key.Plaintext()
	recs, err := e.store.List(context.Background(), "default")
	if err != nil || len(recs) != 1 {
		t.Fatalf("store after bootstrap = %v, %v", recs, err)
	}
	e.rootID = recs[0].ID
	e.clock.Advance(time.Hour)
	ts := httptest.NewServer(s.routes())
	t.Cleanup(func() {
		ts.Close()
		// Whatever the test did, no full key or token reached the logs.
		if m := s.format.Pattern().FindString(e.logs.String()); m != "" {
			t.Errorf("logs contain a full key %s:\n%s", s.format.Hint(m), e.logs.String())
		}
		if m := secretPattern.FindString(e.logs.String()); m != "" {
			t.Errorf("logs contain a token …%s:\n%s", m[len(m)-4:], e.logs.String())
		}
	})
	e.url = ts.URL
	return e
}

// response is a response read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorDetail decodes the JSON error body, failing the test unless the
// body is exactly {"error":{"message","type","code"}}.
func (r response) errorDetail(t *testing.T) errorDetail {
	t.Helper()
	var raw map[string]map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatalf("error body is not JSON: %v\n%s", err, r.body)
	}
	inner, ok := raw["error"]
	if len(raw) != 1 || !ok {
		t.Fatalf("error body = %s, want only an \"error\" member", r.body)
	}
	for _, k := range []string{"message", "type", "code"} {
		if _, ok := inner[k].(string); !ok {
			t.Errorf("error.%s is missing or not a string in %s", k, r.body)
		}
	}
	if len(inner) != 3 {
		t.Errorf("error body has members besides message, type, code: %s", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var b errorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	return b.Error
}

// decode unmarshals the body into v, failing the test on error.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body is not the expected JSON: %v\n%s", err, r.body)
	}
}

// req is one request.
type req struct {
	method, path string
	key          string      // sent as Authorization: Bearer key, if set
	header       http.Header // extra headers
	body         string
}

// do sends rq and reads the response. It checks the invariant that no
// response but a 201 from a key creation or rotation ever holds a key.
func (e *env) do(rq req) response {
	e.t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	r, err := http.NewRequest(rq.method, e.url+rq.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if rq.key != "" {
		r.Header.Set("Authorization", "Bearer "+rq.key)
	}
	for k, vs := range rq.header {
		r.Header[k] = vs
	}
	res, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		e.t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	out := response{status: res.StatusCode, header: res.Header, body: b}
	keys := e.srv.format.Pattern().FindAllString(string(b), -1)
	creates := res.StatusCode == http.StatusCreated && rq.method == http.MethodPost &&
		(rq.path == "/v1/keys" || strings.HasSuffix(rq.path, "/rotate"))
	switch {
	case creates && len(keys) != 1:
		e.t.Errorf("%s %s: body holds %d keys, want exactly 1: %s", rq.method, rq.path, len(keys), b)
	case !creates && len(keys) > 0:
		e.t.Errorf("%s %s (%d): body holds a key: %s", rq.method, rq.path, res.StatusCode, b)
	}
	return out
}

// createKey creates a key with the given body and returns the response.
func (e *env) createKey(by, body string) keyCreated {
	e.t.Helper()
	res := e.do(req{method: "POST", path: "/v1/keys", key: by, body: body})
	if res.status != http.StatusCreated {
		e.t.Fatalf("POST /v1/keys %s = %d %s", body, res.status, res.body)
	}
	var k keyCreated
	res.decode(e.t, &k)
	return k
}

// me returns the status of GET /v1/me with key.
func (e *env) me(key string) int {
	e.t.Helper()
	return e.do(req{method: "GET", path: "/v1/me", key: key}).status
}

// listKeys returns GET /v1/keys as seen by key.
func (e *env) listKeys(key string) []keyItem {
	e.t.Helper()
	res := e.do(req{method: "GET", path: "/v1/keys", key: key})
	if res.status != http.StatusOK {
		e.t.Fatalf("GET /v1/keys = %d %s", res.status, res.body)
	}
	var l list[keyItem]
	res.decode(e.t, &l)
	return l.Data
}

func findItem(items []keyItem, id string) (keyItem, bool) {
	for _, it := range items {
		if it.ID == id {
			return it, true
		}
	}
	return keyItem{}, false
}

// wantError checks an error response.
func wantError(t *testing.T, res response, status int, typ, code, challenge string) errorDetail {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %d, want %d; body %s", res.status, status, res.body)
	}
	d := res.errorDetail(t)
	if d.Type != typ || (code != "" && d.Code != code) {
		t.Errorf("error type, code = %q, %q; want %q, %q", d.Type, d.Code, typ, code)
	}
	if got := res.header.Get("WWW-Authenticate"); got != challenge {
		t.Errorf("WWW-Authenticate = %q, want %q", got, challenge)
	}
	if n := len(res.header.Values("WWW-Authenticate")); n > 1 {
		t.Errorf("%d WWW-Authenticate headers, want at most 1", n)
	}
	if d.Message == "" {
		t.Errorf("empty error message")
	}
	return d
}

const chatBody = `{"model":"standard","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello, Halfred"}]}`

// TestEndpoints runs every endpoint of the contract's table (token rows
// are in tokens_test.go) with the bootstrap key and checks the success
// response.
func TestEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		// path may hold {id}, replaced by the ID of a fresh key.
		path   string
		body   string
		status int
		check  func(t *testing.T, e *env, res response, fresh keyCreated)
	}{
		{
			name: "list models", method: "GET", path: "/v1/models", status: http.StatusOK,
			check: func(t *testing.T, e *env, res response, _ keyCreated) {
				var l list[model]
				res.decode(t, &l)
				if l.Object != "list" || len(l.Data) < 2 || l.Data[0].ID != "standard" {
					t.Fatalf("models = %s", res.body)
				}
				for _, m := range l.Data {
					if m.Object != "model" || m.OwnedBy != "halfred" || m.Created <= 0 {
						t.Errorf("model %+v is not OpenAI-shaped", m)
					}
				}
			},
		},
		{
			name: "chat completion", method: "POST", path: "/v1/chat/completions", body: chatBody, status: http.StatusOK,
			check: func(t *testing.T, e *env, res response, _ keyCreated) {
				var c chatCompletion
				res.decode(t, &c)
				if !strings.HasPrefix(c.ID, "chatcmpl-") || len(c.ID) <= len("chatcmpl-") {
					t.Errorf("id = %q", c.ID)
				}
				if c.Object != "chat.completion" || c.Model != "standard" || c.Created != epoch.Unix() {
					t.Errorf("completion = %s", res.body)
				}
				if len(c.Choices) != 1 || c.Choices[0].Message.Role != "assistant" ||
					c.Choices[0].Message.Content != "Hello, Halfred" || c.Choices[0].FinishReason != "stop" {
					t.Errorf("choices = %+v", c.Choices)
				}
				if c.Usage.PromptTokens != 4 || c.Usage.CompletionTokens != 2 || c.Usage.TotalTokens != 6 {
					t.Errorf("usage = %+v", c.Usage)
				}
			},
		},
		{
			name: "me", method: "GET", path: "/v1/me", status: http.StatusOK,
			check: func(t *testing.T, e *env, res response, _ keyCreated) {
				var m map[string]any
				res.decode(t, &m)
				want := map[string]any{
					"method": "api_key", "key_id": e.rootID, "project": "default",
					"scopes": []any{"chat:write", "keys:manage", "models:read", "tokens:issue"},
				}
				if g, w := mustJSON(t, m), mustJSON(t, want); g != w {
					t.Errorf("me = %s, want %s", g, w)
				}
			},
		},
		{
			name: "create key", method: "POST", path: "/v1/keys", status: http.StatusCreated,
			body: `{"name":"reader","scopes":["models:read"],"expires_in":3600}`,
			check: func(t *testing.T, e *env, res response, _ keyCreated) {
				var m map[string]any
				res.decode(t, &m)
				for _, k := range []string{"id", "key", "hint", "name", "scopes", "created_at", "expires_at"} {
					if _, ok := m[k]; !ok {
						t.Errorf("response lacks %q: %s", k, res.body)
					}
				}
				var k keyCreated
				res.decode(t, &k)
				if !strings.HasPrefix(k.ID, "key_") || k.Name != "reader" || !slices.Equal(k.Scopes, []string{"models:read"}) {
					t.Errorf("created = %+v", k)
				}
				if k.CreatedAt != epoch.Unix() || k.ExpiresAt == nil || *k.ExpiresAt != epoch.Unix()+3600 {
					t.Errorf("created_at, expires_at = %d, %v", k.CreatedAt, k.ExpiresAt)
				}
				if want := "halfred_…" + k.Key[len(k.Key)-4:]; k.Hint != want {
					t.Errorf("hint = %q, want %q", k.Hint, want)
				}
				if _, err := e.srv.format.Parse(k.Key); err != nil {
					t.Errorf("key does not parse: %v", err)
				}
			},
		},
		{
			name: "list keys", method: "GET", path: "/v1/keys", status: http.StatusOK,
			check: func(t *testing.T, e *env, res response, fresh keyCreated) {
				var m struct {
					Object string           `json:"object"`
					Data   []map[string]any `json:"data"`
				}
				res.decode(t, &m)
				if m.Object != "list" || len(m.Data) != 2 {
					t.Fatalf("list = %s", res.body)
				}
				want := []string{"created_at", "expires_at", "hint", "id", "last_client_addr", "last_used_at", "name", "rate_limit", "revoked_at", "scopes", "usage_count"}
				for _, item := range m.Data {
					var got []string
					for k := range item {
						got = append(got, k)
					}
					slices.Sort(got)
					if !slices.Equal(got, want) {
						t.Errorf("item fields = %v, want %v", got, want)
					}
				}
				if m.Data[0]["name"] != "bootstrap" || m.Data[1]["id"] != fresh.ID {
					t.Errorf("list order or content = %s", res.body)
				}
				for _, k := range []string{"expires_at", "revoked_at", "last_used_at", "last_client_addr", "rate_limit"} {
					if m.Data[1][k] != nil {
						t.Errorf("unset %s is not null: %s", k, res.body)
					}
				}
				// Usage is written behind: nothing yet, until a flush.
				if m.Data[0]["usage_count"] != float64(0) || m.Data[0]["last_used_at"] != nil {
					t.Errorf("bootstrap usage before a flush: %s", res.body)
				}
				if err := e.srv.usage.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				boot, _ := findItem(e.listKeys(e.root), e.rootID)
				// Two requests: the creation of the fresh key and the list.
				if boot.UsageCount != 2 || boot.LastUsedAt == nil || boot.LastClientAddr == nil || *boot.LastClientAddr != "127.0.0.1" {
					t.Errorf("bootstrap usage after a flush = %d, %v, %v; want 2, a time, 127.0.0.1", boot.UsageCount, boot.LastUsedAt, boot.LastClientAddr)
				} else if d := time.Since(time.Unix(*boot.LastUsedAt, 0)); d < -time.Second || d > time.Minute {
					t.Errorf("bootstrap last_used_at is %v ago", d)
				}
			},
		},
		{
			name: "rotate key", method: "POST", path: "/v1/keys/{id}/rotate", status: http.StatusCreated,
			check: func(t *testing.T, e *env, res response, fresh keyCreated) {
				var k keyCreated
				res.decode(t, &k)
				if k.ID == fresh.ID || k.Key == fresh.Key || k.Name != fresh.Name || !slices.Equal(k.Scopes, fresh.Scopes) {
					t.Errorf("rotated = %+v, from %+v", k, fresh)
				}
			},
		},
		{
			name: "delete key", method: "DELETE", path: "/v1/keys/{id}", status: http.StatusNoContent,
			check: func(t *testing.T, e *env, res response, fresh keyCreated) {
				if len(res.body) != 0 {
					t.Errorf("204 with a body: %q", res.body)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			fresh := e.createKey(e.root, `{"name":"fresh","scopes":["models:read","chat:write"]}`)
			path := strings.ReplaceAll(tt.path, "{id}", fresh.ID)
			res := e.do(req{method: tt.method, path: path, key: e.root, body: tt.body})
			if res.status != tt.status {
				t.Fatalf("%s %s = %d, want %d; body %s", tt.method, path, res.status, tt.status, res.body)
			}
			if res.status != http.StatusNoContent {
				if ct := res.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			tt.check(t, e, res, fresh)
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// protectedRoutes are every route behind the Guard, with the scope each
// needs ("" for any valid credential).
var protectedRoutes = []struct {
	method, path, scope, body string
}{
	{"GET", "/v1/models", scopeModelsRead, ""},
	{"POST", "/v1/chat/completions", scopeChatWrite, chatBody},
	{"GET", "/v1/me", "", ""},
	{"POST", "/v1/keys", scopeKeysManage, `{}`},
	{"GET", "/v1/keys", scopeKeysManage, ""},
	{"POST", "/v1/keys/key_0000000000000000/rotate", scopeKeysManage, ""},
	{"DELETE", "/v1/keys/key_0000000000000000", scopeKeysManage, ""},
	{"POST", "/v1/auth/token", scopeTokensIssue, ""},
	{"POST", "/v1/auth/revoke", "", ""},
}

// TestAuthErrors runs every row of the contract's error table that this
// server produces, on every protected route.
func TestAuthErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	revoked := e.createKey(e.root, `{"name":"revoked"}`)
	if res := e.do(req{method: "DELETE", path: "/v1/keys/" + revoked.ID, key: e.root}); res.status != http.StatusNoContent {
		t.Fatalf("delete = %d", res.status)
	}
	expiring := e.createKey(e.root, `{"name":"expiring","expires_in":60}`)
	noScopes := e.createKey(e.root, `{"name":"none","scopes":[]}`)
	unknown, err := e.srv.format.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(61 * time.Second)

	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name      string
		header    http.Header
		query     string
		status    int
		typ, code string
		challenge string
		// sent is a credential that must not appear in the body.
		sent string
	}{
		{name: "no credentials", status: 401, typ: "authentication_error", code: "missing_credentials", challenge: challengeMissing},
		{name: "other scheme", header: h("Authorization", "Basic dXNlcjpwYXNz"), status: 401, typ: "authentication_error", challenge: challengeMissing},
		{name: "key in query string", query: "?api_key=" + e.root, status: 401, typ: "authentication_error", code: "missing_credentials", challenge: challengeMissing},
		{name: "key in api_key query with bearer name", query: "?access_token=" + e.root, status: 401, typ: "authentication_error", challenge: challengeMissing},
		{name: "malformed key", header: h("Authorization", "Bearer sk-proj-AbCdEfGhIjKlMnOpQrStUv"), status: 401, typ: "authentication_error", code: "invalid_token", challenge: challengeInvalid, sent: "sk-proj-AbCdEfGhIjKlMnOpQrStUv"},
		{name: "truncated key", header: h("api-key", e.root[:len(e.root)-1]), status: 401, typ: "authentication_error", code: "invalid_token", challenge: challengeInvalid, sent: e.root[:len(e.root)-1]},
		{name: "unknown key", header: h("Authorization", "Bearer "+unknown.Plaintext()), status: 401, typ: "authentication_error", code: "invalid_token", challenge: challengeInvalid, sent: unknown.Plaintext()},
		{name: "revoked key", header: h("Authorization", "Bearer "+revoked.Key), status: 401, typ: "authentication_error", code: "invalid_token", challenge: challengeInvalid, sent: revoked.Key},
		{name: "expired key", header: h("api-key", expiring.Key), status: 401, typ: "authentication_error", code: "invalid_token", challenge: challengeInvalid, sent: expiring.Key},
		{name: "two different credentials", header: h("Authorization", "Bearer "+e.root, "api-key", noScopes.Key), status: 400, typ: "invalid_request_error", code: "invalid_request", challenge: challengeRequest, sent: e.root},
		{name: "bearer without token", header: h("Authorization", "Bearer"), status: 400, typ: "invalid_request_error", code: "invalid_request", challenge: challengeRequest},
		{name: "bearer with two tokens", header: h("Authorization", "Bearer "+e.root+" "+e.root), status: 400, typ: "invalid_request_error", code: "invalid_request", challenge: challengeRequest, sent: e.root},
		{name: "two authorization headers", header: h("Authorization", "Bearer "+e.root, "Authorization", "Bearer "+e.root), status: 400, typ: "invalid_request_error", code: "invalid_request", challenge: challengeRequest, sent: e.root},
		{name: "api-key with bearer prefix", header: h("api-key", "Bearer "+e.root), status: 400, typ: "invalid_request_error", code: "invalid_request", challenge: challengeRequest, sent: e.root},
	}
	for _, tt := range tests {
		for _, rt := range protectedRoutes {
			t.Run(tt.name+"/"+rt.method+" "+rt.path, func(t *testing.T) {
				t.Parallel()
				res := e.do(req{method: rt.method, path: rt.path + tt.query, header: tt.header, body: rt.body})
				d := wantError(t, res, tt.status, tt.typ, tt.code, tt.challenge)
				if tt.sent != "" && strings.Contains(string(res.body), tt.sent) {
					t.Errorf("body echoes the credential: %s", res.body)
				}
				if strings.Contains(d.Message, e.root) {
					t.Errorf("message holds the bootstrap key")
				}
			})
		}
	}

	t.Run("missing scope", func(t *testing.T) {
		t.Parallel()
		for _, rt := range protectedRoutes {
			if rt.scope == "" {
				continue
			}
			res := e.do(req{method: rt.method, path: rt.path, key: noScopes.Key, body: rt.body})
			wantError(t, res, http.StatusForbidden, "permission_error", "insufficient_scope", challengeScope(rt.scope))
		}
		if got := e.me(noScopes.Key); got != http.StatusOK {
			t.Errorf("a key with no scopes on /v1/me = %d, want 200", got)
		}
	})
}

// TestCredentialForms checks the ways a credential may be sent.
func TestCredentialForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name   string
		header http.Header
		status int
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + e.root}}, 200},
		{"lower-case bearer", http.Header{"Authorization": {"bearer " + e.root}}, 200},
		{"upper-case bearer", http.Header{"Authorization": {"BEARER " + e.root}}, 200},
		{"api-key header", http.Header{"Api-Key": {e.root}}, 200},
		{"same key in both headers", http.Header{"Authorization": {"Bearer " + e.root}, "Api-Key": {e.root}}, 200},
		{"x-api-key is not a credential header", http.Header{"X-Api-Key": {e.root}}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := e.do(req{method: "GET", path: "/v1/me", header: tt.header})
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d; %s", res.status, tt.status, res.body)
			}
		})
	}
}

// TestRejectionsIdentical checks that unknown, revoked and expired keys get
// byte-identical answers, so a caller cannot tell them apart.
func TestRejectionsIdentical(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	revoked := e.createKey(e.root, `{"name":"r"}`)
	e.do(req{method: "DELETE", path: "/v1/keys/" + revoked.ID, key: e.root})
	expired := e.createKey(e.root, `{"name":"x","expires_in":1}`)
	rotated := e.createKey(e.root, `{"name":"o"}`)
	e.do(req{method: "POST", path: "/v1/keys/" + rotated.ID + "/rotate", key: e.root})
	unknown, err := e.srv.format.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)

	for _, path := range []string{"/v1/models", "/v1/me", "/v1/keys"} {
		var first response
		for i, key := range []string{unknown.Plaintext(), revoked.Key, expired.Key, rotated.Key} {
			res := e.do(req{method: "GET", path: path, key: key})
			res.header.Del("Date")
			wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_token", challengeInvalid)
			if i == 0 {
				first = res
				continue
			}
			if !bytes.Equal(res.body, first.body) {
				t.Errorf("%s: body %d = %s, want %s", path, i, res.body, first.body)
			}
			if g, w := mustJSON(t, res.header), mustJSON(t, first.header); g != w {
				t.Errorf("%s: headers %d = %s, want %s", path, i, g, w)
			}
		}
	}
}

// TestStoreDown checks the 503 row: the credential cannot be checked, and
// the protected handler is not called.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	for _, rt := range protectedRoutes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			victim := e.createKey(e.root, `{"name":"victim"}`)
			path := strings.ReplaceAll(rt.path, "key_0000000000000000", victim.ID)
			writes := e.store.writes.Load()
			e.store.failLookup.Store(true)
			res := e.do(req{method: rt.method, path: path, key: e.root, body: rt.body})
			e.store.failLookup.Store(false)
			wantError(t, res, http.StatusServiceUnavailable, "api_error", "", "")
			if n := e.store.writes.Load() - writes; n != 0 {
				t.Errorf("the handler ran: %d store writes", n)
			}
			if e.me(victim.Key) != http.StatusOK || len(e.listKeys(e.root)) != 2 {
				t.Errorf("the handler ran: keys changed")
			}
			if strings.Contains(string(res.body), errDown.Error()) {
				t.Errorf("503 body leaks the store error: %s", res.body)
			}
		})
	}

	t.Run("management call fails", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		victim := e.createKey(e.root, `{"name":"victim"}`)
		e.store.failManage.Store(true)
		defer e.store.failManage.Store(false)
		for _, rq := range []req{
			{method: "GET", path: "/v1/keys"},
			{method: "POST", path: "/v1/keys", body: `{}`},
			{method: "POST", path: "/v1/keys/" + victim.ID + "/rotate"},
			{method: "DELETE", path: "/v1/keys/" + victim.ID},
		} {
			rq.key = e.root
			res := e.do(rq)
			d := wantError(t, res, http.StatusServiceUnavailable, "api_error", "service_unavailable", "")
			if strings.Contains(d.Message, errDown.Error()) {
				t.Errorf("503 body leaks the store error: %s", res.body)
			}
		}
	})
}

// TestKeyLifecycle checks the handler-side effects of the key endpoints.
func TestKeyLifecycle(t *testing.T) {
	t.Parallel()

	t.Run("created key works at once", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		k := e.createKey(e.root, `{"name":"ci","scopes":["models:read","models:read"]}`)
		res := e.do(req{method: "GET", path: "/v1/me", key: k.Key})
		var m meResponse
		res.decode(t, &m)
		if m.Method != "api_key" || m.KeyID != k.ID || m.Project != "default" || !slices.Equal(m.Scopes, []string{"models:read"}) {
			t.Errorf("me = %s", res.body)
		}
		if got := e.do(req{method: "GET", path: "/v1/models", key: k.Key}).status; got != 200 {
			t.Errorf("models = %d", got)
		}
		res = e.do(req{method: "POST", path: "/v1/chat/completions", key: k.Key, body: chatBody})
		wantError(t, res, http.StatusForbidden, "permission_error", "insufficient_scope", challengeScope("chat:write"))
	})

	t.Run("omitted scopes are the caller's", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		mid := e.createKey(e.root, `{"scopes":["keys:manage","chat:write"]}`)
		k := e.createKey(mid.Key, ``)
		if !slices.Equal(k.Scopes, []string{"chat:write", "keys:manage"}) || k.ExpiresAt != nil || k.Name != "" {
			t.Errorf("created = %+v", k)
		}
	})

	t.Run("no privilege escalation on create", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		mid := e.createKey(e.root, `{"scopes":["keys:manage","models:read"]}`)
		res := e.do(req{method: "POST", path: "/v1/keys", key: mid.Key, body: `{"scopes":["models:read","chat:write","tokens:issue"]}`})
		wantError(t, res, http.StatusForbidden, "permission_error", "insufficient_scope", challengeScope("chat:write tokens:issue"))
		if n := len(e.listKeys(e.root)); n != 2 {
			t.Errorf("%d keys after a refused create, want 2", n)
		}
		e.createKey(mid.Key, `{"scopes":["models:read"]}`)
	})

	t.Run("rotate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		old := e.createKey(e.root, `{"name":"svc","scopes":["chat:write"],"expires_in":3600}`)
		e.clock.Advance(time.Minute)
		res := e.do(req{method: "POST", path: "/v1/keys/" + old.ID + "/rotate", key: e.root})
		if res.status != http.StatusCreated {
			t.Fatalf("rotate = %d %s", res.status, res.body)
		}
		var k keyCreated
		res.decode(t, &k)
		if e.me(old.Key) != http.StatusUnauthorized {
			t.Errorf("old key still works after rotation")
		}
		if e.me(k.Key) != http.StatusOK {
			t.Errorf("new key does not work")
		}
		if k.CreatedAt != epoch.Add(time.Minute).Unix() || k.ExpiresAt == nil || *k.ExpiresAt != k.CreatedAt+3600 {
			t.Errorf("rotated times = %d, %v; want the same lifetime from now", k.CreatedAt, k.ExpiresAt)
		}
		items := e.listKeys(e.root)
		if it, ok := findItem(items, old.ID); !ok || it.RevokedAt == nil || *it.RevokedAt != epoch.Add(time.Minute).Unix() {
			t.Errorf("old key in list = %+v", it)
		}
		if it, ok := findItem(items, k.ID); !ok || it.RevokedAt != nil {
			t.Errorf("new key in list = %+v", it)
		}
		// Rotating the revoked key again is a conflict, not a second key.
		res = e.do(req{method: "POST", path: "/v1/keys/" + old.ID + "/rotate", key: e.root})
		wantError(t, res, http.StatusConflict, "invalid_request_error", "key_revoked", "")
		if n := len(e.listKeys(e.root)); n != 3 {
			t.Errorf("%d keys, want 3", n)
		}
	})

	t.Run("rotate own key", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rootID := e.rootID
		res := e.do(req{method: "POST", path: "/v1/keys/" + rootID + "/rotate", key: e.root})
		if res.status != http.StatusCreated {
			t.Fatalf("rotate = %d %s", res.status, res.body)
		}
		var k keyCreated
		res.decode(t, &k)
		if e.me(e.root) != http.StatusUnauthorized || e.me(k.Key) != http.StatusOK {
			t.Errorf("self-rotation did not swap the keys")
		}
	})

	t.Run("no privilege escalation on rotate", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rootID := e.rootID
		mid := e.createKey(e.root, `{"scopes":["keys:manage"]}`)
		res := e.do(req{method: "POST", path: "/v1/keys/" + rootID + "/rotate", key: mid.Key})
		wantError(t, res, http.StatusForbidden, "permission_error", "insufficient_scope",
			challengeScope("chat:write models:read tokens:issue"))
		if e.me(e.root) != http.StatusOK {
			t.Errorf("refused rotation revoked the key")
		}
	})

	t.Run("delete", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		k := e.createKey(e.root, `{"name":"gone"}`)
		if e.me(k.Key) != http.StatusOK {
			t.Fatal("new key does not work")
		}
		for i := range 2 { // idempotent
			res := e.do(req{method: "DELETE", path: "/v1/keys/" + k.ID, key: e.root})
			if res.status != http.StatusNoContent {
				t.Fatalf("delete #%d = %d %s", i+1, res.status, res.body)
			}
			if e.me(k.Key) != http.StatusUnauthorized {
				t.Errorf("deleted key still works")
			}
		}
		if it, ok := findItem(e.listKeys(e.root), k.ID); !ok || it.RevokedAt == nil {
			t.Errorf("deleted key in list = %+v", it)
		}
	})

	t.Run("delete own key", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		rootID := e.rootID
		if res := e.do(req{method: "DELETE", path: "/v1/keys/" + rootID, key: e.root}); res.status != http.StatusNoContent {
			t.Fatalf("delete = %d", res.status)
		}
		if e.me(e.root) != http.StatusUnauthorized {
			t.Errorf("deleted key still works")
		}
	})

	t.Run("projects are isolated", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		otherKey, other, err := e.srv.keys.Issue(context.Background(), keystore.KeySpec{
			Project: "other", Name: "theirs", Scopes: allScopes,
		})
		if err != nil {
			t.Fatal(err)
		}
		rootID := e.rootID
		for _, rq := range []req{
			{method: "POST", path: "/v1/keys/" + other.ID + "/rotate", key: e.root},
			{method: "DELETE", path: "/v1/keys/" + other.ID, key: e.root},
			{method: "POST", path: "/v1/keys/" + rootID + "/rotate", key: otherKey.Plaintext()},
			{method: "DELETE", path: "/v1/keys/" + rootID, key: otherKey.Plaintext()},
			{method: "DELETE", path: "/v1/keys/key_doesnotexist00000", key: e.root},
			{method: "POST", path: "/v1/keys/key_doesnotexist00000/rotate", key: e.root},
		} {
			wantError(t, e.do(rq), http.StatusNotFound, "invalid_request_error", "not_found", "")
		}
		if e.me(e.root) != http.StatusOK || e.me(otherKey.Plaintext()) != http.StatusOK {
			t.Errorf("a refused request revoked a key")
		}
		if items := e.listKeys(e.root); len(items) != 1 || items[0].ID != rootID {
			t.Errorf("default project sees %+v", items)
		}
		items := e.listKeys(otherKey.Plaintext())
		if len(items) != 1 || items[0].ID != other.ID {
			t.Errorf("other project sees %+v", items)
		}
		k := e.createKey(otherKey.Plaintext(), `{"name":"mine"}`)
		res := e.do(req{method: "GET", path: "/v1/me", key: k.Key})
		var m meResponse
		res.decode(t, &m)
		if m.Project != "other" {
			t.Errorf("key created by project other belongs to %q", m.Project)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		k := e.createKey(e.root, `{"expires_in":60}`)
		e.clock.Advance(59 * time.Second)
		if e.me(k.Key) != http.StatusOK {
			t.Errorf("key expired early")
		}
		e.clock.Advance(time.Second)
		if e.me(k.Key) != http.StatusUnauthorized {
			t.Errorf("key works after expires_at")
		}
	})
}

// TestKeyPathNeverEchoed checks that a key pasted into a URL is masked in
// error messages and logs.
func TestKeyPathNeverEchoed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, rq := range []req{
		{method: "DELETE", path: "/v1/keys/" + e.root, key: e.root},
		{method: "POST", path: "/v1/keys/" + e.root + "/rotate", key: e.root},
		{method: "GET", path: "/v1/keys/" + e.root, key: e.root},
		{method: "GET", path: "/v1/nothing/" + e.root},
	} {
		res := e.do(rq) // do fails the test if the body holds a key
		if res.status < 400 {
			t.Errorf("%s %s = %d", rq.method, rq.path, res.status)
		}
		if d := res.errorDetail(t); !strings.Contains(d.Message, e.srv.format.Hint(e.root)) {
			t.Errorf("message %q does not show the key's hint", d.Message)
		}
	}
	// newEnv's cleanup checks the logs.
}

// TestRouting checks 404 and 405 answers.
func TestRouting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name         string
		method, path string
		key          string
		status       int
		code, allow  string
	}{
		{"unknown path", "GET", "/v2/models", "", 404, "not_found", ""},
		{"unknown path with key", "GET", "/v1/completions", e.root, 404, "not_found", ""},
		{"root", "GET", "/", "", 404, "not_found", ""},
		{"trailing slash", "GET", "/v1/models/", e.root, 404, "not_found", ""},
		{"wrong method on models", "DELETE", "/v1/models", e.root, 405, "method_not_allowed", "GET, HEAD"},
		{"wrong method on chat", "GET", "/v1/chat/completions", "", 405, "method_not_allowed", "POST"},
		{"wrong method on keys", "PUT", "/v1/keys", "", 405, "method_not_allowed", "GET, HEAD, POST"},
		{"wrong method on a key", "GET", "/v1/keys/key_x", e.root, 405, "method_not_allowed", "DELETE"},
		{"wrong method on rotate", "GET", "/v1/keys/key_x/rotate", e.root, 405, "method_not_allowed", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := e.do(req{method: tt.method, path: tt.path, key: tt.key})
			wantError(t, res, tt.status, "invalid_request_error", tt.code, "")
			if got := res.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestChatValidation checks POST /v1/chat/completions bodies.
func TestChatValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"model":"standard","messages":[{"role":"user","content":"` + strings.Repeat("a", maxBodyBytes) + `"}]}`
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		code        string
		echo        string // the expected answer, for 200
	}{
		{name: "minimal", body: `{"model":"fast","messages":[{"role":"user","content":"hi"}]}`, status: 200, echo: "hi"},
		{name: "last user message", body: `{"model":"deep","messages":[{"role":"user","content":"one"},{"role":"assistant","content":"ok"},{"role":"user","content":"two"},{"role":"assistant","content":null}]}`, status: 200, echo: "two"},
		{name: "content parts", body: `{"model":"standard","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]}`, status: 200, echo: "a\nb"},
		{name: "unknown OpenAI parameters are ignored", body: `{"model":"standard","temperature":0.2,"max_tokens":5,"user":"u","messages":[{"role":"developer","content":"x"},{"role":"user","content":"<b>"}]}`, status: 200, echo: "<b>"},
		{name: "stream false", body: `{"model":"standard","stream":false,"messages":[{"role":"user","content":"s"}]}`, status: 200, echo: "s"},
		{name: "text/plain content type", contentType: "text/plain", body: `{"model":"standard","messages":[{"role":"user","content":"p"}]}`, status: 200, echo: "p"},
		{name: "form content type (curl -d)", contentType: "application/x-www-form-urlencoded", body: `{"model":"standard","messages":[{"role":"user","content":"f"}]}`, status: 200, echo: "f"},
		{name: "empty body", body: ``, status: 400, code: "invalid_json"},
		{name: "not JSON", body: `model=standard`, status: 400, code: "invalid_json"},
		{name: "truncated JSON", body: `{"model":"standard","messages":[`, status: 400, code: "invalid_json"},
		{name: "JSON array", body: `[1,2]`, status: 400, code: "invalid_json"},
		{name: "trailing data", body: `{"model":"standard","messages":[{"role":"user","content":"x"}]} {}`, status: 400, code: "invalid_json"},
		{name: "missing model", body: `{"messages":[{"role":"user","content":"x"}]}`, status: 400, code: "missing_parameter"},
		{name: "unknown model", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`, status: 400, code: "model_not_found"},
		{name: "model not a string", body: `{"model":7,"messages":[{"role":"user","content":"x"}]}`, status: 400, code: "invalid_parameter"},
		{name: "missing messages", body: `{"model":"standard"}`, status: 400, code: "missing_parameter"},
		{name: "empty messages", body: `{"model":"standard","messages":[]}`, status: 400, code: "invalid_parameter"},
		{name: "messages not an array", body: `{"model":"standard","messages":"hi"}`, status: 400, code: "invalid_parameter"},
		{name: "no user message", body: `{"model":"standard","messages":[{"role":"system","content":"x"}]}`, status: 400, code: "invalid_parameter"},
		{name: "bad role", body: `{"model":"standard","messages":[{"role":"wizard","content":"x"}]}`, status: 400, code: "invalid_parameter"},
		{name: "missing role", body: `{"model":"standard","messages":[{"content":"x"}]}`, status: 400, code: "invalid_parameter"},
		{name: "user content null", body: `{"model":"standard","messages":[{"role":"user","content":null}]}`, status: 400, code: "invalid_parameter"},
		{name: "user content a number", body: `{"model":"standard","messages":[{"role":"user","content":42}]}`, status: 400, code: "invalid_parameter"},
		{name: "stream true", body: `{"model":"standard","stream":true,"messages":[{"role":"user","content":"x"}]}`, status: 400, code: "unsupported_parameter"},
		{name: "too large", body: big, status: 413, code: "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rq := req{method: "POST", path: "/v1/chat/completions", key: e.root, body: tt.body}
			if tt.contentType != "" {
				rq.header = http.Header{"Content-Type": {tt.contentType}}
			}
			res := e.do(rq)
			if tt.status != http.StatusOK {
				wantError(t, res, tt.status, "invalid_request_error", tt.code, "")
				return
			}
			if res.status != http.StatusOK {
				t.Fatalf("status = %d; %s", res.status, res.body)
			}
			var c chatCompletion
			res.decode(t, &c)
			if got := c.Choices[0].Message.Content; got != tt.echo {
				t.Errorf("content = %q, want %q", got, tt.echo)
			}
		})
	}
}

// TestCreateKeyValidation checks POST /v1/keys bodies.
func TestCreateKeyValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"empty body", ``, 201, ""},
		{"empty object", `{}`, 201, ""},
		{"null", `null`, 201, ""},
		{"all fields", `{"name":"ci – déploiement","scopes":["chat:write"],"expires_in":315360000}`, 201, ""},
		{"no scopes", `{"scopes":[]}`, 201, ""},
		{"unknown field", `{"name":"x","scope":["models:read"]}`, 400, "unknown_parameter"},
		{"unknown scope", `{"scopes":["admin"]}`, 400, "invalid_parameter"},
		{"scope case", `{"scopes":["Models:Read"]}`, 400, "invalid_parameter"},
		{"scopes not an array", `{"scopes":"models:read"}`, 400, "invalid_parameter"},
		{"expires_in zero", `{"expires_in":0}`, 400, "invalid_parameter"},
		{"expires_in negative", `{"expires_in":-5}`, 400, "invalid_parameter"},
		{"expires_in fraction", `{"expires_in":1.5}`, 400, "invalid_parameter"},
		{"expires_in string", `{"expires_in":"60"}`, 400, "invalid_parameter"},
		{"expires_in over 10 years", `{"expires_in":315360001}`, 400, "invalid_parameter"},
		{"expires_in overflow", `{"expires_in":1e300}`, 400, "invalid_parameter"},
		{"name too long", `{"name":"` + strings.Repeat("n", maxNameBytes+1) + `"}`, 400, "invalid_parameter"},
		{"name with control character", `{"name":"a\nb"}`, 400, "invalid_parameter"},
		{"name not a string", `{"name":1}`, 400, "invalid_parameter"},
		{"not an object", `[]`, 400, "invalid_json"},
		{"not JSON", `name=x`, 400, "invalid_json"},
		{"trailing data", `{}{}`, 400, "invalid_json"},
		{"too large", `{"name":"` + strings.Repeat("n", maxBodyBytes) + `"}`, 413, "request_too_large"},
		{"rate limit", `{"rate_limit":{"requests":5,"per_seconds":1}}`, 201, ""},
		{"rate limit null", `{"rate_limit":null}`, 201, ""},
		{"rate limit of a day", `{"rate_limit":{"requests":1000000,"per_seconds":86400}}`, 201, ""},
		{"rate limit without requests", `{"rate_limit":{"per_seconds":60}}`, 400, "missing_parameter"},
		{"rate limit without per_seconds", `{"rate_limit":{"requests":60}}`, 400, "missing_parameter"},
		{"rate limit empty", `{"rate_limit":{}}`, 400, "missing_parameter"},
		{"rate limit zero requests", `{"rate_limit":{"requests":0,"per_seconds":60}}`, 400, "invalid_parameter"},
		{"rate limit negative requests", `{"rate_limit":{"requests":-1,"per_seconds":60}}`, 400, "invalid_parameter"},
		{"rate limit too many requests", `{"rate_limit":{"requests":1000001,"per_seconds":60}}`, 400, "invalid_parameter"},
		{"rate limit zero seconds", `{"rate_limit":{"requests":1,"per_seconds":0}}`, 400, "invalid_parameter"},
		{"rate limit over a day", `{"rate_limit":{"requests":1,"per_seconds":86401}}`, 400, "invalid_parameter"},
		{"rate limit fraction", `{"rate_limit":{"requests":1.5,"per_seconds":60}}`, 400, "invalid_parameter"},
		{"rate limit string", `{"rate_limit":"10/min"}`, 400, "invalid_parameter"},
		{"rate limit unknown field", `{"rate_limit":{"requests":1,"per_seconds":60,"burst":5}}`, 400, "unknown_parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := e.do(req{method: "POST", path: "/v1/keys", key: e.root, body: tt.body})
			if tt.status != http.StatusCreated {
				wantError(t, res, tt.status, "invalid_request_error", tt.code, "")
				return
			}
			if res.status != http.StatusCreated {
				t.Fatalf("status = %d; %s", res.status, res.body)
			}
			var k keyCreated
			res.decode(t, &k)
			if e.me(k.Key) != http.StatusOK {
				t.Errorf("created key does not work")
			}
		})
	}
}

func BenchmarkModels(b *testing.B) {
	s, key := benchServer(b, config{})
	h := s.routes()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkModelsLimited is BenchmarkModels with what run adds: every
// rate limit (high enough never to refuse), the usage counters, the
// audit log (JSON, at Info) and the Prometheus metrics.
func BenchmarkModelsLimited(b *testing.B) {
	metrics, err := promobserver.New()
	if err != nil {
		b.Fatal(err)
	}
	s, key := benchServer(b, config{
		limits:        rateLimits{apiKey: maxLimit, accessToken: maxLimit, failures: 20, exchange: 10, refresh: 60},
		usageInterval: keystore.DefaultUsageInterval,
		logger:        slog.New(slog.NewJSONHandler(io.Discard, nil)),
		metrics:       metrics,
	})
	h := s.routes()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		r.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkChat(b *testing.B) {
	s, key := benchServer(b, config{})
	h := s.routes()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(chatBody))
		r.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func benchServer(b *testing.B, cfg config) (*server, string) {
	b.Helper()
	s, err := newServer(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.close() })
	key, _, err := s.bootstrap(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return s, key.Plaintext()
}

func TestValidHostPort(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"127.0.0.1:6379":      true,
		"redis.internal:6379": true,
		"[::1]:6379":          true,
		"127.0.0.1":           false,
		":6379":               false,
		"redis://localhost":   false,
		"user@host:6379":      false,
		"host:0":              false,
		"host:65536":          false,
		"host:port":           false,
		"":                    false,
	} {
		if got := validHostPort(s); got != want {
			t.Errorf("validHostPort(%q) = %v, want %v", s, got, want)
		}
	}
}
