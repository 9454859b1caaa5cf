package token

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a [RemoteKeySet].
const (
	// DefaultRemoteRefreshInterval is how often a [RemoteKeySet] fetches
	// its JWK Set in the background, and so the longest a key removed
	// from the set stays trusted.
	DefaultRemoteRefreshInterval = 60 * time.Second
	// DefaultMinRefetchInterval is the shortest time between two fetches
	// that a lookup of an unknown kid may trigger.
	DefaultMinRefetchInterval = 5 * time.Second
	// DefaultRemoteTimeout is the timeout of the default HTTP client of a
	// [RemoteKeySet], for the whole request including the body.
	DefaultRemoteTimeout = 10 * time.Second
	// MaxJWKSSize is the largest JWK Set a [RemoteKeySet] reads, in bytes
	// (1 MiB). A larger response is a failed fetch.
	MaxJWKSSize = 1 << 20
)

// remoteMaxRSABits caps the RSA modulus of a remote key: verification
// cost grows with it. The floor is [MinRSAKeyBits], as for our own keys.
const remoteMaxRSABits = 8192

// Errors of fetching a remote JWK Set. They never match [ErrUnknownKID],
// so a verifier answers them as a back-end failure (503).
var (
	errNoUsableKeys = errors.New("token: remote JWK Set has no usable keys")
	errNoKeysYet    = errors.New("token: remote JWK Set not fetched yet")
	errJWKSRedirect = errors.New("token: remote JWK Set: redirects are not followed")
	errJWKSTooLarge = errors.New("token: remote JWK Set larger than 1 MiB")
)

// RemoteKeySet is a [KeySource] that serves the keys of an identity
// provider's JWK Set (RFC 7517), fetched over HTTP(S) from a URL, so that
// a [Verifier] accepts the provider's tokens.
//
// Create one with [NewRemoteKeySet], which fetches the set once, and
// [RemoteKeySet.Close] it when done: it runs one goroutine that fetches
// the set again every refresh interval ([WithRefreshInterval], default
// 60 s), so that a key removed from the set stops being trusted within
// that time and a key rotated in is found without any request having to
// wait. A lookup of a kid the set does not hold triggers a fetch too, at
// most one per [WithMinRefetchInterval] (default 5 s): a newly published
// key is found by the first lookup after the provider publishes it
// (subject to that limit), while a flood of tokens with random kids costs
// the provider at most one request per interval. Lookups that arrive
// while a fetch is running wait for that fetch instead of starting
// another. Lookups of known kids never wait for the network: they read an
// immutable map through an atomic pointer.
//
// Only asymmetric signature keys are used, each with exactly one
// algorithm:
//   - kty "RSA" with a modulus of 2048 to 8192 bits and an odd public
//     exponent of at least 3 that fits in 31 bits: RS256;
//   - kty "EC" with crv "P-256" and 32-byte x and y on the curve: ES256;
//   - kty "OKP" with crv "Ed25519" and a 32-byte x: EdDSA.
//
// A JWK without "alg" gets the algorithm its type implies; a JWK whose
// "alg" names another algorithm (RS384, PS256, HS256, Ed25519, ...) or
// does not fit its type is skipped. So are: keys with a "use" other than
// "sig" or "key_ops" without "verify"; "oct" (symmetric) keys, which a
// remote set must never provide; keys of any other type or curve; keys
// that carry private key material ("d" and the like: such a key is
// compromised); keys whose members are not strings or appear twice; and
// keys without a "kid" or with one over 256 bytes — a kid is required,
// since tokens find their key by it. When two usable keys share a kid,
// both are skipped: the token's kid cannot tell which one is meant.
// "x5c", "x5t", "x5u" and "jku" members are ignored and never fetched.
// Skipped keys are logged.
//
// A failed fetch — a network error, a status other than 200, a body over
// [MaxJWKSSize], JSON that is not a JWK Set, or a set without a single
// usable key — keeps the keys of the last good fetch and is logged. A
// lookup of an unknown kid then fails with [ErrUnknownKID] as usual; only
// while no fetch has ever succeeded (see [WithLazyFetch]) does it fail
// with the fetch error, which a [Verifier] answers with 503. The keys of
// the last good fetch stay trusted while the provider is unreachable,
// however long that lasts.
//
// The zero RemoteKeySet is not usable. A RemoteKeySet is safe for
// concurrent use.
type RemoteKeySet struct {
	url        string
	logURL     string // url without its password
	client     *http.Client
	transport  *http.Transport // the default client's own transport; nil with WithHTTPClient
	refresh    time.Duration
	minRefetch time.Duration
	now        func() time.Time
	logger     *slog.Logger

	keys atomic.Pointer[remoteKeys] // nil until the first good fetch

	mu        sync.Mutex
	pending   *remoteFetch // the fetch running or about to run; nil if none
	lastFetch time.Time    // when the last fetch started, by s.now
	lastErr   error        // the result of the last fetch
	closed    bool

	bodySum [sha256.Size]byte // of the body of the last good fetch; only the fetcher touches it

	ctx       context.Context // cancelled by Close: aborts a running fetch
	cancel    context.CancelFunc
	kick      chan struct{} // a lookup asks the goroutine for a fetch
	stop      chan struct{}
	done      chan struct{} // closed when the goroutine has returned
	closeOnce sync.Once
}

var _ KeySource = (*RemoteKeySet)(nil)

// remoteKeys is one immutable snapshot of the usable keys of the set.
type remoteKeys struct {
	byKID map[string]VerificationKey
}

// remoteFetch is one fetch that lookups of unknown kids wait for.
type remoteFetch struct {
	done chan struct{} // closed when the fetch has finished
}

// RemoteOption configures a [RemoteKeySet] in [NewRemoteKeySet]. An
// invalid option makes NewRemoteKeySet return an error matching
// [ErrInvalidConfig].
type RemoteOption func(*remoteConfig)

type remoteConfig struct {
	client     *http.Client
	refresh    time.Duration
	minRefetch time.Duration
	now        func() time.Time
	logger     *slog.Logger
	lazy       bool
	err        error
}

func (c *remoteConfig) fail(format string, args ...any) {
	c.err = errors.Join(c.err, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
}

// WithHTTPClient sets the HTTP client that fetches the JWK Set. The
// default client has a timeout of 10 s ([DefaultRemoteTimeout]) and
// follows no redirects at all, so that the set always comes from the
// configured host (a 3xx answer is a failed fetch: configure the final
// URL). A client given here is used as it is, with its own timeout and
// redirect policy; give it a timeout. c must not be nil.
func WithHTTPClient(c *http.Client) RemoteOption {
	return func(rc *remoteConfig) {
		if c == nil {
			rc.fail("WithHTTPClient: nil client")
			return
		}
		rc.client = c
	}
}

// WithRefreshInterval sets how often the set is fetched in the
// background, which bounds how long a key removed from the set stays
// trusted. The default is 60 s ([DefaultRemoteRefreshInterval]); d must
// be positive. Any fetch, including one triggered by an unknown kid,
// restarts the interval.
func WithRefreshInterval(d time.Duration) RemoteOption {
	return func(rc *remoteConfig) {
		if d <= 0 {
			rc.fail("WithRefreshInterval: %v is not positive", d)
			return
		}
		rc.refresh = d
	}
}

// WithMinRefetchInterval sets the shortest time between the start of a
// fetch and the start of a fetch triggered by a lookup of an unknown kid:
// a flood of tokens with random kids costs the provider at most one
// request per interval. The default is 5 s ([DefaultMinRefetchInterval]);
// d must be positive. It does not delay the background refresh.
func WithMinRefetchInterval(d time.Duration) RemoteOption {
	return func(rc *remoteConfig) {
		if d <= 0 {
			rc.fail("WithMinRefetchInterval: %v is not positive", d)
			return
		}
		rc.minRefetch = d
	}
}

// WithRemoteClock sets the clock that [WithMinRefetchInterval] is measured
// with. The default is [time.Now]; now must not be nil. The background
// refresh runs on a real timer, whatever the clock.
func WithRemoteClock(now func() time.Time) RemoteOption {
	return func(rc *remoteConfig) {
		if now == nil {
			rc.fail("WithRemoteClock: nil clock")
			return
		}
		rc.now = now
	}
}

// WithRemoteLogger sets the logger that reports failed fetches (at
// [slog.LevelWarn]), skipped keys (at [slog.LevelWarn], once per distinct
// JWK Set) and changes of the set (at [slog.LevelInfo]). A nil logger,
// the default, means [slog.Default] at the time of logging. Entries hold
// the URL without its password, the error, and kids; never key material.
func WithRemoteLogger(l *slog.Logger) RemoteOption {
	return func(rc *remoteConfig) {
		rc.logger = l
	}
}

// WithLazyFetch makes [NewRemoteKeySet] return without fetching the set:
// the goroutine fetches it at once in the background, so that a service
// can start while the provider is unreachable. Until a fetch has
// succeeded, lookups fail with the fetch error (a [Verifier] answers 503),
// not with [ErrUnknownKID]. The default is to fetch in NewRemoteKeySet and
// fail if that fails.
func WithLazyFetch() RemoteOption {
	return func(rc *remoteConfig) {
		rc.lazy = true
	}
}

// NewRemoteKeySet returns a [RemoteKeySet] serving the JWK Set at rawURL,
// an absolute http or https URL (use https outside tests: the set decides
// which tokens are trusted). Unless [WithLazyFetch] is given, it fetches
// the set once with ctx and returns an error if that fails, so that a
// wrong URL is found at start. ctx bounds only that first fetch; later
// fetches run until [RemoteKeySet.Close].
//
// The set starts one goroutine; call Close to stop it.
func NewRemoteKeySet(ctx context.Context, rawURL string, opts ...RemoteOption) (*RemoteKeySet, error) {
	c := remoteConfig{
		refresh:    DefaultRemoteRefreshInterval,
		minRefetch: DefaultMinRefetchInterval,
		now:        time.Now,
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		c.fail("remote JWK Set URL does not parse")
	case u.Scheme != "http" && u.Scheme != "https":
		c.fail("remote JWK Set URL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		c.fail("remote JWK Set URL %q: no host", u.Redacted())
	}
	for _, o := range opts {
		if o == nil {
			c.fail("nil RemoteOption")
			continue
		}
		o(&c)
	}
	if c.err != nil {
		return nil, c.err
	}
	var own *http.Transport
	if c.client == nil {
		own = http.DefaultTransport.(*http.Transport).Clone()
		c.client = &http.Client{
			Transport: own,
			Timeout:   DefaultRemoteTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errJWKSRedirect
			},
		}
	}
	s := &RemoteKeySet{
		transport:  own,
		url:        rawURL,
		logURL:     u.Redacted(),
		client:     c.client,
		refresh:    c.refresh,
		minRefetch: c.minRefetch,
		now:        c.now,
		logger:     c.logger,
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	first := c.refresh
	if c.lazy {
		first = 0
	} else {
		s.lastFetch = s.now()
		if err := s.update(ctx); err != nil {
			if own != nil {
				own.CloseIdleConnections()
			}
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run(first)
	return s, nil
}

// VerificationKey returns the key with this kid. A kid the set does not
// hold triggers a fetch of the set, unless one started less than the
// minimum refetch interval ago, and the lookup waits for that fetch (or
// for ctx); if the kid is still unknown, the error matches
// [ErrUnknownKID]. While no fetch has ever succeeded the error is the
// fetch error instead, a back-end failure. If ctx ends first, the error
// wraps ctx.Err().
func (s *RemoteKeySet) VerificationKey(ctx context.Context, kid string) (VerificationKey, error) {
	if k, ok := s.lookup(kid); ok {
		return k, nil
	}
	s.mu.Lock()
	f := s.pending
	if f == nil {
		if s.closed || (!s.lastFetch.IsZero() && s.now().Sub(s.lastFetch) < s.minRefetch) {
			err := s.lastErr
			s.mu.Unlock()
			return VerificationKey{}, s.unknown(err)
		}
		f = &remoteFetch{done: make(chan struct{})}
		s.pending = f
		s.lastFetch = s.now()
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return VerificationKey{}, fmt.Errorf("token: remote JWK Set: %w", ctx.Err())
	}
	if k, ok := s.lookup(kid); ok {
		return k, nil
	}
	s.mu.Lock()
	err := s.lastErr
	s.mu.Unlock()
	return VerificationKey{}, s.unknown(err)
}

func (s *RemoteKeySet) lookup(kid string) (VerificationKey, bool) {
	m := s.keys.Load()
	if m == nil {
		return VerificationKey{}, false
	}
	k, ok := m.byKID[kid]
	return k, ok
}

// unknown is the error for a kid that is not in the set, given the result
// of the last fetch: ErrUnknownKID once the set has had keys, the fetch
// error (a back-end failure) before.
func (s *RemoteKeySet) unknown(lastErr error) error {
	if s.keys.Load() != nil {
		return ErrUnknownKID
	}
	if lastErr == nil {
		lastErr = errNoKeysYet
	}
	return lastErr
}

// Close stops the background goroutine, aborts a running fetch, closes
// the idle connections of the default HTTP client (not those of a client
// given with [WithHTTPClient]), and returns when the goroutine has
// returned. Lookups after Close still find the keys of the last good fetch
// but never trigger a fetch. Close is idempotent and safe to call
// concurrently; it returns nil.
func (s *RemoteKeySet) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.cancel()
		<-s.done
		if s.transport != nil {
			s.transport.CloseIdleConnections()
		}
	})
	return nil
}

// run is the one goroutine of the set: it fetches the set when the timer
// fires and when a lookup asks for a fetch.
func (s *RemoteKeySet) run(first time.Duration) {
	defer close(s.done)
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		tick := false
		select {
		case <-s.stop:
			s.mu.Lock()
			if f := s.pending; f != nil {
				s.pending = nil
				close(f.done)
			}
			s.mu.Unlock()
			return
		case <-timer.C:
			tick = true
		case <-s.kick:
		}
		s.mu.Lock()
		f := s.pending
		if f == nil {
			if !tick {
				// A stale kick: its fetch was done on a tick.
				s.mu.Unlock()
				continue
			}
			f = &remoteFetch{done: make(chan struct{})}
			s.pending = f
			s.lastFetch = s.now()
		}
		s.mu.Unlock()

		_ = s.update(s.ctx)

		s.mu.Lock()
		s.pending = nil
		s.mu.Unlock()
		close(f.done)
		timer.Reset(s.refresh)
	}
}

// update fetches the set and, if it holds usable keys, makes them the
// current keys. It records and logs the outcome. Only one update runs at a
// time: the constructor's, then the goroutine's.
func (s *RemoteKeySet) update(ctx context.Context) error {
	err := s.fetchAndStore(ctx)
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		s.log().LogAttrs(context.Background(), slog.LevelWarn, "token: remote JWK Set fetch failed; keeping the previous keys",
			slog.String("url", s.logURL), slog.String("error", err.Error()))
	}
	return err
}

func (s *RemoteKeySet) fetchAndStore(ctx context.Context) error {
	body, err := s.fetch(ctx)
	if err != nil {
		return fmt.Errorf("token: remote JWK Set %s: %w", s.logURL, err)
	}
	sum := sha256.Sum256(body)
	if s.keys.Load() != nil && sum == s.bodySum {
		return nil // unchanged
	}
	keys, skipped, err := parseJWKS(body)
	if err == nil && len(keys) == 0 {
		err = errNoUsableKeys
	}
	log := s.log()
	for _, sk := range skipped {
		log.LogAttrs(context.Background(), slog.LevelWarn, "token: remote JWK skipped",
			slog.String("url", s.logURL), slog.String("kid", sk.kid), slog.String("reason", sk.reason))
	}
	if err != nil {
		return fmt.Errorf("token: remote JWK Set %s: %w", s.logURL, err)
	}
	s.keys.Store(&remoteKeys{byKID: keys})
	s.bodySum = sum
	log.LogAttrs(context.Background(), slog.LevelInfo, "token: remote JWK Set loaded",
		slog.String("url", s.logURL), slog.Int("keys", len(keys)), slog.Int("skipped", len(skipped)))
	return nil
}

// fetch GETs the set and returns its body.
func (s *RemoteKeySet) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.ContentLength > MaxJWKSSize {
		return nil, errJWKSTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxJWKSSize {
		return nil, errJWKSTooLarge
	}
	return body, nil
}

func (s *RemoteKeySet) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}

// skippedKey says why a JWK of a set was not used.
type skippedKey struct {
	kid    string // as found, cut to 64 bytes; may be empty
	reason string
}

// parseJWKS returns the usable keys of a JWK Set by kid, and the keys it
// skipped. It fails only if body is not a JSON object with a "keys"
// array.
func parseJWKS(body []byte) (map[string]VerificationKey, []skippedKey, error) {
	top, err := decodeJWKObject(body)
	if err != nil {
		return nil, nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	rawKeys, ok := top["keys"]
	if !ok {
		return nil, nil, errors.New(`not a JWK Set: no "keys" member`)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(rawKeys, &list); err != nil || list == nil {
		return nil, nil, errors.New(`not a JWK Set: "keys" is not an array`)
	}
	keys := make(map[string]VerificationKey, len(list))
	dup := make(map[string]bool)
	var skipped []skippedKey
	for _, raw := range list {
		k, kid, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, skippedKey{kid: jwkShortKID(kid), reason: err.Error()})
			continue
		}
		if _, seen := keys[kid]; seen || dup[kid] {
			// Skip this key and, the first time, the one seen before.
			n := 1
			if !dup[kid] {
				delete(keys, kid)
				dup[kid] = true
				n = 2
			}
			for range n {
				skipped = append(skipped, skippedKey{kid: jwkShortKID(kid), reason: "duplicate kid: every key with it is skipped"})
			}
			continue
		}
		keys[kid] = k
	}
	return keys, skipped, nil
}

func jwkShortKID(kid string) string {
	if len(kid) > 64 {
		return kid[:64] + "…"
	}
	return kid
}

// jwkPrivateMembers are the JWK members of private and symmetric keys
// (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
var jwkPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseJWK returns the verification key of one JWK, and its kid (also
// when the key is not usable, for the log).
func parseJWK(raw json.RawMessage) (VerificationKey, string, error) {
	m, err := decodeJWKObject(raw)
	if err != nil {
		return VerificationKey{}, "", fmt.Errorf("not a JSON object without duplicate members: %v", err)
	}
	str := func(name string) (string, error) {
		v, ok := m[name]
		if !ok {
			return "", nil
		}
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return "", fmt.Errorf("%q is not a string", name)
		}
		return s, nil
	}
	kid, err := str("kid")
	if err != nil {
		return VerificationKey{}, "", err
	}
	if kid == "" {
		return VerificationKey{}, "", errors.New("no kid")
	}
	if len(kid) > MaxKIDLength {
		return VerificationKey{}, kid, errors.New("kid longer than 256 bytes")
	}
	kty, err := str("kty")
	if err != nil {
		return VerificationKey{}, kid, err
	}
	if kty == "oct" {
		return VerificationKey{}, kid, errors.New(`symmetric ("oct") keys are never accepted from a remote set`)
	}
	for _, p := range jwkPrivateMembers {
		if _, ok := m[p]; ok {
			return VerificationKey{}, kid, fmt.Errorf("holds private key material (%q): the key is compromised", p)
		}
	}
	use, err := str("use")
	if err != nil {
		return VerificationKey{}, kid, err
	}
	if _, ok := m["use"]; ok && use != "sig" {
		return VerificationKey{}, kid, fmt.Errorf("use %q is not sig", cutRemote(use))
	}
	if ops, ok := m["key_ops"]; ok {
		var list []string
		if err := json.Unmarshal(ops, &list); err != nil {
			return VerificationKey{}, kid, errors.New(`"key_ops" is not an array of strings`)
		}
		verify := false
		for _, op := range list {
			verify = verify || op == "verify"
		}
		if !verify {
			return VerificationKey{}, kid, errors.New(`"key_ops" lacks "verify"`)
		}
	}
	alg, err := str("alg")
	if err != nil {
		return VerificationKey{}, kid, err
	}
	crv, err := str("crv")
	if err != nil {
		return VerificationKey{}, kid, err
	}
	b64 := func(name string) ([]byte, error) {
		s, err := str(name)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, fmt.Errorf("no %q", name)
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not unpadded base64url", name)
		}
		return b, nil
	}
	want := ""
	var key any
	switch kty {
	case "RSA":
		want = RS256
		nb, err := b64("n")
		if err != nil {
			return VerificationKey{}, kid, err
		}
		eb, err := b64("e")
		if err != nil {
			return VerificationKey{}, kid, err
		}
		n := new(big.Int).SetBytes(nb)
		if bits := n.BitLen(); bits < MinRSAKeyBits || bits > remoteMaxRSABits {
			return VerificationKey{}, kid, fmt.Errorf("RSA modulus of %d bits: 2048 to 8192 are accepted", bits)
		}
		if n.Bit(0) == 0 {
			return VerificationKey{}, kid, errors.New("RSA modulus is even")
		}
		eb = bytes.TrimLeft(eb, "\x00")
		if len(eb) > 4 {
			return VerificationKey{}, kid, errors.New("RSA exponent out of range")
		}
		var e int64
		for _, b := range eb {
			e = e<<8 | int64(b)
		}
		if e < 3 || e > 1<<31-1 || e%2 == 0 {
			return VerificationKey{}, kid, errors.New("RSA exponent out of range")
		}
		key = &rsa.PublicKey{N: n, E: int(e)}
	case "EC":
		want = ES256
		if crv != "P-256" {
			return VerificationKey{}, kid, fmt.Errorf("EC curve %q is not supported (only P-256)", cutRemote(crv))
		}
		x, err := b64("x")
		if err != nil {
			return VerificationKey{}, kid, err
		}
		y, err := b64("y")
		if err != nil {
			return VerificationKey{}, kid, err
		}
		if len(x) != 32 || len(y) != 32 {
			return VerificationKey{}, kid, errors.New("P-256 coordinates must be 32 bytes each")
		}
		point := make([]byte, 0, 65)
		point = append(append(append(point, 4), x...), y...)
		if _, err := ecdh.P256().NewPublicKey(point); err != nil {
			return VerificationKey{}, kid, errors.New("EC point is not on P-256")
		}
		key = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	case "OKP":
		want = EdDSA
		if crv != "Ed25519" {
			return VerificationKey{}, kid, fmt.Errorf("OKP curve %q is not supported (only Ed25519)", cutRemote(crv))
		}
		x, err := b64("x")
		if err != nil {
			return VerificationKey{}, kid, err
		}
		if len(x) != ed25519.PublicKeySize {
			return VerificationKey{}, kid, errors.New("Ed25519 key must be 32 bytes")
		}
		key = ed25519.PublicKey(x)
	default:
		return VerificationKey{}, kid, fmt.Errorf("key type %q is not supported", cutRemote(kty))
	}
	if alg != "" && alg != want {
		return VerificationKey{}, kid, fmt.Errorf("alg %q is not supported for kty %q (only %s)", cutRemote(alg), kty, want)
	}
	return VerificationKey{KID: kid, Alg: want, Key: key}, kid, nil
}

// cutRemote shortens a value from a remote document for an error message.
func cutRemote(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// decodeJWKObject decodes one JSON object into its members, with names
// matched exactly (encoding/json would match "KID" to a field kid), and
// fails on a duplicate member name or on anything after the object.
func decodeJWKObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("not an object")
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", cutRemote(name))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return m, nil
}
