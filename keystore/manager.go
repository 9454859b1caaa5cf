package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/auth"
)

// DefaultLastUsedInterval is how often, at most, the [Manager] writes a
// key's last-used time to the store.
const DefaultLastUsedInterval = time.Minute

// idRandomLength is the number of random base62 characters in a key ID
// (about 95 bits: IDs are public, they only need to be unique).
const idRandomLength = 16

// idPrefix starts every key ID the Manager makes.
const idPrefix = "key_"

// Manager joins a [Format], a [Hasher], a [Store] and a clock into the
// operations a service needs: issue a key, verify a presented key, list,
// revoke and rotate keys. It also implements [auth.Authenticator], so it
// plugs straight into the auth middleware.
//
// A Manager is safe for concurrent use. It starts no goroutines.
type Manager struct {
	store    Store
	toucher  Toucher
	format   *Format
	hasher   *Hasher
	now      func() time.Time
	idRand   io.Reader
	interval time.Duration
	logger   *slog.Logger
	observer auth.Observer // nil: report nothing

	// rejections maps each way a presented key can fail to the prebuilt
	// auth error for it, so that rejecting a key does not allocate.
	rejections []rejection

	touched [touchShards]touchShard
}

type rejection struct {
	cause error
	exact error // the Format's own error for cause, if it has one
	err   *auth.Error
}

// ManagerOption configures a [Manager].
type ManagerOption func(*Manager) error

// WithFormat sets the key format. Default: [DefaultFormat], keys of the shape
// halfred_ followed by 28 base62 characters.
func WithFormat(f *Format) ManagerOption {
	return func(m *Manager) error {
		if f == nil {
			return fmt.Errorf("%w: nil Format", ErrInvalidSpec)
		}
		m.format = f
		return nil
	}
}

// WithHasher sets how keys are hashed. Default: plain SHA-256, with no
// pepper. Production services should pass a Hasher made with a pepper kept
// outside the database, see [NewHasher].
func WithHasher(h *Hasher) ManagerOption {
	return func(m *Manager) error {
		if h == nil {
			return fmt.Errorf("%w: nil Hasher", ErrInvalidSpec)
		}
		m.hasher = h
		return nil
	}
}

// WithClock sets the clock the Manager reads for creation, expiry,
// revocation and last-used times. Default: the wall clock, read as
// [time.Now] at most once a second and advanced in between by the cheaper
// monotonic clock, so it never strays from time.Now by more than a second
// of running time.
func WithClock(now func() time.Time) ManagerOption {
	return func(m *Manager) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidSpec)
		}
		m.now = now
		return nil
	}
}

// WithIDRandom sets the source of randomness for key IDs. Default:
// [crypto/rand.Reader]. It must be safe for concurrent use. Keys themselves
// take their randomness from the [Format].
func WithIDRandom(r io.Reader) ManagerOption {
	return func(m *Manager) error {
		if r == nil {
			return fmt.Errorf("%w: nil reader", ErrInvalidSpec)
		}
		m.idRand = r
		return nil
	}
}

// WithLastUsedInterval sets how often, at most, the Manager records that a
// key was used: one store write per key per interval, however many requests
// the key makes. Default: [DefaultLastUsedInterval] (one minute). Zero or a
// negative interval turns last-used tracking off. Tracking needs a store
// that implements [Toucher]; with any other store it is off.
//
// A service that records usage with a [UsageRecorder] should pass
// WithLastUsedInterval(0): the recorder writes last-used times too, with
// its counters, in batches, off the request path, while the Manager's
// tracking writes synchronously, in the request that authenticates.
func WithLastUsedInterval(d time.Duration) ManagerOption {
	return func(m *Manager) error {
		m.interval = d
		return nil
	}
}

// WithLogger sets where the Manager reports failures that do not fail the
// request, such as a last-used write that did not go through. Default:
// [slog.Default]. The Manager logs key IDs, never keys.
func WithLogger(l *slog.Logger) ManagerOption {
	return func(m *Manager) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidSpec)
		}
		m.logger = l
		return nil
	}
}

// WithObserver sets the [auth.Observer] the Manager reports key lifecycle
// events to: [auth.EventKeyCreated] from [Manager.Issue],
// [auth.EventKeyRotated] from [Manager.Rotate] and [auth.EventKeyRevoked]
// from [Manager.Revoke], each after the store has made the change, never
// for a call that failed. Default: none. Verify, Authenticate and CheckKey
// report nothing: the request path is the Guard's to report
// ([auth.EventAuthenticated], [auth.EventAuthFailed]). The Observer is
// called on the caller's goroutine, with the caller's context. A nil o
// means none.
func WithObserver(o auth.Observer) ManagerOption {
	return func(m *Manager) error {
		m.observer = o
		return nil
	}
}

// observe reports e to the Manager's Observer, if it has one.
func (m *Manager) observe(ctx context.Context, e auth.Event) {
	if m.observer != nil {
		m.observer.Observe(ctx, e)
	}
}

// NewManager returns a Manager over store. It returns an error if store is
// nil or an option is invalid.
func NewManager(store Store, opts ...ManagerOption) (*Manager, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidSpec)
	}
	m := &Manager{
		store:    store,
		format:   DefaultFormat(),
		idRand:   rand.Reader,
		interval: DefaultLastUsedInterval,
		logger:   slog.Default(),
	}
	for _, opt := range opts {
		if err := opt(m); err != nil {
			return nil, err
		}
	}
	if m.now == nil {
		m.now = new(wallClock).now
	}
	if m.hasher == nil {
		h, err := NewHasher(nil)
		if err != nil {
			return nil, err
		}
		m.hasher = h
	}
	if t, ok := store.(Toucher); ok && m.interval > 0 {
		m.toucher = t
	}
	for i := range m.touched {
		m.touched[i].last = make(map[string]int64)
	}
	m.rejections = m.buildRejections()
	return m, nil
}

// buildRejections prepares the auth errors for every way a presented key can
// fail. Unknown, revoked, expired and disabled keys share one generic
// message, so their HTTP responses are byte-identical; a malformed key gets a
// message that says what a key looks like, which reveals nothing about the
// store.
func (m *Manager) buildRejections() []rejection {
	f := m.format.or()
	p := f.Prefix()
	malformed := func(reason, exact error, msg string) rejection {
		return rejection{reason, exact, &auth.Error{
			Kind:    auth.ErrInvalidCredential,
			Message: msg,
			Err:     fmt.Errorf("%w: %w", ErrMalformedKey, reason),
		}}
	}
	invalid := func(reason error) rejection {
		return rejection{reason, nil, &auth.Error{Kind: auth.ErrInvalidCredential, Err: reason}}
	}
	return []rejection{
		malformed(ErrPrefix, f.errPrefix, fmt.Sprintf("Malformed API key: API keys start with %s.", p)),
		malformed(ErrLength, f.errLength, fmt.Sprintf("Malformed API key: API keys are %d characters long and start with %s.", m.format.Len(), p)),
		malformed(ErrCharset, f.errChars, "Malformed API key: it contains a character that is not a letter or a digit. Check for spaces, quotes or line breaks copied with it."),
		malformed(ErrChecksum, f.errSum, "Malformed API key: its checksum does not match, so it was mistyped or cut short. Copy the whole key again."),
		malformed(ErrMalformedKey, nil, "Malformed API key."),
		invalid(ErrUnknownKey),
		invalid(ErrRevoked),
		invalid(ErrExpired),
		invalid(ErrDisabled),
	}
}

// Format returns the Manager's key format.
func (m *Manager) Format() *Format { return m.format }

// KeySpec describes a key to issue.
type KeySpec struct {
	// Project is the project the key belongs to. Required.
	Project string
	// Name is a label for the key's owner. Optional.
	Name string
	// Scopes are the permissions the key carries. Each must be a scope
	// token as in RFC 6749 §3.3: printable ASCII without spaces, quotes or
	// backslashes. Duplicates are removed.
	Scopes []string
	// ExpiresAt is when the key stops working; zero means never. It must
	// be in the future.
	ExpiresAt time.Time
	// Metadata holds the owner's annotations. It is copied.
	Metadata map[string]string
	// RateLimit is the key's own rate limit, overriding the Guard's
	// limit for API keys; the zero Limit (the default) means "use the
	// Guard's". Otherwise it must pass [auth.Limit.Validate] (a Name of
	// at most 64 letters, digits, '_', '-' or '.', an RFC 9110 token, or
	// empty for "default"; Burst not negative; a Period of at least a
	// millisecond) and have positive Requests.
	RateLimit auth.Limit
}

// Issue creates a key and stores its record. The returned [Key] is the only
// time the plaintext exists outside the caller's own copy: the store keeps
// only its digest. It returns an error matching [ErrInvalidSpec] for a bad
// spec; any other error means randomness or the store failed.
func (m *Manager) Issue(ctx context.Context, spec KeySpec) (Key, Record, error) {
	now := m.now()
	if spec.Project == "" {
		return Key{}, Record{}, fmt.Errorf("%w: a key needs a project", ErrInvalidSpec)
	}
	scopes, err := normalizeScopes(spec.Scopes)
	if err != nil {
		return Key{}, Record{}, err
	}
	if !spec.ExpiresAt.IsZero() && !spec.ExpiresAt.After(now) {
		return Key{}, Record{}, fmt.Errorf("%w: the expiry time is not in the future", ErrInvalidSpec)
	}
	if err := validRateLimit(spec.RateLimit); err != nil {
		return Key{}, Record{}, err
	}
	key, rec, err := m.newRecord(now)
	if err != nil {
		return Key{}, Record{}, err
	}
	rec.Project = spec.Project
	rec.Name = spec.Name
	rec.Scopes = scopes
	rec.ExpiresAt = spec.ExpiresAt
	rec.Metadata = maps.Clone(spec.Metadata)
	rec.RateLimit = spec.RateLimit
	if err := m.store.Create(ctx, rec); err != nil {
		return Key{}, Record{}, fmt.Errorf("keystore: store key %s: %w", rec.ID, err)
	}
	m.observe(ctx, auth.Event{Kind: auth.EventKeyCreated, Time: now, KeyID: rec.ID, Project: rec.Project})
	return key, rec, nil
}

// newRecord generates a key and a record with its ID, hint, digest and
// creation time.
func (m *Manager) newRecord(now time.Time) (Key, Record, error) {
	key, err := m.format.Generate()
	if err != nil {
		return Key{}, Record{}, err
	}
	id, err := m.newID()
	if err != nil {
		return Key{}, Record{}, err
	}
	return key, Record{
		ID:        id,
		Hint:      key.Hint(),
		Digest:    m.hasher.Digest(key.Plaintext()),
		CreatedAt: now,
	}, nil
}

func (m *Manager) newID() (string, error) {
	var buf [len(idPrefix) + idRandomLength]byte
	copy(buf[:], idPrefix)
	if err := fillBase62(m.idRand, buf[len(idPrefix):]); err != nil {
		return "", fmt.Errorf("keystore: key ID: %w", err)
	}
	return string(buf[:]), nil
}

// normalizeScopes checks that every scope is a scope token (RFC 6749 §3.3)
// and returns a sorted copy without duplicates.
func normalizeScopes(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !validScope(s) {
			return nil, fmt.Errorf("%w: scope %q is not a scope token (printable ASCII, no spaces, quotes or backslashes)", ErrInvalidSpec, s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// validScope reports whether s is a scope a key may carry: an RFC 6749
// scope token ([auth.ValidScope]) of at most 128 bytes.
func validScope(s string) bool {
	return len(s) <= 128 && auth.ValidScope(s)
}

// Verify checks a presented key: its format (offline, before any store
// call), then its digest in the store, then whether it is revoked, disabled
// or expired. It returns the key's record, or:
//   - a [Format.Parse] error (matching [ErrMalformedKey]);
//   - [ErrUnknownKey], [ErrRevoked], [ErrDisabled] or [ErrExpired];
//   - any other error: the store failed, and the key's status is unknown.
//
// Lookups are by digest only, so the time Verify takes does not depend on how
// much of a key is right. When the [Hasher] has previous peppers, a key not
// found under the current pepper is looked up under each previous one.
//
// Verify records the key's use at most once per last-used interval (see
// [WithLastUsedInterval]); a failed last-used write is logged, not returned.
// The returned record may share Scopes and Metadata with the store: treat it
// as read-only.
func (m *Manager) Verify(ctx context.Context, presented string) (Record, error) {
	var rec Record
	if err := m.verify(ctx, presented, &rec); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// verify is Verify into *rec, which the request path reuses so that the
// record is not copied from call to call.
func (m *Manager) verify(ctx context.Context, presented string, rec *Record) error {
	if _, err := m.format.Parse(presented); err != nil {
		return err
	}
	if err := m.lookup(ctx, presented, rec); err != nil {
		return err
	}
	now := m.now()
	switch {
	case rec.RevokedBy(now):
		return ErrRevoked
	case rec.Disabled:
		return ErrDisabled
	case rec.ExpiredBy(now):
		return ErrExpired
	}
	m.touch(ctx, rec, now)
	return nil
}

func (m *Manager) lookup(ctx context.Context, presented string, rec *Record) error {
	for i := range m.hasher.Peppers() {
		d := m.hasher.DigestAt(i, presented)
		r, err := m.store.LookupDigest(ctx, d)
		if err == nil {
			if !r.Digest.Equal(d) {
				return errors.New("keystore: store returned a record for another digest")
			}
			*rec = r
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("keystore: look up key: %w", err)
		}
	}
	return ErrUnknownKey
}

// Authenticate implements [auth.Authenticator]: it verifies an API key and
// returns its principal, with Method [auth.MethodAPIKey]. Failures are
// [*auth.Error] values: a malformed key is [auth.ErrInvalidCredential] with a
// message saying what a key looks like; unknown, revoked, expired and
// disabled keys are [auth.ErrInvalidCredential] with no message (so their
// responses are identical) and the keystore sentinel as the cause; a store
// failure is [auth.ErrUnavailable].
//
// The Manager does not implement [auth.Matcher]: under [auth.Dispatch] it is
// the catch-all that explains what an API key looks like.
func (m *Manager) Authenticate(ctx context.Context, credential string) (auth.Principal, error) {
	var rec Record
	if err := m.verify(ctx, credential, &rec); err != nil {
		return auth.Principal{}, m.authError(err)
	}
	return auth.Principal{
		Method:    auth.MethodAPIKey,
		KeyID:     rec.ID,
		Project:   rec.Project,
		Scopes:    rec.Scopes,
		ExpiresAt: rec.ExpiresAt,
		Hint:      rec.Hint,
		RateLimit: rec.RateLimit,
	}, nil
}

func (m *Manager) authError(err error) error {
	// The errors verify returns are these values themselves; the
	// rejections' types are comparable, so == cannot panic.
	for _, r := range m.rejections {
		if err == r.cause || (r.exact != nil && err == r.exact) {
			return r.err
		}
	}
	for _, r := range m.rejections {
		if errors.Is(err, r.cause) {
			return r.err
		}
	}
	return &auth.Error{Kind: auth.ErrUnavailable, Err: err}
}

var _ auth.Authenticator = (*Manager)(nil)

// Get returns the record of key id, or an error matching [ErrNotFound].
func (m *Manager) Get(ctx context.Context, id string) (Record, error) {
	return m.store.Get(ctx, id)
}

// List returns the project's keys, oldest first, revoked ones included. The
// records carry hints, never keys or digests.
func (m *Manager) List(ctx context.Context, project string) ([]Record, error) {
	return m.store.List(ctx, project)
}

// Revoke revokes key id now and returns its record. It is idempotent: a
// revoked key stays revoked at its first revocation time. It returns an error
// matching [ErrNotFound] if there is no such key. With a store shared by
// several instances, the key stops working on every instance at its next
// lookup.
//
// With an Observer ([WithObserver]) it reports [auth.EventKeyRevoked] when
// this call revoked the key, that is when the revocation time the store
// returns is this call's (to the microsecond, the precision stores keep).
// Revoking a key that was already revoked reports nothing, so the audit
// log holds one revocation per key; revoking a key that a rotation left
// working for a grace period is a revocation, and is reported. So is a
// revocation the store wrote but returned an error for, with the record
// (such as keystore/redisfeed's ErrNotPublished).
func (m *Manager) Revoke(ctx context.Context, id string) (Record, error) {
	now := m.now()
	rec, err := m.store.Revoke(ctx, id, now)
	// A store may return the record with an error when the revocation is
	// written but something after it failed (keystore/redisfeed's
	// ErrNotPublished: other instances were not told). The key is revoked
	// all the same, and a retry would find it revoked already: report it
	// now or never.
	if rec.ID != "" && m.observer != nil && sameInstant(rec.RevokedAt, now) {
		m.observer.Observe(ctx, auth.Event{Kind: auth.EventKeyRevoked, Time: now, KeyID: rec.ID, Project: rec.Project})
	}
	return rec, err
}

// sameInstant reports whether a store returned t for the time at, which it
// may have cut to whole microseconds.
func sameInstant(t, at time.Time) bool {
	return t.Equal(at) || t.Equal(at.Truncate(time.Microsecond)) || t.Equal(at.Round(time.Microsecond))
}

// Rotate revokes key id and issues its replacement in one atomic step ("revoke
// key & get a new one"). The new key has the old one's project, name, scopes,
// metadata, rate limit and disabled flag; if the old key had a lifetime, the
// new one gets the same lifetime from now. Its usage counters start at zero.
//
// grace is how long the old key keeps working; zero (the usual choice)
// revokes it at once. It returns an error matching [ErrNotFound] if there is
// no such key, [ErrAlreadyRevoked] if it is revoked or already rotated, and
// [ErrInvalidSpec] for a negative grace.
func (m *Manager) Rotate(ctx context.Context, id string, grace time.Duration) (Key, Record, error) {
	if grace < 0 {
		return Key{}, Record{}, fmt.Errorf("%w: negative grace period", ErrInvalidSpec)
	}
	old, err := m.store.Get(ctx, id)
	if err != nil {
		return Key{}, Record{}, err
	}
	if !old.RevokedAt.IsZero() {
		return Key{}, Record{}, fmt.Errorf("keystore: rotate %s: %w", id, ErrAlreadyRevoked)
	}
	now := m.now()
	key, next, err := m.newRecord(now)
	if err != nil {
		return Key{}, Record{}, err
	}
	next.Project = old.Project
	next.Name = old.Name
	next.Scopes = slices.Clone(old.Scopes)
	next.Metadata = maps.Clone(old.Metadata)
	next.Disabled = old.Disabled
	next.RateLimit = old.RateLimit
	if !old.ExpiresAt.IsZero() {
		next.ExpiresAt = now.Add(old.ExpiresAt.Sub(old.CreatedAt))
	}
	if err := m.store.Replace(ctx, id, now.Add(grace), next); err != nil {
		return Key{}, Record{}, fmt.Errorf("keystore: rotate %s: %w", id, err)
	}
	m.observe(ctx, auth.Event{Kind: auth.EventKeyRotated, Time: now, KeyID: next.ID, PreviousKeyID: id, Project: next.Project})
	return key, next, nil
}

// SetDisabled suspends (true) or resumes (false) key id and returns its
// record. A disabled key fails verification like an unknown one. It returns
// an error matching [ErrNotFound] if there is no such key, and
// [errors.ErrUnsupported] if the store does not implement [Disabler].
func (m *Manager) SetDisabled(ctx context.Context, id string, disabled bool) (Record, error) {
	d, ok := m.store.(Disabler)
	if !ok {
		return Record{}, fmt.Errorf("keystore: store %T cannot disable keys: %w", m.store, errors.ErrUnsupported)
	}
	return d.SetDisabled(ctx, id, disabled)
}

// touchShards spreads last-used bookkeeping over several locks.
const touchShards = 32

type touchShard struct {
	mu sync.Mutex
	// last maps a key ID to when this Manager last wrote its last-used
	// time, in Unix nanoseconds.
	last map[string]int64
	// pruneAt is the map size that triggers the next sweep of stale
	// entries.
	pruneAt int
}

// touch records that rec was used at now, writing to the store at most once
// per key per interval. Two checks keep writes rare: the record's own
// LastUsedAt (fresh from the store, or from a cache, and shared by every
// instance), and this Manager's memory of its own recent writes, so that a
// cached record with a stale LastUsedAt does not cause a write per request.
func (m *Manager) touch(ctx context.Context, rec *Record, now time.Time) {
	if m.toucher == nil {
		return
	}
	if !rec.LastUsedAt.IsZero() && now.Sub(rec.LastUsedAt) < m.interval {
		return
	}
	sh := &m.touched[rec.Digest[0]%touchShards]
	n := now.UnixNano()
	sh.mu.Lock()
	if last, ok := sh.last[rec.ID]; ok && n-last < int64(m.interval) && n >= last {
		sh.mu.Unlock()
		return
	}
	sh.last[rec.ID] = n
	if len(sh.last) >= sh.pruneAt {
		for id, t := range sh.last {
			if n-t >= int64(m.interval) {
				delete(sh.last, id)
			}
		}
		sh.pruneAt = max(64, 2*len(sh.last))
	}
	sh.mu.Unlock()
	if err := m.toucher.Touch(ctx, rec.ID, now); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			// A wrapper, such as a CachedStore, over a store that
			// keeps no last-used times: nothing to record.
			return
		}
		m.logger.LogAttrs(ctx, slog.LevelWarn, "keygate: last-used write failed",
			slog.String("key_id", rec.ID), slog.String("error", err.Error()))
		return
	}
	rec.LastUsedAt = now
}

// CheckKey reports whether key id is still good: it exists and is not
// revoked, disabled or expired. It returns nil, or [ErrUnknownKey],
// [ErrRevoked], [ErrDisabled] or [ErrExpired] (as an [*auth.Error] of kind
// [auth.ErrInvalidCredential], so that errors.Is matches both), or an
// [*auth.Error] of kind [auth.ErrUnavailable] wrapping a store failure.
//
// Access tokens are checked with it on every request, so that revoking or
// rotating a key ends every token derived from it at once. It costs one
// [Store.Get].
func (m *Manager) CheckKey(ctx context.Context, id string) error {
	rec, err := m.store.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return m.authError(ErrUnknownKey)
	case err != nil:
		return &auth.Error{Kind: auth.ErrUnavailable, Err: fmt.Errorf("keystore: get key: %w", err)}
	}
	now := m.now()
	switch {
	case rec.RevokedBy(now):
		return m.authError(ErrRevoked)
	case rec.Disabled:
		return m.authError(ErrDisabled)
	case rec.ExpiredBy(now):
		return m.authError(ErrExpired)
	}
	return nil
}

// wallClock is the Manager's default clock. time.Now reads two clocks, wall
// and monotonic; now reads only the monotonic one (through time.Since) and
// adds it to a wall-clock reading taken less than a second earlier. So it
// is never more than a second of running time away from time.Now, even
// across a suspend (the monotonic clock stops while the machine sleeps, and
// the first reading a second after it wakes re-syncs) or a step of the wall
// clock. It is safe for concurrent use.
type wallClock struct{ base atomic.Pointer[time.Time] }

func (c *wallClock) now() time.Time {
	if b := c.base.Load(); b != nil {
		if d := time.Since(*b); d >= 0 && d < time.Second {
			return b.Add(d)
		}
	}
	t := time.Now()
	c.base.Store(&t)
	return t
}
