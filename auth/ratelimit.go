package auth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// RateLimits configures the rate limits of a [Guard]; see [WithRateLimits]
// and [DefaultRateLimits]. The zero RateLimits limits nothing.
type RateLimits struct {
	// Limiter keeps the budgets. It is required when any limit is set.
	Limiter Limiter
	// APIKey limits each API key, by its key ID, for principals of
	// MethodAPIKey. The zero Limit means no limit.
	APIKey Limit
	// AccessToken limits each API key's access tokens, by the key ID, for
	// principals of MethodAccessToken; a token of an external identity
	// provider (no key ID) is limited by its Subject instead, under the
	// name AccessToken.Name + ".sub", so that a subject and a key ID never
	// share a budget. The zero Limit means no limit.
	AccessToken Limit
	// Failures limits failed authentications per client address: a
	// request whose credential is invalid (401 invalid_token) or whose
	// credentials are malformed (400) spends one from its address's
	// budget, and once the budget is spent every request from that
	// address is answered 429 before its credential is even read, so a
	// brute-force flood costs neither hashing nor a store lookup. IPv6
	// addresses are grouped by /64. The zero Limit means no limit.
	//
	// Concurrent requests: with a Limiter that implements [Refunder] (as
	// [MemoryLimiter] and auth/redislimit's do), once an address has
	// failed its requests are taken from the budget before they are
	// authenticated and given back if they do not fail, so a burst of
	// concurrent guesses cannot slip past a nearly spent budget. A full
	// budget (no failure to refill) is not taken from up front, so the
	// first burst from a quiet address can exceed it by the burst's size,
	// until the first failure lands. With a Limiter that cannot refund,
	// every check is a peek. The same holds for CredentialFailures.
	//
	// Cost: the Guard remembers, in a fixed 8 KiB table per budget kind,
	// which addresses and credentials it saw fail (or found in use) within
	// their budget's refill time (plus a second), and asks the Limiter
	// only about those: a client that has not failed lately costs no
	// Limiter call before it is authenticated. The table may remember too
	// much (two keys can share a slot: a needless peek) but never forgets
	// early. Failures seen by other instances sharing the Limiter are not
	// in it, so each instance authenticates at most one request per
	// address or credential per refill time before it checks that budget;
	// the failure is spent from the shared budget all the same.
	Failures Limit
	// CredentialFailures limits failed authentications per credential,
	// whatever the address: a credential that has failed this often (a
	// revoked or guessed key replayed by many machines) is answered 429
	// after it is read but before it is hashed or looked up. A credential
	// is known by a 64-bit hash of it, never by any of its
	// characters (the last characters of a keygate key are a checksum of
	// the rest: a suffix would give away much of the key to wherever the
	// budgets are kept). A valid key is not affected by other credentials'
	// failures unless their hashes collide, which an attacker cannot aim
	// for without the key. The zero Limit means no limit.
	CredentialFailures Limit
	// FailClosed makes the Guard answer 503 when the Limiter fails. By
	// default (false) the Guard fails open: the request proceeds as if
	// it were not limited, and the failure is logged at most once every
	// 10 seconds.
	//
	// After a Limiter call fails, the Guard leaves the Limiter alone for
	// a second: meanwhile every limit a request meets fails at once, as
	// that call did, without waiting for the Limiter's timeout (with
	// FailClosed, every request the limits cover is answered 503). A
	// request that needs no Limiter call meets no failure outside that
	// second: with only Failures and CredentialFailures set, a client
	// that has not failed lately is authenticated without asking the
	// Limiter (see Failures), so while the Limiter is down such a client
	// is refused only in the second after a call that failed.
	FailClosed bool
}

// DefaultRateLimits returns the limits keygate recommends, kept by l:
//
//	API keys          600 a minute per key ("api_key"), bursts of 600
//	access tokens   1,200 a minute per key ("access_token"), bursts of 1,200
//	failures           20 a minute per client address ("auth_failures"),
//	                   bursts of 20
//	                   10 a minute per credential ("credential_failures"),
//	                   bursts of 10
//
// failing open. Twenty failures a minute is well above what a client with
// a mistyped key produces, and caps a brute-force attempt from one address
// at about 29,000 guesses a day, against keys of 131 random bits.
func DefaultRateLimits(l Limiter) RateLimits {
	return RateLimits{
		Limiter:     l,
		APIKey:      PerMinute("api_key", 600),
		AccessToken: PerMinute("access_token", 1200),
		Failures:    PerMinute("auth_failures", 20),

		CredentialFailures: PerMinute("credential_failures", 10),
	}
}

// credentialKey returns the budget key of cred for
// RateLimits.CredentialFailures: a 64-bit hash of it, in hexadecimal. The
// hash reads 8 bytes a step (multiply and xor-shift, as murmur's finalizer
// mixes), so that it costs a few nanoseconds; it is not a cryptographic
// hash, and need not be one: the budget key of a credential of 131 random
// bits gives away 64 bits of it at most, and making another credential
// with the same key needs the key. It is the same in every process, so
// that instances sharing a Limiter share the budget.
func credentialKey(cred string) string {
	const m = 0x9e3779b97f4a7c15
	h := uint64(len(cred)) * m
	for len(cred) >= 8 {
		w := binary.LittleEndian.Uint64([]byte(cred[:8]))
		h = (h ^ w) * m
		h ^= h >> 29
		cred = cred[8:]
	}
	var tail uint64
	for i := len(cred) - 1; i >= 0; i-- {
		tail = tail<<8 | uint64(cred[i])
	}
	h = (h ^ tail) * m
	h ^= h >> 32
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	var b [16]byte
	const digits = "0123456789abcdef"
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[h&15]
		h >>= 4
	}
	return string(b[:])
}

// WithRateLimits makes the Guard's middleware ([Guard.Middleware],
// [Guard.Optional] and [Guard.RequireScopes]) enforce rl. There are no
// limits by default.
//
// For each request the middleware first checks the failure budget of the
// client's address ([WithClientAddr]), if the address failed lately (see
// [RateLimits.Failures]); when it is spent the request is answered 429
// without reading its credential. Otherwise the request
// is authenticated; a failure with an invalid credential or a malformed
// request spends from the address's budget. A request that authenticates
// spends from its principal's budget: the principal's own
// [Principal.RateLimit] when set (an invalid one is ignored), or else the
// limit of its method; a principal of another
// method, or without a key ID or subject, is not limited. Budgets are
// keyed on the verified key ID, never on anything the client sent, so a
// forged or unknown key cannot spend the real key's budget.
//
// A refused request is answered 429 with Retry-After by the Guard's
// [ErrorHandler], with an [*Error] of kind [ErrRateLimited]. Every
// response to a limited request, allowed or not, carries the
// RateLimit-Policy and RateLimit header fields of
// draft-ietf-httpapi-ratelimit-headers-11, such as
//
//	RateLimit-Policy: "api_key";q=600;w=60
//	RateLimit: "api_key";r=599;t=1
//
// where q is the limit's Requests, w its Period in seconds (rounded up),
// r the requests remaining now, and t the seconds (rounded up) until the
// budget is full again, or, when r is 0, until the next request is
// allowed. A success carries its principal's limit; a failure the
// address's failure limit.
//
// [Guard.Authenticate] does not apply limits: it is the decision alone.
// When the Limiter fails, the request proceeds unlimited (fail open, the
// default, logged at most once every 10 seconds) or is answered 503
// ([RateLimits.FailClosed]). With limits the middleware allocates no more
// per successful request when the client address is IPv4 read from
// RemoteAddr and its credential has not failed lately; an IPv6 address
// (its /64 key) and a credential that failed (its budget key) cost one
// allocation each.
//
// WithRateLimits returns an error from [New] if a limit is invalid
// ([Limit.Validate]), if a limit is set without a Limiter, or if Failures
// shares its name with APIKey or AccessToken.
func WithRateLimits(rl RateLimits) Option {
	return func(c *config) {
		limits, err := newGuardLimits(rl)
		if err != nil {
			c.fail(err)
			return
		}
		c.limits = limits
	}
}

// WithClientAddr sets how the Guard finds a request's client address, for
// the failure limit of [WithRateLimits] and for [Event.ClientAddr]. The
// default parses [http.Request.RemoteAddr], the address of the TCP peer;
// behind a proxy, pass a function that reads the header the proxy sets
// (and that only the proxy can set). An invalid address means "unknown":
// such a request is not subject to the failure limit. f must not be nil
// and must be safe for concurrent use.
func WithClientAddr(f func(*http.Request) netip.Addr) Option {
	return func(c *config) {
		if f == nil {
			c.fail(errors.New("auth: WithClientAddr: nil function"))
			return
		}
		c.clientAddr = f
	}
}

// WithObserver makes the Guard's middleware report to o: an
// [EventAuthenticated] for each request that authenticates (with the
// Principal's Method, KeyID, Project, Subject, TokenID, Session and Hint),
// an [EventAuthFailed] for each that fails (with Err, Status and Hint, the
// masked credential), an [EventRateLimited] for each 429 (after the
// EventAuthenticated of a principal that is over its limit), and an
// [EventForbidden] for each 403 of [Guard.RequireScopes] (the
// package-level [RequireScopes] has no Observer to report to). Every event
// carries the client address and the time; the first two the time
// authentication took. [Guard.Optional] reports nothing for a request
// without a credential. With no observer, the default, nothing is
// measured. A nil o means no observer.
func WithObserver(o Observer) Option {
	return func(c *config) {
		c.observer = o
	}
}

// guardLimits is a Guard's rate-limit configuration, with the header
// values of each limit built once.
type guardLimits struct {
	limiter     Limiter
	apiKey      *limitPolicy // nil: not limited
	accessToken *limitPolicy
	failures    *limitPolicy
	credentials *limitPolicy // RateLimits.CredentialFailures
	// seenAddrs and seenCreds remember which failure budgets of
	// addresses and of credentials may be in use; nil without the
	// budget.
	seenAddrs, seenCreds *failureFilter
	refunder             Refunder    // the limiter, if it can refund; else nil
	resting              atomic.Bool // the limiter failed within limiterRest
	failClosed           bool
	overrides            policyCache // policies of Principal.RateLimit
	logged               logLimiter
}

// limitPolicy is one Limit with the header values the middleware sends.
// The slices are shared by every response and must not be modified;
// net/http does not modify header values in place, and appending to a
// slice whose capacity is its length copies it.
type limitPolicy struct {
	limit   Limit    // as passed to the Limiter for a key ID or an address
	subject Limit    // as passed for a subject: Name + ".sub"
	policy  []string // RateLimit-Policy: "name";q=600;w=60
	prefix  string   // the start of RateLimit: "name";r=
	// full is the RateLimit value of a request allowed from a full
	// budget, the usual state of a client within its limit: r is
	// MaxBurst-1 and t one interval, rounded up (see fresh).
	full         []string
	fullR, fullT int64
}

func newLimitPolicy(l Limit) *limitPolicy {
	if l.IsZero() {
		return nil
	}
	name := l.PolicyName()
	l.Name = name
	sub := l
	sub.Name = name + ".sub"
	w := (l.Period + time.Second - 1) / time.Second
	p := &limitPolicy{
		limit:   l,
		subject: sub,
		policy:  []string{`"` + name + `";q=` + strconv.Itoa(l.Requests) + ";w=" + strconv.FormatInt(int64(w), 10)},
		prefix:  `"` + name + `";r=`,
		fullR:   int64(l.MaxBurst() - 1),
		fullT:   ceilSeconds(l.Interval()),
	}
	p.full = []string{p.value(Decision{Allowed: true, Remaining: l.MaxBurst() - 1, Reset: l.Interval()})}
	return p
}

// fresh returns p.full when it is the RateLimit value for d, a request
// allowed with r and t as from a full budget; nil otherwise. The value
// depends only on r and t, whatever the budget's state before.
func (p *limitPolicy) fresh(d Decision) []string {
	if d.Allowed && int64(d.Remaining) == p.fullR && ceilSeconds(d.Reset) == p.fullT {
		return p.full
	}
	return nil
}

// value returns the RateLimit field value for d, in one allocation.
func (p *limitPolicy) value(d Decision) string {
	var buf [rateLimitValueMax]byte
	return string(p.appendValue(buf[:0], d))
}

// rateLimitValueMax bounds the length of a RateLimit field value: a quoted
// policy name (at most 64 bytes, and a suffix such as ".sub") and two
// 20-digit integers with their parameter names. A longer value would still
// be right, in an allocation of its own.
const rateLimitValueMax = 2 + 64 + 16 + len(";r=;t=") + 2*20

// appendValue appends the RateLimit field value for d to b.
func (p *limitPolicy) appendValue(b []byte, d Decision) []byte {
	b = append(b, p.prefix...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, ";t="...)
	t := d.Reset
	switch {
	case !d.Allowed:
		t = d.RetryAfter
	case d.Remaining <= 0:
		// Allowed, and the last: the next request fits when one
		// interval has come back, Reset less the rest of the burst.
		t = d.Reset - time.Duration(p.limit.MaxBurst()-1)*p.limit.Interval()
	}
	return strconv.AppendInt(b, ceilSeconds(t), 10)
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func newGuardLimits(rl RateLimits) (*guardLimits, error) {
	var errs []error
	fields := []struct {
		field string
		limit Limit
	}{{"APIKey", rl.APIKey}, {"AccessToken", rl.AccessToken}, {"Failures", rl.Failures}, {"CredentialFailures", rl.CredentialFailures}}
	limited := false
	for _, l := range fields {
		if err := l.limit.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("auth: WithRateLimits: %s: %w", l.field, err))
		}
		limited = limited || !l.limit.IsZero()
	}
	if rl.Limiter == nil && limited {
		errs = append(errs, errors.New("auth: WithRateLimits: limits need a Limiter"))
	}
	// A failure budget keeps its name to itself: shared with another
	// limit, one budget would be spent by both.
	for i, f := range fields[2:] {
		if f.limit.IsZero() {
			continue
		}
		for j, o := range fields {
			if j != i+2 && !o.limit.IsZero() && o.limit.PolicyName() == f.limit.PolicyName() {
				errs = append(errs, fmt.Errorf("auth: WithRateLimits: %s shares the name %q with %s", f.field, f.limit.PolicyName(), o.field))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if rl.Limiter == nil {
		return nil, nil // nothing to limit; Guard.Limit still needs a Limiter
	}
	gl := &guardLimits{
		limiter:     rl.Limiter,
		apiKey:      newLimitPolicy(rl.APIKey),
		accessToken: newLimitPolicy(rl.AccessToken),
		failures:    newLimitPolicy(rl.Failures),
		credentials: newLimitPolicy(rl.CredentialFailures),
		failClosed:  rl.FailClosed,
	}
	if gl.failures != nil {
		gl.seenAddrs = newFailureFilter(gl.failures.limit)
	}
	if gl.credentials != nil {
		gl.seenCreds = newFailureFilter(gl.credentials.limit)
	}
	gl.refunder, _ = rl.Limiter.(Refunder)
	return gl, nil
}

// forPrincipal returns the policy that limits p, and the Limit (one of
// the policy's) and key to pass to the Limiter; nil when p is not limited.
func (gl *guardLimits) forPrincipal(p *Principal) (*limitPolicy, *Limit, string) {
	var pol *limitPolicy
	switch p.Method {
	case MethodAPIKey:
		pol = gl.apiKey
	case MethodAccessToken:
		pol = gl.accessToken
	}
	if !p.RateLimit.IsZero() {
		pol = gl.override(p.RateLimit, pol)
	}
	if pol == nil {
		return nil, nil, ""
	}
	switch {
	case p.KeyID != "":
		return pol, &pol.limit, p.KeyID
	case p.Subject != "":
		return pol, &pol.subject, p.Subject
	}
	return nil, nil, ""
}

// override returns the policy of a principal's own limit l, or method's
// if l is invalid.
func (gl *guardLimits) override(l Limit, method *limitPolicy) *limitPolicy {
	if l.Validate() != nil {
		// A store holding a limit that cannot be valid: limit by the
		// method's limit rather than fail the request.
		return method
	}
	return gl.overrides.get(l)
}

// maxCachedPolicies bounds the cache of the policies of principals' own
// limits: a handful of plans in practice.
const maxCachedPolicies = 1024

// policyCache keeps the limitPolicy of each Limit seen, up to
// maxCachedPolicies; beyond that, policies are built per request.
type policyCache struct {
	m sync.Map // Limit -> *limitPolicy
	n atomic.Int64
}

func (c *policyCache) get(l Limit) *limitPolicy {
	if p, ok := c.m.Load(l); ok {
		return p.(*limitPolicy)
	}
	p := newLimitPolicy(l)
	if c.n.Load() < maxCachedPolicies {
		if q, loaded := c.m.LoadOrStore(l, p); loaded {
			return q.(*limitPolicy)
		}
		c.n.Add(1)
	}
	return p
}

// logLimiter lets through at most one log entry every logInterval, and
// counts the ones it held back.
type logLimiter struct {
	last       atomic.Int64 // UnixNano of the last entry
	suppressed atomic.Int64
}

const logInterval = 10 * time.Second

// allow reports whether to log now, and how many entries were held back
// since the last one.
func (ll *logLimiter) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := ll.last.Load()
	if now-last < int64(logInterval) || !ll.last.CompareAndSwap(last, now) {
		ll.suppressed.Add(1)
		return false, 0
	}
	return true, ll.suppressed.Swap(0)
}

// limiterFailed handles an error of the Limiter: it logs it (rate-limited)
// and reports whether the request must be refused (fail closed).
func (g *Guard) limiterFailed(r *http.Request, l Limit, err error) bool {
	gl := g.limits
	if !errors.Is(err, errLimiterResting) && gl.resting.CompareAndSwap(false, true) {
		time.AfterFunc(limiterRest, func() { gl.resting.Store(false) })
	}
	if ok, suppressed := gl.logged.allow(); ok {
		lg := g.logger
		if lg == nil {
			lg = slog.Default()
		}
		policy := "allowing the request (fail open)"
		if gl.failClosed {
			policy = "refusing the request with 503 (fail closed)"
		}
		lg.LogAttrs(r.Context(), slog.LevelError, "auth: rate limiter failed; "+policy,
			slog.String("limit", l.Name),
			slog.String("error", err.Error()),
			slog.Int64("suppressed", suppressed),
		)
	}
	return gl.failClosed
}

// limiterRest is how long the Guard leaves a failed Limiter alone: for
// that long its calls fail at once, without waiting for the Limiter's own
// timeout, so that a Redis gone dark costs one request a timeout, not
// every request one per limit. The first call after it tries again.
const limiterRest = time.Second

// errLimiterResting is what a limiter call returns while the Limiter
// rests after a failure.
var errLimiterResting = errors.New("auth: the rate limiter failed within the last second; not asked")

// restingFailure handles a limiter call skipped because the Limiter is
// resting after a failure, as limiterFailed handles a failed call: it
// returns the error that refuses the request when the Guard fails closed,
// and nil when it fails open.
func (g *Guard) restingFailure(r *http.Request, l Limit) error {
	if g.limiterFailed(r, l, errLimiterResting) {
		return limiterDown(errLimiterResting)
	}
	return nil
}

// limiterDown is the error that answers a request when the Limiter failed
// and the Guard fails closed: an ErrUnavailable, 503.
func limiterDown(err error) error {
	return &Error{Kind: ErrUnavailable, Message: "The request cannot be admitted right now. Try again later.", Err: err}
}

// The messages of 429 responses.
const (
	msgRateLimited    = "Too many requests for this credential. Retry after the number of seconds in the Retry-After header."
	msgTooManyFailure = "Too many failed authentication attempts from this address. Retry after the number of seconds in the Retry-After header."

	msgTooManyCredentialFailures = "This credential has failed too many times. Retry after the number of seconds in the Retry-After header."
)

func rateLimited(msg string, d Decision) *Error {
	return &Error{Kind: ErrRateLimited, Message: msg, RetryAfter: max(d.RetryAfter, time.Nanosecond)}
}

// setHeaders sets the RateLimit-Policy and RateLimit fields of p and d
// on h, replacing any.
func setHeaders(h http.Header, p *limitPolicy, d Decision) {
	h["Ratelimit-Policy"] = p.policy
	h["Ratelimit"] = []string{p.value(d)}
}

// addHeaders adds p and d to the RateLimit-Policy and RateLimit fields
// of h, as more members of their lists.
func addHeaders(h http.Header, p *limitPolicy, d Decision) {
	old := h["Ratelimit-Policy"]
	h["Ratelimit-Policy"] = append(old[:len(old):len(old)], p.policy[0])
	old = h["Ratelimit"]
	h["Ratelimit"] = append(old[:len(old):len(old)], p.value(d))
}

// clientAddr returns r's client address and the key of its failure
// budget: the address, or for IPv6 its /64 prefix. The key is "" when the
// address is unknown.
//
// When needAddr is false (no Observer wants the address) and RemoteAddr is
// a strictly formed "a.b.c.d:port", as net/http sets it for IPv4 clients,
// only the key is returned, without parsing the address.
func (g *Guard) clientAddr(r *http.Request, needAddr bool) (netip.Addr, string) {
	if g.addrFunc != nil {
		a := g.addrFunc(r)
		return a, addrKey(a)
	}
	return remoteAddr(r.RemoteAddr, needAddr)
}

// remoteAddr is clientAddr for a RemoteAddr of hostport.
func remoteAddr(hostport string, needAddr bool) (netip.Addr, string) {
	if !needAddr {
		if host, ok := ipv4Host(hostport); ok {
			return netip.Addr{}, host
		}
	}
	host := hostport
	ap, err := netip.ParseAddrPort(host)
	var a netip.Addr
	if err == nil {
		a = ap.Addr()
		host = host[:strings.LastIndexByte(host, ':')]
	} else if a, err = netip.ParseAddr(host); err != nil {
		return netip.Addr{}, ""
	}
	if a.Is4() {
		// netip parses IPv4 strictly (no leading zeros, no zone), so the
		// text of RemoteAddr is already the address's canonical form:
		// use it and save an allocation.
		return a, host
	}
	return a, addrKey(a)
}

// remoteHost returns the text before the colon of hostport when hostport
// holds exactly one colon, as "a.b.c.d:port" does; "" otherwise. It
// neither parses nor checks the text, yet whenever remoteAddr finds a
// budget key for hostport, the key is this text: only an IPv4 address
// and a port are written with one colon (IPv6 needs two), and the key of
// an IPv4 address is its text, which netip accepts in canonical form only.
// So the text can stand for the key in a [failureFilter] until the key is
// needed: a text that is not an address has no budget to hide.
func remoteHost(hostport string) string {
	i := strings.IndexByte(hostport, ':')
	if i < 0 || strings.IndexByte(hostport[i+1:], ':') >= 0 {
		return ""
	}
	return hostport[:i]
}

// ipv4Host returns the host of hostport when hostport is an IPv4 address
// in its canonical dotted-decimal form (four decimal octets up to 255,
// without leading zeros) and a port of at most five decimal digits up to
// 65535. On every such string [netip.ParseAddrPort] yields an IPv4 address
// whose text is the host itself; on the few others where it does (a port
// with more leading zeros), ipv4Host reports false and the caller parses
// in full. It reads hostport once, from the left.
func ipv4Host(hostport string) (string, bool) {
	octets, n, digits := 0, 0, 0
	for i := 0; i < len(hostport); i++ {
		c := hostport[i]
		if d := c - '0'; d <= 9 {
			if digits == 3 || (digits == 1 && n == 0) {
				return "", false // a fourth digit, or a leading zero
			}
			n, digits = n*10+int(d), digits+1
			continue
		}
		if digits == 0 || n > 255 {
			return "", false
		}
		octets++
		switch {
		case c == '.' && octets < 4:
			n, digits = 0, 0
		case c == ':' && octets == 4:
			return hostport[:i], validPort(hostport[i+1:])
		default:
			return "", false
		}
	}
	return "", false
}

// validPort reports whether s is a decimal port number from 0 to 65535, as
// [netip.ParseAddrPort] accepts it.
func validPort(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n <= 65535
}

// addrKey returns the failure budget key of a: its canonical text for
// IPv4 (and IPv4-mapped IPv6), its /64 prefix for IPv6, "" when invalid.
func addrKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap().WithZone("")
	var buf [48]byte
	if a.Is4() {
		return string(a.AppendTo(buf[:0]))
	}
	return string(netip.PrefixFrom(a, 64).Masked().AppendTo(buf[:0]))
}

// countsAsFailure reports whether a failed authentication with class c
// spends from the address's failure budget: an invalid credential or a
// malformed request, not a missing credential or a server failure.
func countsAsFailure(c *errorClass) bool {
	return c.kind == ErrInvalidCredential || c.kind == ErrMalformedRequest
}

// limitedContext is the context of a limited request whose RateLimit
// value is not its policy's full-budget one ([limitPolicy.fresh]): the
// Principal, and the RateLimit header field's value with the bytes behind
// it, so that they take one allocation. The bytes are written once, before
// the string is made, and never again.
type limitedContext struct {
	principalContext
	rateLimit [1]string
	// buf holds the value of a policy name of up to about 16 bytes, such
	// as "access_token"; a longer value takes an allocation of its own.
	buf [48]byte
}

// Limit returns middleware that enforces l, in addition to the Guard's
// other limits, on the [Principal] an outer middleware
// ([Guard.Middleware], [Guard.RequireScopes]) put in the request context:
// a stricter limit for an expensive endpoint, such as a token exchange.
// It keys budgets as the Guard's own limits do (the key ID, else the
// subject under l.Name + ".sub"), with the Guard's Limiter and failure
// policy, and adds l's RateLimit-Policy and RateLimit members to those of
// the outer middleware. A request without a Principal is answered 401; a
// Principal with neither key ID nor subject is not limited; a zero l
// limits nothing.
//
// Limit panics if l is invalid ([Limit.Validate]) or if the Guard has no
// Limiter ([WithRateLimits]): such a configuration is a programming
// error, found when the routes are built.
func (g *Guard) Limit(l Limit) func(http.Handler) http.Handler {
	return g.spendMiddleware("Guard.Limit", l, msgRateLimited,
		func(r *http.Request, pol *limitPolicy) (budget, error) {
			p, ok := FromContext(r.Context())
			if !ok {
				return budget{}, errNoCredentials
			}
			b := budget{lim: pol.limit, key: p.KeyID, principal: p}
			if b.key == "" {
				b.lim, b.key = pol.subject, p.Subject
			}
			return b, nil
		})
}

// budget is the budget a request spends from under a
// [Guard.spendMiddleware]: key under lim ("" for a request that is not
// limited), and what an [EventRateLimited] reports if it is refused: the
// principal, or else the client address.
type budget struct {
	lim       Limit
	key       string
	principal *Principal
	addr      netip.Addr
}

// spendMiddleware is the middleware of [Guard.Limit] and
// [Guard.LimitByClientAddr], named by method in its panics: it spends one
// request from the budget that find returns and answers 429 with msg when
// that budget is spent.
func (g *Guard) spendMiddleware(method string, l Limit, msg string, find func(*http.Request, *limitPolicy) (budget, error)) func(http.Handler) http.Handler {
	if err := l.Validate(); err != nil {
		panic("auth: " + method + ": " + err.Error())
	}
	if !l.IsZero() && g.limits == nil {
		panic("auth: " + method + ": the Guard has no Limiter; configure one with WithRateLimits")
	}
	pol := newLimitPolicy(l)
	return func(next http.Handler) http.Handler {
		if pol == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := find(r, pol)
			switch {
			case err != nil:
				g.fail(w, r, err, "")
				return
			case b.key == "":
				next.ServeHTTP(w, r)
				return
			}
			d, err := Decision{}, errLimiterResting
			if !g.limits.resting.Load() {
				d, err = g.limits.limiter.Allow(r.Context(), b.key, b.lim)
			}
			// report tells the Observer about a refused request.
			report := func(k EventKind, status int, rerr error) {
				if g.observer == nil {
					return
				}
				e := Event{Kind: k, ClientAddr: b.addr}
				if b.principal != nil {
					a, _ := g.clientAddr(r, true)
					e = principalEvent(k, b.principal, a)
				}
				e.Status, e.Err, e.Time = status, rerr, time.Now()
				g.observer.Observe(r.Context(), e)
			}
			if err != nil {
				if g.limiterFailed(r, b.lim, err) {
					rerr := limiterDown(err)
					report(EventAuthFailed, http.StatusServiceUnavailable, rerr)
					g.failQuiet(w, r, rerr)
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			addHeaders(w.Header(), pol, d)
			if !d.Allowed {
				rerr := rateLimited(msg, d)
				report(EventRateLimited, http.StatusTooManyRequests, rerr)
				g.fail(w, r, rerr, "")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// principalEvent returns an Event of kind k about p.
func principalEvent(k EventKind, p *Principal, a netip.Addr) Event {
	return Event{
		Kind:       k,
		Method:     p.Method,
		KeyID:      p.KeyID,
		Project:    p.Project,
		Subject:    p.Subject,
		TokenID:    p.TokenID,
		Session:    p.Session,
		Hint:       p.Hint,
		ClientAddr: a,
	}
}

// reportForbidden reports to the Guard's Observer, if it has one, that p
// was refused with err (403, insufficient scope). a is the client's
// address, found from r when it is not valid.
func (g *Guard) reportForbidden(r *http.Request, p *Principal, a netip.Addr, err error) {
	obs := g.observer
	if obs == nil {
		return
	}
	if !a.IsValid() {
		a, _ = g.clientAddr(r, true)
	}
	e := principalEvent(EventForbidden, p, a)
	e.Err, e.Status, e.Time = err, http.StatusForbidden, time.Now()
	obs.Observe(r.Context(), e)
}

// guarded is what the middleware does for every request it
// authenticates: the failure limit, authentication, the principal's
// limit, reporting, and the scope check. It returns the request to pass
// to next, or nil when it has answered. With optional, a request without a
// credential is returned unchanged.
func (g *Guard) guarded(w http.ResponseWriter, r *http.Request, optional bool, required []string) *http.Request {
	var start time.Time
	obs := g.observer
	if obs != nil {
		start = time.Now()
	}
	gl := g.limits
	var addr netip.Addr
	var akey string
	// remote is RemoteAddr when akey is only its remoteHost, for the
	// failure filter: the address is parsed if its budget is needed.
	var remote string
	if obs != nil || (gl != nil && gl.failures != nil) {
		if obs == nil && g.addrFunc == nil {
			if akey = remoteHost(r.RemoteAddr); akey != "" {
				remote = r.RemoteAddr
			}
		}
		if remote == "" {
			addr, akey = g.clientAddr(r, obs != nil)
		}
	}
	ctx := r.Context()

	// The failure budget of the address, before anything else.
	var af, cf failureBudget
	if gl != nil && gl.failures != nil && akey != "" {
		// Field by field: a composite literal would build a second
		// zeroed failureBudget and copy it over af.
		af.pol, af.seen, af.filterKey = gl.failures, gl.seenAddrs, akey
		if remote != "" {
			af.remote = remote
		} else {
			af.key, af.keyed = akey, true
		}
		if af.quiet(gl) {
			af.checked = true // taken to be full, without a Decision
		} else if rerr := g.checkFailures(ctx, r, &af, msgTooManyFailure); rerr != nil {
			g.refuseFailure(w, r, obs, &af, Event{ClientAddr: addr}, start, rerr)
			return nil
		}
	}

	// The credential, then its own failure budget, before it is hashed
	// or looked up.
	cred, err := g.credential(r)
	if err == nil && cred == "" {
		err = errNoCredentials
	}
	if err == nil && gl != nil && gl.credentials != nil {
		cf.pol, cf.seen, cf.filterKey = gl.credentials, gl.seenCreds, cred
		if cf.quiet(gl) {
			cf.checked = true
		} else if rerr := g.checkFailures(ctx, r, &cf, msgTooManyCredentialFailures); rerr != nil {
			g.settle(ctx, r, &af, false) // the address's reservation
			g.refuseFailure(w, r, obs, &cf, Event{ClientAddr: addr, Hint: mask(cred)}, start, rerr)
			return nil
		}
	}
	var p Principal
	if err == nil {
		p, err = g.call(ctx, cred)
	}
	if err != nil {
		if optional && err == errNoCredentials {
			return r
		}
		if cred != "" {
			err = redactMessage(err, cred)
		}
		c := g.classes.classify(err)
		failed := countsAsFailure(c)
		h := w.Header()
		if g.settle(ctx, r, &af, failed) {
			setHeaders(h, af.pol, af.d)
		}
		if g.settle(ctx, r, &cf, failed) {
			addHeaders(h, cf.pol, cf.d)
		}
		if obs != nil {
			e := Event{Kind: EventAuthFailed, ClientAddr: addr, Err: err, Status: c.status}
			if cred != "" {
				e.Hint = mask(cred)
			}
			e.Time = time.Now()
			e.Duration = e.Time.Sub(start)
			obs.Observe(ctx, e)
		}
		g.answer(w, r, err, c, cred, true)
		return nil
	}
	// Authenticated: only a request taken up front has anything to
	// settle (it is given back).
	if af.reserved {
		g.settle(ctx, r, &af, false)
	}
	if cf.reserved {
		g.settle(ctx, r, &cf, false)
	}
	if obs != nil {
		e := principalEvent(EventAuthenticated, &p, addr)
		e.Time = time.Now()
		e.Duration = e.Time.Sub(start)
		obs.Observe(ctx, e)
	}

	// The principal's budget.
	var pol *limitPolicy
	var pd Decision
	if gl != nil {
		var lim *Limit
		var key string
		if pol, lim, key = gl.forPrincipal(&p); pol != nil {
			var lerr error
			if gl.resting.Load() {
				lerr = errLimiterResting
			} else {
				pd, lerr = gl.limiter.Allow(ctx, key, *lim)
			}
			switch {
			case lerr != nil:
				pol = nil
				if g.limiterFailed(r, *lim, lerr) {
					g.refuse(w, r, obs, principalEvent(EventAuthFailed, &p, addr), start, limiterDown(lerr))
					return nil
				}
			case !pd.Allowed:
				setHeaders(w.Header(), pol, pd)
				rerr := rateLimited(msgRateLimited, pd)
				g.refuse(w, r, obs, principalEvent(EventRateLimited, &p, addr), time.Time{}, rerr)
				return nil
			}
		}
	}

	var pctx context.Context
	sp := g.principals.shared(&p)
	if pol != nil {
		h := w.Header()
		h["Ratelimit-Policy"] = pol.policy
		if v := pol.fresh(pd); v != nil {
			h["Ratelimit"] = v
		} else {
			lc := &limitedContext{principalContext: principalContext{Context: ctx, p: sp}}
			v := pol.appendValue(lc.buf[:0], pd)
			lc.rateLimit[0] = unsafe.String(unsafe.SliceData(v), len(v))
			h["Ratelimit"] = lc.rateLimit[:]
			pctx = lc
		}
	}
	if pctx == nil {
		pctx = &principalContext{Context: ctx, p: sp}
	}
	r = r.WithContext(pctx)
	if required != nil {
		if serr := scopeError(&p, required); serr != nil {
			g.reportForbidden(r, &p, addr, serr)
			g.fail(w, r, serr, cred)
			return nil
		}
	}
	return r
}

// failureBudget is one failure budget of a request (its address's or its
// credential's): checked before the request is authenticated, and spent
// after, if authentication fails.
type failureBudget struct {
	pol  *limitPolicy   // nil: no such budget for this request
	seen *failureFilter // the budgets of pol that may be in use
	// filterKey is the key in seen: the address's budget key (or the
	// remoteHost that stands for it), or the credential itself, which
	// never leaves the process.
	filterKey string
	key       string // the budget's key at the Limiter, once keyed; see budgetKey
	keyed     bool   // key has been worked out ("" then means no budget)
	remote    string // for an address's budget, the RemoteAddr to key it by

	d        Decision // the latest state of the budget
	decided  bool     // d holds a Limiter's answer
	peeked   Decision // its state before a request was taken up front
	checked  bool     // the budget was checked: the Limiter answered, or the filter took it to be full
	reserved bool     // a request was taken up front, to give back unless authentication fails
}

// budgetKey returns the key of b's budget at the Limiter, worked out the
// first time it is needed: for an address its key ([remoteAddr]), "" when
// RemoteAddr holds no address (then there is no budget); for a credential
// its hash ([credentialKey]).
func (b *failureBudget) budgetKey() string {
	if !b.keyed {
		b.keyed = true
		if b.remote != "" {
			_, b.key = remoteAddr(b.remote, false)
		} else {
			b.key = credentialKey(b.filterKey)
		}
	}
	return b.key
}

// quiet reports whether b is a budget this Guard has not seen spent from
// within its refill time ([failureFilter]), a client's usual state, while
// the Limiter is not resting: such a budget is taken to be full without
// asking the Limiter, at the cost of a hash and a load. It is inlined;
// every other budget goes to checkFailures.
func (b *failureBudget) quiet(gl *guardLimits) bool {
	return !gl.resting.Load() && !b.seen.marked(b.filterKey)
}

// checkFailures checks b, a budget that is not quiet, before
// authentication. A budget that is spent refuses the request (429). A
// budget in use (some failures, not yet refilled) with a Limiter that can
// refund has this request taken from it up front, so that concurrent
// requests cannot all slip past a nearly spent budget. A Limiter error, or
// a Limiter resting after one, refuses the request if the Guard fails
// closed (503), and leaves b unchecked otherwise.
func (g *Guard) checkFailures(ctx context.Context, r *http.Request, b *failureBudget, msg string) error {
	gl := g.limits
	if gl.resting.Load() {
		return g.restingFailure(r, b.pol.limit)
	}
	key := b.budgetKey()
	if key == "" {
		return nil // not an address: no budget
	}
	d, err := gl.limiter.Peek(ctx, key, b.pol.limit)
	inUse := err == nil && d.Remaining < d.Limit.MaxBurst()
	if inUse {
		b.seen.mark(b.filterKey) // perhaps by another instance
	}
	if inUse && d.Allowed && gl.refunder != nil {
		b.peeked = d
		d, err = gl.limiter.Allow(ctx, key, b.pol.limit)
		b.reserved = err == nil && d.Allowed
	}
	switch {
	case err != nil:
		if g.limiterFailed(r, b.pol.limit, err) {
			return limiterDown(err)
		}
		return nil
	case !d.Allowed:
		b.d = d
		return rateLimited(msg, d)
	}
	b.d, b.decided, b.checked = d, true, true
	return nil
}

// settle finishes b once authentication is over: it spends a request
// from b if authentication failed and none was taken up front, and gives
// back the one taken up front if it did not fail. It reports whether b was
// checked and the Limiter has told its state (b.d), so that its header
// fields belong in the response.
func (g *Guard) settle(ctx context.Context, r *http.Request, b *failureBudget, failed bool) bool {
	if !b.checked || b.budgetKey() == "" {
		return false // no budget was checked, or RemoteAddr holds no address
	}
	gl := g.limits
	if failed {
		b.seen.mark(b.filterKey)
	}
	if gl.resting.Load() {
		g.restingFailure(r, b.pol.limit)
		return b.decided
	}
	switch {
	case failed && !b.reserved:
		d, err := gl.limiter.Allow(ctx, b.budgetKey(), b.pol.limit)
		if err != nil {
			g.limiterFailed(r, b.pol.limit, err)
		} else {
			b.d, b.decided = d, true
		}
	case !failed && b.reserved:
		b.reserved = false
		if err := gl.refunder.Refund(ctx, b.budgetKey(), b.pol.limit); err != nil {
			g.limiterFailed(r, b.pol.limit, err)
		} else {
			b.d = b.peeked
		}
	}
	return b.decided
}

// refuseFailure answers a request that failure budget b refused before
// authentication: 429 with b's header fields, or 503 when its Limiter
// failed and the Guard fails closed. e carries what is known of the
// request.
func (g *Guard) refuseFailure(w http.ResponseWriter, r *http.Request, obs Observer, b *failureBudget, e Event, start time.Time, err error) {
	if errors.Is(err, ErrRateLimited) {
		setHeaders(w.Header(), b.pol, b.d)
		e.Kind = EventRateLimited
		start = time.Time{}
	} else {
		e.Kind = EventAuthFailed
	}
	g.refuse(w, r, obs, e, start, err)
}

// refuse answers a request the limits refused (429) or could not check
// (503, fail closed), and reports e, completed, to obs. A zero start means
// no duration.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, obs Observer, e Event, start time.Time, err error) {
	c := classify(err)
	if obs != nil {
		e.Err, e.Status, e.Time = err, c.status, time.Now()
		if !start.IsZero() {
			e.Duration = e.Time.Sub(start)
		}
		obs.Observe(r.Context(), e)
	}
	g.answer(w, r, err, c, "", false)
}

// failQuiet answers err like fail, without logging it: for a failing
// Limiter, which limiterFailed logs at a bounded rate.
func (g *Guard) failQuiet(w http.ResponseWriter, r *http.Request, err error) {
	g.answer(w, r, err, classify(err), "", false)
}
