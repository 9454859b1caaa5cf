package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/redislimit"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/redisfeed"
)

// redisLog is the logger that go-redis's own messages (a failed dial,
// say) go to: the server's, once run has made one; slog.Default before.
var redisLog atomic.Pointer[slog.Logger]

// redisLogging passes go-redis's messages to redisLog, as warnings, so
// that they come out in the server's log format. main installs it with
// redis.SetLogger (a global of go-redis, set once, before anything runs).
type redisLogging struct{}

func (redisLogging) Printf(ctx context.Context, format string, v ...any) {
	l := redisLog.Load()
	if l == nil {
		l = slog.Default()
	}
	l.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// redisConnectTimeout bounds the first contact with Redis at start.
const redisConnectTimeout = 10 * time.Second

// connectRedis returns a client of the -redis server, after checking
// with a PING that it answers (and accepts the password). A failure is a
// startError whose text never holds the password.
func connectRedis(ctx context.Context, f flags) (*redis.Client, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr:     f.redis,
		Password: f.redisPassword,
		// Required by redislimit: let each call's deadline reach the
		// network, so that a slow Redis costs a request at most the
		// limiter's timeout.
		ContextTimeoutEnabled: true,
	})
	ctx, cancel := context.WithTimeout(ctx, redisConnectTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, startError{fmt.Errorf("-redis: cannot use the Redis server at %s: %w", f.redis, redactPassword(err, f.redisPassword))}
	}
	return rdb, nil
}

// redactPassword returns err, or, if its text holds password, an error
// with the same text where the password is masked.
func redactPassword(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "xxxxx"))
}

// newRedisLimiter returns the limiter that keeps the budgets in Redis,
// under PREFIXrl:, shared by every instance given the same -redis and
// -redis-prefix.
func newRedisLimiter(rdb *redis.Client, f flags) (auth.Limiter, error) {
	l, err := redislimit.New(rdb, redislimit.WithPrefix(f.redisPrefix+"rl:"))
	if err != nil {
		return nil, fmt.Errorf("-redis: rate limiter: %w", err)
	}
	return l, nil
}

// redisChannel is the pub/sub channel of the invalidations of -feed redis.
func redisChannel(f flags) string { return f.redisPrefix + "keys" }

// newPublishingStore wraps store so that every revocation, rotation and
// disabling it makes is published on the channel of -feed redis.
func newPublishingStore(store keystore.Store, rdb *redis.Client, f flags, logger *slog.Logger) (keystore.Store, error) {
	pub, err := redisfeed.NewPublishingStore(store, rdb,
		redisfeed.WithChannel(redisChannel(f)), redisfeed.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("-feed redis: %w", err)
	}
	return pub, nil
}

// listenRedis starts the feed of -feed redis, which applies every
// instance's published invalidations to cache.
func listenRedis(ctx context.Context, rdb *redis.Client, cache *keystore.CachedStore, f flags, logger *slog.Logger) (*redisfeed.Feed, error) {
	ctx, cancel := context.WithTimeout(ctx, redisConnectTimeout)
	defer cancel()
	feed, err := redisfeed.Listen(ctx, rdb, cache,
		redisfeed.WithChannel(redisChannel(f)), redisfeed.WithLogger(logger))
	if err != nil {
		return nil, startError{fmt.Errorf("-feed redis: listen for invalidations: %w", err)}
	}
	return feed, nil
}

// logLimits logs the rate limits in force and where their budgets are.
func logLimits(logger *slog.Logger, l rateLimits, shared bool) {
	if !l.any() {
		logger.Warn("rate limits are off (every -rate-limit-* is 0)")
		return
	}
	where := "in memory: each instance grants them separately"
	if shared {
		where = "in Redis: shared by every instance given the same -redis and -redis-prefix"
	}
	policy := "fail open: requests are let through if the limiter fails"
	if l.failClosed {
		policy = "fail closed: requests are refused with 503 if the limiter fails"
	}
	logger.Info("rate limits a minute (0: none)",
		slog.Int("api_key", l.apiKey), slog.Int("access_token", l.accessToken),
		slog.Int("auth_failures", l.failures), slog.Int("credential_failures", l.credentialFailures),
		slog.Int("token_exchange", l.exchange),
		slog.Int("token_refresh", l.refresh), slog.String("budgets", where), slog.String("policy", policy))
}
