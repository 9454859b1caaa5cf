package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/keygate/keygate/auth"
)

// keys is a toy credential back end: in a real service this is
// keystore's Manager, or the token package's verifier.
var keys = auth.AuthenticatorFunc(func(ctx context.Context, credential string) (auth.Principal, error) {
	switch credential {
	case "halfred_reader":
		return auth.Principal{Method: auth.MethodAPIKey, KeyID: "key_1", Project: "default", Scopes: []string{"models:read"}}, nil
	case "halfred_admin":
		return auth.Principal{Method: auth.MethodAPIKey, KeyID: "key_2", Project: "default", Scopes: []string{"models:read", "keys:manage"}}, nil
	}
	if !strings.HasPrefix(credential, "halfred_") {
		return auth.Principal{}, &auth.Error{Kind: auth.ErrInvalidCredential, Message: "API keys start with halfred_"}
	}
	return auth.Principal{}, auth.ErrInvalidCredential
})

// do sends a GET request with the given headers (name, value, name, …)
// and prints the status and the body's first line.
func do(h http.Handler, header ...string) {
	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
}

// Protect a handler: every request needs a valid API key, in the
// Authorization header or the api-key header.
func Example() {
	guard, err := auth.New(keys)
	if err != nil {
		panic(err)
	}
	models := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		fmt.Fprintf(w, "models for %s", p.Project)
	})
	h := guard.Middleware(models)

	do(h)
	do(h, "Authorization", "Bearer sk-wrong")
	do(h, "Authorization", "Bearer halfred_unknown")
	do(h, "Authorization", "Bearer halfred_reader")
	do(h, "api-key", "halfred_reader")
	do(h, "Authorization", "Bearer halfred_reader", "api-key", "halfred_admin")
	// Output:
	// 401 {"error":{"message":"No API key or token was provided: send it in the Authorization header, as 'Authorization: Bearer YOUR_KEY'.","type":"authentication_error","code":"missing_credentials"}}
	// 401 {"error":{"message":"API keys start with halfred_","type":"authentication_error","code":"invalid_token"}}
	// 401 {"error":{"message":"Invalid API key or token.","type":"authentication_error","code":"invalid_token"}}
	// 200 models for default
	// 200 models for default
	// 400 {"error":{"message":"The request carries two different credentials: send the credential in one header only.","type":"invalid_request_error","code":"invalid_request"}}
}

// Check scopes behind the Guard's middleware.
func ExampleRequireScopes() {
	guard, err := auth.New(keys)
	if err != nil {
		panic(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "key created")
	})
	h := guard.Middleware(auth.RequireScopes("keys:manage")(ok))

	do(h, "api-key", "halfred_reader")
	do(h, "api-key", "halfred_admin")
	// Output:
	// 403 {"error":{"message":"The credential lacks the scope this request needs: keys:manage.","type":"permission_error","code":"insufficient_scope"}}
	// 200 key created
}

// The Guard's own RequireScopes authenticates the request and checks its
// scopes in one step.
func ExampleGuard_RequireScopes() {
	guard, err := auth.New(keys, auth.WithRealm("Halfred API"))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/models", guard.RequireScopes("models:read")(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "models") })))

	r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	// Output:
	// 401 Bearer realm="Halfred API"
}

// Read the caller in a protected handler.
func ExampleFromContext() {
	guard, err := auth.New(keys)
	if err != nil {
		panic(err)
	}
	me := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			http.Error(w, "no principal", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s %s %v", p.Method, p.KeyID, p.Project, p.Scopes)
	})
	do(guard.Middleware(me), "Authorization", "bearer halfred_admin")
	// Output:
	// 200 api_key key_2 default [models:read keys:manage]
}

// Authenticate without middleware, from code that is not an HTTP handler
// chain (a WebSocket upgrade, a gRPC gateway, a custom router).
func ExampleGuard_Authenticate() {
	guard, err := auth.New(keys)
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Api-Key", "halfred_reader")
	p, err := guard.Authenticate(r)
	fmt.Println(p.KeyID, err)

	r.Header.Set("Api-Key", "halfred_nope")
	_, err = guard.Authenticate(r)
	fmt.Println(err)
	// Output:
	// key_1 <nil>
	// auth: invalid credential
}

// jwtAuth stands in for the token package: it recognises access tokens by
// their shape.
type jwtAuth struct{}

func (jwtAuth) Match(credential string) bool { return strings.Count(credential, ".") == 2 }

func (jwtAuth) Authenticate(ctx context.Context, credential string) (auth.Principal, error) {
	return auth.Principal{Method: auth.MethodAccessToken, KeyID: "key_1", TokenID: "tok_1"}, nil
}

// One Bearer header carries either an API key or an access token.
func ExampleDispatch() {
	a := auth.Dispatch(jwtAuth{}, keys)
	for _, cred := range []string{"eyJhbGciOiJFZERTQSJ9.e30.c2ln", "halfred_reader"} {
		p, err := a.Authenticate(context.Background(), cred)
		fmt.Println(p.Method, p.KeyID, err)
	}
	// Output:
	// access_token key_1 <nil>
	// api_key key_1 <nil>
}

// Answer a request with the Guard's error format from a handler, here for
// a rate limit.
func ExampleGuard_WriteError() {
	guard, err := auth.New(keys)
	if err != nil {
		panic(err)
	}
	w := httptest.NewRecorder()
	guard.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), &auth.Error{Kind: auth.ErrRateLimited, RetryAfter: 1500 * time.Millisecond})
	fmt.Println(w.Code, w.Header().Get("Retry-After"))
	// Output:
	// 429 2
}
