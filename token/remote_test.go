package token_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/syncbuf"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/token"
)

// newFakeClock returns a clock that moves only when told to.
func newFakeClock() *testclock.Clock {
	return testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// jwksServer is an httptest server that serves a JWK Set it can change,
// and counts the requests it gets.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	status  int
	body    []byte
	gate    chan struct{} // if not nil, requests wait for it to close
	started chan struct{} // if not nil, gets a value when a request arrives
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		status, body, gate, started := s.status, s.body, s.gate, s.started
		s.mu.Unlock()
		if started != nil {
			select {
			case started <- struct{}{}:
			default:
			}
		}
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// Test keys, made once: RSA key generation is slow under -race.
var (
	testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	testECKey = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
	testEdKey = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func fixed(n *big.Int, size int) []byte {
	b := make([]byte, size)
	return n.FillBytes(b)
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(fixed(k.X, 32)), "y": b64(fixed(k.Y, 32))}
}

func okpJWK(kid string, k ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k)}
}

// with returns a copy of jwk with the members of kv set (a nil value
// deletes the member).
func with(jwk map[string]any, kv ...any) map[string]any {
	c := make(map[string]any, len(jwk))
	for k, v := range jwk {
		c[k] = v
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

func jwks(keys ...any) []byte {
	if keys == nil {
		keys = []any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// canary is a usable key added to sets under test, so that a set whose
// other keys are all skipped still loads.
func canary() map[string]any { return okpJWK("canary", testEdKey().Public().(ed25519.PublicKey)) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newRemote builds a RemoteKeySet on srv with a fake clock, a long
// background interval (so that only lookups trigger fetches) and no
// logging, and closes it at the end of the test.
func newRemote(t testing.TB, srv *jwksServer, clock *testclock.Clock, opts ...token.RemoteOption) *token.RemoteKeySet {
	t.Helper()
	base := []token.RemoteOption{
		token.WithRemoteClock(clock.Now),
		token.WithRefreshInterval(time.Hour),
		token.WithRemoteLogger(quietLogger()),
	}
	s, err := token.NewRemoteKeySet(context.Background(), srv.URL, append(base, opts...)...)
	if err != nil {
		t.Fatalf("NewRemoteKeySet: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRemoteKeySetParsesJWKs(t *testing.T) {
	t.Parallel()
	rsaPub := &testRSAKey().PublicKey
	ecPub := &testECKey().PublicKey
	edPub := testEdKey().Public().(ed25519.PublicKey)
	rsaOK := rsaJWK("k", rsaPub)
	ecOK := ecJWK("k", ecPub)
	okpOK := okpJWK("k", edPub)

	// A 1024-bit and a 8200-bit odd "modulus": the set checks sizes, not primes.
	small := make([]byte, 128)
	small[0], small[127] = 0x80, 1
	huge := make([]byte, 1025)
	huge[0], huge[1024] = 0x80, 1
	even := rsaPub.N.Bytes()
	even = append([]byte(nil), even...)
	even[len(even)-1] &^= 1

	offCurve := with(ecOK, "y", b64(make([]byte, 32)))
	short := fixed(ecPub.X, 32)[1:]

	cases := []struct {
		name    string
		jwk     any
		kid     string // looked up instead of "k" if set
		wantAlg string // "" = the key must be skipped
	}{
		{name: "RSA without alg is RS256", jwk: rsaOK, wantAlg: token.RS256},
		{name: "RSA with alg RS256", jwk: with(rsaOK, "alg", "RS256", "use", "sig"), wantAlg: token.RS256},
		{name: "RSA with key_ops verify", jwk: with(rsaOK, "key_ops", []string{"verify"}), wantAlg: token.RS256},
		{name: "RSA x5c x5u are ignored", jwk: with(rsaOK, "x5u", "http://127.0.0.1:1/x", "x5c", []string{"AAAA"}, "jku", "http://127.0.0.1:1/j"), wantAlg: token.RS256},
		{name: "RSA with alg PS256", jwk: with(rsaOK, "alg", "PS256")},
		{name: "RSA with alg RS512", jwk: with(rsaOK, "alg", "RS512")},
		{name: "RSA with alg ES256", jwk: with(rsaOK, "alg", "ES256")},
		{name: "RSA with alg HS256", jwk: with(rsaOK, "alg", "HS256")},
		{name: "RSA with alg none", jwk: with(rsaOK, "alg", "none")},
		{name: "RSA with lowercase alg", jwk: with(rsaOK, "alg", "rs256")},
		{name: "RSA 1024 bits", jwk: with(rsaOK, "n", b64(small))},
		{name: "RSA 8200 bits", jwk: with(rsaOK, "n", b64(huge))},
		{name: "RSA even modulus", jwk: with(rsaOK, "n", b64(even))},
		{name: "RSA exponent 1", jwk: with(rsaOK, "e", "AQ")},
		{name: "RSA even exponent", jwk: with(rsaOK, "e", "AQAA")},
		{name: "RSA exponent over 31 bits", jwk: with(rsaOK, "e", b64([]byte{0x80, 0, 0, 1}))},
		{name: "RSA exponent 5 bytes", jwk: with(rsaOK, "e", b64([]byte{1, 0, 0, 0, 1}))},
		{name: "RSA empty exponent", jwk: with(rsaOK, "e", "")},
		{name: "RSA without n", jwk: with(rsaOK, "n", nil)},
		{name: "RSA padded base64", jwk: with(rsaOK, "e", "AQAB=")},
		{name: "RSA standard base64", jwk: with(rsaOK, "n", base64.StdEncoding.EncodeToString(rsaPub.N.Bytes()))},
		{name: "RSA with private exponent", jwk: with(rsaOK, "d", "AQAB")},
		{name: "RSA with use enc", jwk: with(rsaOK, "use", "enc")},
		{name: "RSA with empty use", jwk: with(rsaOK, "use", "")},
		{name: "RSA with key_ops sign only", jwk: with(rsaOK, "key_ops", []string{"sign"})},
		{name: "RSA with key_ops not an array", jwk: with(rsaOK, "key_ops", "verify")},
		{name: "EC P-256 is ES256", jwk: ecOK, wantAlg: token.ES256},
		{name: "EC with alg ES256", jwk: with(ecOK, "alg", "ES256"), wantAlg: token.ES256},
		{name: "EC with alg ES384", jwk: with(ecOK, "alg", "ES384")},
		{name: "EC with alg RS256", jwk: with(ecOK, "alg", "RS256")},
		{name: "EC P-384", jwk: with(ecOK, "crv", "P-384")},
		{name: "EC secp256k1", jwk: with(ecOK, "crv", "secp256k1")},
		{name: "EC without crv", jwk: with(ecOK, "crv", nil)},
		{name: "EC point off the curve", jwk: offCurve},
		{name: "EC short x", jwk: with(ecOK, "x", b64(short))},
		{name: "EC 33-byte x", jwk: with(ecOK, "x", b64(append([]byte{0}, fixed(ecPub.X, 32)...)))},
		{name: "EC with private d", jwk: with(ecOK, "d", b64(make([]byte, 32)))},
		{name: "OKP Ed25519 is EdDSA", jwk: okpOK, wantAlg: token.EdDSA},
		{name: "OKP with alg EdDSA", jwk: with(okpOK, "alg", "EdDSA"), wantAlg: token.EdDSA},
		{name: "OKP with alg Ed25519", jwk: with(okpOK, "alg", "Ed25519")},
		{name: "OKP with alg ES256", jwk: with(okpOK, "alg", "ES256")},
		{name: "OKP X25519", jwk: with(okpOK, "crv", "X25519")},
		{name: "OKP Ed448", jwk: with(okpOK, "crv", "Ed448")},
		{name: "OKP 31-byte x", jwk: with(okpOK, "x", b64(edPub[:31]))},
		{name: "OKP with private d", jwk: with(okpOK, "d", b64(make([]byte, 32)))},
		{name: "oct key", jwk: map[string]any{"kty": "oct", "kid": "k", "k": b64(make([]byte, 32)), "alg": "HS256"}},
		{name: "oct key without k", jwk: map[string]any{"kty": "oct", "kid": "k", "alg": "HS256"}},
		{name: "unknown kty", jwk: with(okpOK, "kty", "DSA")},
		{name: "no kty", jwk: with(okpOK, "kty", nil)},
		{name: "no kid", jwk: with(okpOK, "kid", nil)},
		{name: "empty kid", jwk: with(okpOK, "kid", "")},
		{name: "kid is a number", jwk: with(okpOK, "kid", 7), kid: "7"},
		{name: "kid over 256 bytes", jwk: with(okpOK, "kid", strings.Repeat("k", 257)), kid: strings.Repeat("k", 257)},
		{name: "kid of 256 bytes", jwk: with(okpOK, "kid", strings.Repeat("k", 256)), kid: strings.Repeat("k", 256), wantAlg: token.EdDSA},
		{name: "uppercase KID is not kid", jwk: with(okpOK, "kid", nil, "KID", "k")},
		{name: "alg is not a string", jwk: with(okpOK, "alg", 1)},
		{name: "use is null", jwk: with(okpOK, "use", json.RawMessage("null"))},
		{name: "key is not an object", jwk: "k"},
		{name: "key is null", jwk: nil},
		{name: "duplicate member", jwk: json.RawMessage(`{"kty":"OKP","crv":"Ed25519","kid":"k","x":"` + b64(edPub) + `","kid":"k"}`)},
		{name: "duplicate member alg", jwk: json.RawMessage(`{"kty":"OKP","crv":"Ed25519","kid":"k","x":"` + b64(edPub) + `","alg":"EdDSA","alg":"HS256"}`)},
	}
	srv := newJWKSServer(t, nil)
	mux := http.NewServeMux()
	for i, c := range cases {
		body := jwks(canary(), c.jwk)
		mux.HandleFunc(fmt.Sprintf("/%d", i), func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) })
	}
	srv.Config.Handler = mux
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := token.NewRemoteKeySet(t.Context(), fmt.Sprintf("%s/%d", srv.URL, i),
				token.WithRemoteLogger(quietLogger()), token.WithRefreshInterval(time.Hour))
			if err != nil {
				t.Fatalf("NewRemoteKeySet: %v", err)
			}
			defer s.Close()
			kid := "k"
			if c.kid != "" {
				kid = c.kid
			}
			k, err := s.VerificationKey(t.Context(), kid)
			if c.wantAlg == "" {
				if !errors.Is(err, token.ErrUnknownKID) {
					t.Fatalf("VerificationKey(%.20q) = %+v, %v; want ErrUnknownKID", kid, k, err)
				}
			} else {
				if err != nil {
					t.Fatalf("VerificationKey: %v", err)
				}
				if k.Alg != c.wantAlg || k.KID != kid {
					t.Fatalf("key = kid %q alg %q, want kid %q alg %q", k.KID, k.Alg, kid, c.wantAlg)
				}
				checkKeyType(t, k)
			}
			if _, err := s.VerificationKey(t.Context(), "canary"); err != nil {
				t.Fatalf("canary: %v", err)
			}
		})
	}
}

// checkKeyType fails unless k's Go type is the one its Alg needs.
func checkKeyType(t *testing.T, k token.VerificationKey) {
	t.Helper()
	var ok bool
	switch k.Alg {
	case token.RS256:
		var rk *rsa.PublicKey
		rk, ok = k.Key.(*rsa.PublicKey)
		ok = ok && rk.N.BitLen() >= 2048 && rk.E >= 3
	case token.ES256:
		var ek *ecdsa.PublicKey
		ek, ok = k.Key.(*ecdsa.PublicKey)
		ok = ok && ek.Curve == elliptic.P256()
	case token.EdDSA:
		var ek ed25519.PublicKey
		ek, ok = k.Key.(ed25519.PublicKey)
		ok = ok && len(ek) == ed25519.PublicKeySize
	}
	if !ok {
		t.Fatalf("key %q: alg %q with key of type %T", k.KID, k.Alg, k.Key)
	}
}

func TestRemoteKeySetParsedKeysMatchOriginals(t *testing.T) {
	t.Parallel()
	rsaPub := &testRSAKey().PublicKey
	ecPub := &testECKey().PublicKey
	edPub := testEdKey().Public().(ed25519.PublicKey)
	srv := newJWKSServer(t, jwks(rsaJWK("r", rsaPub), ecJWK("e", ecPub), okpJWK("o", edPub)))
	s := newRemote(t, srv, newFakeClock())
	for kid, want := range map[string]interface{ Equal(crypto.PublicKey) bool }{"r": rsaPub, "e": ecPub, "o": edPub} {
		k, err := s.VerificationKey(t.Context(), kid)
		if err != nil {
			t.Fatalf("%s: %v", kid, err)
		}
		if !want.Equal(k.Key) {
			t.Errorf("%s: parsed key differs from the original", kid)
		}
	}
}

func TestRemoteKeySetDuplicateKIDsSkipsBoth(t *testing.T) {
	t.Parallel()
	edPub := testEdKey().Public().(ed25519.PublicKey)
	ecPub := &testECKey().PublicKey
	cases := []struct {
		name string
		body []byte
		want map[string]bool // kid → usable
	}{
		{"two usable keys", jwks(okpJWK("d", edPub), ecJWK("d", ecPub), canary()), map[string]bool{"d": false, "canary": true}},
		{"three usable keys", jwks(okpJWK("d", edPub), ecJWK("d", ecPub), okpJWK("d", edPub), canary()), map[string]bool{"d": false}},
		{"an enc key does not count", jwks(okpJWK("d", edPub), with(ecJWK("d", ecPub), "use", "enc")), map[string]bool{"d": true}},
		{"a bad key does not count", jwks(with(ecJWK("d", ecPub), "crv", "P-521"), okpJWK("d", edPub)), map[string]bool{"d": true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newRemote(t, newJWKSServer(t, c.body), newFakeClock())
			for kid, usable := range c.want {
				_, err := s.VerificationKey(t.Context(), kid)
				if usable != (err == nil) {
					t.Errorf("VerificationKey(%q): err = %v, want usable %v", kid, err, usable)
				}
			}
		})
	}
}

func TestRemoteKeySetBadSets(t *testing.T) {
	t.Parallel()
	canaryJSON, _ := json.Marshal(canary())
	big := []byte(`{"keys":[`)
	for len(big) <= token.MaxJWKSSize {
		big = append(big, `{"kty":"oct","kid":"pad"},`...)
	}
	big = append(append(big, canaryJSON...), "]}"...)
	cases := []struct {
		name   string
		status int
		body   []byte
	}{
		{"status 500", 500, jwks(canary())},
		{"status 404", 404, jwks(canary())},
		{"status 204", 204, nil},
		{"not JSON", 200, []byte("<html>")},
		{"empty body", 200, nil},
		{"JSON array", 200, []byte(`[` + string(jwks(canary())) + `]`)},
		{"keys not an array", 200, []byte(`{"keys":{"kty":"OKP"}}`)},
		{"keys null", 200, []byte(`{"keys":null}`)},
		{"no keys member", 200, []byte(`{"Keys":[]}`)},
		{"duplicate keys member", 200, []byte(`{"keys":[],"keys":` + string(jwks(canary())[8:]))},
		{"trailing data", 200, append(jwks(canary()), " {}"...)},
		{"no keys", 200, jwks()},
		{"no usable keys", 200, jwks(map[string]any{"kty": "oct", "kid": "s", "k": "c2VjcmV0"})},
		{"over 1 MiB", 200, big},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, c.body)
			srv.set(c.status, c.body)
			s, err := token.NewRemoteKeySet(t.Context(), srv.URL, token.WithRemoteLogger(quietLogger()))
			if err == nil {
				s.Close()
				t.Fatal("NewRemoteKeySet succeeded")
			}
			if errors.Is(err, token.ErrUnknownKID) || errors.Is(err, token.ErrInvalidConfig) {
				t.Fatalf("error %v must be a fetch failure", err)
			}
			if !strings.HasPrefix(err.Error(), "token: remote JWK Set ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestRemoteKeySetOptions(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(canary()))
	cases := []struct {
		name string
		url  string
		opts []token.RemoteOption
	}{
		{"empty URL", "", nil},
		{"relative URL", "/jwks.json", nil},
		{"ftp URL", "ftp://example.com/jwks.json", nil},
		{"file URL", "file:///etc/passwd", nil},
		{"no host", "http:///jwks.json", nil},
		{"bad URL", "http://[::1", nil},
		{"nil client", srv.URL, []token.RemoteOption{token.WithHTTPClient(nil)}},
		{"zero refresh interval", srv.URL, []token.RemoteOption{token.WithRefreshInterval(0)}},
		{"negative refetch interval", srv.URL, []token.RemoteOption{token.WithMinRefetchInterval(-time.Second)}},
		{"nil clock", srv.URL, []token.RemoteOption{token.WithRemoteClock(nil)}},
		{"nil option", srv.URL, []token.RemoteOption{nil}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := token.NewRemoteKeySet(t.Context(), c.url, c.opts...)
			if !errors.Is(err, token.ErrInvalidConfig) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if n := srv.fetches.Load(); n != 0 {
		t.Errorf("invalid configurations fetched %d times", n)
	}
}

func TestRemoteKeySetRefusesRedirects(t *testing.T) {
	t.Parallel()
	target := newJWKSServer(t, jwks(canary()))
	redirector := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirector.Close)
	s, err := token.NewRemoteKeySet(t.Context(), redirector.URL, token.WithRemoteLogger(quietLogger()))
	if err == nil {
		s.Close()
		t.Fatal("NewRemoteKeySet followed a redirect")
	}
	if n := target.fetches.Load(); n != 0 {
		t.Errorf("redirect target got %d requests", n)
	}
}

func TestRemoteKeySetNeverFollowsKeyURLs(t *testing.T) {
	t.Parallel()
	other := newJWKSServer(t, jwks(canary()))
	srv := newJWKSServer(t, jwks(with(canary(), "x5u", other.URL), map[string]any{"kty": "RSA", "kid": "x", "x5u": other.URL, "jku": other.URL}))
	s := newRemote(t, srv, newFakeClock())
	if _, err := s.VerificationKey(t.Context(), "x"); !errors.Is(err, token.ErrUnknownKID) {
		t.Errorf("key x: err = %v, want ErrUnknownKID", err)
	}
	if _, err := s.VerificationKey(t.Context(), "canary"); err != nil {
		t.Errorf("canary: %v", err)
	}
	if n := other.fetches.Load(); n != 0 {
		t.Errorf("the x5u/jku URL got %d requests", n)
	}
}

func TestRemoteKeySetNewKeyAfterOneRefetch(t *testing.T) {
	t.Parallel()
	edPub := testEdKey().Public().(ed25519.PublicKey)
	ecPub := &testECKey().PublicKey
	srv := newJWKSServer(t, jwks(okpJWK("old", edPub)))
	clock := newFakeClock()
	s := newRemote(t, srv, clock)
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches after start = %d, want 1", n)
	}

	srv.set(200, jwks(okpJWK("old", edPub), ecJWK("new", ecPub)))
	// Within 5 s of the last fetch, an unknown kid does not fetch.
	clock.Advance(4 * time.Second)
	if _, err := s.VerificationKey(t.Context(), "new"); !errors.Is(err, token.ErrUnknownKID) {
		t.Fatalf("within the window: err = %v, want ErrUnknownKID", err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches within the window = %d, want 1", n)
	}
	clock.Advance(time.Second)
	k, err := s.VerificationKey(t.Context(), "new")
	if err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if k.Alg != token.ES256 {
		t.Errorf("alg = %q", k.Alg)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2: one refetch", n)
	}
	// Known kids never fetch.
	clock.Advance(time.Hour)
	for range 100 {
		if _, err := s.VerificationKey(t.Context(), "old"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches after known lookups = %d, want 2", n)
	}
}

func TestRemoteKeySetFloodOfRandomKIDs(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(canary()))
	clock := newFakeClock()
	s := newRemote(t, srv, clock)
	clock.Advance(5 * time.Second) // the window of the first fetch is over

	const lookups, workers = 10000, 20
	var unknown, other atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lookups / workers {
				_, err := s.VerificationKey(context.Background(), fmt.Sprintf("random-%d-%d-%x", w, i, i*7919))
				if errors.Is(err, token.ErrUnknownKID) {
					unknown.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := srv.fetches.Load(); n > 2 {
		t.Errorf("%d lookups of random kids: %d fetches, want at most 2 (start + 1)", lookups, n)
	}
	if u := unknown.Load(); u != lookups {
		t.Errorf("%d lookups answered ErrUnknownKID, want %d (%d other)", u, lookups, other.Load())
	}
	// The next window allows one more.
	clock.Advance(5 * time.Second)
	for i := range 1000 {
		_, _ = s.VerificationKey(t.Context(), fmt.Sprint("again-", i))
	}
	if n := srv.fetches.Load(); n > 3 {
		t.Errorf("after the next window: %d fetches, want at most 3", n)
	}
}

func TestRemoteKeySetConcurrentLookupsShareOneFetch(t *testing.T) {
	t.Parallel()
	edPub := testEdKey().Public().(ed25519.PublicKey)
	srv := newJWKSServer(t, jwks(canary()))
	clock := newFakeClock()
	s := newRemote(t, srv, clock)
	clock.Advance(time.Minute)

	gate, started := make(chan struct{}), make(chan struct{}, 1)
	srv.mu.Lock()
	srv.gate, srv.started = gate, started
	srv.body = jwks(canary(), okpJWK("new", edPub))
	srv.mu.Unlock()

	const n = 100
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.VerificationKey(context.Background(), "new")
			errs <- err
		}()
	}
	<-started // one fetch is running, held at the gate
	time.Sleep(20 * time.Millisecond)
	close(gate)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("lookup: %v", err)
		}
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2 (start + one shared)", got)
	}
}

func TestRemoteKeySetKeepsKeysWhenFetchFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status int
		body   []byte
	}{
		{"status 500", 500, nil},
		{"status 302", 302, nil},
		{"invalid JSON", 200, []byte(`{"keys":[`)},
		{"empty set", 200, jwks()},
		{"only unusable keys", 200, jwks(map[string]any{"kty": "oct", "kid": "canary", "k": "c2VjcmV0"})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, jwks(canary()))
			clock := newFakeClock()
			var logs syncbuf.Buffer
			s := newRemote(t, srv, clock, token.WithRemoteLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			srv.set(c.status, c.body)
			clock.Advance(10 * time.Second)
			if _, err := s.VerificationKey(t.Context(), "unknown"); !errors.Is(err, token.ErrUnknownKID) {
				t.Fatalf("unknown kid after a failed fetch: err = %v, want ErrUnknownKID", err)
			}
			if n := srv.fetches.Load(); n != 2 {
				t.Fatalf("fetches = %d, want 2", n)
			}
			if _, err := s.VerificationKey(t.Context(), "canary"); err != nil {
				t.Fatalf("previous key lost: %v", err)
			}
			if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "fetch failed") {
				t.Errorf("failure not logged: %q", out)
			}
		})
	}
}

func TestRemoteKeySetLazyFetch(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusServiceUnavailable, nil)
	clock := newFakeClock()
	s := newRemote(t, srv, clock, token.WithLazyFetch())

	// Until a fetch succeeds, a lookup fails with a back-end error.
	_, err := s.VerificationKey(t.Context(), "canary")
	if err == nil || errors.Is(err, token.ErrUnknownKID) {
		t.Fatalf("before any keys: err = %v, want a fetch error that is not ErrUnknownKID", err)
	}
	if !strings.Contains(err.Error(), "status 503") {
		t.Errorf("err = %v, want the fetch error", err)
	}
	// Rate limited, still the fetch error.
	n := srv.fetches.Load()
	if _, err := s.VerificationKey(t.Context(), "canary"); err == nil || errors.Is(err, token.ErrUnknownKID) {
		t.Fatalf("second lookup: err = %v", err)
	}
	if m := srv.fetches.Load(); m != n {
		t.Errorf("rate-limited lookup fetched: %d → %d", n, m)
	}

	srv.set(200, jwks(canary()))
	clock.Advance(5 * time.Second)
	if _, err := s.VerificationKey(t.Context(), "canary"); err != nil {
		t.Fatalf("after the provider came back: %v", err)
	}
	if _, err := s.VerificationKey(t.Context(), "other"); !errors.Is(err, token.ErrUnknownKID) {
		t.Errorf("unknown kid once keys exist: err = %v, want ErrUnknownKID", err)
	}
}

func TestRemoteKeySetLazyFetchesInBackground(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(canary()))
	s := newRemote(t, srv, newFakeClock(), token.WithLazyFetch())
	waitFor(t, "the background fetch", func() bool { return srv.fetches.Load() >= 1 })
	waitFor(t, "the key", func() bool {
		_, err := s.VerificationKey(t.Context(), "canary")
		return err == nil
	})
}

func TestRemoteKeySetBackgroundRefresh(t *testing.T) {
	t.Parallel()
	edPub := testEdKey().Public().(ed25519.PublicKey)
	ecPub := &testECKey().PublicKey
	srv := newJWKSServer(t, jwks(okpJWK("a", edPub), ecJWK("b", ecPub)))
	clock := newFakeClock() // never advanced: lookups cannot trigger fetches
	s := newRemote(t, srv, clock, token.WithRefreshInterval(10*time.Millisecond))

	// Key a is removed and c is added: the background refresh alone sees it.
	srv.set(200, jwks(ecJWK("b", ecPub), okpJWK("c", edPub)))
	waitFor(t, "removed key a to stop being trusted", func() bool {
		_, err := s.VerificationKey(t.Context(), "a")
		return errors.Is(err, token.ErrUnknownKID)
	})
	if _, err := s.VerificationKey(t.Context(), "c"); err != nil {
		t.Errorf("new key c: %v", err)
	}
	if _, err := s.VerificationKey(t.Context(), "b"); err != nil {
		t.Errorf("kept key b: %v", err)
	}
}

func TestRemoteKeySetContextCancellation(t *testing.T) {
	t.Parallel()
	edPub := testEdKey().Public().(ed25519.PublicKey)
	srv := newJWKSServer(t, jwks(canary()))
	clock := newFakeClock()
	s := newRemote(t, srv, clock)
	clock.Advance(time.Minute)

	gate := make(chan struct{})
	srv.mu.Lock()
	srv.gate = gate
	srv.body = jwks(canary(), okpJWK("new", edPub))
	srv.mu.Unlock()

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := s.VerificationKey(ctx, "new")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, token.ErrUnknownKID) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// Known kids do not wait for the running fetch.
	if _, err := s.VerificationKey(ctx, "canary"); err != nil {
		t.Errorf("known kid during a fetch: %v", err)
	}
	close(gate)
	// The fetch went on without the caller and stored the key.
	waitFor(t, "the fetch to finish", func() bool {
		_, err := s.VerificationKey(t.Context(), "new")
		return err == nil
	})

	t.Run("constructor", func(t *testing.T) {
		hung := newJWKSServer(t, jwks(canary()))
		gate := make(chan struct{})
		hung.mu.Lock()
		hung.gate = gate
		hung.mu.Unlock()
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := token.NewRemoteKeySet(ctx, hung.URL, token.WithRemoteLogger(quietLogger()))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
		close(gate)
	})
}

// countingTransport counts the requests a client sends, on the client's
// side: a server counts a request that the client already gave up on
// only when it gets to it, possibly after Close returned.
type countingTransport struct {
	base *http.Transport
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestRemoteKeySetClose(t *testing.T) {
	// Not parallel: it counts goroutines.
	srv := newJWKSServer(t, jwks(canary()))

	t.Run("fetches stop", func(t *testing.T) {
		ct := &countingTransport{base: &http.Transport{}}
		defer ct.base.CloseIdleConnections()
		s, err := token.NewRemoteKeySet(t.Context(), srv.URL, token.WithHTTPClient(&http.Client{Transport: ct}),
			token.WithRefreshInterval(time.Millisecond), token.WithRemoteLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "background fetches", func() bool { return ct.n.Load() >= 3 })
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		n := ct.n.Load()
		time.Sleep(30 * time.Millisecond)
		if m := ct.n.Load(); m != n {
			t.Errorf("fetches went on after Close: %d → %d", n, m)
		}
		// Known keys still work; unknown ones never fetch.
		if _, err := s.VerificationKey(t.Context(), "canary"); err != nil {
			t.Errorf("known kid after Close: %v", err)
		}
		if _, err := s.VerificationKey(t.Context(), "unknown"); !errors.Is(err, token.ErrUnknownKID) {
			t.Errorf("unknown kid after Close: %v", err)
		}
		if m := ct.n.Load(); m != n {
			t.Errorf("lookup after Close fetched")
		}
	})

	t.Run("no goroutine left", func(t *testing.T) {
		before := runtime.NumGoroutine()
		s, err := token.NewRemoteKeySet(t.Context(), srv.URL, // the default client
			token.WithRefreshInterval(time.Millisecond), token.WithRemoteLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		n := srv.fetches.Load()
		waitFor(t, "background fetches", func() bool { return srv.fetches.Load() >= n+2 })
		s.Close()
		waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	})
}

func TestRemoteKeySetCloseReleasesWaiters(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(canary()))
	clock := newFakeClock()
	s := newRemote(t, srv, clock)
	clock.Advance(time.Minute)
	gate, started := make(chan struct{}), make(chan struct{}, 1)
	defer close(gate)
	srv.mu.Lock()
	srv.gate, srv.started = gate, started
	srv.mu.Unlock()
	errc := make(chan error, 1)
	go func() {
		_, err := s.VerificationKey(context.Background(), "new")
		errc <- err
	}()
	<-started
	s.Close() // aborts the held fetch
	select {
	case err := <-errc:
		if !errors.Is(err, token.ErrUnknownKID) {
			t.Errorf("err = %v, want ErrUnknownKID", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lookup still waiting after Close")
	}
}

func TestRemoteKeySetLogsNoSecrets(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwks(canary(), with(canary(), "kid", "priv", "d", "c2VjcmV0LWtleS1tYXRlcmlhbA")))
	var logs syncbuf.Buffer
	u := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1)
	s, err := token.NewRemoteKeySet(t.Context(), u, token.WithRemoteLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		token.WithRefreshInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.set(500, nil)
	_, err = token.NewRemoteKeySet(t.Context(), u, token.WithRemoteLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err == nil {
		t.Fatal("no error for status 500")
	}
	out := logs.String() + err.Error()
	for _, secret := range []string{"hunter2", "c2VjcmV0LWtleS1tYXRlcmlhbA"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs or error contain %q: %s", secret, out)
		}
	}
	for _, want := range []string{"kid=priv", "private key material", "remote JWK Set loaded", "fetch failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q: %s", want, out)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// bodyTransport answers every request with one body, in memory.
type bodyTransport []byte

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
}

func FuzzRemoteKeySet(f *testing.F) {
	rsaPub := &testRSAKey().PublicKey
	ecPub := &testECKey().PublicKey
	edPub := testEdKey().Public().(ed25519.PublicKey)
	f.Add(jwks(rsaJWK("r", rsaPub), ecJWK("e", ecPub), okpJWK("o", edPub)))
	f.Add(jwks(with(rsaJWK("r", rsaPub), "alg", "PS256"), with(ecJWK("e", ecPub), "crv", "P-384")))
	f.Add(jwks(map[string]any{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"b"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"z","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"e","n":"` + b64(rsaPub.N.Bytes()) + `","e":"AAAAAAEAAQ"}]}`))
	f.Add([]byte(`{"keys":[null,1,"x",[],{}]}`))
	f.Add([]byte(`{"keys":[]} x`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := token.NewRemoteKeySet(context.Background(), "http://jwks.invalid/",
			token.WithHTTPClient(&http.Client{Transport: bodyTransport(body)}),
			token.WithRemoteLogger(quietLogger()), token.WithRefreshInterval(time.Hour))
		if err != nil {
			return
		}
		defer s.Close()
		// Find the kids with names matched exactly, as the set does.
		var doc map[string]json.RawMessage
		var keys []map[string]json.RawMessage
		_ = json.Unmarshal(body, &doc)
		_ = json.Unmarshal(doc["keys"], &keys)
		found := 0
		for _, k := range keys {
			var kid string
			if json.Unmarshal(k["kid"], &kid) != nil {
				continue
			}
			vk, err := s.VerificationKey(context.Background(), kid)
			if err != nil {
				if !errors.Is(err, token.ErrUnknownKID) {
					t.Fatalf("lookup of %q: %v", kid, err)
				}
				continue
			}
			found++
			if vk.KID != kid {
				t.Fatalf("kid %q returned key %q", kid, vk.KID)
			}
			var ok2 bool
			switch vk.Alg {
			case token.RS256:
				var rk *rsa.PublicKey
				rk, ok2 = vk.Key.(*rsa.PublicKey)
				ok2 = ok2 && rk.N.BitLen() >= 2048 && rk.N.BitLen() <= 8192 && rk.E >= 3 && rk.E%2 == 1
			case token.ES256:
				var ek *ecdsa.PublicKey
				ek, ok2 = vk.Key.(*ecdsa.PublicKey)
				if ok2 {
					_, err := ek.ECDH()
					ok2 = err == nil
				}
			case token.EdDSA:
				var ek ed25519.PublicKey
				ek, ok2 = vk.Key.(ed25519.PublicKey)
				ok2 = ok2 && len(ek) == 32
			}
			if !ok2 {
				t.Fatalf("kid %q: alg %q with %T", kid, vk.Alg, vk.Key)
			}
		}
		if found == 0 {
			t.Fatalf("NewRemoteKeySet succeeded with no usable key found by kid")
		}
	})
}

func BenchmarkRemoteKeySetKnownKID(b *testing.B) {
	srv := newJWKSServer(b, jwks(canary(), okpJWK("k", testEdKey().Public().(ed25519.PublicKey))))
	s := newRemote(b, srv, newFakeClock())
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.VerificationKey(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRemoteKeySetUnknownKID(b *testing.B) {
	srv := newJWKSServer(b, jwks(canary()))
	s := newRemote(b, srv, newFakeClock())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.VerificationKey(ctx, "unknown"); !errors.Is(err, token.ErrUnknownKID) {
			b.Fatal(err)
		}
	}
}

// idp is an external identity provider for the integration tests: its
// signing keys, made with GenerateSigningKey and NewSigningKey, and an
// httptest server publishing their JWK Set, built by NewKeySet.
type idp struct {
	*jwksServer
	ed, ec, rsa token.SigningKey
}

const (
	idpIssuer   = "https://idp.example.com/"
	idpAudience = "https://api.example.com"
)

func newIdP(t *testing.T) *idp {
	t.Helper()
	ed, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := token.GenerateSigningKey(token.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := token.NewSigningKey("rsa-1", testRSAKey()) // RSA generation is slow: reuse one key
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{ed: ed, ec: ec, rsa: rk}
	p.jwksServer = newJWKSServer(t, p.publish(t, ed, ec, rk))
	return p
}

// publish returns the JWK Set of keys, as keygate's KeySet writes it.
func (p *idp) publish(t *testing.T, keys ...token.SigningKey) []byte {
	t.Helper()
	var pub []token.VerificationKey
	for _, k := range keys {
		pub = append(pub, k.Public())
	}
	ks, err := token.NewKeySet(pub...)
	if err != nil {
		t.Fatal(err)
	}
	return ks.JWKS()
}

// sign signs claims with golang-jwt as an identity provider would: header
// alg and kid, no typ unless typ is set.
func sign(t *testing.T, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	delete(tok.Header, "typ")
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestRemoteKeySetWithVerifier(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	clock := newFakeClock()
	now := clock.Now()
	remote := newRemote(t, p.jwksServer, clock)
	v, err := token.NewVerifier(remote,
		token.WithExpectedIssuer(idpIssuer),
		token.WithExpectedAudience(idpAudience),
		token.WithTokenType(""),
		token.WithVerifierClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	// A verifier that even allows HS256: the key's own alg still rules.
	vHS, err := token.NewVerifier(remote,
		token.WithExpectedIssuer(idpIssuer),
		token.WithExpectedAudience(idpAudience),
		token.WithTokenType(""),
		token.WithAlgorithms(token.EdDSA, token.ES256, token.RS256, token.HS256),
		token.WithVerifierClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}

	claims := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": idpIssuer, "aud": idpAudience, "sub": "user-42",
			"scope": "models:read chat:write", "jti": "id-1",
			"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
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
	rsaPub := &testRSAKey().PublicKey
	attacker, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	jku := newJWKSServer(t, p.publish(t, attacker))

	cases := []struct {
		name  string
		token string
		want  error // nil: valid
		both  bool  // also check with the HS256-allowing verifier
	}{
		{name: "EdDSA without typ", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims(), nil)},
		{name: "ES256 with typ JWT", token: sign(t, jwt.SigningMethodES256, p.ec.KID, p.ec.Key, claims(), map[string]any{"typ": "JWT"})},
		{name: "RS256 with typ at+jwt and aud array", token: sign(t, jwt.SigningMethodRS256, p.rsa.KID, p.rsa.Key,
			claims("aud", []string{"other", idpAudience}), map[string]any{"typ": "at+jwt"})},
		{name: "expired", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key,
			claims("iat", now.Add(-time.Hour).Unix(), "exp", now.Add(-time.Minute).Unix()), nil), want: token.ErrExpired},
		{name: "no exp", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims("exp", nil), nil), want: token.ErrExpired},
		{name: "lifetime over an hour", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key,
			claims("exp", now.Add(2*time.Hour).Unix()), nil), want: token.ErrLifetime},
		{name: "not yet valid", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key,
			claims("nbf", now.Add(5*time.Minute).Unix()), nil), want: token.ErrNotYetValid},
		{name: "wrong aud", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims("aud", "https://other.example.com"), nil), want: token.ErrAudience},
		{name: "aud with trailing slash", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims("aud", idpAudience+"/"), nil), want: token.ErrAudience},
		{name: "wrong iss", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims("iss", "https://evil.example.com/"), nil), want: token.ErrIssuer},
		{name: "alg ES256 with the kid of the Ed25519 key", token: sign(t, jwt.SigningMethodES256, p.ed.KID, p.ec.Key, claims(), nil), want: token.ErrAlgorithm, both: true},
		{name: "alg RS256 with the kid of the EC key", token: sign(t, jwt.SigningMethodRS256, p.ec.KID, p.rsa.Key, claims(), nil), want: token.ErrAlgorithm, both: true},
		{name: "HS256 with the RSA modulus as secret", token: sign(t, jwt.SigningMethodHS256, p.rsa.KID, rsaPub.N.Bytes(), claims(), nil), want: token.ErrAlgorithm, both: true},
		{name: "HS256 with the JWK Set as secret", token: sign(t, jwt.SigningMethodHS256, p.rsa.KID, p.body, claims(), nil), want: token.ErrAlgorithm, both: true},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, p.ed.KID, jwt.UnsafeAllowNoneSignatureType, claims(), nil), want: token.ErrAlgorithm, both: true},
		{name: "signed by another key under a published kid", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, attacker.Key, claims(), nil), want: token.ErrSignature, both: true},
		{name: "unknown kid with jku and jwk headers", token: sign(t, jwt.SigningMethodEdDSA, attacker.KID, attacker.Key, claims(),
			map[string]any{"jku": jku.URL, "x5u": jku.URL, "jwk": map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}), want: token.ErrUnknownKID, both: true},
		{name: "crit header", token: sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims(), map[string]any{"crit": []string{"exp"}}), want: token.ErrHeader},
		{name: "duplicate claim", token: func() string {
			// Re-sign a payload with "sub" twice.
			head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"` + p.ed.KID + `"}`))
			body := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(
				`{"iss":%q,"aud":%q,"sub":"a","SUB":"b","jti":"x","iat":%d,"exp":%d}`, idpIssuer, idpAudience, now.Unix(), now.Add(time.Minute).Unix())))
			sig, err := jwt.SigningMethodEdDSA.Sign(head+"."+body, p.ed.Key)
			if err != nil {
				t.Fatal(err)
			}
			return head + "." + body + "." + base64.RawURLEncoding.EncodeToString(sig)
		}(), want: token.ErrDuplicateClaim},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verifiers := []*token.Verifier{v}
			if c.both {
				verifiers = append(verifiers, vHS)
			}
			for i, v := range verifiers {
				claims, err := v.Verify(t.Context(), c.token)
				if c.want == nil {
					if err != nil {
						t.Fatalf("verifier %d: %v", i, err)
					}
					if claims.Subject != "user-42" {
						t.Errorf("sub = %q", claims.Subject)
					}
					pr, err := v.Authenticate(t.Context(), c.token)
					if err != nil {
						t.Fatalf("Authenticate: %v", err)
					}
					if pr.Method != auth.MethodAccessToken || pr.Subject != "user-42" || pr.KeyID != "" ||
						!slices.Equal(pr.Scopes, []string{"models:read", "chat:write"}) || pr.TokenID != "id-1" {
						t.Errorf("principal = %+v", pr)
					}
					if strings.Contains(fmt.Sprint(pr), c.token) {
						t.Errorf("principal prints the token")
					}
					continue
				}
				if !errors.Is(err, c.want) {
					t.Fatalf("verifier %d: err = %v, want %v", i, err, c.want)
				}
				_, err = v.Authenticate(t.Context(), c.token)
				var ae *auth.Error
				if !errors.As(err, &ae) || ae.Kind != auth.ErrInvalidCredential || ae.Message != "" {
					t.Errorf("Authenticate err = %#v, want a bare invalid-credential *auth.Error", err)
				}
			}
		})
	}
	if n := jku.fetches.Load(); n != 0 {
		t.Errorf("the jku/x5u server got %d requests", n)
	}
	if n := p.fetches.Load(); n > 2 {
		t.Errorf("the IdP got %d requests for %d tokens, want at most 2", n, len(cases))
	}
}

// TestRemoteKeySetRotationWithVerifier follows an identity provider's key
// rotation end to end: a new key is trusted after one refetch, a removed
// key stops being trusted after a background refresh, even for a token
// verified before and held in the Verifier's cache (a cache hit looks the
// token's kid up again).
func TestRemoteKeySetRotationWithVerifier(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	clock := newFakeClock()
	now := clock.Now()
	remote := newRemote(t, p.jwksServer, clock, token.WithRefreshInterval(10*time.Millisecond))
	v, err := token.NewVerifier(remote,
		token.WithExpectedIssuer(idpIssuer),
		token.WithExpectedAudience(idpAudience),
		token.WithTokenType(""),
		token.WithExternalTokens(),
		token.WithVerifierClock(clock.Now)) // with the default cache: a hit re-checks the kid
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"iss": idpIssuer, "aud": idpAudience, "sub": "u", "jti": "j",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	next, err := token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := sign(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, claims, nil)
	fresh := sign(t, jwt.SigningMethodEdDSA, next.KID, next.Key, claims, nil)
	if _, err := v.Verify(t.Context(), old); err != nil {
		t.Fatalf("old key: %v", err)
	}
	// The provider rotates: next is published, the old key removed.
	p.set(200, p.publish(t, next, p.ec))
	waitFor(t, "the new key", func() bool {
		_, err := v.Verify(t.Context(), fresh)
		return err == nil
	})
	waitFor(t, "the old key to stop being trusted", func() bool {
		_, err := v.Verify(t.Context(), old)
		return errors.Is(err, token.ErrUnknownKID)
	})
}

// An identity provider publishes its public keys as a JWK Set; a service
// that accepts its access tokens verifies them with a RemoteKeySet.
func ExampleNewRemoteKeySet() {
	// The identity provider (here an httptest server; in real life its
	// jwks_uri, over https).
	signer, _ := token.GenerateSigningKey(token.EdDSA, nil)
	published, _ := token.NewKeySet(signer.Public())
	provider := httptest.NewServer(published.Handler())
	defer provider.Close()

	// The service: fetch the set, refresh it every minute, refetch on an
	// unknown kid at most every 5 s.
	ctx := context.Background()
	keys, err := token.NewRemoteKeySet(ctx, provider.URL,
		token.WithRemoteLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer keys.Close()
	verifier, err := token.NewVerifier(keys,
		token.WithExpectedIssuer("https://idp.example.com/"),
		token.WithExpectedAudience("https://api.example.com"),
		token.WithTokenType(""), // this provider sets no typ header
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	// A token the provider issued.
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"iss": "https://idp.example.com/", "aud": "https://api.example.com",
		"sub": "user-42", "scope": "models:read", "jti": "a1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
	tok.Header["kid"] = signer.KID
	signed, _ := tok.SignedString(signer.Key)

	p, err := verifier.Authenticate(ctx, signed)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Method, p.Subject, p.Scopes)
	// Output: access_token user-42 [models:read]
}
