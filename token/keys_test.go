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
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/token"
)

func TestNewSigningKey(t *testing.T) {
	t.Parallel()
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append(ed25519.PrivateKey(nil), edPriv...)
	corrupt[40] ^= 1
	k := fxKeys()
	tests := []struct {
		name    string
		kid     string
		key     any
		wantAlg string
		wantErr error
	}{
		{"Ed25519", "a", edPriv, token.EdDSA, nil},
		{"P-256", "a", k.es.Key, token.ES256, nil},
		{"RSA 2048", "a", k.rs.Key, token.RS256, nil},
		{"HS256, 32 bytes", "a", make([]byte, 32), token.HS256, nil},
		{"HS256, 64 bytes", "a", make([]byte, 64), token.HS256, nil},
		{"HS256, 31 bytes", "a", make([]byte, 31), "", token.ErrWeakKey},
		{"HS256, empty", "a", []byte{}, "", token.ErrWeakKey},
		{"HS256, nil", "a", []byte(nil), "", token.ErrWeakKey},
		{"HS256 without a kid", "", make([]byte, 32), "", token.ErrInvalidConfig},
		{"P-384", "a", p384, "", token.ErrWeakKey},
		{"RSA 1024", "a", rsa1024, "", token.ErrWeakKey},
		{"Ed25519 of 32 bytes", "a", edPriv[:32], "", token.ErrWeakKey},
		{"corrupted Ed25519", "a", corrupt, "", token.ErrWeakKey},
		{"Ed25519 public key", "a", edPriv.Public(), "", token.ErrWeakKey},
		{"pointer to Ed25519 key", "a", &edPriv, "", token.ErrWeakKey},
		{"string secret", "a", strings.Repeat("x", 32), "", token.ErrWeakKey},
		{"nil", "a", nil, "", token.ErrWeakKey},
		{"nil ECDSA", "a", (*ecdsa.PrivateKey)(nil), "", token.ErrWeakKey},
		{"nil RSA", "a", (*rsa.PrivateKey)(nil), "", token.ErrWeakKey},
		{"kid too long", strings.Repeat("k", token.MaxKIDLength+1), edPriv, "", token.ErrInvalidConfig},
		{"kid at the limit", strings.Repeat("k", token.MaxKIDLength), edPriv, token.EdDSA, nil},
		{"kid with a newline", "a\nb", edPriv, "", token.ErrInvalidConfig},
		{"kid not UTF-8", "a\xffb", edPriv, "", token.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := token.NewSigningKey(tc.kid, tc.key)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Alg != tc.wantAlg || got.KID != tc.kid {
				t.Fatalf("got %v, want alg %s kid %q", got, tc.wantAlg, tc.kid)
			}
		})
	}
}

func TestNewSigningKeyCopiesAndThumbprints(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{7}, 32)
	k, err := token.NewSigningKey("hs", secret)
	if err != nil {
		t.Fatal(err)
	}
	secret[0] = 0
	if k.Key.([]byte)[0] != 7 {
		t.Fatal("NewSigningKey kept the caller's slice")
	}
	if pub := k.Public(); pub.Key.([]byte)[0] != 7 || &pub.Key.([]byte)[0] == &k.Key.([]byte)[0] {
		t.Fatal("Public shares the secret's memory")
	}
	// An empty kid becomes the RFC 7638 thumbprint: 43 base64url chars,
	// the same for the same public key.
	a, err := token.NewSigningKey("", fxKeys().ed.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := token.NewSigningKey("", fxKeys().ed.Key)
	c, _ := token.NewSigningKey("", fxKeys().ed2.Key)
	if len(a.KID) != 43 || a.KID != b.KID || a.KID == c.KID {
		t.Fatalf("thumbprint kids %q %q %q", a.KID, b.KID, c.KID)
	}
}

func TestGenerateSigningKey(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{token.EdDSA, token.ES256, token.HS256} { // RS256: slow, below
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			k, err := token.GenerateSigningKey(alg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg != alg || k.KID == "" {
				t.Fatalf("got %v", k)
			}
			// It signs tokens that verify with its public half.
			ks, err := token.NewKeySet(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			iss, err := token.NewIssuer(fxIss, k, token.WithAudience(fxAud))
			if err != nil {
				t.Fatal(err)
			}
			v, err := token.NewVerifier(ks, token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud), token.WithAlgorithms(alg))
			if err != nil {
				t.Fatal(err)
			}
			tok, _, err := iss.Issue(fxAPIPrincipal(), nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("deterministic Ed25519 and HS256 from a fixed reader", func(t *testing.T) {
		t.Parallel()
		for _, alg := range []string{token.EdDSA, token.HS256} {
			a, _ := token.GenerateSigningKey(alg, bytes.NewReader(bytes.Repeat([]byte{3}, 64)))
			b, _ := token.GenerateSigningKey(alg, bytes.NewReader(bytes.Repeat([]byte{3}, 64)))
			if a.KID != b.KID || fmt.Sprint(a.Public().Key) != fmt.Sprint(b.Public().Key) {
				t.Errorf("%s: two keys from the same bytes differ", alg)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		if _, err := token.GenerateSigningKey("none", nil); !errors.Is(err, token.ErrInvalidConfig) {
			t.Errorf("alg none: %v", err)
		}
		if _, err := token.GenerateSigningKey(token.HS256, strings.NewReader("short")); err == nil {
			t.Error("short reader: no error")
		}
		if _, err := token.GenerateSigningKey(token.EdDSA, io.LimitReader(rand.Reader, 0)); err == nil {
			t.Error("empty reader: no error")
		}
	})
}

// TestSigningKeyNeverPrintsKey formats keys every way a program might log
// them and looks for the key material in every encoding.
func TestSigningKeyNeverPrintsKey(t *testing.T) {
	t.Parallel()
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed, err := token.NewSigningKey("ed-kid", edPriv)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("this is a 32-byte HMAC secret!!!")
	hs, err := token.NewSigningKey("hs-kid", secret)
	if err != nil {
		t.Fatal(err)
	}
	es, rs := fxKeys().es, fxKeys().rs
	forms := func(b []byte) []string {
		return []string{
			hex.EncodeToString(b[:8]), base64.StdEncoding.EncodeToString(b)[:10], base64.RawURLEncoding.EncodeToString(b)[:10],
			strings.Trim(fmt.Sprint(b[:6]), "[]"), string(b[:8]),
		}
	}
	secrets := map[string][]string{
		"ed": forms(edPriv.Seed()),
		"hs": forms(secret),
		"es": forms(es.Key.(*ecdsa.PrivateKey).D.Bytes()),
		"rs": append(forms(rs.Key.(*rsa.PrivateKey).D.Bytes()), rs.Key.(*rsa.PrivateKey).D.String()[:12]),
	}
	// fmt cannot call the methods of a value in an unexported field: such
	// a field must hold a pointer, which %v prints as an address, as
	// SigningKey's documentation says.
	type holder struct {
		Key token.SigningKey
	}
	type private struct {
		key *token.SigningKey
	}
	for name, k := range map[string]token.SigningKey{"ed": ed, "hs": hs, "es": es, "rs": rs} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var outs []string
			for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
				outs = append(outs, fmt.Sprintf(f, k), fmt.Sprintf(f, &k), fmt.Sprintf(f, holder{k}), fmt.Sprintf(f, []token.SigningKey{k}))
			}
			for _, f := range []string{"%v", "%+v", "%#v"} {
				outs = append(outs, fmt.Sprintf(f, private{&k})+k.KID)
			}
			outs = append(outs, fmt.Sprintln(k), k.String(), k.GoString())
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("key", "k", k, "p", &k)
			slog.New(slog.NewTextHandler(&buf, nil)).Info("key", "k", k, slog.Any("h", holder{k}))
			outs = append(outs, buf.String())
			j, err := json.Marshal(holder{Key: k})
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, string(j))
			for _, out := range outs {
				for _, s := range secrets[name] {
					if strings.Contains(out, s) {
						t.Fatalf("key material %q printed in %q", s, out)
					}
				}
				if !strings.Contains(out, k.KID) && !strings.Contains(out, fmt.Sprintf("%x", k.KID)) {
					t.Errorf("output %q does not name the kid", out)
				}
			}
			if !strings.Contains(buf.String(), `"alg":"`+k.Alg+`"`) {
				t.Errorf("slog JSON lacks the algorithm: %s", buf.String())
			}
		})
	}
}

func TestNewKeySet(t *testing.T) {
	t.Parallel()
	k := fxKeys()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []token.VerificationKey
		want error
	}{
		{"all four", []token.VerificationKey{k.ed.Public(), k.es.Public(), k.rs.Public(), k.hs.Public()}, nil},
		{"none", nil, token.ErrInvalidConfig},
		{"duplicate kid", []token.VerificationKey{k.ed.Public(), {KID: "ed-1", Alg: token.ES256, Key: k.es.Public().Key}}, token.ErrInvalidConfig},
		{"EdDSA with an RSA key", []token.VerificationKey{{KID: "x", Alg: token.EdDSA, Key: k.rs.Public().Key}}, token.ErrInvalidConfig},
		{"HS256 with a public key", []token.VerificationKey{{KID: "x", Alg: token.HS256, Key: k.ed.Public().Key}}, token.ErrInvalidConfig},
		{"RS256 with an ECDSA key", []token.VerificationKey{{KID: "x", Alg: token.RS256, Key: k.es.Public().Key}}, token.ErrInvalidConfig},
		{"alg none", []token.VerificationKey{{KID: "x", Alg: "none", Key: k.ed.Public().Key}}, token.ErrInvalidConfig},
		{"alg HS512", []token.VerificationKey{{KID: "x", Alg: "HS512", Key: make([]byte, 64)}}, token.ErrInvalidConfig},
		{"HS256 secret of 31 bytes", []token.VerificationKey{{KID: "x", Alg: token.HS256, Key: make([]byte, 31)}}, token.ErrWeakKey},
		{"RSA 1024", []token.VerificationKey{{KID: "x", Alg: token.RS256, Key: &rsa1024.PublicKey}}, token.ErrWeakKey},
		{"RSA exponent 1", []token.VerificationKey{{KID: "x", Alg: token.RS256, Key: &rsa.PublicKey{N: new(big.Int).Lsh(rsa1024.N, 1100), E: 1}}}, token.ErrWeakKey},
		{"Ed25519 of 31 bytes", []token.VerificationKey{{KID: "x", Alg: token.EdDSA, Key: make(ed25519.PublicKey, 31)}}, token.ErrWeakKey},
		{"P-256 point off the curve", []token.VerificationKey{{KID: "x", Alg: token.ES256, Key: &ecdsa.PublicKey{Curve: elliptic.P256(), X: big.NewInt(1), Y: big.NewInt(1)}}}, token.ErrWeakKey},
		{"empty kid", []token.VerificationKey{{KID: "", Alg: token.EdDSA, Key: k.ed.Public().Key}}, token.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ks, err := token.NewKeySet(tc.keys...)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range tc.keys {
				got, err := ks.VerificationKey(context.Background(), key.KID)
				if err != nil || got.KID != key.KID || got.Alg != key.Alg {
					t.Fatalf("VerificationKey(%q) = %v, %v", key.KID, got, err)
				}
			}
		})
	}
}

func TestKeySetLookups(t *testing.T) {
	t.Parallel()
	ks := fxTrusted(t)
	for _, kid := range []string{"", "nope", "ED-1", "../../etc/passwd", strings.Repeat("x", 1<<16)} {
		if _, err := ks.VerificationKey(context.Background(), kid); !errors.Is(err, token.ErrUnknownKID) {
			t.Errorf("kid %.20q: %v", kid, err)
		}
	}
	var nilSet *token.KeySet
	if _, err := nilSet.VerificationKey(context.Background(), "ed-1"); !errors.Is(err, token.ErrUnknownKID) {
		t.Errorf("nil KeySet: %v", err)
	}
	if got := strings.Join(ks.KIDs(), ","); got != "ed-1,ed-2,es-1,rs-1,hs-1" {
		t.Errorf("KIDs = %s", got)
	}
	// Printing a KeySet never shows an HS256 secret.
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		if out := fmt.Sprintf(f, ks); strings.Contains(out, "0123456789abcdef") || strings.Contains(out, "48 49 50") || strings.Contains(out, "3031323334") {
			t.Errorf("%s prints the secret: %s", f, out)
		}
	}
}

// TestKeySetJWKS checks the JWK Set against RFC 7517/7518/8037 shapes.
func TestKeySetJWKS(t *testing.T) {
	t.Parallel()
	k := fxKeys()
	// A P-256 key whose X coordinate has a leading zero byte: the JWK must
	// still carry 32 bytes.
	var short *ecdsa.PrivateKey
	for short == nil {
		c, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if c.X.BitLen() <= 248 {
			short = c
		}
	}
	shortKey, err := token.NewSigningKey("es-short", short)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(k.ed.Public(), k.es.Public(), k.rs.Public(), k.hs.Public(), shortKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	raw := ks.JWKS()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&set); err != nil {
		t.Fatalf("JWKS is not {\"keys\":[…]} of string members: %v\n%s", err, raw)
	}
	if len(set.Keys) != 4 {
		t.Fatalf("%d keys, want 4 (no HS256 secret): %s", len(set.Keys), raw)
	}
	b64 := func(s string) []byte {
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil {
			t.Fatalf("member %q is not base64url: %v", s, err)
		}
		return b
	}
	want := map[string]map[string]string{
		"ed-1":     {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig"},
		"es-1":     {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"},
		"es-short": {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"},
		"rs-1":     {"kty": "RSA", "alg": "RS256", "use": "sig"},
	}
	for _, j := range set.Keys {
		w, ok := want[j["kid"]]
		if !ok {
			t.Fatalf("unexpected key %v", j)
		}
		for m, v := range w {
			if j[m] != v {
				t.Errorf("%s: %s = %q, want %q", j["kid"], m, j[m], v)
			}
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
			if _, ok := j[private]; ok {
				t.Errorf("%s: private member %q published", j["kid"], private)
			}
		}
		switch j["kty"] {
		case "OKP":
			if x := b64(j["x"]); !bytes.Equal(x, k.ed.Public().Key.(ed25519.PublicKey)) {
				t.Errorf("OKP x = %x", x)
			}
		case "EC":
			x, y := b64(j["x"]), b64(j["y"])
			if len(x) != 32 || len(y) != 32 {
				t.Errorf("%s: coordinates of %d and %d bytes, want 32", j["kid"], len(x), len(y))
			}
			pub := k.es.Public().Key.(*ecdsa.PublicKey)
			if j["kid"] == "es-short" {
				pub = &short.PublicKey
			}
			if new(big.Int).SetBytes(x).Cmp(pub.X) != 0 || new(big.Int).SetBytes(y).Cmp(pub.Y) != 0 {
				t.Errorf("%s: wrong coordinates", j["kid"])
			}
		case "RSA":
			pub := k.rs.Public().Key.(*rsa.PublicKey)
			if new(big.Int).SetBytes(b64(j["n"])).Cmp(pub.N) != 0 || j["e"] != "AQAB" {
				t.Errorf("RSA n/e wrong: e=%q", j["e"])
			}
			if b64(j["n"])[0] == 0 {
				t.Error("RSA n has a leading zero byte")
			}
		}
	}
	if bytes.Contains(raw, []byte("hs-1")) {
		t.Error("the HS256 key is named in the JWK Set")
	}
	// JWKS returns a copy.
	raw[0] = 'X'
	if ks.JWKS()[0] != '{' {
		t.Error("JWKS returned the KeySet's own slice")
	}
}

func TestKeySetHandler(t *testing.T) {
	t.Parallel()
	ks := fxTrusted(t)
	h := ks.Handler()
	get := func(method string, header ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/.well-known/jwks.json", nil)
		for i := 0; i < len(header); i += 2 {
			r.Header.Add(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := get("GET")
	etag := w.Header().Get("ETag")
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), ks.JWKS()) {
		t.Fatalf("GET: %d %s", w.Code, w.Body)
	}
	if w.Header().Get("Cache-Control") != "public, max-age=300" || w.Header().Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 10 {
		t.Fatalf("headers: %v", w.Header())
	}
	tests := []struct {
		name    string
		method  string
		header  []string
		status  int
		hasBody bool
	}{
		{"If-None-Match equal", "GET", []string{"If-None-Match", etag}, 304, false},
		{"If-None-Match weak", "GET", []string{"If-None-Match", "W/" + etag}, 304, false},
		{"If-None-Match list", "GET", []string{"If-None-Match", `"other", ` + etag}, 304, false},
		{"If-None-Match two headers", "GET", []string{"If-None-Match", `"other"`, "If-None-Match", etag}, 304, false},
		{"If-None-Match star", "GET", []string{"If-None-Match", "*"}, 304, false},
		{"If-None-Match other", "GET", []string{"If-None-Match", `"other"`}, 200, true},
		{"HEAD", "HEAD", nil, 200, false},
		{"POST", "POST", nil, 405, true},
		{"DELETE", "DELETE", nil, 405, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := get(tc.method, tc.header...)
			if w.Code != tc.status || (w.Body.Len() > 0) != tc.hasBody {
				t.Fatalf("%d with %d bytes, want %d (body %v)", w.Code, w.Body.Len(), tc.status, tc.hasBody)
			}
			if tc.status == 304 && (w.Header().Get("ETag") != etag || w.Header().Get("Cache-Control") == "") {
				t.Errorf("304 headers: %v", w.Header())
			}
			if tc.status == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", w.Header().Get("Allow"))
			}
		})
	}
	// Different key sets have different ETags.
	other, _ := token.NewKeySet(fxKeys().ed.Public())
	wo := httptest.NewRecorder()
	other.Handler().ServeHTTP(wo, httptest.NewRequest(http.MethodGet, "/", nil))
	if wo.Header().Get("ETag") == etag {
		t.Error("two key sets share an ETag")
	}
}

// TestVerificationKeyNeverPrintsSecret: an HS256 VerificationKey holds the
// shared secret, so printing, logging or marshalling one shows only its
// kid and algorithm.
func TestVerificationKeyNeverPrintsSecret(t *testing.T) {
	t.Parallel()
	secret := []byte("this is a 32-byte HMAC secret!!!")
	hs, err := token.NewSigningKey("hs-kid", secret)
	if err != nil {
		t.Fatal(err)
	}
	k := hs.Public()
	type holder struct{ Key token.VerificationKey }
	var outs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outs = append(outs, fmt.Sprintf(f, k), fmt.Sprintf(f, &k), fmt.Sprintf(f, holder{k}))
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("key", "k", k)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("key", "k", k)
	j, err := json.Marshal(holder{k})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, buf.String(), string(j))
	for _, out := range outs {
		for _, s := range []string{string(secret[:8]), hex.EncodeToString(secret[:8]), base64.RawURLEncoding.EncodeToString(secret)[:10], strings.Trim(fmt.Sprint(secret[:6]), "[]")} {
			if strings.Contains(out, s) {
				t.Fatalf("secret %q printed in %q", s, out)
			}
		}
	}
	if !strings.Contains(k.String(), "hs-kid") || !strings.Contains(k.String(), "HS256") {
		t.Fatalf("String() = %q, want the kid and alg", k.String())
	}
}
