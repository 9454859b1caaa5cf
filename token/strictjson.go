package token

import (
	"hash/maphash"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// This file holds the strict decoders the Verifier runs on untrusted input:
// base64url (RFC 7515 §2, no padding, canonical) and a JSON parser for the
// header and the claims that enforces I-JSON (RFC 7493): UTF-8 only, no
// lone surrogates, no duplicate member names, numbers within range.
//
// Why not encoding/json (as golang-jwt's Parser uses)? It is too lenient
// for a security boundary:
//
//   - a duplicate member is accepted and the last one wins, so
//     {"sub":"a","sub":"b"} means "b" to Go and may mean "a" to the next
//     parser that reads the same token;
//   - member names match struct fields case-insensitively, with Unicode
//     folding: "SUB", "Sub" and even "ſub" (U+017F LATIN SMALL LETTER LONG S)
//     all fill the Subject field, and "\u212Aid" (KELVIN SIGN) is "kid";
//   - invalid UTF-8 and lone surrogates are silently replaced by U+FFFD;
//   - a number of any size is accepted as a NumericDate (1e300 overflows
//     the int64 conversion into a meaningless time).
//
// This parser reads each member name exactly (after unescaping) and
// rejects any name that equals another member's name, or a registered
// name, under that same Unicode case folding without being exactly it: a
// lone "Exp" is as suspicious as "Exp" beside "exp", because a Go program
// that later decodes the same claims with encoding/json would read it as
// exp. Every other failure is ErrMalformed.

// Limits of the JSON parser. Tokens are capped at 8 KiB by default, so these
// bound the work without ever getting in the way of a real token.
const (
	// maxJSONDepth is the deepest nesting of objects and arrays accepted
	// (the top-level object is depth 1).
	maxJSONDepth = 16
	// maxJSONNames is the most member names the open objects may hold
	// together; it bounds the quadratic duplicate check.
	maxJSONNames = 256
)

// nameSeed keys the hash of folded member names. It is random per process,
// so nobody can craft two different names with the same hash; and a
// collision could only make a token fail, never pass.
var nameSeed = maphash.MakeSeed()

// parseErr is the outcome of a parse step: ok, malformed, or a duplicate
// name.
type parseErr uint8

const (
	parseOK parseErr = iota
	parseMalformed
	parseDuplicate
)

// jsonParser is a strict, allocation-light JSON parser over a string. Values
// without escapes are returned as substrings of the input; a value with
// escapes costs one allocation. The zero jsonParser is ready after reset.
type jsonParser struct {
	s     string
	i     int
	depth int
	// names holds the hashes of the folded names of the members of every
	// open object, outermost first; marks[d] is where object d's start.
	names []uint64
	// fold is the folded form of the last member name read.
	fold []byte
	// esc is scratch space for unescaping strings.
	esc []byte
	// topMark is where the top-level object's names start.
	topMark int
	// first reports whether the top-level iteration has not read a member
	// yet.
	first bool
}

func (p *jsonParser) reset(s string) {
	p.s = s
	p.i = 0
	p.depth = 0
	p.names = p.names[:0]
	p.fold = p.fold[:0]
	p.esc = p.esc[:0]
}

func (p *jsonParser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// end reports whether nothing but whitespace is left.
func (p *jsonParser) end() bool {
	p.ws()
	return p.i == len(p.s)
}

// beginTop starts reading the top-level value, which must be an object.
func (p *jsonParser) beginTop() parseErr {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return parseMalformed
	}
	p.i++
	p.depth = 1
	p.topMark = len(p.names)
	p.first = true
	return parseOK
}

// nextTop reads the next member name of the top-level object and the colon
// after it. It returns more=false at the closing brace, after which
// [jsonParser.end] must hold.
func (p *jsonParser) nextTop() (name string, more bool, e parseErr) {
	p.ws()
	if p.i >= len(p.s) {
		return "", false, parseMalformed
	}
	if p.s[p.i] == '}' {
		p.i++
		p.names = p.names[:p.topMark]
		p.depth = 0
		if !p.end() {
			return "", false, parseMalformed
		}
		return "", false, parseOK
	}
	if !p.first {
		if p.s[p.i] != ',' {
			return "", false, parseMalformed
		}
		p.i++
		p.ws()
	}
	p.first = false
	name, e = p.memberName(p.topMark)
	return name, e == parseOK, e
}

// memberName reads a member name and its colon, and checks it against the
// names already read since mark (the current object's).
func (p *jsonParser) memberName(mark int) (string, parseErr) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", parseMalformed
	}
	name, ok := p.str()
	if !ok {
		return "", parseMalformed
	}
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != ':' {
		return "", parseMalformed
	}
	p.i++
	p.ws()
	p.fold = foldName(p.fold[:0], name)
	h := maphash.Bytes(nameSeed, p.fold)
	for _, o := range p.names[mark:] {
		if o == h {
			return "", parseDuplicate
		}
	}
	if len(p.names) >= maxJSONNames {
		return "", parseMalformed
	}
	p.names = append(p.names, h)
	return name, parseOK
}

// foldName appends the case-folded form of name to dst, the way
// encoding/json folds member names when it matches them to struct fields
// (unicode.ToUpper(unicode.ToLower(r)) for each rune), so that two names
// encoding/json would confuse fold to the same bytes.
func foldName(dst []byte, name string) []byte {
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(name[i:])
		dst = utf8.AppendRune(dst, unicode.ToUpper(unicode.ToLower(r)))
		i += n
	}
	return dst
}

// str reads a string at p.i (which holds '"'). It rejects control
// characters, invalid UTF-8, unknown escapes and lone surrogates.
func (p *jsonParser) str() (string, bool) {
	p.i++ // the opening quote
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			return v, true
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && n <= 1 {
				return "", false
			}
			p.i += n
		}
	}
	return "", false
}

// strSlow finishes reading a string that contains escapes, from start (the
// first byte after the opening quote).
func (p *jsonParser) strSlow(start int) (string, bool) {
	b := append(p.esc[:0], p.s[start:p.i]...)
	defer func() { p.esc = b[:0] }()
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), true
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", false
			}
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", false
				}
				switch {
				case r >= 0xDC00 && r <= 0xDFFF:
					return "", false // a low surrogate first
				case r >= 0xD800 && r <= 0xDBFF:
					// A high surrogate must be followed by \u and a low one.
					if p.i+1 >= len(p.s) || p.s[p.i] != '\\' || p.s[p.i+1] != 'u' {
						return "", false
					}
					p.i += 2
					lo, ok := p.hex4()
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return "", false
					}
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			p.i++
		default:
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && n <= 1 {
				return "", false
			}
			b = append(b, p.s[p.i:p.i+n]...)
			p.i += n
		}
	}
	return "", false
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(p.s[p.i : p.i+4]) {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	p.i += 4
	return r, true
}

// number reads a number at p.i and returns its literal. The grammar is
// RFC 8259's: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (p *jsonParser) number() (string, bool) {
	start := p.i
	s := p.s
	i := p.i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
	default:
		return "", false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == d {
			return "", false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		if i == d {
			return "", false
		}
	}
	p.i = i
	return s[start:i], true
}

// literal reads true, false or null.
func (p *jsonParser) literal() bool {
	for _, l := range [...]string{"true", "false", "null"} {
		if len(p.s)-p.i >= len(l) && p.s[p.i:p.i+len(l)] == l {
			p.i += len(l)
			return true
		}
	}
	return false
}

// skip reads and discards any value, checking nested objects for duplicate
// names too.
func (p *jsonParser) skip() parseErr {
	if p.i >= len(p.s) {
		return parseMalformed
	}
	switch c := p.s[p.i]; {
	case c == '"':
		if _, ok := p.str(); !ok {
			return parseMalformed
		}
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '-' || ('0' <= c && c <= '9'):
		if _, ok := p.number(); !ok {
			return parseMalformed
		}
	default:
		if !p.literal() {
			return parseMalformed
		}
	}
	return parseOK
}

func (p *jsonParser) object() parseErr {
	if p.depth >= maxJSONDepth {
		return parseMalformed
	}
	p.depth++
	p.i++ // '{'
	mark := len(p.names)
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.depth--
		return parseOK
	}
	for {
		if _, e := p.memberName(mark); e != parseOK {
			return e
		}
		if e := p.skip(); e != parseOK {
			return e
		}
		p.ws()
		if p.i >= len(p.s) {
			return parseMalformed
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			p.ws()
		case '}':
			p.i++
			p.depth--
			p.names = p.names[:mark]
			return parseOK
		default:
			return parseMalformed
		}
	}
}

func (p *jsonParser) array() parseErr {
	if p.depth >= maxJSONDepth {
		return parseMalformed
	}
	p.depth++
	p.i++ // '['
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		p.depth--
		return parseOK
	}
	for {
		if e := p.skip(); e != parseOK {
			return e
		}
		p.ws()
		if p.i >= len(p.s) {
			return parseMalformed
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			p.ws()
		case ']':
			p.i++
			p.depth--
			return parseOK
		default:
			return parseMalformed
		}
	}
}

// stringValue reads a value that must be a string.
func (p *jsonParser) stringValue() (string, bool) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	return p.str()
}

// numericDateValue reads a value that must be a NumericDate (RFC 7519
// §2): a JSON number, not a string, greater than zero and below 2^53
// seconds (beyond which float64 seconds lose whole seconds), with or
// without a fraction or exponent. 1e300, -1, 0 and "123" all fail. The
// result is the number in whole seconds and nanoseconds.
func (p *jsonParser) numericDateValue() (sec, nsec int64, ok bool) {
	if p.i >= len(p.s) {
		return 0, 0, false
	}
	if c := p.s[p.i]; c != '-' && (c < '0' || c > '9') {
		return 0, 0, false
	}
	lit, ok := p.number()
	if !ok {
		return 0, 0, false
	}
	return parseNumericDate(lit)
}

// maxNumericDate is 2^53: every integer below it is exact in a float64.
const maxNumericDate = 1 << 53

func parseNumericDate(lit string) (sec, nsec int64, ok bool) {
	// The common case, a plain integer of at most 15 digits, without
	// strconv.
	if len(lit) <= 15 {
		var n int64
		plain := true
		for i := 0; i < len(lit); i++ {
			c := lit[i]
			if c < '0' || c > '9' {
				plain = false
				break
			}
			n = n*10 + int64(c-'0')
		}
		if plain {
			return n, 0, n > 0
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsNaN(f) || !(f > 0 && f < maxNumericDate) {
		return 0, 0, false
	}
	whole := math.Floor(f)
	frac := int64((f - whole) * 1e9)
	if frac >= 1e9 {
		frac = 1e9 - 1
	}
	return int64(whole), frac, true
}

// base64url decoding (RFC 4648 §5 without padding), strict: only the 64
// characters of the URL-safe alphabet, no '=', no whitespace or line
// breaks (which encoding/base64 skips even in Strict mode), no length
// that cannot be an encoding, and the unused low bits of the last
// character must be zero, so every byte string has exactly one encoding.

// b64Invalid marks a byte outside the alphabet in b64Index.
const b64Invalid = 0xFF

var b64Index = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = b64Invalid
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// b64DecodedLen returns the length of the decoding of n characters, or -1
// if no encoding has n characters.
func b64DecodedLen(n int) int {
	if n%4 == 1 {
		return -1
	}
	return n/4*3 + [4]int{0, 0, 1, 2}[n%4]
}

// b64Decode decodes s into dst, which must have room for
// b64DecodedLen(len(s)) bytes, and returns the number of bytes written.
func b64Decode(dst []byte, s string) (int, bool) {
	n := b64DecodedLen(len(s))
	if n < 0 || len(dst) < n {
		return 0, false
	}
	full := len(s) / 4 * 4
	j := 0
	for i := 0; i < full; i += 4 {
		a, b, c, d := b64Index[s[i]], b64Index[s[i+1]], b64Index[s[i+2]], b64Index[s[i+3]]
		if a|b|c|d > 63 { // b64Invalid has the high bits set
			return 0, false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[j], dst[j+1], dst[j+2] = byte(v>>16), byte(v>>8), byte(v)
		j += 3
	}
	switch len(s) - full {
	case 2:
		a, b := b64Index[s[full]], b64Index[s[full+1]]
		if a|b > 63 || b&0x0F != 0 {
			return 0, false
		}
		dst[j] = a<<2 | b>>4
		j++
	case 3:
		a, b, c := b64Index[s[full]], b64Index[s[full+1]], b64Index[s[full+2]]
		if a|b|c > 63 || c&0x03 != 0 {
			return 0, false
		}
		dst[j], dst[j+1] = a<<2|b>>4, b<<4|c>>2
		j += 2
	}
	return j, true
}
