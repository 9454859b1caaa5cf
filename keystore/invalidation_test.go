package keystore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestParseInvalidation(t *testing.T) {
	t.Parallel()
	d := keystore.Digest{0: 0xab, 31: 0x01}
	tests := []struct {
		name    string
		in      string
		id      string
		digest  keystore.Digest
		wantErr bool
	}{
		{"id and digest", `{"id":"key_1","digest":"` + d.String() + `"}`, "key_1", d, false},
		{"uppercase hex", `{"id":"key_1","digest":"` + strings.ToUpper(d.String()) + `"}`, "key_1", d, false},
		{"id only", `{"id":"key_1"}`, "key_1", keystore.Digest{}, false},
		{"empty digest", `{"id":"key_1","digest":""}`, "key_1", keystore.Digest{}, false},
		{"unknown field", `{"id":"key_1","v":2}`, "key_1", keystore.Digest{}, false},
		{"escaped id", `{"id":"key_\u00e9"}`, "key_é", keystore.Digest{}, false},
		{"longest accepted", `{"id":"` + strings.Repeat("k", keystore.MaxInvalidationSize-len(`{"id":""}`)) + `"}`,
			strings.Repeat("k", keystore.MaxInvalidationSize-len(`{"id":""}`)), keystore.Digest{}, false},
		{"no id", `{"digest":"` + d.String() + `"}`, "", keystore.Digest{}, true},
		{"empty id", `{"id":""}`, "", keystore.Digest{}, true},
		{"short digest", `{"id":"k","digest":"abcd"}`, "", keystore.Digest{}, true},
		{"non-hex digest", `{"id":"k","digest":"` + strings.Repeat("zz", 32) + `"}`, "", keystore.Digest{}, true},
		{"digest not a string", `{"id":"k","digest":1}`, "", keystore.Digest{}, true},
		{"id not a string", `{"id":7}`, "", keystore.Digest{}, true},
		{"not json", `not json`, "", keystore.Digest{}, true},
		{"empty", ``, "", keystore.Digest{}, true},
		{"null", `null`, "", keystore.Digest{}, true},
		{"array", `[]`, "", keystore.Digest{}, true},
		{"trailing garbage", `{"id":"k"} x`, "", keystore.Digest{}, true},
		{"too long", `{"id":"` + strings.Repeat("k", keystore.MaxInvalidationSize) + `"}`, "", keystore.Digest{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := keystore.ParseInvalidation(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseInvalidation(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, keystore.ErrMalformedInvalidation) {
				t.Fatalf("error %v does not match ErrMalformedInvalidation", err)
			}
			if got.ID != tc.id || got.Digest != tc.digest {
				t.Fatalf("ParseInvalidation(%q) = %q, %v; want %q, %v", tc.in, got.ID, got.Digest, tc.id, tc.digest)
			}

			// UnmarshalText agrees, and leaves its receiver alone on error.
			m := keystore.Invalidation{ID: "before"}
			err = m.UnmarshalText([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("UnmarshalText(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			want := keystore.Invalidation{ID: tc.id, Digest: tc.digest}
			if tc.wantErr {
				want = keystore.Invalidation{ID: "before"}
			}
			if m != want {
				t.Fatalf("after UnmarshalText(%q): %+v, want %+v", tc.in, m, want)
			}
		})
	}
}

func TestInvalidationMarshalText(t *testing.T) {
	t.Parallel()
	d := keystore.Digest{0: 0xab, 31: 0x01}
	tests := []struct {
		name string
		m    keystore.Invalidation
		want string
	}{
		{"id and digest", keystore.Invalidation{ID: "key_1", Digest: d}, `{"id":"key_1","digest":"` + d.String() + `"}`},
		{"zero digest left out", keystore.Invalidation{ID: "key_1"}, `{"id":"key_1"}`},
		{"quotes escaped", keystore.Invalidation{ID: `key_"quoted"`}, `{"id":"key_\"quoted\""}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.m.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("MarshalText(%+v) = %s, want %s", tc.m, got, tc.want)
			}
			appended, err := tc.m.AppendText([]byte("prefix:"))
			if err != nil || string(appended) != "prefix:"+tc.want {
				t.Errorf("AppendText(%+v) = %s, %v; want prefix:%s", tc.m, appended, err, tc.want)
			}
			back, err := keystore.ParseInvalidation(string(got))
			if err != nil || back != tc.m {
				t.Errorf("ParseInvalidation(%s) = %+v, %v; want %+v", got, back, err, tc.m)
			}
		})
	}
}

// FuzzParseInvalidation checks that ParseInvalidation never panics, that a
// failure matches ErrMalformedInvalidation with a zero result and does not
// echo its input, that a success has an ID, and that what parses survives
// a round trip through MarshalText.
func FuzzParseInvalidation(f *testing.F) {
	f.Add(`{"id":"key_1","digest":"` + strings.Repeat("ab", 32) + `"}`)
	f.Add(`{"id":"key_1"}`)
	f.Add(`{"id":"","digest":"00"}`)
	f.Add(`{"id":"k","digest":"` + strings.Repeat("zz", 32) + `"}`)
	f.Add(`not json`)
	f.Add(`null`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := keystore.ParseInvalidation(s)
		if err != nil {
			if !errors.Is(err, keystore.ErrMalformedInvalidation) {
				t.Fatalf("error %v does not match ErrMalformedInvalidation", err)
			}
			if m != (keystore.Invalidation{}) {
				t.Fatalf("error %v with result %+v", err, m)
			}
			if strings.Contains(err.Error(), s) && len(s) > 8 {
				t.Fatalf("error %q echoes the message", err)
			}
			return
		}
		if m.ID == "" {
			t.Fatal("empty ID accepted")
		}
		again, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if len(again) > keystore.MaxInvalidationSize {
			return // escaping made it longer than a message may be
		}
		back, err := keystore.ParseInvalidation(string(again))
		if err != nil || back != m {
			t.Fatalf("round trip of %q: %+v, %v", s, back, err)
		}
	})
}
