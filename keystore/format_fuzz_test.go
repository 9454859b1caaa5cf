package keystore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// FuzzParse feeds Parse arbitrary strings. It checks that Parse never
// panics; that a success is a key of the right shape that Pattern finds
// and that Plaintext gives back unchanged; that a failure matches
// ErrMalformedKey and exactly one specific sentinel, with one of the
// format's four fixed messages (so no part of the input can be in it); and
// that the checksum catches every change of one character of a valid key
// into another base62 character. That last property is guaranteed, not
// just likely: CRC-32 detects every error confined to 32 consecutive bits,
// so changing one byte of the prefix and random part always changes the
// CRC, and the checksum characters are an injective encoding of the CRC, so
// changing one of them never matches.
func FuzzParse(f *testing.F) {
	for _, tv := range testVectors {
		f.Add(tv.key)
	}
	v := testVectors[0].key
	body := v[len("halfred_"):]
	for _, s := range []string{
		"", "halfred", "halfred_", "HALFRED_" + body, "Halfred_" + body, "halfred-" + body,
		body, v[:35], v + "A", " " + v, v + " ", "\t" + v, v + "\n", v[:35] + "\n",
		v[:20] + "+" + v[21:], v[:20] + "/" + v[21:], v[:35] + "=", v[:20] + "%41" + v[23:],
		v[:20] + "\u200b" + v[23:], v[:20] + "\u200b" + v[20:], v[:20] + "\u0430" + v[22:],
		v[:20] + "\uff11" + v[23:], v[:20] + "\x00" + v[21:], v[:20] + "-" + v[21:],
		"Bearer " + v, v + v, strings.Repeat("A", 100), "halfred_" + strings.Repeat("0", 28),
	} {
		f.Add(s)
	}

	format := keystore.DefaultFormat()
	re := format.Pattern()
	// The four messages Parse may return, taken from known failures.
	messages := map[string]error{}
	for in, sentinel := range map[string]error{
		"x":                                  keystore.ErrPrefix,
		"halfred_x":                          keystore.ErrLength,
		"halfred_" + strings.Repeat("+", 28): keystore.ErrCharset,
		testVectors[3].key:                   keystore.ErrChecksum,
	} {
		_, err := format.Parse(in)
		if !errors.Is(err, sentinel) {
			f.Fatalf("Parse(%q) = %v, want %v", in, err, sentinel)
		}
		messages[err.Error()] = sentinel
	}
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

	f.Fuzz(func(t *testing.T, in string) {
		k, err := format.Parse(in)
		if err != nil {
			if !k.IsZero() {
				t.Fatal("failed Parse returned a non-zero Key")
			}
			if !errors.Is(err, keystore.ErrMalformedKey) {
				t.Fatalf("error %v does not match ErrMalformedKey", err)
			}
			sentinel, ok := messages[err.Error()]
			if !ok {
				t.Fatalf("error message %q is not one of the fixed messages", err)
			}
			for _, s := range allSentinels {
				if errors.Is(err, s) != (s == sentinel) {
					t.Fatalf("errors.Is(%v, %v) = %v", err, s, !(s == sentinel))
				}
			}
			// A fixed message cannot echo the input. (Checking
			// strings.Contains(msg, in) instead would fail on inputs
			// such as "API keys" that merely occur in the message.)
			if shapeOK := errors.Is(err, keystore.ErrCharset) || errors.Is(err, keystore.ErrChecksum); shapeOK != format.Match(in) {
				t.Fatalf("Parse error %v contradicts Match = %v", err, format.Match(in))
			}
			return
		}
		if k.Plaintext() != in {
			t.Fatal("Plaintext() differs from the input")
		}
		if len(in) != format.Len() || !strings.HasPrefix(in, format.Prefix()) || !format.Match(in) {
			t.Fatalf("Parse accepted %q, which has the wrong shape", in)
		}
		if re.FindString(in) != in || re.FindString("token="+in+";") != in {
			t.Fatalf("Pattern does not match accepted key %q", in)
		}
		if k.Hint() != format.Hint(in) || len(k.Hint()) != len("halfred_…")+4 {
			t.Fatalf("Hint of accepted key: %q", k.Hint())
		}
		b := []byte(in)
		for i := len(format.Prefix()); i < len(b); i++ {
			orig := b[i]
			for j := 0; j < len(alphabet); j++ {
				if alphabet[j] == orig {
					continue
				}
				b[i] = alphabet[j]
				if _, err := format.Parse(string(b)); !errors.Is(err, keystore.ErrChecksum) {
					t.Fatalf("changing byte %d of accepted key %q to %q: Parse error %v, want ErrChecksum", i, in, alphabet[j], err)
				}
			}
			b[i] = orig
		}
	})
}
