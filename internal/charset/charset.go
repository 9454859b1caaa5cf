// Package charset checks strings against byte tables, eight bytes a step,
// for the parsers of keys and tokens in several packages. It is internal
// to keygate.
package charset

// Span returns the length of the longest prefix of s whose bytes all
// have t set. It reads eight bytes a step while they all do, then one at
// a time: a key or a token is read in a few steps. It does not allocate.
func Span(t *[256]bool, s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		b := s[i : i+8]
		if !(t[b[0]] && t[b[1]] && t[b[2]] && t[b[3]] && t[b[4]] && t[b[5]] && t[b[6]] && t[b[7]]) {
			break
		}
	}
	for i < len(s) && t[s[i]] {
		i++
	}
	return i
}
