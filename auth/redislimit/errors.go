package redislimit

import "errors"

// Sentinel errors. Errors from Redis itself are wrapped, not translated:
// any error from [Limiter.Allow] or [Limiter.Peek] means no decision was
// made, and the caller's policy decides whether to fail open or closed.
var (
	// ErrInvalidLimit means a Limit fails [auth.Limit.Validate]: its name
	// has characters other than letters, digits, '_', '-' and '.', its
	// Burst is negative, its Period is under a millisecond, or a full
	// budget takes more than 10 years to come back. Redis is not asked.
	ErrInvalidLimit = errors.New("redislimit: invalid limit")
	// ErrContextTimeoutDisabled means [New] was given a go-redis client
	// created without ContextTimeoutEnabled, which would ignore context
	// deadlines and the Limiter's timeout.
	ErrContextTimeoutDisabled = errors.New("redislimit: the client ignores context deadlines; create it with ContextTimeoutEnabled: true")
)
