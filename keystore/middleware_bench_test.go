package keystore_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// The middleware benchmarks measure, in one run, the issue's reference
// points: a bare handler; a hand-written floor (read the header, SHA-256 the
// key, map lookup, principal in context); and keygate's middleware with a
// MemoryStore on a valid, an unknown and a malformed key, serially and with
// b.RunParallel. Run them with:
//
//	go test -run '^$' -bench Middleware -benchmem ./keystore/

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
})

// floorMiddleware is the least a hand-written API-key check can do.
func floorMiddleware(keys map[[32]byte]*auth.Principal, next http.Handler) http.Handler {
	type ctxKey struct{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		p, ok := keys[sha256.Sum256([]byte(key))]
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

// benchTarget is keygate's middleware over a MemoryStore of 1,001 keys,
// with the one valid key the benchmark presents.
type benchTarget struct {
	name    string // how keys are hashed: "sha256" or "hmac"
	handler http.Handler
	valid   string
}

type benchSetup struct {
	floor     http.Handler
	floorKey  string
	unknown   string
	malformed string
	targets   []benchTarget
}

func newBenchSetup(b *testing.B) *benchSetup {
	b.Helper()
	ctx := context.Background()
	s := &benchSetup{}
	unknown, _ := keystore.DefaultFormat().Generate()
	s.unknown = unknown.Plaintext()
	s.malformed = "HALFRED_" + s.unknown[len("halfred_"):]

	for _, name := range []string{"sha256", "hmac"} {
		var pepper []byte
		if name == "hmac" {
			pepper = []byte("a 32-byte pepper for benchmarks.")
		}
		h, err := keystore.NewHasher(pepper)
		if err != nil {
			b.Fatal(err)
		}
		m, err := keystore.NewManager(keystore.NewMemoryStore(), keystore.WithHasher(h))
		if err != nil {
			b.Fatal(err)
		}
		var k keystore.Key
		for range 1001 { // the last one is presented; the others fill the store
			if k, _, err = m.Issue(ctx, keystore.KeySpec{Project: "p", Scopes: []string{"models:read"}}); err != nil {
				b.Fatal(err)
			}
		}
		g, err := auth.New(m)
		if err != nil {
			b.Fatal(err)
		}
		s.targets = append(s.targets, benchTarget{name, g.Middleware(okHandler), k.Plaintext()})
	}

	keys := map[[32]byte]*auth.Principal{}
	var k keystore.Key
	for range 1001 {
		k, _ = keystore.DefaultFormat().Generate()
		keys[sha256.Sum256([]byte(k.Plaintext()))] = &auth.Principal{KeyID: "key_x", Scopes: []string{"models:read"}}
	}
	s.floorKey = k.Plaintext()
	s.floor = floorMiddleware(keys, okHandler)
	return s
}

// discardWriter is the cheapest http.ResponseWriter: it keeps one header
// map, cleared between requests, and throws the body away. With it the
// benchmarks measure the middleware; with httptest.NewRecorder (which copies
// the header map on WriteHeader and allocates per request) they match the
// issue's reference figures, which were taken that way.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// writers names the ResponseWriter a benchmark uses: "recorder"
// (httptest.NewRecorder per request) or "discard" (one discardWriter).
type writers struct{ name string }

func benchServe(b *testing.B, wr writers, h http.Handler, key string, want int) {
	req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	b.ReportAllocs()
	if wr.name == "discard" {
		w := &discardWriter{h: http.Header{}}
		for b.Loop() {
			w.status = http.StatusOK
			h.ServeHTTP(w, req)
			clear(w.h)
			if w.status != want {
				b.Fatalf("status %d, want %d", w.status, want)
			}
		}
		return
	}
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			b.Fatalf("status %d, want %d", w.Code, want)
		}
	}
}

func benchServeParallel(b *testing.B, wr writers, h http.Handler, key string, want int) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		dw := &discardWriter{h: http.Header{}}
		for pb.Next() {
			var w http.ResponseWriter = dw
			var status int
			if wr.name == "discard" {
				dw.status = http.StatusOK
				h.ServeHTTP(dw, req)
				clear(dw.h)
				status = dw.status
			} else {
				rec := httptest.NewRecorder()
				w = rec
				h.ServeHTTP(w, req)
				status = rec.Code
			}
			if status != want {
				b.Errorf("status %d, want %d", status, want)
				return
			}
		}
	})
}

func BenchmarkMiddleware(b *testing.B) {
	s := newBenchSetup(b)
	for _, wr := range []writers{{name: "recorder"}, {name: "discard"}} {
		b.Run(wr.name+"/bare", func(b *testing.B) { benchServe(b, wr, okHandler, "", 200) })
		b.Run(wr.name+"/floor", func(b *testing.B) { benchServe(b, wr, s.floor, s.floorKey, 200) })
		for _, t := range s.targets {
			b.Run(wr.name+"/keygate-"+t.name+"-valid", func(b *testing.B) { benchServe(b, wr, t.handler, t.valid, 200) })
			b.Run(wr.name+"/keygate-"+t.name+"-unknown", func(b *testing.B) { benchServe(b, wr, t.handler, s.unknown, 401) })
			b.Run(wr.name+"/keygate-"+t.name+"-malformed", func(b *testing.B) { benchServe(b, wr, t.handler, s.malformed, 401) })
		}
		b.Run(wr.name+"/parallel-floor", func(b *testing.B) { benchServeParallel(b, wr, s.floor, s.floorKey, 200) })
		for _, t := range s.targets {
			b.Run(wr.name+"/parallel-keygate-"+t.name+"-valid", func(b *testing.B) { benchServeParallel(b, wr, t.handler, t.valid, 200) })
			b.Run(wr.name+"/parallel-keygate-"+t.name+"-unknown", func(b *testing.B) { benchServeParallel(b, wr, t.handler, s.unknown, 401) })
			b.Run(wr.name+"/parallel-keygate-"+t.name+"-malformed", func(b *testing.B) { benchServeParallel(b, wr, t.handler, s.malformed, 401) })
		}
	}
}
