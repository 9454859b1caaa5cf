package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/token"
)

// secretPattern matches an access token (a JWT) or a refresh token: no log
// line may hold one.
var secretPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|[a-z][a-z0-9]*rt_[0-9A-Za-z]{20,}`)

// challengeScopeless is the 403 challenge of a refusal that no scope
// would cure (an access token where an API key is needed, and so on).
const challengeScopeless = `Bearer error="insufficient_scope"`

const allScopesClaim = "chat:write keys:manage models:read tokens:issue"

// pair is the body of a 200 from the token and refresh endpoints.
type pair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// wantPair checks a 200 with a token pair and returns the pair.
func wantPair(t *testing.T, res response) pair {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", res.status, res.body)
	}
	var raw map[string]any
	res.decode(t, &raw)
	var got []string
	for k := range raw {
		got = append(got, k)
	}
	slices.Sort(got)
	if want := []string{"access_token", "expires_in", "refresh_token", "scope", "token_type"}; !slices.Equal(got, want) {
		t.Errorf("pair members = %v, want %v", got, want)
	}
	var p pair
	res.decode(t, &p)
	if p.TokenType != "Bearer" || p.ExpiresIn != 900 {
		t.Errorf("token_type, expires_in = %q, %d; want Bearer, 900", p.TokenType, p.ExpiresIn)
	}
	if strings.Count(p.AccessToken, ".") != 2 || !strings.HasPrefix(p.AccessToken, "eyJ") {
		t.Errorf("access_token is not a JWT: %.12q…", p.AccessToken)
	}
	if !strings.HasPrefix(p.RefreshToken, "halfredrt_") {
		t.Errorf("refresh_token = %.12q…, want halfredrt_…", p.RefreshToken)
	}
	wantTokenHeaders(t, res)
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return p
}

// wantTokenHeaders checks the headers of RFC 6749 §5.1 on a token response.
func wantTokenHeaders(t *testing.T, res response) {
	t.Helper()
	if got := res.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := res.header.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", got)
	}
}

// exchange exchanges key for a pair with the given body.
func (e *env) exchange(key, body string) pair {
	e.t.Helper()
	return wantPair(e.t, e.do(req{method: "POST", path: "/v1/auth/token", key: key, body: body}))
}

// refresh posts a refresh token to the refresh endpoint.
func (e *env) refresh(rt string) response {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"refresh_token": rt})
	return e.do(req{method: "POST", path: "/v1/auth/refresh", body: string(b)})
}

// meBody returns GET /v1/me with cred, as a map.
func (e *env) meBody(cred string) map[string]any {
	e.t.Helper()
	res := e.do(req{method: "GET", path: "/v1/me", key: cred})
	if res.status != http.StatusOK {
		e.t.Fatalf("GET /v1/me = %d %s", res.status, res.body)
	}
	var m map[string]any
	res.decode(e.t, &m)
	return m
}

func TestTokenExchange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reader := e.createKey(e.root, `{"name":"reader","scopes":["models:read","tokens:issue"]}`)
	noIssue := e.createKey(e.root, `{"name":"no-issue","scopes":["models:read"]}`)
	access := e.exchange(e.root, "").AccessToken

	tests := []struct {
		name      string
		key       string
		body      string
		status    int
		scope     string // of a 200
		typ, code string // of an error
		challenge string
	}{
		{name: "no body: every scope of the key", key: e.root, status: 200, scope: allScopesClaim},
		{name: "empty object", key: e.root, body: `{}`, status: 200, scope: allScopesClaim},
		{name: "empty scopes", key: e.root, body: `{"scopes":[]}`, status: 200, scope: allScopesClaim},
		{name: "narrowed", key: e.root, body: `{"scopes":["models:read"]}`, status: 200, scope: "models:read"},
		{name: "narrowed, unsorted, repeated", key: e.root, body: `{"scopes":["models:read","chat:write","models:read"]}`, status: 200, scope: "chat:write models:read"},
		{name: "smaller key", key: reader.Key, status: 200, scope: "models:read tokens:issue"},
		{name: "more scopes than the key", key: reader.Key, body: `{"scopes":["models:read","chat:write"]}`, status: 403,
			typ: "permission_error", code: "insufficient_scope", challenge: challengeScope("chat:write")},
		{name: "unknown scope", key: e.root, body: `{"scopes":["admin"]}`, status: 403,
			typ: "permission_error", code: "insufficient_scope", challenge: challengeScope("admin")},
		{name: "key without tokens:issue", key: noIssue.Key, status: 403,
			typ: "permission_error", code: "insufficient_scope", challenge: challengeScope("tokens:issue")},
		{name: "access token", key: access, status: 403,
			typ: "permission_error", code: "insufficient_scope", challenge: challengeScopeless},
		{name: "no credentials", status: 401, typ: "authentication_error", challenge: challengeMissing},
		{name: "unknown field", key: e.root, body: `{"scope":"models:read"}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "scopes not an array", key: e.root, body: `{"scopes":"models:read"}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "not JSON", key: e.root, body: `scopes=models:read`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
		{name: "trailing data", key: e.root, body: `{} {}`, status: 400, typ: "invalid_request_error", code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := e.do(req{method: "POST", path: "/v1/auth/token", key: tt.key, body: tt.body})
			if tt.status == 200 {
				p := wantPair(t, res)
				if p.Scope != tt.scope {
					t.Errorf("scope = %q, want %q", p.Scope, tt.scope)
				}
				return
			}
			wantError(t, res, tt.status, tt.typ, tt.code, tt.challenge)
			if got := res.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if bytes.Contains(res.body, []byte("eyJ")) || bytes.Contains(res.body, []byte("rt_")) {
				t.Errorf("error body holds a token: %s", res.body)
			}
		})
	}

	t.Run("GET is 405", func(t *testing.T) {
		t.Parallel()
		res := e.do(req{method: "GET", path: "/v1/auth/token", key: e.root})
		wantError(t, res, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "")
		if got := res.header.Get("Allow"); got != "POST" {
			t.Errorf("Allow = %q", got)
		}
	})
}

func TestAccessTokenUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	full := e.exchange(e.root, "")
	narrow := e.exchange(e.root, `{"scopes":["models:read"]}`)

	t.Run("me", func(t *testing.T) {
		t.Parallel()
		got := mustJSON(t, e.meBody(full.AccessToken))
		want := mustJSON(t, map[string]any{
			"method": "access_token", "key_id": e.rootID, "project": "default", "subject": e.rootID,
			"scopes": []string{"chat:write", "keys:manage", "models:read", "tokens:issue"},
		})
		if got != want {
			t.Errorf("me = %s, want %s", got, want)
		}
		if got := e.meBody(narrow.AccessToken)["scopes"]; mustJSON(t, got) != `["models:read"]` {
			t.Errorf("narrow scopes = %v", got)
		}
	})
	tests := []struct {
		name      string
		rq        req
		status    int
		challenge string
	}{
		{"models", req{method: "GET", path: "/v1/models", key: narrow.AccessToken}, 200, ""},
		{"chat", req{method: "POST", path: "/v1/chat/completions", key: full.AccessToken, body: chatBody}, 200, ""},
		{"list keys", req{method: "GET", path: "/v1/keys", key: full.AccessToken}, 200, ""},
		{"api-key header", req{method: "GET", path: "/v1/models", header: http.Header{"Api-Key": {narrow.AccessToken}}}, 200, ""},
		{"both headers, same token", req{method: "GET", path: "/v1/models", key: narrow.AccessToken, header: http.Header{"Api-Key": {narrow.AccessToken}}}, 200, ""},
		{"lower-case bearer", req{method: "GET", path: "/v1/models", header: http.Header{"Authorization": {"bearer " + narrow.AccessToken}}}, 200, ""},
		{"narrowed token, chat", req{method: "POST", path: "/v1/chat/completions", key: narrow.AccessToken, body: chatBody}, 403, challengeScope("chat:write")},
		{"narrowed token, keys", req{method: "GET", path: "/v1/keys", key: narrow.AccessToken}, 403, challengeScope("keys:manage")},
		{"narrowed token cannot create a wider key", req{method: "POST", path: "/v1/keys", key: full.AccessToken, body: `{"scopes":["admin"]}`}, 400, ""},
		{"token and key in two headers", req{method: "GET", path: "/v1/models", key: narrow.AccessToken, header: http.Header{"Api-Key": {e.root}}}, 400, challengeRequest},
		{"access token cannot issue tokens", req{method: "POST", path: "/v1/auth/token", key: full.AccessToken}, 403, challengeScopeless},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := e.do(tt.rq)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d; %s", res.status, tt.status, res.body)
			}
			if got := res.header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
		})
	}

	t.Run("key created with a token belongs to the project", func(t *testing.T) {
		t.Parallel()
		k := e.createKey(full.AccessToken, `{"name":"by-token","scopes":["models:read"]}`)
		if got := e.meBody(k.Key)["project"]; got != "default" {
			t.Errorf("project = %v", got)
		}
	})
}

func TestRefresh(t *testing.T) {
	t.Parallel()

	t.Run("new pair, old one spent, reuse revokes the family", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		first := e.exchange(e.root, `{"scopes":["models:read","chat:write"]}`)
		e.clock.Advance(time.Minute)
		second := wantPair(t, e.refresh(first.RefreshToken))
		if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken {
			t.Fatal("refresh returned the same tokens")
		}
		if second.Scope != "chat:write models:read" {
			t.Errorf("scope = %q", second.Scope)
		}
		if got := e.me(second.AccessToken); got != 200 {
			t.Fatalf("new access token = %d", got)
		}
		other := e.exchange(e.root, "") // another session

		// The spent refresh token: 401 invalid_grant, and the family is revoked.
		res := e.refresh(first.RefreshToken)
		wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_grant", challengeInvalid)
		wantTokenHeaders(t, res)
		for _, tok := range []string{first.AccessToken, second.AccessToken} {
			res := e.do(req{method: "GET", path: "/v1/models", key: tok})
			wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_token", challengeInvalid)
		}
		wantError(t, e.refresh(second.RefreshToken), http.StatusUnauthorized, "authentication_error", "invalid_grant", challengeInvalid)
		if got := e.me(other.AccessToken); got != 200 {
			t.Errorf("another session's token = %d after reuse, want 200", got)
		}
		wantPair(t, e.refresh(other.RefreshToken))
	})

	t.Run("concurrent refreshes: exactly one wins", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		p := e.exchange(e.root, "")
		const n = 8
		var ok atomic.Int32
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if e.refresh(p.RefreshToken).status == http.StatusOK {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if got := ok.Load(); got != 1 {
			t.Errorf("%d of %d concurrent refreshes succeeded, want 1", got, n)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		p := e.exchange(e.root, "")
		rtFormat, err := refreshFormat("halfred")
		if err != nil {
			t.Fatal(err)
		}
		unknown, err := rtFormat.Generate()
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, body string
			status     int
			typ, code  string
			challenge  string
		}{
			{"access token", `{"refresh_token":"` + p.AccessToken + `"}`, 400, "invalid_request_error", "invalid_grant", ""},
			{"API key", `{"refresh_token":"` + e.root + `"}`, 400, "invalid_request_error", "invalid_grant", ""},
			{"garbage", `{"refresh_token":"hello"}`, 400, "invalid_request_error", "invalid_grant", ""},
			{"unknown refresh token", `{"refresh_token":"` + unknown.Plaintext() + `"}`, 401, "authentication_error", "invalid_grant", challengeInvalid},
			{"no body", ``, 400, "invalid_request_error", "invalid_request", ""},
			{"empty object", `{}`, 400, "invalid_request_error", "invalid_request", ""},
			{"unknown field", `{"refresh_token":"x","scope":"a"}`, 400, "invalid_request_error", "invalid_request", ""},
			{"form body", `grant_type=refresh_token&refresh_token=x`, 400, "invalid_request_error", "invalid_request", ""},
		}
		for _, tt := range tests {
			res := e.do(req{method: "POST", path: "/v1/auth/refresh", body: tt.body})
			wantError(t, res, tt.status, tt.typ, tt.code, tt.challenge)
			wantTokenHeaders(t, res)
			if bytes.Contains(res.body, []byte(p.AccessToken)) || bytes.Contains(res.body, []byte(e.root)) {
				t.Errorf("%s: body echoes the credential", tt.name)
			}
		}
		// The access token was not spent or harmed by being sent there.
		if got := e.me(p.AccessToken); got != 200 {
			t.Errorf("access token after the bad refreshes = %d", got)
		}
		res := e.do(req{method: "GET", path: "/v1/auth/refresh"})
		wantError(t, res, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "")
	})
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.exchange(e.root, "")
	second := wantPair(t, e.refresh(first.RefreshToken)) // same session
	other := e.exchange(e.root, "")                      // another session

	res := e.do(req{method: "POST", path: "/v1/auth/revoke", key: second.AccessToken})
	if res.status != http.StatusNoContent || len(res.body) != 0 {
		t.Fatalf("revoke = %d %q, want 204 without a body", res.status, res.body)
	}
	wantTokenHeaders(t, res)

	for _, tok := range []string{second.AccessToken, first.AccessToken} { // the revoked one, an earlier one of its session
		res := e.do(req{method: "GET", path: "/v1/models", key: tok})
		wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_token", challengeInvalid)
	}
	wantError(t, e.refresh(second.RefreshToken), http.StatusUnauthorized, "authentication_error", "invalid_grant", challengeInvalid)
	if got := e.me(other.AccessToken); got != 200 {
		t.Errorf("another session's token = %d, want 200", got)
	}

	tests := []struct {
		name      string
		key       string
		status    int
		typ, code string
		challenge string
	}{
		{"again", second.AccessToken, 401, "authentication_error", "invalid_token", challengeInvalid},
		{"API key", e.root, 403, "permission_error", "insufficient_scope", challengeScopeless},
		{"no credentials", "", 401, "authentication_error", "", challengeMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(req{method: "POST", path: "/v1/auth/revoke", key: tt.key})
			wantError(t, res, tt.status, tt.typ, tt.code, tt.challenge)
		})
	}
	if got := e.me(e.root); got != 200 {
		t.Errorf("the API key after a refused revocation = %d", got)
	}
}

func TestRevokingTheKeyEndsItsTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		act  func(e *env, id string) response
	}{
		{"delete", func(e *env, id string) response {
			return e.do(req{method: "DELETE", path: "/v1/keys/" + id, key: e.root})
		}},
		{"rotate", func(e *env, id string) response {
			return e.do(req{method: "POST", path: "/v1/keys/" + id + "/rotate", key: e.root})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			k := e.createKey(e.root, `{"name":"k","scopes":["models:read","tokens:issue"]}`)
			p := e.exchange(k.Key, "")
			if got := e.me(p.AccessToken); got != 200 {
				t.Fatalf("token before = %d", got)
			}
			if res := tt.act(e, k.ID); res.status >= 300 {
				t.Fatalf("%s = %d %s", tt.name, res.status, res.body)
			}
			res := e.do(req{method: "GET", path: "/v1/models", key: p.AccessToken})
			wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_token", challengeInvalid)
			wantError(t, e.refresh(p.RefreshToken), http.StatusUnauthorized, "authentication_error", "invalid_grant", challengeInvalid)
		})
	}
}

// TestTokenWhenStoreDown checks the 503 row for access tokens: with the
// key store down, the token's API key cannot be checked, so the request is
// not served, and is not answered as an invalid token either.
func TestTokenWhenStoreDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.exchange(e.root, "")
	e.store.failLookup.Store(true)
	e.store.failManage.Store(true)
	writes := e.store.writes.Load()
	for _, rq := range []req{
		{method: "GET", path: "/v1/models", key: p.AccessToken},
		{method: "POST", path: "/v1/keys", key: p.AccessToken, body: `{}`},
		{method: "POST", path: "/v1/auth/refresh", body: `{"refresh_token":"` + p.RefreshToken + `"}`},
	} {
		res := e.do(rq)
		d := wantError(t, res, http.StatusServiceUnavailable, "api_error", "", "")
		if strings.Contains(d.Message, errDown.Error()) {
			t.Errorf("%s: 503 body leaks the store error", rq.path)
		}
	}
	if n := e.store.writes.Load() - writes; n != 0 {
		t.Errorf("a handler ran: %d store writes", n)
	}
	e.store.failLookup.Store(false)
	e.store.failManage.Store(false)
	if got := e.me(p.AccessToken); got != 200 {
		t.Errorf("token after the store came back = %d", got)
	}
}

// TestTokenRejectionsIdentical checks the token rows of the error table:
// an expired, revoked, forged or malformed access token gets 401
// invalid_token, the same bytes whatever the reason.
func TestTokenRejectionsIdentical(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	expired := e.exchange(e.root, "").AccessToken
	e.clock.Advance(16 * time.Minute)
	live := e.exchange(e.root, "")
	revoked := e.exchange(e.root, "").AccessToken
	if res := e.do(req{method: "POST", path: "/v1/auth/revoke", key: revoked}); res.status != 204 {
		t.Fatalf("revoke = %d", res.status)
	}
	k := e.createKey(e.root, `{"name":"doomed","scopes":["tokens:issue","models:read"]}`)
	ofRevokedKey := e.exchange(k.Key, "").AccessToken
	e.do(req{method: "DELETE", path: "/v1/keys/" + k.ID, key: e.root})

	head, payload, sig := splitJWT(t, live.AccessToken)
	kid := jwtHeader(t, live.AccessToken)["kid"].(string)
	stranger, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := resign(t, head, payload, stranger.Key, jwt.SigningMethodEdDSA)
	none := b64url(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`) + "." + payload + "."
	hs := resign(t, b64url(`{"alg":"HS256","typ":"at+jwt","kid":"`+kid+`"}`), payload, []byte(e.srv.tokens.issuer.KeySet().JWKS()), jwt.SigningMethodHS256)
	tampered := head + "." + b64url(strings.Replace(decodeB64(t, payload), `"scope":"`, `"scope":"admin `, 1)) + "." + sig
	mid := len(sig) / 2
	flipped := head + "." + payload + "." + sig[:mid] + string("AB"[boolIndex(sig[mid] == 'A')]) + sig[mid+1:]

	tokens := []struct{ name, tok string }{
		{"expired", expired},
		{"revoked", revoked},
		{"of a revoked key", ofRevokedKey},
		{"signed by another key", forged},
		{"alg none", none},
		{"HS256 with the JWK Set as secret", hs},
		{"tampered payload", tampered},
		{"flipped signature", flipped},
		{"padded signature", live.AccessToken + "=="},
		{"JWT-shaped garbage", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"},
	}
	var first *response
	for _, tt := range tokens {
		res := e.do(req{method: "GET", path: "/v1/me", key: tt.tok})
		res.header.Del("Date")
		if res.status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401; %s", tt.name, res.status, res.body)
			continue
		}
		wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_token", challengeInvalid)
		if first == nil {
			first = &res
			continue
		}
		if !bytes.Equal(res.body, first.body) {
			t.Errorf("%s: body %s, want %s", tt.name, res.body, first.body)
		}
		if g, w := mustJSON(t, res.header), mustJSON(t, first.header); g != w {
			t.Errorf("%s: headers %s, want %s", tt.name, g, w)
		}
	}
	if got := e.me(live.AccessToken); got != 200 {
		t.Errorf("the live token = %d", got)
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func splitJWT(t *testing.T, tok string) (head, payload, sig string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	head, _, _ := splitJWT(t, tok)
	var h map[string]any
	if err := json.Unmarshal([]byte(decodeB64(t, head)), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// resign signs head.payload with key.
func resign(t *testing.T, head, payload string, key any, m jwt.SigningMethod) string {
	t.Helper()
	sig, err := m.Sign(head+"."+payload, key)
	if err != nil {
		t.Fatal(err)
	}
	return head + "." + payload + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.exchange(e.root, "")
	res := e.do(req{method: "GET", path: "/.well-known/jwks.json"})
	if res.status != 200 {
		t.Fatalf("status = %d %s", res.status, res.body)
	}
	if got := res.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := res.header.Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control = %q", got)
	}
	if res.header.Get("ETag") == "" {
		t.Errorf("no ETag")
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	res.decode(t, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("keys = %s", res.body)
	}
	jwk := set.Keys[0]
	for _, m := range []string{"kid", "kty", "alg", "crv", "x"} {
		if s, ok := jwk[m].(string); !ok || s == "" {
			t.Errorf("JWK lacks %q: %s", m, res.body)
		}
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := jwk[private]; ok {
			t.Errorf("JWK holds private member %q", private)
		}
	}
	if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" || jwk["alg"] != "EdDSA" || jwk["use"] != "sig" {
		t.Errorf("JWK = %v", jwk)
	}
	if kid := jwtHeader(t, p.AccessToken)["kid"]; kid != jwk["kid"] {
		t.Errorf("token kid %v, JWK kid %v", kid, jwk["kid"])
	}

	// Verify the token with the JWK and crypto/ed25519 alone, as an
	// independent JOSE implementation would (RFC 8037 §3.1), without
	// keygate's verifier.
	x, err := base64.RawURLEncoding.DecodeString(jwk["x"].(string))
	if err != nil || len(x) != ed25519.PublicKeySize {
		t.Fatalf("x = %v, %v", x, err)
	}
	head, payload, sig := splitJWT(t, p.AccessToken)
	rawSig, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(ed25519.PublicKey(x), []byte(head+"."+payload), rawSig) {
		t.Fatal("the access token does not verify with the published key")
	}
	h := jwtHeader(t, p.AccessToken)
	if h["alg"] != "EdDSA" || h["typ"] != "at+jwt" {
		t.Errorf("header = %v", h)
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(decodeB64(t, payload)), &claims); err != nil {
		t.Fatal(err)
	}
	if claims["iss"] != tokenIssuer || claims["sub"] != e.rootID || claims["client_id"] != e.rootID ||
		claims["scope"] != allScopesClaim || claims["exp"] != float64(epoch.Add(15*time.Minute).Unix()) {
		t.Errorf("claims = %v", claims)
	}

	t.Run("HEAD and POST", func(t *testing.T) {
		if res := e.do(req{method: "HEAD", path: "/.well-known/jwks.json"}); res.status != 200 || len(res.body) != 0 {
			t.Errorf("HEAD = %d %q", res.status, res.body)
		}
		res := e.do(req{method: "POST", path: "/.well-known/jwks.json"})
		wantError(t, res, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "")
	})
}

// identityProvider is an external identity provider for the tests: its
// keys and an httptest server publishing their JWK Set.
type identityProvider struct {
	srv     *httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	jwks    []byte
	ed, ec  token.SigningKey
}

const (
	idpIssuer   = "https://idp.example.com/"
	idpAudience = "https://halfred.example.com"
)

func newIdentityProvider(t *testing.T) *identityProvider {
	t.Helper()
	p := &identityProvider{}
	var err error
	if p.ed, err = token.GenerateSigningKey(token.EdDSA, nil); err != nil {
		t.Fatal(err)
	}
	if p.ec, err = token.GenerateSigningKey(token.ES256, nil); err != nil {
		t.Fatal(err)
	}
	p.publish(t, p.ed, p.ec)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body := p.jwks
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// publish makes keys the provider's JWK Set.
func (p *identityProvider) publish(t *testing.T, keys ...token.SigningKey) {
	t.Helper()
	var pub []token.VerificationKey
	for _, k := range keys {
		pub = append(pub, k.Public())
	}
	ks, err := token.NewKeySet(pub...)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.jwks = ks.JWKS()
	p.mu.Unlock()
}

// idpClaims are the claims of a valid provider token at time now, changed
// by kv (a nil value deletes the claim).
func idpClaims(now time.Time, kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": idpIssuer, "aud": idpAudience, "sub": "user-42", "scope": "models:read",
		"jti": "idp-1", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// signJWT signs claims with golang-jwt, as an identity provider does: alg
// and kid in the header, and typ only if header sets it.
func signJWT(t *testing.T, m jwt.SigningMethod, kid string, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	delete(tok.Header, "typ")
	tok.Header["kid"] = kid
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTrustEnv is a server that trusts p, signing its own tokens with own.
func newTrustEnv(t *testing.T, p *identityProvider, own token.SigningKey) *env {
	t.Helper()
	return newEnvWith(t, func(c *config) {
		c.signingKey = own
		c.trust = &trustConfig{
			jwksURL: p.srv.URL, issuer: idpIssuer, audience: idpAudience,
			remoteOptions: []token.RemoteOption{token.WithRefreshInterval(time.Hour)},
		}
	})
}

func TestExternalIdentityProvider(t *testing.T) {
	t.Parallel()
	p := newIdentityProvider(t)
	own, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newTrustEnv(t, p, own)
	now := epoch
	ed := func(claims jwt.MapClaims, header map[string]any) string {
		return signJWT(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims, header)
	}
	valid := ed(idpClaims(now), nil)

	t.Run("me", func(t *testing.T) {
		t.Parallel()
		got := mustJSON(t, e.meBody(valid))
		want := mustJSON(t, map[string]any{"method": "access_token", "key_id": "", "project": "", "scopes": []string{"models:read"}, "subject": "user-42"})
		if got != want {
			t.Errorf("me = %s, want %s", got, want)
		}
	})
	t.Run("claims of this server are ignored", func(t *testing.T) {
		t.Parallel()
		tok := ed(idpClaims(now, "project", "default", "client_id", e.rootID, "sid", "s", "scope", "keys:manage tokens:issue"), nil)
		got := e.meBody(tok)
		if got["project"] != "" || got["key_id"] != "" {
			t.Errorf("me = %v: a provider's token took this server's claims", got)
		}
		for _, rq := range []req{
			{method: "GET", path: "/v1/keys"},
			{method: "POST", path: "/v1/keys", body: `{}`},
			{method: "DELETE", path: "/v1/keys/" + e.rootID},
			{method: "POST", path: "/v1/auth/token"},
			{method: "POST", path: "/v1/auth/revoke"},
		} {
			rq.key = tok
			res := e.do(rq)
			wantError(t, res, http.StatusForbidden, "permission_error", "insufficient_scope", challengeScopeless)
		}
		if e.me(e.root) != 200 || len(e.listKeys(e.root)) != 1 {
			t.Errorf("the provider's token changed the keys")
		}
		if got := e.me(tok); got != 200 {
			t.Errorf("the token after a refused revocation = %d", got)
		}
	})

	accepted := []struct {
		name string
		tok  string
	}{
		{"EdDSA without typ", valid},
		{"EdDSA with typ JWT", ed(idpClaims(now), map[string]any{"typ": "JWT"})},
		{"ES256 with typ at+jwt and an aud array", signJWT(t, jwt.SigningMethodES256, p.ec.KID, p.ec.Key,
			idpClaims(now, "aud", []string{"other", idpAudience}), map[string]any{"typ": "at+jwt"})},
		{"no jti", ed(idpClaims(now, "jti", nil), nil)},
		{"exp within the leeway", ed(idpClaims(now, "iat", now.Add(-10*time.Minute).Unix(), "exp", now.Add(-20*time.Second).Unix()), nil)},
	}
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			t.Parallel()
			if res := e.do(req{method: "GET", path: "/v1/models", key: tt.tok}); res.status != 200 {
				t.Errorf("models = %d %s", res.status, res.body)
			}
			res := e.do(req{method: "POST", path: "/v1/chat/completions", key: tt.tok, body: chatBody})
			wantError(t, res, http.StatusForbidden, "permission_error", "insufficient_scope", challengeScope("chat:write"))
		})
	}

	// Tokens signed across issuers: the server's own key with the
	// provider's iss, the provider's key with the server's iss.
	ownClaims := jwt.MapClaims{"iss": tokenIssuer, "aud": tokenIssuer, "sub": e.rootID, "client_id": e.rootID,
		"project": "default", "scope": "models:read", "jti": "forged", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	rejected := []struct {
		name string
		tok  string
	}{
		{"provider's iss, server's key", signJWT(t, jwt.SigningMethodEdDSA, own.KID, own.Key, idpClaims(now), nil)},
		{"provider's iss and kid, server's key", signJWT(t, jwt.SigningMethodEdDSA, p.ed.KID, own.Key, idpClaims(now), nil)},
		{"server's iss, provider's key", signJWT(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, ownClaims, map[string]any{"typ": "at+jwt"})},
		{"server's iss and kid, provider's key", signJWT(t, jwt.SigningMethodEdDSA, own.KID, p.ed.Key, ownClaims, map[string]any{"typ": "at+jwt"})},
		{"expired", ed(idpClaims(now, "iat", now.Add(-20*time.Minute).Unix(), "exp", now.Add(-time.Minute).Unix()), nil)},
		{"no exp", ed(idpClaims(now, "exp", nil), nil)},
		{"not yet valid", ed(idpClaims(now, "nbf", now.Add(2*time.Minute).Unix()), nil)},
		{"lifetime over an hour", ed(idpClaims(now, "exp", now.Add(3*time.Hour).Unix()), nil)},
		{"wrong aud", ed(idpClaims(now, "aud", "https://other.example.com"), nil)},
		{"no aud", ed(idpClaims(now, "aud", nil), nil)},
		{"iss with another case", ed(idpClaims(now, "iss", strings.ToUpper(idpIssuer)), nil)},
		{"alg mismatch: ES256 under the Ed25519 kid", signJWT(t, jwt.SigningMethodES256, p.ed.KID, p.ec.Key, idpClaims(now), nil)},
		{"HS256 with the JWK Set as secret", signJWT(t, jwt.SigningMethodHS256, p.ed.KID, p.jwks, idpClaims(now), nil)},
		{"HS256 with the public key as secret", signJWT(t, jwt.SigningMethodHS256, p.ed.KID, []byte(p.ed.Public().Key.(ed25519.PublicKey)), idpClaims(now), nil)},
		{"alg none", signJWT(t, jwt.SigningMethodNone, p.ed.KID, jwt.UnsafeAllowNoneSignatureType, idpClaims(now), nil)},
		{"crit header", ed(idpClaims(now), map[string]any{"crit": []string{"exp"}, "exp": 1})},
		{"unknown kid", signJWT(t, jwt.SigningMethodEdDSA, "nobody", p.ed.Key, idpClaims(now), nil)},
		{"scope not a string", ed(idpClaims(now, "scope", []string{"models:read"}), nil)},
		{"exp as a string", ed(idpClaims(now, "exp", fmt.Sprint(now.Add(time.Minute).Unix())), nil)},
	}
	var first []byte
	for _, tt := range rejected {
		res := e.do(req{method: "GET", path: "/v1/me", key: tt.tok})
		if res.status != http.StatusUnauthorized {
			t.Errorf("rejected/%s: status %d, want 401; %s", tt.name, res.status, res.body)
			continue
		}
		wantError(t, res, http.StatusUnauthorized, "authentication_error", "invalid_token", challengeInvalid)
		if first == nil {
			first = res.body
		} else if !bytes.Equal(res.body, first) {
			t.Errorf("rejected/%s: body %s, want %s", tt.name, res.body, first)
		}
	}

	t.Run("own tokens still work", func(t *testing.T) {
		t.Parallel()
		pr := e.exchange(e.root, `{"scopes":["models:read"]}`)
		if got := e.meBody(pr.AccessToken)["key_id"]; got != e.rootID {
			t.Errorf("key_id = %v", got)
		}
		if kid := jwtHeader(t, pr.AccessToken)["kid"]; kid != own.KID {
			t.Errorf("kid = %v, want the configured key's %s", kid, own.KID)
		}
	})
	if n := p.fetches.Load(); n > 2 {
		t.Errorf("the provider got %d requests, want at most 2", n)
	}
}

func TestExternalKeyRotation(t *testing.T) {
	t.Parallel()
	p := newIdentityProvider(t)
	own, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newTrustEnv(t, p, own)
	start := p.fetches.Load()

	// A flood of random kids costs the provider at most one request.
	e.clock.Advance(5 * time.Second)
	for i := range 200 {
		tok := signJWT(t, jwt.SigningMethodEdDSA, fmt.Sprintf("random-%d", i), p.ed.Key, idpClaims(e.clock.Now()), nil)
		if got := e.me(tok); got != http.StatusUnauthorized {
			t.Fatalf("random kid %d: status %d", i, got)
		}
	}
	if n := p.fetches.Load() - start; n > 1 {
		t.Errorf("200 random kids cost %d fetches, want at most 1", n)
	}

	// A newly published key is trusted after one refetch.
	next, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.publish(t, next)
	e.clock.Advance(5 * time.Second)
	before := p.fetches.Load()
	tok := signJWT(t, jwt.SigningMethodEdDSA, next.KID, next.Key, idpClaims(e.clock.Now()), nil)
	if got := e.me(tok); got != 200 {
		t.Fatalf("new key: status %d", got)
	}
	if n := p.fetches.Load() - before; n != 1 {
		t.Errorf("the new key took %d fetches, want 1", n)
	}
	// The old key was removed from the set with that fetch.
	old := signJWT(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, idpClaims(e.clock.Now()), nil)
	if got := e.me(old); got != http.StatusUnauthorized {
		t.Errorf("removed key: status %d, want 401", got)
	}
}

func TestUnverifiedIssuer(t *testing.T) {
	t.Parallel()
	enc := func(payload string) string { return b64url(`{"alg":"EdDSA"}`) + "." + b64url(payload) + ".c2ln" }
	tests := []struct {
		name, jws, want string
	}{
		{"iss", enc(`{"iss":"https://idp/","sub":"a"}`), "https://idp/"},
		{"no iss", enc(`{"sub":"a"}`), ""},
		{"ISS is not iss", enc(`{"ISS":"https://idp/"}`), ""},
		{"iss not a string", enc(`{"iss":1}`), ""},
		{"payload not JSON", enc(`iss`), ""},
		{"payload an array", enc(`["iss"]`), ""},
		{"padded payload", b64url(`{}`) + "." + base64.URLEncoding.EncodeToString([]byte(`{"iss":"x"}`)) + ".c2ln", ""},
		{"one dot", "eyJhbGciOiJFZERTQSJ9.e30", ""},
		{"no dot", "eyJhbGciOiJFZERTQSJ9", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := unverifiedIssuer(tt.jws); got != tt.want {
				t.Errorf("unverifiedIssuer = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzUnverifiedIssuer checks that reading the iss claim of any
// credential never panics, and finds one only in a decodable payload.
func FuzzUnverifiedIssuer(f *testing.F) {
	for _, seed := range []string{
		"", ".", "..", "a.b.c",
		b64url(`{"alg":"EdDSA"}`) + "." + b64url(`{"iss":"https://idp.example.com/"}`) + ".c2ln",
		b64url(`{}`) + "." + b64url(`{"iss":"a","iss":"b"}`) + ".",
		"eyJ." + b64url(`{"iss":{"x":1}}`) + ".x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, jws string) {
		iss := unverifiedIssuer(jws)
		if iss == "" {
			return
		}
		parts := strings.SplitN(jws, ".", 3)
		if len(parts) < 3 {
			t.Fatalf("iss %q from %q, which has no payload", iss, jws)
		}
		if _, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil {
			t.Fatalf("iss %q from an undecodable payload", iss)
		}
	})
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://idp.example.com/jwks.json", "https://idp.example.com/jwks.json"},
		{"https://user:secret@idp.example.com/jwks.json", "https://idp.example.com/jwks.json"},
		{"https://idp.example.com/jwks.json?token=secret#frag", "https://idp.example.com/jwks.json"},
		{"https://idp.example.com/a@b", "https://idp.example.com/a@b"},
		{"http://[::1", "(invalid URL)"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestLongPrefix checks that the refresh token format still works with
// the longest API key prefix.
func TestLongPrefix(t *testing.T) {
	t.Parallel()
	prefix := strings.Repeat("p", 32)
	e := newEnvWith(t, func(c *config) { c.prefix = prefix })
	res := e.do(req{method: "POST", path: "/v1/auth/token", key: e.root})
	if res.status != 200 {
		t.Fatalf("exchange = %d %s", res.status, res.body)
	}
	var p pair
	res.decode(t, &p)
	if !strings.HasPrefix(p.RefreshToken, strings.Repeat("p", 30)+"rt_") {
		t.Errorf("refresh token = %.40q…", p.RefreshToken)
	}
	if res := e.refresh(p.RefreshToken); res.status != 200 {
		t.Errorf("refresh = %d %s", res.status, res.body)
	}
}
