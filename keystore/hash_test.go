package keystore_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/testalloc"
	"github.com/keygate/keygate/keystore"
)

// testPepper is a 32-byte pepper that is easy to spot in output.
var testPepper = []byte("PEPPER-0123456789-abcdefghijklmn")

// hmacSHA256 is the reference: crypto/hmac's HMAC-SHA-256.
func hmacSHA256(key []byte, msg string) keystore.Digest {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return keystore.Digest(m.Sum(nil))
}

func mustHasher(t testing.TB, pepper []byte, previous ...[]byte) *keystore.Hasher {
	t.Helper()
	h, err := keystore.NewHasher(pepper, previous...)
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	return h
}

// TestHasherRFC4231 checks the HMAC-SHA-256 results of RFC 4231, section
// 4. Test case 2 (the 4-byte key "Jefe") is left out: NewHasher refuses
// peppers shorter than 16 bytes, as TestNewHasherShortPepper checks. Test
// case 5 is about truncated output, which Digest does not do.
func TestHasherRFC4231(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  []byte
		data string
		want string
	}{
		{"case 1", bytes.Repeat([]byte{0x0b}, 20), "Hi There",
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{"case 3", bytes.Repeat([]byte{0xaa}, 20), strings.Repeat("\xdd", 50),
			"773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
		{"case 4", []byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"), strings.Repeat("\xcd", 50),
			"82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
		{"case 6", bytes.Repeat([]byte{0xaa}, 131), "Test Using Larger Than Block-Size Key - Hash Key First",
			"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{"case 7", bytes.Repeat([]byte{0xaa}, 131), "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
			"9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := mustHasher(t, tt.key)
			d := h.Digest(tt.data)
			if got := hex.EncodeToString(d[:]); got != tt.want {
				t.Errorf("Digest = %s, want %s", got, tt.want)
			}
			if d != hmacSHA256(tt.key, tt.data) {
				t.Errorf("Digest differs from crypto/hmac")
			}
		})
	}
}

func TestHasherMatchesReference(t *testing.T) {
	t.Parallel()
	peppered := mustHasher(t, testPepper)
	plain := mustHasher(t, nil)
	var zero keystore.Hasher
	var nilHasher *keystore.Hasher
	// Lengths around the internal 256-byte chunk and the 64-byte block.
	lengths := []int{0, 1, 36, 55, 56, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1000, 4096}
	for _, n := range lengths {
		key := strings.Repeat("halfred_0123456789", n/18+1)[:n]
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			if got, want := peppered.Digest(key), hmacSHA256(testPepper, key); got != want {
				t.Errorf("HMAC Digest(%d bytes) = %s, want %s", n, got, want)
			}
			want := keystore.Digest(sha256.Sum256([]byte(key)))
			if got := plain.Digest(key); got != want {
				t.Errorf("plain Digest(%d bytes) = %s, want %s", n, got, want)
			}
			if got := zero.Digest(key); got != want {
				t.Errorf("zero Hasher Digest(%d bytes) = %s, want %s", n, got, want)
			}
			if got := nilHasher.Digest(key); got != want {
				t.Errorf("nil Hasher Digest(%d bytes) = %s, want %s", n, got, want)
			}
			// Repeated calls reuse pooled state: results must not change.
			for range 3 {
				if peppered.Digest(key) != hmacSHA256(testPepper, key) || plain.Digest(key) != want {
					t.Fatalf("repeated Digest(%d bytes) changed", n)
				}
			}
		})
	}
}

func TestHasherPeppers(t *testing.T) {
	t.Parallel()
	key := testVectors[0].key
	p1 := bytes.Repeat([]byte{1}, 16)
	p2 := bytes.Repeat([]byte{2}, 32)
	p3 := bytes.Repeat([]byte{3}, 64)
	h := mustHasher(t, p1, p2, nil, p3)
	if got := h.Peppers(); got != 4 {
		t.Fatalf("Peppers() = %d, want 4", got)
	}
	want := []keystore.Digest{
		hmacSHA256(p1, key),
		hmacSHA256(p2, key),
		sha256.Sum256([]byte(key)),
		hmacSHA256(p3, key),
	}
	for i, w := range want {
		if got := h.DigestAt(i, key); got != w {
			t.Errorf("DigestAt(%d) = %s, want %s", i, got, w)
		}
	}
	if h.Digest(key) != h.DigestAt(0, key) {
		t.Error("Digest != DigestAt(0)")
	}
	seen := map[keystore.Digest]bool{}
	for _, w := range want {
		if seen[w] {
			t.Error("two peppers give the same digest")
		}
		seen[w] = true
	}
	if h.Digest(key) == h.Digest(testVectors[1].key) {
		t.Error("two keys give the same digest")
	}
	for _, h := range []*keystore.Hasher{mustHasher(t, nil), mustHasher(t, []byte{}), new(keystore.Hasher), nil} {
		if h.Peppers() != 1 {
			t.Errorf("Peppers() of a Hasher without previous peppers = %d", h.Peppers())
		}
	}
}

func TestHasherDigestAtOutOfRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    *keystore.Hasher
		i    int
	}{
		{"negative", mustHasher(t, testPepper), -1},
		{"one past current", mustHasher(t, testPepper), 1},
		{"one past previous", mustHasher(t, testPepper, nil), 2},
		{"zero Hasher", new(keystore.Hasher), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("DigestAt did not panic")
				}
				if s := fmt.Sprint(r); !strings.HasPrefix(s, "keystore: ") || strings.Contains(s, string(testPepper)) {
					t.Errorf("panic value %q", s)
				}
			}()
			tt.h.DigestAt(tt.i, "halfred_x")
		})
	}
}

func TestNewHasherShortPepper(t *testing.T) {
	t.Parallel()
	short := []byte("Jefe-0123456789") // 15 bytes
	tests := []struct {
		name     string
		pepper   []byte
		previous [][]byte
		ok       bool
	}{
		{"nil", nil, nil, true},
		{"empty", []byte{}, nil, true},
		{"16 bytes", []byte("0123456789abcdef"), nil, true},
		{"1 byte", []byte{1}, nil, false},
		{"15 bytes", short, nil, false},
		{"short previous", testPepper, [][]byte{short}, false},
		{"short second previous", testPepper, [][]byte{nil, short}, false},
		{"empty previous", testPepper, [][]byte{nil, {}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := keystore.NewHasher(tt.pepper, tt.previous...)
			if tt.ok {
				if err != nil || h == nil {
					t.Fatalf("NewHasher = %v, %v; want a Hasher", h, err)
				}
				return
			}
			if !errors.Is(err, keystore.ErrWeakPepper) || h != nil {
				t.Fatalf("NewHasher = %v, %v; want nil, ErrWeakPepper", h, err)
			}
			if strings.Contains(err.Error(), string(short)) || strings.Contains(err.Error(), "Jefe") {
				t.Errorf("error %q contains the pepper", err)
			}
		})
	}
}

func TestNewHasherCopiesPeppers(t *testing.T) {
	t.Parallel()
	key := testVectors[0].key
	cur := bytes.Clone(testPepper)
	prev := bytes.Repeat([]byte{7}, 20)
	previous := [][]byte{prev}
	h := mustHasher(t, cur, previous...)
	want0, want1 := hmacSHA256(testPepper, key), hmacSHA256(bytes.Repeat([]byte{7}, 20), key)
	for i := range cur {
		cur[i] = 0
	}
	for i := range prev {
		prev[i] = 0
	}
	previous[0] = nil
	if h.Digest(key) != want0 || h.DigestAt(1, key) != want1 {
		t.Error("changing the caller's pepper slices changed the Hasher")
	}
}

func TestHasherDigestDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random; run without -race")
	}
	hashers := map[string]*keystore.Hasher{
		"sha256": mustHasher(t, nil),
		"hmac":   mustHasher(t, testPepper),
		"zero":   new(keystore.Hasher),
	}
	for name, h := range hashers {
		for _, n := range []int{0, 36, 128, 256, 1000} {
			key := strings.Repeat("k", n)
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				var d keystore.Digest
				if allocs := testalloc.Min(200, func() { d = h.Digest(key) }); allocs != 0 {
					t.Errorf("Digest(%d bytes) allocates %v times, want 0", n, allocs)
				}
				_ = d
			})
		}
	}
}

func TestHasherConcurrent(t *testing.T) {
	t.Parallel()
	h := mustHasher(t, testPepper, nil)
	keys := make([]string, 64)
	want0 := make([]keystore.Digest, len(keys))
	want1 := make([]keystore.Digest, len(keys))
	for i := range keys {
		keys[i] = strings.Repeat(fmt.Sprintf("halfred_%04d", i), 1+i%40) // up to 480 bytes
		want0[i] = hmacSHA256(testPepper, keys[i])
		want1[i] = sha256.Sum256([]byte(keys[i]))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 500 {
				i := (w*31 + j) % len(keys)
				if h.Digest(keys[i]) != want0[i] || h.DigestAt(1, keys[i]) != want1[i] {
					t.Errorf("concurrent Digest of key %d is wrong", i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestHasherDoesNotPrintPeppers(t *testing.T) {
	t.Parallel()
	prev := []byte("OLDPEPPER-abcdefghijklmnopqrstuv")
	h := mustHasher(t, testPepper, prev)
	secrets := []string{
		string(testPepper), string(prev),
		hex.EncodeToString(testPepper), hex.EncodeToString(prev),
		fmt.Sprint(testPepper), fmt.Sprint(prev), // as decimal byte lists
		"PEPPER", "80 69 80 80", // fragments
	}
	type config struct {
		Name   string
		Hasher *keystore.Hasher
		Value  keystore.Hasher
	}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		outs = append(outs,
			fmt.Sprintf(verb, h), fmt.Sprintf(verb, *h),
			fmt.Sprintf(verb, config{"x", h, *h}), fmt.Sprintf(verb, &config{"x", h, *h}))
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("h", "hasher", h, "cfg", config{"x", h, *h})
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("h", "hasher", h, "value", *h)
	outs = append(outs, buf.String())
	if b, err := json.Marshal(config{"x", h, *h}); err == nil {
		outs = append(outs, string(b))
	}
	for _, out := range outs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output %q contains the pepper (%q)", out, s)
			}
		}
	}
	if got, want := h.String(), "keystore.Hasher(HMAC-SHA-256, 2 peppers)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := fmt.Sprintf("%v", mustHasher(t, nil)), "keystore.Hasher(SHA-256, 1 pepper)"; got != want {
		t.Errorf("plain Hasher prints %q, want %q", got, want)
	}
	if !strings.Contains(buf.String(), "peppers=2") || !strings.Contains(buf.String(), `"peppers":2`) {
		t.Errorf("slog output lacks the pepper count:\n%s", buf.String())
	}
}
