package keystore_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkMiddlewareLimits measures what rate limits add to the
// middleware's valid-key path: the same Manager, MemoryStore and key,
// behind a Guard without limits ("off") and one with a MemoryLimiter
// ("on": DefaultRateLimits, whose failure budgets a client that has not
// failed does not reach, and a per-key limit spent on every request, high
// enough never to refuse), and with an Observer that does nothing; with
// each writer of [BenchmarkMiddleware], serially and in parallel. The
// bare handler and the hand-written floor run in the same benchmark, so
// that the target (limits add 150 ns, on machines where the bare
// handler took 112 ns in 4 allocations and the floor 440 ns in 6: the
// recorder writer's allocations) can be scaled to the machine by either,
// from the same run.
// So does "headers": a bare handler that sets the two header fields the
// limits add, with fixed values, for what writing them costs the writer
// (an httptest.ResponseRecorder copies the header map at WriteHeader);
// and "floor+limit", the floor with the least a hand-written per-key limit
// can do (floorLimiter), which "on-key-only", the Guard with the per-key
// limit alone (no failure budgets), is to be compared with. "json-off"
// and "json-on" are "off" and "on" in front of a handler that, like a real
// one, sets a header field of its own and writes a body (jsonHandler).
// Run it with:
//
//	go test -run '^$' -bench MiddlewareLimits -benchmem ./keystore/
func BenchmarkMiddlewareLimits(b *testing.B) {
	m, valid := newBenchManager(b, keystore.NewMemoryStore(), mustHasher(b, benchPepper))
	lim, err := auth.NewMemoryLimiter()
	if err != nil {
		b.Fatal(err)
	}
	limits := auth.DefaultRateLimits(lim)
	// About 18 requests a nanosecond: never refused, so every iteration
	// takes the allowed path.
	limits.APIKey = auth.Limit{Name: "api_key", Requests: 1 << 30, Period: time.Minute}
	nop := auth.ObserverFunc(func(context.Context, auth.Event) {})
	keys, floorKey := floorKeys()
	floor := floorMiddleware(keys, nil, okHandler)
	limitedFloor := floorMiddleware(keys, newFloorLimiter(1<<30), okHandler)
	keyOnly := auth.RateLimits{Limiter: lim, APIKey: limits.APIKey}
	headers := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setFixedRateLimit(w.Header())
		w.WriteHeader(http.StatusOK)
	})

	guards := []struct {
		name    string
		handler http.Handler
	}{
		{"off", benchMiddleware(b, m)},
		{"on", benchMiddleware(b, m, auth.WithRateLimits(limits))},
		{"on-key-only", benchMiddleware(b, m, auth.WithRateLimits(keyOnly))},
		{"observer", benchMiddleware(b, m, auth.WithObserver(nop))},
		{"on+observer", benchMiddleware(b, m, auth.WithRateLimits(limits), auth.WithObserver(nop))},
		{"json-off", benchGuard(b, m, jsonHandler)},
		{"json-on", benchGuard(b, m, jsonHandler, auth.WithRateLimits(limits))},
	}
	for _, wr := range []writer{recorderWriter, discardWriter} {
		b.Run(wr.name+"/bare", func(b *testing.B) { wr.serve(b, okHandler, "", http.StatusOK) })
		b.Run(wr.name+"/floor", func(b *testing.B) { wr.serve(b, floor, floorKey, http.StatusOK) })
		b.Run(wr.name+"/floor+limit", func(b *testing.B) { wr.serve(b, limitedFloor, floorKey, http.StatusOK) })
		b.Run(wr.name+"/headers", func(b *testing.B) { wr.serve(b, headers, "", http.StatusOK) })
		for _, g := range guards {
			b.Run(wr.name+"/"+g.name, func(b *testing.B) { wr.serve(b, g.handler, valid, http.StatusOK) })
		}
		for _, g := range guards {
			b.Run(wr.name+"/parallel-"+g.name, func(b *testing.B) { wr.parallel(b, g.handler, valid, http.StatusOK) })
		}
	}
}

// jsonHandler answers like an API handler, such as the example server's:
// it sets Content-Type and writes a short JSON body. With it the header
// map holds a field before the limits add theirs, as it does behind a
// real handler; okHandler sets none, so there the limits' fields are the
// first, and a writer that makes or copies the map only when it is used
// (httptest.ResponseRecorder) counts the map against the limits.
var jsonHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(jsonBody)
})

var (
	jsonContentType = []string{"application/json"}
	jsonBody        = []byte(`{"object":"list","data":[]}`)
)

// setFixedRateLimit sets the two header fields that limits add on h,
// with the fixed values below, for the "headers" handler of
// BenchmarkMiddlewareLimits and for floorLimiter.
func setFixedRateLimit(h http.Header) {
	h["Ratelimit-Policy"] = rateLimitPolicy
	h["Ratelimit"] = rateLimitValue
}

// The header values setFixedRateLimit sets.
var (
	rateLimitPolicy = []string{`"api_key";q=1073741824;w=60`}
	rateLimitValue  = []string{`"api_key";r=1073741823;t=1`}
)

// BenchmarkMemoryLimiterAllow measures one Allow of the in-memory GCRA
// limiter: on one key, on 10,000 keys in turn, and on 10,000 keys from
// every core at once.
func BenchmarkMemoryLimiterAllow(b *testing.B) {
	ctx := context.Background()
	l := auth.Limit{Name: "api_key", Requests: 1 << 30, Period: time.Minute}
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = "key_" + strconv.Itoa(i)
	}
	newLimiter := func(b *testing.B) *auth.MemoryLimiter {
		lim, err := auth.NewMemoryLimiter()
		if err != nil {
			b.Fatal(err)
		}
		return lim
	}
	b.Run("serial/one-key", func(b *testing.B) {
		lim := newLimiter(b)
		b.ReportAllocs()
		for b.Loop() {
			if d, _ := lim.Allow(ctx, "key_1", l); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("serial/10000-keys", func(b *testing.B) {
		lim := newLimiter(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if d, _ := lim.Allow(ctx, keys[i%len(keys)], l); !d.Allowed {
				b.Fatal("refused")
			}
			i++
		}
	})
	b.Run("serial/peek", func(b *testing.B) {
		lim := newLimiter(b)
		b.ReportAllocs()
		for b.Loop() {
			lim.Peek(ctx, "192.0.2.1", l)
		}
	})
	for _, n := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("parallel/%d-keys", n), func(b *testing.B) {
			lim := newLimiter(b)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if d, _ := lim.Allow(ctx, keys[i%n], l); !d.Allowed {
						b.Error("refused")
						return
					}
					i += 7
				}
			})
		})
	}
}
