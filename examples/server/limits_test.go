package main

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
)

// The messages of the 429 answers, from the auth package.
const (
	msgTooManyForCredential = "Too many requests for this credential. Retry after the number of seconds in the Retry-After header."
	msgTooManyFailures      = "Too many failed authentication attempts from this address. Retry after the number of seconds in the Retry-After header."
	msgTooManyFromAddress   = "Too many requests from this address. Retry after the number of seconds in the Retry-After header."
)

// wantRateLimited checks a 429 exactly as the contract's error table has
// it: rate_limit_error, Retry-After, no WWW-Authenticate; and the message.
func wantRateLimited(t *testing.T, res response, retryAfter, msg string) {
	t.Helper()
	d := wantError(t, res, http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded", "")
	if got := res.header.Values("Retry-After"); !slices.Equal(got, []string{retryAfter}) {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
	if d.Message != msg {
		t.Errorf("message = %q, want %q", d.Message, msg)
	}
}

// wantRateLimitFields checks the RateLimit-Policy and RateLimit fields.
func wantRateLimitFields(t *testing.T, res response, policy, limit []string) {
	t.Helper()
	if got := res.header.Values("RateLimit-Policy"); !slices.Equal(got, policy) {
		t.Errorf("RateLimit-Policy = %q, want %q", got, policy)
	}
	if got := res.header.Values("RateLimit"); !slices.Equal(got, limit) {
		t.Errorf("RateLimit = %q, want %q", got, limit)
	}
}

// unknownKey returns a well-formed key (its checksum is right) that the
// store does not hold: checking it costs a store lookup.
func (e *env) unknownKey() string {
	e.t.Helper()
	k, err := e.srv.format.Generate()
	if err != nil {
		e.t.Fatal(err)
	}
	return k.Plaintext()
}

// TestRateLimits sends the same request until its limit refuses it, for
// each limit of the server, and checks every response's status and
// RateLimit fields, and the 429, exactly. The limiter runs on the test's
// clock, which does not move: the numbers are exact.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	type want struct {
		status int
		limit  []string // the RateLimit field's values
		// retryAfter is the Retry-After of a 429.
		retryAfter string
	}
	tests := []struct {
		name   string
		limits rateLimits
		// request makes the request to repeat, with what it needs.
		request func(e *env) func(i int) req
		policy  []string
		msg     string // of the 429
		want    []want
	}{
		{
			name:   "API key",
			limits: rateLimits{apiKey: 3},
			request: func(e *env) func(int) req {
				return func(int) req { return req{method: "GET", path: "/v1/models", key: e.root} }
			},
			policy: []string{`"api_key";q=3;w=60`},
			msg:    msgTooManyForCredential,
			want: []want{
				{200, []string{`"api_key";r=2;t=20`}, ""},
				{200, []string{`"api_key";r=1;t=40`}, ""},
				{200, []string{`"api_key";r=0;t=20`}, ""},
				{429, []string{`"api_key";r=0;t=20`}, "20"},
				{429, []string{`"api_key";r=0;t=20`}, "20"},
			},
		},
		{
			name:   "access token",
			limits: rateLimits{accessToken: 2},
			request: func(e *env) func(int) req {
				at := e.exchange(e.root, "").AccessToken
				return func(int) req { return req{method: "GET", path: "/v1/me", key: at} }
			},
			policy: []string{`"access_token";q=2;w=60`},
			msg:    msgTooManyForCredential,
			want: []want{
				{200, []string{`"access_token";r=1;t=30`}, ""},
				{200, []string{`"access_token";r=0;t=30`}, ""},
				{429, []string{`"access_token";r=0;t=30`}, "30"},
			},
		},
		{
			name:   "token exchange, on top of the key's limit",
			limits: rateLimits{apiKey: 100, exchange: 2},
			request: func(e *env) func(int) req {
				return func(int) req { return req{method: "POST", path: "/v1/auth/token", key: e.root} }
			},
			policy: []string{`"api_key";q=100;w=60`, `"token_exchange";q=2;w=60`},
			msg:    msgTooManyForCredential,
			want: []want{
				{200, []string{`"api_key";r=99;t=1`, `"token_exchange";r=1;t=30`}, ""},
				{200, []string{`"api_key";r=98;t=2`, `"token_exchange";r=0;t=30`}, ""},
				{429, []string{`"api_key";r=97;t=2`, `"token_exchange";r=0;t=30`}, "30"},
			},
		},
		{
			name:   "refresh, per client address",
			limits: rateLimits{refresh: 2},
			request: func(e *env) func(int) req {
				rt := e.exchange(e.root, "").RefreshToken
				body := fmt.Sprintf(`{"refresh_token":%q}`, rt)
				return func(int) req { return req{method: "POST", path: "/v1/auth/refresh", body: body} }
			},
			policy: []string{`"token_refresh";q=2;w=60`},
			msg:    msgTooManyFromAddress,
			want: []want{
				{200, []string{`"token_refresh";r=1;t=30`}, ""},
				{401, []string{`"token_refresh";r=0;t=30`}, ""}, // spent: reuse
				{429, []string{`"token_refresh";r=0;t=30`}, "30"},
			},
		},
		{
			name:   "failed authentications, per client address",
			limits: rateLimits{apiKey: 100, failures: 2},
			request: func(e *env) func(int) req {
				bad := e.unknownKey()
				return func(i int) req {
					if i == 2 {
						// Refused before it is checked, however good.
						return req{method: "GET", path: "/v1/models", key: e.root}
					}
					return req{method: "GET", path: "/v1/models", key: bad}
				}
			},
			policy: []string{`"auth_failures";q=2;w=60`},
			msg:    msgTooManyFailures,
			want: []want{
				{401, []string{`"auth_failures";r=1;t=30`}, ""},
				{401, []string{`"auth_failures";r=0;t=30`}, ""},
				{429, []string{`"auth_failures";r=0;t=30`}, "30"},
				{429, []string{`"auth_failures";r=0;t=30`}, "30"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, func(c *config) { c.limits = tt.limits })
			request := tt.request(e)
			for i, w := range tt.want {
				res := e.do(request(i))
				if res.status != w.status {
					t.Fatalf("request %d: status %d, want %d; %s", i, res.status, w.status, res.body)
				}
				wantRateLimitFields(t, res, tt.policy, w.limit)
				if w.status == http.StatusTooManyRequests {
					wantRateLimited(t, res, w.retryAfter, tt.msg)
				} else if ra := res.header.Get("Retry-After"); ra != "" {
					t.Errorf("request %d: Retry-After %q on a %d", i, ra, res.status)
				}
			}
		})
	}
}

// TestNoRateLimits: with every limit 0, nothing is limited and no
// response carries RateLimit fields.
func TestNoRateLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := e.unknownKey()
	for i := range 50 {
		if res := e.do(req{method: "GET", path: "/v1/models", key: bad}); res.status != http.StatusUnauthorized {
			t.Fatalf("bad key %d: %d", i, res.status)
		}
	}
	res := e.do(req{method: "POST", path: "/v1/auth/token", key: e.root})
	if res.status != http.StatusOK || res.header.Get("RateLimit") != "" || res.header.Get("RateLimit-Policy") != "" {
		t.Errorf("exchange without limits: %d, RateLimit %q", res.status, res.header.Values("RateLimit"))
	}
}

// TestFailureFloodSparesStore: a flood of well-formed unknown keys from
// one address reaches the store only as often as the failure budget
// allows; after that every request from the address is answered 429
// before the store is asked, the address's valid keys included.
func TestFailureFloodSparesStore(t *testing.T) {
	t.Parallel()
	const budget = 5
	e := newEnvWith(t, func(c *config) { c.limits = rateLimits{apiKey: 600, failures: budget} })
	before := e.store.lookups.Load()
	statuses := map[int]int{}
	for range 40 {
		statuses[e.do(req{method: "GET", path: "/v1/models", key: e.unknownKey()}).status]++
	}
	if statuses[401] != budget || statuses[429] != 40-budget {
		t.Errorf("statuses %v, want %d × 401 then 429", statuses, budget)
	}
	if got := e.store.lookups.Load() - before; got != budget {
		t.Errorf("the store was asked %d times for 40 unknown keys, want %d", got, budget)
	}
	res := e.do(req{method: "GET", path: "/v1/models", key: e.root})
	wantRateLimited(t, res, "12", msgTooManyFailures) // 5 a minute: one every 12 s
	if got := e.store.lookups.Load() - before; got != budget {
		t.Errorf("the refused valid key reached the store: %d lookups", got)
	}
}

// TestKeyOwnRateLimit: a key created with a rate_limit is limited by it
// (under the name of the API keys' limit), shows it in its creation and
// in GET /v1/keys, keeps it through a rotation, and cannot be given a
// wider limit than the server's.
func TestKeyOwnRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *config) { c.limits = rateLimits{apiKey: 600} })
	k := e.createKey(e.root, `{"name":"slow","scopes":["models:read"],"rate_limit":{"requests":2,"per_seconds":10}}`)
	if k.RateLimit == nil || *k.RateLimit != (keyLimit{Requests: 2, PerSeconds: 10}) {
		t.Fatalf("created rate_limit = %v", k.RateLimit)
	}
	items := e.listKeys(e.root)
	if it, _ := findItem(items, k.ID); it.RateLimit == nil || *it.RateLimit != (keyLimit{Requests: 2, PerSeconds: 10}) {
		t.Errorf("listed rate_limit = %v", it.RateLimit)
	}
	if it, _ := findItem(items, e.rootID); it.RateLimit != nil {
		t.Errorf("the bootstrap key's rate_limit = %v, want null", it.RateLimit)
	}

	policy := []string{`"api_key";q=2;w=10`}
	models := func(key string) response { return e.do(req{method: "GET", path: "/v1/models", key: key}) }
	res := models(k.Key)
	wantRateLimitFields(t, res, policy, []string{`"api_key";r=1;t=5`})
	res = models(k.Key)
	wantRateLimitFields(t, res, policy, []string{`"api_key";r=0;t=5`})
	res = models(k.Key)
	wantRateLimited(t, res, "5", msgTooManyForCredential)
	wantRateLimitFields(t, res, policy, []string{`"api_key";r=0;t=5`})
	// The server's limit still applies to the other keys.
	wantRateLimitFields(t, models(e.root), []string{`"api_key";q=600;w=60`}, []string{`"api_key";r=597;t=1`}) // its third request

	res = e.do(req{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", key: e.root})
	if res.status != http.StatusCreated {
		t.Fatalf("rotate = %d %s", res.status, res.body)
	}
	var rotated keyCreated
	res.decode(t, &rotated)
	if rotated.RateLimit == nil || *rotated.RateLimit != (keyLimit{Requests: 2, PerSeconds: 10}) {
		t.Errorf("rotated rate_limit = %v", rotated.RateLimit)
	}
	wantRateLimitFields(t, models(rotated.Key), policy, []string{`"api_key";r=1;t=5`}) // a budget of its own

	tests := []struct {
		name   string
		limit  string
		status int
	}{
		{"the server's limit", `{"requests":600,"per_seconds":60}`, 201},
		{"the same rate in smaller bursts", `{"requests":10,"per_seconds":1}`, 201},
		{"stricter", `{"requests":1,"per_seconds":3600}`, 201},
		{"more requests a minute", `{"requests":601,"per_seconds":60}`, 400},
		{"a faster rate", `{"requests":11,"per_seconds":1}`, 400},
		{"a bigger burst", `{"requests":1000,"per_seconds":3600}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(req{method: "POST", path: "/v1/keys", key: e.root, body: `{"scopes":["models:read"],"rate_limit":` + tt.limit + `}`})
			if tt.status == 201 {
				if res.status != 201 {
					t.Fatalf("status %d %s", res.status, res.body)
				}
				return
			}
			d := wantError(t, res, 400, "invalid_request_error", "invalid_parameter", "")
			if want := "rate_limit allows more than this server's limit for API keys, 600 requests a minute in bursts of up to 600; a key's own limit can only be stricter."; d.Message != want {
				t.Errorf("message = %q, want %q", d.Message, want)
			}
		})
	}
}
