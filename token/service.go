package token

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// ExchangeScope is the scope an API key needs to be exchanged for tokens
// ([Service.Exchange]).
const ExchangeScope = "tokens:issue"

// DefaultRefreshLifetime is how long a session lasts by default: its
// refresh tokens stop working 30 days after the API key was exchanged.
const DefaultRefreshLifetime = 30 * 24 * time.Hour

// SessionRevocationPrefix starts the ID under which a revoked session is
// recorded in [Revocations]: the [Service] revokes session s as
// "sid:"+s, and the [Verifier] rejects a token whose sid claim is revoked
// that way. keygate's token IDs (jti) never contain a colon.
const SessionRevocationPrefix = "sid:"

// defaultRefreshPrefix is the prefix of the default refresh token format:
// the default API key prefix followed by "rt".
const defaultRefreshPrefix = "halfredrt"

// defaultRefreshFormat is the format of refresh tokens when no
// [WithRefreshFormat] is given.
var defaultRefreshFormat = keystore.MustFormat(keystore.WithPrefix(defaultRefreshPrefix))

// familyIDBytes is the number of random bytes in a session (family) ID:
// 128 bits, 22 base64url characters.
const familyIDBytes = 16

// Service issues, refreshes and revokes token pairs: it exchanges an API
// key for a short-lived access token (from its [Issuer]) and an opaque,
// single-use refresh token (kept hashed in a [RefreshStore]), and serves
// the three endpoints of that flow ([Service.TokenHandler],
// [Service.RefreshHandler], [Service.RevokeHandler]).
//
// # Sessions
//
// Each exchange starts a session, or family: a random ID that is the sid
// claim of every access token issued in it, and the Family of every
// refresh token. A refresh spends the presented refresh token and returns
// a new pair in the same session. A session ends when its lifetime
// ([WithRefreshLifetime], 30 days by default, never past the API key's
// own expiry) runs out, counted from the exchange: refreshing does not
// extend it. The client then exchanges its API key again.
//
// # Revocation
//
// Revoking an access token ([Service.Revoke]) records its jti in the
// [Revocations], revokes its session's refresh tokens, and records the
// session as "sid:"+session ([SessionRevocationPrefix]) so that every
// access token of the session fails verification at once. That needs the
// [Verifier] to consult the same Revocations ([WithRevocations]).
// Revoking the API key (through the [KeyChecker], such as
// keystore.Manager) ends its tokens at their next verification and its
// refresh tokens at their next use.
//
// # Reuse detection
//
// A refresh token can be spent once. Presenting one that was already spent
// means that two parties hold it, and the service cannot tell which is the
// legitimate client (RFC 9700 §4.14.2): the whole session is revoked, the
// refresh tokens and access tokens issued to the party that spent it first
// included, and the event is logged at [slog.LevelWarn]. Of two concurrent
// refreshes with one token, exactly one gets a new pair; the other is a
// reuse, so the winner's new tokens are revoked too.
//
// A failure after the refresh token is spent (the key store or the
// refresh store unreachable) leaves it spent: the client gets a 503, and
// presenting the token again counts as reuse. Such a client exchanges its
// API key again.
//
// A Service is safe for concurrent use and starts no goroutines.
type Service struct {
	issuer      *Issuer
	verifier    *Verifier
	refresh     RefreshStore
	revocations Revocations
	keys        KeyChecker

	lifetime     time.Duration
	format       *keystore.Format
	hasher       *keystore.Hasher
	now          func() time.Time
	random       io.Reader
	randMu       *sync.Mutex // nil when random is crypto/rand.Reader
	logger       *slog.Logger
	observer     auth.Observer // nil: report nothing
	errorHandler auth.ErrorHandler
	logErrors    bool // errorHandler is the default, which does not log
	realm        string

	responses *responses
}

// ServiceOption configures a [Service] in [NewService].
type ServiceOption func(*Service) error

// WithRefreshLifetime sets how long a session, and so each of its refresh
// tokens, lasts from the exchange of the API key; a key that expires
// sooner ends it sooner. Default: [DefaultRefreshLifetime] (30 days). It
// must be positive.
func WithRefreshLifetime(d time.Duration) ServiceOption {
	return func(s *Service) error {
		if d <= 0 {
			return fmt.Errorf("%w: refresh lifetime must be positive", ErrInvalidConfig)
		}
		s.lifetime = d
		return nil
	}
}

// WithRefreshFormat sets the format of refresh tokens: their prefix,
// length and checksum, and their source of randomness (see
// [keystore.WithRandom]). It must differ from the API keys' format, so
// that neither can be taken for the other: give it the API key prefix
// followed by "rt", as in
//
//	keystore.NewFormat(keystore.WithPrefix("acmert"))
//
// for keys that start with acme_. Default: prefix "halfredrt" (the default
// API key prefix, "halfred", plus "rt"), 22 random base62 characters
// (about 131 bits) and a checksum: 38 characters, such as
// halfredrt_0tZ8cJ1vQ2jHk4LwN6xYb9aPq3s7Ff.
func WithRefreshFormat(f *keystore.Format) ServiceOption {
	return func(s *Service) error {
		if f == nil {
			return fmt.Errorf("%w: nil refresh token format", ErrInvalidConfig)
		}
		s.format = f
		return nil
	}
}

// WithRefreshHasher sets how refresh tokens are hashed before they reach
// the [RefreshStore]. Default: plain SHA-256, as by keystore.NewHasher(nil).
// With a pepper, a stolen refresh store yields no way to test tokens
// against it. A token hashed under a previous pepper of the Hasher is
// still found.
func WithRefreshHasher(h *keystore.Hasher) ServiceOption {
	return func(s *Service) error {
		if h == nil {
			return fmt.Errorf("%w: nil refresh token hasher", ErrInvalidConfig)
		}
		s.hasher = h
		return nil
	}
}

// WithServiceClock sets the clock of session and refresh token times.
// Default: [time.Now]. The [Issuer] has its own clock ([WithIssuerClock]).
func WithServiceClock(now func() time.Time) ServiceOption {
	return func(s *Service) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		s.now = now
		return nil
	}
}

// WithServiceRandom sets the source of randomness of session IDs.
// Default: [crypto/rand.Reader]. Refresh tokens take their randomness from
// the refresh token format ([WithRefreshFormat]).
func WithServiceRandom(r io.Reader) ServiceOption {
	return func(s *Service) error {
		if r == nil {
			return fmt.Errorf("%w: nil random source", ErrInvalidConfig)
		}
		s.random = r
		return nil
	}
}

// WithServiceLogger sets where the Service reports refresh token reuse
// (at [slog.LevelWarn]) and, when its handlers use the default error
// handler, the back-end failures they answer with a 5xx (at
// [slog.LevelError]). Default: [slog.Default]. It logs session and key
// IDs and masked tokens, never a token.
func WithServiceLogger(l *slog.Logger) ServiceOption {
	return func(s *Service) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidConfig)
		}
		s.logger = l
		return nil
	}
}

// WithServiceObserver sets the [auth.Observer] the Service reports token
// lifecycle events to, each after the change is stored, never for a call
// that failed:
//
//   - [auth.EventTokenIssued] from [Service.Exchange], with the API key's
//     KeyID and Project, the access token's jti as TokenID, and the new
//     Session;
//   - [auth.EventTokenRefreshed] from [Service.Refresh], the same fields
//     for the new access token;
//   - [auth.EventRefreshReuse] when Refresh is given a spent refresh token
//     of a session that has not expired, with the Session, KeyID and
//     Project. It is reported even if revoking the session then fails,
//     with that failure as Err;
//   - [auth.EventTokenRevoked] from [Service.Revoke], with the token's
//     TokenID, Session, KeyID, Project and Subject.
//
// Default: none. The Observer is called on the caller's goroutine with
// the caller's context. A nil o means none.
func WithServiceObserver(o auth.Observer) ServiceOption {
	return func(s *Service) error {
		s.observer = o
		return nil
	}
}

// observe reports e to the Service's Observer, if it has one.
func (s *Service) observe(ctx context.Context, e auth.Event) {
	if s.observer != nil {
		s.observer.Observe(ctx, e)
	}
}

// WithServiceErrorHandler sets how the handlers answer authentication and
// permission failures and back-end errors: no principal in the context
// (401), a credential that may not use the endpoint (403), the
// refresh or key store unreachable (503). Pass the Guard's
// [auth.Guard.WriteError] so that these look like the Guard's own.
// Default: [auth.JSONErrorHandler] with the realm of [WithServiceRealm].
// The refresh endpoint's own errors (a bad body, an invalid grant) are
// always written by the Service.
func WithServiceErrorHandler(h auth.ErrorHandler) ServiceOption {
	return func(s *Service) error {
		if h == nil {
			return fmt.Errorf("%w: nil error handler", ErrInvalidConfig)
		}
		s.errorHandler = h
		return nil
	}
}

// WithServiceRealm sets the realm of the WWW-Authenticate challenge of the
// refresh endpoint's 401, and of the default error handler. Default:
// "api". It may hold only printable ASCII without double quotes or
// backslashes.
func WithServiceRealm(realm string) ServiceOption {
	return func(s *Service) error {
		for i := 0; i < len(realm); i++ {
			if c := realm[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				return fmt.Errorf("%w: realm may hold only printable ASCII without double quotes or backslashes", ErrInvalidConfig)
			}
		}
		if realm != "" {
			s.realm = realm
		}
		return nil
	}
}

// NewService returns a Service that issues access tokens with issuer,
// keeps refresh tokens in refresh, records revoked tokens and sessions in
// revocations, and checks with keys that the API key behind a refresh
// token is still good. verifier is the Verifier that accepts the issuer's
// tokens; the Service uses it only to tell an access token sent to the
// refresh endpoint by its shape. For revocation to take effect at once,
// verifier must consult the same revocations ([WithRevocations]) and the
// same keys ([WithKeyChecker]). Every argument is required; NewService
// returns an error matching [ErrInvalidConfig] for a nil one or an
// invalid option.
func NewService(issuer *Issuer, verifier *Verifier, refresh RefreshStore, revocations Revocations, keys KeyChecker, opts ...ServiceOption) (*Service, error) {
	switch {
	case issuer == nil:
		return nil, fmt.Errorf("%w: nil Issuer", ErrInvalidConfig)
	case verifier == nil:
		return nil, fmt.Errorf("%w: nil Verifier", ErrInvalidConfig)
	case refresh == nil:
		return nil, fmt.Errorf("%w: nil RefreshStore", ErrInvalidConfig)
	case revocations == nil:
		return nil, fmt.Errorf("%w: nil Revocations", ErrInvalidConfig)
	case keys == nil:
		return nil, fmt.Errorf("%w: nil KeyChecker", ErrInvalidConfig)
	}
	s := &Service{
		issuer:      issuer,
		verifier:    verifier,
		refresh:     refresh,
		revocations: revocations,
		keys:        keys,
		lifetime:    DefaultRefreshLifetime,
		format:      defaultRefreshFormat,
		hasher:      &keystore.Hasher{},
		now:         time.Now,
		random:      rand.Reader,
		logger:      slog.Default(),
		realm:       "api",
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.random != rand.Reader {
		s.randMu = new(sync.Mutex)
	}
	if s.errorHandler == nil {
		s.errorHandler = auth.JSONErrorHandler(s.realm)
		s.logErrors = true
	}
	s.responses = newResponses(s.realm)
	return s, nil
}

// Pair is the result of an exchange or a refresh: the body of a 200 from
// the token and refresh endpoints (RFC 6749 §5.1).
//
// A Pair holds two secrets. Printing it with fmt or logging it with slog
// shows them masked (prefix, "…" and at most the last 4 characters);
// encoding it as JSON, as the handlers do, shows them in full.
type Pair struct {
	// AccessToken is the signed access token (a JWT).
	AccessToken string `json:"access_token"`
	// TokenType is always "Bearer".
	TokenType string `json:"token_type"`
	// ExpiresIn is the access token's lifetime in seconds.
	ExpiresIn int `json:"expires_in"`
	// RefreshToken is the single-use refresh token.
	RefreshToken string `json:"refresh_token"`
	// Scope is the space-separated, sorted list of the access token's
	// scopes.
	Scope string `json:"scope"`
}

// String shows p with its tokens masked.
func (p Pair) String() string {
	return fmt.Sprintf("token.Pair{AccessToken:%s TokenType:%s ExpiresIn:%d RefreshToken:%s Scope:%q}",
		maskToken(p.AccessToken), p.TokenType, p.ExpiresIn, maskToken(p.RefreshToken), p.Scope)
}

// GoString is like [Pair.String]: %#v masks the tokens too.
func (p Pair) GoString() string { return p.String() }

// Format implements [fmt.Formatter]: every verb prints [Pair.String].
func (p Pair) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// LogValue implements [slog.LogValuer]: the tokens masked, the rest as is.
func (p Pair) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_token", maskToken(p.AccessToken)),
		slog.String("token_type", p.TokenType),
		slog.Int("expires_in", p.ExpiresIn),
		slog.String("refresh_token", maskToken(p.RefreshToken)),
		slog.String("scope", p.Scope),
	)
}

// maskToken returns a form of tok that is safe to show: its prefix and
// separator when it has one (halfredrt_), "…", and at most its last 4
// base62 characters, none if tok is shorter than 16 bytes.
func maskToken(tok string) string {
	if tok == "" {
		return ""
	}
	prefix := ""
	if i := strings.IndexAny(tok, "_-"); i > 0 && i <= 32 && isLowerAlnum(tok[:i]) {
		prefix = tok[:i+1]
	}
	if len(tok) < 16 {
		return prefix + "…"
	}
	i := len(tok)
	for i > len(tok)-4 && isAlnum(tok[i-1]) {
		i--
	}
	return prefix + "…" + tok[i:]
}

func isLowerAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// The errors the Service returns for an exchange or a revocation the
// credential may not make.
var (
	errExchangeToken = &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: "Exchange an API key, not a token: access tokens cannot be exchanged for new tokens.",
	}
	errExchangeScope = &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: "The API key lacks the scope " + ExchangeScope + ", which exchanging it for tokens needs.",
		Scopes:  []string{ExchangeScope},
	}
	errKeyExpired = &auth.Error{Kind: auth.ErrInvalidCredential}
	errRevokeKey  = &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: "Only an access token can be revoked here: send the access token to revoke as the credential.",
	}
	errRevokeNoID = &auth.Error{
		Kind:    auth.ErrInsufficientScope,
		Message: "This access token has no token ID (jti), so it cannot be revoked.",
	}
)

// The reasons a refresh token is refused. Each matches [ErrInvalidGrant];
// errReused matches [ErrRefreshReused] too. errNotRefreshToken and
// errAccessTokenGrant are the malformed ones, which the refresh endpoint
// answers with 400 rather than 401.
var (
	errNotRefreshToken  = fmt.Errorf("%w: not a refresh token", ErrInvalidGrant)
	errAccessTokenGrant = fmt.Errorf("%w: an access token is not a refresh token", ErrInvalidGrant)
	errUnknownRefresh   = fmt.Errorf("%w: unknown refresh token", ErrInvalidGrant)
	errExpiredRefresh   = fmt.Errorf("%w: refresh token expired", ErrInvalidGrant)
	errRevokedRefresh   = fmt.Errorf("%w: session revoked", ErrInvalidGrant)
	errKeyGrant         = fmt.Errorf("%w: %w", ErrInvalidGrant, ErrKeyRevoked)
	errReused           = &reuseError{}
)

// reuseError is the error of a refresh with a spent token: it matches
// both ErrRefreshReused and ErrInvalidGrant.
type reuseError struct{}

func (*reuseError) Error() string {
	return "token: refresh token reused; its session is revoked"
}

func (*reuseError) Unwrap() []error { return []error{ErrRefreshReused, ErrInvalidGrant} }

// Exchange exchanges the API key p for a token pair, starting a session.
// p must be an API-key principal ([auth.MethodAPIKey], as
// keystore.Manager returns) carrying [ExchangeScope]. scopes narrows the
// access token to a subset of the key's scopes; nil or empty means all of
// them. The refresh token lasts until the session ends (see
// [WithRefreshLifetime]).
//
// It returns an [*auth.Error] of kind [auth.ErrInsufficientScope] (403) for
// an access-token principal, a key without ExchangeScope, or a scope the
// key does not carry (listing the missing ones in Scopes); of kind
// [auth.ErrInvalidCredential] for a key already expired; and of kind
// [auth.ErrUnavailable] if the refresh store failed.
func (s *Service) Exchange(ctx context.Context, p auth.Principal, scopes []string) (Pair, error) {
	if p.Method != auth.MethodAPIKey {
		return Pair{}, errExchangeToken
	}
	if p.KeyID == "" {
		return Pair{}, &auth.Error{Kind: auth.ErrInternal,
			Err: errors.New("token: exchange: API-key principal without a key ID")}
	}
	if !p.HasScope(ExchangeScope) {
		return Pair{}, errExchangeScope
	}
	now := s.now()
	if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
		return Pair{}, errKeyExpired
	}
	if len(scopes) == 0 {
		scopes = nil
	} else {
		scopes = slices.Compact(slices.Sorted(slices.Values(scopes)))
		if missing := p.MissingScopes(scopes...); missing != nil {
			msg := "The API key lacks the requested scope: "
			if len(missing) > 1 {
				msg = "The API key lacks the requested scopes: "
			}
			return Pair{}, &auth.Error{
				Kind:    auth.ErrInsufficientScope,
				Message: msg + strings.Join(missing, ", ") + ".",
				Scopes:  missing,
			}
		}
	}
	family, err := s.newFamilyID()
	if err != nil {
		return Pair{}, &auth.Error{Kind: auth.ErrInternal, Err: err}
	}
	end := now.Add(s.lifetime)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(end) {
		end = p.ExpiresAt
	}
	return s.issuePair(ctx, auth.EventTokenIssued, p.KeyID, p.Project, p.Scopes, scopes, family, end, now)
}

// Refresh spends refreshToken and returns a new pair in its session, with
// the session's scopes.
//
// Every refusal matches [ErrInvalidGrant]: a string that is not a refresh
// token of this Service (an access token, an API key); an unknown,
// expired or revoked refresh token; an API key that is no longer good
// (also [ErrKeyRevoked]). A refresh token that was already spent matches
// [ErrRefreshReused] too: the Service has then revoked its whole session
// (see the Service's documentation) and logged a warning. A back-end
// failure is an [*auth.Error] of kind [auth.ErrUnavailable].
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Pair, error) {
	if _, err := s.format.Parse(refreshToken); err != nil {
		if s.verifier.Match(refreshToken) {
			return Pair{}, errAccessTokenGrant
		}
		return Pair{}, errNotRefreshToken
	}
	now := s.now()
	rec, err := s.spend(ctx, refreshToken, now)
	switch {
	case errors.Is(err, ErrRefreshReused):
		if !now.Before(rec.ExpiresAt) {
			// The session is over: nothing of it works any more.
			return Pair{}, errExpiredRefresh
		}
		return Pair{}, s.reused(ctx, rec, refreshToken, now)
	case errors.Is(err, keystore.ErrNotFound):
		return Pair{}, errUnknownRefresh
	case err != nil:
		return Pair{}, s.unavailable(ctx, "spend refresh token", err)
	}
	if !now.Before(rec.ExpiresAt) {
		return Pair{}, errExpiredRefresh
	}
	if !rec.RevokedAt.IsZero() {
		return Pair{}, errRevokedRefresh
	}
	revoked, err := s.refresh.FamilyRevoked(ctx, rec.Family)
	if err != nil {
		return Pair{}, s.unavailable(ctx, "check session", err)
	}
	if revoked {
		return Pair{}, errRevokedRefresh
	}
	if err := s.keys.CheckKey(ctx, rec.KeyID); err != nil {
		if errors.Is(err, auth.ErrInvalidCredential) {
			return Pair{}, errKeyGrant
		}
		return Pair{}, s.unavailable(ctx, "check API key", err)
	}
	pair, err := s.issuePair(ctx, auth.EventTokenRefreshed, rec.KeyID, rec.Project, rec.Scopes, nil, rec.Family, rec.ExpiresAt, now)
	if errors.Is(err, auth.ErrInvalidCredential) {
		// The session ends within the second: the Issuer finds the key
		// expired.
		return Pair{}, errExpiredRefresh
	}
	return pair, err
}

// spend spends the refresh token, trying the hasher's previous peppers
// when the current one finds nothing.
func (s *Service) spend(ctx context.Context, tok string, now time.Time) (RefreshRecord, error) {
	var (
		rec RefreshRecord
		err error
	)
	for i := range s.hasher.Peppers() {
		rec, err = s.refresh.SpendRefresh(ctx, s.hasher.DigestAt(i, tok), now)
		if !errors.Is(err, keystore.ErrNotFound) {
			break
		}
	}
	return rec, err
}

// reused revokes the session of rec, whose token was presented again, and
// returns the error for the caller.
func (s *Service) reused(ctx context.Context, rec RefreshRecord, tok string, now time.Time) error {
	s.logger.LogAttrs(ctx, slog.LevelWarn, "keygate: refresh token reused; revoking its session",
		slog.String("session", rec.Family),
		slog.String("key_id", rec.KeyID),
		slog.String("project", rec.Project),
		slog.String("refresh_token", s.format.Hint(tok)),
		slog.Time("spent_at", rec.SpentAt))
	// No access token of the session outlives the session, and none is
	// issued in it once the family is revoked: the session entry need
	// only outlast those already issued.
	until := now.Add(s.issuer.Lifetime())
	if rec.ExpiresAt.Before(until) {
		until = rec.ExpiresAt
	}
	err := s.endSession(ctx, rec.Family, until, now)
	s.observe(ctx, auth.Event{Kind: auth.EventRefreshReuse, Time: now, KeyID: rec.KeyID, Project: rec.Project, Session: rec.Family, Err: err})
	if err != nil {
		return err
	}
	return errReused
}

// endSession revokes the session's refresh tokens, and its access tokens
// that expire by until.
func (s *Service) endSession(ctx context.Context, session string, until, now time.Time) error {
	if err := s.refresh.RevokeFamily(ctx, session, now); err != nil {
		return s.unavailable(ctx, "revoke session", err)
	}
	if err := s.revocations.Revoke(ctx, SessionRevocationPrefix+session, until); err != nil {
		return s.unavailable(ctx, "revoke session", err)
	}
	return nil
}

// Revoke revokes the access token p, the principal that presented it
// ([auth.MethodAccessToken], with a TokenID): the token fails verification
// at once, and so do its session's refresh tokens and every other access
// token of its session. It is idempotent.
//
// It returns an [*auth.Error] of kind [auth.ErrInsufficientScope] (403) for
// an API-key principal (revoke API keys with keystore.Manager) or a token
// without a jti, and of kind [auth.ErrUnavailable] if a back end failed.
func (s *Service) Revoke(ctx context.Context, p auth.Principal) error {
	if p.Method != auth.MethodAccessToken {
		return errRevokeKey
	}
	if p.TokenID == "" {
		return errRevokeNoID
	}
	now := s.now()
	exp := p.ExpiresAt
	if exp.IsZero() {
		exp = now.Add(s.issuer.Lifetime())
	}
	if err := s.revocations.Revoke(ctx, p.TokenID, exp); err != nil {
		return s.unavailable(ctx, "revoke token", err)
	}
	if p.Session != "" {
		until := now.Add(s.issuer.Lifetime())
		if exp.After(until) {
			until = exp
		}
		if err := s.endSession(ctx, p.Session, until, now); err != nil {
			return err
		}
	}
	s.observe(ctx, auth.Event{Kind: auth.EventTokenRevoked, Time: now, Method: p.Method, KeyID: p.KeyID,
		Project: p.Project, Subject: p.Subject, TokenID: p.TokenID, Session: p.Session})
	return nil
}

// issuePair issues an access token and a refresh token in session family
// for the API key keyID, whose scopes are keyScopes; scopes nil means all
// of them. Neither token outlives end. On success it reports an event of
// kind to the Observer.
func (s *Service) issuePair(ctx context.Context, kind auth.EventKind, keyID, project string, keyScopes, scopes []string, family string, end, now time.Time) (Pair, error) {
	p := auth.Principal{
		Method:    auth.MethodAPIKey,
		KeyID:     keyID,
		Project:   project,
		Scopes:    keyScopes,
		ExpiresAt: end,
	}
	at, claims, err := s.issuer.Issue(p, scopes, family)
	if err != nil {
		if asAuthError(err) {
			return Pair{}, err
		}
		return Pair{}, &auth.Error{Kind: auth.ErrInternal, Err: fmt.Errorf("token: issue access token: %w", err)}
	}
	key, err := s.format.Generate()
	if err != nil {
		return Pair{}, &auth.Error{Kind: auth.ErrInternal, Err: fmt.Errorf("token: generate refresh token: %w", err)}
	}
	rt := key.Plaintext()
	rec := RefreshRecord{
		Digest:    s.hasher.Digest(rt),
		Family:    family,
		KeyID:     keyID,
		Project:   project,
		Scopes:    strings.Fields(claims.Scope),
		IssuedAt:  now,
		ExpiresAt: end,
	}
	if err := s.refresh.CreateRefresh(ctx, rec); err != nil {
		return Pair{}, s.unavailable(ctx, "store refresh token", err)
	}
	s.observe(ctx, auth.Event{Kind: kind, Time: now, KeyID: keyID, Project: project, TokenID: claims.ID, Session: family})
	return Pair{
		AccessToken:  at,
		TokenType:    "Bearer",
		ExpiresIn:    expiresIn(&claims, now),
		RefreshToken: rt,
		Scope:        claims.Scope,
	}, nil
}

// expiresIn returns the access token's lifetime in whole seconds: exp -
// iat, or, without iat, the seconds from now to exp, rounded up.
func expiresIn(c *Claims, now time.Time) int {
	if c.ExpiresAt == nil {
		return 0
	}
	exp := c.ExpiresAt.Time
	if c.IssuedAt != nil {
		return int(exp.Unix() - c.IssuedAt.Unix())
	}
	d := exp.Sub(now)
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// asAuthError reports whether err carries an [*auth.Error], whose kind
// and message the handlers show as they are.
func asAuthError(err error) bool {
	var e *auth.Error
	return errors.As(err, &e)
}

// unavailable returns a back-end failure as an [*auth.Error] of kind
// [auth.ErrUnavailable]. The handlers log it when they answer it with the
// default error handler; a Guard's WriteError logs it itself.
func (s *Service) unavailable(_ context.Context, op string, err error) error {
	return &auth.Error{Kind: auth.ErrUnavailable, Err: fmt.Errorf("token: %s: %w", op, err)}
}

// newFamilyID returns a random session ID: 128 bits, base64url.
func (s *Service) newFamilyID() (string, error) {
	var b [familyIDBytes]byte
	if s.randMu != nil {
		s.randMu.Lock()
		defer s.randMu.Unlock()
	}
	if _, err := io.ReadFull(s.random, b[:]); err != nil {
		return "", fmt.Errorf("token: generate session ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
