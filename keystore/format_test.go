package keystore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/keystore"
)

// testVectors are published keys of the default format (prefix "halfred",
// separator '_', 22 random base62 characters, 6 checksum characters) and
// what Parse says of them. The README copies this table; keep them in sync.
//
// The valid keys were made by Generate reading from math/rand/v2's ChaCha8
// seeded with "keygate test vector N" (zero-padded to 32 bytes); see
// TestTestVectorsAreGenerated. Each invalid one is a valid key with one
// change that keeps its length and charset: the last character changed,
// one letter's case flipped, and two adjacent characters swapped.
var testVectors = []struct {
	name string
	key  string
	err  error  // nil, or the sentinel Parse's error matches
	hint string // Hint of a valid key
}{
	{"valid 1", "halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As4", nil, "halfred_…6As4"},
	{"valid 2", "halfred_0L0snBD49ZeT9YJHfjQdYu0muEPJ", nil, "halfred_…uEPJ"},
	{"valid 3", "halfred_Zm1qH04mjMhq6cWivW68zr32EItR", nil, "halfred_…EItR"},
	{"bad checksum: last character changed", "halfred_j2ZlRIrhd6fGKP9VhMTNK54V6As5", keystore.ErrChecksum, ""},
	{"bad checksum: case flipped", "halfred_0l0snBD49ZeT9YJHfjQdYu0muEPJ", keystore.ErrChecksum, ""},
	{"bad checksum: characters swapped", "halfred_mZ1qH04mjMhq6cWivW68zr32EItR", keystore.ErrChecksum, ""},
}

// allSentinels are the specific Parse sentinels; a Parse error matches
// exactly one of them.
var allSentinels = []error{keystore.ErrPrefix, keystore.ErrLength, keystore.ErrCharset, keystore.ErrChecksum}

// seededReader returns a deterministic random source for seed.
func seededReader(seed string) io.Reader {
	var s [32]byte
	copy(s[:], seed)
	return rand.NewChaCha8(s)
}

// raceEnabled reports whether the test binary was built with -race, under
// which sync.Pool drops items at random and allocation counts mean nothing.
var raceEnabled = func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}()

// checkParseErr fails t unless err matches ErrMalformedKey and want, and no
// other specific sentinel.
func checkParseErr(t *testing.T, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse: got no error, want %v", want)
	}
	if !errors.Is(err, keystore.ErrMalformedKey) {
		t.Errorf("errors.Is(%v, ErrMalformedKey) = false", err)
	}
	for _, s := range allSentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, s == want)
		}
	}
}

func TestTestVectors(t *testing.T) {
	t.Parallel()
	f := keystore.DefaultFormat()
	for _, tv := range testVectors {
		t.Run(tv.name, func(t *testing.T) {
			t.Parallel()
			k, err := f.Parse(tv.key)
			if tv.err != nil {
				checkParseErr(t, err, tv.err)
				if !k.IsZero() {
					t.Errorf("Parse failed but returned a non-zero Key")
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s) = %v", tv.name, err)
			}
			if k.Plaintext() != tv.key {
				t.Errorf("Plaintext() differs from the input")
			}
			if got := k.Hint(); got != tv.hint {
				t.Errorf("Hint() = %q, want %q", got, tv.hint)
			}
		})
	}
}

// TestTestVectorsAreGenerated checks that the valid test vectors are what
// Generate makes from their seeds, which pins down the rejection sampling
// and the checksum encoding.
func TestTestVectorsAreGenerated(t *testing.T) {
	t.Parallel()
	for i, tv := range testVectors[:3] {
		f := keystore.MustFormat(keystore.WithRandom(seededReader(fmt.Sprintf("keygate test vector %d", i+1))))
		k, err := f.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if k.Plaintext() != tv.key {
			t.Errorf("vector %d: Generate gave %s, want %s", i+1, k.Hint(), tv.hint)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	v := testVectors[0].key // a valid key
	const p = len("halfred_")
	body := v[p:]
	// replace returns v with the bytes at [i, i+len(s)) replaced by s.
	replace := func(i int, s string) string { return v[:i] + s + v[i+len(s):] }
	// flip returns v with its i-th byte changed to another base62 character.
	flip := func(i int) string {
		c := byte('A')
		if v[i] == 'A' {
			c = 'B'
		}
		return v[:i] + string(c) + v[i+1:]
	}
	huge := strings.Repeat("x", 1<<20)

	tests := []struct {
		name string
		in   string
		want error // nil means valid
	}{
		{"valid 1", testVectors[0].key, nil},
		{"valid 2", testVectors[1].key, nil},
		{"valid 3", testVectors[2].key, nil},

		{"upper-case prefix", "HALFRED_" + body, keystore.ErrPrefix},
		{"capitalized prefix", "Halfred_" + body, keystore.ErrPrefix},
		{"other separator", "halfred-" + body, keystore.ErrPrefix},
		{"dot separator", "halfred." + body, keystore.ErrPrefix},
		{"no prefix", body, keystore.ErrPrefix},
		{"no separator", "halfred" + body, keystore.ErrPrefix},
		{"empty", "", keystore.ErrPrefix},
		{"prefix without separator", "halfred", keystore.ErrPrefix},
		{"leading space", " " + v, keystore.ErrPrefix},
		{"leading tab", "\t" + v, keystore.ErrPrefix},
		{"bearer scheme left in", "Bearer " + v, keystore.ErrPrefix},
		{"other vendor prefix", "sk_live_" + body, keystore.ErrPrefix},

		{"prefix only", "halfred_", keystore.ErrLength},
		{"one character short", v[:len(v)-1], keystore.ErrLength},
		{"one character long", v + "A", keystore.ErrLength},
		{"checksum missing", v[:p+22], keystore.ErrLength},
		{"trailing space", v + " ", keystore.ErrLength},
		{"trailing newline", v + "\n", keystore.ErrLength},
		{"trailing CRLF", v + "\r\n", keystore.ErrLength},
		{"zero-width space inserted", v[:20] + "\u200b" + v[20:], keystore.ErrLength},
		{"percent-encoding inserted", v[:20] + "%41" + v[21:], keystore.ErrLength},
		{"1 MiB", huge, keystore.ErrLength},
		{"1 MiB after the prefix", "halfred_" + huge, keystore.ErrLength},
		{"valid key repeated", v + v, keystore.ErrLength},

		{"plus", replace(12, "+"), keystore.ErrCharset},
		{"slash", replace(12, "/"), keystore.ErrCharset},
		{"padding", replace(len(v)-1, "="), keystore.ErrCharset},
		{"percent-encoded A", replace(20, "%41"), keystore.ErrCharset},
		{"space inside", replace(20, " "), keystore.ErrCharset},
		{"space in place of last", replace(len(v)-1, " "), keystore.ErrCharset},
		{"tab", replace(p, "\t"), keystore.ErrCharset},
		{"newline", replace(len(v)-1, "\n"), keystore.ErrCharset},
		{"NUL", replace(p+5, "\x00"), keystore.ErrCharset},
		{"dash", replace(p+5, "-"), keystore.ErrCharset},
		{"underscore", replace(p+5, "_"), keystore.ErrCharset},
		{"zero-width space in place of 3 bytes", replace(20, "\u200b"), keystore.ErrCharset},
		{"Cyrillic a homoglyph", replace(20, "\u0430"), keystore.ErrCharset},
		{"fullwidth digit", replace(20, "\uff11"), keystore.ErrCharset},
		{"fullwidth digits", replace(20, "\uff11\uff12"), keystore.ErrCharset},
		{"byte 0x80", replace(p, "\x80"), keystore.ErrCharset},
		{"byte 0xff", replace(p, "\xff"), keystore.ErrCharset},
		{"invalid UTF-8", replace(p, "\xc3\x28"), keystore.ErrCharset},

		{"first random character changed", flip(p), keystore.ErrChecksum},
		{"last random character changed", flip(p + 21), keystore.ErrChecksum},
		{"first checksum character changed", flip(p + 22), keystore.ErrChecksum},
		{"last checksum character changed", flip(len(v) - 1), keystore.ErrChecksum},
		{"two characters swapped", v[:p] + body[1:2] + body[:1] + body[2:], keystore.ErrChecksum},
		{"checksum of another key", v[:len(v)-6] + testVectors[1].key[len(v)-6:], keystore.ErrChecksum},
		{"all zeros", "halfred_" + strings.Repeat("0", 28), keystore.ErrChecksum},
	}
	f := keystore.DefaultFormat()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := f.Parse(tt.in)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Parse = %v, want success", err)
				}
				if k.Plaintext() != tt.in || k.IsZero() {
					t.Errorf("Parse returned a key that is not the input")
				}
				return
			}
			checkParseErr(t, err, tt.want)
			if !k.IsZero() {
				t.Errorf("failed Parse returned a non-zero Key")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "keystore: ") {
				t.Errorf("message %q lacks the package prefix", msg)
			}
			// The message never holds the input (unless the input is a
			// piece of the prefix it names), nor any 5 bytes of the valid
			// key's body the inputs are built from.
			if !strings.HasPrefix("halfred_", tt.in) && strings.Contains(msg, tt.in) {
				t.Errorf("message %q contains the input", msg)
			}
			for i := 0; i+5 <= len(body); i++ {
				if strings.Contains(msg, body[i:i+5]) {
					t.Errorf("message %q contains part of the key %q", msg, body[i:i+5])
				}
			}
		})
	}
}

func TestParseErrorMessages(t *testing.T) {
	t.Parallel()
	f := keystore.DefaultFormat()
	tests := []struct {
		name, in, want string
	}{
		{"prefix", "HALFRED_x", `keystore: wrong API key prefix: API keys start with "halfred_"`},
		{"length", "halfred_x", `keystore: wrong API key length: API keys are 36 characters long`},
		{"charset", "halfred_" + strings.Repeat("+", 28), `keystore: invalid character in API key: after "halfred_", API keys contain only the letters A-Z and a-z and the digits 0-9`},
		{"checksum", testVectors[3].key, `keystore: API key checksum mismatch: the key was mistyped or truncated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := f.Parse(tt.in)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error = %v, want %s", err, tt.want)
			}
		})
	}
	custom := keystore.MustFormat(keystore.WithPrefix("acme2"), keystore.WithSeparator('-'), keystore.WithRandomLength(30))
	_, err := custom.Parse("halfred_x")
	if want := `keystore: wrong API key prefix: API keys start with "acme2-"`; err == nil || err.Error() != want {
		t.Errorf("custom prefix error = %v, want %s", err, want)
	}
	_, err = custom.Parse("acme2-x")
	if want := `keystore: wrong API key length: API keys are 42 characters long`; err == nil || err.Error() != want {
		t.Errorf("custom length error = %v, want %s", err, want)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	f := keystore.DefaultFormat()
	inputs := map[string]string{
		"valid":    testVectors[0].key,
		"prefix":   "HALFRED_" + testVectors[0].key[8:],
		"length":   testVectors[0].key + "A",
		"huge":     strings.Repeat("x", 1<<16),
		"charset":  testVectors[0].key[:20] + "+" + testVectors[0].key[21:],
		"checksum": testVectors[3].key,
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var sink error
			allocs := testalloc.Min(100, func() {
				_, err := f.Parse(in)
				sink = err
			})
			if allocs != 0 {
				t.Errorf("Parse(%s) allocates %v times, want 0", name, allocs)
			}
			// errors.Is must not allocate either: callers test every
			// sentinel on the request path.
			allocs = testalloc.Min(100, func() {
				if errors.Is(sink, keystore.ErrCharset) && errors.Is(sink, keystore.ErrMalformedKey) {
					sink = nil
				}
			})
			if allocs != 0 {
				t.Errorf("errors.Is on a Parse error allocates %v times, want 0", allocs)
			}
		})
	}
	if n := testalloc.Min(100, func() { _ = f.Match(testVectors[0].key) }); n != 0 {
		t.Errorf("Match allocates %v times, want 0", n)
	}
}

// TestParseChecksumDetectsSingleChanges changes every character of each
// valid vector to every other base62 character: CRC-32 detects every error
// confined to 32 consecutive bits, so a one-byte change in the random part
// always changes the CRC, and a change in the checksum part no longer
// matches the (injective) base62 encoding of the CRC. Swapping two adjacent
// characters is a 16-bit burst and is detected too.
func TestParseChecksumDetectsSingleChanges(t *testing.T) {
	t.Parallel()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	f := keystore.DefaultFormat()
	for _, tv := range testVectors[:3] {
		b := []byte(tv.key)
		for i := len("halfred_"); i < len(b); i++ {
			orig := b[i]
			for j := 0; j < len(alphabet); j++ {
				if alphabet[j] == orig {
					continue
				}
				b[i] = alphabet[j]
				if _, err := f.Parse(string(b)); !errors.Is(err, keystore.ErrChecksum) {
					t.Fatalf("%s with byte %d set to %q: Parse error = %v, want ErrChecksum", tv.name, i, alphabet[j], err)
				}
			}
			b[i] = orig
			if i+1 < len(b) && b[i] != b[i+1] {
				b[i], b[i+1] = b[i+1], b[i]
				if _, err := f.Parse(string(b)); !errors.Is(err, keystore.ErrChecksum) {
					t.Fatalf("%s with bytes %d and %d swapped: Parse error = %v, want ErrChecksum", tv.name, i, i+1, err)
				}
				b[i], b[i+1] = b[i+1], b[i]
			}
		}
	}
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	f := keystore.DefaultFormat()
	const n = 10000
	seen := make(map[string]bool, n)
	re := f.Pattern()
	for range n {
		k, err := f.Generate()
		if err != nil {
			t.Fatal(err)
		}
		s := k.Plaintext()
		if len(s) != 36 || f.Len() != 36 {
			t.Fatalf("key length %d, Len() %d, want 36", len(s), f.Len())
		}
		if !strings.HasPrefix(s, "halfred_") || f.Prefix() != "halfred_" {
			t.Fatalf("key %s lacks the prefix halfred_", k.Hint())
		}
		p, err := f.Parse(s)
		if err != nil {
			t.Fatalf("Parse(generated key %s) = %v", k.Hint(), err)
		}
		if p.Plaintext() != s || p.Hint() != k.Hint() {
			t.Fatalf("Parse(k.Plaintext()) differs from k")
		}
		if !re.MatchString(s) || !f.Match(s) {
			t.Fatalf("Pattern or Match does not match generated key %s", k.Hint())
		}
		if seen[s] {
			t.Fatalf("duplicate key %s", k.Hint())
		}
		seen[s] = true
	}
}

func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	a := keystore.MustFormat(keystore.WithRandom(seededReader("same seed")))
	b := keystore.MustFormat(keystore.WithRandom(seededReader("same seed")))
	c := keystore.MustFormat(keystore.WithRandom(seededReader("other seed")))
	for i := range 100 {
		ka, errA := a.Generate()
		kb, errB := b.Generate()
		kc, errC := c.Generate()
		if errA != nil || errB != nil || errC != nil {
			t.Fatal(errA, errB, errC)
		}
		if ka.Plaintext() != kb.Plaintext() {
			t.Fatalf("key %d: same seed, different keys %s and %s", i, ka, kb)
		}
		if ka.Plaintext() == kc.Plaintext() {
			t.Fatalf("key %d: different seeds, same key %s", i, ka)
		}
	}
}

// TestGenerateRejectionSampling feeds Generate bytes it must drop (248 to
// 255, which b%62 would map onto '0' to '7' a second time) and checks that
// the key's characters come from the bytes after them, one each, and that
// Generate reads no byte past the last one it needs.
func TestGenerateRejectionSampling(t *testing.T) {
	t.Parallel()
	var src []byte
	for b := 248; b < 256; b++ {
		src = append(src, byte(b))
	}
	for b := range 22 {
		src = append(src, byte(b+62), 255) // 62+b maps to the same character as b
	}
	r := bytes.NewReader(src)
	f := keystore.MustFormat(keystore.WithRandom(r), keystore.WithChecksum(false))
	k, err := f.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Plaintext(), "halfred_0123456789ABCDEFGHIJKL"; got != want {
		t.Errorf("Generate = %q, want %q", got, want)
	}
	if r.Len() != 1 {
		t.Errorf("Generate left %d bytes unread, want 1 (the last rejected byte)", r.Len())
	}
}

// TestGenerateUniform counts 220,000 random characters from a seeded
// source: with rejection sampling every one of the 62 has probability 1/62.
// Reducing bytes modulo 62 without rejection would give '0' to '7'
// probability 5/256 and the rest 4/256, a chi-square statistic in the
// thousands; with 61 degrees of freedom, 100 has a probability of about
// 0.001 under the uniform distribution. The seed is fixed, so the test is
// deterministic.
func TestGenerateUniform(t *testing.T) {
	t.Parallel()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	f := keystore.MustFormat(keystore.WithRandom(seededReader("uniformity")), keystore.WithRandomLength(64), keystore.WithChecksum(false))
	var counts [256]int
	total := 0
	for range 220000 / 64 {
		k, err := f.Generate()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []byte(k.Plaintext()[len(f.Prefix()):]) {
			counts[c]++
			total++
		}
	}
	expected := float64(total) / 62
	chi2 := 0.0
	for i := 0; i < len(alphabet); i++ {
		c := float64(counts[alphabet[i]])
		chi2 += (c - expected) * (c - expected) / expected
		if math.Abs(c-expected) > 0.1*expected {
			t.Errorf("character %q: %v occurrences, want %.0f ± 10%%", alphabet[i], c, expected)
		}
	}
	t.Logf("chi-square over %d characters: %.1f (61 degrees of freedom)", total, chi2)
	if chi2 > 100 {
		t.Errorf("chi-square = %.1f > 100: characters are not uniform", chi2)
	}
}

func TestGenerateReaderFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("entropy source unplugged")
	tests := []struct {
		name  string
		r     io.Reader
		match error // nil: any error
	}{
		{"error", iotest.ErrReader(boom), boom},
		{"empty", bytes.NewReader(nil), io.EOF},
		{"short", bytes.NewReader([]byte{1, 2, 3}), io.ErrUnexpectedEOF},
		{"timeout after some bytes", iotest.TimeoutReader(bytes.NewReader(make([]byte, 10))), iotest.ErrTimeout},
		{"never a usable byte", constReader(0xff), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := keystore.MustFormat(keystore.WithRandom(tt.r))
			k, err := f.Generate()
			if err == nil {
				t.Fatalf("Generate = %s, nil; want an error", k)
			}
			if tt.match != nil && !errors.Is(err, tt.match) {
				t.Errorf("Generate error %v does not wrap %v", err, tt.match)
			}
			if !strings.HasPrefix(err.Error(), "keystore: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if !k.IsZero() {
				t.Errorf("failed Generate returned a non-zero key")
			}
		})
	}
}

// constReader returns b forever.
type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

func TestGenerateConcurrentCustomReader(t *testing.T) {
	t.Parallel()
	// A ChaCha8 is not safe for concurrent use; the Format must serialize
	// its reads (the race detector checks).
	f := keystore.MustFormat(keystore.WithRandom(seededReader("concurrent")))
	const workers, each = 4, 200
	keys := make(chan string, workers*each)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				k, err := f.Generate()
				if err != nil {
					t.Error(err)
					return
				}
				keys <- k.Plaintext()
			}
		}()
	}
	for range workers {
		<-done
	}
	close(keys)
	seen := map[string]bool{}
	for k := range keys {
		if seen[k] {
			t.Fatal("duplicate key from concurrent Generate")
		}
		seen[k] = true
	}
}

func TestPattern(t *testing.T) {
	t.Parallel()
	f := keystore.DefaultFormat()
	re := f.Pattern()
	if re != f.Pattern() {
		t.Error("Pattern compiles a new regexp on each call")
	}
	if got, want := re.String(), `\bhalfred_[0-9A-Za-z]{28}\b`; got != want {
		t.Errorf("Pattern() = %s, want %s", got, want)
	}
	v := testVectors[0].key
	bad := testVectors[3].key
	body := v[len("halfred_"):]

	matches := []struct{ name, text string }{
		{"alone", v},
		{"bad checksum (Pattern checks shape only)", "x " + bad + " y"},
		{"in a query string", "token=" + v + ";"},
		{"in a header", "Authorization: Bearer " + v + "\r\n"},
		{"in JSON", `{"api_key":"` + v + `"}`},
		{"in an env file", "HALFRED_API_KEY=" + v + "\n"},
		{"in a URL path", "https://x.test/keys/" + v + "/x"},
		{"followed by a dash", v + "-x"},
		{"followed by a dot", v + ". Done"},
		{"quoted in Go", `"` + v + `"`},
	}
	for _, m := range matches {
		t.Run("match/"+m.name, func(t *testing.T) {
			t.Parallel()
			want := v
			if strings.Contains(m.text, bad) {
				want = bad
			}
			if got := re.FindString(m.text); got != want {
				t.Errorf("FindString = %q, want the key", got)
			}
		})
	}

	misses := []struct{ name, text string }{
		{"upper-case prefix", "HALFRED_" + body},
		{"capitalized prefix", "Halfred_" + body},
		{"dash separator", "halfred-" + body},
		{"no separator", "halfred" + body},
		{"27 body characters", "halfred_" + body[1:]},
		{"29 body characters", "halfred_" + body + "A"},
		{"dash in the body", "halfred_" + body[:10] + "-" + body[11:]},
		{"plus in the body", "halfred_" + body[:10] + "+" + body[11:]},
		{"letters glued before", "xhalfred_" + body},
		{"digit glued before", "9halfred_" + body},
		{"underscore glued before", "_halfred_" + body},
		{"letters glued after", v + "x"},
		{"digits glued after", v + "00"},
		{"underscore glued after", v + "_"},
		{"non-ASCII in the body", "halfred_" + body[:10] + "\u0430" + body[12:]},
		{"prefix only", "halfred_"},
	}
	for _, m := range misses {
		t.Run("miss/"+m.name, func(t *testing.T) {
			t.Parallel()
			if got := re.FindString(m.text); got != "" {
				t.Errorf("FindString(%q) = %q, want no match", m.text, got)
			}
		})
	}

	t.Run("generated keys in text", func(t *testing.T) {
		t.Parallel()
		for range 1000 {
			k, err := f.Generate()
			if err != nil {
				t.Fatal(err)
			}
			text := "token=" + k.Plaintext() + ";"
			if got := re.FindString(text); got != k.Plaintext() {
				t.Fatalf("Pattern does not find generated key %s in text", k)
			}
		}
	})

	t.Run("custom format", func(t *testing.T) {
		t.Parallel()
		g := keystore.MustFormat(keystore.WithPrefix("acme"), keystore.WithSeparator('-'), keystore.WithChecksum(false), keystore.WithRandomLength(24))
		if got, want := g.Pattern().String(), `\bacme-[0-9A-Za-z]{24}\b`; got != want {
			t.Errorf("Pattern() = %s, want %s", got, want)
		}
		k, err := g.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !g.Pattern().MatchString("x " + k.Plaintext() + " y") {
			t.Errorf("custom Pattern does not match its key")
		}
		if re.MatchString(k.Plaintext()) {
			t.Errorf("default Pattern matches a custom format's key")
		}
	})
}

func TestNewFormat(t *testing.T) {
	t.Parallel()
	valid := []struct {
		name   string
		opts   []keystore.FormatOption
		prefix string
		length int
	}{
		{"default", nil, "halfred_", 36},
		{"nil option", []keystore.FormatOption{nil}, "halfred_", 36},
		{"custom prefix", []keystore.FormatOption{keystore.WithPrefix("acme")}, "acme_", 33},
		{"one-letter prefix", []keystore.FormatOption{keystore.WithPrefix("a")}, "a_", 30},
		{"32-character prefix", []keystore.FormatOption{keystore.WithPrefix("a" + strings.Repeat("0", 31))}, "a" + strings.Repeat("0", 31) + "_", 61},
		{"dash separator", []keystore.FormatOption{keystore.WithSeparator('-')}, "halfred-", 36},
		{"no checksum", []keystore.FormatOption{keystore.WithChecksum(false)}, "halfred_", 30},
		{"32 random", []keystore.FormatOption{keystore.WithRandomLength(32)}, "halfred_", 46},
		{"64 random", []keystore.FormatOption{keystore.WithRandomLength(64)}, "halfred_", 78},
		{"last option wins", []keystore.FormatOption{keystore.WithPrefix("x"), keystore.WithPrefix("sk2")}, "sk2_", 32},
		{"everything", []keystore.FormatOption{keystore.WithPrefix("live"), keystore.WithSeparator('-'), keystore.WithRandomLength(40), keystore.WithChecksum(false), keystore.WithRandom(seededReader("x"))}, "live-", 45},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := keystore.NewFormat(tt.opts...)
			if err != nil {
				t.Fatalf("NewFormat = %v", err)
			}
			if f.Prefix() != tt.prefix || f.Len() != tt.length {
				t.Errorf("Prefix, Len = %q, %d; want %q, %d", f.Prefix(), f.Len(), tt.prefix, tt.length)
			}
			k, err := f.Generate()
			if err != nil {
				t.Fatal(err)
			}
			s := k.Plaintext()
			if len(s) != tt.length || !strings.HasPrefix(s, tt.prefix) {
				t.Errorf("generated key has length %d and hint %s", len(s), k)
			}
			if _, err := f.Parse(s); err != nil {
				t.Errorf("Parse(own key) = %v", err)
			}
			if !f.Pattern().MatchString(s) {
				t.Errorf("Pattern does not match own key")
			}
			if _, err := keystore.DefaultFormat().Parse(s); (err == nil) != (tt.prefix == "halfred_" && tt.length == 36) {
				t.Errorf("default format's Parse of this key: %v", err)
			}
		})
	}

	invalid := []struct {
		name string
		opt  keystore.FormatOption
	}{
		{"21 random", keystore.WithRandomLength(21)},
		{"zero random", keystore.WithRandomLength(0)},
		{"negative random", keystore.WithRandomLength(-1)},
		{"65 random", keystore.WithRandomLength(65)},
		{"upper-case prefix", keystore.WithPrefix("Halfred")},
		{"all upper-case prefix", keystore.WithPrefix("HALFRED")},
		{"empty prefix", keystore.WithPrefix("")},
		{"prefix with underscore", keystore.WithPrefix("half_red")},
		{"prefix with dash", keystore.WithPrefix("half-red")},
		{"prefix ending in separator", keystore.WithPrefix("halfred_")},
		{"prefix starting with a digit", keystore.WithPrefix("1abc")},
		{"33-character prefix", keystore.WithPrefix("a" + strings.Repeat("b", 32))},
		{"prefix with space", keystore.WithPrefix("half red")},
		{"non-ASCII prefix", keystore.WithPrefix("hälfred")},
		{"dot separator", keystore.WithSeparator('.')},
		{"space separator", keystore.WithSeparator(' ')},
		{"letter separator", keystore.WithSeparator('x')},
		{"NUL separator", keystore.WithSeparator(0)},
		{"nil reader", keystore.WithRandom(nil)},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := keystore.NewFormat(tt.opt)
			if !errors.Is(err, keystore.ErrWeakFormat) || f != nil {
				t.Fatalf("NewFormat = %v, %v; want nil, ErrWeakFormat", f, err)
			}
			if err.Error() == keystore.ErrWeakFormat.Error() {
				t.Errorf("error %q gives no reason", err)
			}
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("MustFormat did not panic")
				}
			}()
			keystore.MustFormat(tt.opt)
		})
	}
}

func TestDefaultFormat(t *testing.T) {
	t.Parallel()
	d := keystore.DefaultFormat()
	if d != keystore.DefaultFormat() {
		t.Error("DefaultFormat returns a different *Format on each call")
	}
	// The zero Format and a nil *Format behave like the default.
	for name, f := range map[string]*keystore.Format{"zero": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if f.Prefix() != d.Prefix() || f.Len() != d.Len() || f.Pattern() != d.Pattern() {
				t.Errorf("%s Format differs from the default", name)
			}
			if _, err := f.Parse(testVectors[0].key); err != nil {
				t.Errorf("Parse = %v", err)
			}
			if _, err := f.Parse(testVectors[3].key); !errors.Is(err, keystore.ErrChecksum) {
				t.Errorf("Parse(bad checksum) = %v", err)
			}
			k, err := f.Generate()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Parse(k.Plaintext()); err != nil {
				t.Errorf("default Parse of a zero Format's key = %v", err)
			}
			if !f.Match(k.Plaintext()) || f.Hint(k.Plaintext()) != k.Hint() {
				t.Errorf("Match or Hint disagree with the default format")
			}
		})
	}
}

func TestFormatMatch(t *testing.T) {
	t.Parallel()
	f := keystore.DefaultFormat()
	tests := []struct {
		in   string
		want bool
	}{
		{testVectors[0].key, true},
		{testVectors[3].key, true}, // shape only: the checksum is not checked
		{"halfred_" + strings.Repeat("+", 28), true},
		{"HALFRED_" + testVectors[0].key[8:], false},
		{testVectors[0].key[:35], false},
		{testVectors[0].key + "A", false},
		{"", false},
		{"halfred_", false},
	}
	for _, tt := range tests {
		if got := f.Match(tt.in); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFormatHint(t *testing.T) {
	t.Parallel()
	f := keystore.DefaultFormat()
	tests := []struct {
		name, in, want string
	}{
		{"valid key", testVectors[0].key, "halfred_…6As4"},
		{"bad checksum", testVectors[3].key, "halfred_…6As5"},
		{"empty", "", "halfred_…"},
		{"prefix only", "halfred_", "halfred_…"},
		{"7-character body", "halfred_abcdefg", "halfred_…"},
		{"8-character body", "halfred_abcdefgh", "halfred_…efgh"},
		{"no prefix", "abcdefghijkl", "halfred_…ijkl"},
		{"short, no prefix", "abc", "halfred_…"},
		{"other prefix", "sk_live_0123456789", "halfred_…6789"},
		{"trailing newline", testVectors[0].key + "\n", "halfred_…"},
		{"trailing symbols", "halfred_abcdefgh+/", "halfred_…"},
		{"symbol among the last four", "halfred_abcdefgh+xy", "halfred_…xy"},
		{"multi-byte end", "halfred_abcdefgh\u0430", "halfred_…"},
		{"invalid UTF-8 end", "halfred_abcdefgh\xc3", "halfred_…"},
		{"huge", strings.Repeat("a", 1<<20) + "WXYZ", "halfred_…WXYZ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := f.Hint(tt.in); got != tt.want {
				t.Errorf("Hint(%.40q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	custom := keystore.MustFormat(keystore.WithPrefix("acme"), keystore.WithSeparator('-'))
	if got, want := custom.Hint("acme-0123456789abcdef"), "acme-…cdef"; got != want {
		t.Errorf("custom Hint = %q, want %q", got, want)
	}
}

func BenchmarkParse(b *testing.B) {
	f := keystore.DefaultFormat()
	for _, bm := range []struct{ name, in string }{
		{"valid", testVectors[0].key},
		{"malformed-prefix", "HALFRED_" + testVectors[0].key[8:]},
		{"bad-checksum", testVectors[3].key},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = f.Parse(bm.in)
			}
		})
	}
}

func BenchmarkGenerate(b *testing.B) {
	for _, bm := range []struct {
		name string
		f    *keystore.Format
	}{
		{"crypto-rand", keystore.DefaultFormat()},
		{"chacha8", keystore.MustFormat(keystore.WithRandom(seededReader("bench")))},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.f.Generate(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
