package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
)

// Defaults and limits of a [Verifier].
const (
	// DefaultLeeway is the clock skew a Verifier tolerates on exp, nbf and
	// iat by default.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest leeway [WithLeeway] accepts.
	MaxLeeway = 60 * time.Second
	// DefaultMaxTokenSize is the longest token a Verifier reads, in bytes.
	DefaultMaxTokenSize = 8192
	// DefaultCacheSize is the number of verified tokens a Verifier
	// remembers by default.
	DefaultCacheSize = 10000
	// maxMaxTokenSize bounds [WithMaxTokenSize].
	maxMaxTokenSize = 1 << 20
	// maxCacheSize bounds [WithCache].
	maxCacheSize = 1 << 24
)

// The algorithms, as indexes into Verifier.algs and verifyMethods.
const (
	algEdDSA = iota
	algES256
	algRS256
	algHS256
	numAlgs
)

func algIndex(alg string) int {
	switch alg {
	case EdDSA:
		return algEdDSA
	case ES256:
		return algES256
	case RS256:
		return algRS256
	case HS256:
		return algHS256
	}
	return -1
}

// verifyMethods are golang-jwt's signing methods, which check the
// signatures.
var verifyMethods = [numAlgs]jwt.SigningMethod{
	algEdDSA: jwt.SigningMethodEdDSA,
	algES256: jwt.SigningMethodES256,
	algRS256: jwt.SigningMethodRS256,
	algHS256: jwt.SigningMethodHS256,
}

// The rejections: one prebuilt error per reason, so that rejecting a token
// does not allocate, and every one has the same (empty) message, so that
// their HTTP responses are byte-identical.
var (
	rejMalformed  = rejection(ErrMalformed)
	rejTooLarge   = rejection(ErrTooLarge)
	rejAlgorithm  = rejection(ErrAlgorithm)
	rejUnknownKID = rejection(ErrUnknownKID)
	rejSignature  = rejection(ErrSignature)
	rejHeader     = rejection(ErrHeader)
	rejDuplicate  = rejection(ErrDuplicateClaim)
	rejExpired    = rejection(ErrExpired)
	rejNotYet     = rejection(ErrNotYetValid)
	rejLifetime   = rejection(ErrLifetime)
	rejIssuer     = rejection(ErrIssuer)
	rejAudience   = rejection(ErrAudience)
	rejRevoked    = rejection(ErrRevoked)
	rejKeyRevoked = rejection(ErrKeyRevoked)
)

func rejection(reason error) *auth.Error {
	return &auth.Error{Kind: auth.ErrInvalidCredential, Err: reason}
}

func parseRejection(e parseErr) *auth.Error {
	if e == parseDuplicate {
		return rejDuplicate
	}
	return rejMalformed
}

// errZeroVerifier answers for a Verifier not made by NewVerifier.
var errZeroVerifier = &auth.Error{Kind: auth.ErrUnavailable, Err: fmt.Errorf("%w: Verifier not made by NewVerifier", ErrInvalidConfig)}

// unavailable is the error of a back end that failed: 503, never "invalid".
func unavailable(what string, err error) *auth.Error {
	return &auth.Error{Kind: auth.ErrUnavailable, Err: fmt.Errorf("token: %s: %w", what, err)}
}

type verifierOption func(*Verifier) error

func (o verifierOption) applyVerifier(v *Verifier) error { return o(v) }

// Verifier verifies access tokens: keygate's own (from an [Issuer]) or an
// external identity provider's. It implements [auth.Authenticator] and
// [auth.Matcher], so it plugs into the auth middleware, alone or beside
// an API-key authenticator under [auth.Dispatch].
//
// Create one with [NewVerifier]; the zero Verifier, which has no keys,
// answers every token with an [auth.ErrUnavailable] error (503), never
// with a principal. A Verifier is safe for concurrent use and starts no
// goroutines.
type Verifier struct {
	keys        KeySource
	issuers     []string
	audiences   []string
	leeway      time.Duration
	maxLifetime time.Duration
	algs        [numAlgs]bool
	maxSize     int
	revocations Revocations
	keyChecker  KeyChecker
	external    bool // WithExternalTokens: ignore client_id, project and sid
	cacheSize   int
	cache       *tokenCache
	now         func() time.Time
	method      auth.Method
	typ         string // "" = not checked
	appTyp      string // "application/" + typ
	scratch     sync.Pool

	// onSignature, when set (by tests, before use), is called before each
	// signature check.
	onSignature func()
}

// WithExpectedIssuer sets the issuers whose tokens are accepted: the iss
// claim must equal one of them exactly (no case folding, no trailing-slash
// normalisation). Required, with at least one non-empty issuer; calling
// it again adds issuers.
func WithExpectedIssuer(iss ...string) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if len(iss) == 0 || slices.Contains(iss, "") {
			return fmt.Errorf("%w: WithExpectedIssuer needs non-empty issuers", ErrInvalidConfig)
		}
		v.issuers = append(v.issuers, iss...)
		return nil
	})
}

// WithExpectedAudience sets the audiences a token must be meant for: its
// aud claim, a string or an array of strings, must contain one of them
// exactly. Required, with at least one non-empty audience (usually one:
// this service's identifier); calling it again adds audiences.
func WithExpectedAudience(aud ...string) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if len(aud) == 0 || slices.Contains(aud, "") {
			return fmt.Errorf("%w: WithExpectedAudience needs non-empty audiences", ErrInvalidConfig)
		}
		v.audiences = append(v.audiences, aud...)
		return nil
	})
}

// WithLeeway sets the clock skew tolerated on exp, nbf and iat. Default:
// [DefaultLeeway] (30 s); at most [MaxLeeway] (60 s); 0 is allowed.
func WithLeeway(d time.Duration) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if d < 0 || d > MaxLeeway {
			return fmt.Errorf("%w: leeway %v outside 0 to %v", ErrInvalidConfig, d, MaxLeeway)
		}
		v.leeway = d
		return nil
	})
}

// WithAlgorithms sets the algorithms accepted in the alg header. Default:
// [EdDSA], [ES256] and [RS256]; [HS256] is accepted only when listed here.
// Each must be one of those four ("none" never is). Whatever the list, a
// token's alg must also equal the algorithm of the key its kid names.
func WithAlgorithms(algs ...string) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if len(algs) == 0 {
			return fmt.Errorf("%w: WithAlgorithms needs at least one algorithm", ErrInvalidConfig)
		}
		var set [numAlgs]bool
		for _, a := range algs {
			i := algIndex(a)
			if i < 0 {
				return fmt.Errorf("%w: unsupported algorithm %q", ErrInvalidConfig, a)
			}
			set[i] = true
		}
		v.algs = set
		return nil
	})
}

// WithMaxTokenSize sets the longest token accepted, in bytes; a longer
// one fails with [ErrTooLarge] before any decoding. Default:
// [DefaultMaxTokenSize] (8 KiB). It must be between 256 bytes and 1 MiB.
func WithMaxTokenSize(n int) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if n < 256 || n > maxMaxTokenSize {
			return fmt.Errorf("%w: maximum token size %d outside 256 to %d", ErrInvalidConfig, n, maxMaxTokenSize)
		}
		v.maxSize = n
		return nil
	})
}

// WithRevocations sets where revoked tokens are recorded. A token fails
// with [ErrRevoked] when its jti is revoked, or, if it has a sid claim,
// when "sid:"+sid is. With revocations set, a token without a jti fails
// as [ErrMalformed], since it could never be revoked. Default: none.
func WithRevocations(r Revocations) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if r == nil {
			return fmt.Errorf("%w: nil Revocations", ErrInvalidConfig)
		}
		v.revocations = r
		return nil
	})
}

// WithKeyChecker sets the check of the API key a token was exchanged
// from: on every request, k.CheckKey(client_id) must return nil, so that
// revoking, rotating, disabling or expiring the key ends its tokens at
// once (keystore's Manager implements [KeyChecker]). With a KeyChecker
// set, a token without client_id fails as [ErrMalformed], and the
// principal's KeyID is the client_id. Default: none, and KeyID is empty
// (the tokens of an external identity provider name no API key).
func WithKeyChecker(k KeyChecker) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if k == nil {
			return fmt.Errorf("%w: nil KeyChecker", ErrInvalidConfig)
		}
		v.keyChecker = k
		return nil
	})
}

// WithCache sets how many verified tokens the Verifier remembers, so that
// a client presenting the same token again skips the signature and claim
// checks (but never the revocation and API-key checks). Default:
// [DefaultCacheSize] (10,000); 0 turns the cache off. The package
// documentation describes what the cache keeps and what it never skips.
func WithCache(entries int) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if entries < 0 || entries > maxCacheSize {
			return fmt.Errorf("%w: cache size %d outside 0 to %d", ErrInvalidConfig, entries, maxCacheSize)
		}
		v.cacheSize = entries
		return nil
	})
}

// WithVerifierClock sets the clock tokens are checked against. Default:
// [time.Now].
func WithVerifierClock(now func() time.Time) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		v.now = now
		return nil
	})
}

// WithMethod sets the Method of the principals [Verifier.Authenticate]
// returns. Default: [auth.MethodAccessToken].
func WithMethod(m auth.Method) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		if m == "" {
			return fmt.Errorf("%w: empty Method", ErrInvalidConfig)
		}
		v.method = m
		return nil
	})
}

// WithTokenType sets the typ header a token must carry, compared without
// regard to case, with or without the "application/" prefix (RFC 7515
// §4.1.9). Default: [AccessTokenType], "at+jwt" (RFC 9068), which a
// refresh token, an ID token (typ "JWT" or none) or any other JWT lacks.
// "" turns the check off, for identity providers that set no typ.
func WithTokenType(typ string) VerifierOption {
	return verifierOption(func(v *Verifier) error {
		for i := 0; i < len(typ); i++ {
			if c := typ[i]; c <= 0x20 || c >= 0x7f {
				return fmt.Errorf("%w: token type %q is not a media type", ErrInvalidConfig, typ)
			}
		}
		v.typ = typ
		return nil
	})
}

// WithExternalTokens declares that the tokens come from another issuer, an
// external identity provider: their client_id, project and sid claims are
// not this service's, so the principal's KeyID, Project and Session stay
// empty, no "sid:" revocation is looked up, and [WithKeyChecker] is
// refused. Without it (the default), those claims are trusted as this
// service's own [Issuer] wrote them. Every verification rule applies
// either way.
func WithExternalTokens() VerifierOption {
	return verifierOption(func(v *Verifier) error {
		v.external = true
		return nil
	})
}

// NewVerifier returns a Verifier that checks tokens against the keys of
// keys: an [Issuer]'s [KeySet], or a [RemoteKeySet]. The expected issuer
// and audience are required options ([WithExpectedIssuer],
// [WithExpectedAudience]). It returns an error matching
// [ErrInvalidConfig] for a nil KeySource or an invalid option.
func NewVerifier(keys KeySource, opts ...VerifierOption) (*Verifier, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: nil KeySource", ErrInvalidConfig)
	}
	v := &Verifier{
		keys:        keys,
		leeway:      DefaultLeeway,
		maxLifetime: DefaultMaxLifetime,
		maxSize:     DefaultMaxTokenSize,
		cacheSize:   DefaultCacheSize,
		now:         time.Now,
		method:      auth.MethodAccessToken,
		typ:         AccessTokenType,
	}
	v.algs[algEdDSA], v.algs[algES256], v.algs[algRS256] = true, true, true
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil VerifierOption", ErrInvalidConfig)
		}
		if err := o.applyVerifier(v); err != nil {
			return nil, err
		}
	}
	if len(v.issuers) == 0 {
		return nil, fmt.Errorf("%w: a Verifier needs WithExpectedIssuer", ErrInvalidConfig)
	}
	if v.external && v.keyChecker != nil {
		return nil, fmt.Errorf("%w: WithKeyChecker checks this service's API keys, which an external token does not name (WithExternalTokens)", ErrInvalidConfig)
	}
	if len(v.audiences) == 0 {
		return nil, fmt.Errorf("%w: a Verifier needs WithExpectedAudience", ErrInvalidConfig)
	}
	if v.typ != "" {
		v.appTyp = "application/" + v.typ
	}
	if v.cacheSize > 0 {
		v.cache = newTokenCache(v.cacheSize)
	}
	size := v.maxSize
	v.scratch.New = func() any {
		return &scratch{buf: make([]byte, size), p: jsonParser{names: make([]uint64, 0, 32)}}
	}
	return v, nil
}

// scratch is the per-call working memory of a verification, pooled.
type scratch struct {
	buf []byte // the token, then its decoded parts
	p   jsonParser
}

// Verify checks token and returns its claims. The checks, in order:
//
//  1. size: at most the maximum size ([WithMaxTokenSize]), before any
//     decoding ([ErrTooLarge]);
//  2. shape: three parts of strict base64url, no padding, canonical
//     ([ErrMalformed]);
//  3. header: a JSON object without duplicate names in any case
//     ([ErrDuplicateClaim]); alg allowed ([ErrAlgorithm]; "none" never
//     is); typ as configured ([ErrHeader]); no crit header at all, since
//     this verifier understands no extension ([ErrHeader]); a kid of 1 to
//     [MaxKIDLength] bytes ([ErrUnknownKID]; [ErrMalformed] if it is not
//     a string). jku, x5u, jwk and x5c are ignored: never fetched, never
//     trusted;
//  4. key: the key named by kid ([ErrUnknownKID]), whose algorithm must be
//     the alg header ([ErrAlgorithm]);
//  5. signature, checked by golang-jwt ([ErrSignature]);
//  6. claims: a JSON object without duplicate names in any case; exp, nbf
//     and iat numbers above 0 and below 2^53 (fractions allowed), and
//     every known claim of its type ([ErrMalformed]); exp present and not
//     past ([ErrExpired]); nbf and iat not in the future
//     ([ErrNotYetValid]), all with the leeway; iss one of the expected
//     issuers ([ErrIssuer]); aud containing an expected audience
//     ([ErrAudience]); exp - iat at most the maximum lifetime
//     ([ErrLifetime]); scope a space-separated list of scope tokens;
//  7. revocation of the jti and the sid ([ErrRevoked]);
//  8. the API key named by client_id ([ErrKeyRevoked]).
//
// A token found in the cache skips steps 2 to 6 (it passed them before,
// byte for byte, has not expired since, and its kid still names the key
// that verified it) but never 7 and 8.
//
// Every rejection is an [*auth.Error] of kind [auth.ErrInvalidCredential]
// whose cause is one of the sentinels above, so errors.Is matches both;
// it carries no message. A KeySource, Revocations or KeyChecker failure
// is an [*auth.Error] of kind [auth.ErrUnavailable]. The claims returned
// are the caller's own copy.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	e, err := v.check(ctx, token)
	if err != nil {
		return nil, err
	}
	if v.cache == nil {
		return &e.claims, nil // e is not shared
	}
	return e.cloneClaims(), nil
}

// Authenticate implements [auth.Authenticator]: it verifies the token as
// [Verifier.Verify] does and returns its principal: Method
// [auth.MethodAccessToken] (see [WithMethod]), KeyID the client_id when a
// [KeyChecker] is set (see [WithKeyChecker]), Subject the sub claim,
// Project, Scopes (the scope claim split at spaces), ExpiresAt (exp),
// TokenID (jti), Session (sid), and Hint, a masked form of the token
// ("…" and its last 4 characters). With [WithExternalTokens], Project and
// Session are left empty.
//
// Every invalid token gives an [*auth.Error] of kind
// [auth.ErrInvalidCredential] with no message, so that every 401 is the
// same byte for byte whatever the reason; a back-end failure gives kind
// [auth.ErrUnavailable] (503). On a cache hit it does not allocate beyond
// what the Revocations and the KeyChecker do. The principal's Scopes
// slice is shared: treat it as read only.
func (v *Verifier) Authenticate(ctx context.Context, credential string) (auth.Principal, error) {
	e, err := v.check(ctx, credential)
	if err != nil {
		return auth.Principal{}, err
	}
	return e.principal, nil
}

// Match implements [auth.Matcher]: it reports whether credential has the
// shape of a compact JWS, three parts separated by exactly two dots, the
// first starting with "eyJ" (the base64url of `{"`). It does not allocate.
func (v *Verifier) Match(credential string) bool {
	if len(credential) < 5 || credential[0] != 'e' || credential[1] != 'y' || credential[2] != 'J' {
		return false
	}
	return strings.Count(credential, ".") == 2
}

var (
	_ auth.Authenticator = (*Verifier)(nil)
	_ auth.Matcher       = (*Verifier)(nil)
)

// check verifies token, through the cache, and returns its entry.
func (v *Verifier) check(ctx context.Context, token string) (*entry, error) {
	if v == nil || v.keys == nil {
		return nil, errZeroVerifier
	}
	if len(token) > v.maxSize {
		return nil, rejTooLarge
	}
	sc := v.scratch.Get().(*scratch)
	defer v.scratch.Put(sc)
	now := v.now()
	var digest [sha256.Size]byte
	if v.cache != nil {
		n := copy(sc.buf, token)
		digest = sha256.Sum256(sc.buf[:n])
		if e := v.cache.get(&digest, now.UnixNano()); e != nil && v.sameKey(ctx, e) {
			if err := v.recheck(ctx, e); err != nil {
				return nil, err
			}
			return e, nil
		}
	}
	e, err := v.verify(ctx, sc, token, now)
	if err != nil {
		return nil, err
	}
	if n := now.UnixNano(); v.cache != nil && n < e.expires {
		v.cache.put(&digest, e, n)
	}
	return e, nil
}

// verify runs every check on token (steps 2 to 8 of Verify).
func (v *Verifier) verify(ctx context.Context, sc *scratch, token string, now time.Time) (*entry, error) {
	// Shape: exactly two dots, non-empty header and payload.
	d1 := strings.IndexByte(token, '.')
	if d1 <= 0 {
		return nil, rejMalformed
	}
	d2 := strings.IndexByte(token[d1+1:], '.')
	if d2 <= 0 {
		return nil, rejMalformed
	}
	d2 += d1 + 1
	if strings.IndexByte(token[d2+1:], '.') >= 0 {
		return nil, rejMalformed
	}
	buf := sc.buf
	hn, ok := b64Decode(buf, token[:d1])
	if !ok {
		return nil, rejMalformed
	}
	pn, ok := b64Decode(buf[hn:], token[d1+1:d2])
	if !ok {
		return nil, rejMalformed
	}
	sn, ok := b64Decode(buf[hn+pn:], token[d2+1:])
	if !ok {
		return nil, rejMalformed
	}

	// Header.
	h, perr := parseHeader(&sc.p, string(buf[:hn]))
	if perr != parseOK {
		return nil, parseRejection(perr)
	}
	ai := algIndex(h.alg)
	if ai < 0 || !v.algs[ai] {
		return nil, rejAlgorithm
	}
	if v.typ != "" && !(h.hasTyp && (strings.EqualFold(h.typ, v.typ) || strings.EqualFold(h.typ, v.appTyp))) {
		return nil, rejHeader
	}
	if h.crit {
		return nil, rejHeader
	}
	if h.kid == "" || len(h.kid) > MaxKIDLength {
		return nil, rejUnknownKID
	}

	// Key and signature.
	key, err := v.keys.VerificationKey(ctx, h.kid)
	if err != nil {
		if err == ErrUnknownKID || errors.Is(err, ErrUnknownKID) {
			return nil, rejUnknownKID
		}
		return nil, unavailable("find verification key", err)
	}
	if key.Alg != h.alg {
		return nil, rejAlgorithm
	}
	if !usableKey(key.Alg, key.Key) {
		return nil, unavailable("find verification key", fmt.Errorf("%w: the key source returned an unusable %s key", ErrWeakKey, key.Alg))
	}
	if v.onSignature != nil {
		v.onSignature()
	}
	if err := verifyMethods[ai].Verify(token[:d2], buf[hn+pn:hn+pn+sn], key.Key); err != nil {
		return nil, rejSignature
	}

	// Claims.
	e := new(entry)
	if perr := parseClaims(&sc.p, string(buf[hn:hn+pn]), e); perr != parseOK {
		return nil, parseRejection(perr)
	}
	if rej := v.checkClaims(e, now); rej != nil {
		return nil, rej
	}
	e.principal = auth.Principal{
		Method:    v.method,
		Subject:   e.claims.Subject,
		Scopes:    splitScope(e.claims.Scope),
		ExpiresAt: e.claims.ExpiresAt.Time,
		TokenID:   e.claims.ID,
		Hint:      tokenHint(token),
	}
	if !v.external {
		e.principal.Project = e.claims.Project
		e.principal.Session = e.claims.Session
		if e.claims.Session != "" {
			e.sidKey = SessionRevocationPrefix + e.claims.Session
		}
	}
	if v.keyChecker != nil {
		e.principal.KeyID = e.claims.ClientID
	}
	e.expires = e.claims.ExpiresAt.UnixNano()
	e.kid, e.key = h.kid, key
	if err := v.recheck(ctx, e); err != nil {
		return nil, err
	}
	return e, nil
}

// checkClaims checks the parsed claims against the clock and the
// configuration.
func (v *Verifier) checkClaims(e *entry, now time.Time) *auth.Error {
	c := &e.claims
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Add(v.leeway)) {
		return rejExpired
	}
	late := now.Add(v.leeway)
	if c.NotBefore != nil && c.NotBefore.After(late) {
		return rejNotYet
	}
	start := now
	if c.IssuedAt != nil {
		if c.IssuedAt.After(late) {
			return rejNotYet
		}
		start = c.IssuedAt.Time
	}
	if !slices.Contains(v.issuers, c.Issuer) {
		return rejIssuer
	}
	if !v.audienceOK(c.Audience) {
		return rejAudience
	}
	if c.ExpiresAt.Sub(start) > v.maxLifetime {
		return rejLifetime
	}
	if !validScope(c.Scope) {
		return rejMalformed
	}
	if v.revocations != nil && c.ID == "" {
		return rejMalformed
	}
	if v.keyChecker != nil && c.ClientID == "" {
		return rejMalformed
	}
	return nil
}

func (v *Verifier) audienceOK(aud []string) bool {
	for _, a := range aud {
		if slices.Contains(v.audiences, a) {
			return true
		}
	}
	return false
}

// sameKey reports whether the key source still returns, for a cached
// token's kid, the key that verified it. A key removed or replaced since
// turns a cache hit into a miss. It does not allocate for a [KeySet].
func (v *Verifier) sameKey(ctx context.Context, e *entry) bool {
	k, err := v.keys.VerificationKey(ctx, e.kid)
	if err != nil || k.Alg != e.key.Alg {
		return false
	}
	switch a := k.Key.(type) {
	case ed25519.PublicKey:
		b, ok := e.key.Key.(ed25519.PublicKey)
		return ok && bytes.Equal(a, b)
	case []byte:
		b, ok := e.key.Key.([]byte)
		return ok && bytes.Equal(a, b)
	case *ecdsa.PublicKey:
		b, ok := e.key.Key.(*ecdsa.PublicKey)
		return ok && (a == b || a.Equal(b))
	case *rsa.PublicKey:
		b, ok := e.key.Key.(*rsa.PublicKey)
		return ok && (a == b || a.Equal(b))
	}
	return false
}

// recheck runs the checks that a cached token must pass on every use: the
// revocation of its jti and sid, and its API key.
func (v *Verifier) recheck(ctx context.Context, e *entry) error {
	if v.revocations != nil {
		revoked, err := v.revocations.IsRevoked(ctx, e.claims.ID)
		if err != nil {
			return unavailable("check token revocation", err)
		}
		if !revoked && e.sidKey != "" {
			if revoked, err = v.revocations.IsRevoked(ctx, e.sidKey); err != nil {
				return unavailable("check session revocation", err)
			}
		}
		if revoked {
			return rejRevoked
		}
	}
	if v.keyChecker != nil {
		if err := v.keyChecker.CheckKey(ctx, e.claims.ClientID); err != nil {
			if !errors.Is(err, auth.ErrUnavailable) && errors.Is(err, auth.ErrInvalidCredential) {
				return rejKeyRevoked
			}
			return unavailable("check API key", err)
		}
	}
	return nil
}

// validScope reports whether scope is a space-separated list of RFC 6749
// scope tokens (extra spaces allowed), or empty.
func validScope(scope string) bool {
	for i := 0; i < len(scope); i++ {
		if c := scope[i]; c != ' ' && (c < 0x21 || c > 0x7e || c == '"' || c == '\\') {
			return false
		}
	}
	return true
}

// splitScope splits a valid scope claim at its spaces.
func splitScope(scope string) []string {
	if scope == "" {
		return nil
	}
	return strings.Fields(scope)
}

// tokenHint is the masked form of a token: "…" and its last 4 characters.
func tokenHint(token string) string {
	if len(token) < 16 {
		return "…"
	}
	return "…" + token[len(token)-4:]
}

// jwsHeader holds the header parameters the Verifier reads.
type jwsHeader struct {
	alg, kid, typ string
	hasTyp        bool
	crit          bool
}

// knownName is a registered name and its folded form.
type knownName struct{ exact, folded string }

func knownNames(names ...string) []knownName {
	k := make([]knownName, len(names))
	for i, n := range names {
		k[i] = knownName{n, string(foldName(nil, n))}
	}
	return k
}

// headerNames are the registered JWS header parameters (RFC 7515 §4.1,
// RFC 7797, RFC 7516): a header name that folds to one of them without
// being it is refused.
var headerNames = knownNames("alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "b64", "zip", "enc")

// claimNames are the claims the Verifier reads.
var claimNames = knownNames("iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "project", "sid")

// isVariant reports whether the member name just read folds to a known
// name without being it: a case variant that encoding/json would take for
// the registered name.
func (p *jsonParser) isVariant(name string, known []knownName) bool {
	for _, k := range known {
		if string(p.fold) == k.folded && name != k.exact {
			return true
		}
	}
	return false
}

// parseHeader parses a JWS header.
func parseHeader(p *jsonParser, s string) (jwsHeader, parseErr) {
	var h jwsHeader
	p.reset(s)
	if e := p.beginTop(); e != parseOK {
		return h, e
	}
	for {
		name, more, e := p.nextTop()
		if e != parseOK {
			return h, e
		}
		if !more {
			return h, parseOK
		}
		ok := true
		switch name {
		case "alg":
			h.alg, ok = p.stringValue()
		case "kid":
			h.kid, ok = p.stringValue()
		case "typ":
			h.typ, ok = p.stringValue()
			h.hasTyp = true
		case "crit":
			h.crit = true
			e = p.skip()
		default:
			if p.isVariant(name, headerNames) {
				return h, parseDuplicate
			}
			e = p.skip()
		}
		if !ok {
			return h, parseMalformed
		}
		if e != parseOK {
			return h, e
		}
	}
}

// parseClaims parses the claims of a token into e.
func parseClaims(p *jsonParser, s string, e *entry) parseErr {
	c := &e.claims
	p.reset(s)
	if pe := p.beginTop(); pe != parseOK {
		return pe
	}
	for {
		name, more, pe := p.nextTop()
		if pe != parseOK {
			return pe
		}
		if !more {
			return parseOK
		}
		ok := true
		switch name {
		case "iss":
			c.Issuer, ok = p.stringValue()
		case "sub":
			c.Subject, ok = p.stringValue()
		case "aud":
			c.Audience, ok = p.audience(e.aud[:0])
		case "exp":
			ok = p.dateValue(&e.exp, &c.ExpiresAt)
		case "nbf":
			ok = p.dateValue(&e.nbf, &c.NotBefore)
		case "iat":
			ok = p.dateValue(&e.iat, &c.IssuedAt)
		case "jti":
			c.ID, ok = p.stringValue()
		case "client_id":
			c.ClientID, ok = p.stringValue()
		case "scope":
			c.Scope, ok = p.stringValue()
		case "project":
			c.Project, ok = p.stringValue()
		case "sid":
			c.Session, ok = p.stringValue()
		default:
			if p.isVariant(name, claimNames) {
				return parseDuplicate
			}
			pe = p.skip()
		}
		if !ok {
			return parseMalformed
		}
		if pe != parseOK {
			return pe
		}
	}
}

// dateValue reads a NumericDate into d and points *dst at it.
func (p *jsonParser) dateValue(d *jwt.NumericDate, dst **jwt.NumericDate) bool {
	sec, nsec, ok := p.numericDateValue()
	if !ok {
		return false
	}
	d.Time = time.Unix(sec, nsec)
	*dst = d
	return true
}

// audience reads an aud claim: a string, or an array of strings (which
// may be empty), appended to dst.
func (p *jsonParser) audience(dst []string) ([]string, bool) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		a, ok := p.str()
		return append(dst, a), ok
	}
	if p.i >= len(p.s) || p.s[p.i] != '[' {
		return nil, false
	}
	p.i++
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return dst, true
	}
	for {
		a, ok := p.stringValue()
		if !ok {
			return nil, false
		}
		dst = append(dst, a)
		p.ws()
		if p.i >= len(p.s) {
			return nil, false
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			p.ws()
		case ']':
			p.i++
			return dst, true
		default:
			return nil, false
		}
	}
}

// String describes the Verifier by its expected issuers and audiences,
// never its keys.
func (v *Verifier) String() string {
	if v == nil {
		return "token.Verifier(nil)"
	}
	return fmt.Sprintf("token.Verifier{Issuers:%q Audiences:%q}", v.issuers, v.audiences)
}

// Format writes String for every verb, so that no formatting of a Verifier
// prints the keys (HS256 secrets) of its KeySource.
func (v *Verifier) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, v.String()) }
