package keystore

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"sync"
)

// ErrWeakPepper is returned by [NewHasher] for a non-empty pepper shorter
// than 16 bytes.
var ErrWeakPepper = errors.New("keystore: pepper must be at least 16 bytes")

const (
	// minPepperLength is the shortest non-empty pepper NewHasher accepts.
	minPepperLength = 16
	// hashChunk is how many bytes of a key a pooled hash state copies at a
	// time; keys up to this long hash with no pepper in one stack buffer.
	hashChunk = 256
)

// Hasher turns API keys into the [Digest]s a [Store] keeps, with
// HMAC-SHA-256 keyed by a server-side secret (the "pepper"), or with plain
// SHA-256 when there is no pepper. A stolen database then yields neither
// keys nor, without the pepper, a way to test guesses against it.
//
// # Why not bcrypt, scrypt or argon2
//
// Password hashes are slow on purpose, to make guessing from a dictionary
// expensive. API keys have no dictionary: a key has at least 128 random
// bits, which no amount of guessing covers, so a fast hash loses nothing.
// A slow hash would instead cost every authenticated request tens of
// milliseconds of CPU and make the authentication endpoint a denial of
// service target (an attacker needs no valid key to make the server hash).
// Password hashes also need a random salt per key, so the digest of a
// presented key cannot be computed before its record is found: the lookup
// by digest that [Lookuper] relies on becomes impossible.
//
// Measured on this project's development machine (2-core AMD EPYC VM,
// shared, so expect some noise; go1.26.8, linux/amd64, x/crypto v0.41.0),
// median of three runs of
//
//	go test -run '^$' -bench '^Benchmark(Digest|Bcrypt|Argon2)$' -benchmem -count=3 ./keystore/
//
// for a 36-byte key:
//
//	Digest, SHA-256                            126 ns/op          0 B/op
//	Digest, HMAC-SHA-256 (pepper)              243 ns/op          0 B/op
//	bcrypt.GenerateFromPassword, DefaultCost    73 ms/op      5.2 KiB/op
//	bcrypt.CompareHashAndPassword, DefaultCost  71 ms/op      5.2 KiB/op
//	argon2.IDKey, RFC 9106 second recommended  207 ms/op       64 MiB/op
//	  parameters (t=3, m=64 MiB, p=4)
//	argon2.IDKey, OWASP minimum                 36 ms/op       19 MiB/op
//	  (t=2, m=19 MiB, p=1)
//
// A peppered Digest is about 300,000 times cheaper than a bcrypt compare:
// at DefaultCost, one core checks about 14 keys a second, so a few dozen
// requests a second with made-up keys would saturate this machine, and
// argon2id with RFC 9106's parameters also needs 64 MiB per request in
// flight.
//
// # Peppers and rotation
//
// The pepper is an HMAC key of at least 16 random bytes (32 recommended)
// kept out of the database, in a secret manager or the environment. To
// rotate it, pass the new one first and the old ones after it: new keys are
// hashed with [Hasher.Digest] under the new pepper, and a verifier that
// finds no record tries [Hasher.DigestAt] with each older one, as
// [Manager.Verify] does. A stored digest does not change, so keep an old
// pepper until the keys hashed with it have expired or been rotated. An
// empty previous pepper stands for plain SHA-256, which lets a deployment
// move from no pepper to one.
//
// A Hasher never shows its peppers: its String, GoString, Format and
// LogValue print only how many it has. It is safe for concurrent use.
// Digest does not allocate. The zero Hasher hashes with plain SHA-256, as
// NewHasher(nil) does.
type Hasher struct {
	p []*pepperHash // current first, then previous ones in order
}

// pepperHash hashes keys under one pepper.
type pepperHash struct {
	hmac bool      // false: plain SHA-256
	pool sync.Pool // of *hashState
}

// hashState is a reusable hash and buffers, so Digest does not allocate.
type hashState struct {
	h   hash.Hash
	buf [hashChunk]byte
	out [DigestSize]byte
}

// plainHash is the zero Hasher's plain SHA-256.
var plainHash = newPepperHash(nil)

// newPepperHash returns a pepperHash for pepper (plain SHA-256 when empty).
// It copies pepper.
func newPepperHash(pepper []byte) *pepperHash {
	p := &pepperHash{hmac: len(pepper) > 0}
	if p.hmac {
		key := append([]byte(nil), pepper...)
		p.pool.New = func() any { return &hashState{h: hmac.New(sha256.New, key)} }
	} else {
		p.pool.New = func() any { return &hashState{h: sha256.New()} }
	}
	return p
}

// NewHasher returns a Hasher that hashes with pepper and still accepts the
// previous peppers, in the order given, through [Hasher.DigestAt]. A nil or
// empty pepper means plain SHA-256; any other must be at least 16 bytes
// long, or NewHasher returns an error matching [ErrWeakPepper]. NewHasher
// copies the peppers: changing the slices afterwards changes nothing.
func NewHasher(pepper []byte, previous ...[]byte) (*Hasher, error) {
	h := &Hasher{p: make([]*pepperHash, 0, 1+len(previous))}
	for i, p := range append([][]byte{pepper}, previous...) {
		if len(p) > 0 && len(p) < minPepperLength {
			if i == 0 {
				return nil, ErrWeakPepper
			}
			return nil, fmt.Errorf("%w (previous pepper %d)", ErrWeakPepper, i)
		}
		h.p = append(h.p, newPepperHash(p))
	}
	return h, nil
}

// Peppers returns the number of peppers h accepts: 1 + the number of
// previous ones.
func (h *Hasher) Peppers() int {
	if h == nil || len(h.p) == 0 {
		return 1
	}
	return len(h.p)
}

// Digest returns the digest of key under the current pepper; it equals
// DigestAt(0, key). It does not allocate and is safe for concurrent use.
func (h *Hasher) Digest(key string) Digest { return h.DigestAt(0, key) }

// DigestAt returns the digest of key under pepper i: 0 is the current one,
// 1 to Peppers()-1 the previous ones in the order given to [NewHasher]. It
// panics if i is out of that range. It does not allocate and is safe for
// concurrent use.
func (h *Hasher) DigestAt(i int, key string) Digest {
	var p *pepperHash
	switch {
	case i >= 0 && i < h.Peppers() && (h == nil || len(h.p) == 0):
		p = plainHash
	case i >= 0 && i < h.Peppers():
		p = h.p[i]
	default:
		panic("keystore: Hasher.DigestAt: pepper index " + strconv.Itoa(i) +
			" out of range [0, " + strconv.Itoa(h.Peppers()) + ")")
	}
	return p.sum(key)
}

// sum hashes key.
func (p *pepperHash) sum(key string) Digest {
	if !p.hmac && len(key) <= hashChunk {
		var buf [hashChunk]byte
		n := copy(buf[:], key)
		d := sha256.Sum256(buf[:n])
		clear(buf[:n])
		return d
	}
	st := p.pool.Get().(*hashState)
	for len(key) > 0 {
		n := copy(st.buf[:], key)
		st.h.Write(st.buf[:n])
		key = key[n:]
	}
	st.h.Sum(st.out[:0])
	d := Digest(st.out)
	st.h.Reset()
	clear(st.buf[:])
	p.pool.Put(st)
	return d
}

// alg names the algorithm of the current pepper.
func (h Hasher) alg() string {
	if len(h.p) > 0 && h.p[0].hmac {
		return "HMAC-SHA-256"
	}
	return "SHA-256"
}

// String describes h without its peppers, such as
// "keystore.Hasher(HMAC-SHA-256, 2 peppers)".
func (h Hasher) String() string {
	n := max(len(h.p), 1)
	s := "keystore.Hasher(" + h.alg() + ", " + strconv.Itoa(n) + " pepper"
	if n != 1 {
		s += "s"
	}
	return s + ")"
}

// GoString is like [Hasher.String]: %#v shows no pepper either.
func (h Hasher) GoString() string { return h.String() }

// Format implements [fmt.Formatter]: every verb prints [Hasher.String].
func (h Hasher) Format(s fmt.State, _ rune) { io.WriteString(s, h.String()) }

// LogValue implements [slog.LogValuer]: the algorithm and the number of
// peppers, never a pepper.
func (h Hasher) LogValue() slog.Value {
	return slog.GroupValue(slog.String("alg", h.alg()), slog.Int("peppers", max(len(h.p), 1)))
}
