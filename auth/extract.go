package auth

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/keygate/keygate/internal/charset"
)

// Extractor finds a credential in a request.
//
// Extract returns ("", nil) when its source (a header, a cookie, a query
// parameter) is absent, the credential when it is present and well formed,
// and an error when it is present but malformed. Its errors should match
// [ErrMalformedRequest] (400), or [ErrInvalidCredential] (401) for a
// credential that is too long; their messages must never contain the value
// that was sent. The returned credential should be a substring of the
// request's data, not a copy, so that extraction does not allocate.
//
// An Extractor is called concurrently and must be safe for that. The
// built-in extractors are.
type Extractor interface {
	Extract(r *http.Request) (string, error)
}

// ExtractorFunc adapts a function to [Extractor].
type ExtractorFunc func(r *http.Request) (string, error)

// Extract calls f(r).
func (f ExtractorFunc) Extract(r *http.Request) (string, error) {
	return f(r)
}

// cappedExtractor is implemented by the built-in extractors. A [Guard]
// calls extract with its length cap, which the extractor checks against the
// raw value before it parses anything, so that an oversized header costs
// neither time nor memory. Extract uses the default cap.
type cappedExtractor interface {
	Extractor
	extract(r *http.Request, max int) (string, error)
}

// defaultMaxCredentialLength is the default length cap of a credential, in
// bytes: access tokens stay under 8 KiB, API keys are a few dozen bytes.
const defaultMaxCredentialLength = 8192

// Errors of the built-in extractors. They are shared, so returning them
// does not allocate; their messages never contain the value that was sent.
var (
	errTooLong = &Error{
		Kind:    ErrInvalidCredential,
		Message: "The credential is too long.",
	}
	errAuthorizationTwice = malformed("Send only one Authorization header.")
	errBearerNoToken      = malformed("The Authorization header names the Bearer scheme but carries no token: send 'Authorization: Bearer <token>'.")
	errBearerSeparator    = malformed("Separate the Bearer scheme from the token with a space: 'Authorization: Bearer <token>'.")
	errBearerTwoTokens    = malformed("The Authorization header must carry exactly one token after 'Bearer ', with no spaces, commas or parameters.")
	errBearerPadding      = malformed("A Bearer token may contain '=' only as padding at its end.")
	errBearerCharset      = malformed("The Bearer token contains a character that is not allowed: use only letters, digits and - . _ ~ + /, with optional = padding at the end, and no quotes.")
)

// BearerExtractor returns an [Extractor] that reads the Authorization
// header's Bearer credential (RFC 6750 §2.1):
//
//	credentials = "Bearer" 1*SP b64token
//	b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// The scheme is matched without regard to case. A request without an
// Authorization header, or whose Authorization header uses another scheme
// (Basic, Digest, …), has no Bearer credential: the result is ("", nil), so
// that the 401 response's WWW-Authenticate challenge tells the client what
// to send. Two Authorization headers, a Bearer scheme with no token, a
// separator other than spaces (a tab), a second token, a comma, quotes,
// '=' anywhere but at the end, non-ASCII or control characters are a
// malformed request ([ErrMalformedRequest], 400). A header value longer than
// the length cap plus len("Bearer ") is rejected as too long
// ([ErrInvalidCredential], 401) before it is parsed.
//
// The returned token is a substring of the header value; extraction does
// not allocate. The extractor is safe for concurrent use.
func BearerExtractor() Extractor {
	return bearerExtractor{}
}

type bearerExtractor struct{}

func (bearerExtractor) Extract(r *http.Request) (string, error) {
	return bearerExtractor{}.extract(r, defaultMaxCredentialLength)
}

func (bearerExtractor) extract(r *http.Request, max int) (string, error) {
	v, n := headerValue(r.Header, "Authorization")
	switch {
	case n == 0:
		return "", nil
	case n > 1:
		return "", errAuthorizationTwice
	}
	return parseBearer(v, max)
}

// parseBearer parses the value of an Authorization header. It checks the
// length first, so a huge value costs no parsing.
func parseBearer(v string, max int) (string, error) {
	const scheme = "Bearer"
	if len(v) > max+len(scheme)+1 {
		return "", errTooLong
	}
	if len(v) < len(scheme) || !isBearerScheme(v[:len(scheme)]) {
		return "", nil // another scheme, or no scheme at all
	}
	if len(v) == len(scheme) {
		return "", errBearerNoToken
	}
	if v[len(scheme)] != ' ' {
		// "Bearer\tx" or "Bearerx": not a scheme this service knows, but
		// too close to Bearer to be anything but a mistake.
		return "", errBearerSeparator
	}
	i := len(scheme)
	for i < len(v) && v[i] == ' ' {
		i++
	}
	tok := v[i:]
	if tok == "" {
		return "", errBearerNoToken
	}
	if err := checkB64Token(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// checkB64Token reports whether tok is an RFC 6750 b64token.
func checkB64Token(tok string) error {
	j := charset.Span(&b64TokenChars, tok)
	if j == 0 {
		if tok[0] == '=' {
			return errBearerPadding
		}
		return b64TokenError(tok[0])
	}
	for k := j; k < len(tok); k++ {
		switch c := tok[k]; {
		case c == '=':
		case k > j && isB64TokenChar(c):
			// "ab=c": padding in the middle.
			return errBearerPadding
		default:
			return b64TokenError(c)
		}
	}
	return nil
}

func b64TokenError(c byte) error {
	switch c {
	case ' ', ',':
		return errBearerTwoTokens
	}
	return errBearerCharset
}

func isB64TokenChar(c byte) bool { return b64TokenChars[c] }

// b64TokenChars marks the bytes of an RFC 6750 b64token other than its
// trailing "=" padding: ALPHA, DIGIT, "-", ".", "_", "~", "+" and "/".
var b64TokenChars = func() (t [256]bool) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = true
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
			t[c] = true
		}
	}
	return t
}()

// isBearerScheme reports whether s, six bytes long, is "Bearer" in any
// case (the scheme is case-insensitive, RFC 9110 §11.1). It is
// strings.EqualFold for ASCII, without the Unicode case folding, which
// must not apply here ("BEARER" with a Kelvin sign is not the scheme).
func isBearerScheme(s string) bool {
	const scheme = "bearer"
	for i := range len(scheme) {
		if s[i]|0x20 != scheme[i] {
			return false
		}
	}
	return true
}

// headerValue returns the first value of the header canon, a canonical
// header name, and how many values it has. Like [http.Header.Values], it
// reads only the canonical key: net/http canonicalises the names it reads
// off the wire, and a name set by hand in another form is not a header
// net/http would send or see. It does not allocate.
func headerValue(h http.Header, canon string) (string, int) {
	vs := h[canon]
	if len(vs) == 0 {
		return "", 0
	}
	return vs[0], len(vs)
}

// HeaderExtractor returns an [Extractor] that reads the credential from the
// request header name, such as "api-key". The name is canonicalised once,
// with [textproto.CanonicalMIMEHeaderKey].
//
// A request without the header has no credential: the result is ("", nil).
// The header sent twice, an empty value, or a value that is not a single
// token of visible ASCII (0x21–0x7E without quotes, commas or backslashes; a
// "Bearer " prefix included) is a malformed request ([ErrMalformedRequest],
// 400). A value longer than the length cap is rejected as too long
// ([ErrInvalidCredential], 401) before it is parsed.
//
// The returned credential is the header value itself; extraction does not
// allocate. The extractor is safe for concurrent use.
func HeaderExtractor(name string) Extractor {
	canon := textproto.CanonicalMIMEHeaderKey(name)
	return &headerExtractor{
		canon:      canon,
		errTwice:   malformed("Send only one " + name + " header."),
		errEmpty:   malformed("The " + name + " header is empty."),
		errBearer:  malformed("The " + name + " header must hold the credential alone, without 'Bearer '."),
		errCharset: malformed("The " + name + " header must hold a single credential: visible ASCII characters without spaces, commas, quotes or backslashes."),
	}
}

type headerExtractor struct {
	canon                                     string
	errTwice, errEmpty, errBearer, errCharset *Error
}

func (e *headerExtractor) Extract(r *http.Request) (string, error) {
	return e.extract(r, defaultMaxCredentialLength)
}

func (e *headerExtractor) extract(r *http.Request, max int) (string, error) {
	v, n := headerValue(r.Header, e.canon)
	switch {
	case n == 0:
		return "", nil
	case n > 1:
		return "", e.errTwice
	case len(v) > max:
		return "", errTooLong
	case v == "":
		return "", e.errEmpty
	}
	if !isCredentialToken(v) {
		if len(v) > len("Bearer ") && strings.EqualFold(v[:len("Bearer ")], "Bearer ") {
			return "", e.errBearer
		}
		return "", e.errCharset
	}
	return v, nil
}

// isCredentialToken reports whether s is one token of visible ASCII
// without the characters that would make it ambiguous in a header: quotes,
// commas and backslashes.
func isCredentialToken(s string) bool {
	return charset.Span(&credentialTokenChars, s) == len(s)
}

// credentialTokenChars marks the bytes [isCredentialToken] accepts.
var credentialTokenChars = func() (t [256]bool) {
	for c := 0x21; c <= 0x7e; c++ {
		switch c {
		case '"', '\'', ',', '\\':
		default:
			t[c] = true
		}
	}
	return t
}()

// CookieExtractor returns an [Extractor] that reads the credential from the
// cookie name. It is not among a [Guard]'s default extractors, and should
// stay off unless the service has a reason to accept it: browsers attach
// cookies to every request automatically, so an endpoint that accepts a
// cookie credential needs protection against cross-site request forgery
// (see [net/http.CrossOriginProtection]); and API keys do not belong in
// browsers at all.
//
// A request without the cookie, or with an empty one (the way a cookie is
// cleared), has no credential: the result is ("", nil). The cookie sent
// twice (with different paths, say) or a value that is not a single token
// of visible ASCII is a malformed request ([ErrMalformedRequest], 400). A
// value longer than the length cap is rejected as too long
// ([ErrInvalidCredential], 401); the Cookie header is split into cookies
// before the length of the one named can be known, which allocates.
//
// The extractor is safe for concurrent use.
func CookieExtractor(name string) Extractor {
	return &cookieExtractor{
		name:       name,
		errTwice:   malformed("Send only one " + name + " cookie."),
		errCharset: malformed("The " + name + " cookie must hold a single credential: visible ASCII characters without spaces, commas, quotes or backslashes."),
	}
}

type cookieExtractor struct {
	name                 string
	errTwice, errCharset *Error
}

func (e *cookieExtractor) Extract(r *http.Request) (string, error) {
	return e.extract(r, defaultMaxCredentialLength)
}

func (e *cookieExtractor) extract(r *http.Request, max int) (string, error) {
	if len(r.Header["Cookie"]) == 0 {
		return "", nil
	}
	var v string
	n := 0
	for _, c := range r.CookiesNamed(e.name) {
		if c.Value == "" {
			continue
		}
		v = c.Value
		n++
	}
	switch {
	case n == 0:
		return "", nil
	case n > 1:
		return "", e.errTwice
	case len(v) > max:
		return "", errTooLong
	case !isCredentialToken(v):
		return "", e.errCharset
	}
	return v, nil
}

// QueryExtractor returns an [Extractor] that reads the credential from the
// URL query parameter param. It is not among a [Guard]'s default
// extractors, and should stay off: query strings end up in access logs,
// proxy logs, browser history and Referer headers, which is why RFC 6750
// §2.3 discourages sending credentials this way.
//
// Only the value of param is decoded; the rest of the query is scanned
// without decoding its values. A request without the parameter has no credential:
// the result is ("", nil). The parameter given twice, an empty value, bad
// percent-encoding, or a value that is not a single token of visible ASCII
// is a malformed request ([ErrMalformedRequest], 400). A value longer than
// the length cap (three times the cap before percent-decoding, the cap
// after) is rejected as too long ([ErrInvalidCredential], 401).
//
// The extractor is safe for concurrent use.
func QueryExtractor(param string) Extractor {
	return &queryExtractor{
		param:       param,
		errTwice:    malformed("Send the " + param + " query parameter only once."),
		errEmpty:    malformed("The " + param + " query parameter is empty."),
		errEncoding: malformed("The " + param + " query parameter is not properly percent-encoded."),
		errCharset:  malformed("The " + param + " query parameter must hold a single credential: visible ASCII characters without spaces, commas, quotes or backslashes."),
	}
}

type queryExtractor struct {
	param                                       string
	errTwice, errEmpty, errEncoding, errCharset *Error
}

func (e *queryExtractor) Extract(r *http.Request) (string, error) {
	return e.extract(r, defaultMaxCredentialLength)
}

func (e *queryExtractor) extract(r *http.Request, max int) (string, error) {
	if r.URL == nil {
		return "", nil
	}
	var raw string
	n := 0
	q := r.URL.RawQuery
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		key, val, _ := strings.Cut(part, "=")
		if key != e.param {
			if !strings.ContainsAny(key, "%+") {
				continue
			}
			k, err := url.QueryUnescape(key)
			if err != nil || k != e.param {
				continue
			}
		}
		raw = val
		n++
	}
	switch {
	case n == 0:
		return "", nil
	case n > 1:
		return "", e.errTwice
	case len(raw) > 3*max:
		return "", errTooLong
	}
	v := raw
	if strings.ContainsAny(raw, "%+") {
		var err error
		if v, err = url.QueryUnescape(raw); err != nil {
			return "", e.errEncoding
		}
	}
	switch {
	case len(v) > max:
		return "", errTooLong
	case v == "":
		return "", e.errEmpty
	case !isCredentialToken(v):
		return "", e.errCharset
	}
	return v, nil
}

// malformed returns a malformed-request error (400) with a message for the
// caller.
func malformed(msg string) *Error {
	return &Error{Kind: ErrMalformedRequest, Message: msg}
}
