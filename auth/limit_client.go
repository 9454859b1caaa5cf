package auth

import (
	"net/http"
)

// msgTooManyFromAddr is the message of a 429 from [Guard.LimitByClientAddr].
const msgTooManyFromAddr = "Too many requests from this address. Retry after the number of seconds in the Retry-After header."

// LimitByClientAddr returns middleware that enforces l on each client
// address, for endpoints that no credential protects: a token refresh
// endpoint, whose credential is in the body, a sign-up or a login form.
// Every request spends one request from its address's budget, whatever it
// carries and however it ends; once the budget is spent, requests from the
// address are answered 429 with Retry-After by the Guard's [ErrorHandler]
// (an [*Error] of kind [ErrRateLimited]) and next is not called.
//
// The address is the one the Guard's failure limit uses ([WithClientAddr];
// by default the TCP peer), with IPv6 addresses grouped by /64. A request
// whose address is unknown is not limited. Budgets are kept under l's name
// ([Limit.PolicyName]), apart from the Guard's other budgets as long as
// that name is not one of theirs: give l a name of its own. The
// middleware uses the Guard's Limiter and failure policy
// ([RateLimits.FailClosed]: a failing Limiter lets the request through, or
// answers 503), and adds l's RateLimit-Policy and RateLimit members to the
// response, as [Guard.Limit] does. With an Observer ([WithObserver]) a
// refused request is reported as an [EventRateLimited] with its
// ClientAddr, Status and Err.
//
// A zero l limits nothing: the middleware returns next itself.
// LimitByClientAddr panics if l is invalid ([Limit.Validate]) or if the
// Guard has no Limiter ([WithRateLimits]): such a configuration is a
// programming error, found when the routes are built. The middleware is
// safe for concurrent use.
func (g *Guard) LimitByClientAddr(l Limit) func(http.Handler) http.Handler {
	return g.spendMiddleware("Guard.LimitByClientAddr", l, msgTooManyFromAddr,
		func(r *http.Request, pol *limitPolicy) (budget, error) {
			addr, key := g.clientAddr(r, g.observer != nil)
			return budget{lim: pol.limit, key: key, addr: addr}, nil
		})
}
