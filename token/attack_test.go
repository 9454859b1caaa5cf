package token_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/token"
)

// fxAttack is one hostile token and the sentinel it must fail with.
type fxAttack struct {
	name string
	tok  string
	v    *token.Verifier // nil: the attack verifier
	want error
}

// fxRaw assembles a token from raw JSON and a raw third part.
func fxRaw(header, claims, sig string) string {
	return fxB64(header) + "." + fxB64(claims) + "." + sig
}

// fxFlipLast flips the low bit of the last character's value in the
// base64url alphabet: the decoded bytes stay the same for a lenient
// decoder, since that bit is padding.
func fxFlipLast(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[i^1])
}

// fxAttacks returns every attack case. Each token is validly signed
// unless the case is about the signature, so that it reaches the check it
// attacks.
func fxAttacks(tb testing.TB) []fxAttack {
	tb.Helper()
	k := fxKeys()
	ed, es, rs, hs := k.ed, k.es, k.rs, k.hs
	claims := fxClaims()
	edPub := []byte(ed.Public().Key.(ed25519.PublicKey))
	rsDER, err := x509.MarshalPKIXPublicKey(rs.Public().Key.(*rsa.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	rsPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsDER})
	esDER, err := x509.MarshalPKIXPublicKey(es.Public().Key.(*ecdsa.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	defaults, err := token.NewVerifier(fxTrusted(tb), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud), token.WithVerifierClock(fxClock))
	if err != nil {
		tb.Fatal(err)
	}
	big, err := token.NewVerifier(fxTrusted(tb), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud),
		token.WithVerifierClock(fxClock), token.WithMaxTokenSize(256<<10))
	if err != nil {
		tb.Fatal(err)
	}
	valid := fxToken(tb, ed, nil)
	parts := strings.Split(valid, ".")
	sign := func(key token.SigningKey, header string, claimEdits ...string) string {
		return fxSign(tb, key.Alg, key.Key, header, fxClaims(claimEdits...))
	}
	hdr := func(edits ...string) string { return fxHeader(ed, edits...) }

	var a []fxAttack
	add := func(name, tok string, want error) { a = append(a, fxAttack{name: name, tok: tok, want: want}) }

	// alg: none in any spelling, unknown and mis-cased algorithms.
	for _, none := range []string{"none", "None", "NONE", "nOnE"} {
		add("alg "+none+", no signature", fxRaw(hdr(`alg="`+none+`"`), claims, ""), token.ErrAlgorithm)
		add("alg "+none+", with a signature", fxRaw(hdr(`alg="`+none+`"`), claims, parts[2]), token.ErrAlgorithm)
	}
	for _, alg := range []string{"", "eddsa", "EDDSA", "EdDSA ", " EdDSA", "Ed25519", "HS512", "HS384", "PS256", "RS512", "ES384", "ES256K", "A128KW", "dir"} {
		add(fmt.Sprintf("alg %q", alg), sign(ed, hdr(fmt.Sprintf("alg=%q", alg))), token.ErrAlgorithm)
	}
	add("alg missing", sign(ed, hdr("-alg")), token.ErrAlgorithm)
	add("alg null", sign(ed, hdr("alg=null")), token.ErrMalformed)
	add("alg number", sign(ed, hdr("alg=1")), token.ErrMalformed)
	add("alg array", sign(ed, hdr(`alg=["EdDSA"]`)), token.ErrMalformed)
	a = append(a, fxAttack{"HS256 not in the default allow-list", fxToken(tb, hs, nil), defaults, token.ErrAlgorithm})

	// Key confusion: the alg header must be the algorithm of the key kid
	// names. An HMAC "signed" with a public key is the classic attack.
	add("HS256 with the Ed25519 public key as secret", fxSign(tb, "HS256", edPub, fxHeader(ed, `alg="HS256"`), claims), token.ErrAlgorithm)
	add("HS256 with the RSA public key DER as secret", fxSign(tb, "HS256", rsDER, fxHeader(rs, `alg="HS256"`), claims), token.ErrAlgorithm)
	add("HS256 with the RSA public key PEM as secret", fxSign(tb, "HS256", rsPEM, fxHeader(rs, `alg="HS256"`), claims), token.ErrAlgorithm)
	add("HS256 with the P-256 public key DER as secret", fxSign(tb, "HS256", esDER, fxHeader(es, `alg="HS256"`), claims), token.ErrAlgorithm)
	add("ES256 token naming the EdDSA key", sign(es, fxHeader(es, `kid="ed-1"`)), token.ErrAlgorithm)
	add("RS256 token naming the HS256 key", sign(rs, fxHeader(rs, `kid="hs-1"`)), token.ErrAlgorithm)
	add("EdDSA token naming the HS256 key", sign(ed, hdr(`kid="hs-1"`)), token.ErrAlgorithm)
	add("HS256 token naming the RS256 key, signed with the HS256 secret", sign(hs, fxHeader(hs, `kid="rs-1"`)), token.ErrAlgorithm)

	// Hostile kid values: no panic, refused like an unknown kid.
	for _, kid := range []string{"nope", "../../etc/passwd", "' OR 1=1 --", "", "ED-1", "ed-1 ", "ed-1\u0000", `ed-1"`, strings.Repeat("k", token.MaxKIDLength+1)} {
		add(fmt.Sprintf("kid %.40q", kid), sign(ed, hdr("kid="+fxq(kid))), token.ErrUnknownKID)
	}
	add("kid missing", sign(ed, hdr("-kid")), token.ErrUnknownKID)
	for _, raw := range []string{"42", "null", `{"a":1}`, `["ed-1"]`, "true"} {
		add("kid "+raw, sign(ed, hdr("kid="+raw)), token.ErrMalformed)
	}
	huge := sign(ed, hdr("kid="+fxq(strings.Repeat("A", 100<<10))))
	add("kid of 100 KiB", huge, token.ErrTooLarge)
	a = append(a, fxAttack{"kid of 100 KiB under a 256 KiB size cap", huge, big, token.ErrUnknownKID})

	// crit: this verifier understands no extension.
	for _, crit := range []string{`["exp"]`, `[]`, `"b64"`, `null`} {
		add("crit "+crit, sign(ed, hdr("crit="+crit)), token.ErrHeader)
	}
	add(`crit ["b64"] with b64 false`, sign(ed, hdr(`crit=["b64"]`, "b64=false")), token.ErrHeader)
	// Embedded keys and key URLs are never trusted.
	attackerJWK := fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q}`, base64.RawURLEncoding.EncodeToString(k.attacker.Public().Key.(ed25519.PublicKey)))
	add("jwk header with the attacker's key, kid of ours", sign(k.attacker, hdr("jwk="+attackerJWK)), token.ErrSignature)
	add("jwk header with the attacker's key and kid", sign(k.attacker, hdr("jwk="+attackerJWK, `kid="attacker"`)), token.ErrUnknownKID)
	add("x5c header, signed by the attacker", sign(k.attacker, hdr(`x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]`)), token.ErrSignature)

	// Duplicate and case-variant names, in the header…
	add("header alg twice", sign(ed, hdr(`+"alg":"none"`)), token.ErrDuplicateClaim)
	add("header ALG beside alg", sign(ed, hdr(`+"ALG":"none"`)), token.ErrDuplicateClaim)
	add("header Kid beside kid", sign(ed, hdr(`+"Kid":"ed-2"`)), token.ErrDuplicateClaim)
	add("header lone Kid", sign(ed, hdr("-kid", `+"Kid":"ed-1"`)), token.ErrDuplicateClaim)
	add("header lone KELVIN SIGN kid", sign(ed, hdr("-kid", `+"\u212Aid":"ed-1"`)), token.ErrDuplicateClaim)
	add("header TYP beside typ", sign(ed, hdr(`+"TYP":"JWT"`)), token.ErrDuplicateClaim)
	add("header lone Crit", sign(ed, hdr(`+"Crit":["exp"]`)), token.ErrDuplicateClaim)
	add("header lone JKU", sign(ed, hdr(`+"JKU":"https://evil.example.test/jwks"`)), token.ErrDuplicateClaim)
	add("header unknown name twice", sign(ed, hdr(`+"x":1`, `+"x":2`)), token.ErrDuplicateClaim)
	add("header escaped alg beside alg", sign(ed, hdr(`+"\u0061lg":"none"`)), token.ErrDuplicateClaim)
	// …and in the claims.
	for _, tc := range []struct{ name, edit string }{
		{"sub twice", `+"sub":"b"`},
		{"SUB beside sub", `+"SUB":"b"`},
		{"Exp beside exp", `+"Exp":9999999999`},
		{"aud beside AUD", `+"AUD":"x"`},
		{"escaped sub beside sub", `+"\u0073ub":"b"`},
		{"LONG S sub beside sub", `+"ſub":"b"`},
		{"unknown claim twice", `+"x":1,"x":2`},
		{"unknown claim in two cases", `+"x":1,"X":2`},
		{"nested duplicate", `+"cnf":{"a":1,"a":2}`},
		{"nested case duplicate", `+"cnf":{"jkt":"a","JKT":"b"}`},
		{"Client_ID beside client_id", `+"Client_ID":"key_2"`},
		{"SCOPE beside scope", `+"SCOPE":"admin"`},
		{"Sid beside sid", `+"Sid":"s2"`},
	} {
		add("claims "+tc.name, sign(ed, hdr(), tc.edit), token.ErrDuplicateClaim)
	}
	add("claims lone SUB", sign(ed, hdr(), "-sub", `+"SUB":"key_1"`), token.ErrDuplicateClaim)
	add("claims lone Exp", sign(ed, hdr(), "-exp", `+"Exp":`+fxUnix(time.Minute)), token.ErrDuplicateClaim)
	add("claims lone LONG S sub", sign(ed, hdr(), "-sub", `+"ſub":"key_1"`), token.ErrDuplicateClaim)
	add("claims lone SCOPE", sign(ed, hdr(), "-scope", `+"SCOPE":"admin"`), token.ErrDuplicateClaim)
	add("claims lone Client_ID", sign(ed, hdr(), "-client_id", `+"Client_ID":"key_2"`), token.ErrDuplicateClaim)

	// Numbers where dates belong.
	for _, raw := range []string{"1e300", `"123"`, `"` + fxUnix(time.Minute) + `"`, "0", "-1", "-0", "1e400", "99999999999999999999",
		"9007199254740993", "9007199254740992", "null", "true", "[]", "{}", "01", "+5", "1.", ".5", "1e", "0x10", "NaN", "Infinity", "-Infinity"} {
		add("exp "+raw, sign(ed, hdr(), "exp="+raw), token.ErrMalformed)
	}
	add("iat string", sign(ed, hdr(), `iat="x"`), token.ErrMalformed)
	add("iat -1", sign(ed, hdr(), `iat=-1`), token.ErrMalformed)
	add("nbf 1e300", sign(ed, hdr(), `nbf=1e300`), token.ErrMalformed)
	add("exp 1.5e9 (a valid number, long past)", sign(ed, hdr(), "exp=1.5e9", "-iat", "-nbf"), token.ErrExpired)
	add("exp missing", sign(ed, hdr(), "-exp"), token.ErrExpired)
	add("expired an hour ago", sign(ed, hdr(), "exp="+fxUnix(-time.Hour), "iat="+fxUnix(-2*time.Hour), "-nbf"), token.ErrExpired)
	add("nbf in an hour", sign(ed, hdr(), "nbf="+fxUnix(time.Hour), "exp="+fxUnix(time.Hour+time.Minute)), token.ErrNotYetValid)
	add("lifetime of a year", sign(ed, hdr(), "exp="+fxUnix(365*24*time.Hour), "-iat"), token.ErrLifetime)
	add("issuer of another service", sign(ed, hdr(), `iss="https://evil.example.test"`), token.ErrIssuer)
	add("audience of another service", sign(ed, hdr(), `aud="https://other.example.test"`), token.ErrAudience)
	// Other claims of the wrong type.
	for _, e := range []string{"sub=5", "jti=5", `scope=["a"]`, `scope="a\tb"`, `scope="a\"b"`, "sid=null", "client_id={}", "project=true"} {
		add("claim "+e, sign(ed, hdr(), e), token.ErrMalformed)
	}

	// Shape and base64url.
	add("two parts", parts[0]+"."+parts[1], token.ErrMalformed)
	add("four parts", valid+".x", token.ErrMalformed)
	add("empty header", "."+parts[1]+"."+parts[2], token.ErrMalformed)
	add("empty claims", parts[0]+".."+parts[2], token.ErrMalformed)
	add("only dots", "..", token.ErrMalformed)
	add("empty", "", token.ErrMalformed)
	add("padding on the signature", valid+"==", token.ErrMalformed)
	add("padding on the header", parts[0]+"=."+parts[1]+"."+parts[2], token.ErrMalformed)
	for _, ws := range []string{" ", "\n", "\r\n", "\t"} {
		add(fmt.Sprintf("whitespace %q in the claims", ws), parts[0]+"."+parts[1][:10]+ws+parts[1][10:]+"."+parts[2], token.ErrMalformed)
	}
	add("length that is no encoding", parts[0]+"."+parts[1]+"."+parts[2]+"AAA", token.ErrMalformed)
	add("header is an array", sign(ed, "[]"), token.ErrMalformed)
	add("header is a string", sign(ed, `"x"`), token.ErrMalformed)
	add("header is null", sign(ed, "null"), token.ErrMalformed)
	add("header is cut", sign(ed, `{"alg":"EdDSA"`), token.ErrMalformed)
	add("header with trailing garbage", sign(ed, hdr()+"x"), token.ErrMalformed)
	add("header with a trailing comma", sign(ed, strings.TrimSuffix(hdr(), "}")+",}"), token.ErrMalformed)
	add("header with a BOM", sign(ed, "\ufeff"+hdr()), token.ErrMalformed)
	add("header with invalid UTF-8", sign(ed, hdr(`+"x":"`+"\xff"+`"`)), token.ErrMalformed)
	add("header with a lone surrogate", sign(ed, hdr(`+"x":"\ud800"`)), token.ErrMalformed)
	add("header with a reversed surrogate pair", sign(ed, hdr(`+"x":"\udc00\ud800"`)), token.ErrMalformed)
	add("header with a bad escape", sign(ed, hdr(`+"x":"\q"`)), token.ErrMalformed)
	add("claims with a control character", sign(ed, hdr(), "sub=\"a\x01b\""), token.ErrMalformed)
	add("claims nested too deep", sign(ed, hdr(), "x="+strings.Repeat("[", 20)+strings.Repeat("]", 20)), token.ErrMalformed)
	var many []string
	for i := range 300 {
		many = append(many, fmt.Sprintf("c%d=1", i))
	}
	add("claims with 300 members", sign(ed, hdr(), many...), token.ErrMalformed)
	add("claims are an array", fxSign(tb, ed.Alg, ed.Key, hdr(), "[]"), token.ErrMalformed)
	add("claims are a nested JWT", fxSign(tb, ed.Alg, ed.Key, hdr(`cty="JWT"`), valid), token.ErrMalformed)

	// Size: refused before any decoding (not ErrMalformed).
	add("9000 bytes without a dot", strings.Repeat("A", 9000), token.ErrTooLarge)
	add("one byte over the cap", valid+strings.Repeat("A", token.DefaultMaxTokenSize+1-len(valid)), token.ErrTooLarge)

	// Signatures.
	for _, alg := range fxAlgs {
		tok := fxToken(tb, fxKeyFor(alg), nil)
		add("last signature character flipped, "+alg, fxFlipLast(tok), token.ErrMalformed)
	}
	tampered := parts[0] + "." + fxB64(fxClaims(`scope="admin"`)) + "." + parts[2]
	add("claims changed after signing", tampered, token.ErrSignature)
	add("signed by another trusted key", sign(k.ed2, hdr()), token.ErrSignature)
	add("signed by the attacker", sign(k.attacker, hdr()), token.ErrSignature)
	add("signature truncated", valid[:len(valid)-2], token.ErrSignature)
	add("signature empty", parts[0]+"."+parts[1]+".", token.ErrSignature)
	add("signature of zeros", parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(make([]byte, 64)), token.ErrSignature)
	esHeader, esClaims := fxHeader(es), fxClaims()
	input := fxB64(esHeader) + "." + fxB64(esClaims)
	digest := sha256.Sum256([]byte(input))
	der, err := ecdsa.SignASN1(rand.Reader, es.Key.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	add("ES256 signature in DER", input+"."+base64.RawURLEncoding.EncodeToString(der), token.ErrSignature)
	return a
}

func TestAttacks(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	for _, tc := range fxAttacks(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vv := v
			if tc.v != nil {
				vv = tc.v
			}
			c, err := vv.Verify(context.Background(), tc.tok)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", c)
			}
			fxIsInvalid(t, err, tc.want)
			// Authenticate agrees, and a second try (cache) too.
			for range 2 {
				_, err = vv.Authenticate(context.Background(), tc.tok)
				fxIsInvalid(t, err, tc.want)
			}
		})
	}
}

// TestAttacksValidControls checks that the tokens the attacks are built
// from verify, so that each attack fails for its own reason.
func TestAttacksValidControls(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	k := fxKeys()
	for _, tc := range []struct{ name, tok string }{
		{"plain", fxToken(t, k.ed, nil)},
		{"escaped sub alone is sub", fxToken(t, k.ed, nil, "-sub", `+"\u0073ub":"key_1"`)},
		{"unknown claims of any shape", fxToken(t, k.ed, nil, `+"cnf":{"jkt":"x","a":[1,2.5,-3e2,true,false,null,"\u00e9\ud83d\ude00"]}`)},
		{"15 levels of nesting", fxToken(t, k.ed, nil, "x="+strings.Repeat("[", 15)+strings.Repeat("]", 15))},
		{"whitespace in the JSON", fxSign(t, k.ed.Alg, k.ed.Key, " {\n\t\"alg\" : \"EdDSA\" ,\"kid\":\"ed-1\",\"typ\":\"at+jwt\"}\r\n", fxClaims())},
		{"unregistered header names", fxToken(t, k.ed, []string{`+"x-custom":{"a":1}`})},
		{"escaped slashes (PHP encoders)", fxToken(t, k.ed, nil, `+"https:\/\/example.com\/roles":["a"]`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := v.Verify(context.Background(), tc.tok); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

// TestAttackNonCanonicalSignature shows why strict base64url matters: a
// lenient decoder maps the flipped character to the same signature bytes,
// so the altered string would verify and dodge a revocation list keyed by
// the token's digest.
func TestAttackNonCanonicalSignature(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	for _, alg := range fxAlgs {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			tok := fxToken(t, fxKeyFor(alg), nil)
			flipped := fxFlipLast(tok)
			if flipped == tok {
				t.Fatal("flip changed nothing")
			}
			sig := tok[strings.LastIndexByte(tok, '.')+1:]
			fsig := flipped[strings.LastIndexByte(flipped, '.')+1:]
			a, err1 := base64.RawURLEncoding.DecodeString(sig)
			b, err2 := base64.RawURLEncoding.DecodeString(fsig)
			if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
				t.Fatalf("lenient decoding differs (%v, %v): the test does not show the attack", err1, err2)
			}
			if _, err := base64.RawURLEncoding.Strict().DecodeString(fsig); err == nil {
				t.Fatal("strict decoding accepts the flipped signature")
			}
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("original: %v", err)
			}
			_, err := v.Verify(context.Background(), flipped)
			fxIsInvalid(t, err, token.ErrMalformed)
		})
	}
}

// TestAttackStandardBase64Alphabet: '+' and '/' (standard base64) are not
// base64url.
func TestAttackStandardBase64Alphabet(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	// "???>>>" encodes to "Pz8_Pj4-": both URL-safe characters appear.
	tok := fxToken(t, fxKeys().ed, nil, `x="???>>>???>>>"`)
	parts := strings.Split(tok, ".")
	if !strings.ContainsAny(parts[1], "-_") {
		t.Fatal("fixture has no - or _ in its claims")
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	std := strings.NewReplacer("-", "+", "_", "/").Replace(parts[1])
	_, err := v.Verify(context.Background(), parts[0]+"."+std+"."+parts[2])
	fxIsInvalid(t, err, token.ErrMalformed)
}

// TestAttackKeyURLsNeverFetched: jku and x5u point at a server that
// counts requests; no verification ever makes one.
func TestAttackKeyURLsNeverFetched(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		ks, _ := token.NewKeySet(fxKeys().attacker.Public())
		w.Write(ks.JWKS())
	}))
	defer srv.Close()
	v := fxVerifier(t)
	k := fxKeys()
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"jku, signed by us: the header is ignored", fxToken(t, k.ed, []string{"jku=" + fxq(srv.URL)}), nil},
		{"x5u, signed by us", fxToken(t, k.ed, []string{"x5u=" + fxq(srv.URL)}), nil},
		{"jku, signed by the attacker, our kid", fxToken(t, k.attacker, []string{"jku=" + fxq(srv.URL), `kid="ed-1"`}), token.ErrSignature},
		{"jku, signed by the attacker, its kid", fxToken(t, k.attacker, []string{"jku=" + fxq(srv.URL)}), token.ErrUnknownKID},
		{"x5u, signed by the attacker", fxToken(t, k.attacker, []string{"x5u=" + fxq(srv.URL)}), token.ErrUnknownKID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.tok)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				fxIsInvalid(t, err, tc.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the verifier made %d requests to the key URL", n)
	}
}

// TestAttacksIdenticalResponses: through the auth middleware, every
// rejected token gets the same 401, byte for byte, whatever the reason.
func TestAttacksIdenticalResponses(t *testing.T) {
	t.Parallel()
	g, err := auth.New(fxVerifier(t))
	if err != nil {
		t.Fatal(err)
	}
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler reached")
	}))
	var first *httptest.ResponseRecorder
	var firstName string
	seen := map[error]bool{}
	for _, tc := range fxAttacks(t) {
		if tc.v != nil || tc.tok == "" || strings.ContainsAny(tc.tok, " \t\r\n=") || len(tc.tok) > token.DefaultMaxTokenSize {
			continue // not a single b64token the Bearer extractor accepts
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tc.tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d: %s", tc.name, w.Code, w.Body)
			continue
		}
		seen[tc.want] = true
		if first == nil {
			first, firstName = w, tc.name
			continue
		}
		if !bytes.Equal(w.Body.Bytes(), first.Body.Bytes()) || fmt.Sprint(w.Header()) != fmt.Sprint(first.Header()) {
			t.Errorf("%s: response differs from %s:\n%v %s\n%v %s", tc.name, firstName, w.Header(), w.Body, first.Header(), first.Body)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct reasons compared", len(seen))
	}
	if strings.Contains(first.Body.String(), "token:") {
		t.Errorf("the body reveals the reason: %s", first.Body)
	}
}

// TestAttackErrorsNeverUnavailable: hostile input is always the caller's
// fault (401), never a 503 that would mask it or trip alerts.
func TestAttackErrorsNeverUnavailable(t *testing.T) {
	t.Parallel()
	v := fxVerifier(t)
	for _, tc := range fxAttacks(t) {
		if tc.v != nil {
			continue
		}
		_, err := v.Authenticate(context.Background(), tc.tok)
		if errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
