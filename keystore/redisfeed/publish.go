package redisfeed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keystore"
)

// PublishingStore is a [keystore.Store] in front of another one that tells
// other instances' caches about its writes: after each write that can make
// a cached record wrong succeeds, it PUBLISHes an invalidation message
// (the key's ID and digest) on a Redis channel ([DefaultChannel] unless
// [WithChannel]), which every instance's [Feed] applies to its
// [keystore.CachedStore]. It implements [keystore.Store],
// [keystore.Toucher] and [keystore.Disabler].
//
// What is published:
//
//   - Revoke and SetDisabled: the record's ID and digest, once the store
//     has made the change. If the publish fails, the record is returned
//     with an error matching [ErrNotPublished] (and the Redis error): the
//     write is done, but other instances were not told. Both calls are
//     idempotent, so a caller that answers 5xx and has its client retry
//     publishes again.
//   - Replace: the old key's ID and digest (read back from the store after
//     the Replace; the ID alone if that read fails, which a
//     [keystore.CachedStore] resolves through its index). A publish failure
//     here is logged, not returned: [keystore.Manager.Rotate] would throw
//     away the new key, which is already stored and whose plaintext exists
//     nowhere else, and a retry would fail with
//     [keystore.ErrAlreadyRevoked] without publishing. Other instances then
//     honour the old key until their cached record expires (the positive
//     TTL, or StaleAfter if their feed is down too, as it is when Redis
//     itself is down).
//   - Create publishes nothing: a new key's ID and digest are random, so no
//     instance has anything cached about them; at worst an instance that
//     looked the ID up before it existed answers "not found" for the
//     negative TTL.
//   - Touch and RecordUsage publish nothing: last-used times and usage
//     counters do not affect verification.
//
// Nothing is published when the store's write fails; the caller gets the
// store's error unchanged. The publish happens after the store's write has
// committed, not inside it: an instance that crashes in between leaves the
// other instances relying on their caches' expiry (see the package
// documentation).
//
// Place the PublishingStore under the cache:
//
//	keystore.NewManager(cache) // cache: keystore.NewCachedStore(pub, keystore.WithInvalidationFeed())
//
// so that this instance's own writes update its cache at once, whatever
// happens to the message.
//
// Touch, SetDisabled and RecordUsage call the wrapped store's
// [keystore.Toucher], [keystore.Disabler] and [keystore.UsageWriter]
// methods; when it lacks them they return an error matching
// [errors.ErrUnsupported].
//
// A PublishingStore is safe for concurrent use if the wrapped store is, and
// starts no goroutines. Make one with [NewPublishingStore]; the zero value
// is not usable.
type PublishingStore struct {
	store    keystore.Store
	toucher  keystore.Toucher
	disabler keystore.Disabler
	usage    keystore.UsageWriter
	client   redis.UniversalClient
	cfg      config
	redact   redactor
}

// Interface checks.
var (
	_ keystore.Store       = (*PublishingStore)(nil)
	_ keystore.Toucher     = (*PublishingStore)(nil)
	_ keystore.Disabler    = (*PublishingStore)(nil)
	_ keystore.UsageWriter = (*PublishingStore)(nil)
)

// NewPublishingStore returns a [PublishingStore] that writes to store and
// publishes through client. It uses the options [WithChannel],
// [WithPublishTimeout] and [WithLogger], and ignores the others. It
// returns an error if store or client is nil or an option is invalid. It
// does not contact Redis: a client that cannot reach it makes the writes
// fail with [ErrNotPublished] later.
func NewPublishingStore(store keystore.Store, client redis.UniversalClient, opts ...Option) (*PublishingStore, error) {
	if store == nil {
		return nil, errors.New("redisfeed: nil store")
	}
	if client == nil {
		return nil, errors.New("redisfeed: nil Redis client")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("redisfeed: %w", err)
	}
	s := &PublishingStore{store: store, client: client, cfg: cfg, redact: newRedactor(client)}
	s.toucher, _ = store.(keystore.Toucher)
	s.disabler, _ = store.(keystore.Disabler)
	s.usage, _ = store.(keystore.UsageWriter)
	return s, nil
}

// Channel returns the channel the PublishingStore publishes on.
func (s *PublishingStore) Channel() string { return s.cfg.channel }

// publish sends the invalidation of the key with this ID and digest. Its
// context keeps ctx's values but not its cancellation: the write is done,
// and its message should go out even if the caller has gone away.
func (s *PublishingStore) publish(ctx context.Context, op, id string, d keystore.Digest) error {
	payload, err := keystore.Invalidation{ID: id, Digest: d}.MarshalText()
	if err != nil {
		return fmt.Errorf("%w (%s): encode message: %w", ErrNotPublished, op, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.publishTimeout)
	defer cancel()
	if err := s.client.Publish(ctx, s.cfg.channel, payload).Err(); err != nil {
		return fmt.Errorf("%w (%s): %w", ErrNotPublished, op, s.redact.redact(err))
	}
	return nil
}

// LookupDigest implements [keystore.Lookuper] by calling the store.
func (s *PublishingStore) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	return s.store.LookupDigest(ctx, d)
}

// Get implements [keystore.Store] by calling the store.
func (s *PublishingStore) Get(ctx context.Context, id string) (keystore.Record, error) {
	return s.store.Get(ctx, id)
}

// List implements [keystore.Store] by calling the store.
func (s *PublishingStore) List(ctx context.Context, project string) ([]keystore.Record, error) {
	return s.store.List(ctx, project)
}

// Create implements [keystore.Store] by calling the store. It publishes
// nothing (see [PublishingStore]).
func (s *PublishingStore) Create(ctx context.Context, r keystore.Record) error {
	return s.store.Create(ctx, r)
}

// Revoke implements [keystore.Store]: it revokes the key in the store and
// then publishes its ID and digest. If the publish fails it returns the
// revoked record and an error matching [ErrNotPublished]; calling Revoke
// again publishes again.
func (s *PublishingStore) Revoke(ctx context.Context, id string, at time.Time) (keystore.Record, error) {
	r, err := s.store.Revoke(ctx, id, at)
	if err != nil {
		return r, err
	}
	return r, s.publish(ctx, "revoke", id, r.Digest)
}

// Replace implements [keystore.Store]: it replaces the key in the store
// and then publishes the old key's ID and digest. A publish failure is
// logged, at level Error, and not returned (see [PublishingStore] for why).
func (s *PublishingStore) Replace(ctx context.Context, oldID string, revokeAt time.Time, next keystore.Record) error {
	if err := s.store.Replace(ctx, oldID, revokeAt, next); err != nil {
		return err
	}
	var d keystore.Digest
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.publishTimeout)
	old, err := s.store.Get(gctx, oldID)
	cancel()
	if err == nil && old.ID == oldID {
		d = old.Digest
	}
	if err := s.publish(ctx, "replace", oldID, d); err != nil {
		s.cfg.logger.Error("redisfeed: key replaced, but other instances were not told; they accept the old key until their cached record expires",
			"channel", s.cfg.channel, "key_id", oldID, "err", err)
	}
	return nil
}

// SetDisabled implements [keystore.Disabler] when the store does;
// otherwise it returns an error matching [errors.ErrUnsupported]. It
// changes the store and then publishes the key's ID and digest. If the
// publish fails it returns the record and an error matching
// [ErrNotPublished]; calling SetDisabled again publishes again.
func (s *PublishingStore) SetDisabled(ctx context.Context, id string, disabled bool) (keystore.Record, error) {
	if s.disabler == nil {
		return keystore.Record{}, fmt.Errorf("redisfeed: store %T cannot disable keys: %w", s.store, errors.ErrUnsupported)
	}
	r, err := s.disabler.SetDisabled(ctx, id, disabled)
	if err != nil {
		return r, err
	}
	return r, s.publish(ctx, "set disabled", id, r.Digest)
}

// RecordUsage implements [keystore.UsageWriter] by passing the batch to
// the wrapped store; it publishes nothing.
func (s *PublishingStore) RecordUsage(ctx context.Context, batch []keystore.Usage) error {
	if s.usage == nil {
		return fmt.Errorf("redisfeed: store %T cannot record usage: %w", s.store, errors.ErrUnsupported)
	}
	return s.usage.RecordUsage(ctx, batch)
}

// Touch implements [keystore.Toucher] when the store does; otherwise it
// returns an error matching [errors.ErrUnsupported]. It publishes nothing.
func (s *PublishingStore) Touch(ctx context.Context, id string, at time.Time) error {
	if s.toucher == nil {
		return fmt.Errorf("redisfeed: store %T cannot record last-used times: %w", s.store, errors.ErrUnsupported)
	}
	return s.toucher.Touch(ctx, id, at)
}
