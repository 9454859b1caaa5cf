package keystore_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/benchhttp"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkMiddlewareLimits measures what rate limits add to the
// middleware's valid-key path: the same Manager, MemoryStore and key,
// behind a Guard without limits ("off") and one with a MemoryLimiter
// ("on": DefaultRateLimits, whose failure budgets a client that has not
// failed does not reach, and a per-key limit spent on every request, high
// enough never to refuse), and with an Observer that does nothing. Run it
// with:
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

	guards := []struct {
		name string
		opts []auth.Option
	}{
		{"off", nil},
		{"on", []auth.Option{auth.WithRateLimits(limits)}},
		{"observer", []auth.Option{auth.WithObserver(nop)}},
		{"on+observer", []auth.Option{auth.WithRateLimits(limits), auth.WithObserver(nop)}},
	}
	for _, g := range guards {
		handler := benchMiddleware(b, m, g.opts...)
		b.Run("discard/"+g.name, func(b *testing.B) { benchhttp.Serve(b, handler, valid, http.StatusOK) })
		b.Run("parallel/"+g.name, func(b *testing.B) { benchhttp.ServeParallel(b, handler, valid, http.StatusOK) })
	}
}

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
