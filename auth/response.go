package auth

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ErrorHandler writes the response to a request whose authentication
// failed. err is the reason: an [*Error], a sentinel of this package, or
// whatever error an [Authenticator] returned. An ErrorHandler is called
// concurrently and must be safe for that.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

// defaultRealm is the realm of the WWW-Authenticate challenge when none is
// configured.
const defaultRealm = "api"

// errorClass is one row of the error table: how a class of failure is
// answered.
type errorClass struct {
	kind    error
	status  int
	typ     string
	code    string
	message string // used when the error carries no Message of its own
}

// errorClasses is the error table, in the order [classify] tries the
// sentinels: server-side failures first, so that an error that matches
// several sentinels fails closed.
var errorClasses = [...]errorClass{
	{ErrInternal, http.StatusInternalServerError, "api_error", "internal_error",
		"The server failed to check the credential."},
	{ErrUnavailable, http.StatusServiceUnavailable, "api_error", "service_unavailable",
		"The credential cannot be checked right now. Try again later."},
	{ErrMalformedRequest, http.StatusBadRequest, "invalid_request_error", "invalid_request",
		"The request's credentials are malformed."},
	{ErrInvalidCredential, http.StatusUnauthorized, "authentication_error", "invalid_token",
		"Invalid API key or token."},
	{ErrNoCredentials, http.StatusUnauthorized, "authentication_error", "missing_credentials",
		"No API key or token was provided: send it in the Authorization header, as 'Authorization: Bearer YOUR_KEY'."},
	{ErrInsufficientScope, http.StatusForbidden, "permission_error", "insufficient_scope",
		"The credential does not carry a scope this request needs."},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limit_error", "rate_limit_exceeded",
		"Too many requests. Retry after the number of seconds in the Retry-After header."},
}

// classify returns the row of the error table that answers err: the first
// sentinel, in the table's order, that err matches under [errors.Is]. An
// error that matches none of them (a raw back-end error, a context
// deadline) means the credential could not be checked: it is answered like
// [ErrUnavailable], never as a bad credential, and never allowed.
func classify(err error) *errorClass {
	if i := rank(err, len(errorClasses)); i < len(errorClasses) {
		return &errorClasses[i]
	}
	return &errorClasses[1] // ErrUnavailable
}

// classMemo remembers the class of the last few [*Error] values classified,
// by identity: an Authenticator that answers with prebuilt errors (the
// keystore Manager does, one per reason a key fails) has each walked once,
// not on every request. An *Error is taken to be immutable once returned,
// as errors are. A memo holds at most classMemoSlots errors, keeping them
// alive; it is safe for concurrent use, and its zero value is ready.
type classMemo struct {
	slots [classMemoSlots]atomic.Pointer[classMemoEntry]
}

const classMemoSlots = 16

type classMemoEntry struct {
	err   *Error
	class *errorClass
}

// classify is [classify], remembered when err is an *Error. Remembering a
// new error costs one small allocation.
func (m *classMemo) classify(err error) *errorClass {
	e, ok := err.(*Error)
	if !ok || e == nil {
		return classify(err)
	}
	// The address of a live object does not change, and the entry keeps
	// e alive, so no other *Error can have its address while it is here.
	s := &m.slots[(uintptr(unsafe.Pointer(e))>>4)%classMemoSlots]
	if x := s.Load(); x != nil && x.err == e {
		return x.class
	}
	c := classify(err)
	s.Store(&classMemoEntry{e, c})
	return c
}

// rank returns the index in errorClasses of the first sentinel that err
// matches under the rules of [errors.Is], or best if it is lower. It walks
// err's tree once and stops as soon as nothing better can be found. It
// looks inside an [*Error] directly (its Kind, then its cause) rather than
// through its Is method, so that each node is compared with the sentinels
// once.
func rank(err error, best int) int {
	for err != nil && best > 0 {
		if e, ok := err.(*Error); ok {
			if e == nil {
				return best
			}
			best = rank(e.Kind, best)
			err = e.Err
			continue
		}
		for i := range best {
			if err == errorClasses[i].kind {
				best = i
				break
			}
		}
		if x, ok := err.(interface{ Is(error) bool }); ok {
			for i := range best {
				if x.Is(errorClasses[i].kind) {
					best = i
					break
				}
			}
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				best = rank(e, best)
			}
			return best
		default:
			return best
		}
	}
	return best
}

// asError returns the first [*Error] in err's tree, in the order of
// [errors.As], or nil. Unlike errors.As it does not allocate.
func asError(err error) *Error {
	for err != nil {
		switch x := err.(type) {
		case *Error:
			if x == nil {
				return nil
			}
			return x
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if f := asError(e); f != nil {
					return f
				}
			}
			return nil
		default:
			return nil
		}
	}
	return nil
}

// JSONErrorHandler returns the default [ErrorHandler]. It answers every
// error with a JSON body
//
//	{"error":{"message":"…","type":"…","code":"…"}}
//
// and the headers Content-Type: application/json, Cache-Control: no-store
// and X-Content-Type-Options: nosniff. Status, type, code and challenge
// follow the error's class, found with [errors.Is] (realm is the realm
// parameter):
//
//	error                 status type                  code                 header
//	ErrNoCredentials      401    authentication_error  missing_credentials  WWW-Authenticate: Bearer realm="realm"
//	ErrInvalidCredential  401    authentication_error  invalid_token        WWW-Authenticate: Bearer realm="realm", error="invalid_token"
//	ErrMalformedRequest   400    invalid_request_error invalid_request      WWW-Authenticate: Bearer error="invalid_request"
//	ErrInsufficientScope  403    permission_error      insufficient_scope   WWW-Authenticate: Bearer error="insufficient_scope", scope="a b"
//	ErrRateLimited        429    rate_limit_error      rate_limit_exceeded  Retry-After: seconds
//	ErrUnavailable        503    api_error             service_unavailable
//	ErrInternal           500    api_error             internal_error
//
// An error that matches several sentinels gets the first row, in the
// order ErrInternal, ErrUnavailable, ErrMalformedRequest,
// ErrInvalidCredential, ErrNoCredentials, ErrInsufficientScope,
// ErrRateLimited: server-side failures first. An error that matches none
// of the sentinels is answered as ErrUnavailable: the credential could not
// be checked, so the request fails closed. The scope attribute lists [Error.Scopes] (the scopes the
// request needs; scopes that are not valid RFC 6749 scope tokens are left
// out), and is omitted when there are none. Retry-After is
// [Error.RetryAfter] in whole seconds, rounded up, at least 1.
//
// The message is the [Error.Message] of the first [*Error] in err's tree
// (in the order of [errors.As]), or else a fixed sentence for the class,
// such as "Invalid API key or token.": an Authenticator that gives no
// message for unknown, revoked, expired and disabled keys gets
// byte-identical responses for them. The text of err itself is never written, so an internal error
// cannot leak into a response.
//
// An empty realm means "api". JSONErrorHandler panics if realm contains a
// double quote, a backslash, a control character or a non-ASCII byte, which
// cannot appear in the quoted realm; [WithRealm] reports the same problem
// as an error. The handler is safe for concurrent use.
func JSONErrorHandler(realm string) ErrorHandler {
	if realm == "" {
		realm = defaultRealm
	}
	if err := checkRealm(realm); err != nil {
		panic(err)
	}
	return newJSONErrors(realm).handle
}

// jsonErrors is the default error renderer. Its header values are built
// once and assigned directly, so that an error response costs no
// allocation for its headers; nothing in net/http modifies a header value
// slice in place.
type jsonErrors struct {
	contentType, noStore, noSniff           []string
	noCredentials, invalidToken, invalidReq []string
	bodies                                  bodyCache
}

func newJSONErrors(realm string) *jsonErrors {
	if realm == "" {
		realm = defaultRealm
	}
	one := func(v string) []string { return []string{v} }
	return &jsonErrors{
		contentType:   one("application/json"),
		noStore:       one("no-store"),
		noSniff:       one("nosniff"),
		noCredentials: one(`Bearer realm="` + realm + `"`),
		invalidToken:  one(`Bearer realm="` + realm + `", error="invalid_token"`),
		invalidReq:    one(`Bearer error="invalid_request"`),
	}
}

// handle is the ErrorHandler.
func (j *jsonErrors) handle(w http.ResponseWriter, r *http.Request, err error) {
	j.write(w, err, classify(err))
}

// write answers err, whose class the caller has found.
func (j *jsonErrors) write(w http.ResponseWriter, err error, c *errorClass) {
	e := asError(err)
	hasE := e != nil
	h := w.Header()
	h["Content-Type"] = j.contentType
	h["Cache-Control"] = j.noStore
	h["X-Content-Type-Options"] = j.noSniff
	switch c.kind {
	case ErrNoCredentials:
		h["Www-Authenticate"] = j.noCredentials
	case ErrInvalidCredential:
		h["Www-Authenticate"] = j.invalidToken
	case ErrMalformedRequest:
		h["Www-Authenticate"] = j.invalidReq
	case ErrInsufficientScope:
		var scopes []string
		if hasE {
			scopes = e.Scopes
		}
		h.Set("Www-Authenticate", scopeChallenge(scopes))
	case ErrRateLimited:
		var d time.Duration
		if hasE {
			d = e.RetryAfter
		}
		h.Set("Retry-After", retryAfter(d))
	}
	msg := c.message
	if hasE && e.Message != "" {
		msg = e.Message
	}
	w.WriteHeader(c.status)
	_, _ = w.Write(j.bodies.get(c, msg))
}

// maxCachedBodies bounds a handler's cache of rendered error bodies. The
// messages of a well-behaved Authenticator are a handful of fixed
// sentences; one that makes a new message per request gets them rendered
// each time, not cached.
const maxCachedBodies = 256

// bodyCache keeps the rendered JSON bodies of error responses, so that
// rejecting a request does not marshal JSON each time. Reads take no lock:
// the map is never modified once published, and a new body is added to a
// copy (at most maxCachedBodies times in a handler's life). It is safe for
// concurrent use; a body it returns is shared and must not be modified.
type bodyCache struct {
	m  atomic.Pointer[map[bodyKey][]byte]
	mu sync.Mutex // serialises writers
}

type bodyKey struct {
	class *errorClass
	msg   string
}

func (bc *bodyCache) get(c *errorClass, msg string) []byte {
	k := bodyKey{c, msg}
	if m := bc.m.Load(); m != nil {
		if b, ok := (*m)[k]; ok {
			return b
		}
	}
	b := renderBody(c, msg)
	bc.mu.Lock()
	defer bc.mu.Unlock()
	old := bc.m.Load()
	if old != nil && len(*old) >= maxCachedBodies {
		return b
	}
	if old != nil {
		if cached, ok := (*old)[k]; ok {
			return cached // another writer got here first
		}
	}
	m := map[bodyKey][]byte{}
	if old != nil {
		m = maps.Clone(*old)
	}
	m[k] = b
	bc.m.Store(&m)
	return b
}

// len returns how many bodies bc holds.
func (bc *bodyCache) len() int {
	if m := bc.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// renderBody returns the JSON body of an error response of class c.
func renderBody(c *errorClass, msg string) []byte {
	return ErrorBody(msg, c.typ, c.code)
}

// ErrorBody renders the project's JSON error body,
// {"error":{"message":…,"type":…,"code":…}}, with a trailing newline, for
// handlers outside this package that answer in the same shape. The message
// must not contain a credential.
func ErrorBody(message, typ, code string) []byte {
	body, err := json.Marshal(errorBody{errorDetail{Message: message, Type: typ, Code: code}})
	if err != nil {
		// Marshalling three strings cannot fail; keep the shape anyway.
		body = []byte(`{"error":{"type":"api_error","code":"internal_error"}}`)
	}
	return append(body, '\n')
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

// scopeChallenge returns the WWW-Authenticate value of a 403, listing the
// needed scopes that can be written in the quoted scope attribute.
func scopeChallenge(scopes []string) string {
	var b strings.Builder
	b.WriteString(`Bearer error="insufficient_scope"`)
	first := true
	for _, s := range scopes {
		if !ValidScope(s) {
			continue
		}
		if first {
			b.WriteString(`, scope="`)
			first = false
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	if !first {
		b.WriteByte('"')
	}
	return b.String()
}

// retryAfter formats d as the delay-seconds of a Retry-After header: whole
// seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	secs := int64(1)
	if d > time.Second {
		secs = int64(d / time.Second)
		if d%time.Second != 0 {
			secs++
		}
	}
	return strconv.FormatInt(secs, 10)
}

// ValidScope reports whether s is an RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII without spaces, double
// quotes or backslashes, which can be written inside a quoted string
// without escaping. The empty string is not a scope.
func ValidScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// checkRealm reports whether realm can be written as the content of a
// quoted string without escaping: printable ASCII and spaces, no double
// quote, no backslash.
func checkRealm(realm string) error {
	for i := 0; i < len(realm); i++ {
		c := realm[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return errors.New("auth: invalid realm: it may hold only printable ASCII characters, without double quotes or backslashes")
		}
	}
	return nil
}
