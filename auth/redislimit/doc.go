// Package redislimit is an [auth.Limiter] that keeps rate-limit budgets in
// Redis, so that every instance of a service shares one budget per key and
// limit instead of each granting the limit again.
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "127.0.0.1:6379",
//		ContextTimeoutEnabled: true, // required
//	})
//	limiter, err := redislimit.New(client)
//	…
//	d, err := limiter.Allow(ctx, keyID, auth.PerMinute("api", 60))
//
// It is a nested module (github.com/keygate/keygate/auth/redislimit), so
// that only services that use it depend on go-redis.
//
// # Algorithm
//
// A Limiter decides as [auth.MemoryLimiter] does, with the generic cell
// rate algorithm (GCRA): a budget is one timestamp, its theoretical arrival
// time (TAT). With the emission interval T = Period/Requests (as
// [auth.Limit.Interval] truncates it) and the span of a full budget
// C = Burst × T, a request at time now is allowed when
//
//	max(TAT, now) + T - now <= C
//
// and an allowed request moves the TAT to max(TAT, now) + T. So a fresh
// budget allows Burst requests at once, then one every T, and a refused
// request spends nothing. Reset is max(TAT - now, 0), the time until the
// budget is full; Remaining is how many more T fit below C; RetryAfter,
// for a refused request, is max(TAT, now) + T - C - now.
//
// Each Allow, Peek or Refund is one round trip: a Lua script that reads
// the TAT, decides, and writes the new TAT, atomically, so concurrent calls
// from any number of instances never allow more than the budget. Refund
// (the [auth.Refunder] the Guard uses for failure budgets) moves the TAT
// back by T, and deletes the key once the budget is full. The script is sent
// with EVALSHA, and in full with EVAL only when Redis answers NOSCRIPT
// (after a restart, a failover or SCRIPT FLUSH), which caches it again.
// The script does its arithmetic in whole microseconds plus nanoseconds,
// never rounding, so that its decisions equal [auth.MemoryLimiter]'s to the
// nanosecond.
//
// # Clock
//
// Time is Redis's: the script reads it with the TIME command. The clocks
// of the machines that run the service do not matter, and need not agree.
// A Redis whose clock jumps backwards makes budgets refill late; one that
// jumps forwards refills them early.
//
// # Keys and memory
//
// A budget lives in one Redis string at
//
//	<prefix><limit name>:<key>
//
// where the prefix is "keygate:rl:" unless [WithPrefix] sets another, and
// the limit name is "default" when empty ([auth.Limit.PolicyName]); the
// key may hold any bytes. Names may not contain ':' ([auth.Limit.Validate]),
// so no two (name, key) pairs share a Redis key. The value is the TAT,
// "<microseconds since 1970>:<nanoseconds>" of Redis time. Only one key is
// touched per call, so the script runs as is on Redis Cluster.
//
// Every write sets the key to expire when its TAT is reached (rounded up
// to the millisecond), the moment the budget is full again, which is the
// same as having no key. Peek and refused requests write nothing. So a
// budget occupies Redis for at most C (Period, when Burst is Requests)
// after the last request it allowed: the number of keys is bounded by the
// number of distinct (limit, key) pairs with an allowed request in the
// last C, each about 150 bytes plus the key's length on a 64-bit Redis 7.
// Keys are verified identities or client addresses, never unverified input
// (see [auth.Limiter]), so that number is bounded by the service's real
// clients.
//
// # Failures
//
// Any Redis error, an unreachable Redis or a timeout is returned, wrapped
// with the operation and the limit's name ("redislimit: allow \"api\": …")
// and never with the key or the client's password; it says nothing about
// whether the request is allowed, and the caller's policy decides whether
// to fail open or closed. Each call is bounded by the caller's context and
// by the Limiter's own timeout ([WithTimeout], [DefaultTimeout] 100ms),
// whichever ends first; a deadline that ran out matches
// [context.DeadlineExceeded] under [errors.Is]. go-redis only passes
// context deadlines to the network when the client was created with
// ContextTimeoutEnabled: true, so [New] refuses a client without it
// ([ErrContextTimeoutDisabled]). Against a Redis that is down, go-redis
// retries the dial (5 times, 100ms apart, by default) until the deadline
// ends the call; a client with DialerRetries: 1 fails at once.
//
// A call that timed out may still have run in Redis, and go-redis may
// retry a command whose answer was lost (its MaxRetries): both can spend a
// request that the caller never saw allowed, which makes the limit
// stricter, never looser.
//
// The zero [auth.Limit] allows every request without a round trip; a limit
// that [auth.Limit.Validate] rejects is an error ([ErrInvalidLimit]), also
// without a round trip.
//
// # Concurrency
//
// A [Limiter] is safe for concurrent use. It starts no goroutines and
// holds no state besides its configuration, so it needs no Close; the
// go-redis client it uses belongs to the caller, who closes it.
package redislimit
