package auth

import (
	"context"
	"fmt"
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

// PolicyName returns l's Name, or "default" when it is empty: the name
// that keeps l's budgets apart and that the RateLimit headers show.
func (l Limit) PolicyName() string {
	if l.Name == "" {
		return "default"
	}
	return l.Name
}

// Interval returns the time one request's worth of budget takes to come
// back, Period/Requests (truncated to the nanosecond, at least 1 ns), or 0
// for the zero Limit.
func (l Limit) Interval() time.Duration {
	if l.IsZero() {
		return 0
	}
	return max(l.Period/time.Duration(l.Requests), 1)
}

// MaxBurst returns how many requests a full budget allows at once: Burst,
// or Requests when Burst is zero or less; 0 for the zero Limit.
func (l Limit) MaxBurst() int {
	switch {
	case l.IsZero():
		return 0
	case l.Burst > 0:
		return l.Burst
	}
	return l.Requests
}

// Validate reports whether l can be used: its Name is empty or at most
// 64 letters, digits, '_', '-' and '.', Burst is not negative, and a Limit with
// Requests set has a Period of at least a millisecond and a full budget
// (MaxBurst intervals) of at most 10 years. The zero Limit is valid.
func (l Limit) Validate() error {
	if len(l.Name) > 64 {
		return fmt.Errorf("auth: limit name %.64q…: longer than 64 bytes", l.Name)
	}
	for i := 0; i < len(l.Name); i++ {
		if !isNameChar(l.Name[i]) {
			return fmt.Errorf("auth: limit name %q: only letters, digits, '_', '-' and '.' are allowed", l.Name)
		}
	}
	if l.Burst < 0 {
		return fmt.Errorf("auth: limit %q: negative Burst %d", l.Name, l.Burst)
	}
	if l.Requests <= 0 {
		return nil
	}
	if l.Period < time.Millisecond {
		return fmt.Errorf("auth: limit %q: Period %v is shorter than a millisecond", l.Name, l.Period)
	}
	const longest = 10 * 365 * 24 * time.Hour
	if iv := l.Interval(); iv > 0 && int64(l.MaxBurst()) > int64(longest/iv) {
		return fmt.Errorf("auth: limit %q: a full budget of %d requests takes more than 10 years to come back", l.Name, l.MaxBurst())
	}
	return nil
}

// isNameChar reports whether c may appear in a limit's name: a letter, a
// digit, '_', '-' or '.', a subset of the tchar of RFC 9110 §5.6.2 that
// every header syntax accepts as is.
func isNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.'
}

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
	// would be allowed; zero when Allowed.
	RetryAfter time.Duration
}

// Limiter keeps rate-limit budgets, one per key and limit name. Keys are
// always verified identities (a key ID) or the client's own address, never
// unverified input. Implementations must be safe for concurrent use; an
// error means the limiter's backend failed, and the caller's policy
// decides whether that fails open or closed.
//
// The contract, which [github.com/keygate/keygate/auth/limittest.Run]
// checks, is that of the generic cell rate algorithm (GCRA), a token
// bucket refilled continuously:
//
//   - A budget is identified by l.PolicyName() and key together: the same
//     key under two names, or two keys under one name, are two budgets
//     (joining name and key into one string must not make two of them
//     collide). An empty name and "default" are the same name.
//   - A full budget allows l.MaxBurst() requests at once, and one request's
//     worth comes back every l.Interval(): with a theoretical arrival time
//     TAT (initially in the past), a request at time now is allowed if
//     now >= max(TAT, now) + Interval - MaxBurst*Interval, and then sets
//     TAT to max(TAT, now) + Interval. A refused request changes nothing.
//   - Remaining is how many more requests would be allowed right now
//     (after this one, for Allow); Reset is how long until the budget is
//     full again, max(TAT, now) - now; RetryAfter is zero when Allowed and
//     otherwise how long until one request would be allowed.
//   - The zero Limit (l.IsZero()) allows every request; a Limiter may
//     answer it without touching its backend.
//
// Durations may be rounded to the millisecond.
type Limiter interface {
	// Allow spends one request from key's budget under l if the budget
	// allows it, and reports the state after.
	Allow(ctx context.Context, key string, l Limit) (Decision, error)
	// Peek reports key's budget under l without spending any: Allowed
	// says whether one more request would be allowed, Remaining how many.
	Peek(ctx context.Context, key string, l Limit) (Decision, error)
}

// Refunder is a [Limiter] that can give back a request it allowed: the
// budget is as if that Allow had not been made (a budget never holds more
// than full). Refunding a key with no budget does nothing.
//
// The Guard uses it for failure budgets: once a client has failed, its
// next requests are taken from its failure budget before they are
// authenticated, and given back when they do not fail, so that many
// concurrent requests cannot all slip past a nearly spent budget. With a
// Limiter that cannot refund, the Guard peeks before and spends after,
// and concurrent requests can overshoot the budget by their number.
// [MemoryLimiter] implements it, and so does the Redis limiter of
// auth/redislimit.
type Refunder interface {
	Refund(ctx context.Context, key string, l Limit) error
}
