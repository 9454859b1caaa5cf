package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
)

// Guard authenticates HTTP requests: it extracts the credential with its
// [Extractor]s, hands it to its [Authenticator], and, as middleware, puts
// the [Principal] in the request context or answers with its
// [ErrorHandler].
//
// Create a Guard with [New]. A Guard is immutable and safe for concurrent
// use. The zero Guard has no extractors and no Authenticator: it finds no
// credential in any request, so [Guard.Middleware] answers every request
// with 401 and [Guard.Optional] passes every request on unauthenticated.
type Guard struct {
	authn      Authenticator
	extractors []extractor
	max        int
	handler    ErrorHandler
	json       *jsonErrors                    // the default handler's renderer; nil with WithErrorHandler
	logger     *slog.Logger                   // nil: slog.Default() when logging
	limits     *guardLimits                   // nil: no rate limits
	addrFunc   func(*http.Request) netip.Addr // nil: parse RemoteAddr
	observer   Observer                       // nil: report nothing
	classes    classMemo                      // the classes of recent *Error values
	principals *principalTable                // shared with the requests' contexts
}

// extractor is an Extractor with its capped form found once, at New.
type extractor struct {
	capped cappedExtractor // nil for a user's Extractor
	plain  Extractor
}

// config collects the options of [New].
type config struct {
	extractors []Extractor
	realm      string
	max        int
	handler    ErrorHandler
	logger     *slog.Logger
	limits     *guardLimits
	clientAddr func(*http.Request) netip.Addr
	observer   Observer
	err        error
}

// Option configures a [Guard] in [New]. An invalid option makes New return
// an error.
type Option func(*config)

func (c *config) fail(err error) { c.err = errors.Join(c.err, err) }

// WithExtractors sets where the Guard looks for a credential, replacing the
// default, [BearerExtractor] and [HeaderExtractor]("api-key").
//
// The Guard asks every extractor, never stopping at the first that finds
// something: a request that carries two different credentials (say an
// Authorization header and an api-key header that disagree) is a malformed
// request, 400, while the same credential in several places is accepted,
// because some clients send both headers. At least one extractor is needed,
// and none may be nil.
func WithExtractors(e ...Extractor) Option {
	return func(c *config) {
		if len(e) == 0 {
			c.fail(errors.New("auth: WithExtractors: at least one Extractor is needed"))
			return
		}
		if slices.Contains(e, nil) {
			c.fail(errors.New("auth: WithExtractors: nil Extractor"))
			return
		}
		c.extractors = slices.Clone(e)
	}
}

// WithRealm sets the realm of the WWW-Authenticate challenge in 401
// responses of the default [ErrorHandler]. The default, and what an empty
// realm means, is "api". The realm must be printable ASCII without double
// quotes or backslashes (the content of a quoted string without escapes).
// WithRealm has no effect on an ErrorHandler set with [WithErrorHandler].
func WithRealm(realm string) Option {
	return func(c *config) {
		if realm == "" {
			realm = defaultRealm
		}
		if err := checkRealm(realm); err != nil {
			c.fail(err)
			return
		}
		c.realm = realm
	}
}

// WithMaxCredentialLength sets the longest credential the Guard accepts, in
// bytes. The default is 8192: access tokens stay under 8 KiB and API keys
// are a few dozen bytes. A longer credential is answered with 401
// invalid_token ("The credential is too long.") without being parsed or
// passed to the [Authenticator]; the built-in extractors check the raw
// value before they parse it, and the Guard checks what any other
// [Extractor] returns. n must be positive.
func WithMaxCredentialLength(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail(fmt.Errorf("auth: WithMaxCredentialLength: %d is not a positive length", n))
			return
		}
		c.max = n
	}
}

// WithErrorHandler sets the [ErrorHandler] that answers failed requests.
// The default is [JSONErrorHandler] with the Guard's realm. A custom
// handler receives the error as returned by the extractor or the
// [Authenticator], which may carry internal details: it must not write the
// error's text into the response. h must not be nil.
func WithErrorHandler(h ErrorHandler) Option {
	return func(c *config) {
		if h == nil {
			c.fail(errors.New("auth: WithErrorHandler: nil ErrorHandler"))
			return
		}
		c.handler = h
	}
}

// WithLogger sets the logger of the Guard. A nil logger, the default, means
// [slog.Default] at the time of logging.
//
// The Guard logs only failures that are answered with a 5xx status: the
// [Authenticator] failed or timed out (503), or panicked (500). The entry,
// at [slog.LevelError], holds the error's text, with every occurrence of
// the credential replaced by its masked hint (such as halfred_…a1B2), the
// hint itself, the request's method and path, and for a panic the type of
// the panic value, its text if it is a string or an error (masked the same
// way), and the stack. The credential itself is never logged. Client errors
// (400, 401, 403, 429) are not logged: they are the caller's business and a
// flood of them is a denial of service on the log.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		c.logger = l
	}
}

// New returns a Guard that authenticates requests with a. It returns an
// error if a is nil or an option is invalid.
//
// By default the Guard reads the credential from the Authorization header
// ([BearerExtractor]) and from the api-key header ([HeaderExtractor]),
// accepts credentials of up to 8192 bytes, answers failures with
// [JSONErrorHandler]("api"), logs 5xx failures to [slog.Default], applies
// no rate limits ([WithRateLimits]) and reports to no [Observer]
// ([WithObserver]).
func New(a Authenticator, opts ...Option) (*Guard, error) {
	c := config{
		extractors: []Extractor{BearerExtractor(), HeaderExtractor("api-key")},
		realm:      defaultRealm,
		max:        defaultMaxCredentialLength,
	}
	if a == nil {
		c.fail(errors.New("auth: New: nil Authenticator"))
	}
	for _, o := range opts {
		if o == nil {
			c.fail(errors.New("auth: New: nil Option"))
			continue
		}
		o(&c)
	}
	if c.err != nil {
		return nil, c.err
	}
	g := &Guard{
		authn:      a,
		max:        c.max,
		handler:    c.handler,
		logger:     c.logger,
		limits:     c.limits,
		addrFunc:   c.clientAddr,
		observer:   c.observer,
		principals: newPrincipalTable(),
	}
	if g.handler == nil {
		g.json = newJSONErrors(c.realm)
		g.handler = g.json.handle
	}
	for _, e := range c.extractors {
		ce, _ := e.(cappedExtractor)
		g.extractors = append(g.extractors, extractor{capped: ce, plain: e})
	}
	return g, nil
}

// Errors of the Guard itself. They are shared, so returning them does not
// allocate.
var (
	errNoCredentials  = &Error{Kind: ErrNoCredentials}
	errTwoCredentials = &Error{
		Kind:    ErrMalformedRequest,
		Message: "The request carries two different credentials: send the credential in one header only.",
	}
	errEmptyPrincipal = &Error{
		Kind: ErrInternal,
		Err:  errors.New("auth: Authenticator returned an empty Principal and no error"),
	}
)

// defaultErrorHandler answers for the package-level [RequireScopes] and for
// a zero Guard.
var defaultErrorHandler = JSONErrorHandler(defaultRealm)

// Authenticate authenticates r without writing a response, for callers
// that do not use the middleware (or that wrap it in their own).
//
// It asks every extractor for a credential; an extractor's error is
// returned as it is (an error of a custom Extractor that matches none of
// this package's sentinels is wrapped as [ErrMalformedRequest]); two
// different credentials are [ErrMalformedRequest]; no credential at all is
// [ErrNoCredentials]; a credential longer than the cap is
// [ErrInvalidCredential]. Otherwise it returns what the [Authenticator]
// returns for the credential and r's context. If the Authenticator panics,
// or returns a zero Principal without an error, Authenticate returns an
// [*Error] of kind [ErrInternal] whose text names only the panic value's
// type.
func (g *Guard) Authenticate(r *http.Request) (Principal, error) {
	p, _, err := g.authenticate(r)
	return p, err
}

// authenticate is Authenticate that also returns the credential, for
// masking it in logs. On the success path it does not allocate.
func (g *Guard) authenticate(r *http.Request) (Principal, string, error) {
	cred, err := g.credential(r)
	if err != nil {
		return Principal{}, "", err
	}
	if cred == "" {
		return Principal{}, "", errNoCredentials
	}
	p, err := g.call(r.Context(), cred)
	return p, cred, err
}

// credential asks every extractor for the credential and combines their
// answers. It returns "" and no error when there is none.
func (g *Guard) credential(r *http.Request) (string, error) {
	var cred string
	for _, e := range g.extractors {
		var c string
		var err error
		if e.capped != nil {
			c, err = e.capped.extract(r, g.max)
		} else {
			c, err = e.plain.Extract(r)
			if err != nil && rank(err, len(errorClasses)) == len(errorClasses) {
				err = &Error{Kind: ErrMalformedRequest, Err: err}
			}
			if err == nil && len(c) > g.max {
				err = errTooLong
			}
		}
		switch {
		case err != nil:
			return "", err
		case c == "":
		case cred == "":
			cred = c
		case subtle.ConstantTimeCompare([]byte(cred), []byte(c)) != 1:
			return "", errTwoCredentials
		}
	}
	return cred, nil
}

// call calls the Authenticator, turning a panic into an error.
func (g *Guard) call(ctx context.Context, cred string) (p Principal, err error) {
	defer func() {
		if v := recover(); v != nil {
			p, err = Principal{}, &Error{Kind: ErrInternal, Err: newPanicError(v, cred)}
		}
	}()
	p, err = g.authn.Authenticate(ctx, cred)
	switch {
	case err != nil:
		return Principal{}, err
	case isZero(&p):
		return Principal{}, errEmptyPrincipal
	}
	return p, nil
}

// isZero reports whether p is the zero Principal, which no Authenticator
// may return with a nil error: it would let a broken Authenticator wave
// every request through.
func isZero(p *Principal) bool {
	return p.Method == "" && p.KeyID == "" && p.Subject == "" && p.Project == "" &&
		len(p.Scopes) == 0 && p.ExpiresAt.IsZero() && p.TokenID == "" && p.Session == "" && p.Hint == ""
}

// panicError records a panic of an Authenticator. Its text names only the
// type of the panic value; the masked value and the stack are for the log.
type panicError struct {
	typ   string
	value string // masked text of a string or error value; "" otherwise
	stack []byte
}

func newPanicError(v any, cred string) *panicError {
	e := &panicError{typ: fmt.Sprintf("%T", v), stack: debug.Stack()}
	func() {
		defer func() { _ = recover() }() // a panicking Error method
		switch v := v.(type) {
		case string:
			e.value = redact(v, cred)
		case error:
			e.value = redact(v.Error(), cred)
		}
	}()
	return e
}

func (e *panicError) Error() string {
	return "auth: Authenticator panicked with a value of type " + e.typ
}

// Middleware returns next protected by g: authentication is required.
//
// On success next is called with a request whose context carries the
// [Principal] (read it with [FromContext]). On failure g's [ErrorHandler]
// answers and next is not called: no credentials or a bad one 401, a
// malformed request 400, the Authenticator failing 503, panicking 500. A
// panic in next is not recovered here. On success the middleware
// allocates twice: the context and the request copy. With
// [WithRateLimits] it also enforces the rate limits, and with
// [WithObserver] it reports each request's outcome.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r = g.guarded(w, r, false, nil); r != nil {
			next.ServeHTTP(w, r)
		}
	})
}

// Optional returns next with optional authentication. A request with no
// credential at all reaches next unchanged, without a Principal. A request
// that carries a credential is treated exactly as by [Guard.Middleware]: a
// bad credential is still 401, a malformed request 400, and a failing
// Authenticator 503; it never falls back to anonymous access. Rate limits
// ([WithRateLimits]) apply as in Guard.Middleware: a request without a
// credential reaches next without RateLimit fields and is not reported,
// but an address that has spent its failure budget is answered 429 with
// or without a credential.
func (g *Guard) Optional(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r = g.guarded(w, r, true, nil); r != nil {
			next.ServeHTTP(w, r)
		}
	})
}

// RequireScopes returns middleware that lets a request through only if its
// Principal carries every one of scopes. If an outer middleware (this Guard
// or another) already put a Principal in the context, that Principal is
// checked; otherwise the request is authenticated as by
// [Guard.Middleware]. A Principal that lacks a scope is answered with 403
// insufficient_scope, listing scopes in the challenge; the error handler
// then sees the Principal in the request context. When RequireScopes
// authenticates the request itself it enforces the Guard's rate limits,
// before the scope check, and reports to its Observer, as
// [Guard.Middleware] does; a Principal found in the context was limited
// and reported by the middleware that put it there.
//
// RequireScopes panics if a scope is empty or is not an RFC 6749 scope
// token (printable ASCII without spaces, double quotes or backslashes):
// such a scope is a programming error, found when the routes are built.
func (g *Guard) RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	required := checkScopes(scopes)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, ok := FromContext(r.Context()); ok {
				if err := scopeError(p, required); err != nil {
					g.reportForbidden(r, p, netip.Addr{}, err)
					g.fail(w, r, err, "")
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			if r = g.guarded(w, r, false, required); r != nil {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// RequireScopes returns middleware that checks the [Principal] an outer
// middleware ([Guard.Middleware]) put in the request context: a request
// without a Principal is answered with 401 (no credentials), a Principal
// that lacks one of scopes with 403 insufficient_scope, both by
// [JSONErrorHandler]("api"). Use [Guard.RequireScopes] for the Guard's own
// error handler and realm.
//
// RequireScopes panics if a scope is empty or is not an RFC 6749 scope
// token, like [Guard.RequireScopes].
func RequireScopes(scopes ...string) func(http.Handler) http.Handler {
	required := checkScopes(scopes)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			if !ok {
				defaultErrorHandler(w, r, errNoCredentials)
				return
			}
			if err := scopeError(p, required); err != nil {
				defaultErrorHandler(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// checkScopes validates the scopes given to RequireScopes and returns a
// copy of them.
func checkScopes(scopes []string) []string {
	for _, s := range scopes {
		if !ValidScope(s) {
			panic(fmt.Sprintf("auth: RequireScopes: invalid scope %q: a scope is printable ASCII without spaces, double quotes or backslashes", s))
		}
	}
	return slices.Clone(scopes)
}

// scopeError returns the 403 error for p, or nil if p carries every
// required scope. It does not allocate when p does.
func scopeError(p *Principal, required []string) error {
	missing := p.MissingScopes(required...)
	if missing == nil {
		return nil
	}
	msg := "The credential lacks the scope this request needs: "
	if len(missing) > 1 {
		msg = "The credential lacks scopes this request needs: "
	}
	return &Error{
		Kind:    ErrInsufficientScope,
		Message: msg + strings.Join(missing, ", ") + ".",
		Scopes:  slices.Clone(required),
	}
}

// WriteError answers r with g's [ErrorHandler], for handlers that find an
// authentication problem themselves (a rate limiter returning
// [ErrRateLimited], say) and want it answered like the Guard's own. Like
// the middleware, it logs errors answered with a 5xx status.
func (g *Guard) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	g.fail(w, r, err, "")
}

// fail answers a failed request: it masks the credential in the error's
// message, logs server-side failures, and calls the error handler.
func (g *Guard) fail(w http.ResponseWriter, r *http.Request, err error, cred string) {
	if cred != "" {
		err = redactMessage(err, cred)
	}
	g.answer(w, r, err, g.classes.classify(err), cred, true)
}

// answer answers a failed request whose error has been redacted and
// classified as c: it logs server-side failures when log is set, and
// calls the error handler.
func (g *Guard) answer(w http.ResponseWriter, r *http.Request, err error, c *errorClass, cred string, log bool) {
	if log && c.status >= 500 {
		g.log(r, err, c, cred)
	}
	if g.json != nil {
		g.json.write(w, err, c) // the default handler, without classifying again
		return
	}
	h := g.handler
	if h == nil {
		h = defaultErrorHandler
	}
	h(w, r, err)
}

// redactMessage returns err, or, if the Message of its [*Error] contains
// the credential (an Authenticator that broke its contract), a copy of
// that *Error with the credential masked in the message.
func redactMessage(err error, cred string) error {
	e := asError(err)
	if e == nil || !strings.Contains(e.Message, cred) {
		return err
	}
	c := *e
	c.Message = redact(c.Message, cred)
	return &c
}

func (g *Guard) log(r *http.Request, err error, c *errorClass, cred string) {
	l := g.logger
	if l == nil {
		l = slog.Default()
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs,
		slog.String("code", c.code),
		slog.String("error", redact(err.Error(), cred)),
		slog.String("method", r.Method),
	)
	if cred != "" {
		attrs = append(attrs, slog.String("credential", mask(cred)))
	}
	var pe *panicError
	if errors.As(err, &pe) {
		attrs = append(attrs,
			slog.String("panic_type", pe.typ),
			slog.String("panic", pe.value),
			slog.String("stack", string(pe.stack)),
		)
	}
	l.LogAttrs(r.Context(), slog.LevelError, "auth: could not check credential", attrs...)
}

// redact replaces every occurrence of cred in s with its masked hint.
func redact(s, cred string) string {
	if cred == "" {
		return s
	}
	return strings.ReplaceAll(s, cred, mask(cred))
}

// mask returns a masked form of credential that is safe to log: its prefix
// (a short run of lower-case letters and digits ending in '_', such as
// "halfred_"), an ellipsis, and its last 4 characters, such as
// "halfred_…a1B2". The last characters are shown only when at least 16
// bytes follow the prefix and they are printable ASCII, so a short secret
// is not half revealed.
func mask(credential string) string {
	prefix := ""
	if i := strings.IndexByte(credential, '_'); i >= 2 && i <= 15 && isPrefix(credential[:i]) {
		prefix = credential[:i+1]
	}
	rest := credential[len(prefix):]
	const shown, minHidden = 4, 12
	if len(rest) < shown+minHidden {
		return prefix + "…"
	}
	tail := rest[len(rest)-shown:]
	for i := 0; i < len(tail); i++ {
		if tail[i] < 0x21 || tail[i] > 0x7e {
			return prefix + "…"
		}
	}
	return prefix + "…" + tail
}

func isPrefix(s string) bool {
	if s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
