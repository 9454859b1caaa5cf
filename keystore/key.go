package keystore

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Key is an API key: a secret. It comes from [Format.Generate] or
// [Format.Parse] and is shown only through [Key.Plaintext]. Everything else
// that prints or encodes a Key — fmt with any verb (a Key inside a struct
// printed with %+v too), log/slog, encoding/json and other users of
// [encoding.TextMarshaler] — gets its hint, such as "halfred_…a1B2": the
// prefix and the last 4 characters. There is deliberately no UnmarshalText:
// a key read from a request goes through [Format.Parse].
//
// A Key keeps its string behind a pointer, so that even what fmt prints by
// reflection (%p, a Key in an unexported struct field) shows an address
// rather than the key. For the same reason Key is not comparable with ==:
// compare hashes, or Plaintext with [crypto/subtle.ConstantTimeCompare].
//
// The zero Key is no key; its hint is "". Key is a small value and safe for
// concurrent use.
type Key struct {
	_   [0]func() // not comparable
	p   *byte     // the key's bytes (unsafe.StringData of the string)
	len int       // length of the key
	n   int       // length of the prefix and separator
}

// newKey returns the Key s, whose first n bytes are the prefix and
// separator. It refers to s: nothing is copied or allocated.
func newKey(s string, n int) Key {
	return Key{p: unsafe.StringData(s), len: len(s), n: n}
}

// Plaintext returns the whole key. It is the only way to get it: hand it to
// the key's owner once, and hash it with a [Hasher]; never log or store it.
func (k Key) Plaintext() string { return unsafe.String(k.p, k.len) }

// Hint returns the key's masked form, such as "halfred_…a1B2": the prefix and
// separator, "…" and the last 4 characters. It is safe to log, store and
// show. The zero Key's hint is "".
func (k Key) Hint() string {
	if k.len == 0 {
		return ""
	}
	s := k.Plaintext()
	return hint(s[:k.n], s[k.n:])
}

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.len == 0 }

// String returns the key's hint, not the key. Use [Key.Plaintext] for that.
func (k Key) String() string { return k.Hint() }

// GoString returns a Go-syntax form that shows the hint only, such as
// keystore.Key("halfred_…a1B2"); %#v prints it.
func (k Key) GoString() string { return "keystore.Key(" + strconv.Quote(k.Hint()) + ")" }

// Format implements [fmt.Formatter] so that no verb prints the key: %q
// prints the quoted hint, %#v [Key.GoString], and every other verb (%s %v
// %+v %x %d …) the hint as it is. A width pads the result with spaces, on
// the left unless the '-' flag is given.
func (k Key) Format(s fmt.State, verb rune) {
	var out string
	switch {
	case verb == 'v' && s.Flag('#'):
		out = k.GoString()
	case verb == 'q':
		out = strconv.Quote(k.Hint())
	default:
		out = k.Hint()
	}
	pad := 0
	if w, ok := s.Width(); ok {
		pad = w - utf8.RuneCountInString(out)
	}
	if pad > 0 && !s.Flag('-') {
		writeSpaces(s, pad)
	}
	io.WriteString(s, out)
	if pad > 0 && s.Flag('-') {
		writeSpaces(s, pad)
	}
}

// writeSpaces writes n spaces to w.
func writeSpaces(w io.Writer, n int) {
	const spaces = "                "
	for n > 0 {
		m := min(n, len(spaces))
		io.WriteString(w, spaces[:m])
		n -= m
	}
}

// LogValue implements [slog.LogValuer]: a Key is logged as its hint.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.Hint()) }

// MarshalText implements [encoding.TextMarshaler] with the key's hint, so
// that JSON, YAML and structured logs never carry the key. It never fails.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.Hint()), nil }
