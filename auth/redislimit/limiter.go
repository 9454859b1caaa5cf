package redislimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth"
)

// DefaultPrefix is the prefix of every key a [Limiter] writes, unless
// [WithPrefix] sets another.
const DefaultPrefix = "keygate:rl:"

// DefaultTimeout bounds each call to Redis, unless [WithTimeout] sets
// another bound.
//
// A healthy Redis in the same region answers in about a millisecond, and
// dialling a fresh connection takes a few more; 100ms is far above that,
// yet small enough that a Redis in trouble adds at most a tenth of a
// second to a request before the caller's fail-open or fail-closed policy
// takes over.
const DefaultTimeout = 100 * time.Millisecond

//go:embed gcra.lua
var gcraSource string

// gcra is the script, cached by Redis under its SHA-1: Run sends EVALSHA,
// and the whole script with EVAL only when Redis answers NOSCRIPT (after a
// restart, a failover or SCRIPT FLUSH), which caches it again.
var gcra = redis.NewScript(gcraSource)

// Limiter is an [auth.Limiter] whose budgets live in Redis, so that every
// instance of a service that uses the same Redis and prefix shares them.
//
// Each call is one round trip running a Lua script; see the package
// documentation for the algorithm. A Limiter holds no state besides its
// configuration and is safe for concurrent use; it starts no goroutines,
// and it does not close the client it was given.
type Limiter struct {
	client  redis.Scripter
	prefix  string
	timeout time.Duration
}

var (
	_ auth.Limiter  = (*Limiter)(nil)
	_ auth.Refunder = (*Limiter)(nil)
)

// Option configures a [Limiter] in [New].
type Option func(*config)

type config struct {
	prefix  string
	timeout time.Duration
	err     error
}

// WithPrefix sets the prefix of every key the Limiter writes (the default
// is [DefaultPrefix]). Limiters with the same prefix on the same Redis
// share budgets; give each service its own prefix if they should not. The
// prefix must not be empty.
func WithPrefix(prefix string) Option {
	return func(c *config) {
		if prefix == "" {
			c.err = errors.Join(c.err, errors.New("redislimit: empty key prefix"))
		}
		c.prefix = prefix
	}
}

// WithTimeout bounds each call to Redis to d (the default is
// [DefaultTimeout]); the caller's context deadline applies too, whichever
// comes first. Zero means no bound of the Limiter's own: only the context's.
// d must not be negative.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.err = errors.Join(c.err, fmt.Errorf("redislimit: negative timeout %v", d))
		}
		c.timeout = d
	}
}

// New returns a Limiter that keeps its budgets in the Redis that client
// talks to: a *redis.Client, *redis.ClusterClient, *redis.Ring, or any
// other [redis.Scripter]. The server must be Redis 5 or newer (or a
// compatible server that runs Lua scripts with TIME in them).
//
// Deadlines only reach the network if the client was created with
// ContextTimeoutEnabled: true; without it go-redis waits for its own
// ReadTimeout (3s by default) whatever the context says. New returns
// [ErrContextTimeoutDisabled] for a go-redis client configured that way.
func New(client redis.Scripter, opts ...Option) (*Limiter, error) {
	if err := checkClient(client); err != nil {
		return nil, err
	}
	c := config{prefix: DefaultPrefix, timeout: DefaultTimeout}
	for _, o := range opts {
		if o == nil {
			c.err = errors.Join(c.err, errors.New("redislimit: nil option"))
			continue
		}
		o(&c)
	}
	if c.err != nil {
		return nil, c.err
	}
	return &Limiter{client: client, prefix: c.prefix, timeout: c.timeout}, nil
}

// checkClient rejects a nil client, and a go-redis client that does not
// pass context deadlines on to the network. Other Scripters are trusted.
func checkClient(client redis.Scripter) error {
	var isNil, honours bool
	switch c := client.(type) {
	case nil:
		isNil = true
	case *redis.Client:
		isNil = c == nil
		honours = !isNil && c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		isNil = c == nil
		honours = !isNil && c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		isNil = c == nil
		honours = !isNil && c.Options().ContextTimeoutEnabled
	default:
		honours = true
	}
	switch {
	case isNil:
		return errors.New("redislimit: nil client")
	case !honours:
		return ErrContextTimeoutDisabled
	}
	return nil
}

// Allow spends one request from key's budget under lim if the budget
// allows it, and reports the state after, as [auth.Limiter] documents. A
// zero lim allows every request without asking Redis. The key may hold any
// bytes.
//
// An error means Redis failed, timed out or was not asked (the context
// was done, or lim is invalid: [ErrInvalidLimit]); it never says
// whether the request is allowed. A call that timed out may still have
// spent the request in Redis.
func (l *Limiter) Allow(ctx context.Context, key string, lim auth.Limit) (auth.Decision, error) {
	return l.run(ctx, "allow", modeSpend, key, lim)
}

// Refund gives back one request of key's budget under lim, never past a
// full budget, as [auth.Refunder] documents, in one round trip; a key
// with no budget is left alone. Errors are those of [Limiter.Allow].
func (l *Limiter) Refund(ctx context.Context, key string, lim auth.Limit) error {
	_, err := l.run(ctx, "refund", modeRefund, key, lim)
	return err
}

// The script's modes (ARGV[1]).
const (
	modePeek   = 0
	modeSpend  = 1
	modeRefund = 2
)

// Peek reports key's budget under lim without spending any, as
// [auth.Limiter] documents: Allowed says whether one more request would be
// allowed. Errors are those of [Limiter.Allow].
func (l *Limiter) Peek(ctx context.Context, key string, lim auth.Limit) (auth.Decision, error) {
	return l.run(ctx, "peek", modePeek, key, lim)
}

// Key returns the Redis key that holds key's budget under lim: the prefix,
// lim's name ("default" when empty), ':' and key.
func (l *Limiter) Key(key string, lim auth.Limit) string {
	return l.prefix + lim.PolicyName() + ":" + key
}

func (l *Limiter) run(ctx context.Context, op string, mode int, key string, lim auth.Limit) (auth.Decision, error) {
	if lim.IsZero() {
		return auth.Decision{Allowed: true, Limit: lim}, nil
	}
	p, err := newParams(lim)
	if err != nil {
		return auth.Decision{}, err
	}
	if err := ctx.Err(); err != nil {
		return auth.Decision{}, fmt.Errorf("redislimit: %s %q: %w", op, lim.Name, err)
	}
	callCtx := ctx
	if l.timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	res, err := gcra.Run(callCtx, l.client, []string{l.Key(key, lim)},
		mode, p.iv/1000, p.iv%1000, p.span/1000, p.span%1000).Int64Slice()
	if err != nil {
		return auth.Decision{}, l.wrap(ctx, callCtx, op, lim, err)
	}
	// The script answers {allowed, µs, ns}; the Go side bounds both
	// numbers, so a reply outside them did not come from the script.
	if len(res) != 3 || res[0] < 0 || res[0] > 1 || res[1] < 0 || res[1] > maxMicros || res[2] < 0 || res[2] > 999 {
		return auth.Decision{}, fmt.Errorf("redislimit: %s %q: unexpected reply %v", op, lim.Name, res)
	}
	return p.decision(res[0] == 1, res[1]*1000+res[2], lim), nil
}

// maxMicros bounds the distance to a TAT the script can report: 2^50 µs,
// about 35 years, far beyond the 10 years [auth.Limit.Validate] allows.
const maxMicros = 1 << 50

// wrap adds the operation, the limit's name and, when a deadline ran out,
// which one, to a Redis error. go-redis errors carry no passwords; the key
// is left out, since it may be a client's address.
//
// When a deadline passes during a read, go-redis reports the socket's
// "i/o timeout", often before the context's own timer has fired; wrap
// then adds [context.DeadlineExceeded], so that errors.Is finds it.
func (l *Limiter) wrap(ctx, callCtx context.Context, op string, lim auth.Limit, err error) error {
	what := ""
	cause := expired(ctx)
	if cause == nil {
		if cause = expired(callCtx); cause != nil {
			what = fmt.Sprintf(" (no answer within %v)", l.timeout)
		}
	}
	if cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("redislimit: %s %q%s: %w: %w", op, lim.Name, what, err, cause)
	}
	return fmt.Errorf("redislimit: %s %q%s: %w", op, lim.Name, what, err)
}

// expired returns ctx's error, or [context.DeadlineExceeded] if its
// deadline has passed but its timer has not fired yet.
func expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
