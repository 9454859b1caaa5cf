package charset

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSpan compares Span with a byte-at-a-time loop on strings of every
// length up to 40, with the first byte outside the table at every place.
func TestSpan(t *testing.T) {
	t.Parallel()
	var digits [256]bool
	for c := '0'; c <= '9'; c++ {
		digits[c] = true
	}
	want := func(s string) int {
		i := 0
		for i < len(s) && digits[s[i]] {
			i++
		}
		return i
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 41 {
		for range 500 {
			b := []byte(strings.Repeat("7", n))
			for range rng.IntN(3) {
				if n > 0 {
					b[rng.IntN(n)] = "x\x00\xff/:"[rng.IntN(5)]
				}
			}
			if got, w := Span(&digits, string(b)), want(string(b)); got != w {
				t.Fatalf("Span(%q) = %d, want %d", b, got, w)
			}
		}
	}
}
