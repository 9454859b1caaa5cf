// Package promobserver counts keygate's events as Prometheus metrics: an
// [auth.Observer] that is also a [prometheus.Collector].
//
//	obs, err := promobserver.New()
//	if err != nil { … }
//	reg.MustRegister(obs)
//	keys, err := keystore.NewManager(store, keystore.WithObserver(obs))
//	guard, err := auth.New(keys, auth.WithObserver(obs))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// It exports, with the default namespace "keygate":
//
//	keygate_auth_requests_total{method,outcome}       counter
//	keygate_auth_duration_seconds{method,outcome}     histogram
//	keygate_events_total{event}                       counter
//
// auth_requests_total counts the Guard's reports of requests:
// [auth.EventAuthenticated], [auth.EventAuthFailed],
// [auth.EventRateLimited] and [auth.EventForbidden] (under
// outcome="insufficient_scope"). auth_duration_seconds is the time
// authentication took (Event.Duration) for the first two. events_total
// counts the key and token lifecycle events, by the event's name
// ("key.created", "token.refresh_reuse", …; see [auth.EventKind.String]).
//
// These are reports, not requests: a request
// that authenticates and is then refused by its principal's rate limit is
// reported twice, as authenticated and as rate limited, and so counts once
// under outcome="success" and once under outcome="rate_limited"; one that
// authenticates and then finds the rate limiter down, with a Guard that
// fails closed, counts under "success" and "unavailable"; one that
// authenticates and then lacks a scope the route requires, under
// "success" and "insufficient_scope". A 429
// from the per-address failure limit, which comes before authentication,
// counts once, under method="none". So outcome="success" counts requests
// that authenticated, not requests that were served.
//
// Labels take only a fixed set of values, so the number of series is
// bounded whatever the traffic: method is api_key, access_token, none (no
// method known, as for a request without credentials) or other (a Method
// keygate does not define); outcome is one of success, no_credentials,
// invalid_credential, malformed_request, insufficient_scope,
// rate_limited, unavailable and internal. Key IDs, projects, addresses and
// credentials never become labels: they belong in the audit log
// (auth.NewSlogObserver). Every series exists, at zero, from the start.
//
// The module is separate from keygate's core so that importing keygate
// does not pull in the Prometheus client.
package promobserver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"

	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultNamespace is the prefix of the metric names unless
// [WithNamespace] says otherwise.
const DefaultNamespace = "keygate"

// DefaultBuckets are the upper bounds, in seconds, of the
// auth_duration_seconds histogram unless [WithBuckets] says otherwise:
// from 10µs (an API key found in a cache, an access token already
// verified) through milliseconds (a store lookup, a signature check) to
// seconds (a back end timing out).
var DefaultBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// The values of the method label.
var methods = [...]string{"api_key", "access_token", "none", "other"}

const (
	methodAPIKey = iota
	methodAccessToken
	methodNone
	methodOther
)

// The values of the outcome label.
var outcomes = [...]string{
	"success", "no_credentials", "invalid_credential", "malformed_request",
	"insufficient_scope", "rate_limited", "unavailable", "internal",
}

const (
	outcomeSuccess = iota
	outcomeNoCredentials
	outcomeInvalidCredential
	outcomeMalformedRequest
	outcomeInsufficientScope
	outcomeRateLimited
	outcomeUnavailable
	outcomeInternal
)

// sentinels maps auth's sentinels to outcomes in the order the Guard
// classifies errors: server-side failures first, so that an error that
// matches several is counted as the Guard answered it.
var sentinels = [...]struct {
	err     error
	outcome int
}{
	{auth.ErrInternal, outcomeInternal},
	{auth.ErrUnavailable, outcomeUnavailable},
	{auth.ErrMalformedRequest, outcomeMalformedRequest},
	{auth.ErrInvalidCredential, outcomeInvalidCredential},
	{auth.ErrNoCredentials, outcomeNoCredentials},
	{auth.ErrInsufficientScope, outcomeInsufficientScope},
	{auth.ErrRateLimited, outcomeRateLimited},
}

// lifecycle lists the events counted in events_total.
var lifecycle = [...]auth.EventKind{
	auth.EventKeyCreated, auth.EventKeyRotated, auth.EventKeyRevoked,
	auth.EventTokenIssued, auth.EventTokenRefreshed, auth.EventTokenRevoked,
	auth.EventRefreshReuse,
}

// maxKind bounds the EventKinds this package indexes by.
const maxKind = 64

// Observer counts keygate's events as Prometheus metrics. It implements
// [auth.Observer], to receive the events, and [prometheus.Collector], to
// be registered: register it with exactly one registry.
//
// Observe does not allocate: every labelled series is created by [New].
// An Observer is safe for concurrent use.
type Observer struct {
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	events    *prometheus.CounterVec

	reqs   [len(methods)][len(outcomes)]prometheus.Counter
	durs   [len(methods)][len(outcomes)]prometheus.Observer
	counts [maxKind]prometheus.Counter // nil: not counted
}

var (
	_ auth.Observer        = (*Observer)(nil)
	_ prometheus.Collector = (*Observer)(nil)
)

type config struct {
	namespace   string
	buckets     []float64
	constLabels prometheus.Labels
}

// Option configures an [Observer] in [New].
type Option func(*config) error

var nameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// WithNamespace sets the prefix of the metric names, as in
// <namespace>_auth_requests_total. Default: [DefaultNamespace]
// ("keygate"). It must be letters, digits and underscores, not starting
// with a digit; empty means no prefix.
func WithNamespace(ns string) Option {
	return func(c *config) error {
		if ns != "" && !nameRE.MatchString(ns) {
			return fmt.Errorf("promobserver: namespace %q is not letters, digits and underscores", ns)
		}
		c.namespace = ns
		return nil
	}
}

// WithBuckets sets the upper bounds, in seconds, of the
// auth_duration_seconds histogram's buckets. Default: [DefaultBuckets].
// They must be in strictly increasing order and not NaN; a final +Inf is
// implied. The slice is copied.
func WithBuckets(b ...float64) Option {
	return func(c *config) error {
		if len(b) == 0 {
			return errors.New("promobserver: no histogram buckets")
		}
		for i, v := range b {
			if math.IsNaN(v) || i > 0 && v <= b[i-1] {
				return fmt.Errorf("promobserver: histogram buckets %v are not in strictly increasing order", b)
			}
		}
		c.buckets = append([]float64(nil), b...)
		return nil
	}
}

// WithConstLabels adds labels with fixed values to every metric, such as
// {"service": "gateway"}, to tell several Observers in one registry apart.
// Default: none. Names must be letters, digits and underscores, not
// starting with a digit or "__", and none may be method, outcome or event.
// Values must be valid UTF-8. The map is copied; later calls add to it.
func WithConstLabels(l prometheus.Labels) Option {
	return func(c *config) error {
		for name := range l {
			switch {
			case !nameRE.MatchString(name) || len(name) >= 2 && name[:2] == "__":
				return fmt.Errorf("promobserver: %q is not a valid label name", name)
			case name == "method" || name == "outcome" || name == "event":
				return fmt.Errorf("promobserver: const label %q is one of the Observer's own labels", name)
			}
		}
		if c.constLabels == nil {
			c.constLabels = make(prometheus.Labels, len(l))
		}
		for k, v := range l {
			c.constLabels[k] = v
		}
		return nil
	}
}

// New returns an Observer, with every series it exports created at zero.
// It returns an error for an invalid option.
func New(opts ...Option) (*Observer, error) {
	c := config{namespace: DefaultNamespace, buckets: DefaultBuckets}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&c); err != nil {
			return nil, err
		}
	}
	o := &Observer{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   c.namespace,
			Subsystem:   "auth",
			Name:        "requests_total",
			Help:        "Requests whose authentication keygate reported, by authentication method and outcome.",
			ConstLabels: c.constLabels,
		}, []string{"method", "outcome"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   c.namespace,
			Subsystem:   "auth",
			Name:        "duration_seconds",
			Help:        "Time taken to authenticate a request, by authentication method and outcome.",
			Buckets:     c.buckets,
			ConstLabels: c.constLabels,
		}, []string{"method", "outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   c.namespace,
			Name:        "events_total",
			Help:        "API key and token lifecycle events, by event.",
			ConstLabels: c.constLabels,
		}, []string{"event"}),
	}
	// Registering with a scratch registry checks the descriptors (names,
	// const label values) before any series is made from them.
	if err := prometheus.NewPedanticRegistry().Register(o); err != nil {
		return nil, fmt.Errorf("promobserver: %w", err)
	}
	for m, method := range methods {
		for oc, outcome := range outcomes {
			o.reqs[m][oc] = o.requests.WithLabelValues(method, outcome)
			o.durs[m][oc] = o.durations.WithLabelValues(method, outcome)
		}
	}
	for _, k := range lifecycle {
		o.counts[k] = o.events.WithLabelValues(k.String())
	}
	return o, nil
}

// Describe implements [prometheus.Collector].
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	o.requests.Describe(ch)
	o.durations.Describe(ch)
	o.events.Describe(ch)
}

// Collect implements [prometheus.Collector].
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	o.requests.Collect(ch)
	o.durations.Collect(ch)
	o.events.Collect(ch)
}

// Observe implements [auth.Observer]: it counts e. Authentication events
// count in auth_requests_total (and, for EventAuthenticated and
// EventAuthFailed, auth_duration_seconds); lifecycle events in
// events_total; an EventKind this package does not know is ignored. It
// does not allocate, and ignores ctx.
func (o *Observer) Observe(_ context.Context, e auth.Event) {
	switch e.Kind {
	case auth.EventAuthenticated:
		m := method(e.Method)
		o.reqs[m][outcomeSuccess].Inc()
		o.durs[m][outcomeSuccess].Observe(e.Duration.Seconds())
	case auth.EventAuthFailed:
		m, oc := method(e.Method), failure(&e)
		o.reqs[m][oc].Inc()
		o.durs[m][oc].Observe(e.Duration.Seconds())
	case auth.EventRateLimited:
		o.reqs[method(e.Method)][outcomeRateLimited].Inc()
	case auth.EventForbidden:
		o.reqs[method(e.Method)][outcomeInsufficientScope].Inc()
	default:
		if int(e.Kind) < len(o.counts) {
			if c := o.counts[e.Kind]; c != nil {
				c.Inc()
			}
		}
	}
}

// method returns the index of m's method label.
func method(m auth.Method) int {
	switch m {
	case auth.MethodAPIKey:
		return methodAPIKey
	case auth.MethodAccessToken:
		return methodAccessToken
	case "":
		return methodNone
	}
	return methodOther
}

// failure returns the outcome of an EventAuthFailed: the first of auth's
// sentinels that its Err matches, in the Guard's order, or, for an Err
// that matches none, unavailable (the Guard answers it with a 503).
// Without an Err it goes by the Status.
func failure(e *auth.Event) int {
	if e.Err != nil {
		for _, s := range sentinels {
			if errors.Is(e.Err, s.err) {
				return s.outcome
			}
		}
		return outcomeUnavailable
	}
	switch e.Status {
	case http.StatusBadRequest:
		return outcomeMalformedRequest
	case http.StatusUnauthorized:
		return outcomeInvalidCredential
	case http.StatusForbidden:
		return outcomeInsufficientScope
	case http.StatusTooManyRequests:
		return outcomeRateLimited
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusBadGateway:
		return outcomeUnavailable
	}
	return outcomeInternal
}
