package keystore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// mustParse parses s with the default format.
func mustParse(t testing.TB, s string) keystore.Key {
	t.Helper()
	k, err := keystore.DefaultFormat().Parse(s)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return k
}

// leaks reports whether out holds more of key than its hint shows: any 5
// consecutive bytes of the part after the prefix.
func leaks(out, key string) bool {
	body := key[len("halfred_"):]
	for i := 0; i+5 <= len(body); i++ {
		if strings.Contains(out, body[i:i+5]) {
			return true
		}
	}
	return false
}

func TestKeyPlaintext(t *testing.T) {
	t.Parallel()
	k := mustParse(t, testVectors[0].key)
	if got := k.Plaintext(); got != testVectors[0].key {
		t.Errorf("Plaintext() is not the parsed string")
	}
	if k.IsZero() {
		t.Error("IsZero() = true for a parsed key")
	}
	if got, want := k.Hint(), "halfred_…6As4"; got != want {
		t.Errorf("Hint() = %q, want %q", got, want)
	}
	if k.Hint() != keystore.DefaultFormat().Hint(k.Plaintext()) {
		t.Errorf("Key.Hint and Format.Hint differ")
	}
	g, err := keystore.MustFormat(keystore.WithPrefix("acme"), keystore.WithSeparator('-')).Generate()
	if err != nil {
		t.Fatal(err)
	}
	if h, p := g.Hint(), g.Plaintext(); h != "acme-…"+p[len(p)-4:] {
		t.Errorf("custom format key Hint() = %q", h)
	}
}

func TestKeyZero(t *testing.T) {
	t.Parallel()
	var k keystore.Key
	if !k.IsZero() || k.Plaintext() != "" || k.Hint() != "" || k.String() != "" {
		t.Errorf("zero Key: IsZero %v, Plaintext %q, Hint %q, String %q", k.IsZero(), k.Plaintext(), k.Hint(), k.String())
	}
	if got, want := fmt.Sprintf("%#v", k), `keystore.Key("")`; got != want {
		t.Errorf("%%#v of zero Key = %s, want %s", got, want)
	}
	if b, err := k.MarshalText(); err != nil || len(b) != 0 {
		t.Errorf("MarshalText = %q, %v", b, err)
	}
}

// secretHolder keeps a Key in an unexported field, which fmt prints by
// reflection without calling the Key's methods.
type secretHolder struct {
	name string
	key  keystore.Key
}

func TestKeyFormat(t *testing.T) {
	t.Parallel()
	key := testVectors[0].key
	k := mustParse(t, key)
	const hint = "halfred_…6As4"
	type holder struct {
		Name string
		Key  keystore.Key
	}
	type nested struct {
		Owner  string
		Holder holder
		Ptr    *holder
		Keys   []keystore.Key
		ByName map[string]keystore.Key
	}
	h := holder{Name: "ci", Key: k}
	n := nested{Owner: "ops", Holder: h, Ptr: &h, Keys: []keystore.Key{k, k}, ByName: map[string]keystore.Key{"a": k}}

	tests := []struct {
		name   string
		format string
		arg    any
		want   string // "" means: only check that nothing leaks
	}{
		{"%s", "%s", k, hint},
		{"%v", "%v", k, hint},
		{"%+v", "%+v", k, hint},
		{"%#v", "%#v", k, `keystore.Key("halfred_…6As4")`},
		{"%q", "%q", k, `"halfred_…6As4"`},
		{"%x", "%x", k, hint},
		{"%X", "%X", k, hint},
		{"%d", "%d", k, hint},
		{"%T", "%T", k, "keystore.Key"},
		{"%t (bad verb)", "%t", k, hint},
		{"%20s", "%20s", k, "       " + hint},
		{"%-20s|", "%-20s|", k, hint + "       |"},
		{"%.3s precision ignored", "%.3s", k, hint},
		{"pointer %v", "%v", &k, ""},
		{"pointer %s", "%s", &k, ""},
		{"Println", "", k, hint + "\n"},
		{"struct %v", "%v", h, "{ci " + hint + "}"},
		{"struct %+v", "%+v", h, "{Name:ci Key:" + hint + "}"},
		{"struct %#v", "%#v", h, `keystore_test.holder{Name:"ci", Key:keystore.Key("halfred_…6As4")}`},
		{"struct %s", "%s", h, "{ci " + hint + "}"},
		{"struct %x", "%x", h, ""},
		{"struct pointer %+v", "%+v", &h, "&{Name:ci Key:" + hint + "}"},
		{"nested %+v", "%+v", n, ""},
		{"nested %#v", "%#v", n, ""},
		{"slice %v", "%v", []keystore.Key{k}, "[" + hint + "]"},
		{"%p (bypasses Formatter)", "%p", k, ""},
		{"struct %p", "%p", h, ""},
		{"unexported field %+v (bypasses Formatter)", "%+v", secretHolder{name: "ci", key: k}, ""},
		{"unexported field %#v", "%#v", secretHolder{name: "ci", key: k}, ""},
		{"unexported field pointer %v", "%v", &secretHolder{name: "ci", key: k}, ""},
		{"any %v", "%v", []any{k}, "[" + hint + "]"},
		{"error wrapping", "", fmt.Errorf("bad key %v: %w", k, errors.New("x")), "bad key " + hint + ": x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out string
			if tt.format == "" {
				out = fmt.Sprintln(tt.arg)
			} else {
				out = fmt.Sprintf(tt.format, tt.arg)
			}
			if leaks(out, key) {
				t.Fatalf("output %q contains the key", out)
			}
			if tt.want != "" && out != tt.want {
				t.Errorf("got %q, want %q", out, tt.want)
			}
		})
	}
}

func TestKeySlog(t *testing.T) {
	t.Parallel()
	key := testVectors[1].key
	k := mustParse(t, key)
	type request struct {
		Path string
		Key  keystore.Key
	}
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	}
	for name, newHandler := range handlers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(newHandler(&buf))
			log.Info("key", "key", k)
			log.Info("pointer", "key", &k)
			log.Info("any", slog.Any("key", k))
			log.Info("struct", "req", request{Path: "/v1/me", Key: k})
			log.Info("struct pointer", "req", &request{Path: "/v1/me", Key: k})
			log.Info("group", slog.Group("auth", "key", k))
			log.With("key", k).Info("with")
			log.Info("slice", "keys", []keystore.Key{k})
			out := buf.String()
			if leaks(out, key) {
				t.Fatalf("%s log contains the key:\n%s", name, out)
			}
			if got := strings.Count(out, "halfred_…uEPJ"); got != 8 {
				t.Errorf("%s log shows the hint %d times, want 8:\n%s", name, got, out)
			}
		})
	}
}

func TestKeyJSON(t *testing.T) {
	t.Parallel()
	key := testVectors[2].key
	k := mustParse(t, key)
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"key", k, `"halfred_…EItR"`},
		{"pointer", &k, `"halfred_…EItR"`},
		{"struct", struct {
			ID  string       `json:"id"`
			Key keystore.Key `json:"key"`
		}{"key_1", k}, `{"id":"key_1","key":"halfred_…EItR"}`},
		{"map value", map[string]keystore.Key{"k": k}, `{"k":"halfred_…EItR"}`},
		{"slice", []keystore.Key{k}, `["halfred_…EItR"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if leaks(string(b), key) {
				t.Fatalf("JSON %s contains the key", b)
			}
			if string(b) != tt.want {
				t.Errorf("JSON = %s, want %s", b, tt.want)
			}
		})
	}
	// There is no UnmarshalText: decoding into a Key must fail rather than
	// build a Key that bypassed Parse.
	var got struct{ Key keystore.Key }
	if err := json.Unmarshal([]byte(`{"Key":"`+key+`"}`), &got); err == nil && !got.Key.IsZero() {
		t.Errorf("json.Unmarshal built a Key from a string")
	}
}
