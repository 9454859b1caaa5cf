package redisfeed

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestParseMessage(t *testing.T) {
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
		{"too long", `{"id":"` + strings.Repeat("k", maxMessage) + `"}`, "", keystore.Digest{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, got, err := parseMessage(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseMessage(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errMessage) {
				t.Fatalf("error %v does not match errMessage", err)
			}
			if id != tc.id || got != tc.digest {
				t.Fatalf("parseMessage(%q) = %q, %v; want %q, %v", tc.in, id, got, tc.id, tc.digest)
			}
		})
	}
}

func TestEncodeMessage(t *testing.T) {
	t.Parallel()
	d := keystore.Digest{0: 0xab, 31: 0x01}
	tests := []struct {
		id   string
		d    keystore.Digest
		want string
	}{
		{"key_1", d, `{"id":"key_1","digest":"` + d.String() + `"}`},
		{"key_1", keystore.Digest{}, `{"id":"key_1"}`},
		{`key_"quoted"`, keystore.Digest{}, `{"id":"key_\"quoted\""}`},
	}
	for _, tc := range tests {
		got, err := encodeMessage(tc.id, tc.d)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("encodeMessage(%q, %v) = %s, want %s", tc.id, tc.d, got, tc.want)
		}
		id, d, err := parseMessage(got)
		if err != nil || id != tc.id || d != tc.d {
			t.Errorf("parseMessage(%s) = %q, %v, %v; want %q, %v", got, id, d, err, tc.id, tc.d)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add(`{"id":"key_1","digest":"` + strings.Repeat("ab", 32) + `"}`)
	f.Add(`{"id":"key_1"}`)
	f.Add(`{"id":"","digest":"00"}`)
	f.Add(`{"id":"k","digest":"` + strings.Repeat("zz", 32) + `"}`)
	f.Add(`not json`)
	f.Add(`null`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, s string) {
		id, d, err := parseMessage(s)
		if err != nil {
			if id != "" || !d.IsZero() {
				t.Fatalf("error %v with results %q, %v", err, id, d)
			}
			if strings.Contains(err.Error(), s) && len(s) > 8 {
				t.Fatalf("error %q echoes the message", err)
			}
			return
		}
		if id == "" {
			t.Fatal("empty ID accepted")
		}
		// What parses survives a round trip.
		again, err := encodeMessage(id, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) > maxMessage {
			return // escaping made it longer than a message may be
		}
		id2, d2, err := parseMessage(again)
		if err != nil || id2 != id || d2 != d {
			t.Fatalf("round trip of %q: %q, %v, %v", s, id2, d2, err)
		}
	})
}
