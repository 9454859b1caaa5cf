package token_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// The benchmarks measure, in one run, the issue's reference points for
// EdDSA and HS256 (ES256 and RS256 too, for the record):
//
//   - golang-jwt/parse: golang-jwt's own Parser.ParseWithClaims of the
//     same token with the same rules (the floor);
//   - verify/uncached and verify/cached: Verifier.Verify without and with
//     the verified-token cache (a hit);
//   - middleware/…: the whole auth Guard on an access token (cache hit
//     and miss, with and without revocation and API-key checks), and on
//     an API key (keystore Manager over a MemoryStore), with a discarding
//     ResponseWriter.
//
// Run them with:
//
//	go test -run '^$' -bench . -benchmem ./token/

// fxBench is everything the benchmarks of one algorithm need.
type fxBench struct {
	tok      string // an access token exchanged from apiKey
	apiKey   string
	manager  *keystore.Manager
	revs     *token.MemoryRevocations
	uncached *token.Verifier
	cached   *token.Verifier
	checked  *token.Verifier // cached, with revocations and the Manager as KeyChecker
	parser   *jwt.Parser
	keyfunc  jwt.Keyfunc
}

func newFxBench(b *testing.B, alg string) *fxBench {
	b.Helper()
	ctx := context.Background()
	s := &fxBench{revs: token.NewMemoryRevocations()}
	var err error
	if s.manager, err = keystore.NewManager(keystore.NewMemoryStore()); err != nil {
		b.Fatal(err)
	}
	key, _, err := s.manager.Issue(ctx, keystore.KeySpec{Project: "p", Scopes: []string{"models:read", "chat:write", "tokens:issue"}})
	if err != nil {
		b.Fatal(err)
	}
	s.apiKey = key.Plaintext()
	p, err := s.manager.Authenticate(ctx, s.apiKey)
	if err != nil {
		b.Fatal(err)
	}
	signer := fxKeyFor(alg)
	iss, err := token.NewIssuer(fxIss, signer, token.WithAudience(fxAud), token.WithIssuerClock(fxClock))
	if err != nil {
		b.Fatal(err)
	}
	if s.tok, _, err = iss.Issue(p, nil, "session-1"); err != nil {
		b.Fatal(err)
	}
	base := []token.VerifierOption{
		token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud), token.WithAlgorithms(alg), token.WithVerifierClock(fxClock),
	}
	mk := func(opts ...token.VerifierOption) *token.Verifier {
		v, err := token.NewVerifier(iss.KeySet(), append(append([]token.VerifierOption(nil), base...), opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.Verify(ctx, s.tok); err != nil {
			b.Fatal(err)
		}
		return v
	}
	s.uncached = mk(token.WithCache(0))
	s.cached = mk()
	s.checked = mk(token.WithRevocations(s.revs), token.WithKeyChecker(s.manager))
	s.parser = jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithStrictDecoding(), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithLeeway(30*time.Second), jwt.WithIssuer(fxIss), jwt.WithAudience(fxAud), jwt.WithTimeFunc(fxClock))
	pub := signer.Public().Key
	s.keyfunc = func(*jwt.Token) (any, error) { return pub, nil }
	return s
}

// fxDiscard is the cheapest http.ResponseWriter: one header map, cleared
// between requests, and no body.
type fxDiscard struct {
	h      http.Header
	status int
}

func (w *fxDiscard) Header() http.Header         { return w.h }
func (w *fxDiscard) Write(p []byte) (int, error) { return len(p), nil }
func (w *fxDiscard) WriteHeader(status int)      { w.status = status }

var fxOK = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

func fxServe(b *testing.B, a auth.Authenticator, cred string, want int) {
	b.Helper()
	g, err := auth.New(a)
	if err != nil {
		b.Fatal(err)
	}
	h := g.Middleware(fxOK)
	req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	w := &fxDiscard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.status = 0
		h.ServeHTTP(w, req)
		clear(w.h)
		if w.status != want {
			b.Fatalf("status %d, want %d", w.status, want)
		}
	}
}

func BenchmarkTokenVerify(b *testing.B) {
	ctx := context.Background()
	for _, alg := range []string{token.EdDSA, token.HS256, token.ES256, token.RS256} {
		s := newFxBench(b, alg)
		b.Run(alg+"/golang-jwt-parse", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var c token.Claims
				if _, err := s.parser.ParseWithClaims(s.tok, &c, s.keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/verify-uncached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.uncached.Verify(ctx, s.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/verify-cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.cached.Verify(ctx, s.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/authenticate-cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.cached.Authenticate(ctx, s.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTokenMiddleware(b *testing.B) {
	for _, alg := range []string{token.EdDSA, token.HS256} {
		s := newFxBench(b, alg)
		b.Run(alg+"/api-key", func(b *testing.B) { fxServe(b, s.manager, s.apiKey, 200) })
		b.Run(alg+"/token-uncached", func(b *testing.B) { fxServe(b, s.uncached, s.tok, 200) })
		b.Run(alg+"/token-cached", func(b *testing.B) { fxServe(b, s.cached, s.tok, 200) })
		b.Run(alg+"/token-cached-revocations-keycheck", func(b *testing.B) { fxServe(b, s.checked, s.tok, 200) })
		b.Run(alg+"/dispatch-token-cached-revocations-keycheck", func(b *testing.B) {
			fxServe(b, auth.Dispatch(s.checked, s.manager), s.tok, 200)
		})
		b.Run(alg+"/dispatch-api-key", func(b *testing.B) { fxServe(b, auth.Dispatch(s.checked, s.manager), s.apiKey, 200) })
	}
}

// BenchmarkTokenRevocationChecks: the cost the per-request checks add to a
// cache hit: none, the jti and sid revocations (MemoryRevocations), and
// the API key too (keystore Manager over a MemoryStore).
func BenchmarkTokenRevocationChecks(b *testing.B) {
	ctx := context.Background()
	s := newFxBench(b, token.HS256)
	revOnly, err := token.NewVerifier(fxTrustedFor(b, token.HS256), token.WithExpectedIssuer(fxIss), token.WithExpectedAudience(fxAud),
		token.WithAlgorithms(token.HS256), token.WithVerifierClock(fxClock), token.WithRevocations(s.revs))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		v    *token.Verifier
	}{
		{"none", s.cached},
		{"jti+sid", revOnly},
		{"jti+sid+api-key", s.checked},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if _, err := tc.v.Authenticate(ctx, s.tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.v.Authenticate(ctx, s.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("MemoryRevocations.IsRevoked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, err := s.revs.IsRevoked(ctx, "0123456789abcdefghijkl"); r || err != nil {
				b.Fatal(r, err)
			}
		}
	})
}

func fxTrustedFor(tb testing.TB, alg string) *token.KeySet {
	tb.Helper()
	ks, err := token.NewKeySet(fxKeyFor(alg).Public())
	if err != nil {
		tb.Fatal(err)
	}
	return ks
}

// BenchmarkHostileKID: hostile kid values are refused at the cost of an
// unknown kid of the same length (or less): the token is hashed for the
// cache, decoded, the header parsed, the kid checked, and the signature
// never looked at. The cost grows with the token's length, not with what
// the kid holds: compare 257-bytes with unknown-256-bytes. The 100 KiB kid
// is refused by the size cap before any decoding.
func BenchmarkHostileKID(b *testing.B) {
	ctx := context.Background()
	v := fxVerifier(b)
	k := fxKeys().ed
	for _, tc := range []struct{ name, kid string }{
		{"unknown", `"no-such-key"`},
		{"traversal", `"../../etc/passwd"`},
		{"sql", `"' OR 1=1 --"`},
		{"empty", `""`},
		{"number", `42`},
		{"null", `null`},
		{"object", `{"a":1}`},
		{"unknown-256-bytes", `"` + strings.Repeat("k", 256) + `"`}, // the same length, for comparison
		{"257-bytes", `"` + strings.Repeat("k", 257) + `"`},
		{"100KiB", `"` + strings.Repeat("k", 100<<10) + `"`},
	} {
		tok := fxSign(b, k.Alg, k.Key, fxHeader(k, "kid="+tc.kid), fxClaims())
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Authenticate(ctx, tok); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
