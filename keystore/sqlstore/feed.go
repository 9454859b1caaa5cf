package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/internal/backoff"
	"github.com/keygate/keygate/keystore"
)

// DefaultChannel is the PostgreSQL notification channel a [Store] publishes
// its writes on, and [ListenPostgres] listens to, unless told otherwise
// ([WithNotifyChannel], [WithFeedChannel]).
const DefaultChannel = "keygate_keys"

// Option configures a [Store] in [Open] and [OpenPostgres].
type Option func(*storeConfig)

type storeConfig struct {
	channel string
}

// WithNotifyChannel sets the PostgreSQL notification channel the Store
// publishes its writes on. Default: [DefaultChannel]. Channels are
// database-wide, not per schema: Stores on different schemas of one
// database that must not see each other's writes need different channels.
// The name must be 1 to 63 bytes; [Open] rejects others.
func WithNotifyChannel(name string) Option {
	return func(c *storeConfig) { c.channel = name }
}

func validChannel(name string) error {
	if name == "" || len(name) > 63 {
		return errors.New("notification channel name must be 1 to 63 bytes")
	}
	return nil
}

// querier is *sql.DB or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// publish runs write and, on PostgreSQL, notifies the Store's channel
// about the records with the IDs write returns, in one transaction: the
// notification is delivered if and only if the write commits. On SQLite
// (one process) write runs on the database directly. Errors from write are
// returned as they are; the others are wrapped as back-end errors of op.
func (s *Store) publish(ctx context.Context, op string, write func(q querier) ([]string, error)) (err error) {
	if s.dialect != Postgres {
		_, err := write(s.db)
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return backend(op, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	ids, err := write(tx)
	if err != nil {
		return err
	}
	if err := s.notify(ctx, tx, ids...); err != nil {
		return backend(op, err)
	}
	if err := tx.Commit(); err != nil {
		return backend(op, err)
	}
	return nil
}

// notify queues, in tx, one notification per record with one of the IDs:
// {"id": ID, "digest": lowercase hex} (the text form of a
// [keystore.Invalidation]), built by the database from the row as the
// transaction sees it. It does nothing on SQLite.
func (s *Store) notify(ctx context.Context, tx *sql.Tx, ids ...string) error {
	if s.dialect != Postgres {
		return nil
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1,
	json_build_object('id', id, 'digest', encode(digest, 'hex'))::text)
FROM keys WHERE id = $2`, s.channel, id); err != nil {
			return err
		}
	}
	return nil
}

// Invalidator is what a [Feed] reports to; [keystore.CachedStore]
// implements it. Its methods are called from the Feed's goroutine, one at
// a time.
type Invalidator interface {
	// Invalidate drops what is cached about the key with this ID and
	// digest.
	Invalidate(id string, d keystore.Digest)
	// InvalidateAll drops everything cached.
	InvalidateAll()
	// SetFeedHealthy reports whether the feed is subscribed.
	SetFeedHealthy(ok bool)
}

var _ Invalidator = (*keystore.CachedStore)(nil)

// FeedOption configures [ListenPostgres].
type FeedOption func(*feedConfig)

type feedConfig struct {
	channel      string
	backoff      backoff.Policy
	logger       *slog.Logger
	pingInterval time.Duration
	pingTimeout  time.Duration
}

// The defaults of [WithFeedHealthCheck]: a silent connection is noticed
// within 3 s, before [keystore.DefaultStaleAfter].
const (
	DefaultFeedPingInterval = time.Second
	DefaultFeedPingTimeout  = 2 * time.Second
)

// WithFeedHealthCheck sets how a [Feed] notices a connection that died
// without closing (a network partition, a NAT or firewall that dropped
// it): after interval without a notification the Feed pings the server,
// and if no answer comes within timeout it drops the connection, reports
// the feed unhealthy and connects again. A silent loss is thus noticed
// within interval + timeout; without the check it would take the
// operating system's TCP keepalive, minutes, during which a cache trusts
// its entries for their whole TTL. Default: [DefaultFeedPingInterval]
// (1 s) and [DefaultFeedPingTimeout] (2 s). Non-positive values keep the
// default.
func WithFeedHealthCheck(interval, timeout time.Duration) FeedOption {
	return func(c *feedConfig) {
		if interval > 0 {
			c.pingInterval = interval
		}
		if timeout > 0 {
			c.pingTimeout = timeout
		}
	}
}

// WithFeedChannel sets the channel to listen to. Default:
// [DefaultChannel]. It must be the channel the Stores publish on
// ([WithNotifyChannel]).
func WithFeedChannel(name string) FeedOption {
	return func(c *feedConfig) { c.channel = name }
}

// WithFeedBackoff sets the delays between reconnection attempts: the first
// is initial, each next one twice the last, up to max; each is jittered
// down by up to half. Default: 100 ms to 5 s. Non-positive values keep the
// default; a max below initial is raised to initial.
func WithFeedBackoff(initial, max time.Duration) FeedOption {
	return func(c *feedConfig) { c.backoff.SetBounds(initial, max) }
}

// WithFeedLogger sets the logger of connection losses and malformed
// messages. Default: [slog.Default]. Nothing logged contains the DSN or a
// key.
func WithFeedLogger(l *slog.Logger) FeedOption {
	return func(c *feedConfig) {
		if l != nil {
			c.logger = l
		}
	}
}

// Feed listens on a dedicated PostgreSQL connection to the notifications
// of [Store] writes made by any instance, and reports them to an
// [Invalidator], typically a [keystore.CachedStore] made with
// [keystore.WithInvalidationFeed]. It runs one goroutine, stopped by
// [Feed.Close].
//
// Once subscribed (LISTEN done) the Feed calls SetFeedHealthy(true), which
// makes a CachedStore drop every entry, since messages may have been
// missed. It calls SetFeedHealthy(false) as soon as the connection fails,
// or stops answering pings ([WithFeedHealthCheck]), then reconnects with
// exponential backoff ([WithFeedBackoff]); the backoff starts again from
// its minimum only after a connection has lasted the maximum backoff, so
// that a server that accepts and drops connections is not hammered. Each
// notification becomes one Invalidate call; a malformed one is logged and
// answered with InvalidateAll.
//
// A Feed is made by [ListenPostgres]; the zero value is not usable. Its
// methods are safe for concurrent use.
type Feed struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// ListenPostgres connects to the PostgreSQL database named by dsn, listens
// to the channel ([DefaultChannel] unless [WithFeedChannel]), reports
// SetFeedHealthy(true) to target and returns a running [Feed]. The first
// connection is made before it returns, so that a wrong DSN or password is
// an error here; later losses are retried forever. ctx bounds the first
// connection only. Errors never include the DSN.
func ListenPostgres(ctx context.Context, dsn string, target Invalidator, opts ...FeedOption) (*Feed, error) {
	if target == nil {
		return nil, errors.New("sqlstore: listen: nil target")
	}
	cfg := feedConfig{
		channel: DefaultChannel,
		backoff: backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5},
		logger:  slog.Default(),

		pingInterval: DefaultFeedPingInterval,
		pingTimeout:  DefaultFeedPingTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := validChannel(cfg.channel); err != nil {
		return nil, fmt.Errorf("sqlstore: listen: %w", err)
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return nil, errors.New("sqlstore: listen: invalid DSN")
	}
	l := &listener{cfg: cfg, dsn: dsn, target: target}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: listen: %w", redact(err, dsn))
	}
	target.SetFeedHealthy(true)
	runCtx, cancel := context.WithCancel(context.Background())
	f := &Feed{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		l.run(runCtx, conn)
	}()
	return f, nil
}

// Close stops the Feed's goroutine and closes its connection, waiting for
// both; the target is left with SetFeedHealthy(false). It is idempotent
// and always returns nil.
func (f *Feed) Close() error {
	f.cancel()
	<-f.done
	return nil
}

type listener struct {
	cfg    feedConfig
	dsn    string
	target Invalidator
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, l.dsn)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.cfg.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// run owns conn: it waits for notifications, and reconnects when conn
// fails, until ctx is done.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	retry := backoff.New(l.cfg.backoff)
	since := time.Now() // when conn was connected
	for {
		if conn == nil {
			c, ok := backoff.Retry(ctx, retry, l.connect, func(err error) {
				l.cfg.logger.Warn("sqlstore: invalidation feed: reconnect failed", "channel", l.cfg.channel, "err", redact(err, l.dsn))
			})
			if !ok {
				return
			}
			conn, since = c, time.Now()
			l.target.SetFeedHealthy(true)
			l.cfg.logger.Info("sqlstore: invalidation feed: reconnected", "channel", l.cfg.channel)
		}
		n, err := l.wait(ctx, conn)
		if err != nil {
			l.target.SetFeedHealthy(false)
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			if time.Since(since) >= retry.Max() {
				retry.Reset()
			}
			l.cfg.logger.Warn("sqlstore: invalidation feed: connection lost", "channel", l.cfg.channel, "err", redact(err, l.dsn))
			continue
		}
		if n == nil {
			continue // the connection was idle, and answered a ping
		}
		inv, err := keystore.ParseInvalidation(n.Payload)
		if err != nil {
			l.cfg.logger.Warn("sqlstore: invalidation feed: malformed message, dropping every cached entry",
				"channel", l.cfg.channel, "bytes", len(n.Payload), "err", err)
			l.target.InvalidateAll()
			continue
		}
		l.target.Invalidate(inv.ID, inv.Digest)
	}
}

// wait waits up to the ping interval for a notification on conn. If none
// comes it pings the server: a nil notification and a nil error mean the
// connection is idle and alive. An error means it is lost (or ctx ended).
func (l *listener) wait(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	wctx, cancel := context.WithTimeout(ctx, l.cfg.pingInterval)
	n, err := conn.WaitForNotification(wctx)
	cancel()
	if err == nil || ctx.Err() != nil || wctx.Err() == nil {
		return n, err
	}
	// The wait timed out; pgx keeps the connection usable after that.
	pctx, cancel := context.WithTimeout(ctx, l.cfg.pingTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		return nil, fmt.Errorf("no answer to a ping within %v: %w", l.cfg.pingTimeout, err)
	}
	return nil, nil
}
