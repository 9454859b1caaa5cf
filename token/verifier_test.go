package token_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/token"
)

// Fixtures shared by the verifier, attack, fuzz and benchmark tests. Every
// helper is prefixed fx so that it cannot collide with the helpers of the
// other test files of this package.

const (
	fxIss = "https://auth.example.test"
	fxAud = "https://api.example.test"
)

// fxNow is the fixed time of every fixture: tokens are issued at it.
var fxNow = time.Unix(1_760_000_000, 0)

func fxClock() time.Time { return fxNow }

// fxKeySet holds one signing key per algorithm, made once per test binary
// (RSA key generation is slow, above all under -race), and an "attacker"
// Ed25519 key that no verifier trusts.
type fxKeySet struct {
	ed, es, rs, hs, ed2 token.SigningKey
	attacker            token.SigningKey
}

var fxKeysOnce = sync.OnceValue(func() *fxKeySet {
	must := func(k token.SigningKey, err error) token.SigningKey {
		if err != nil {
			panic(err)
		}
		return k
	}
	seed := func(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return &fxKeySet{
		ed:       must(token.NewSigningKey("ed-1", seed(1))),
		ed2:      must(token.NewSigningKey("ed-2", seed(2))),
		es:       must(token.NewSigningKey("es-1", ec)),
		rs:       must(token.NewSigningKey("rs-1", rk)),
		hs:       must(token.NewSigningKey("hs-1", []byte("0123456789abcdef0123456789abcdef"))),
		attacker: must(token.NewSigningKey("attacker", seed(9))),
	}
})

func fxKeys() *fxKeySet { return fxKeysOnce() }

// fxKeyFor returns the fixture key of alg.
func fxKeyFor(alg string) token.SigningKey {
	k := fxKeys()
	switch alg {
	case token.EdDSA:
		return k.ed
	case token.ES256:
		return k.es
	case token.RS256:
		return k.rs
	case token.HS256:
		return k.hs
	}
	panic("no fixture key for " + alg)
}

var fxAlgs = []string{token.EdDSA, token.ES256, token.RS256, token.HS256}

// fxTrusted is the KeySet of every fixture key but the attacker's.
func fxTrusted(tb testing.TB) *token.KeySet {
	tb.Helper()
	k := fxKeys()
	ks, err := token.NewKeySet(k.ed.Public(), k.ed2.Public(), k.es.Public(), k.rs.Public(), k.hs.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return ks
}

// fxRevocations is a map-based Revocations that can be made to fail.
type fxRevocations struct {
	mu      sync.Mutex
	revoked map[string]bool
	err     error
	calls   atomic.Int64
}

func (r *fxRevocations) Revoke(_ context.Context, id string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revoked == nil {
		r.revoked = map[string]bool{}
	}
	r.revoked[id] = true
	return nil
}

func (r *fxRevocations) IsRevoked(_ context.Context, id string) (bool, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revoked[id], r.err
}

func (r *fxRevocations) fail(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

// fxKeyChecker is a KeyChecker with a map of bad keys.
type fxKeyChecker struct {
	mu    sync.Mutex
	bad   map[string]error
	calls atomic.Int64
}

func (c *fxKeyChecker) CheckKey(_ context.Context, id string) error {
	c.calls.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad[id]
}

func (c *fxKeyChecker) set(id string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bad == nil {
		c.bad = map[string]error{}
	}
	c.bad[id] = err
}

// fxVerifier returns a Verifier over every fixture key, with all four
// algorithms allowed, the fixture clock, and opts.
func fxVerifier(tb testing.TB, opts ...token.VerifierOption) *token.Verifier {
	tb.Helper()
	base := []token.VerifierOption{
		token.WithExpectedIssuer(fxIss),
		token.WithExpectedAudience(fxAud),
		token.WithAlgorithms(fxAlgs...),
		token.WithVerifierClock(fxClock),
	}
	v, err := token.NewVerifier(fxTrusted(tb), append(base, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// fxMember is one member of a JSON object, its value raw JSON.
type fxMember struct{ name, raw string }

// fxObject renders members and then extra raw members (for duplicates).
func fxObject(members []fxMember, extra ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(fxq(m.name) + ":" + m.raw)
	}
	for _, x := range extra {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	b.WriteByte('}')
	return b.String()
}

// fxEdit applies edits to members: "-name" drops a member, "name=raw"
// sets one (appending it if absent), and "+raw" appends the raw text of a
// member verbatim, for duplicates and case variants.
func fxEdit(members []fxMember, edits []string) string {
	members = slices.Clone(members)
	var extra []string
	for _, e := range edits {
		switch {
		case strings.HasPrefix(e, "-"):
			members = slices.DeleteFunc(members, func(m fxMember) bool { return m.name == e[1:] })
		case strings.HasPrefix(e, "+"):
			extra = append(extra, e[1:])
		default:
			name, raw, ok := strings.Cut(e, "=")
			if !ok {
				panic("bad edit " + e)
			}
			i := slices.IndexFunc(members, func(m fxMember) bool { return m.name == name })
			if i < 0 {
				members = append(members, fxMember{name, raw})
			} else {
				members[i].raw = raw
			}
		}
	}
	return fxObject(members, extra...)
}

// fxq quotes s as a JSON string.
func fxq(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func fxUnix(d time.Duration) string { return fmt.Sprint(fxNow.Add(d).Unix()) }

// fxHeader returns the header of a token signed by k, edited.
func fxHeader(k token.SigningKey, edits ...string) string {
	return fxEdit([]fxMember{{"alg", fxq(k.Alg)}, {"kid", fxq(k.KID)}, {"typ", `"at+jwt"`}}, edits)
}

// fxClaims returns valid claims, edited.
func fxClaims(edits ...string) string {
	return fxEdit([]fxMember{
		{"iss", fxq(fxIss)},
		{"sub", `"key_1"`},
		{"aud", fxq(fxAud)},
		{"exp", fxUnix(10 * time.Minute)},
		{"nbf", fxUnix(0)},
		{"iat", fxUnix(0)},
		{"jti", `"jti-1"`},
		{"client_id", `"key_1"`},
		{"scope", `"chat:write models:read"`},
		{"project", `"p1"`},
		{"sid", `"s1"`},
	}, edits)
}

func fxB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// fxSign signs header and claims (raw JSON) with key, the way any JOSE
// library would, with golang-jwt's signing method for alg.
func fxSign(tb testing.TB, alg string, key any, header, claims string) string {
	tb.Helper()
	input := fxB64(header) + "." + fxB64(claims)
	sig, err := jwt.GetSigningMethod(alg).Sign(input, key)
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// fxToken is a token signed by k with its header and claims edited.
func fxToken(tb testing.TB, k token.SigningKey, headerEdits []string, claimEdits ...string) string {
	tb.Helper()
	return fxSign(tb, k.Alg, k.Key, fxHeader(k, headerEdits...), fxClaims(claimEdits...))
}

// fxIsInvalid checks that err is a 401 with cause want and no message.
func fxIsInvalid(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Kind != auth.ErrInvalidCredential || ae.Message != "" {
		t.Fatalf("error = %#v, want an *auth.Error of kind ErrInvalidCredential without a message", err)
	}
}

func TestVerifierAcceptsEachAlgorithm(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	for _, alg := range fxAlgs {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			tok := fxToken(t, fxKeyFor(alg), nil)
			c, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != "key_1" || c.Issuer != fxIss || c.ID != "jti-1" || c.Scope != "chat:write models:read" ||
				c.ClientID != "key_1" || c.Project != "p1" || c.Session != "s1" {
				t.Errorf("claims = %+v", c)
			}
			if !slices.Equal(c.Audience, []string{fxAud}) {
				t.Errorf("aud = %q", c.Audience)
			}
			if !c.ExpiresAt.Equal(fxNow.Add(10*time.Minute)) || !c.IssuedAt.Equal(fxNow) || !c.NotBefore.Equal(fxNow) {
				t.Errorf("times = %v %v %v", c.ExpiresAt, c.IssuedAt, c.NotBefore)
			}
		})
	}
}

func TestVerifierDefaultAlgorithms(t *testing.T) {
	t.Parallel()
	v, err := token.NewVerifier(fxTrusted(t), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud),
		token.WithVerifierClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg  string
		want error
	}{
		{token.EdDSA, nil},
		{token.ES256, nil},
		{token.RS256, nil},
		{token.HS256, token.ErrAlgorithm}, // only when listed
	} {
		t.Run(tc.alg, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), fxToken(t, fxKeyFor(tc.alg), nil))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			fxIsInvalid(t, err, tc.want)
		})
	}
}

func TestVerifierOptions(t *testing.T) {
	t.Parallel()
	ks := fxTrusted(t)
	req := []token.VerifierOption{token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud)}
	tests := []struct {
		name string
		keys token.KeySource
		opts []token.VerifierOption
		ok   bool
	}{
		{"defaults", ks, req, true},
		{"nil key source", nil, req, false},
		{"no issuer", ks, []token.VerifierOption{token.WithExpectedAudience(fxAud)}, false},
		{"no audience", ks, []token.VerifierOption{token.WithExpectedIssuer(fxIss)}, false},
		{"empty issuer", ks, []token.VerifierOption{token.WithExpectedIssuer(""), token.WithExpectedAudience(fxAud)}, false},
		{"empty audience", ks, []token.VerifierOption{token.WithExpectedIssuer(fxIss), token.WithExpectedAudience()}, false},
		{"leeway 0", ks, append(req, token.WithLeeway(0)), true},
		{"leeway 60s", ks, append(req, token.WithLeeway(time.Minute)), true},
		{"leeway 61s", ks, append(req, token.WithLeeway(61*time.Second)), false},
		{"negative leeway", ks, append(req, token.WithLeeway(-time.Second)), false},
		{"algorithm none", ks, append(req, token.WithAlgorithms("none")), false},
		{"algorithm HS512", ks, append(req, token.WithAlgorithms(token.EdDSA, "HS512")), false},
		{"no algorithms", ks, append(req, token.WithAlgorithms()), false},
		{"max lifetime 0", ks, append(req, token.WithMaxLifetime(0)), false},
		{"max token size 100", ks, append(req, token.WithMaxTokenSize(100)), false},
		{"max token size 64 KiB", ks, append(req, token.WithMaxTokenSize(64<<10)), true},
		{"cache off", ks, append(req, token.WithCache(0)), true},
		{"negative cache", ks, append(req, token.WithCache(-1)), false},
		{"nil revocations", ks, append(req, token.WithRevocations(nil)), false},
		{"nil key checker", ks, append(req, token.WithKeyChecker(nil)), false},
		{"nil clock", ks, append(req, token.WithVerifierClock(nil)), false},
		{"empty method", ks, append(req, token.WithMethod("")), false},
		{"typ off", ks, append(req, token.WithTokenType("")), true},
		{"typ with space", ks, append(req, token.WithTokenType("at jwt")), false},
		{"nil option", ks, append(req, nil), false},
		{"external tokens", ks, append(req, token.WithExternalTokens()), true},
		{"external tokens with a key checker", ks, append(req, token.WithExternalTokens(), token.WithKeyChecker(&fxKeyChecker{})), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := token.NewVerifier(tc.keys, tc.opts...)
			if tc.ok != (err == nil) {
				t.Fatalf("NewVerifier: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, token.ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			if err == nil && v == nil {
				t.Fatal("nil Verifier")
			}
		})
	}
}

func TestVerifierAuthenticatePrincipal(t *testing.T) {
	t.Parallel()
	kc := &fxKeyChecker{}
	tok := fxToken(t, fxKeys().ed, nil)
	tests := []struct {
		name string
		opts []token.VerifierOption
		want auth.Principal
	}{
		{"own tokens", []token.VerifierOption{token.WithKeyChecker(kc)}, auth.Principal{
			Method: auth.MethodAccessToken, KeyID: "key_1", Subject: "key_1", Project: "p1",
			Scopes: []string{"chat:write", "models:read"}, ExpiresAt: fxNow.Add(10 * time.Minute),
			TokenID: "jti-1", Session: "s1", Hint: "…" + tok[len(tok)-4:],
		}},
		{"no key checker: no KeyID", nil, auth.Principal{
			Method: auth.MethodAccessToken, Subject: "key_1", Project: "p1",
			Scopes: []string{"chat:write", "models:read"}, ExpiresAt: fxNow.Add(10 * time.Minute),
			TokenID: "jti-1", Session: "s1", Hint: "…" + tok[len(tok)-4:],
		}},
		{"external tokens: no project or session", []token.VerifierOption{token.WithExternalTokens()}, auth.Principal{
			Method: auth.MethodAccessToken, Subject: "key_1",
			Scopes: []string{"chat:write", "models:read"}, ExpiresAt: fxNow.Add(10 * time.Minute),
			TokenID: "jti-1", Hint: "…" + tok[len(tok)-4:],
		}},
		{"method", []token.VerifierOption{token.WithMethod("external_token")}, auth.Principal{
			Method: "external_token", Subject: "key_1", Project: "p1",
			Scopes: []string{"chat:write", "models:read"}, ExpiresAt: fxNow.Add(10 * time.Minute),
			TokenID: "jti-1", Session: "s1", Hint: "…" + tok[len(tok)-4:],
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := fxVerifier(t, tc.opts...)
			for range 2 { // a miss, then a cache hit
				p, err := v.Authenticate(context.Background(), tok)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(p) != fmt.Sprint(tc.want) || !p.ExpiresAt.Equal(tc.want.ExpiresAt) {
					t.Fatalf("principal\n got %+v\nwant %+v", p, tc.want)
				}
				if strings.Contains(p.Hint, tok[:20]) {
					t.Fatal("hint reveals the token")
				}
			}
		})
	}
}

func TestVerifierMatch(t *testing.T) { // not parallel: AllocsPerRun
	v := fxVerifier(t)
	tok := fxToken(t, fxKeys().ed, nil)
	tests := []struct {
		cred string
		want bool
	}{
		{tok, true},
		{"eyJ.a.b", true},
		{"halfred_0123456789abcdefghijklmnopqr", false},
		{"eyJhbGciOiJub25lIn0.e30", false},
		{"eyJ.a.b.c", false},
		{"abc.def.ghi", false},
		{"", false},
		{"eyJ", false},
	}
	for _, tc := range tests {
		if got := v.Match(tc.cred); got != tc.want {
			t.Errorf("Match(%.20q) = %v, want %v", tc.cred, got, tc.want)
		}
	}
	if n := testalloc.Min(100, func() { v.Match(tok) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

func TestVerifierTimeChecks(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t) // leeway 30 s, max lifetime 1 h
	k := fxKeys().ed
	tests := []struct {
		name   string
		claims []string
		want   error
	}{
		{"valid", nil, nil},
		{"exp missing", []string{"-exp"}, token.ErrExpired},
		{"expired beyond leeway", []string{"exp=" + fxUnix(-31*time.Second), "iat=" + fxUnix(-time.Minute), "nbf=" + fxUnix(-time.Minute)}, token.ErrExpired},
		{"expired exactly at the leeway", []string{"exp=" + fxUnix(-30*time.Second), "iat=" + fxUnix(-time.Minute), "-nbf"}, token.ErrExpired},
		{"expired within leeway", []string{"exp=" + fxUnix(-29*time.Second), "iat=" + fxUnix(-time.Minute), "-nbf"}, nil},
		{"nbf beyond leeway", []string{"nbf=" + fxUnix(31*time.Second)}, token.ErrNotYetValid},
		{"nbf within leeway", []string{"nbf=" + fxUnix(30*time.Second)}, nil},
		{"iat beyond leeway", []string{"iat=" + fxUnix(31*time.Second)}, token.ErrNotYetValid},
		{"iat within leeway", []string{"iat=" + fxUnix(29*time.Second)}, nil},
		{"lifetime at the maximum", []string{"exp=" + fxUnix(time.Hour)}, nil},
		{"lifetime over the maximum", []string{"exp=" + fxUnix(time.Hour+time.Second)}, token.ErrLifetime},
		{"old iat makes the lifetime too long", []string{"iat=" + fxUnix(-2*time.Hour)}, token.ErrLifetime},
		{"no iat: exp too far from now", []string{"-iat", "exp=" + fxUnix(2*time.Hour)}, token.ErrLifetime},
		{"no iat, no nbf", []string{"-iat", "-nbf"}, nil},
		{"fractional exp", []string{"exp=" + fxUnix(time.Minute) + ".5"}, nil},
		{"exponent exp", []string{"exp=1.760000300e9"}, nil},
		{"exp 1.5e9 is long past", []string{"exp=1.5e9", "-iat", "-nbf"}, token.ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), fxToken(t, k, nil, tc.claims...))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			fxIsInvalid(t, err, tc.want)
		})
	}
}

func TestVerifierIssuerAndAudience(t *testing.T) {
	t.Parallel()
	k := fxKeys().ed
	multi := fxVerifier(t, token.WithExpectedIssuer("https://other.example.test"), token.WithExpectedAudience("svc-2"))
	single := fxVerifier(t)
	tests := []struct {
		name   string
		v      *token.Verifier
		claims []string
		want   error
	}{
		{"aud string", single, nil, nil},
		{"aud array with it", single, []string{`aud=["x",` + fxq(fxAud) + `]`}, nil},
		{"aud array without it", single, []string{`aud=["x","y"]`}, token.ErrAudience},
		{"aud empty array", single, []string{`aud=[]`}, token.ErrAudience},
		{"aud missing", single, []string{"-aud"}, token.ErrAudience},
		{"aud other", single, []string{`aud="https://evil.example.test"`}, token.ErrAudience},
		{"aud case", single, []string{"aud=" + fxq(strings.ToUpper(fxAud))}, token.ErrAudience},
		{"aud prefix", single, []string{"aud=" + fxq(fxAud+".evil")}, token.ErrAudience},
		{"aud number", single, []string{"aud=1"}, token.ErrMalformed},
		{"aud array of numbers", single, []string{"aud=[1]"}, token.ErrMalformed},
		{"aud nested array", single, []string{"aud=[[" + fxq(fxAud) + "]]"}, token.ErrMalformed},
		{"aud null", single, []string{"aud=null"}, token.ErrMalformed},
		{"iss other", single, []string{`iss="https://evil.example.test"`}, token.ErrIssuer},
		{"iss missing", single, []string{"-iss"}, token.ErrIssuer},
		{"iss case", single, []string{"iss=" + fxq(strings.ToUpper(fxIss))}, token.ErrIssuer},
		{"iss trailing slash", single, []string{"iss=" + fxq(fxIss+"/")}, token.ErrIssuer},
		{"iss array", single, []string{"iss=[" + fxq(fxIss) + "]"}, token.ErrMalformed},
		{"iss number", single, []string{"iss=1"}, token.ErrMalformed},
		{"second issuer", multi, []string{`iss="https://other.example.test"`}, nil},
		{"second audience", multi, []string{`aud=["svc-2"]`}, nil},
		{"escaped slashes are the same string", single, []string{"iss=" + strings.ReplaceAll(fxq(fxIss), "/", `\/`)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.v.Verify(context.Background(), fxToken(t, k, nil, tc.claims...))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			fxIsInvalid(t, err, tc.want)
		})
	}
}

func TestVerifierTokenType(t *testing.T) {
	t.Parallel()
	k := fxKeys().ed
	strict := fxVerifier(t)
	custom := fxVerifier(t, token.WithTokenType("rt+jwt"))
	off := fxVerifier(t, token.WithTokenType(""))
	tests := []struct {
		name   string
		v      *token.Verifier
		header []string
		want   error
	}{
		{"at+jwt", strict, nil, nil},
		{"application/at+jwt", strict, []string{`typ="application/at+jwt"`}, nil},
		{"AT+JWT", strict, []string{`typ="AT+JWT"`}, nil},
		{"Application/At+Jwt", strict, []string{`typ="Application/At+Jwt"`}, nil},
		{"JWT (an ID token)", strict, []string{`typ="JWT"`}, token.ErrHeader},
		{"no typ (an ID token)", strict, []string{"-typ"}, token.ErrHeader},
		{"refresh token", strict, []string{`typ="rt+jwt"`}, token.ErrHeader},
		{"logout token", strict, []string{`typ="logout+jwt"`}, token.ErrHeader},
		{"at+jwt with a suffix", strict, []string{`typ="at+jwt; x=1"`}, token.ErrHeader},
		{"empty typ", strict, []string{`typ=""`}, token.ErrHeader},
		{"typ number", strict, []string{`typ=1`}, token.ErrMalformed},
		{"custom type", custom, []string{`typ="rt+jwt"`}, nil},
		{"custom type refuses at+jwt", custom, nil, token.ErrHeader},
		{"check off: none", off, []string{"-typ"}, nil},
		{"check off: JWT", off, []string{`typ="JWT"`}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.v.Verify(context.Background(), fxToken(t, k, tc.header))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			fxIsInvalid(t, err, tc.want)
		})
	}
}

func TestVerifierRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cache := range []int{0, token.DefaultCacheSize} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			t.Parallel()
			rev := &fxRevocations{}
			v := fxVerifier(t, token.WithRevocations(rev), token.WithCache(cache))
			k := fxKeys().ed
			a := fxToken(t, k, nil, `jti="a"`, `sid="s-a"`)
			b := fxToken(t, k, nil, `jti="b"`, `sid="s-b"`)
			c := fxToken(t, k, nil, `jti="c"`, `sid="s-b"`)
			noSID := fxToken(t, k, nil, `jti="d"`, "-sid")
			for _, tok := range []string{a, b, c, noSID} {
				if _, err := v.Authenticate(ctx, tok); err != nil {
					t.Fatalf("before revocation: %v", err)
				}
			}
			_ = rev.Revoke(ctx, "a", time.Time{})
			_, err := v.Authenticate(ctx, a)
			fxIsInvalid(t, err, token.ErrRevoked)
			// Revoking a session kills every token of it.
			_ = rev.Revoke(ctx, "sid:s-b", time.Time{})
			for _, tok := range []string{b, c} {
				_, err := v.Authenticate(ctx, tok)
				fxIsInvalid(t, err, token.ErrRevoked)
			}
			if _, err := v.Authenticate(ctx, noSID); err != nil {
				t.Fatalf("unrelated token: %v", err)
			}
			// A back-end failure is 503, never "valid" and never "invalid".
			rev.fail(errors.New("redis down"))
			_, err = v.Authenticate(ctx, noSID)
			if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidCredential) {
				t.Fatalf("failing Revocations: %v, want ErrUnavailable", err)
			}
			// A token without jti cannot be revoked, so it is refused.
			rev.fail(nil)
			_, err = v.Verify(ctx, fxToken(t, k, nil, "-jti"))
			fxIsInvalid(t, err, token.ErrMalformed)
		})
	}
}

func TestVerifierKeyChecker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cache := range []int{0, token.DefaultCacheSize} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) {
			t.Parallel()
			kc := &fxKeyChecker{}
			v := fxVerifier(t, token.WithKeyChecker(kc), token.WithCache(cache))
			tok := fxToken(t, fxKeys().ed, nil)
			if _, err := v.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
			// Revoking the API key kills the token on the next request.
			kc.set("key_1", &auth.Error{Kind: auth.ErrInvalidCredential, Err: errors.New("keystore: API key revoked")})
			_, err := v.Authenticate(ctx, tok)
			fxIsInvalid(t, err, token.ErrKeyRevoked)
			// A store failure is 503.
			kc.set("key_1", &auth.Error{Kind: auth.ErrUnavailable, Err: errors.New("db down")})
			_, err = v.Authenticate(ctx, tok)
			if !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("failing KeyChecker: %v", err)
			}
			kc.set("key_1", errors.New("plain error"))
			_, err = v.Authenticate(ctx, tok)
			if !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("KeyChecker with a plain error: %v", err)
			}
			kc.set("key_1", nil)
			if _, err := v.Authenticate(ctx, tok); err != nil {
				t.Fatalf("key good again: %v", err)
			}
			// With a KeyChecker, a token must name its API key.
			_, err = v.Verify(ctx, fxToken(t, fxKeys().ed, nil, "-client_id"))
			fxIsInvalid(t, err, token.ErrMalformed)
		})
	}
}

// fxFailingKeys is a KeySource that fails.
type fxFailingKeys struct{ err error }

func (f fxFailingKeys) VerificationKey(context.Context, string) (token.VerificationKey, error) {
	return token.VerificationKey{}, f.err
}

func TestVerifierKeySourceFailures(t *testing.T) {
	t.Parallel()
	tok := fxToken(t, fxKeys().ed, nil)
	pub := fxKeys().ed.Public()
	tests := []struct {
		name    string
		keys    token.KeySource
		invalid error // nil: unavailable
	}{
		{"back end failure", fxFailingKeys{errors.New("jwks fetch failed")}, nil},
		{"unknown kid, wrapped", fxFailingKeys{fmt.Errorf("remote: %w", token.ErrUnknownKID)}, token.ErrUnknownKID},
		{"source returns a key of the wrong type", fxStaticKeys{token.VerificationKey{KID: "ed-1", Alg: token.EdDSA, Key: []byte("not a key")}}, nil},
		{"source returns a key of another algorithm", fxStaticKeys{token.VerificationKey{KID: "ed-1", Alg: token.ES256, Key: pub.Key}}, token.ErrAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := token.NewVerifier(tc.keys, token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud), token.WithVerifierClock(fxClock))
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Authenticate(context.Background(), tok)
			if tc.invalid != nil {
				fxIsInvalid(t, err, tc.invalid)
				return
			}
			if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidCredential) {
				t.Fatalf("error = %v, want ErrUnavailable only", err)
			}
		})
	}
}

// fxStaticKeys is a KeySource that returns one key for every kid.
type fxStaticKeys struct{ k token.VerificationKey }

func (s fxStaticKeys) VerificationKey(context.Context, string) (token.VerificationKey, error) {
	return s.k, nil
}

// TestVerifierRotation: tokens signed by a previous key keep verifying
// while the key is listed, and stop once it is dropped.
func TestVerifierRotation(t *testing.T) {
	t.Parallel()
	k := fxKeys()
	p := auth.Principal{Method: auth.MethodAPIKey, KeyID: "key_1", Scopes: []string{"a"}}
	oldIss, err := token.NewIssuer(fxIss, k.ed, token.WithAudience(fxAud), token.WithIssuerClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	oldTok, _, err := oldIss.Issue(p, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	newIss, err := token.NewIssuer(fxIss, k.ed2, token.WithAudience(fxAud), token.WithIssuerClock(fxClock), token.WithPreviousKeys(k.ed.Public()))
	if err != nil {
		t.Fatal(err)
	}
	newTok, _, err := newIss.Issue(p, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	during, err := token.NewVerifier(newIss.KeySet(), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud), token.WithVerifierClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{oldTok, newTok} {
		if _, err := during.Verify(context.Background(), tok); err != nil {
			t.Fatalf("during rotation: %v", err)
		}
	}
	afterIss, err := token.NewIssuer(fxIss, k.ed2, token.WithAudience(fxAud), token.WithIssuerClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	after, err := token.NewVerifier(afterIss.KeySet(), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud), token.WithVerifierClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := after.Verify(context.Background(), newTok); err != nil {
		t.Fatalf("new token after rotation: %v", err)
	}
	_, err = after.Verify(context.Background(), oldTok)
	fxIsInvalid(t, err, token.ErrUnknownKID)
}

// TestVerifierWithGuard runs tokens through the auth middleware, beside an
// API-key authenticator under auth.Dispatch.
func TestVerifierWithGuard(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	apiKeys := auth.AuthenticatorFunc(func(_ context.Context, cred string) (auth.Principal, error) {
		if cred == "halfred_good" {
			return auth.Principal{Method: auth.MethodAPIKey, KeyID: "key_1"}, nil
		}
		return auth.Principal{}, &auth.Error{Kind: auth.ErrInvalidCredential, Message: "API keys start with halfred_"}
	})
	g, err := auth.New(auth.Dispatch(v, apiKeys))
	if err != nil {
		t.Fatal(err)
	}
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		fmt.Fprintf(w, "%s %s %s", p.Method, p.KeyID, strings.Join(p.Scopes, ","))
	}))
	tests := []struct {
		name, cred string
		status     int
		body       string
	}{
		{"access token", fxToken(t, fxKeys().ed, nil), 200, "access_token  chat:write,models:read"},
		{"API key", "halfred_good", 200, "api_key key_1 "},
		{"expired token", fxToken(t, fxKeys().ed, nil, "exp="+fxUnix(-time.Hour), "iat="+fxUnix(-2*time.Hour), "-nbf"), 401, ""},
		{"bad API key", "halfred_bad", 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/v1/me", nil)
			r.Header.Set("Authorization", "Bearer "+tc.cred)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 200 && w.Body.String() != tc.body {
				t.Errorf("body %q, want %q", w.Body, tc.body)
			}
			if tc.status == 401 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", w.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

// TestVerifierConcurrent hammers one Verifier (and its cache) from many
// goroutines, for the race detector.
func TestVerifierConcurrent(t *testing.T) {
	t.Parallel()
	rev := &fxRevocations{}
	v := fxVerifier(t, token.WithRevocations(rev), token.WithCache(64))
	k := fxKeys().hs
	var toks []string
	for i := range 100 {
		toks = append(toks, fxToken(t, k, nil, fmt.Sprintf(`jti="j%d"`, i)))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				tok := toks[(i*7+g)%len(toks)]
				if _, err := v.Authenticate(context.Background(), tok); err != nil && !errors.Is(err, token.ErrRevoked) {
					t.Error(err)
					return
				}
				if i == 200 && g == 0 {
					_ = rev.Revoke(context.Background(), "j3", time.Time{})
				}
			}
		}()
	}
	wg.Wait()
	_, err := v.Authenticate(context.Background(), toks[3])
	fxIsInvalid(t, err, token.ErrRevoked)
}

func TestZeroValues(t *testing.T) {
	t.Parallel()
	var v token.Verifier
	tok := fxToken(t, fxKeys().ed, nil)
	for _, cred := range []string{"", tok} {
		if _, err := v.Authenticate(context.Background(), cred); !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("zero Verifier: %v", err)
		}
		if _, err := v.Verify(context.Background(), cred); !errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("zero Verifier: %v", err)
		}
	}
	var iss token.Issuer
	if _, _, err := iss.Issue(fxAPIPrincipal(), nil, ""); !errors.Is(err, token.ErrInvalidConfig) {
		t.Errorf("zero Issuer: %v", err)
	}
	var ks token.KeySet
	if _, err := ks.VerificationKey(context.Background(), "ed-1"); !errors.Is(err, token.ErrUnknownKID) {
		t.Errorf("zero KeySet: %v", err)
	}
	if string(ks.JWKS()) != `{"keys":[]}` {
		t.Errorf("zero KeySet JWKS: %s", ks.JWKS())
	}
}

// TestVerifierExternalTokensIgnoreSession: an external provider's sid is
// not one of this service's sessions, so revoking a session of ours with
// the same ID does not touch the provider's tokens, while this service's
// own tokens of that session fail.
func TestVerifierExternalTokensIgnoreSession(t *testing.T) {
	t.Parallel()
	revs := token.NewMemoryRevocations(token.WithRevocationsClock(func() time.Time { return fxNow }))
	if err := revs.Revoke(context.Background(), token.SessionRevocationPrefix+"s1", fxNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	tok := fxToken(t, fxKeys().ed, nil) // sid "s1"
	own := fxVerifier(t, token.WithRevocations(revs))
	if _, err := own.Verify(context.Background(), tok); !errors.Is(err, token.ErrRevoked) {
		t.Fatalf("own token of a revoked session: %v, want ErrRevoked", err)
	}
	external := fxVerifier(t, token.WithRevocations(revs), token.WithExternalTokens())
	if _, err := external.Verify(context.Background(), tok); err != nil {
		t.Fatalf("external token whose sid happens to match a revoked session of ours: %v", err)
	}
}
