package token_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/token"
)

// fxSentinels are the verification failures of the token package.
var fxSentinels = []error{
	token.ErrMalformed, token.ErrTooLarge, token.ErrAlgorithm, token.ErrUnknownKID, token.ErrSignature,
	token.ErrHeader, token.ErrDuplicateClaim, token.ErrExpired, token.ErrNotYetValid, token.ErrLifetime,
	token.ErrIssuer, token.ErrAudience, token.ErrRevoked, token.ErrKeyRevoked,
}

// FuzzVerify feeds the Verifier arbitrary tokens. Each input is verified
// as it is, and re-signed (its first two parts, whatever they hold) with a
// trusted EdDSA and HS256 key, so that mutations reach the claims parser
// past the signature. It checks that nothing panics, that every failure is
// an invalid-credential error matching a token sentinel, and that every
// success satisfies every rule, judged by independent code: encoding/json
// on the decoded parts, and golang-jwt's own parser.
func FuzzVerify(f *testing.F) {
	for _, alg := range fxAlgs {
		f.Add(fxToken(f, fxKeyFor(alg), nil))
	}
	for _, a := range fxAttacks(f) {
		if len(a.tok) <= 16<<10 {
			f.Add(a.tok)
		}
	}
	f.Add(fxToken(f, fxKeys().ed, nil, `aud=["x","`+fxAud+`"]`, "exp="+fxUnix(time.Minute)+".25", `+"cnf":{"jkt":"abc"}`))
	v := fxVerifier(f, token.WithRevocations(&fxRevocations{}), token.WithKeyChecker(&fxKeyChecker{}), token.WithCache(16))
	ctx := context.Background()
	resign := []token.SigningKey{fxKeys().ed, fxKeys().hs}
	f.Fuzz(func(t *testing.T, tok string) {
		check := func(tok string) {
			c, err := v.Verify(ctx, tok)
			if err != nil {
				var ae *auth.Error
				if !errors.As(err, &ae) || ae.Kind != auth.ErrInvalidCredential || ae.Message != "" ||
					!slices.ContainsFunc(fxSentinels, func(s error) bool { return errors.Is(err, s) }) {
					t.Fatalf("Verify(%q): error %#v is not an invalid credential with a token sentinel", tok, err)
				}
				if _, err2 := v.Authenticate(ctx, tok); !errors.Is(err2, ae.Err) {
					t.Fatalf("Authenticate(%q) = %v, Verify = %v", tok, err2, err)
				}
				return
			}
			fxCheckAccepted(t, tok, c)
		}
		check(tok)
		if i := strings.LastIndexByte(tok, '.'); i > 0 && len(tok) < 8<<10 {
			for _, k := range resign {
				sig, err := jwt.GetSigningMethod(k.Alg).Sign(tok[:i], k.Key)
				if err != nil {
					t.Fatal(err)
				}
				check(tok[:i] + "." + base64.RawURLEncoding.EncodeToString(sig))
			}
		}
	})
}

// fxCheckAccepted checks, without the Verifier's code, that an accepted
// token satisfies every rule of the fixture verifier.
func fxCheckAccepted(t *testing.T, tok string, c *token.Claims) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted %q: "+format, append([]any{tok}, args...)...)
	}
	if len(tok) > token.DefaultMaxTokenSize || strings.Count(tok, ".") != 2 {
		fail("size or shape")
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c != '.' && c != '-' && c != '_' && !('0' <= c && c <= '9') && !('a' <= c && c <= 'z') && !('A' <= c && c <= 'Z') {
			fail("character %q", c)
		}
	}
	parts := strings.Split(tok, ".")
	var header map[string]any
	raw, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &header) != nil {
		fail("header does not decode: %v", err)
	}
	alg, _ := header["alg"].(string)
	kid, _ := header["kid"].(string)
	typ, _ := header["typ"].(string)
	var key token.SigningKey
	for _, k := range []token.SigningKey{fxKeys().ed, fxKeys().ed2, fxKeys().es, fxKeys().rs, fxKeys().hs} {
		if k.KID == kid {
			key = k
		}
	}
	if key.Alg == "" || key.Alg != alg {
		fail("alg %q with kid %q", alg, kid)
	}
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		fail("typ %q", typ)
	}
	if _, ok := header["crit"]; ok {
		fail("crit")
	}
	// The claims, against the fixture's rules (clock fxNow, leeway 30 s,
	// maximum lifetime 1 h, revocations and a key checker set).
	now, leeway := fxNow, 30*time.Second
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Add(leeway)) {
		fail("exp %v", c.ExpiresAt)
	}
	start := now
	if c.IssuedAt != nil {
		if c.IssuedAt.After(now.Add(leeway)) {
			fail("iat %v", c.IssuedAt)
		}
		start = c.IssuedAt.Time
	}
	if c.NotBefore != nil && c.NotBefore.After(now.Add(leeway)) {
		fail("nbf %v", c.NotBefore)
	}
	if c.ExpiresAt.Sub(start) > time.Hour {
		fail("lifetime %v", c.ExpiresAt.Sub(start))
	}
	if c.Issuer != fxIss || !slices.Contains(c.Audience, fxAud) || c.ID == "" || c.ClientID == "" {
		fail("claims %+v", c)
	}
	// golang-jwt's own parser, with the same rules, agrees (unless a date
	// has a fraction of a second: golang-jwt truncates it, which differs
	// at the very edge of the leeway).
	for _, d := range []*jwt.NumericDate{c.ExpiresAt, c.IssuedAt, c.NotBefore} {
		if d != nil && d.Nanosecond() != 0 {
			return
		}
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithStrictDecoding(), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway), jwt.WithIssuer(fxIss), jwt.WithAudience(fxAud), jwt.WithTimeFunc(fxClock))
	var gc token.Claims
	if _, err := p.ParseWithClaims(tok, &gc, func(*jwt.Token) (any, error) { return key.Public().Key, nil }); err != nil {
		fail("golang-jwt rejects it: %v", err)
	}
	if gc.Subject != c.Subject || gc.ID != c.ID || gc.Scope != c.Scope || gc.Session != c.Session || gc.ClientID != c.ClientID ||
		gc.Project != c.Project || !gc.ExpiresAt.Equal(c.ExpiresAt.Time) {
		fail("golang-jwt reads %+v, we read %+v", gc, c)
	}
}
