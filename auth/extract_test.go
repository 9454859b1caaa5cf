package auth

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// newRequest returns a GET request with exactly the header map h: the map
// keys are used as given, not canonicalised, as a hand-built request (or
// an adapter from another framework) may have them.
func newRequest(target string, h http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if h == nil {
		h = http.Header{}
	}
	r.Header = h
	return r
}

// extractCase is one row of an extractor table. wantErr is the sentinel
// the error must match, nil for success.
type extractCase struct {
	name    string
	header  http.Header
	target  string
	want    string
	wantErr error
}

// runExtractCases checks e against cases, with the Guard's default cap
// (through Extract) and with cap max (through the capped method).
func runExtractCases(t *testing.T, e Extractor, cases []extractCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := tc.target
			if target == "" {
				target = "/"
			}
			got, err := e.Extract(newRequest(target, tc.header))
			checkExtract(t, got, err, tc.want, tc.wantErr)
			if err != nil {
				// The message helps, but never echoes what was sent.
				for _, vs := range tc.header {
					for _, v := range vs {
						if tok := secretPart(v); tok != "" && strings.Contains(err.Error(), tok) {
							t.Errorf("error %q echoes the value %q", err, tok)
						}
					}
				}
				var ae *Error
				if !errors.As(err, &ae) || ae.Message == "" {
					t.Errorf("error %v is not an *Error with a message", err)
				}
			}
		})
	}
}

// secretPart returns the part of a header value that a message must not
// echo: the value without its scheme, when that is long enough to search
// for.
func secretPart(v string) string {
	if len(v) >= 6 && strings.EqualFold(v[:6], "Bearer") {
		v = v[6:]
	}
	v = strings.TrimSpace(v)
	if len(v) < 5 {
		return ""
	}
	return v
}

func checkExtract(t *testing.T, got string, err error, want string, wantErr error) {
	t.Helper()
	if wantErr == nil {
		if err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		if got != want {
			t.Fatalf("credential = %q, want %q", got, want)
		}
		return
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("err = %v, want one matching %v", err, wantErr)
	}
	if got != "" {
		t.Fatalf("credential = %q with an error, want \"\"", got)
	}
}

func authz(values ...string) http.Header {
	return http.Header{"Authorization": values}
}

func TestBearerExtractor(t *testing.T) {
	t.Parallel()
	runExtractCases(t, BearerExtractor(), []extractCase{
		{name: "no Authorization header is no credential", header: http.Header{}},
		{name: "empty Authorization header is no credential", header: authz("")},
		{name: "RFC 6750 2.1 Bearer SP b64token", header: authz("Bearer tok3n"), want: "tok3n"},
		{name: "scheme is case-insensitive (lower case)", header: authz("bearer tok3n"), want: "tok3n"},
		{name: "scheme is case-insensitive (upper case)", header: authz("BEARER tok3n"), want: "tok3n"},
		{name: "1*SP allows two spaces", header: authz("Bearer  tok3n"), want: "tok3n"},
		{name: "single-character b64token", header: authz("Bearer x"), want: "x"},
		{name: "every b64token character", header: authz("Bearer aZ09-._~+/"), want: "aZ09-._~+/"},
		{name: "b64token trailing padding", header: authz("Bearer abc=="), want: "abc=="},
		{name: "JWT is a b64token", header: authz("Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"), want: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
		{name: "API key is a b64token", header: authz("Bearer halfred_3kTMd9x0aH2bQe7LpQ"), want: "halfred_3kTMd9x0aH2bQe7LpQ"},
		{name: "non-canonical map key is not a header (as for Header.Values)", header: http.Header{"authorization": {"Bearer tok3n"}}},

		{name: "separator is SP only, not TAB", header: authz("Bearer\ttok3n"), wantErr: ErrMalformedRequest},
		{name: "scheme must be followed by SP (Bearerx)", header: authz("Bearertok3n"), wantErr: ErrMalformedRequest},
		{name: "exactly one b64token (space inside)", header: authz("Bearer tok3n second"), wantErr: ErrMalformedRequest},
		{name: "comma is not a b64token character", header: authz("Bearer tok3n,"), wantErr: ErrMalformedRequest},
		{name: "auth-params are not a b64token", header: authz(`Bearer realm="x"`), wantErr: ErrMalformedRequest},
		{name: "quoted-string is not a b64token", header: authz(`Bearer "tok3n"`), wantErr: ErrMalformedRequest},
		{name: "backslash is not a b64token character", header: authz(`Bearer tok\3n`), wantErr: ErrMalformedRequest},
		{name: "scheme without a token", header: authz("Bearer"), wantErr: ErrMalformedRequest},
		{name: "scheme and SP without a token", header: authz("Bearer "), wantErr: ErrMalformedRequest},
		{name: "scheme and spaces without a token", header: authz("Bearer    "), wantErr: ErrMalformedRequest},
		{name: "non-ASCII is not a b64token character", header: authz("Bearer hälfred"), wantErr: ErrMalformedRequest},
		{name: "control character is not a b64token character", header: authz("Bearer tok\x013n"), wantErr: ErrMalformedRequest},
		{name: "DEL is not a b64token character", header: authz("Bearer tok\x7f3n"), wantErr: ErrMalformedRequest},
		{name: "= only as trailing padding (ab=c)", header: authz("Bearer ab=c"), wantErr: ErrMalformedRequest},
		{name: "= only after at least one character", header: authz("Bearer =="), wantErr: ErrMalformedRequest},
		{name: "padding then a second token", header: authz("Bearer abc= def"), wantErr: ErrMalformedRequest},
		{name: "two Authorization headers", header: authz("Bearer tok3n", "Bearer tok3n"), wantErr: ErrMalformedRequest},
		{name: "only the canonical key counts", header: http.Header{"Authorization": {"Bearer tok3n"}, "authorization": {"Bearer other"}}, want: "tok3n"},

		{name: "Basic scheme is not a bearer credential", header: authz("Basic dXNlcjpwYXNz")},
		{name: "Digest scheme is not a bearer credential", header: authz(`Digest username="u", realm="r"`)},
		{name: "Token scheme is not a bearer credential", header: authz("Token tok3n")},
		{name: "bare key without a scheme is not a bearer credential", header: authz("halfred_3kTMd9x0aH2bQe7LpQ")},
	})
}

func TestBearerExtractorLengthCap(t *testing.T) {
	t.Parallel()
	const max = 16
	cases := []struct {
		name    string
		value   string
		want    string
		wantErr error
	}{
		{"token of exactly the cap", "Bearer " + strings.Repeat("a", max), strings.Repeat("a", max), nil},
		{"token one byte over the cap", "Bearer " + strings.Repeat("a", max+1), "", ErrInvalidCredential},
		{"over-long value is rejected before parsing", strings.Repeat(" ", max+8), "", ErrInvalidCredential},
		{"over-long value of another scheme", "Basic " + strings.Repeat("a", max+2), "", ErrInvalidCredential},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := bearerExtractor{}.extract(newRequest("/", authz(tc.value)), max)
			checkExtract(t, got, err, tc.want, tc.wantErr)
			if err != nil && err != errTooLong {
				t.Fatalf("err = %v, want errTooLong", err)
			}
		})
	}
}

func TestBearerExtractorDefaultCap(t *testing.T) {
	t.Parallel()
	e := BearerExtractor()
	ok := strings.Repeat("a", defaultMaxCredentialLength)
	got, err := e.Extract(newRequest("/", authz("Bearer "+ok)))
	checkExtract(t, got, err, ok, nil)
	_, err = e.Extract(newRequest("/", authz("Bearer "+ok+"a")))
	checkExtract(t, "", err, "", ErrInvalidCredential)
}

func TestHeaderExtractor(t *testing.T) {
	t.Parallel()
	runExtractCases(t, HeaderExtractor("api-key"), []extractCase{
		{name: "absent header is no credential", header: http.Header{"Authorization": {"Bearer x"}}},
		{name: "canonical map key", header: http.Header{"Api-Key": {"halfred_3kTMd9x0aH2bQe7LpQ"}}, want: "halfred_3kTMd9x0aH2bQe7LpQ"},
		{name: "non-canonical map key is not a header (as for Header.Values)", header: http.Header{"api-key": {"halfred_3kTMd9x0aH2bQe7LpQ"}}},
		{name: "JWT", header: http.Header{"Api-Key": {"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}}, want: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
		{name: "visible ASCII punctuation", header: http.Header{"Api-Key": {"a!#$%&()*+-./:;<=>?@[]^_`{|}~"}}, want: "a!#$%&()*+-./:;<=>?@[]^_`{|}~"},

		{name: "two api-key headers", header: http.Header{"Api-Key": {"halfred_one", "halfred_one"}}, wantErr: ErrMalformedRequest},
		{name: "only the canonical api-key counts", header: http.Header{"Api-Key": {"halfred_one"}, "api-key": {"halfred_two"}}, want: "halfred_one"},
		{name: "empty value", header: http.Header{"Api-Key": {""}}, wantErr: ErrMalformedRequest},
		{name: "Bearer prefix in api-key", header: http.Header{"Api-Key": {"Bearer halfred_3kTMd9x0aH2bQe7LpQ"}}, wantErr: ErrMalformedRequest},
		{name: "space inside", header: http.Header{"Api-Key": {"halfred_3kTMd9 x0aH2bQe7LpQ"}}, wantErr: ErrMalformedRequest},
		{name: "comma (a list of values)", header: http.Header{"Api-Key": {"halfred_one,halfred_two"}}, wantErr: ErrMalformedRequest},
		{name: "double quotes", header: http.Header{"Api-Key": {`"halfred_one"`}}, wantErr: ErrMalformedRequest},
		{name: "single quotes", header: http.Header{"Api-Key": {`'halfred_one'`}}, wantErr: ErrMalformedRequest},
		{name: "backslash", header: http.Header{"Api-Key": {`halfred\one`}}, wantErr: ErrMalformedRequest},
		{name: "non-ASCII", header: http.Header{"Api-Key": {"hälfred_one"}}, wantErr: ErrMalformedRequest},
		{name: "control character", header: http.Header{"Api-Key": {"halfred\x00one"}}, wantErr: ErrMalformedRequest},
		{name: "tab", header: http.Header{"Api-Key": {"halfred\tone"}}, wantErr: ErrMalformedRequest},
	})
}

func TestHeaderExtractorNameIsCanonicalised(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"api-key", "Api-Key", "API-KEY", "aPi-KeY"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := HeaderExtractor(name).Extract(newRequest("/", http.Header{"Api-Key": {"halfred_one"}}))
			checkExtract(t, got, err, "halfred_one", nil)
		})
	}
}

func TestHeaderExtractorLengthCap(t *testing.T) {
	t.Parallel()
	e := HeaderExtractor("api-key").(cappedExtractor)
	got, err := e.extract(newRequest("/", http.Header{"Api-Key": {"abcd"}}), 4)
	checkExtract(t, got, err, "abcd", nil)
	// Over the cap even though it is malformed too: the length is checked
	// first, without looking at the bytes.
	_, err = e.extract(newRequest("/", http.Header{"Api-Key": {"ab d\x00"}}), 4)
	if err != errTooLong {
		t.Fatalf("err = %v, want errTooLong", err)
	}
}

func TestCookieExtractor(t *testing.T) {
	t.Parallel()
	cookie := func(vs ...string) http.Header { return http.Header{"Cookie": vs} }
	runExtractCases(t, CookieExtractor("session"), []extractCase{
		{name: "no Cookie header", header: http.Header{}},
		{name: "other cookies only", header: cookie("theme=dark; lang=en")},
		{name: "the cookie", header: cookie("theme=dark; session=halfred_one; lang=en"), want: "halfred_one"},
		{name: "quoted cookie value is unquoted", header: cookie(`session="halfred_one"`), want: "halfred_one"},
		{name: "empty cookie (cleared) is no credential", header: cookie("session=")},
		{name: "cookie in two Cookie headers", header: cookie("session=halfred_one", "session=halfred_two"), wantErr: ErrMalformedRequest},
		{name: "cookie twice in one header", header: cookie("session=halfred_one; session=halfred_one"), wantErr: ErrMalformedRequest},
		{name: "comma in the value", header: cookie("session=halfred_one,halfred_two"), wantErr: ErrMalformedRequest},
	})
	t.Run("over the cap", func(t *testing.T) {
		t.Parallel()
		e := CookieExtractor("session").(cappedExtractor)
		_, err := e.extract(newRequest("/", cookie("session=abcde")), 4)
		if err != errTooLong {
			t.Fatalf("err = %v, want errTooLong", err)
		}
	})
}

func TestQueryExtractor(t *testing.T) {
	t.Parallel()
	runExtractCases(t, QueryExtractor("api_key"), []extractCase{
		{name: "no query", target: "/v1/models"},
		{name: "other parameters only", target: "/v1/models?limit=10&order=asc"},
		{name: "the parameter", target: "/v1/models?limit=10&api_key=halfred_one&order=asc", want: "halfred_one"},
		{name: "percent-encoded value", target: "/?api_key=abc%2Bdef%3D%3D", want: "abc+def=="},
		{name: "percent-encoded name", target: "/?api%5Fkey=halfred_one", want: "halfred_one"},
		{name: "parameter given twice", target: "/?api_key=halfred_one&api_key=halfred_one", wantErr: ErrMalformedRequest},
		{name: "empty value", target: "/?api_key=", wantErr: ErrMalformedRequest},
		{name: "name without a value", target: "/?api_key", wantErr: ErrMalformedRequest},
		{name: "bad percent-encoding", target: "/?api_key=halfred%zzone", wantErr: ErrMalformedRequest},
		{name: "encoded space inside", target: "/?api_key=halfred+one", wantErr: ErrMalformedRequest},
		{name: "encoded non-ASCII", target: "/?api_key=h%C3%A4lfred", wantErr: ErrMalformedRequest},
	})
	t.Run("over the cap", func(t *testing.T) {
		t.Parallel()
		e := QueryExtractor("api_key").(cappedExtractor)
		got, err := e.extract(newRequest("/?api_key=%61%62%63%64", nil), 4)
		checkExtract(t, got, err, "abcd", nil)
		for _, target := range []string{"/?api_key=abcde", "/?api_key=%61%62%63%64%65", "/?api_key=" + strings.Repeat("a", 13)} {
			if _, err := e.extract(newRequest(target, nil), 4); err != errTooLong {
				t.Errorf("%s: err = %v, want errTooLong", target, err)
			}
		}
	})
	t.Run("nil URL", func(t *testing.T) {
		t.Parallel()
		got, err := QueryExtractor("api_key").Extract(&http.Request{Header: http.Header{}})
		checkExtract(t, got, err, "", nil)
	})
}

func TestExtractorFunc(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("boom")
	var seen *http.Request
	f := ExtractorFunc(func(r *http.Request) (string, error) {
		seen = r
		return "cred", sentinel
	})
	r := newRequest("/", nil)
	got, err := f.Extract(r)
	if got != "cred" || err != sentinel || seen != r {
		t.Fatalf("Extract = %q, %v (request %p), want cred, boom (request %p)", got, err, seen, r)
	}
}

func TestIsCredentialToken(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		want := c >= 0x21 && c <= 0x7e && !strings.ContainsRune(`"',\`, rune(c))
		if got := isCredentialToken("a" + string([]byte{byte(c)}) + "b"); got != want {
			t.Errorf("isCredentialToken with byte %#x = %v, want %v", c, got, want)
		}
	}
}

func TestIsB64TokenChar(t *testing.T) {
	t.Parallel()
	const set = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(set, byte(c)) >= 0
		if got := isB64TokenChar(byte(c)); got != want {
			t.Errorf("isB64TokenChar(%#x) = %v, want %v", c, got, want)
		}
	}
}

// TestCheckB64TokenAgainstGrammar checks checkB64Token, which reads eight
// bytes a step, against the RFC 6750 grammar as a regular expression, on
// random strings of every length up to 40 over an alphabet of token
// characters, padding and a few bytes that are neither.
func TestCheckB64TokenAgainstGrammar(t *testing.T) {
	t.Parallel()
	grammar := regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)
	const alphabet = "aZ09-._~+/==== ,\"\x00\x7f\xff"
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 40; n++ {
		for range 2000 {
			b := make([]byte, n)
			for i := range b {
				// Mostly token characters, so that long valid runs occur.
				if rng.IntN(8) == 0 {
					b[i] = alphabet[rng.IntN(len(alphabet))]
				} else {
					b[i] = alphabet[rng.IntN(10)]
				}
			}
			tok := string(b)
			if got, want := checkB64Token(tok) == nil, grammar.MatchString(tok); got != want {
				t.Fatalf("checkB64Token(%q) accepts: %v, the grammar: %v", tok, got, want)
			}
		}
	}
}
