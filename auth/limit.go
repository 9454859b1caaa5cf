package auth

import (
	"context"
	"time"
)

// Limit is a rate limit: Requests per Period, allowing bursts of up to
// Burst requests at once. The zero Limit means "no limit".
type Limit struct {
	// Name names the limit in the RateLimit-Policy and RateLimit response
	// headers and keeps budgets apart: the same key under two Limits with
	// different names has two budgets. It must be a token of RFC 9110
	// (letters, digits, '_', '-', '.'); empty means "default".
	Name string
	// Requests is how many requests are allowed per Period. Zero or less
	// means no limit.
	Requests int
	// Period is the window Requests is counted over.
	Period time.Duration
	// Burst is how many requests may arrive at once; zero means Requests.
	Burst int
}

// PerMinute returns a Limit of n requests a minute named name, with
// bursts of up to n.
func PerMinute(name string, n int) Limit {
	return Limit{Name: name, Requests: n, Period: time.Minute}
}

// PerHour returns a Limit of n requests an hour named name, with bursts
// of up to n.
func PerHour(name string, n int) Limit {
	return Limit{Name: name, Requests: n, Period: time.Hour}
}

// IsZero reports whether l sets no limit.
func (l Limit) IsZero() bool { return l.Requests <= 0 || l.Period <= 0 }

// Decision is a [Limiter]'s answer for one request.
type Decision struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Limit is the limit the decision was made under.
	Limit Limit
	// Remaining is how many more requests the budget allows right now.
	Remaining int
	// Reset is how long until the budget is full again.
	Reset time.Duration
	// RetryAfter is, when Allowed is false, how long until one request
	// would be allowed.
	RetryAfter time.Duration
}

// Limiter keeps rate-limit budgets, one per key and limit name. Keys are
// always verified identities (a key ID) or the client's own address, never
// unverified input. Implementations must be safe for concurrent use; an
// error means the limiter's backend failed, and the caller's policy
// decides whether that fails open or closed.
type Limiter interface {
	// Allow spends one request from key's budget under l if the budget
	// allows it, and reports the state after.
	Allow(ctx context.Context, key string, l Limit) (Decision, error)
	// Peek reports key's budget under l without spending any: Allowed
	// says whether one more request would be allowed.
	Peek(ctx context.Context, key string, l Limit) (Decision, error)
}
