package keystore

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// MaxInvalidationSize is the length in bytes of the longest message
// [ParseInvalidation] accepts: 4096. A message names one key, its ID and a
// 64-digit digest, far below this.
const MaxInvalidationSize = 4096

// Invalidation is the message an invalidation feed carries between
// instances to announce a change to one key, which a receiver passes to
// [CachedStore.Invalidate]. Its text form, the same for every feed (the
// PostgreSQL one in keystore/sqlstore, the Redis one in
// keystore/redisfeed), is a JSON object:
//
//	{"id":"key_3kTMd9x0aH2bQe7L","digest":"<64 lowercase hex digits>"}
//
// where "digest" is left out when Digest is zero (not known).
//
// The zero value has no ID, which [ParseInvalidation] rejects. An
// Invalidation is a plain value, safe to copy and to use from any
// goroutine.
type Invalidation struct {
	// ID is the key's ID, [Record.ID]. It must not be empty.
	ID string
	// Digest is the key's digest, or zero when it is not known.
	Digest Digest
}

// invalidationJSON is the wire form of an [Invalidation].
type invalidationJSON struct {
	ID     string `json:"id"`
	Digest string `json:"digest,omitempty"`
}

// AppendText appends the text form of m (see [Invalidation]) to b and
// returns the extended buffer. It implements [encoding.TextAppender]. It
// does not validate m: an empty ID is encoded as it is, and an ID that is
// not valid UTF-8 has its invalid bytes replaced by U+FFFD, as
// [encoding/json] does.
func (m Invalidation) AppendText(b []byte) ([]byte, error) {
	w := invalidationJSON{ID: m.ID}
	if !m.Digest.IsZero() {
		w.Digest = m.Digest.String()
	}
	enc, err := json.Marshal(w)
	if err != nil {
		return b, err
	}
	return append(b, enc...), nil
}

// MarshalText returns the text form of m, as [Invalidation.AppendText]
// does. It implements [encoding.TextMarshaler].
func (m Invalidation) MarshalText() ([]byte, error) { return m.AppendText(nil) }

// UnmarshalText sets m to the Invalidation s stands for, as
// [ParseInvalidation] does. It implements [encoding.TextUnmarshaler]. On
// error m is left unchanged.
func (m *Invalidation) UnmarshalText(s []byte) error {
	v, err := ParseInvalidation(string(s))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseInvalidation parses the text form of an [Invalidation], as made by
// [Invalidation.MarshalText] or built by a database. It requires a
// non-empty "id" and accepts a missing or empty "digest" (the zero
// Digest), hex digits in either case, and unknown fields (for messages
// from newer versions). Messages longer than [MaxInvalidationSize] bytes
// are rejected unread.
//
// Every error matches [ErrMalformedInvalidation] and never contains any
// part of s, which comes from the network. On error the result is the zero
// Invalidation.
func ParseInvalidation(s string) (Invalidation, error) {
	if len(s) > MaxInvalidationSize {
		return Invalidation{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformedInvalidation, MaxInvalidationSize)
	}
	var w invalidationJSON
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return Invalidation{}, fmt.Errorf("%w: not a JSON object with string fields id and digest", ErrMalformedInvalidation)
	}
	if w.ID == "" {
		return Invalidation{}, fmt.Errorf("%w: no id", ErrMalformedInvalidation)
	}
	m := Invalidation{ID: w.ID}
	if w.Digest != "" {
		if len(w.Digest) != 2*DigestSize {
			return Invalidation{}, fmt.Errorf("%w: digest is not %d hex digits", ErrMalformedInvalidation, 2*DigestSize)
		}
		if _, err := hex.Decode(m.Digest[:], []byte(w.Digest)); err != nil {
			return Invalidation{}, fmt.Errorf("%w: digest is not hex", ErrMalformedInvalidation)
		}
	}
	return m, nil
}
