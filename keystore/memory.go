package keystore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/auth"
)

// errInvalidRecord is returned by [MemoryStore] for a record no caller
// should ever pass: one without an ID or a digest. It is a programming
// error, not a condition to handle, so it is not exported.
var errInvalidRecord = errors.New("keystore: invalid record")

// Interface checks.
var (
	_ Store       = (*MemoryStore)(nil)
	_ Toucher     = (*MemoryStore)(nil)
	_ Disabler    = (*MemoryStore)(nil)
	_ UsageWriter = (*MemoryStore)(nil)
)

// MemoryStore is a [Store] that keeps records in memory. It also implements
// [Toucher], [Disabler] and [UsageWriter]. It suits tests, examples and single-instance
// services that can afford to lose their keys on restart; its contents are
// not persisted anywhere.
//
// Lookups by digest and by ID take constant time, and
// [MemoryStore.LookupDigest] does not allocate. A stored key costs about
// 250 to 280 bytes of heap (measured at 10^5 and 10^6 keys) with realistic
// IDs, names and hints, no Metadata, and scope lists that many keys share:
// projects and scope lists are stored once. A key with a RateLimit, or
// with usage recorded ([MemoryStore.RecordUsage]), costs about 80 bytes
// more. List sorts nothing at call
// time: each project's records are kept in order.
//
// Records handed to Create are copied, and records returned by Get, List,
// Revoke and SetDisabled carry their own copies of Scopes and Metadata.
// Records returned by LookupDigest share Scopes and Metadata with the store,
// as [Lookuper] allows, and must be treated as read-only. Times come back in
// UTC, without a monotonic clock reading; they are equal under
// [time.Time.Equal] to the times stored.
//
// Create and Replace reject a record with an empty ID or a zero Digest, and
// Revoke and Replace reject a zero revocation time, with an error matching
// none of the store sentinels: they are caller bugs.
//
// The zero value is an empty store ready to use; [NewMemoryStore] returns
// one too. A MemoryStore must not be copied after first use. It is safe for
// concurrent use, and starts no goroutines.
type MemoryStore struct {
	mu sync.RWMutex

	// byDigest indexes entries by the first 8 bytes of their digest,
	// chained through memEntry.nextByDigest.
	byDigest map[uint64]*memEntry
	// byID indexes entries by the maphash of their ID, chained through
	// memEntry.nextByID.
	byID   map[uint64]*memEntry
	seed   maphash.Seed
	idMask uint64 // all ones; tests clear it to make every ID collide

	// projects interns project names and keeps each project's entries in
	// List order.
	projects map[string]*memProject
	// scopeSets interns scope lists, keyed by their length-prefixed
	// encoding, so that keys with the same scopes share one slice.
	scopeSets map[string]*scopeList
	scratch   []byte

	// wide holds the times that do not fit an int64 of Unix nanoseconds
	// (before 1678 or after 2261, or the Unix epoch itself); the entry's
	// field then holds wideTime.
	wide map[*memEntry]*[numTimes]time.Time

	n int
}

// memEntry is the compact form of a [Record]: 128 bytes, plus its packed
// strings, plus its share of the indexes.
type memEntry struct {
	digest Digest
	// packed is uvarint(len(ID)) uvarint(len(Name)) ID Name Hint: one
	// allocation instead of three.
	packed   string
	project  *memProject
	scopes   *scopeList // nil for nil Scopes
	metadata map[string]string
	// times are Unix nanoseconds: 0 is the zero time, wideTime means "see
	// MemoryStore.wide". Indexed by the time* constants.
	times        [numTimes]int64
	nextByDigest *memEntry
	nextByID     *memEntry
	// ext holds the fields most keys leave zero at creation: nil until
	// the key has a rate limit or recorded usage.
	ext      *memExt
	disabled bool
}

// memExt holds a record's rate limit and usage counters.
type memExt struct {
	limit      auth.Limit
	usage      int64
	clientAddr netip.Addr
}

const (
	timeCreated = iota
	timeExpires
	timeRevoked
	timeLastUsed
	numTimes
)

const wideTime = math.MinInt64

type memProject struct {
	name    string
	entries []*memEntry // sorted by CreatedAt, then ID
}

type scopeList struct{ v []string }

// NewMemoryStore returns an empty [MemoryStore].
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{}
	s.init()
	return s
}

// init makes the maps; it is called with s.mu held for writing, or before
// s is shared.
func (s *MemoryStore) init() {
	if s.byDigest != nil {
		return
	}
	s.byDigest = make(map[uint64]*memEntry)
	s.byID = make(map[uint64]*memEntry)
	s.seed = maphash.MakeSeed()
	s.idMask = ^uint64(0)
	s.projects = make(map[string]*memProject)
	s.scopeSets = make(map[string]*scopeList)
}

// Len returns the number of records in the store, revoked ones included.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n
}

// LookupDigest implements [Lookuper]. It does not allocate; the record
// shares Scopes and Metadata with the store. A miss returns [ErrNotFound]
// itself. The context is not used.
func (s *MemoryStore) LookupDigest(_ context.Context, d Digest) (r Record, err error) {
	s.mu.RLock()
	if e := s.findDigest(d); e != nil {
		s.fill(&r, e)
		s.mu.RUnlock()
		return r, nil
	}
	s.mu.RUnlock()
	return r, ErrNotFound
}

// Create implements [Store]. It copies r's Scopes and Metadata.
func (s *MemoryStore) Create(_ context.Context, r Record) error {
	e, wide, err := newEntry(&r)
	if err != nil {
		return fmt.Errorf("%w: %w", errInvalidRecord, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if err := s.checkFree(&r); err != nil {
		return err
	}
	s.insert(e, &r, wide)
	return nil
}

// Get implements [Store]. The context is not used.
func (s *MemoryStore) Get(_ context.Context, id string) (Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.findID(id)
	if e == nil {
		return Record{}, errNoSuchID
	}
	return s.recordCopy(e), nil
}

// List implements [Store]. It returns a non-nil slice. The context is not
// used.
func (s *MemoryStore) List(_ context.Context, project string) ([]Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.projects[project]
	if p == nil {
		return []Record{}, nil
	}
	out := make([]Record, len(p.entries))
	for i, e := range p.entries {
		out[i] = s.recordCopy(e)
		out[i].Digest = Digest{}
	}
	return out, nil
}

// Revoke implements [Store]. A zero at is an error. The context is not
// used.
func (s *MemoryStore) Revoke(_ context.Context, id string, at time.Time) (Record, error) {
	if at.IsZero() {
		return Record{}, errors.New("keystore: revoke: zero revocation time")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.findID(id)
	if e == nil {
		return Record{}, errNoSuchID
	}
	if old := s.timeOf(e, timeRevoked); old.IsZero() || at.Before(old) {
		s.setTime(e, timeRevoked, at)
	}
	return s.recordCopy(e), nil
}

// Replace implements [Store]. A zero revokeAt is an error. The context is
// not used.
func (s *MemoryStore) Replace(_ context.Context, oldID string, revokeAt time.Time, next Record) error {
	if revokeAt.IsZero() {
		return errors.New("keystore: replace: zero revocation time")
	}
	e, wide, err := newEntry(&next)
	if err != nil {
		return fmt.Errorf("%w: %w", errInvalidRecord, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	old := s.findID(oldID)
	if old == nil {
		return errNoSuchID
	}
	if old.times[timeRevoked] != 0 {
		return fmt.Errorf("%w: id %q", ErrAlreadyRevoked, oldID)
	}
	if err := s.checkFree(&next); err != nil {
		return err
	}
	s.setTime(old, timeRevoked, revokeAt)
	s.insert(e, &next, wide)
	return nil
}

// Touch implements [Toucher]. The context is not used.
func (s *MemoryStore) Touch(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.findID(id)
	if e == nil {
		return errNoSuchID
	}
	if at.After(s.timeOf(e, timeLastUsed)) {
		s.setTime(e, timeLastUsed, at)
	}
	return nil
}

// RecordUsage implements [UsageWriter]: the whole batch is applied under
// one lock, so a reader sees all of it or none. The context is not used.
func (s *MemoryStore) RecordUsage(_ context.Context, batch []Usage) error {
	for i := range batch {
		if batch[i].Requests < 0 {
			return errNegativeUsage
		}
	}
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		u := &batch[i]
		e := s.findID(u.KeyID)
		if e == nil {
			continue
		}
		if e.ext == nil {
			e.ext = new(memExt)
		}
		e.ext.usage += u.Requests
		if u.LastUsedAt.IsZero() {
			continue
		}
		last := s.timeOf(e, timeLastUsed)
		if u.ClientAddr.IsValid() && !u.LastUsedAt.Before(last) {
			e.ext.clientAddr = u.ClientAddr
		}
		if u.LastUsedAt.After(last) {
			s.setTime(e, timeLastUsed, u.LastUsedAt)
		}
	}
	return nil
}

// errNegativeUsage: a [Usage] with negative Requests, which no
// [UsageRecorder] makes.
var errNegativeUsage = errors.New("keystore: usage with negative Requests")

// SetDisabled implements [Disabler]. The context is not used.
func (s *MemoryStore) SetDisabled(_ context.Context, id string, disabled bool) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.findID(id)
	if e == nil {
		return Record{}, errNoSuchID
	}
	e.disabled = disabled
	return s.recordCopy(e), nil
}

// errNoSuchID is the not-found error of the methods taking an ID. It does
// not quote the ID: a caller might pass a key there by mistake.
var errNoSuchID = fmt.Errorf("%w: no key has that ID", ErrNotFound)

// digestKey is the digest index key: digests are uniformly distributed
// hashes of server-generated keys, so their first 8 bytes make a good hash
// that nobody can choose. Collisions are chained and compared in full.
func digestKey(d *Digest) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// idKey is the ID index key.
func (s *MemoryStore) idKey(id string) uint64 { return maphash.String(s.seed, id) & s.idMask }

// findDigest is called with s.mu held.
func (s *MemoryStore) findDigest(d Digest) *memEntry {
	// The chain walk is not constant-time, and need not be: the index
	// lookup itself is not either, and what it compares are digests, not
	// keys.
	for e := s.byDigest[digestKey(&d)]; e != nil; e = e.nextByDigest {
		if e.digest == d {
			return e
		}
	}
	return nil
}

// findID is called with s.mu held.
func (s *MemoryStore) findID(id string) *memEntry {
	if s.byID == nil { // zero value, nothing stored yet, no seed
		return nil
	}
	for e := s.byID[s.idKey(id)]; e != nil; e = e.nextByID {
		if e.id() == id {
			return e
		}
	}
	return nil
}

// checkFree is called with s.mu held for writing.
func (s *MemoryStore) checkFree(r *Record) error {
	if s.findID(r.ID) != nil {
		return fmt.Errorf("%w: id %q", ErrExists, r.ID)
	}
	if s.findDigest(r.Digest) != nil {
		return fmt.Errorf("%w: a key with the same digest as %q", ErrExists, r.ID)
	}
	return nil
}

// newEntry builds e from r, outside the lock: everything but the interned
// parts (project and scopes) and the index links. Times that do not fit
// the compact form come back in wide.
func newEntry(r *Record) (e *memEntry, wide *[numTimes]time.Time, err error) {
	if r.ID == "" {
		return nil, nil, errors.New("empty ID")
	}
	if r.Digest.IsZero() {
		return nil, nil, errors.New("zero digest")
	}
	var hdr [2 * binary.MaxVarintLen64]byte
	h := binary.AppendUvarint(hdr[:0], uint64(len(r.ID)))
	h = binary.AppendUvarint(h, uint64(len(r.Name)))
	var b strings.Builder
	b.Grow(len(h) + len(r.ID) + len(r.Name) + len(r.Hint)) // exactly: no slack
	b.Write(h)
	b.WriteString(r.ID)
	b.WriteString(r.Name)
	b.WriteString(r.Hint)
	e = &memEntry{
		digest:   r.Digest,
		packed:   b.String(),
		metadata: maps.Clone(r.Metadata),
		disabled: r.Disabled,
	}
	if r.RateLimit != (auth.Limit{}) || r.UsageCount != 0 || r.LastClientAddr.IsValid() {
		e.ext = &memExt{limit: r.RateLimit, usage: r.UsageCount, clientAddr: r.LastClientAddr}
		e.ext.limit.Name = strings.Clone(r.RateLimit.Name)
	}
	for i, t := range [numTimes]time.Time{r.CreatedAt, r.ExpiresAt, r.RevokedAt, r.LastUsedAt} {
		n, ok := encodeTime(t)
		if !ok {
			if wide == nil {
				wide = new([numTimes]time.Time)
			}
			wide[i] = t.UTC().Round(0)
		}
		e.times[i] = n
	}
	return e, wide, nil
}

// insert links a new entry into the store; it is called with s.mu held for
// writing, after checkFree.
func (s *MemoryStore) insert(e *memEntry, r *Record, wide *[numTimes]time.Time) {
	e.project = s.project(r.Project)
	e.scopes = s.internScopes(r.Scopes)
	if wide != nil {
		s.wideFor(e)
		*s.wide[e] = *wide
	}

	dk := digestKey(&e.digest)
	e.nextByDigest = s.byDigest[dk]
	s.byDigest[dk] = e
	ik := s.idKey(r.ID)
	e.nextByID = s.byID[ik]
	s.byID[ik] = e

	// Keys are usually created in time order, so this is usually an
	// append.
	p := e.project
	created := s.timeOf(e, timeCreated)
	i := len(p.entries)
	if i > 0 && s.compare(p.entries[i-1], created, r.ID) > 0 {
		i, _ = slices.BinarySearchFunc(p.entries, e, func(a, _ *memEntry) int {
			return s.compare(a, created, r.ID)
		})
	}
	p.entries = slices.Insert(p.entries, i, e)
	s.n++
}

// compare orders a against (created, id) in List order.
func (s *MemoryStore) compare(a *memEntry, created time.Time, id string) int {
	if c := s.timeOf(a, timeCreated).Compare(created); c != 0 {
		return c
	}
	return cmp.Compare(a.id(), id)
}

func (s *MemoryStore) project(name string) *memProject {
	p := s.projects[name]
	if p == nil {
		p = &memProject{name: strings.Clone(name)}
		s.projects[p.name] = p
	}
	return p
}

// internScopes returns the store's shared copy of scopes.
func (s *MemoryStore) internScopes(scopes []string) *scopeList {
	if scopes == nil {
		return nil
	}
	b := s.scratch[:0]
	for _, sc := range scopes {
		b = binary.AppendUvarint(b, uint64(len(sc)))
		b = append(b, sc...)
	}
	s.scratch = b
	if l := s.scopeSets[string(b)]; l != nil {
		return l
	}
	v := make([]string, len(scopes))
	for i, sc := range scopes {
		v[i] = strings.Clone(sc)
	}
	l := &scopeList{v: v[:len(v):len(v)]}
	s.scopeSets[string(b)] = l
	return l
}

func (s *MemoryStore) wideFor(e *memEntry) *[numTimes]time.Time {
	if s.wide == nil {
		s.wide = make(map[*memEntry]*[numTimes]time.Time)
	}
	w := s.wide[e]
	if w == nil {
		w = new([numTimes]time.Time)
		s.wide[e] = w
	}
	return w
}

// encodeTime returns t in Unix nanoseconds, 0 for the zero time, or false
// if t does not fit.
func encodeTime(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, true
	}
	// UnixNano is defined from 1677-09-21 to 2262-04-11; stay well
	// inside.
	if y := t.Year(); y > 1678 && y < 2262 {
		if n := t.UnixNano(); n != 0 && n != wideTime {
			return n, true
		}
	}
	return wideTime, false
}

// timeOf returns e's time i; it is called with s.mu held.
func (s *MemoryStore) timeOf(e *memEntry, i int) time.Time {
	switch n := e.times[i]; n {
	case 0:
		return time.Time{}
	case wideTime:
		return s.wide[e][i]
	default:
		return time.Unix(0, n).UTC()
	}
}

// setTime sets e's time i; it is called with s.mu held for writing.
func (s *MemoryStore) setTime(e *memEntry, i int, t time.Time) {
	n, ok := encodeTime(t)
	e.times[i] = n
	if !ok {
		s.wideFor(e)[i] = t.UTC().Round(0)
	}
}

// fill sets *r, which is zero, to e, sharing e's scopes and metadata; it
// is called with s.mu held, and does not allocate.
func (s *MemoryStore) fill(r *Record, e *memEntry) {
	r.ID, r.Name, r.Hint = e.strings()
	r.Project = e.project.name
	r.Digest = e.digest
	if e.scopes != nil {
		r.Scopes = e.scopes.v
	}
	r.CreatedAt = s.timeOf(e, timeCreated)
	r.ExpiresAt = s.timeOf(e, timeExpires)
	r.RevokedAt = s.timeOf(e, timeRevoked)
	r.LastUsedAt = s.timeOf(e, timeLastUsed)
	r.Disabled = e.disabled
	r.Metadata = e.metadata
	if x := e.ext; x != nil {
		r.RateLimit = x.limit
		r.UsageCount = x.usage
		r.LastClientAddr = x.clientAddr
	}
}

// recordCopy returns e as a Record with its own Scopes and Metadata.
func (s *MemoryStore) recordCopy(e *memEntry) (r Record) {
	s.fill(&r, e)
	if r.Scopes != nil {
		r.Scopes = slices.Clone(r.Scopes)
	}
	r.Metadata = maps.Clone(r.Metadata)
	return r
}

// strings unpacks e.packed.
func (e *memEntry) strings() (id, name, hint string) {
	p := e.packed
	idLen, p := uvarint(p)
	nameLen, p := uvarint(p)
	return p[:idLen], p[idLen : idLen+nameLen], p[idLen+nameLen:]
}

func (e *memEntry) id() string {
	p := e.packed
	idLen, p := uvarint(p)
	_, p = uvarint(p)
	return p[:idLen]
}

// uvarint decodes a uvarint written by binary.AppendUvarint at the start
// of p, which it trusts, and returns the rest of p.
func uvarint(p string) (int, string) {
	var x uint64
	var shift uint
	for i := 0; ; i++ {
		c := p[i]
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int(x), p[i+1:]
		}
		shift += 7
	}
}
