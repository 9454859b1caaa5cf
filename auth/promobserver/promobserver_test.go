package promobserver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testalloc"
)

func newObserver(t testing.TB, opts ...Option) *Observer {
	t.Helper()
	o, err := New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return o
}

// requests returns auth_requests_total{method,outcome}.
func requests(o *Observer, method, outcome string) float64 {
	return testutil.ToFloat64(o.requests.WithLabelValues(method, outcome))
}

// histogram returns the sample count and sum of
// auth_duration_seconds{method,outcome}.
func histogram(t *testing.T, o *Observer, method, outcome string) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := o.durations.WithLabelValues(method, outcome).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// total returns the sum of auth_requests_total over every series.
func total(o *Observer) float64 {
	var sum float64
	for _, m := range methods {
		for _, oc := range outcomes {
			sum += requests(o, m, oc)
		}
	}
	return sum
}

func TestObserveRequests(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name    string
		e       auth.Event
		method  string
		outcome string
		// timed: the event goes into the duration histogram.
		timed bool
	}{
		{"api key", auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, KeyID: "key_1", Duration: ms}, "api_key", "success", true},
		{"access token", auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAccessToken, Duration: ms}, "access_token", "success", true},
		{"custom method", auth.Event{Kind: auth.EventAuthenticated, Method: "mtls", Duration: ms}, "other", "success", true},
		{"no credentials", auth.Event{Kind: auth.EventAuthFailed, Status: 401, Err: auth.ErrNoCredentials, Duration: ms}, "none", "no_credentials", true},
		{"invalid credential", auth.Event{Kind: auth.EventAuthFailed, Status: 401, Hint: "halfred_…a1B2",
			Err: &auth.Error{Kind: auth.ErrInvalidCredential, Err: errors.New("keystore: unknown key")}, Duration: ms}, "none", "invalid_credential", true},
		{"invalid, method known", auth.Event{Kind: auth.EventAuthFailed, Method: auth.MethodAccessToken, Err: auth.ErrInvalidCredential, Duration: ms},
			"access_token", "invalid_credential", true},
		{"malformed request", auth.Event{Kind: auth.EventAuthFailed, Status: 400, Err: fmt.Errorf("two keys: %w", auth.ErrMalformedRequest), Duration: ms}, "none", "malformed_request", true},
		{"insufficient scope", auth.Event{Kind: auth.EventAuthFailed, Method: auth.MethodAPIKey, Status: 403,
			Err: &auth.Error{Kind: auth.ErrInsufficientScope, Scopes: []string{"a"}}, Duration: ms}, "api_key", "insufficient_scope", true},
		{"unavailable", auth.Event{Kind: auth.EventAuthFailed, Status: 503, Err: &auth.Error{Kind: auth.ErrUnavailable, Err: errors.New("dial tcp")}, Duration: ms}, "none", "unavailable", true},
		{"unclassified error", auth.Event{Kind: auth.EventAuthFailed, Status: 503, Err: context.DeadlineExceeded, Duration: ms}, "none", "unavailable", true},
		{"internal", auth.Event{Kind: auth.EventAuthFailed, Status: 500, Err: &auth.Error{Kind: auth.ErrInternal}, Duration: ms}, "none", "internal", true},
		{"server-side kind wins", auth.Event{Kind: auth.EventAuthFailed,
			Err: errors.Join(auth.ErrInvalidCredential, auth.ErrUnavailable), Duration: ms}, "none", "unavailable", true},
		{"rate limited failure", auth.Event{Kind: auth.EventAuthFailed, Err: auth.ErrRateLimited, Duration: ms}, "none", "rate_limited", true},
		{"status only 400", auth.Event{Kind: auth.EventAuthFailed, Status: 400}, "none", "malformed_request", true},
		{"status only 401", auth.Event{Kind: auth.EventAuthFailed, Status: 401}, "none", "invalid_credential", true},
		{"status only 403", auth.Event{Kind: auth.EventAuthFailed, Status: 403}, "none", "insufficient_scope", true},
		{"status only 429", auth.Event{Kind: auth.EventAuthFailed, Status: 429}, "none", "rate_limited", true},
		{"status only 503", auth.Event{Kind: auth.EventAuthFailed, Status: 503}, "none", "unavailable", true},
		{"status only 500", auth.Event{Kind: auth.EventAuthFailed, Status: 500}, "none", "internal", true},
		{"nothing known", auth.Event{Kind: auth.EventAuthFailed}, "none", "internal", true},
		{"rate limited principal", auth.Event{Kind: auth.EventRateLimited, Method: auth.MethodAPIKey, KeyID: "key_1", Status: 429, Err: auth.ErrRateLimited}, "api_key", "rate_limited", false},
		{"rate limited address", auth.Event{Kind: auth.EventRateLimited, Status: 429}, "none", "rate_limited", false},
		{"forbidden", auth.Event{Kind: auth.EventForbidden, Method: auth.MethodAccessToken, KeyID: "key_1", Status: 403,
			Err: &auth.Error{Kind: auth.ErrInsufficientScope, Scopes: []string{"a"}}}, "access_token", "insufficient_scope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newObserver(t)
			o.Observe(context.Background(), tt.e)
			o.Observe(context.Background(), tt.e)
			if got := requests(o, tt.method, tt.outcome); got != 2 {
				t.Errorf("requests{%s,%s} = %v, want 2", tt.method, tt.outcome, got)
			}
			if got := total(o); got != 2 {
				t.Errorf("all requests = %v, want 2", got)
			}
			n, sum := histogram(t, o, tt.method, tt.outcome)
			switch {
			case tt.timed && (n != 2 || math.Abs(sum-2*tt.e.Duration.Seconds()) > 1e-12):
				t.Errorf("duration histogram: %d samples summing to %v, want 2 summing to %v", n, sum, 2*tt.e.Duration.Seconds())
			case !tt.timed && n != 0:
				t.Errorf("duration histogram: %d samples, want none", n)
			}
			if got := testutil.ToFloat64(o.events.WithLabelValues(auth.EventKeyCreated.String())); got != 0 {
				t.Errorf("a request event counted as key.created")
			}
		})
	}
}

func TestObserveLifecycle(t *testing.T) {
	t.Parallel()
	o := newObserver(t)
	ctx := context.Background()
	counts := map[auth.EventKind]int{
		auth.EventKeyCreated:     3,
		auth.EventKeyRotated:     1,
		auth.EventKeyRevoked:     2,
		auth.EventTokenIssued:    5,
		auth.EventTokenRefreshed: 4,
		auth.EventTokenRevoked:   1,
		auth.EventRefreshReuse:   1,
	}
	for k, n := range counts {
		for range n {
			o.Observe(ctx, auth.Event{Kind: k, KeyID: "key_1", Session: "s"})
		}
	}
	o.Observe(ctx, auth.Event{Kind: 0})
	o.Observe(ctx, auth.Event{Kind: 200})
	o.Observe(ctx, auth.Event{Kind: 63})
	want := `
# HELP keygate_events_total API key and token lifecycle events, by event.
# TYPE keygate_events_total counter
keygate_events_total{event="key.created"} 3
keygate_events_total{event="key.revoked"} 2
keygate_events_total{event="key.rotated"} 1
keygate_events_total{event="token.issued"} 5
keygate_events_total{event="token.refresh_reuse"} 1
keygate_events_total{event="token.refreshed"} 4
keygate_events_total{event="token.revoked"} 1
`
	if err := testutil.CollectAndCompare(o, strings.NewReader(want), "keygate_events_total"); err != nil {
		t.Error(err)
	}
	if got := total(o); got != 0 {
		t.Errorf("lifecycle events counted as %v requests", got)
	}
}

// TestSeriesBounded checks that every series exists from the start and
// that no event, whatever its fields, adds one.
func TestSeriesBounded(t *testing.T) {
	t.Parallel()
	o := newObserver(t)
	const (
		nReq    = len(methods) * len(outcomes)
		nEvents = len(lifecycle)
	)
	check := func(when string) {
		t.Helper()
		for name, want := range map[string]int{
			"keygate_auth_requests_total":   nReq,
			"keygate_auth_duration_seconds": nReq,
			"keygate_events_total":          nEvents,
		} {
			if got := testutil.CollectAndCount(o, name); got != want {
				t.Errorf("%s: %d series of %s, want %d", when, got, name, want)
			}
		}
	}
	check("at start")
	for i := range 500 {
		o.Observe(context.Background(), auth.Event{
			Kind:     auth.EventKind(i % 20),
			Method:   auth.Method(fmt.Sprintf("m%d", i)),
			KeyID:    fmt.Sprintf("key_%d", i),
			Project:  fmt.Sprintf("p%d", i),
			Status:   400 + i%200,
			Err:      fmt.Errorf("error %d", i),
			Duration: time.Duration(i) * time.Microsecond,
		})
	}
	check("after 500 distinct events")
}

func TestLint(t *testing.T) {
	t.Parallel()
	o := newObserver(t)
	o.Observe(context.Background(), auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, Duration: time.Millisecond})
	problems, err := testutil.CollectAndLint(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	o := newObserver(t,
		WithNamespace("gw"),
		WithBuckets(0.001, 0.01),
		WithConstLabels(prometheus.Labels{"service": "chat"}),
		WithConstLabels(prometheus.Labels{"region": "eu"}),
		nil,
	)
	o.Observe(context.Background(), auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, Duration: 5 * time.Millisecond})
	o.Observe(context.Background(), auth.Event{Kind: auth.EventKeyRevoked})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(o)
	want := `
# HELP gw_auth_duration_seconds Time taken to authenticate a request, by authentication method and outcome.
# TYPE gw_auth_duration_seconds histogram
gw_auth_duration_seconds_bucket{method="api_key",outcome="success",region="eu",service="chat",le="0.001"} 0
gw_auth_duration_seconds_bucket{method="api_key",outcome="success",region="eu",service="chat",le="0.01"} 1
gw_auth_duration_seconds_bucket{method="api_key",outcome="success",region="eu",service="chat",le="+Inf"} 1
gw_auth_duration_seconds_sum{method="api_key",outcome="success",region="eu",service="chat"} 0.005
gw_auth_duration_seconds_count{method="api_key",outcome="success",region="eu",service="chat"} 1
# HELP gw_events_total API key and token lifecycle events, by event.
# TYPE gw_events_total counter
gw_events_total{event="key.created",region="eu",service="chat"} 0
gw_events_total{event="key.revoked",region="eu",service="chat"} 1
gw_events_total{event="key.rotated",region="eu",service="chat"} 0
gw_events_total{event="token.issued",region="eu",service="chat"} 0
gw_events_total{event="token.refresh_reuse",region="eu",service="chat"} 0
gw_events_total{event="token.refreshed",region="eu",service="chat"} 0
gw_events_total{event="token.revoked",region="eu",service="chat"} 0
`
	// Only the series the expectation names: drop the other histograms.
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range got {
		if mf.GetName() != "gw_auth_duration_seconds" {
			continue
		}
		var keep []*dto.Metric
		for _, m := range mf.Metric {
			if m.GetHistogram().GetSampleCount() > 0 {
				keep = append(keep, m)
			}
		}
		mf.Metric = keep
	}
	gatherer := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return got, nil })
	if err := testutil.GatherAndCompare(gatherer, strings.NewReader(want), "gw_auth_duration_seconds", "gw_events_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(o, "gw_auth_requests_total"); n != len(methods)*len(outcomes) {
		t.Errorf("%d series of gw_auth_requests_total", n)
	}

	// No namespace.
	bare := newObserver(t, WithNamespace(""))
	if n := testutil.CollectAndCount(bare, "auth_requests_total", "events_total"); n != len(methods)*len(outcomes)+len(lifecycle) {
		t.Errorf("without a namespace: %d series", n)
	}
}

func TestOptionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opt  Option
	}{
		{"namespace with a dash", WithNamespace("key-gate")},
		{"namespace starting with a digit", WithNamespace("1kg")},
		{"no buckets", WithBuckets()},
		{"buckets out of order", WithBuckets(0.1, 0.01)},
		{"buckets repeated", WithBuckets(0.1, 0.1)},
		{"NaN bucket", WithBuckets(0.1, math.NaN())},
		{"const label method", WithConstLabels(prometheus.Labels{"method": "x"})},
		{"const label outcome", WithConstLabels(prometheus.Labels{"outcome": "x"})},
		{"const label event", WithConstLabels(prometheus.Labels{"event": "x"})},
		{"reserved const label", WithConstLabels(prometheus.Labels{"__name__": "x"})},
		{"invalid const label name", WithConstLabels(prometheus.Labels{"a-b": "x"})},
		{"const label value not UTF-8", WithConstLabels(prometheus.Labels{"svc": "\xff"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if o, err := New(tt.opt); err == nil {
				t.Fatalf("New succeeded: %v", o)
			}
		})
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	o := newObserver(t)
	if err := reg.Register(o); err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(newObserver(t)); !errors.As(err, &are) {
		t.Fatalf("a second Observer in one registry: %v, want AlreadyRegisteredError", err)
	}
	// Two Observers in one registry need namespaces of their own.
	if err := reg.Register(newObserver(t, WithNamespace("other"))); err != nil {
		t.Fatalf("an Observer with another namespace: %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestObserveConcurrent(t *testing.T) {
	t.Parallel()
	o := newObserver(t)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				switch (g + i) % 3 {
				case 0:
					o.Observe(context.Background(), auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, Duration: time.Microsecond})
				case 1:
					o.Observe(context.Background(), auth.Event{Kind: auth.EventAuthFailed, Err: auth.ErrInvalidCredential})
				default:
					o.Observe(context.Background(), auth.Event{Kind: auth.EventTokenIssued})
				}
			}
		}()
	}
	wg.Wait()
	got := total(o) + testutil.ToFloat64(o.events.WithLabelValues("token.issued"))
	if got != goroutines*each {
		t.Fatalf("counted %v events, want %d", got, goroutines*each)
	}
}

// TestObserveDoesNotAllocate measures the hot path: success, and the
// common failures and lifecycle events too. Not parallel: AllocsPerRun
// counts every goroutine's allocations.
func TestObserveDoesNotAllocate(t *testing.T) {
	o := newObserver(t)
	ctx := context.Background()
	invalid := &auth.Error{Kind: auth.ErrInvalidCredential, Err: errors.New("keystore: unknown key")}
	for name, e := range map[string]auth.Event{
		"success":      {Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, KeyID: "key_1", Project: "p", Duration: 30 * time.Microsecond},
		"invalid":      {Kind: auth.EventAuthFailed, Status: 401, Err: invalid, Hint: "halfred_…a1B2", Duration: time.Millisecond},
		"unclassified": {Kind: auth.EventAuthFailed, Err: context.Canceled},
		"rate limited": {Kind: auth.EventRateLimited, Method: auth.MethodAccessToken, Status: 429, Err: auth.ErrRateLimited},
		"lifecycle":    {Kind: auth.EventTokenRefreshed, KeyID: "key_1", Session: "s"},
	} {
		if n := testalloc.Min(1000, func() { o.Observe(ctx, e) }); n != 0 {
			t.Errorf("%s: Observe allocates %v times, want 0", name, n)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	o := newObserver(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		e    auth.Event
	}{
		{"success", auth.Event{Kind: auth.EventAuthenticated, Method: auth.MethodAPIKey, KeyID: "key_1", Duration: 30 * time.Microsecond}},
		{"failure", auth.Event{Kind: auth.EventAuthFailed, Status: 401, Err: &auth.Error{Kind: auth.ErrInvalidCredential}, Duration: time.Millisecond}},
		{"lifecycle", auth.Event{Kind: auth.EventTokenIssued}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o.Observe(ctx, bc.e)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					o.Observe(ctx, bc.e)
				}
			})
		})
	}
}
