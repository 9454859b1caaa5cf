package redisfeed

import "errors"

// ErrNotPublished is matched by the error a [PublishingStore] returns when
// a write reached the store but its invalidation message could not be
// published: the change is made, and this instance sees it, but other
// instances' caches were not told and keep trusting what they cached until
// it expires. The error also wraps the Redis client's error.
//
// Callers should answer it like any back-end failure (HTTP 5xx) so that
// the client retries: Revoke and SetDisabled are idempotent, and a retry
// publishes again.
var ErrNotPublished = errors.New("redisfeed: write done, but other instances were not told")
