package auth

import (
	"context"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/testalloc"
	"slices"
	"strings"
	"testing"
)

// namedAuth answers with a Principal whose KeyID is its name.
type namedAuth struct {
	name  string
	calls int
}

func (a *namedAuth) Authenticate(_ context.Context, cred string) (Principal, error) {
	a.calls++
	return Principal{KeyID: a.name, Subject: cred}, nil
}

// prefixMatcher is a namedAuth that claims credentials with its prefix.
type prefixMatcher struct {
	namedAuth
	prefix string
}

func (m *prefixMatcher) Match(cred string) bool { return strings.HasPrefix(cred, m.prefix) }

func TestDispatch(t *testing.T) {
	t.Parallel()
	newSet := func() (jwt, other *prefixMatcher, keys, keys2 *namedAuth) {
		return &prefixMatcher{namedAuth{name: "jwt"}, "eyJ"},
			&prefixMatcher{namedAuth{name: "other"}, "ot_"},
			&namedAuth{name: "keys"}, &namedAuth{name: "keys2"}
	}
	cases := []struct {
		name string
		list func(jwt, other *prefixMatcher, keys, keys2 *namedAuth) []Authenticator
		cred string
		want string // KeyID of the Authenticator that answers; "" for errUnrecognised
	}{
		{
			name: "matcher claims its credential",
			list: func(j, o *prefixMatcher, k, k2 *namedAuth) []Authenticator { return []Authenticator{k, j, o} },
			cred: "eyJhbGciOi.x.y", want: "jwt",
		},
		{
			name: "second matcher",
			list: func(j, o *prefixMatcher, k, k2 *namedAuth) []Authenticator { return []Authenticator{k, j, o} },
			cred: "ot_123", want: "other",
		},
		{
			name: "first matching matcher wins",
			list: func(j, o *prefixMatcher, k, k2 *namedAuth) []Authenticator {
				o.prefix = "eyJ"
				return []Authenticator{o, j, k}
			},
			cred: "eyJ.x.y", want: "other",
		},
		{
			name: "unmatched goes to the catch-all, wherever it is listed",
			list: func(j, o *prefixMatcher, k, k2 *namedAuth) []Authenticator { return []Authenticator{j, o, k} },
			cred: "halfred_abc", want: "keys",
		},
		{
			name: "first catch-all wins",
			list: func(j, o *prefixMatcher, k, k2 *namedAuth) []Authenticator { return []Authenticator{j, k2, k} },
			cred: "halfred_abc", want: "keys2",
		},
		{
			name: "no catch-all is invalid",
			list: func(j, o *prefixMatcher, k, k2 *namedAuth) []Authenticator { return []Authenticator{j, o} },
			cred: "halfred_abc", want: "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j, o, k, k2 := newSet()
			d := Dispatch(tc.list(j, o, k, k2)...)
			p, err := d.Authenticate(context.Background(), tc.cred)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalidCredential) {
					t.Fatalf("err = %v, want ErrInvalidCredential", err)
				}
				var e *Error
				if !errors.As(err, &e) || e.Message == "" || strings.Contains(e.Message, tc.cred) {
					t.Fatalf("err = %#v, want an *Error with a message that does not echo the credential", err)
				}
				return
			}
			if err != nil || p.KeyID != tc.want || p.Subject != tc.cred {
				t.Fatalf("Authenticate = %+v, %v; want %s to see %q", p, err, tc.want, tc.cred)
			}
			if total := j.calls + o.calls + k.calls + k2.calls; total != 1 {
				t.Fatalf("%d Authenticators called, want exactly one", total)
			}
		})
	}
}

func TestDispatchSingleIsUnwrapped(t *testing.T) {
	t.Parallel()
	a := &namedAuth{name: "only"}
	if got := Dispatch(a); got != Authenticator(a) {
		t.Fatalf("Dispatch(a) = %T, want a itself", got)
	}
	// A single Matcher is returned as is too: it sees every credential.
	m := &prefixMatcher{namedAuth{name: "m"}, "x"}
	if p, err := Dispatch(m).Authenticate(context.Background(), "y"); err != nil || p.KeyID != "m" {
		t.Fatalf("single Matcher: %+v, %v", p, err)
	}
}

func TestDispatchPanicsWithoutAuthenticators(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("Dispatch() did not panic")
		}
	}()
	Dispatch()
}

func TestAuthenticatorFunc(t *testing.T) {
	t.Parallel()
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, 1)
	f := AuthenticatorFunc(func(c context.Context, cred string) (Principal, error) {
		if c.Value(key{}) != 1 {
			t.Error("context not passed through")
		}
		return Principal{KeyID: cred}, ErrRateLimited
	})
	p, err := f.Authenticate(ctx, "abc")
	if p.KeyID != "abc" || err != ErrRateLimited {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
}

func TestHasScope(t *testing.T) {
	t.Parallel()
	p := &Principal{Scopes: []string{"models:read", "chat:write"}}
	cases := []struct {
		name  string
		p     *Principal
		scope string
		want  bool
	}{
		{"present", p, "chat:write", true},
		{"absent", p, "keys:manage", false},
		{"prefix of a scope is not the scope", p, "chat", false},
		{"empty scope", p, "", false},
		{"nil principal", nil, "chat:write", false},
		{"no scopes", &Principal{}, "chat:write", false},
	}
	for _, tc := range cases {
		if got := tc.p.HasScope(tc.scope); got != tc.want {
			t.Errorf("%s: HasScope(%q) = %v, want %v", tc.name, tc.scope, got, tc.want)
		}
	}
}

func TestMissingScopes(t *testing.T) {
	t.Parallel()
	p := &Principal{Scopes: []string{"models:read", "chat:write"}}
	cases := []struct {
		name     string
		p        *Principal
		required []string
		want     []string
	}{
		{"none required", p, nil, nil},
		{"all present", p, []string{"chat:write", "models:read"}, nil},
		{"some missing, in order given", p, []string{"tokens:issue", "chat:write", "keys:manage"}, []string{"tokens:issue", "keys:manage"}},
		{"nil principal lacks all", nil, []string{"a", "b"}, []string{"a", "b"}},
	}
	for _, tc := range cases {
		got := tc.p.MissingScopes(tc.required...)
		if !slices.Equal(got, tc.want) || (tc.want == nil && got != nil) {
			t.Errorf("%s: MissingScopes = %#v, want %#v", tc.name, got, tc.want)
		}
	}
}

func TestMissingScopesAllocs(t *testing.T) {
	p := &Principal{Scopes: []string{"models:read", "chat:write"}}
	if n := testalloc.Min(100, func() { p.MissingScopes("models:read", "chat:write") }); n != 0 {
		t.Errorf("MissingScopes allocates %v times when nothing is missing", n)
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	type otherKey struct{}
	parent := context.WithValue(context.Background(), otherKey{}, "parent value")

	if p, ok := FromContext(parent); ok || p != nil {
		t.Fatalf("FromContext(no principal) = %v, %v; want nil, false", p, ok)
	}
	if got := NewContext(parent, nil); got != parent {
		t.Fatal("NewContext(ctx, nil) did not return ctx")
	}

	orig := Principal{Method: MethodAccessToken, KeyID: "key_1", TokenID: "jti", Scopes: []string{"a"}}
	ctx := NewContext(parent, &orig)
	orig.KeyID = "changed" // NewContext stored a copy
	p, ok := FromContext(ctx)
	if !ok || p.KeyID != "key_1" || p.TokenID != "jti" || p.Method != MethodAccessToken {
		t.Fatalf("FromContext = %+v, %v; want the copy stored", p, ok)
	}
	if again, _ := FromContext(ctx); again != p {
		t.Error("FromContext returned different pointers for one context")
	}
	if ctx.Value(otherKey{}) != "parent value" {
		t.Error("other values of the parent are lost")
	}
	if ctx.Value("auth.principal") != nil || ctx.Value(struct{}{}) != nil {
		t.Error("principal readable with a key other than the package's own")
	}
	if s := fmt.Sprint(ctx); s != "auth.principalContext" || strings.Contains(s, "key_1") {
		t.Errorf("context prints as %q, want no principal details", s)
	}

	// An inner principal shadows an outer one.
	inner := NewContext(ctx, &Principal{KeyID: "key_2"})
	if p, _ := FromContext(inner); p.KeyID != "key_2" {
		t.Errorf("inner principal %q, want key_2", p.KeyID)
	}

	// Cancellation and deadlines pass through.
	cctx, cancel := context.WithCancel(context.Background())
	pctx := NewContext(cctx, &orig)
	cancel()
	if pctx.Err() != context.Canceled {
		t.Errorf("Err = %v, want Canceled", pctx.Err())
	}
}

var sinkCtx context.Context

// TestContextAllocs: attaching a Principal the Guard's table already
// shares costs one allocation (the context), and reading it none.
func TestContextAllocs(t *testing.T) {
	p := alice
	ctx := context.Background()
	table := newPrincipalTable()
	table.shared(&p)
	if n := testalloc.Min(100, func() { sinkCtx = &principalContext{Context: ctx, p: table.shared(&p)} }); n != 1 {
		t.Errorf("attaching a shared Principal allocates %v times, want 1", n)
	}
	c := NewContext(ctx, &p)
	if n := testalloc.Min(100, func() { _, _ = FromContext(c) }); n != 0 {
		t.Errorf("FromContext allocates %v times, want 0", n)
	}
}

func TestErrorText(t *testing.T) {
	t.Parallel()
	cause := errors.New("dial tcp: refused")
	cases := []struct {
		name string
		e    *Error
		want string
	}{
		{"empty", &Error{}, "auth: error"},
		{"kind only", &Error{Kind: ErrInvalidCredential}, "auth: invalid credential"},
		{"kind and message", &Error{Kind: ErrInvalidCredential, Message: "API keys start with halfred_"}, "auth: invalid credential: API keys start with halfred_"},
		{"kind, message and cause", &Error{Kind: ErrUnavailable, Message: "Try later.", Err: cause}, "auth: credential store unavailable: Try later.: dial tcp: refused"},
		{"kind and cause", &Error{Kind: ErrUnavailable, Err: cause}, "auth: credential store unavailable: dial tcp: refused"},
		{"cause only", &Error{Err: cause}, "auth: error: dial tcp: refused"},
	}
	for _, tc := range cases {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestErrorUnwrap(t *testing.T) {
	// Not parallel: testing.AllocsPerRun refuses to run in a parallel test.
	cause := errors.New("cause")
	cases := []struct {
		name   string
		e      *Error
		unwrap error
		is     []error
		isNot  []error
	}{
		{"empty", &Error{}, nil, nil, []error{ErrRateLimited, cause}},
		{"kind", &Error{Kind: ErrRateLimited}, nil, []error{ErrRateLimited}, []error{ErrUnavailable, cause}},
		{"cause", &Error{Err: cause}, cause, []error{cause}, []error{ErrRateLimited}},
		{"both", &Error{Kind: ErrRateLimited, Err: cause}, cause, []error{ErrRateLimited, cause}, []error{ErrUnavailable}},
		{"nil", nil, nil, nil, []error{ErrRateLimited}},
	}
	for _, tc := range cases {
		if got := tc.e.Unwrap(); got != tc.unwrap {
			t.Errorf("%s: Unwrap = %v, want %v", tc.name, got, tc.unwrap)
		}
		for _, target := range tc.is {
			if !errors.Is(tc.e, target) {
				t.Errorf("%s: errors.Is(%v) = false, want true", tc.name, target)
			}
		}
		for _, target := range tc.isNot {
			if tc.e != nil && errors.Is(tc.e, target) {
				t.Errorf("%s: errors.Is(%v) = true, want false", tc.name, target)
			}
		}
	}
	e := &Error{Kind: ErrInvalidCredential, Err: cause}
	if n := testalloc.Min(100, func() { _ = errors.Is(e, ErrInvalidCredential) && errors.Is(e, cause) }); n != 0 {
		t.Errorf("errors.Is on an *Error allocates %v times, want 0", n)
	}
}

func TestErrorIs(t *testing.T) {
	t.Parallel()
	cause := context.DeadlineExceeded
	e := &Error{Kind: ErrUnavailable, Err: fmt.Errorf("keystore: lookup: %w", cause)}
	wrapped := fmt.Errorf("outer: %w", e)
	for _, target := range []error{ErrUnavailable, cause} {
		if !errors.Is(e, target) || !errors.Is(wrapped, target) {
			t.Errorf("errors.Is(%v, %v) = false", e, target)
		}
	}
	for _, target := range []error{ErrInvalidCredential, ErrInternal, context.Canceled} {
		if errors.Is(wrapped, target) {
			t.Errorf("errors.Is(%v, %v) = true", wrapped, target)
		}
	}
	var got *Error
	if !errors.As(wrapped, &got) || got != e {
		t.Errorf("errors.As did not find the *Error")
	}
}

// TestSentinelsAreDistinct: each sentinel is its own class, with a
// package-prefixed lower-case message.
func TestSentinelsAreDistinct(t *testing.T) {
	t.Parallel()
	sentinels := []error{ErrNoCredentials, ErrInvalidCredential, ErrMalformedRequest, ErrInsufficientScope, ErrRateLimited, ErrUnavailable, ErrInternal}
	for i, a := range sentinels {
		if msg := a.Error(); !strings.HasPrefix(msg, "auth: ") || strings.ToLower(msg) != msg {
			t.Errorf("sentinel %q: want a lower-case message prefixed auth: ", msg)
		}
		for j, b := range sentinels {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}
