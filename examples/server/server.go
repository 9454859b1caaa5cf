package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// The scopes of the Halfred API. A key may hold any subset of them.
const (
	scopeModelsRead  = "models:read"
	scopeChatWrite   = "chat:write"
	scopeKeysManage  = "keys:manage"
	scopeTokensIssue = "tokens:issue"
)

// allScopes lists every scope, in the order the documentation gives them.
// The bootstrap key holds all of them.
var allScopes = []string{scopeModelsRead, scopeChatWrite, scopeKeysManage, scopeTokensIssue}

const (
	// realm is the realm of every WWW-Authenticate challenge.
	realm = "halfred"
	// defaultProject is the project of the bootstrap key.
	defaultProject = "default"
	// bootstrapName is the name of the key issued on a start with an empty
	// store.
	bootstrapName = "bootstrap"
	// maxBodyBytes caps every request body; a longer body is 413.
	maxBodyBytes = 1 << 20
	// maxKeyLifetime caps expires_in when a key is created.
	maxKeyLifetime = 10 * 365 * 24 * time.Hour
	// maxNameBytes caps a key's name.
	maxNameBytes = 256
	// maxEcho caps how much of a caller's input an error message quotes.
	maxEcho = 64
)

// Error types and codes of the JSON error body
// {"error":{"message","type","code"}}. The Guard renders the
// authentication rows of the contract's error table; the server renders the
// rest with these.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAPI            = "api_error"

	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeInvalidJSON          = "invalid_json"
	codeUnknownParameter     = "unknown_parameter"
	codeMissingParameter     = "missing_parameter"
	codeInvalidParameter     = "invalid_parameter"
	codeUnsupportedParameter = "unsupported_parameter"
	codeModelNotFound        = "model_not_found"
	codeRequestTooLarge      = "request_too_large"
	codeKeyRevoked           = "key_revoked"
	codeInternal             = "internal_error"
	codeServiceUnavailable   = "service_unavailable"
)

// config is everything newServer needs. The zero value of each field means
// its default.
type config struct {
	// prefix is the API key prefix without the separator. Default
	// "halfred".
	prefix string
	// pepper, when set, is mixed into every key's hash (at least 16
	// bytes). Default none: plain SHA-256.
	pepper []byte
	// store keeps the keys. Default a new in-memory store.
	store keystore.Store
	// now is the clock. Default time.Now.
	now func() time.Time
	// random is the source of completion IDs. Default crypto/rand.
	random io.Reader
	// logger receives the server's logs. Default: discard.
	logger *slog.Logger
}

// server is the Halfred API: a key manager, the Guard in front of every
// /v1 endpoint, and the handlers. It is safe for concurrent use.
type server struct {
	keys   *keystore.Manager
	guard  *auth.Guard
	format *keystore.Format
	now    func() time.Time
	logger *slog.Logger

	randMu sync.Mutex
	random io.Reader
}

// newServer builds a server from cfg. It returns an error for an invalid
// prefix or pepper.
func newServer(cfg config) (*server, error) {
	if cfg.prefix == "" {
		cfg.prefix = "halfred"
	}
	if cfg.store == nil {
		cfg.store = keystore.NewMemoryStore()
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.random == nil {
		cfg.random = rand.Reader
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	format, err := keystore.NewFormat(keystore.WithPrefix(cfg.prefix))
	if err != nil {
		return nil, fmt.Errorf("invalid -prefix: %w", err)
	}
	hasher, err := keystore.NewHasher(cfg.pepper)
	if err != nil {
		return nil, fmt.Errorf("invalid pepper: %w", err)
	}
	keys, err := keystore.NewManager(cfg.store,
		keystore.WithFormat(format),
		keystore.WithHasher(hasher),
		keystore.WithClock(cfg.now),
		keystore.WithLogger(cfg.logger),
	)
	if err != nil {
		return nil, fmt.Errorf("key manager: %w", err)
	}
	guard, err := auth.New(keys, auth.WithRealm(realm), auth.WithLogger(cfg.logger))
	if err != nil {
		return nil, fmt.Errorf("auth guard: %w", err)
	}
	return &server{
		keys:   keys,
		guard:  guard,
		format: format,
		now:    cfg.now,
		logger: cfg.logger,
		random: cfg.random,
	}, nil
}

// bootstrap issues the first key, with every scope, in project "default"
// when that project has no keys. It returns the key and true when it issued
// one, and the zero Key and false when the project already had keys.
func (s *server) bootstrap(ctx context.Context) (keystore.Key, bool, error) {
	recs, err := s.keys.List(ctx, defaultProject)
	if err != nil {
		return keystore.Key{}, false, fmt.Errorf("bootstrap: list keys: %w", err)
	}
	if len(recs) > 0 {
		return keystore.Key{}, false, nil
	}
	key, rec, err := s.keys.Issue(ctx, keystore.KeySpec{
		Project: defaultProject,
		Name:    bootstrapName,
		Scopes:  allScopes,
	})
	if err != nil {
		return keystore.Key{}, false, fmt.Errorf("bootstrap: issue key: %w", err)
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "issued bootstrap key",
		slog.String("key_id", rec.ID), slog.String("hint", rec.Hint),
		slog.String("project", rec.Project), slog.Any("scopes", rec.Scopes))
	return key, true, nil
}

// routes returns the server's HTTP handler: the endpoints of the contract,
// each behind the Guard with its scope, plus JSON 404 and 405 answers, panic
// recovery and a request log.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	scoped := func(scope string, h http.HandlerFunc) http.Handler {
		return s.guard.RequireScopes(scope)(noteCaller(h))
	}
	mux.Handle("GET /v1/models", scoped(scopeModelsRead, s.handleModels))
	mux.Handle("POST /v1/chat/completions", scoped(scopeChatWrite, s.handleChat))
	mux.Handle("GET /v1/me", s.guard.Middleware(noteCaller(http.HandlerFunc(s.handleMe))))
	mux.Handle("POST /v1/keys", scoped(scopeKeysManage, s.handleCreateKey))
	mux.Handle("GET /v1/keys", scoped(scopeKeysManage, s.handleListKeys))
	mux.Handle("POST /v1/keys/{id}/rotate", scoped(scopeKeysManage, s.handleRotateKey))
	mux.Handle("DELETE /v1/keys/{id}", scoped(scopeKeysManage, s.handleDeleteKey))
	return s.logRequests(s.recoverPanics(s.jsonFallback(mux)))
}

// jsonFallback answers requests that match no route with the JSON error
// body instead of ServeMux's plain text: 404 for an unknown path, 405 with
// ServeMux's Allow header for a known path and another method.
func (s *server) jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route: let ServeMux decide between 404 and 405 (and compute
		// Allow), but keep only its verdict.
		rec := &verdictRecorder{header: make(http.Header)}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, typeInvalidRequest, codeMethodNotAllowed,
				fmt.Sprintf("Method %s is not allowed on %s; allowed: %s.",
					s.echo(r.Method), s.echo(r.URL.Path), rec.header.Get("Allow")))
			return
		}
		writeError(w, http.StatusNotFound, typeInvalidRequest, codeNotFound,
			fmt.Sprintf("Unknown request URL: %s %s. The Halfred API serves /v1/models, /v1/chat/completions, /v1/me and /v1/keys.",
				s.echo(r.Method), s.echo(r.URL.Path)))
	})
}

// verdictRecorder is a ResponseWriter that keeps the status and headers and
// drops the body.
type verdictRecorder struct {
	header http.Header
	status int
}

func (v *verdictRecorder) Header() http.Header { return v.header }
func (v *verdictRecorder) WriteHeader(code int) {
	if v.status == 0 {
		v.status = code
	}
}
func (v *verdictRecorder) Write(p []byte) (int, error) {
	v.WriteHeader(http.StatusOK)
	return len(p), nil
}

// recoverPanics turns a handler panic into a 500 JSON error, logged without
// the request's credentials.
func (s *server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
				slog.String("method", r.Method), slog.String("path", s.redact(r.URL.Path)),
				slog.String("panic", s.redact(fmt.Sprint(v))))
			writeError(w, http.StatusInternalServerError, typeAPI, codeInternal,
				"The server had an error while processing your request.")
		}()
		next.ServeHTTP(w, r)
	})
}

// requestInfo is filled in by the handlers of one request for its log line.
type requestInfo struct {
	keyID string
}

type requestInfoKey struct{}

// noteCaller records the authenticated caller's key ID for the request log.
func noteCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
			if p, ok := auth.FromContext(r.Context()); ok {
				info.keyID = p.KeyID
			}
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests logs one line per request: method, path (with anything
// shaped like a key masked), status, size, duration and the caller's key ID.
// It never logs headers or the query string, where credentials travel.
func (s *server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		info := &requestInfo{}
		sw := &statusWriter{ResponseWriter: w}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", s.redact(r.URL.Path)),
			slog.Int("status", status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("duration", s.now().Sub(start)),
		}
		if info.keyID != "" {
			attrs = append(attrs, slog.String("key_id", info.keyID))
		}
		s.logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// redact masks everything in s shaped like one of the server's keys, so
// that a key pasted into a URL or a JSON field never reaches a log or an
// error message.
func (s *server) redact(str string) string {
	return s.format.Pattern().ReplaceAllStringFunc(str, s.format.Hint)
}

// echo prepares a caller's input for an error message: keys masked,
// invalid UTF-8 and control characters replaced, cut to maxEcho bytes.
func (s *server) echo(str string) string {
	str = s.redact(str)
	str = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, str)
	if len(str) > maxEcho {
		cut := maxEcho
		for cut > 0 && !utf8.RuneStart(str[cut]) {
			cut--
		}
		str = str[:cut] + "…"
	}
	return str
}

// errorBody is the JSON error shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

// writeError writes the JSON error body with status.
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	writeJSON(w, status, errorBody{errorDetail{Message: msg, Type: typ, Code: code}})
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // an API, not HTML: keep "<" readable in messages
	err := enc.Encode(v)
	body := buf.Bytes()
	if err != nil {
		// Every value the server writes marshals; this is a bug.
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"message":"The server had an error while processing your request.","type":"api_error","code":"internal_error"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client went away; nothing to do
}

// readBody reads at most maxBodyBytes of r's body. A longer body is
// answered 413 and false is returned.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if tooLarge := new(http.MaxBytesError); errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, typeInvalidRequest, codeRequestTooLarge,
				fmt.Sprintf("The request body is larger than %d bytes.", maxBodyBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, typeInvalidRequest, codeInvalidJSON,
			"The request body could not be read.")
		return nil, false
	}
	return body, true
}

// storeFailed answers a key store failure in a management call: 503, the
// same answer the Guard gives when it cannot check a credential, with the
// cause logged (keys masked) and never shown.
func (s *server) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.logger.LogAttrs(r.Context(), slog.LevelError, "key store failed",
		slog.String("method", r.Method), slog.String("path", s.redact(r.URL.Path)),
		slog.String("error", s.redact(err.Error())))
	writeError(w, http.StatusServiceUnavailable, typeAPI, codeServiceUnavailable,
		"The key store is unavailable right now. Try again later.")
}
