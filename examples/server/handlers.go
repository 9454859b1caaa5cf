package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/redisfeed"
)

// model is one entry of GET /v1/models.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// models are the models the server offers. They all answer the same way:
// by echoing the last user message.
var models = []model{
	{ID: "standard", Object: "model", Created: 1735689600, OwnedBy: "halfred"},
	{ID: "fast", Object: "model", Created: 1735689600, OwnedBy: "halfred"},
	{ID: "deep", Object: "model", Created: 1740787200, OwnedBy: "halfred"},
}

// modelIDs lists the models' IDs for error messages.
func modelIDs() string {
	ids := make([]string, len(models))
	for i, m := range models {
		ids[i] = m.ID
	}
	return strings.Join(ids, ", ")
}

func knownModel(id string) bool {
	return slices.ContainsFunc(models, func(m model) bool { return m.ID == id })
}

// list is the OpenAI list envelope.
type list[T any] struct {
	Object string `json:"object"`
	Data   []T    `json:"data"`
}

// handleModels serves GET /v1/models.
func (s *server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, list[model]{Object: "list", Data: models})
}

// meResponse is the body of GET /v1/me.
type meResponse struct {
	Method  auth.Method `json:"method"`
	KeyID   string      `json:"key_id"`
	Project string      `json:"project"`
	Scopes  []string    `json:"scopes"`
	// Subject is the sub claim of an access token: the key ID for the
	// server's own tokens, the user for an identity provider's. Absent
	// for API keys.
	Subject string `json:"subject,omitempty"`
}

// handleMe serves GET /v1/me: who the credential belongs to. An identity
// provider's token has an empty key_id and project.
func (s *server) handleMe(w http.ResponseWriter, r *http.Request) {
	p := mustPrincipal(r)
	writeJSON(w, http.StatusOK, meResponse{
		Method:  p.Method,
		KeyID:   p.KeyID,
		Project: p.Project,
		Scopes:  nonNil(p.Scopes),
		Subject: p.Subject,
	})
}

// mustPrincipal returns the caller. Every route that calls it is behind the
// Guard, so a missing Principal is a wiring bug: it panics, and
// recoverPanics answers 500.
func mustPrincipal(r *http.Request) *auth.Principal {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		panic("examples/server: handler reached without a Principal")
	}
	return p
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// requestError is a client error found while reading a request body.
type requestError struct {
	status int
	code   string
	msg    string
}

func badRequest(code, format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

func (e *requestError) write(w http.ResponseWriter) {
	writeError(w, e.status, typeInvalidRequest, e.code, e.msg)
}

// jsonError explains a JSON decoding error without quoting the input,
// except an unknown field's name, masked by echo.
func (s *server) jsonError(err error) *requestError {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return badRequest(codeInvalidJSON, "The request body must be a JSON object, not a JSON %s.", typeErr.Value)
		}
		return badRequest(codeInvalidParameter, "%s must be %s, not a JSON %s.", typeErr.Field, jsonTypeName(typeErr.Type.String()), typeErr.Value)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return badRequest(codeInvalidJSON, "The request body is not complete JSON: it ends too early.")
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return badRequest(codeInvalidJSON, "The request body is not valid JSON (error at byte %d).", syntaxErr.Offset)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest(codeUnknownParameter, "Unrecognized request argument supplied: %s.", s.echo(strings.Trim(f, `"`)))
	}
	return badRequest(codeInvalidJSON, "The request body is not valid JSON.")
}

func jsonTypeName(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int64", "*int64":
		return "an integer"
	case "[]string":
		return "an array of strings"
	}
	if strings.HasPrefix(goType, "[]") {
		return "an array"
	}
	return "an object"
}

// ---- POST /v1/chat/completions ----

// chatRequest is the part of an OpenAI chat completion request the server
// reads. Other fields (temperature, max_tokens, user, …) are accepted and
// ignored, as OpenAI's client libraries send them freely.
type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   bool          `json:"stream"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentPart is one element of an array content.
type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

var chatRoles = []string{"system", "developer", "user", "assistant", "tool"}

// parsedChat is a valid chat request, reduced to what the answer needs.
type parsedChat struct {
	model        string
	lastUser     string
	promptTokens int
}

// parseChat validates a chat completion request body. It is the parser of
// untrusted input behind POST /v1/chat/completions; FuzzParseChat runs it.
func (s *server) parseChat(body []byte) (parsedChat, *requestError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return parsedChat{}, badRequest(codeInvalidJSON,
			`The request body is empty. Send a JSON object such as {"model":"standard","messages":[{"role":"user","content":"Hello"}]}.`)
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return parsedChat{}, s.jsonError(err)
	}
	switch {
	case req.Model == "":
		return parsedChat{}, badRequest(codeMissingParameter, "You must provide a model parameter; models: %s.", modelIDs())
	case !knownModel(req.Model):
		return parsedChat{}, badRequest(codeModelNotFound, "The model %q does not exist; models: %s.", s.echo(req.Model), modelIDs())
	case req.Stream:
		return parsedChat{}, badRequest(codeUnsupportedParameter, "stream: true is not supported by this server; omit stream or set it to false.")
	case req.Messages == nil:
		return parsedChat{}, badRequest(codeMissingParameter, "You must provide a messages parameter: an array of {role, content} objects.")
	case len(req.Messages) == 0:
		return parsedChat{}, badRequest(codeInvalidParameter, "messages must not be empty.")
	}
	out := parsedChat{model: req.Model}
	foundUser := false
	for i, m := range req.Messages {
		if !slices.Contains(chatRoles, m.Role) {
			return parsedChat{}, badRequest(codeInvalidParameter, "messages[%d].role must be one of %s; got %q.",
				i, strings.Join(chatRoles, ", "), s.echo(m.Role))
		}
		text, err := messageText(m.Content, m.Role == "user")
		if err != "" {
			return parsedChat{}, badRequest(codeInvalidParameter, "messages[%d].content %s.", i, err)
		}
		out.promptTokens += countTokens(text)
		if m.Role == "user" {
			foundUser = true
			out.lastUser = text
		}
	}
	if !foundUser {
		return parsedChat{}, badRequest(codeInvalidParameter, "messages must contain at least one message with role user.")
	}
	return out, nil
}

// messageText returns the text of a message's content: a string, or an
// array of parts whose text parts are joined with newlines. Content may be
// null or absent except in a user message. On failure it returns the end of
// an error sentence.
func messageText(raw json.RawMessage, required bool) (string, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		if required {
			return "", "is required in a user message"
		}
		return "", ""
	}
	switch raw[0] {
	case '"':
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", "is not a valid JSON string"
		}
		return text, ""
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", "must be a string or an array of {type, text} parts"
		}
		var texts []string
		for _, p := range parts {
			if p.Type == "text" {
				texts = append(texts, p.Text)
			}
		}
		return strings.Join(texts, "\n"), ""
	}
	return "", "must be a string or an array of {type, text} parts"
}

// countTokens estimates a text's tokens as its number of words: the server
// has no tokenizer, and usage is only indicative.
func countTokens(text string) int {
	return len(strings.FieldsFunc(text, unicode.IsSpace))
}

// chatCompletion is the OpenAI chat.completion object.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      responseMessage `json:"message"`
	Logprobs     *struct{}       `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type responseMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// handleChat serves POST /v1/chat/completions: it answers with the last
// user message. The body is read as JSON whatever its Content-Type, so that
// curl -d works without -H.
func (s *server) handleChat(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, rerr := s.parseChat(body)
	if rerr != nil {
		rerr.write(w)
		return
	}
	id, err := s.completionID()
	if err != nil {
		s.logger.ErrorContext(r.Context(), "completion ID", "error", err)
		writeError(w, http.StatusInternalServerError, typeAPI, codeInternal,
			"The server had an error while processing your request.")
		return
	}
	completion := countTokens(req.lastUser)
	writeJSON(w, http.StatusOK, chatCompletion{
		ID:      id,
		Object:  "chat.completion",
		Created: s.now().Unix(),
		Model:   req.model,
		Choices: []chatChoice{{
			Message:      responseMessage{Role: "assistant", Content: req.lastUser},
			FinishReason: "stop",
		}},
		Usage: chatUsage{
			PromptTokens:     req.promptTokens,
			CompletionTokens: completion,
			TotalTokens:      req.promptTokens + completion,
		},
	})
}

// completionID returns "chatcmpl-" and 24 random hexadecimal digits.
func (s *server) completionID() (string, error) {
	var b [12]byte
	s.randMu.Lock()
	_, err := io.ReadFull(s.random, b[:])
	s.randMu.Unlock()
	if err != nil {
		return "", err
	}
	return "chatcmpl-" + hex.EncodeToString(b[:]), nil
}

// ---- /v1/keys ----

// createKeyRequest is the body of POST /v1/keys. Unknown fields are an
// error: a typo such as "scope" must not silently give a key every scope of
// its creator.
type createKeyRequest struct {
	Name      string            `json:"name"`
	Scopes    []string          `json:"scopes"`
	ExpiresIn *int64            `json:"expires_in"`
	RateLimit *rateLimitRequest `json:"rate_limit"`
}

// rateLimitRequest is the "rate_limit" of POST /v1/keys: the key's own
// limit, requests per per_seconds seconds.
type rateLimitRequest struct {
	Requests   *int64 `json:"requests"`
	PerSeconds *int64 `json:"per_seconds"`
}

// parsedKeySpec is a valid POST /v1/keys body.
type parsedKeySpec struct {
	name string
	// scopes is nil when the body named none: the key gets its creator's.
	scopes []string
	// lifetime is zero for a key that never expires.
	lifetime time.Duration
	// limit is the key's own rate limit; nil for the server's.
	limit *keyLimit
}

// parseCreateKey validates a POST /v1/keys body. An empty body is {}. It
// checks the scopes against the known ones, not against the caller's: that
// is the handler's job. FuzzParseCreateKey runs it.
func (s *server) parseCreateKey(body []byte) (parsedKeySpec, *requestError) {
	var req createKeyRequest
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return parsedKeySpec{}, s.jsonError(err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return parsedKeySpec{}, badRequest(codeInvalidJSON, "The request body must hold a single JSON object.")
		}
	}
	out := parsedKeySpec{name: req.Name}
	if len(req.Name) > maxNameBytes {
		return parsedKeySpec{}, badRequest(codeInvalidParameter, "name must be at most %d bytes long.", maxNameBytes)
	}
	if !utf8.ValidString(req.Name) || strings.ContainsFunc(req.Name, unicode.IsControl) {
		return parsedKeySpec{}, badRequest(codeInvalidParameter, "name must be UTF-8 text without control characters.")
	}
	if req.Scopes != nil {
		out.scopes = make([]string, 0, len(req.Scopes))
		for _, sc := range req.Scopes {
			if !slices.Contains(allScopes, sc) {
				return parsedKeySpec{}, badRequest(codeInvalidParameter, "Unknown scope %q; scopes are %s.",
					s.echo(sc), strings.Join(allScopes, ", "))
			}
			if !slices.Contains(out.scopes, sc) {
				out.scopes = append(out.scopes, sc)
			}
		}
	}
	if req.ExpiresIn != nil {
		n := *req.ExpiresIn
		if n <= 0 || n > int64(maxKeyLifetime/time.Second) {
			return parsedKeySpec{}, badRequest(codeInvalidParameter,
				"expires_in must be a number of seconds from 1 to %d (10 years), or omitted for a key that does not expire.",
				int64(maxKeyLifetime/time.Second))
		}
		out.lifetime = time.Duration(n) * time.Second
	}
	if req.RateLimit != nil {
		l, rerr := s.parseRateLimit(req.RateLimit)
		if rerr != nil {
			return parsedKeySpec{}, rerr
		}
		out.limit = &l
	}
	return out, nil
}

// parseRateLimit validates the "rate_limit" of POST /v1/keys: both
// members present and in range, and no wider than the server's limit for
// API keys, if it has one (a key's own limit replaces that limit, so it
// may only be stricter).
func (s *server) parseRateLimit(r *rateLimitRequest) (keyLimit, *requestError) {
	const shape = `"rate_limit" is {"requests": N, "per_seconds": S}: at most N requests every S seconds`
	switch {
	case r.Requests == nil:
		return keyLimit{}, badRequest(codeMissingParameter, "rate_limit.requests is missing; %s.", shape)
	case r.PerSeconds == nil:
		return keyLimit{}, badRequest(codeMissingParameter, "rate_limit.per_seconds is missing; %s.", shape)
	case *r.Requests < 1 || *r.Requests > maxKeyLimitRequests:
		return keyLimit{}, badRequest(codeInvalidParameter, "rate_limit.requests must be a whole number from 1 to %d.", maxKeyLimitRequests)
	case *r.PerSeconds < 1 || *r.PerSeconds > int64(maxKeyLimitPeriod/time.Second):
		return keyLimit{}, badRequest(codeInvalidParameter, "rate_limit.per_seconds must be a whole number of seconds from 1 to %d (a day).", int64(maxKeyLimitPeriod/time.Second))
	}
	l := keyLimit{Requests: int(*r.Requests), PerSeconds: *r.PerSeconds}
	if n := s.limits.apiKey; l.widerThan(n) {
		return keyLimit{}, badRequest(codeInvalidParameter,
			"rate_limit allows more than this server's limit for API keys, %d requests a minute in bursts of up to %d; a key's own limit can only be stricter.", n, n)
	}
	return l, nil
}

// keyCreated is the body of POST /v1/keys and POST /v1/keys/{id}/rotate:
// the only responses that ever hold a plaintext key.
type keyCreated struct {
	ID        string   `json:"id"`
	Key       string   `json:"key"`
	Hint      string   `json:"hint"`
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	CreatedAt int64    `json:"created_at"`
	ExpiresAt *int64   `json:"expires_at"`
	// RateLimit is the key's own rate limit; null for the server's.
	RateLimit *keyLimit `json:"rate_limit"`
}

// keyItem is one key in GET /v1/keys. It never holds the key.
type keyItem struct {
	ID         string   `json:"id"`
	Hint       string   `json:"hint"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  int64    `json:"created_at"`
	ExpiresAt  *int64   `json:"expires_at"`
	LastUsedAt *int64   `json:"last_used_at"`
	RevokedAt  *int64   `json:"revoked_at"`
	// UsageCount is how many requests the key and its access tokens
	// made, as written to the store so far (every -usage-interval).
	UsageCount int64 `json:"usage_count"`
	// LastClientAddr is the address of the client of the key's latest
	// counted request; null when unknown.
	LastClientAddr *string `json:"last_client_addr"`
	// RateLimit is the key's own rate limit; null for the server's.
	RateLimit *keyLimit `json:"rate_limit"`
}

// unix returns t as Unix seconds, or nil for the zero time.
func unix(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	u := t.Unix()
	return &u
}

func created(key keystore.Key, rec keystore.Record) keyCreated {
	return keyCreated{
		ID:        rec.ID,
		Key:       key.Plaintext(),
		Hint:      rec.Hint,
		Name:      rec.Name,
		Scopes:    nonNil(rec.Scopes),
		CreatedAt: rec.CreatedAt.Unix(),
		ExpiresAt: unix(rec.ExpiresAt),
		RateLimit: showLimit(rec.RateLimit),
	}
}

// insufficientScope answers 403 through the Guard for a request that would
// give a key scopes its caller does not hold.
func (s *server) insufficientScope(w http.ResponseWriter, r *http.Request, missing []string, what string) {
	s.guard.WriteError(w, r, &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: fmt.Sprintf("%s needs scopes your key does not hold: %s. A key can only give out scopes it has.", what, strings.Join(missing, " ")),
		Scopes:  missing,
	})
}

// handleCreateKey serves POST /v1/keys: a new key in the caller's project,
// with at most the caller's scopes (by default exactly those).
func (s *server) handleCreateKey(w http.ResponseWriter, r *http.Request) {
	p := mustPrincipal(r)
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, rerr := s.parseCreateKey(body)
	if rerr != nil {
		rerr.write(w)
		return
	}
	scopes := req.scopes
	if scopes == nil {
		scopes = slices.Clone(p.Scopes)
	}
	if missing := p.MissingScopes(scopes...); len(missing) > 0 {
		s.insufficientScope(w, r, missing, "This key")
		return
	}
	spec := keystore.KeySpec{Project: p.Project, Name: req.name, Scopes: scopes}
	if req.lifetime > 0 {
		spec.ExpiresAt = s.now().Add(req.lifetime)
	}
	if req.limit != nil {
		spec.RateLimit = req.limit.toLimit()
	}
	key, rec, err := s.keys.Issue(r.Context(), spec)
	switch {
	case errors.Is(err, keystore.ErrInvalidSpec):
		writeError(w, http.StatusBadRequest, typeInvalidRequest, codeInvalidParameter, "The key could not be created: invalid parameters.")
		return
	case err != nil:
		s.storeFailed(w, r, err)
		return
	}
	// The audit log records the creation (key.created, with "by").
	writeJSON(w, http.StatusCreated, created(key, rec))
}

// handleListKeys serves GET /v1/keys: the caller's project's keys, revoked
// ones included, without plaintext.
func (s *server) handleListKeys(w http.ResponseWriter, r *http.Request) {
	p := mustPrincipal(r)
	recs, err := s.keys.List(r.Context(), p.Project)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	items := make([]keyItem, len(recs))
	for i, rec := range recs {
		items[i] = keyItem{
			ID:         rec.ID,
			Hint:       rec.Hint,
			Name:       rec.Name,
			Scopes:     nonNil(rec.Scopes),
			CreatedAt:  rec.CreatedAt.Unix(),
			ExpiresAt:  unix(rec.ExpiresAt),
			LastUsedAt: unix(rec.LastUsedAt),
			RevokedAt:  unix(rec.RevokedAt),
			UsageCount: rec.UsageCount,
			RateLimit:  showLimit(rec.RateLimit),
		}
		if rec.LastClientAddr.IsValid() {
			a := rec.LastClientAddr.String()
			items[i].LastClientAddr = &a
		}
	}
	writeJSON(w, http.StatusOK, list[keyItem]{Object: "list", Data: items})
}

// projectKey returns the record of the key named in the path if it belongs
// to the caller's project. Otherwise it answers 404 (a key of another
// project is indistinguishable from no key) or 503 and returns false.
func (s *server) projectKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) (keystore.Record, bool) {
	id := r.PathValue("id")
	rec, err := s.keys.Get(r.Context(), id)
	switch {
	case errors.Is(err, keystore.ErrNotFound) || (err == nil && rec.Project != p.Project):
		s.keyNotFound(w, id)
		return keystore.Record{}, false
	case err != nil:
		s.storeFailed(w, r, err)
		return keystore.Record{}, false
	}
	return rec, true
}

func (s *server) keyNotFound(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, typeInvalidRequest, codeNotFound,
		fmt.Sprintf("No API key with ID %q in this project. Key IDs look like key_… and are listed by GET /v1/keys.", s.echo(id)))
}

// handleRotateKey serves POST /v1/keys/{id}/rotate: the key is revoked at
// once and a new one with the same name, scopes and lifetime returned. A
// revoked key cannot be rotated (409), and a key with scopes the caller
// lacks cannot be rotated by it (403).
func (s *server) handleRotateKey(w http.ResponseWriter, r *http.Request) {
	p := mustPrincipal(r)
	old, ok := s.projectKey(w, r, p)
	if !ok {
		return
	}
	if missing := p.MissingScopes(old.Scopes...); len(missing) > 0 {
		s.insufficientScope(w, r, missing, "Rotating this key")
		return
	}
	key, rec, err := s.keys.Rotate(r.Context(), old.ID, 0)
	switch {
	case errors.Is(err, keystore.ErrAlreadyRevoked):
		writeError(w, http.StatusConflict, typeInvalidRequest, codeKeyRevoked,
			fmt.Sprintf("The API key %s is revoked and cannot be rotated; create a new key with POST /v1/keys.", old.ID))
		return
	case errors.Is(err, keystore.ErrNotFound):
		s.keyNotFound(w, old.ID)
		return
	case err != nil:
		s.storeFailed(w, r, err)
		return
	}
	// The audit log records the rotation (key.rotated, with "by").
	writeJSON(w, http.StatusCreated, created(key, rec))
}

// handleDeleteKey serves DELETE /v1/keys/{id}: the key is revoked at once.
// Deleting a revoked key is 204 again.
func (s *server) handleDeleteKey(w http.ResponseWriter, r *http.Request) {
	p := mustPrincipal(r)
	old, ok := s.projectKey(w, r, p)
	if !ok {
		return
	}
	_, err := s.keys.Revoke(r.Context(), old.ID)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		s.keyNotFound(w, old.ID)
		return
	case errors.Is(err, redisfeed.ErrNotPublished):
		// -feed redis: the store revoked the key, and this instance's
		// cache knows, but the other instances were not told. Revoking
		// is idempotent and publishes again: have the client retry.
		s.logger.LogAttrs(r.Context(), slog.LevelError, "key revoked, but the invalidation was not published to the other instances",
			slog.String("key_id", old.ID), slog.String("error", s.redact(err.Error())))
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, typeAPI, codeServiceUnavailable,
			"The key is revoked on this server, but the other servers could not be told yet. Retry the request: deleting a key again is harmless.")
		return
	case err != nil:
		s.storeFailed(w, r, err)
		return
	}
	// The audit log records the revocation (key.revoked, with "by").
	w.WriteHeader(http.StatusNoContent)
}
