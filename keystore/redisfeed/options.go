package redisfeed

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/backoff"
)

// Defaults of [NewPublishingStore] and [Listen].
const (
	// DefaultChannel is the Redis Pub/Sub channel invalidations are
	// published on and listened to, unless [WithChannel] says otherwise.
	DefaultChannel = "keygate:keys"
	// DefaultPublishTimeout bounds each PUBLISH after a write.
	DefaultPublishTimeout = 2 * time.Second
	// DefaultMinBackoff is the first delay before a [Feed] subscribes
	// again after losing its connection.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the largest delay between a [Feed]'s attempts
	// to subscribe again.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultJitter is the fraction by which each backoff delay is
	// randomly shortened: 0.5 gives a delay between d/2 and d.
	DefaultJitter = 0.5
	// DefaultPingInterval is how long a [Feed]'s connection may stay
	// silent before the Feed sends a PING.
	DefaultPingInterval = time.Second
	// DefaultPingTimeout is how long a [Feed] waits for anything from the
	// server after a PING, and for the confirmation of a SUBSCRIBE (the
	// connection included), before it treats the connection as lost.
	DefaultPingTimeout = 2 * time.Second
)

// maxChannel bounds channel names; Redis allows longer ones, but no
// sensible configuration needs them.
const maxChannel = 256

// Option configures [NewPublishingStore] and [Listen]. Each option's
// documentation says which of the two it affects; the other ignores it, so
// that one list of options can configure both ends of a channel.
type Option func(*config)

type config struct {
	channel        string
	publishTimeout time.Duration
	backoff        backoff.Policy
	pingInterval   time.Duration
	pingTimeout    time.Duration
	logger         *slog.Logger
}

func newConfig(opts []Option) (config, error) {
	c := config{
		channel:        DefaultChannel,
		publishTimeout: DefaultPublishTimeout,
		backoff:        backoff.Policy{Min: DefaultMinBackoff, Max: DefaultMaxBackoff, Jitter: DefaultJitter},
		pingInterval:   DefaultPingInterval,
		pingTimeout:    DefaultPingTimeout,
		logger:         slog.Default(),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.channel == "" || len(c.channel) > maxChannel {
		return c, errors.New("channel name must be 1 to 256 bytes")
	}
	return c, nil
}

// WithChannel sets the Redis Pub/Sub channel. Default: [DefaultChannel].
// Publishers and listeners of one key store must use the same channel;
// deployments sharing a Redis server but not a key store need different
// ones. The name must be 1 to 256 bytes. It affects both
// [NewPublishingStore] and [Listen].
func WithChannel(name string) Option {
	return func(c *config) { c.channel = name }
}

// WithLogger sets the logger. Default: [slog.Default]. A [Feed] logs
// connection losses, reconnections and malformed messages; a
// [PublishingStore] logs the one publish failure it does not return (see
// [PublishingStore.Replace]). Nothing logged contains a key, a digest, a
// message's payload or the Redis password. A nil logger discards
// everything. It affects both [NewPublishingStore] and [Listen].
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l == nil {
			l = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		c.logger = l
	}
}

// WithPublishTimeout bounds each PUBLISH a [PublishingStore] sends after a
// write. Default: [DefaultPublishTimeout] (2 s). The publish does not stop
// when the write's context is cancelled: once the write is done, other
// instances should hear of it even if the caller has gone away. A
// non-positive value keeps the default. It affects [NewPublishingStore]
// only.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.publishTimeout = d
		}
	}
}

// WithBackoff sets the delays between a [Feed]'s attempts to subscribe
// again after losing its connection: the first is initial, each next one
// twice the last, up to max. Default: [DefaultMinBackoff] (100 ms) to
// [DefaultMaxBackoff] (5 s). The delay goes back to initial only once a
// subscription has lasted max, so that a connection that keeps failing
// right after it is made does not make every cache drop everything ten
// times a second. Non-positive values keep the default; a max below
// initial is raised to initial. It affects [Listen] only.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.backoff.SetBounds(initial, max) }
}

// WithJitter sets the fraction f by which each backoff delay d is randomly
// shortened: the delay is between d×(1−f) and d, so that instances that lost
// Redis together do not come back in lockstep. Default: [DefaultJitter]
// (0.5). f is clamped to [0, 1]; 0 turns jitter off. It affects [Listen]
// only.
func WithJitter(f float64) Option {
	return func(c *config) {
		switch {
		case f != f || f < 0: // NaN or negative
			c.backoff.Jitter = 0
		case f > 1:
			c.backoff.Jitter = 1
		default:
			c.backoff.Jitter = f
		}
	}
}

// WithHealthCheck sets how a [Feed] notices a connection that died
// without closing (a network partition, a host that went away): after
// interval without any message the Feed sends a PING, and if nothing
// arrives within timeout it drops the connection, reports the feed
// unhealthy and subscribes again. timeout also bounds each attempt to
// subscribe. A silent loss is thus noticed within interval + timeout.
// Default: [DefaultPingInterval] (1 s) and [DefaultPingTimeout] (2 s),
// which notice it within 3 s, before [keystore.DefaultStaleAfter].
// Non-positive values keep the default. It affects [Listen] only.
func WithHealthCheck(interval, timeout time.Duration) Option {
	return func(c *config) {
		if interval > 0 {
			c.pingInterval = interval
		}
		if timeout > 0 {
			c.pingTimeout = timeout
		}
	}
}

// redactor removes the Redis passwords of a client from error texts. The
// client's errors are not known to contain them; this is a second line.
type redactor []string

func newRedactor(client redis.UniversalClient) redactor {
	var r redactor
	add := func(pw string) {
		if pw != "" {
			r = append(r, pw)
		}
	}
	switch c := client.(type) {
	case *redis.Client:
		add(c.Options().Password)
	case *redis.ClusterClient:
		add(c.Options().Password)
	case *redis.Ring:
		add(c.Options().Password)
	}
	return r
}

// redactedError prints an error with the passwords replaced. It matches
// what the error matched under [errors.Is], but does not unwrap to it, so
// that nothing can print the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

func (r redactor) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, pw := range r {
		if strings.Contains(msg, pw) {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: err}
}
