package token

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/keygate/keygate/auth"
)

// MaxRequestBody is the largest request body the Service's handlers read:
// 1 MiB. A longer body is answered with 413.
const MaxRequestBody = 1 << 20

// errTrailingData is a request body with more after its JSON object.
var errTrailingData = errors.New("token: data after the JSON object")

// responses holds the Service's prebuilt header values and error bodies.
type responses struct {
	contentType, noStore, noCache, noSniff, allowPost, challenge []string

	methodNotAllowed, tooLarge            []byte
	badTokenBody, badRefreshBody          []byte
	notRefreshToken, accessTokenAsRefresh []byte
	invalidGrant                          []byte
}

func newResponses(realm string) *responses {
	one := func(v string) []string { return []string{v} }
	return &responses{
		contentType: one("application/json"),
		noStore:     one("no-store"),
		noCache:     one("no-cache"),
		noSniff:     one("nosniff"),
		allowPost:   one(http.MethodPost),
		challenge:   one(`Bearer realm="` + realm + `", error="invalid_token"`),

		methodNotAllowed: auth.ErrorBody("This endpoint accepts only POST.",
			"invalid_request_error", "method_not_allowed"),
		tooLarge: auth.ErrorBody("The request body is larger than 1 MiB.",
			"invalid_request_error", "request_too_large"),
		badTokenBody: auth.ErrorBody(`The request body must be empty or a JSON object such as {"scopes":["models:read"]}, with no other fields.`,
			"invalid_request_error", "invalid_request"),
		badRefreshBody: auth.ErrorBody(`The request body must be a JSON object {"refresh_token":"…"} holding the refresh token, with no other fields.`,
			"invalid_request_error", "invalid_request"),
		notRefreshToken: auth.ErrorBody("The refresh_token is not a refresh token of this service.",
			"invalid_request_error", "invalid_grant"),
		accessTokenAsRefresh: auth.ErrorBody("The refresh_token is an access token: send the refresh_token of the token response instead.",
			"invalid_request_error", "invalid_grant"),
		invalidGrant: auth.ErrorBody("The refresh token is invalid, expired, revoked or already used. Exchange an API key for a new token pair.",
			"authentication_error", "invalid_grant"),
	}
}

// TokenHandler returns the handler of the exchange endpoint (POST
// /v1/auth/token in the example server). Mount it behind an [auth.Guard]:
// it exchanges the API key of the request's [auth.Principal] with
// [Service.Exchange].
//
// The request body is optional: empty, or a JSON object {"scopes":[…]}
// that narrows the access token's scopes (an absent, null or empty list
// means all of the key's scopes). The answer is 200 with the
// [Pair] as JSON:
//
//	{"access_token":"eyJ…","token_type":"Bearer","expires_in":900,"refresh_token":"halfredrt_…","scope":"chat:write models:read"}
//
// Errors: 405 (with Allow: POST) for another method; 400 invalid_request
// for a body that is not such an object (unknown fields included); 413
// for a body over [MaxRequestBody]; through the Service's error handler
// ([WithServiceErrorHandler]), 401 without a principal, 403
// insufficient_scope for an access token, a key without [ExchangeScope]
// or a scope the key lacks, and 503 when the refresh store fails. Every
// response carries Cache-Control: no-store and Pragma: no-cache (RFC 6749
// §5.1).
func (s *Service) TokenHandler() http.Handler {
	return http.HandlerFunc(s.serveToken)
}

func (s *Service) serveToken(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r) {
		return
	}
	p, ok := auth.FromContext(r.Context())
	if !ok {
		s.fail(w, r, auth.ErrNoCredentials)
		return
	}
	var body struct {
		Scopes []string `json:"scopes"`
	}
	if err := decodeBody(w, r, &body, true); err != nil {
		s.badBody(w, err, s.responses.badTokenBody)
		return
	}
	pair, err := s.Exchange(r.Context(), *p, body.Scopes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writePair(w, pair)
}

// RefreshHandler returns the handler of the refresh endpoint (POST
// /v1/auth/refresh in the example server). It needs no Guard: the
// refresh token in the body is the credential. It spends the token with
// [Service.Refresh] and answers 200 with the new [Pair] as JSON, like
// [Service.TokenHandler].
//
// The body is a JSON object {"refresh_token":"…"}. Errors, with the
// {"error":{"message","type","code"}} body:
//
//	status  type                   code                why
//	405     invalid_request_error  method_not_allowed  not POST (Allow: POST)
//	400     invalid_request_error  invalid_request     the body is not such an object, has other fields, or no token
//	413     invalid_request_error  request_too_large   the body is over MaxRequestBody
//	400     invalid_request_error  invalid_grant       the token is not a refresh token: an access token, an API key, garbage
//	401     authentication_error   invalid_grant       the refresh token is unknown, expired, revoked or already spent,
//	                                                   or its API key is no longer good (WWW-Authenticate:
//	                                                   Bearer realm="…", error="invalid_token")
//	503     api_error              service_unavailable a store failed (through the Service's error handler)
//
// The 401 is the same, byte for byte, whatever the reason, and a spent
// token also revokes its whole session (see [Service]). No response
// contains the token sent. Every response carries Cache-Control: no-store
// and Pragma: no-cache.
func (s *Service) RefreshHandler() http.Handler {
	return http.HandlerFunc(s.serveRefresh)
}

func (s *Service) serveRefresh(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r) {
		return
	}
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	err := decodeBody(w, r, &body, false)
	if err == nil && body.RefreshToken == "" {
		err = errors.New("token: no refresh_token")
	}
	if err != nil {
		s.badBody(w, err, s.responses.badRefreshBody)
		return
	}
	pair, err := s.Refresh(r.Context(), body.RefreshToken)
	switch {
	case err == nil:
		s.writePair(w, pair)
	case errors.Is(err, errAccessTokenGrant):
		s.writeError(w, http.StatusBadRequest, s.responses.accessTokenAsRefresh)
	case errors.Is(err, errNotRefreshToken):
		s.writeError(w, http.StatusBadRequest, s.responses.notRefreshToken)
	case errors.Is(err, ErrInvalidGrant):
		w.Header()["Www-Authenticate"] = s.responses.challenge
		s.writeError(w, http.StatusUnauthorized, s.responses.invalidGrant)
	default:
		s.fail(w, r, err)
	}
}

// RevokeHandler returns the handler of the revocation endpoint (POST
// /v1/auth/revoke in the example server). Mount it behind an [auth.Guard]:
// it revokes the access token of the request's [auth.Principal], with its
// session, by [Service.Revoke], and answers 204. The request body is
// ignored.
//
// The credential must be an access token: an API key is answered with 403
// (insufficient_scope, "Only an access token can be revoked here"), as
// the endpoint's required credential is missing rather than the request
// malformed; revoke API keys through keystore.Manager. Errors go through
// the Service's error handler: 401 without a principal, 403, 503 when a
// store fails; 405 (Allow: POST) for a method other than POST. Every
// response carries Cache-Control: no-store and Pragma: no-cache.
func (s *Service) RevokeHandler() http.Handler {
	return http.HandlerFunc(s.serveRevoke)
}

func (s *Service) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r) {
		return
	}
	p, ok := auth.FromContext(r.Context())
	if !ok {
		s.fail(w, r, auth.ErrNoCredentials)
		return
	}
	if err := s.Revoke(r.Context(), *p); err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h["Cache-Control"] = s.responses.noStore
	h["Pragma"] = s.responses.noCache
	w.WriteHeader(http.StatusNoContent)
}

// allow answers a request whose method is not POST with 405 and reports
// whether the request may go on.
func (s *Service) allow(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header()["Allow"] = s.responses.allowPost
	s.writeError(w, http.StatusMethodNotAllowed, s.responses.methodNotAllowed)
	return false
}

// decodeBody decodes the request body, at most MaxRequestBody bytes, into
// v: one JSON value with no unknown fields and nothing after it. An empty
// body is an error unless emptyOK.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	if r.Body == nil {
		if emptyOK {
			return nil
		}
		return io.EOF
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if err == io.EOF && emptyOK {
			return nil
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errTrailingData
		}
		return err
	}
	return nil
}

// badBody answers a request whose body could not be read: 413 if it was
// too large, else 400 with msg.
func (s *Service) badBody(w http.ResponseWriter, err error, msg []byte) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		s.writeError(w, http.StatusRequestEntityTooLarge, s.responses.tooLarge)
		return
	}
	s.writeError(w, http.StatusBadRequest, msg)
}

// writeError writes one of the prebuilt error bodies.
func (s *Service) writeError(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = s.responses.contentType
	h["Cache-Control"] = s.responses.noStore
	h["Pragma"] = s.responses.noCache
	h["X-Content-Type-Options"] = s.responses.noSniff
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// fail answers err with the Service's error handler, after the headers
// every token response carries, and logs a back-end failure when the
// handler is the default one.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	h := w.Header()
	h["Cache-Control"] = s.responses.noStore
	h["Pragma"] = s.responses.noCache
	if s.logErrors && serverError(err) {
		s.logger.LogAttrs(r.Context(), slog.LevelError, "keygate: token endpoint failed",
			slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	s.errorHandler(w, r, err)
}

// writePair answers 200 with pair as JSON.
func (s *Service) writePair(w http.ResponseWriter, pair Pair) {
	body, err := json.Marshal(pair)
	if err != nil {
		s.writeError(w, http.StatusInternalServerError, auth.ErrorBody("The server failed to encode the tokens.", "api_error", "internal_error"))
		return
	}
	h := w.Header()
	h["Content-Type"] = s.responses.contentType
	h["Cache-Control"] = s.responses.noStore
	h["Pragma"] = s.responses.noCache
	h["X-Content-Type-Options"] = s.responses.noSniff
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

// serverError reports whether the error handler answers err with a 5xx:
// it matches auth.ErrInternal or auth.ErrUnavailable, or none of the auth
// sentinels.
func serverError(err error) bool {
	if errors.Is(err, auth.ErrInternal) || errors.Is(err, auth.ErrUnavailable) {
		return true
	}
	for _, k := range [...]error{auth.ErrMalformedRequest, auth.ErrInvalidCredential,
		auth.ErrNoCredentials, auth.ErrInsufficientScope, auth.ErrRateLimited} {
		if errors.Is(err, k) {
			return false
		}
	}
	return true
}
