package redisfeed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/backoff"
	"github.com/keygate/keygate/keystore"
)

// Invalidator is what a [Feed] reports to; [keystore.CachedStore]
// implements it. Its methods are called from the Feed's goroutine (and,
// before that goroutine starts, from [Listen]), one at a time.
type Invalidator interface {
	// Invalidate drops what is cached about the key with this ID and
	// digest. The digest may be zero (the message named the ID alone).
	Invalidate(id string, d keystore.Digest)
	// InvalidateAll drops everything cached.
	InvalidateAll()
	// SetFeedHealthy reports whether the feed is subscribed: false as
	// soon as the subscription is lost, true once it is back.
	SetFeedHealthy(ok bool)
}

var _ Invalidator = (*keystore.CachedStore)(nil)

// errNoPong: the server answered nothing, not even a PING, for the
// health check's interval and timeout.
var errNoPong = errors.New("no reply to PING")

// Feed subscribes to a Redis Pub/Sub channel on which [PublishingStore]s
// announce their writes, and reports each announcement to an
// [Invalidator], typically a [keystore.CachedStore] made with
// [keystore.WithInvalidationFeed]. It runs one goroutine and holds one
// Redis connection (from the client's Pub/Sub pool), both stopped by
// [Feed.Close].
//
// # What the target hears
//
//   - Each time the Feed is subscribed (the server has confirmed the
//     SUBSCRIBE), first in [Listen] and again after every loss:
//     InvalidateAll, then SetFeedHealthy(true). Messages published while
//     there was no subscription are lost, so nothing cached before it is
//     trusted ([keystore.CachedStore.SetFeedHealthy](true) drops
//     everything by itself as well).
//   - Each message: Invalidate(id, digest). A malformed one is logged (its
//     length, never its content) and answered with InvalidateAll.
//   - As soon as the subscription is lost: SetFeedHealthy(false), which
//     makes a CachedStore trust its records for StaleAfter only. Then the
//     Feed subscribes again, on a new connection, after a backoff delay
//     ([WithBackoff], [WithJitter]), forever, until Close.
//
// # Noticing a loss
//
// The Feed does not let the Redis client reconnect behind its back: it
// reads with the low-level [redis.PubSub.ReceiveTimeout], and any read or
// write error (a closed or reset connection, CLIENT KILL, a server
// restart) counts as a loss at once; the Feed then closes that PubSub and
// makes a new one. A connection that goes silent without closing (a
// network partition) is noticed by the health check ([WithHealthCheck]):
// after DefaultPingInterval of silence the Feed sends a PING, and without a
// reply within DefaultPingTimeout the connection is dropped, so a silent
// loss is noticed within about 3 s by default. Should the client still
// re-subscribe by itself (it does when a connection turns unusable
// without an error, as during a Redis Enterprise or Cloud maintenance
// handoff), the server's new subscription confirmation is treated as a
// loss and a recovery: SetFeedHealthy(false), InvalidateAll,
// SetFeedHealthy(true).
//
// A Feed is made by [Listen]; the zero value is not usable. Its methods are
// safe for concurrent use.
type Feed struct {
	client redis.UniversalClient
	target Invalidator
	cfg    config
	redact redactor

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	closed bool
	ps     *redis.PubSub // the subscription in use, which Close closes to end a read
}

// Listen subscribes to the channel ([DefaultChannel] unless [WithChannel])
// through client, which may be a single-node, Sentinel (failover) or
// Cluster client; on success it calls target.InvalidateAll and
// target.SetFeedHealthy(true) and returns a running [Feed]. The first
// subscription is made, and confirmed by the server, before Listen
// returns, so that a wrong address or password is an error here; later
// losses are retried forever. ctx bounds the first subscription only, and
// so does the health check's timeout ([WithHealthCheck]). It uses the
// options [WithChannel], [WithBackoff], [WithJitter], [WithHealthCheck] and
// [WithLogger], and ignores the others. Errors never contain the Redis
// password.
func Listen(ctx context.Context, client redis.UniversalClient, target Invalidator, opts ...Option) (*Feed, error) {
	if client == nil {
		return nil, errors.New("redisfeed: listen: nil Redis client")
	}
	if target == nil {
		return nil, errors.New("redisfeed: listen: nil target")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("redisfeed: listen: %w", err)
	}
	f := &Feed{client: client, target: target, cfg: cfg, redact: newRedactor(client), done: make(chan struct{})}
	ps, err := f.subscribe(ctx)
	if err != nil {
		return nil, fmt.Errorf("redisfeed: listen: %w", err)
	}
	target.InvalidateAll()
	target.SetFeedHealthy(true)
	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		f.run(runCtx, ps)
	}()
	return f, nil
}

// Channel returns the channel the Feed listens to.
func (f *Feed) Channel() string { return f.cfg.channel }

// Close stops the Feed's goroutine and closes its connection, waiting for
// both; the target is left with SetFeedHealthy(false). It is idempotent
// and always returns nil. It does not close the Redis client: close the
// Feed first (a Feed whose client is closed keeps trying, and logging,
// until Close).
func (f *Feed) Close() error {
	f.mu.Lock()
	f.closed = true
	ps := f.ps
	f.mu.Unlock()
	f.cancel()
	if ps != nil {
		// Ends a read in progress: the client does not stop reading when a
		// context is cancelled.
		_ = ps.Close()
	}
	<-f.done
	return nil
}

// track makes ps the subscription Close closes. It reports false if the
// Feed is closed.
func (f *Feed) track(ps *redis.PubSub) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.ps = ps
	return true
}

// drop closes ps and forgets it.
func (f *Feed) drop(ps *redis.PubSub) {
	f.mu.Lock()
	if f.ps == ps {
		f.ps = nil
	}
	f.mu.Unlock()
	_ = ps.Close()
}

// subscribe makes a new PubSub, subscribes it to the channel and waits
// for the server's confirmation, for at most the ping timeout.
func (f *Feed) subscribe(ctx context.Context) (*redis.PubSub, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.pingTimeout)
	defer cancel()
	// The client sends SUBSCRIBE without reading the reply (if it cannot
	// connect, the receive below connects and sends it again).
	ps := f.client.Subscribe(ctx, f.cfg.channel)
	if !f.track(ps) {
		_ = ps.Close()
		return nil, errors.New("feed closed")
	}
	msg, err := ps.ReceiveTimeout(ctx, f.cfg.pingTimeout)
	if err == nil {
		if s, ok := msg.(*redis.Subscription); !ok || s.Kind != "subscribe" || s.Channel != f.cfg.channel {
			err = fmt.Errorf("unexpected reply to SUBSCRIBE: %T", msg)
		}
	}
	if err != nil {
		f.drop(ps)
		return nil, fmt.Errorf("subscribe: %w", f.redact.redact(err))
	}
	return ps, nil
}

// run owns ps: it reads from it and, when it fails, subscribes again with
// backoff, until ctx is done.
func (f *Feed) run(ctx context.Context, ps *redis.PubSub) {
	log := f.cfg.logger
	retry := backoff.New(f.cfg.backoff)
	since := time.Now()
	for {
		if ps == nil {
			p, ok := backoff.Retry(ctx, retry, f.subscribe, func(err error) {
				log.Warn("redisfeed: invalidation feed: subscribing again failed", "channel", f.cfg.channel, "err", err)
			})
			if !ok {
				return
			}
			ps, since = p, time.Now()
			f.target.InvalidateAll()
			f.target.SetFeedHealthy(true)
			log.Info("redisfeed: invalidation feed: subscribed again; caches dropped everything", "channel", f.cfg.channel)
		}
		err := f.receive(ctx, ps)
		f.target.SetFeedHealthy(false)
		f.drop(ps)
		ps = nil
		if ctx.Err() != nil {
			return
		}
		// Only a subscription that lasted brings the delay back to the
		// start: one that fails at once must not be retried at full rate.
		if time.Since(since) >= retry.Max() {
			retry.Reset()
		}
		log.Warn("redisfeed: invalidation feed: connection lost; caches trust entries for StaleAfter only until it is back",
			"channel", f.cfg.channel, "err", f.redact.redact(err))
	}
}

// receive reads from ps and applies what arrives, until the connection
// fails, the health check fails, or ctx is done.
func (f *Feed) receive(ctx context.Context, ps *redis.PubSub) error {
	pinged := false
	for {
		timeout := f.cfg.pingInterval
		if pinged {
			timeout = f.cfg.pingTimeout
		}
		// The deadline also bounds the reconnection the client makes
		// by itself, inside ReceiveTimeout, after a read error: that
		// connection is discarded anyway.
		rctx, cancel := context.WithTimeout(ctx, timeout)
		msg, err := ps.ReceiveTimeout(rctx, timeout)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if !isTimeout(err) {
				return err
			}
			if pinged {
				return errNoPong
			}
			pctx, cancel := context.WithTimeout(ctx, f.cfg.pingTimeout)
			err := ps.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			pinged = true
			continue
		}
		pinged = false // anything at all shows the connection is alive
		if err := f.handle(msg); err != nil {
			return err
		}
	}
}

// handle applies one thing received on the subscription. It returns an
// error if the subscription can no longer be trusted.
func (f *Feed) handle(msg any) error {
	switch m := msg.(type) {
	case *redis.Message:
		inv, err := keystore.ParseInvalidation(m.Payload)
		if err != nil {
			f.cfg.logger.Warn("redisfeed: invalidation feed: malformed message, dropping every cached entry",
				"channel", f.cfg.channel, "bytes", len(m.Payload), "err", err)
			f.target.InvalidateAll()
			return nil
		}
		f.target.Invalidate(inv.ID, inv.Digest)
	case *redis.Pong:
	case *redis.Subscription:
		if m.Kind != "subscribe" || m.Channel != f.cfg.channel {
			return fmt.Errorf("unexpected %s of channel %q", m.Kind, m.Channel)
		}
		// The client replaced a connection and subscribed again by
		// itself: what was published in between is lost.
		f.target.SetFeedHealthy(false)
		f.target.InvalidateAll()
		f.target.SetFeedHealthy(true)
		f.cfg.logger.Warn("redisfeed: invalidation feed: the Redis client subscribed again on a new connection; caches dropped everything",
			"channel", f.cfg.channel)
	default:
		return fmt.Errorf("unexpected %T on the subscription", msg)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
