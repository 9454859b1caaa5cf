package keystore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"regexp"
	"sync"
	"unsafe"

	"github.com/keygate/keygate/internal/charset"
)

const (
	// defaultPrefix is the prefix of the default format's keys.
	defaultPrefix = "halfred"
	// defaultSeparator separates the prefix from the rest of a key.
	defaultSeparator = '_'
	// defaultRandomLength is the number of random base62 characters in a
	// key: 22 of them carry about 131 bits (22 × log2(62) ≈ 130.99).
	defaultRandomLength = 22
	// minRandomLength is the smallest random length a Format accepts: 22
	// base62 characters are the fewest that carry 128 bits.
	minRandomLength = 22
	// maxRandomLength is the largest random length a Format accepts.
	maxRandomLength = 64
	// checksumLength is the number of base62 characters of the checksum
	// that ends a key when the format has one (62⁶ > 2³²).
	checksumLength = 6
	// alphabet is base62 in ASCII order: digit values 0..61.
	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// maxPrefixLength is the longest prefix WithPrefix accepts.
	maxPrefixLength = 32
	// maxKeyLength is the longest key any Format makes.
	maxKeyLength = maxPrefixLength + 1 + maxRandomLength + checksumLength
	// parseSlack is how much longer than Format.Len an input may be and
	// still be told it has the wrong prefix rather than the wrong length.
	// Anything longer is refused before any of it is read.
	parseSlack = 16
	// acceptBelow is the rejection-sampling bound: bytes below it map
	// uniformly onto base62 (248 = 4 × 62); bytes at or above it are
	// dropped.
	acceptBelow = 4 * 62
	// maxRandomReads bounds the bytes Generate reads per random character
	// before it gives up on a reader that never yields usable bytes. An
	// honest source needs about 1.03 per character.
	maxRandomReads = 16
)

// isBase62 reports, for each byte value, whether it is in [alphabet].
var isBase62 = func() (t [256]bool) {
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = true
	}
	return t
}()

// Format describes the shape of API keys: a lower-case prefix, a
// separator, random base62 characters and (by default) a 6-character base62
// checksum. The default format's keys are 36 characters, such as
//
//	halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4
//
// ("halfred_", 22 random characters, checksum "4V6As4").
//
// A Format generates keys ([Format.Generate]), checks strings that claim to
// be keys ([Format.Parse], [Format.Match]), finds them in text
// ([Format.Pattern]) and masks them for display ([Format.Hint]).
//
// Build one with [NewFormat], or use [DefaultFormat]. The zero Format and a
// nil *Format behave like [DefaultFormat]. A Format is immutable and safe
// for concurrent use; when its random source (see [WithRandom]) is not
// [crypto/rand.Reader], Generate serializes its reads from it.
type Format struct {
	prefix    string // name + separator
	prefixCRC uint32 // crc32.ChecksumIEEE(prefix), where a key's checksum starts
	randLen   int
	checksum  bool
	total     int
	rand      io.Reader
	randMu    *sync.Mutex // nil when rand is safe for concurrent use
	pattern   *regexp.Regexp
	errPrefix error
	errLength error
	errChars  error
	errSum    error
}

// formatConfig is what the [FormatOption]s set.
type formatConfig struct {
	prefix   string
	sep      byte
	randLen  int
	checksum bool
	rand     io.Reader
}

// FormatOption configures a [Format] made by [NewFormat] or [MustFormat].
type FormatOption func(*formatConfig)

// WithPrefix sets the key prefix, without the separator. It must match
// ^[a-z][a-z0-9]{0,31}$: lower case only, so that scanners and people see one
// canonical form. The default is "halfred".
func WithPrefix(prefix string) FormatOption {
	return func(c *formatConfig) { c.prefix = prefix }
}

// WithSeparator sets the byte between the prefix and the rest of the key:
// '_' or '-'. The default is '_', which keeps a key one word when
// double-clicked in most editors and terminals.
func WithSeparator(sep byte) FormatOption {
	return func(c *formatConfig) { c.sep = sep }
}

// WithRandomLength sets the number of random base62 characters in a key,
// from 22 (the fewest that carry 128 bits) to 64. The default is 22,
// about 131 bits.
func WithRandomLength(n int) FormatOption {
	return func(c *formatConfig) { c.randLen = n }
}

// WithChecksum sets whether keys end with a 6-character base62 checksum
// (CRC-32 of everything before it), which lets [Format.Parse] reject a
// mistyped or truncated key without a store lookup and lets secret
// scanners tell real keys from look-alikes. The default is true.
func WithChecksum(on bool) FormatOption {
	return func(c *formatConfig) { c.checksum = on }
}

// WithRandom sets the source of randomness of [Format.Generate]. The default
// is [crypto/rand.Reader]; anything else is for tests. A nil reader is
// refused.
func WithRandom(r io.Reader) FormatOption {
	return func(c *formatConfig) { c.rand = r }
}

// prefixOK reports whether p matches ^[a-z][a-z0-9]{0,31}$.
func prefixOK(p string) bool {
	if len(p) == 0 || len(p) > maxPrefixLength || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if c := p[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// NewFormat returns a Format configured by opts; with none it is equivalent
// to [DefaultFormat]. It returns an error matching [ErrWeakFormat], saying
// why, if the options give keys with fewer than 128 random bits or are
// otherwise invalid (see each option).
func NewFormat(opts ...FormatOption) (*Format, error) {
	c := formatConfig{
		prefix:   defaultPrefix,
		sep:      defaultSeparator,
		randLen:  defaultRandomLength,
		checksum: true,
		rand:     rand.Reader,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	switch {
	case !prefixOK(c.prefix):
		return nil, fmt.Errorf("%w: prefix %q must be 1 to 32 lower-case letters and digits, starting with a letter", ErrWeakFormat, c.prefix)
	case c.sep != '_' && c.sep != '-':
		return nil, fmt.Errorf("%w: separator %q must be '_' or '-'", ErrWeakFormat, c.sep)
	case c.randLen < minRandomLength:
		return nil, fmt.Errorf("%w: %d random characters carry fewer than 128 bits; use at least %d", ErrWeakFormat, c.randLen, minRandomLength)
	case c.randLen > maxRandomLength:
		return nil, fmt.Errorf("%w: %d random characters is more than the maximum, %d", ErrWeakFormat, c.randLen, maxRandomLength)
	case c.rand == nil:
		return nil, fmt.Errorf("%w: nil random source", ErrWeakFormat)
	}

	f := &Format{
		prefix:   c.prefix + string(c.sep),
		randLen:  c.randLen,
		checksum: c.checksum,
		rand:     c.rand,
	}
	if c.rand != rand.Reader {
		f.randMu = new(sync.Mutex)
	}
	body := c.randLen
	if c.checksum {
		body += checksumLength
	}
	f.total = len(f.prefix) + body
	f.prefixCRC = crc32.ChecksumIEEE([]byte(f.prefix))
	f.pattern = regexp.MustCompile(fmt.Sprintf(`\b%s[0-9A-Za-z]{%d}\b`, regexp.QuoteMeta(f.prefix), body))
	f.errPrefix = newParseError(ErrPrefix, fmt.Sprintf("API keys start with %q", f.prefix))
	f.errLength = newParseError(ErrLength, fmt.Sprintf("API keys are %d characters long", f.total))
	f.errChars = newParseError(ErrCharset, fmt.Sprintf("after %q, API keys contain only the letters A-Z and a-z and the digits 0-9", f.prefix))
	f.errSum = newParseError(ErrChecksum, "the key was mistyped or truncated")
	return f, nil
}

// MustFormat is like [NewFormat] but panics if the options are invalid. It
// is meant for package-level variables.
func MustFormat(opts ...FormatOption) *Format {
	f, err := NewFormat(opts...)
	if err != nil {
		panic(err)
	}
	return f
}

var defaultFormat = MustFormat()

// DefaultFormat returns the shared default format: prefix "halfred",
// separator '_', 22 random characters, a checksum, 36 characters in all,
// random from [crypto/rand.Reader]. It is safe for concurrent use.
func DefaultFormat() *Format { return defaultFormat }

// or returns f, or the default format for a nil or zero f.
func (f *Format) or() *Format {
	if f == nil || f.total == 0 {
		return defaultFormat
	}
	return f
}

// Prefix returns the prefix and separator every key starts with, such as
// "halfred_".
func (f *Format) Prefix() string { return f.or().prefix }

// Len returns the length of every key in bytes: 36 for the default format.
func (f *Format) Len() int { return f.or().total }

// Pattern returns a regular expression that matches this format's keys
// inside text, such as `\bhalfred_[0-9A-Za-z]{28}\b`: the prefix and
// separator, exactly as many base62 characters as a key has, and a word
// boundary on each side, so a key glued to other letters, digits or '_' is
// not matched. It checks the shape only, not the checksum: a secret scanner
// passes each match to [Format.Parse] to drop look-alikes. The same
// *regexp.Regexp is returned on every call; it is safe for concurrent use.
func (f *Format) Pattern() *regexp.Regexp { return f.or().pattern }

// Match reports whether s has this format's prefix and length: a cheap
// shape test that reads neither the characters nor the checksum. Use
// [Format.Parse] to validate a key. Match does not allocate.
func (f *Format) Match(s string) bool {
	f = f.or()
	return len(s) == f.total && s[:len(f.prefix)] == f.prefix
}

// Hint returns a masked form of s that is safe to log and show: the
// format's prefix and separator, "…", and at most the last 4 characters,
// such as "halfred_…a1B2". If s starts with the prefix, the rest of it is
// the body; otherwise all of s is. Only a trailing run of base62 characters
// is shown, at most 4 of them, and none if the body is shorter than 8
// bytes, so Hint never shows more than half a body nor any control or
// non-ASCII byte. Hint never panics.
func (f *Format) Hint(s string) string {
	f = f.or()
	if len(s) >= len(f.prefix) && s[:len(f.prefix)] == f.prefix {
		s = s[len(f.prefix):]
	}
	return hint(f.prefix, s)
}

// hint returns prefix + "…" + at most the last 4 base62 characters of body.
func hint(prefix, body string) string {
	const show, minBody = 4, 8
	if len(body) < minBody {
		return prefix + "…"
	}
	i := len(body)
	for i > len(body)-show && isBase62[body[i-1]] {
		i--
	}
	return prefix + "…" + body[i:]
}

// Generate returns a new random key. It reads from the format's random
// source (see [WithRandom]) and maps bytes onto base62 by rejection
// sampling: a byte b below 248 gives the character alphabet[b%62] and any
// other byte is dropped, so every character is uniform. The random
// characters are thus the first N bytes below 248 that the source yields,
// and Generate reads no byte past them. The error, if any, wraps the
// source's.
func (f *Format) Generate() (Key, error) {
	f = f.or()
	var buf [maxKeyLength]byte
	n := copy(buf[:], f.prefix)
	end := n + f.randLen
	if err := f.fill(buf[n:end]); err != nil {
		return Key{}, fmt.Errorf("keystore: generating an API key: %w", err)
	}
	if f.checksum {
		putChecksum(buf[end:end+checksumLength], checksumOf(buf[:end]))
		end += checksumLength
	}
	k := newKey(string(buf[:end]), n)
	clear(buf[:])
	return k, nil
}

// errBadRandom is what Generate wraps when the random source keeps
// returning bytes at or above acceptBelow; it always comes wrapped in a
// "keystore: " message.
var errBadRandom = errors.New("the random source returned too few usable bytes")

// fill sets every byte of dst to a uniformly random base62 character from
// the format's source.
func (f *Format) fill(dst []byte) error {
	if f.randMu != nil {
		f.randMu.Lock()
		defer f.randMu.Unlock()
	}
	return fillBase62(f.rand, dst)
}

// fillBase62 sets every byte of dst (at most maxRandomLength bytes) to a
// uniformly random base62 character read from r by rejection sampling, and
// reads no byte past the last one it needs.
func fillBase62(r io.Reader, dst []byte) error {
	var rnd [maxRandomLength]byte
	defer clear(rnd[:])
	i, read := 0, 0
	for i < len(dst) {
		need := len(dst) - i
		if read += need; read > maxRandomReads*len(dst) {
			return errBadRandom
		}
		if _, err := io.ReadFull(r, rnd[:need]); err != nil {
			return err
		}
		for _, b := range rnd[:need] {
			if b < acceptBelow {
				dst[i] = alphabet[b%62]
				i++
			}
		}
	}
	return nil
}

// Parse checks that s is a well-formed key of this format and returns it as
// a [Key] (which refers to s; nothing is copied). It reads only s, never a
// store, and is meant for untrusted input. The checks, in order:
//
//  1. s is at most a few bytes longer than [Format.Len]: a longer input is
//     refused at once, whatever its size ([ErrLength]);
//  2. s starts with the prefix and separator, exactly, in lower case
//     ([ErrPrefix]);
//  3. s is exactly [Format.Len] bytes long ([ErrLength]);
//  4. every byte after the prefix is in [0-9A-Za-z]: whitespace, '+', '/',
//     '=', '%', NUL and every byte of a non-ASCII character (zero-width
//     spaces, look-alike letters, fullwidth digits) are refused
//     ([ErrCharset]);
//  5. with a checksum, the last 6 characters are the base62 CRC-32 of the
//     rest ([ErrChecksum]).
//
// Every error matches [ErrMalformedKey] and the one sentinel named above
// under [errors.Is]; its message says what a key looks like and contains no
// part of s. Parse does not allocate, on success or failure.
func (f *Format) Parse(s string) (Key, error) {
	f = f.or()
	if len(s) > f.total+parseSlack {
		return Key{}, f.errLength
	}
	p := len(f.prefix)
	if len(s) < p || s[:p] != f.prefix {
		return Key{}, f.errPrefix
	}
	if len(s) != f.total {
		return Key{}, f.errLength
	}
	if charset.Span(&isBase62, s[p:]) != len(s)-p {
		return Key{}, f.errChars
	}
	if f.checksum {
		end := len(s) - checksumLength
		var sum [checksumLength]byte
		// Read s in place, with hash/crc32's fast IEEE code: a []byte
		// conversion would copy and allocate. crc32 does not write. The
		// prefix's part of the checksum was computed once, in NewFormat.
		body := unsafe.Slice(unsafe.StringData(s[p:]), end-p)
		putChecksum(sum[:], crc32.Update(f.prefixCRC, crc32.IEEETable, body))
		if string(sum[:]) != s[end:] {
			return Key{}, f.errSum
		}
	}
	return newKey(s, p), nil
}

// putChecksum writes c in base62, most significant digit first, left-padded
// with '0', into dst (6 bytes: 62⁶ > 2³²).
func putChecksum(dst []byte, c uint32) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = alphabet[c%62]
		c /= 62
	}
}

// checksumOf returns crc32.ChecksumIEEE(b), computed here so that b, on
// Generate's stack, does not escape to the heap through hash/crc32's
// indirect calls.
func checksumOf(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c = crc32.IEEETable[byte(c)^x] ^ c>>8
	}
	return ^c
}

// parseError is a [Format.Parse] failure: it matches ErrMalformedKey and
// one more specific sentinel. Each Format builds its four once.
type parseError struct {
	msg  string
	errs []error // ErrMalformedKey and the sentinel, so Unwrap does not allocate
}

func (e *parseError) Error() string { return e.msg }

// Unwrap returns ErrMalformedKey and the specific sentinel.
func (e *parseError) Unwrap() []error { return e.errs }

// newParseError returns a parseError matching ErrMalformedKey and kind.
func newParseError(kind error, detail string) *parseError {
	return &parseError{
		msg:  kind.Error() + ": " + detail,
		errs: []error{ErrMalformedKey, kind},
	}
}
