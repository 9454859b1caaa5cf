// Package redisfeed carries cache invalidations between the instances of
// a service over Redis Pub/Sub, so that a key revoked, rotated or disabled
// through one instance stops working on all of them within milliseconds,
// whatever store they share. It is the Redis counterpart of the PostgreSQL
// feed in keystore/sqlstore (ListenPostgres), for stores that cannot notify
// by themselves (MySQL, SQLite on a shared volume, a store of your own) or
// for deployments that already run Redis. It is a nested module,
// github.com/keygate/keygate/keystore/redisfeed, so that go-redis never
// enters a build that does not use it.
//
// # Usage
//
// Each instance wraps the shared store in a [PublishingStore], puts a
// [keystore.CachedStore] made with [keystore.WithInvalidationFeed] in
// front of it, and starts a [Feed] reporting to that cache:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379"}) // or a Sentinel or Cluster client
//	pub, err := redisfeed.NewPublishingStore(store, rdb)
//	cache, err := keystore.NewCachedStore(pub, keystore.WithInvalidationFeed())
//	feed, err := redisfeed.Listen(ctx, rdb, cache)
//	defer feed.Close()
//	keys, err := keystore.NewManager(cache)
//
// After each Revoke, Replace (the old key) and SetDisabled that the store
// has made, the PublishingStore publishes {"id": ID, "digest": 64 hex
// digits} ([keystore.Invalidation]) on the channel ([DefaultChannel],
// "keygate:keys", unless [WithChannel]) — the same message the PostgreSQL
// feed sends. Every
// instance's Feed, the writer's included, turns it into
// [keystore.CachedStore.Invalidate]. A message that does not parse is
// logged (its length, never its content) and drops the whole cache.
//
// # How long a revoked key keeps working elsewhere
//
//   - While the feed is healthy: the delivery latency. Measured on
//     loopback (TestDeliveryLatency, 300 trials, on a busy 2-core
//     machine), from the start of Revoke to the Invalidate call on another
//     Feed: about 0.1 ms at the median, 0.2 to 3 ms at the 99th
//     percentile.
//   - While the feed is down (the Feed has reported SetFeedHealthy(false)):
//     the cache trusts a record for at most StaleAfter
//     ([keystore.WithStaleAfter], default [keystore.DefaultStaleAfter],
//     5 s) after it read it from the store; older records are read again.
//     When the Feed is subscribed again, the cache drops everything, since
//     messages were lost meanwhile.
//   - A connection that breaks openly (reset, closed, CLIENT KILL, server
//     restart) is reported at once (within the ping interval at worst: the
//     client's own attempt to reconnect, which the Feed discards, comes
//     first and is bounded by it). One that goes silent (a network
//     partition) is noticed by the health check ([WithHealthCheck]) within
//     about 3 s by default; a revocation published in that window is
//     honoured elsewhere for at most the longer of that and StaleAfter.
//   - If the message is lost while the feed looks healthy: the cache's
//     positive TTL ([keystore.DefaultPositiveTTL], 10 s).
//
// # Compared with the PostgreSQL feed
//
// PostgreSQL's NOTIFY is transactional: it is sent inside the write's
// transaction and delivered if and only if the write commits. A Redis
// PUBLISH cannot join the store's transaction, so the PublishingStore
// publishes after the write has committed. Two things follow:
//
//   - If the instance crashes (or loses Redis) between the commit and the
//     publish, the write is made but no message is ever sent: other
//     instances keep honouring what they cached until it expires — the
//     positive TTL (10 s by default) while their feed is healthy,
//     StaleAfter while it is down. Nothing retries the message later.
//   - If the publish fails, Revoke and SetDisabled return the record and
//     an error matching [ErrNotPublished]: the change is made, and this
//     instance's cache has it, but the others were not told. Answer it
//     with a 5xx so that the client retries; both calls are idempotent
//     and a retry publishes again. Replace logs the failure instead of
//     returning it (see [PublishingStore] for why).
//
// Redis Pub/Sub itself is fire-and-forget, like NOTIFY: a subscriber that
// is disconnected misses what is published meanwhile, which is why every
// new subscription starts by dropping the cache. Redis also disconnects a
// subscriber that falls too far behind (client-output-buffer-limit
// pubsub); the Feed sees that as a lost connection like any other.
//
// # Security
//
// Messages carry key IDs and digests, never keys; nothing logged or
// returned contains a key, a digest, a message's content or the Redis
// password. Whoever can PUBLISH on the channel can make every instance
// drop cache entries (costing store reads), but can never make a key
// valid: an invalidation only sends lookups back to the store. Whoever can
// SUBSCRIBE learns which key IDs change. Restrict the channel with Redis
// ACLs (for example &keygate:* for the service's user only).
//
// # Goroutines
//
// A [PublishingStore] starts none. A [Feed] runs one goroutine and holds
// one connection from the client's Pub/Sub pool until [Feed.Close]; it
// does not close the client.
//
// # Go version
//
// The module says go 1.24, like keygate's core, and uses
// github.com/redis/go-redis/v9 v9.22.0, the newest release whose go.mod
// says go 1.24 (the one auth/redislimit uses too); v9.23.0 says go
// 1.26.0, which would make Go 1.26 a requirement of every module importing
// this one.
package redisfeed
