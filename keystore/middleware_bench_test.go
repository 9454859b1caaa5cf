package keystore_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/benchhttp"
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

// floorMiddleware is the least a hand-written API-key check can do; with
// a non-nil lim, also the least a hand-written per-key rate limit can do.
func floorMiddleware(keys map[[32]byte]*auth.Principal, lim *floorLimiter, next http.Handler) http.Handler {
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
		if lim != nil && !lim.allow(w, p.KeyID) {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

// floorLimiter is the least a hand-written per-key rate limit can do: a
// GCRA budget per key ID (its theoretical arrival time, found with one map
// lookup under one mutex) on the monotonic clock, and the two RateLimit
// header fields, with the fixed values of the "headers" handler of
// BenchmarkMiddlewareLimits (those of a full budget, as the benchmarks'
// budget always is). It has no failure budgets and no bound on its keys.
type floorLimiter struct {
	mu       sync.Mutex
	tats     map[string]*int64
	base     time.Time
	iv, span int64
}

// newFloorLimiter returns a floorLimiter of requests a minute, in bursts
// of requests.
func newFloorLimiter(requests int64) *floorLimiter {
	iv := int64(time.Minute) / requests
	return &floorLimiter{tats: map[string]*int64{}, base: time.Now(), iv: iv, span: iv * requests}
}

// allow spends one request of key's budget if it allows one, and sets
// the header fields on w.
func (l *floorLimiter) allow(w http.ResponseWriter, key string) bool {
	now := int64(time.Since(l.base))
	l.mu.Lock()
	tat := l.tats[key]
	if tat == nil {
		tat = new(int64)
		l.tats[key] = tat
	}
	t := max(*tat, now)
	ok := t+l.iv-l.span <= now
	if ok {
		*tat = t + l.iv
	}
	l.mu.Unlock()
	setFixedRateLimit(w.Header())
	return ok
}

// benchPepper is the pepper of the benchmarks' HMAC hashers.
var benchPepper = []byte("a 32-byte pepper for benchmarks.")

// newBenchManager returns a Manager over store, hashing with h, that has
// issued 1,001 keys, and the last key's plaintext, which the benchmarks
// present; the others fill the store.
func newBenchManager(b *testing.B, store keystore.Store, h *keystore.Hasher) (*keystore.Manager, string) {
	b.Helper()
	m, err := keystore.NewManager(store, keystore.WithHasher(h))
	if err != nil {
		b.Fatal(err)
	}
	var k keystore.Key
	for range 1001 {
		if k, _, err = m.Issue(context.Background(), keystore.KeySpec{Project: "p", Scopes: []string{"models:read"}}); err != nil {
			b.Fatal(err)
		}
	}
	return m, k.Plaintext()
}

// benchMiddleware returns keygate's middleware, made with opts over m, in
// front of okHandler.
func benchMiddleware(b *testing.B, m *keystore.Manager, opts ...auth.Option) http.Handler {
	b.Helper()
	return benchGuard(b, m, okHandler, opts...)
}

// benchGuard is benchMiddleware in front of next.
func benchGuard(b *testing.B, m *keystore.Manager, next http.Handler, opts ...auth.Option) http.Handler {
	b.Helper()
	g, err := auth.New(m, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return g.Middleware(next)
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
	s := &benchSetup{}
	unknown, _ := keystore.DefaultFormat().Generate()
	s.unknown = unknown.Plaintext()
	s.malformed = "HALFRED_" + s.unknown[len("halfred_"):]

	for _, name := range []string{"sha256", "hmac"} {
		var pepper []byte
		if name == "hmac" {
			pepper = benchPepper
		}
		m, valid := newBenchManager(b, keystore.NewMemoryStore(), mustHasher(b, pepper))
		s.targets = append(s.targets, benchTarget{name, benchMiddleware(b, m), valid})
	}

	keys, key := floorKeys()
	s.floor, s.floorKey = floorMiddleware(keys, nil, okHandler), key
	return s
}

// floorKeys returns the hand-written floor's 1,001 keys, by their
// SHA-256, and the key the benchmarks present to it.
func floorKeys() (map[[32]byte]*auth.Principal, string) {
	keys := map[[32]byte]*auth.Principal{}
	var k keystore.Key
	for range 1001 {
		k, _ = keystore.DefaultFormat().Generate()
		keys[sha256.Sum256([]byte(k.Plaintext()))] = &auth.Principal{KeyID: "key_x", Scopes: []string{"models:read"}}
	}
	return keys, k.Plaintext()
}

// writer is the ResponseWriter a benchmark uses, with its serial and
// parallel loops: "recorder" (an httptest.ResponseRecorder per request,
// as the issue's reference figures were taken) or "discard" (one
// benchhttp.Discard, to measure the middleware alone).
type writer struct {
	name            string
	serve, parallel func(b *testing.B, h http.Handler, key string, want int)
}

var (
	recorderWriter = writer{"recorder", benchhttp.ServeRecorder, benchhttp.ServeRecorderParallel}
	discardWriter  = writer{"discard", benchhttp.Serve, benchhttp.ServeParallel}
)

func BenchmarkMiddleware(b *testing.B) {
	s := newBenchSetup(b)
	for _, wr := range []writer{recorderWriter, discardWriter} {
		b.Run(wr.name+"/bare", func(b *testing.B) { wr.serve(b, okHandler, "", 200) })
		b.Run(wr.name+"/floor", func(b *testing.B) { wr.serve(b, s.floor, s.floorKey, 200) })
		// The floor's own rejection of the malformed key: it hashes the
		// key and misses, then answers with http.Error.
		b.Run(wr.name+"/floor-malformed", func(b *testing.B) { wr.serve(b, s.floor, s.malformed, 401) })
		for _, t := range s.targets {
			b.Run(wr.name+"/keygate-"+t.name+"-valid", func(b *testing.B) { wr.serve(b, t.handler, t.valid, 200) })
			b.Run(wr.name+"/keygate-"+t.name+"-unknown", func(b *testing.B) { wr.serve(b, t.handler, s.unknown, 401) })
			b.Run(wr.name+"/keygate-"+t.name+"-malformed", func(b *testing.B) { wr.serve(b, t.handler, s.malformed, 401) })
		}
		b.Run(wr.name+"/parallel-floor", func(b *testing.B) { wr.parallel(b, s.floor, s.floorKey, 200) })
		for _, t := range s.targets {
			b.Run(wr.name+"/parallel-keygate-"+t.name+"-valid", func(b *testing.B) { wr.parallel(b, t.handler, t.valid, 200) })
			b.Run(wr.name+"/parallel-keygate-"+t.name+"-unknown", func(b *testing.B) { wr.parallel(b, t.handler, s.unknown, 401) })
			b.Run(wr.name+"/parallel-keygate-"+t.name+"-malformed", func(b *testing.B) { wr.parallel(b, t.handler, s.malformed, 401) })
		}
	}
}
