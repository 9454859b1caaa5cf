package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
)

// Conformance: published test vectors (RFC 8037, RFC 7515), verification
// of our tokens by code that shares nothing with the Verifier, and
// differential fuzzing of the strict decoders against the standard
// library.

func fxiB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return b
}

// RFC 8037 Appendix A: an Ed25519 key (A.1), its public JWK (A.2), its
// RFC 7638 thumbprint (A.3) and a JWS signed with it (A.4).
const (
	rfc8037D          = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfc8037X          = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037Thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
	rfc8037Input      = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
	rfc8037Signature  = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)

func TestRFC8037Vectors(t *testing.T) {
	t.Parallel()
	priv := ed25519.NewKeyFromSeed(fxiB64(t, rfc8037D))
	// A.3: with no kid, the key is named by its thumbprint.
	k, err := NewSigningKey("", priv)
	if err != nil {
		t.Fatal(err)
	}
	if k.KID != rfc8037Thumbprint {
		t.Errorf("thumbprint kid %q, want %q (RFC 8037 A.3)", k.KID, rfc8037Thumbprint)
	}
	// A.2: the public JWK.
	ks, err := NewKeySet(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal(ks.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %v %s", err, ks.JWKS())
	}
	if j := set.Keys[0]; j["kty"] != "OKP" || j["crv"] != "Ed25519" || j["x"] != rfc8037X {
		t.Errorf("JWK %v, want kty OKP, crv Ed25519, x %s (RFC 8037 A.2)", j, rfc8037X)
	}
	// A.4: Ed25519 is deterministic, so our signing gives the RFC's
	// signature byte for byte…
	sig, err := k.sign(rfc8037Input)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(sig); got != rfc8037Signature {
		t.Errorf("signature\n got %s\nwant %s (RFC 8037 A.4)", got, rfc8037Signature)
	}
	// …which crypto/ed25519 verifies with the RFC's public key, and so
	// does our strict decoder with golang-jwt's EdDSA method.
	pub := ed25519.PublicKey(fxiB64(t, rfc8037X))
	if !ed25519.Verify(pub, []byte(rfc8037Input), fxiB64(t, rfc8037Signature)) {
		t.Error("crypto/ed25519 rejects the RFC 8037 A.4 signature")
	}
	buf := make([]byte, 64)
	n, ok := b64Decode(buf, rfc8037Signature)
	if !ok || verifyMethods[algEdDSA].Verify(rfc8037Input, buf[:n], pub) != nil {
		t.Error("the verifier's decoding and method reject the RFC 8037 A.4 signature")
	}
}

// RFC 7515 Appendix A.3: an ES256 JWS and its P-256 key.
const (
	rfc7515ESX     = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
	rfc7515ESY     = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
	rfc7515ESInput = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
	rfc7515ESSig   = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)

func TestRFC7515ES256Vector(t *testing.T) {
	t.Parallel()
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(fxiB64(t, rfc7515ESX)), Y: new(big.Int).SetBytes(fxiB64(t, rfc7515ESY))}
	if !usableKey(ES256, pub) {
		t.Fatal("RFC key refused")
	}
	buf := make([]byte, 64)
	n, ok := b64Decode(buf, rfc7515ESSig)
	if !ok || verifyMethods[algES256].Verify(rfc7515ESInput, buf[:n], pub) != nil {
		t.Fatal("the verifier's decoding and method reject the RFC 7515 A.3 signature")
	}
	ks, err := NewKeySet(VerificationKey{KID: "rfc", Alg: ES256, Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []map[string]string }
	if err := json.Unmarshal(ks.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if j := set.Keys[0]; j["x"] != rfc7515ESX || j["y"] != rfc7515ESY || j["crv"] != "P-256" || j["kty"] != "EC" {
		t.Errorf("JWK %v does not round-trip the RFC 7515 A.3 key", j)
	}
}

// TestIndependentVerification verifies tokens of our Issuer the way
// another JOSE implementation would, sharing no code with the Verifier:
// fetch the JWK Set over HTTP, parse it with encoding/json, rebuild the
// public key with the standard library, and check the signature over
// "header.payload" with crypto/ed25519, crypto/ecdsa or crypto/rsa.
func TestIndependentVerification(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{EdDSA, ES256, RS256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			signer := fxiSigner(t, alg)
			now := time.Unix(1_760_000_000, 0)
			iss, err := NewIssuer("https://issuer.test", signer, WithAudience("https://api.test"), WithIssuerClock(func() time.Time { return now }))
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(iss.KeySet().Handler())
			defer srv.Close()
			tok, _, err := iss.Issue(auth.Principal{Method: auth.MethodAPIKey, KeyID: "key_1", Project: "p", Scopes: []string{"a"}}, nil, "")
			if err != nil {
				t.Fatal(err)
			}

			// The JWK Set, as any client fetches it.
			resp, err := http.Get(srv.URL + "/.well-known/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET JWKS: %d %v", resp.StatusCode, err)
			}
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(body, &set); err != nil {
				t.Fatal(err)
			}

			// The token's header and signing input.
			parts := strings.Split(tok, ".")
			var header map[string]any
			if err := json.Unmarshal(fxiB64(t, parts[0]), &header); err != nil {
				t.Fatal(err)
			}
			if header["alg"] != alg || header["typ"] != "at+jwt" {
				t.Fatalf("header %v", header)
			}
			var jwk map[string]any
			for _, k := range set.Keys {
				if k["kid"] == header["kid"] {
					jwk = k
				}
			}
			if jwk == nil || jwk["alg"] != alg || jwk["use"] != "sig" {
				t.Fatalf("no JWK for kid %v with alg %s in %s", header["kid"], alg, body)
			}
			member := func(name string) []byte { s, _ := jwk[name].(string); return fxiB64(t, s) }
			input := []byte(parts[0] + "." + parts[1])
			sig := fxiB64(t, parts[2])
			digest := sha256.Sum256(input)
			switch alg {
			case EdDSA:
				if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
					t.Fatalf("JWK %v", jwk)
				}
				if !ed25519.Verify(ed25519.PublicKey(member("x")), input, sig) {
					t.Fatal("crypto/ed25519 rejects the token")
				}
			case ES256:
				if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || len(member("x")) != 32 || len(member("y")) != 32 || len(sig) != 64 {
					t.Fatalf("JWK %v, signature of %d bytes", jwk, len(sig))
				}
				pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(member("x")), Y: new(big.Int).SetBytes(member("y"))}
				r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
				if !ecdsa.Verify(pub, digest[:], r, s) {
					t.Fatal("crypto/ecdsa rejects the token")
				}
			case RS256:
				if jwk["kty"] != "RSA" {
					t.Fatalf("JWK %v", jwk)
				}
				pub := &rsa.PublicKey{N: new(big.Int).SetBytes(member("n")), E: int(new(big.Int).SetBytes(member("e")).Int64())}
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
					t.Fatalf("crypto/rsa rejects the token: %v", err)
				}
			}
			// Tampering is caught by the same independent check.
			input[len(input)-1] ^= 1
			if alg == EdDSA && ed25519.Verify(ed25519.PublicKey(member("x")), input, sig) {
				t.Fatal("independent check accepts a tampered token")
			}

			// The claims, with encoding/json.
			var claims map[string]any
			if err := json.Unmarshal(fxiB64(t, parts[1]), &claims); err != nil {
				t.Fatal(err)
			}
			if claims["iss"] != "https://issuer.test" || claims["sub"] != "key_1" || claims["exp"] != float64(now.Add(15*time.Minute).Unix()) {
				t.Fatalf("claims %v", claims)
			}

			// golang-jwt, a third-party implementation, agrees too.
			_, err = jwt.ParseWithClaims(tok, &Claims{}, func(t *jwt.Token) (any, error) {
				return signer.Public().Key, nil
			}, jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(func() time.Time { return now }),
				jwt.WithIssuer("https://issuer.test"), jwt.WithAudience("https://api.test"), jwt.WithExpirationRequired(), jwt.WithStrictDecoding())
			if err != nil {
				t.Fatalf("golang-jwt rejects the token: %v", err)
			}
		})
	}
}

// fxiSigner returns a fresh signing key of alg (RSA once per binary).
func fxiSigner(t testing.TB, alg string) SigningKey {
	t.Helper()
	if alg == RS256 {
		return fxiRSA(t)
	}
	k, err := GenerateSigningKey(alg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var fxiRSAKey = sync.OnceValues(func() (SigningKey, error) { return GenerateSigningKey(RS256, nil) })

func fxiRSA(t testing.TB) SigningKey {
	t.Helper()
	k, err := fxiRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzBase64URL checks the Verifier's base64url decoder against the
// standard library's strict RawURLEncoding: whatever it accepts, the
// standard library accepts with the same bytes; whatever the standard
// library accepts without line breaks (which it skips), it accepts.
func FuzzBase64URL(f *testing.F) {
	for _, s := range []string{"", "A", "AA", "AB", "AAA", "AAB", "AAAA", "eyJhbGciOiJFZERTQSJ9", rfc8037Signature,
		"_-_-", "+/+/", "AA==", "AA\nAA", "A A", "Zm9vYmFy", "Zm9vYmE", "Zm9vYg", "Zm9vYh", "////"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		buf := make([]byte, len(s))
		n, ok := b64Decode(buf, s)
		std, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if ok {
			if err != nil || !bytes.Equal(buf[:n], std) {
				t.Fatalf("%q: ours %x, standard library %x %v", s, buf[:n], std, err)
			}
			if n != b64DecodedLen(len(s)) {
				t.Fatalf("%q: %d bytes, b64DecodedLen says %d", s, n, b64DecodedLen(len(s)))
			}
		} else if err == nil && !strings.ContainsAny(s, "\r\n") {
			t.Fatalf("%q: refused, the standard library decodes %x", s, std)
		}
	})
}

// FuzzStrictJSON checks the claims and header parsers: no panic, and
// whatever they accept is valid JSON that encoding/json reads the same
// way, without two member names that fold to the same name.
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{
		`{"iss":"a","sub":"b","aud":["c","d"],"exp":1760000600,"nbf":1760000000,"iat":1760000000,"jti":"j","client_id":"k","scope":"x y","project":"p","sid":"s"}`,
		`{"aud":"c","exp":1.5e9,"x":{"y":[1,2,{"z":null}]},"e":"\u00e9\ud83d\ude00\n\/"}`,
		`{"sub":"a","SUB":"b"}`, `{"ſub":"a"}`, `{"\u0073ub":"a"}`, `{"exp":1e300}`, `{"exp":"1"}`,
		` { "alg" : "EdDSA" , "kid" : "k" , "typ" : "at+jwt" } `, `{"crit":["exp"]}`, `{"a":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}`,
		`{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{}`, `[]`, `{"a":1,}`, `{"a" 1}`, `{"a":01}`, `{"a":-0.0e-0}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p jsonParser
		e := new(entry)
		ce := parseClaims(&p, s, e)
		h, he := parseHeader(&p, s)
		if ce != parseOK && he != parseOK {
			return
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("accepted invalid JSON %q", s)
		}
		// No two top-level names are equal or fold together (exact
		// duplicates included, which a map would hide).
		dec := json.NewDecoder(strings.NewReader(s))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("accepted %q, which is not an object for encoding/json: %v", s, err)
		}
		var names []string
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("accepted %q, encoding/json: %v", s, err)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatalf("accepted %q, encoding/json: %v", s, err)
			}
			names = append(names, tok.(string))
		}
		for i, a := range names {
			for _, b := range names[i+1:] {
				if strings.EqualFold(a, b) {
					t.Fatalf("accepted %q with names %q and %q", s, a, b)
				}
			}
		}
		if ce == parseOK {
			var c Claims
			if err := json.Unmarshal([]byte(s), &c); err != nil {
				// encoding/json refuses what golang-jwt's types cannot
				// hold; ours must then have refused a date or aud too.
				return
			}
			g := e.claims
			if c.Issuer != g.Issuer || c.Subject != g.Subject || c.ID != g.ID || c.ClientID != g.ClientID ||
				c.Scope != g.Scope || c.Project != g.Project || c.Session != g.Session ||
				strings.Join(c.Audience, "\x00") != strings.Join(g.Audience, "\x00") {
				t.Fatalf("%q: encoding/json reads %+v, we read %+v", s, c, g)
			}
			for _, d := range [][2]*jwt.NumericDate{{c.ExpiresAt, g.ExpiresAt}, {c.NotBefore, g.NotBefore}, {c.IssuedAt, g.IssuedAt}} {
				if (d[0] == nil) != (d[1] == nil) || (d[0] != nil && d[0].Unix() != d[1].Unix()) {
					t.Fatalf("%q: dates differ: %v and %v", s, d[0], d[1])
				}
			}
		}
		if he == parseOK && h.crit && !strings.Contains(strings.ToLower(s), "crit") && !strings.Contains(s, `\u`) {
			t.Fatalf("%q: crit from nowhere", s)
		}
	})
}
