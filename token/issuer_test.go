package token_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/token"
)

// fxAPIPrincipal is an API-key principal as keystore's Manager returns it.
func fxAPIPrincipal() auth.Principal {
	return auth.Principal{
		Method:  auth.MethodAPIKey,
		KeyID:   "key_3kTMd9x0aH2bQe7L",
		Project: "proj-1",
		Scopes:  []string{"models:read", "chat:write", "tokens:issue"},
		Hint:    "halfred_…a1B2",
	}
}

// fxDecodeParts returns a token's header and claims as generic JSON.
func fxDecodeParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.Strict().DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func TestNewIssuerOptions(t *testing.T) {
	t.Parallel()
	k := fxKeys()
	tests := []struct {
		name   string
		iss    string
		signer token.SigningKey
		opts   []token.IssuerOption
		want   error
	}{
		{"defaults", fxIss, k.ed, nil, nil},
		{"each algorithm: ES256", fxIss, k.es, nil, nil},
		{"each algorithm: RS256", fxIss, k.rs, nil, nil},
		{"each algorithm: HS256", fxIss, k.hs, nil, nil},
		{"no name", "", k.ed, nil, token.ErrInvalidConfig},
		{"zero signing key", fxIss, token.SigningKey{}, nil, token.ErrInvalidConfig},
		{"signing key with a weak secret", fxIss, token.SigningKey{KID: "x", Alg: token.HS256, Key: []byte("short")}, nil, token.ErrWeakKey},
		{"signing key with a mismatched alg", fxIss, token.SigningKey{KID: "x", Alg: token.ES256, Key: k.ed.Key}, nil, token.ErrInvalidConfig},
		{"lifetime 1 h", fxIss, k.ed, []token.IssuerOption{token.WithLifetime(time.Hour)}, nil},
		{"lifetime over the max", fxIss, k.ed, []token.IssuerOption{token.WithLifetime(time.Hour + time.Second)}, token.ErrInvalidConfig},
		{"lifetime under the raised max", fxIss, k.ed, []token.IssuerOption{token.WithLifetime(2 * time.Hour), token.WithMaxLifetime(3 * time.Hour)}, nil},
		{"max after lifetime, order free", fxIss, k.ed, []token.IssuerOption{token.WithMaxLifetime(time.Minute), token.WithLifetime(2 * time.Minute)}, token.ErrInvalidConfig},
		{"lifetime under a second", fxIss, k.ed, []token.IssuerOption{token.WithLifetime(time.Millisecond)}, token.ErrInvalidConfig},
		{"zero max lifetime", fxIss, k.ed, []token.IssuerOption{token.WithMaxLifetime(0)}, token.ErrInvalidConfig},
		{"empty audience", fxIss, k.ed, []token.IssuerOption{token.WithAudience()}, token.ErrInvalidConfig},
		{"audience with an empty string", fxIss, k.ed, []token.IssuerOption{token.WithAudience("a", "")}, token.ErrInvalidConfig},
		{"previous key with the signer's kid", fxIss, k.ed, []token.IssuerOption{token.WithPreviousKeys(token.VerificationKey{KID: "ed-1", Alg: token.EdDSA, Key: k.ed2.Public().Key})}, token.ErrInvalidConfig},
		{"previous weak key", fxIss, k.ed, []token.IssuerOption{token.WithPreviousKeys(token.VerificationKey{KID: "old", Alg: token.HS256, Key: []byte("x")})}, token.ErrWeakKey},
		{"nil clock", fxIss, k.ed, []token.IssuerOption{token.WithIssuerClock(nil)}, token.ErrInvalidConfig},
		{"nil random", fxIss, k.ed, []token.IssuerOption{token.WithIssuerRandom(nil)}, token.ErrInvalidConfig},
		{"nil option", fxIss, k.ed, []token.IssuerOption{nil}, token.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			iss, err := token.NewIssuer(tc.iss, tc.signer, tc.opts...)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || iss == nil {
				t.Fatal(err)
			}
		})
	}
}

func TestIssuerIssue(t *testing.T) {
	t.Parallel()
	// A clock with a fraction of a second: times are whole seconds.
	now := fxNow.Add(700 * time.Millisecond)
	iss, err := token.NewIssuer(fxIss, fxKeys().ed, token.WithIssuerClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	tok, claims, err := iss.Issue(fxAPIPrincipal(), nil, "fam-1")
	if err != nil {
		t.Fatal(err)
	}
	header, raw := fxDecodeParts(t, tok)
	if fmt.Sprint(header) != "map[alg:EdDSA kid:ed-1 typ:at+jwt]" {
		t.Errorf("header = %v", header)
	}
	wantClaims := map[string]string{
		"iss":       fxIss,
		"aud":       "[" + fxIss + "]",
		"sub":       "key_3kTMd9x0aH2bQe7L",
		"client_id": "key_3kTMd9x0aH2bQe7L",
		"exp":       fmt.Sprint(fxNow.Add(token.DefaultLifetime).Unix()),
		"nbf":       fmt.Sprint(fxNow.Unix()),
		"iat":       fmt.Sprint(fxNow.Unix()),
		"scope":     "chat:write models:read tokens:issue",
		"project":   "proj-1",
		"sid":       "fam-1",
	}
	for name, want := range wantClaims {
		if got := fmt.Sprint(raw[name]); got != want {
			t.Errorf("claim %s = %s, want %s", name, got, want)
		}
	}
	jti, _ := raw["jti"].(string)
	if id, err := base64.RawURLEncoding.Strict().DecodeString(jti); err != nil || len(id) != 16 {
		t.Errorf("jti %q is not 128 bits of base64url", jti)
	}
	if len(raw) != len(wantClaims)+1 {
		t.Errorf("claims %v: unexpected members", raw)
	}
	if claims.ID != jti || claims.Subject != "key_3kTMd9x0aH2bQe7L" || claims.Session != "fam-1" || !claims.ExpiresAt.Equal(fxNow.Add(15*time.Minute)) {
		t.Errorf("returned claims %+v do not match the token", claims)
	}
	if iss.Lifetime() != token.DefaultLifetime || iss.Name() != fxIss || !slices.Equal(iss.Audience(), []string{fxIss}) {
		t.Errorf("accessors: %v %q %q", iss.Lifetime(), iss.Name(), iss.Audience())
	}
	// No session: no sid claim; no project: no project claim.
	p := fxAPIPrincipal()
	p.Project = ""
	tok, _, err = iss.Issue(p, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, raw := fxDecodeParts(t, tok); raw["sid"] != nil || raw["project"] != nil {
		t.Errorf("empty sid/project encoded: %v", raw)
	}
}

func TestIssuerScopes(t *testing.T) {
	t.Parallel()
	iss, err := token.NewIssuer(fxIss, fxKeys().hs, token.WithIssuerClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		requested []string
		scope     string
		missing   []string
	}{
		{"nil: all of the key's", nil, "chat:write models:read tokens:issue", nil},
		{"subset", []string{"models:read"}, "models:read", nil},
		{"subset, unsorted, duplicated", []string{"tokens:issue", "chat:write", "tokens:issue"}, "chat:write tokens:issue", nil},
		{"empty: none", []string{}, "", nil},
		{"one more than the key", []string{"models:read", "keys:manage"}, "", []string{"keys:manage"}},
		{"two more", []string{"admin", "keys:manage"}, "", []string{"admin", "keys:manage"}},
		{"case matters", []string{"Models:Read"}, "", []string{"Models:Read"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, claims, err := iss.Issue(fxAPIPrincipal(), tc.requested, "")
			if tc.missing != nil {
				var ae *auth.Error
				if !errors.As(err, &ae) || ae.Kind != auth.ErrInsufficientScope || !slices.Equal(ae.Scopes, tc.missing) {
					t.Fatalf("error %#v, want insufficient_scope for %q", err, tc.missing)
				}
				if !strings.Contains(ae.Message, tc.missing[0]) {
					t.Errorf("message %q does not name the scope", ae.Message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if claims.Scope != tc.scope {
				t.Fatalf("scope %q, want %q", claims.Scope, tc.scope)
			}
		})
	}
}

func TestIssuerPrincipalChecks(t *testing.T) {
	t.Parallel()
	iss, err := token.NewIssuer(fxIss, fxKeys().ed, token.WithIssuerClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	withExp := func(d time.Duration) auth.Principal {
		p := fxAPIPrincipal()
		p.ExpiresAt = fxNow.Add(d)
		return p
	}
	tests := []struct {
		name    string
		p       auth.Principal
		wantErr error
		wantExp time.Time
	}{
		{"key without expiry", fxAPIPrincipal(), nil, fxNow.Add(15 * time.Minute)},
		{"key expiring later", withExp(time.Hour), nil, fxNow.Add(15 * time.Minute)},
		{"key expiring sooner caps exp", withExp(5*time.Minute + 500*time.Millisecond), nil, fxNow.Add(5 * time.Minute)},
		{"key expiring within the second", withExp(500 * time.Millisecond), token.ErrKeyRevoked, time.Time{}},
		{"key expired", withExp(-time.Minute), token.ErrKeyRevoked, time.Time{}},
		{"access-token principal", auth.Principal{Method: auth.MethodAccessToken, KeyID: "key_1"}, token.ErrInvalidConfig, time.Time{}},
		{"API key without an ID", auth.Principal{Method: auth.MethodAPIKey}, token.ErrInvalidConfig, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, claims, err := iss.Issue(tc.p, nil, "")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !claims.ExpiresAt.Equal(tc.wantExp) {
				t.Fatalf("exp %v, want %v", claims.ExpiresAt, tc.wantExp)
			}
		})
	}
}

func TestIssuerUniqueTokenIDs(t *testing.T) {
	t.Parallel()
	iss, err := token.NewIssuer(fxIss, fxKeys().hs, token.WithIssuerClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 2000 {
		_, c, err := iss.Issue(fxAPIPrincipal(), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] {
			t.Fatalf("jti %s issued twice", c.ID)
		}
		seen[c.ID] = true
	}
	// A failing random source fails the issue, never a predictable jti.
	bad, err := token.NewIssuer(fxIss, fxKeys().hs, token.WithIssuerRandom(strings.NewReader("")))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bad.Issue(fxAPIPrincipal(), nil, ""); err == nil {
		t.Fatal("Issue succeeded without randomness")
	}
}

// TestIssuerRoundTrip: what each issuer signs, a verifier over its
// KeySet accepts, with the claims it returned.
func TestIssuerRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range fxAlgs {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			iss, err := token.NewIssuer(fxIss, fxKeyFor(alg), token.WithAudience(fxAud, "svc-2"), token.WithIssuerClock(fxClock),
				token.WithLifetime(5*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			v, err := token.NewVerifier(iss.KeySet(), token.WithExpectedIssuer(iss.Name()), token.WithExpectedAudience("svc-2"),
				token.WithAlgorithms(alg), token.WithVerifierClock(fxClock), token.WithKeyChecker(&fxKeyChecker{}))
			if err != nil {
				t.Fatal(err)
			}
			tok, want, err := iss.Issue(fxAPIPrincipal(), []string{"chat:write"}, "fam")
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != want.ID || got.Scope != "chat:write" || !slices.Equal(got.Audience, []string{fxAud, "svc-2"}) ||
				!got.ExpiresAt.Equal(fxNow.Add(5*time.Minute)) || got.Session != "fam" || got.ClientID != want.ClientID {
				t.Fatalf("claims %+v, issued %+v", got, want)
			}
			p, err := v.Authenticate(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if p.KeyID != "key_3kTMd9x0aH2bQe7L" || p.Project != "proj-1" || !slices.Equal(p.Scopes, []string{"chat:write"}) || p.Session != "fam" || p.TokenID != want.ID {
				t.Fatalf("principal %+v", p)
			}
		})
	}
}

func TestIssuerSharedMaxLifetime(t *testing.T) {
	t.Parallel()
	// One option value configures both sides.
	maxLife := token.WithMaxLifetime(2 * time.Hour)
	iss, err := token.NewIssuer(fxIss, fxKeys().ed, maxLife, token.WithLifetime(90*time.Minute), token.WithIssuerClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.Issue(fxAPIPrincipal(), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	strict, err := token.NewVerifier(iss.KeySet(), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxIss), token.WithVerifierClock(fxClock))
	if err != nil {
		t.Fatal(err)
	}
	_, err = strict.Verify(context.Background(), tok)
	fxIsInvalid(t, err, token.ErrLifetime)
	lenient, err := token.NewVerifier(iss.KeySet(), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxIss), token.WithVerifierClock(fxClock), maxLife)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lenient.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
}

func TestIssuerKeySetAndPrinting(t *testing.T) {
	t.Parallel()
	k := fxKeys()
	iss, err := token.NewIssuer(fxIss, k.hs, token.WithPreviousKeys(k.ed.Public(), k.hs2Public()))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(iss.KeySet().KIDs(), ","); got != "hs-1,ed-1,hs-old" {
		t.Fatalf("KeySet kids %s", got)
	}
	if iss.SigningKeyID() != "hs-1" {
		t.Errorf("SigningKeyID = %q", iss.SigningKeyID())
	}
	v, err := token.NewVerifier(iss.KeySet(), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxIss))
	if err != nil {
		t.Fatal(err)
	}
	type holder struct {
		iss *token.Issuer
		v   *token.Verifier
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, x := range []any{iss, v, holder{iss, v}, []any{iss, v}} {
			if out := fmt.Sprintf(f, x); strings.Contains(out, "0123456789abcdef") || strings.Contains(out, "48 49 50 51") ||
				strings.Contains(out, "3031323334") || strings.Contains(out, "older secret") {
				t.Errorf("%s of %T prints a secret: %s", f, x, out)
			}
		}
	}
	if got := iss.String(); got != `token.Issuer{Name:"https://auth.example.test" KID:"hs-1" Alg:"HS256"}` {
		t.Errorf("String = %s", got)
	}
}

// hs2Public is a second HS256 verification key, for rotation tests.
func (k *fxKeySet) hs2Public() token.VerificationKey {
	return token.VerificationKey{KID: "hs-old", Alg: token.HS256, Key: []byte("an older secret of 32 bytes....!")}
}
