package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// fuzzMax is the length cap in the fuzz tests: small, so that the fuzzer
// reaches it.
const fuzzMax = 64

var bearerSeeds = []string{
	"", "Bearer x", "bearer x", "BEARER x", "Bearer  x", "Bearer\tx", "Bearer x y", "Bearer x,",
	`Bearer "x"`, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearerx", "Bearer hälfred",
	"Bearer abc==", "Bearer ab=c", "Bearer ==", "Bearer a=b=", `Bearer realm="x"`, "Bearer x\x00",
	"Bearer halfred_3kTMd9x0aH2bQe7LpQ", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
	"Bearer " + strings.Repeat("a", fuzzMax), "Bearer " + strings.Repeat("a", fuzzMax+1),
	"Token x", "Digest username=\"u\"", "halfred_abc",
}

// checkExtractorError checks the properties every extractor error has: it
// is a malformed request or a too-long credential, it is an *Error with a
// message, and the message is one of the extractor's fixed messages, so it
// cannot echo the value.
func checkExtractorError(t *testing.T, err error, fixed ...*Error) {
	t.Helper()
	if !errors.Is(err, ErrMalformedRequest) && !errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("err = %v, want ErrMalformedRequest or ErrInvalidCredential", err)
	}
	e := asError(err)
	if e == nil || e.Message == "" {
		t.Fatalf("err = %#v, want an *Error with a message", err)
	}
	for _, f := range fixed {
		if e == f {
			return
		}
	}
	t.Fatalf("err = %v, not one of the fixed errors", err)
}

// checkToken checks the properties of every extracted credential.
func checkToken(t *testing.T, cred, value string) {
	t.Helper()
	if cred == "" {
		t.Fatal("empty credential without an error")
	}
	if len(cred) > fuzzMax {
		t.Fatalf("credential of %d bytes, over the cap of %d", len(cred), fuzzMax)
	}
	if !strings.Contains(value, cred) {
		t.Fatalf("credential %q is not a substring of %q", cred, value)
	}
	for i := 0; i < len(cred); i++ {
		if c := cred[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '"' || c == '\'' || c == '\\' {
			t.Fatalf("credential %q holds byte %#x", cred, c)
		}
	}
}

func FuzzBearerExtractor(f *testing.F) {
	for _, s := range bearerSeeds {
		f.Add(s)
	}
	fixed := []*Error{errTooLong, errBearerNoToken, errBearerSeparator, errBearerTwoTokens, errBearerPadding, errBearerCharset}
	f.Fuzz(func(t *testing.T, v string) {
		r := &http.Request{Header: http.Header{"Authorization": {v}}}
		cred, err := bearerExtractor{}.extract(r, fuzzMax)
		isBearer := len(v) >= 6 && strings.EqualFold(v[:6], "Bearer")
		switch {
		case err != nil:
			if cred != "" {
				t.Fatalf("credential %q with error %v", cred, err)
			}
			checkExtractorError(t, err, fixed...)
			if tooLong := len(v) > fuzzMax+len("Bearer "); tooLong != (err == errTooLong) {
				t.Fatalf("len %d: err = %v", len(v), err)
			}
			if err != errTooLong && !isBearer {
				t.Fatalf("%q is not Bearer, yet err = %v", v, err)
			}
		case cred == "":
			if isBearer {
				t.Fatalf("%q names the Bearer scheme, yet no credential and no error", v)
			}
		default:
			checkToken(t, cred, v)
			if !isBearer || !strings.HasSuffix(v, cred) || strings.TrimLeft(v[6:len(v)-len(cred)], " ") != "" || v[6] != ' ' {
				t.Fatalf("%q: credential %q is not what follows 'Bearer' and spaces", v, cred)
			}
			body := strings.TrimRight(cred, "=")
			if body == "" {
				t.Fatalf("credential %q is only padding", cred)
			}
			for i := 0; i < len(body); i++ {
				if !isB64TokenChar(body[i]) {
					t.Fatalf("credential %q holds %q before its padding", cred, body[i])
				}
			}
		}
		// Extract with the default cap agrees whenever the cap does not
		// matter.
		if len(v) <= fuzzMax+len("Bearer ") {
			c2, err2 := BearerExtractor().Extract(r)
			if c2 != cred || err2 != err {
				t.Fatalf("Extract = %q, %v; extract = %q, %v", c2, err2, cred, err)
			}
		}
	})
}

func FuzzHeaderExtractor(f *testing.F) {
	for _, s := range []string{
		"", "halfred_3kTMd9x0aH2bQe7LpQ", "Bearer halfred_x", "a b", "a,b", `"a"`, "'a'", `a\b`, "hälfred",
		"a\x00b", "a\tb", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "!#$%&()*+-./:;<=>?@[]^_`{|}~",
		strings.Repeat("k", fuzzMax), strings.Repeat("k", fuzzMax+1),
	} {
		f.Add(s)
	}
	e := HeaderExtractor("api-key").(*headerExtractor)
	fixed := []*Error{errTooLong, e.errTwice, e.errEmpty, e.errBearer, e.errCharset}
	f.Fuzz(func(t *testing.T, v string) {
		r := &http.Request{Header: http.Header{"Api-Key": {v}}}
		cred, err := e.extract(r, fuzzMax)
		if err != nil {
			if cred != "" {
				t.Fatalf("credential %q with error %v", cred, err)
			}
			checkExtractorError(t, err, fixed...)
			if tooLong := len(v) > fuzzMax; tooLong != (err == errTooLong) {
				t.Fatalf("len %d: err = %v", len(v), err)
			}
			return
		}
		checkToken(t, cred, v)
		if cred != v {
			t.Fatalf("credential %q, want the whole value %q", cred, v)
		}
	})
}

func FuzzQueryExtractor(f *testing.F) {
	for _, s := range []string{
		"", "api_key=halfred_one", "api_key=a&api_key=a", "api_key=", "api_key", "api%5Fkey=x", "api_key=%zz",
		"api_key=a+b", "api_key=%C3%A4", "x=1&api_key=abc%2B%3D&y=2", "api_key=" + strings.Repeat("%61", fuzzMax+1),
		";api_key=x", "api_key=x;y",
	} {
		f.Add(s)
	}
	e := QueryExtractor("api_key").(*queryExtractor)
	fixed := []*Error{errTooLong, e.errTwice, e.errEmpty, e.errEncoding, e.errCharset}
	f.Fuzz(func(t *testing.T, q string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/", RawQuery: q}}
		cred, err := e.extract(r, fuzzMax)
		if err != nil {
			checkExtractorError(t, err, fixed...)
		} else if cred != "" && (len(cred) > fuzzMax || !isCredentialToken(cred)) {
			t.Fatalf("credential %q: want a visible-ASCII token within the cap", cred)
		}
		// Where the whole query is valid, url.ParseQuery agrees on what
		// api_key holds.
		vs, perr := url.ParseQuery(q)
		if perr != nil {
			return
		}
		switch got := vs["api_key"]; {
		case len(got) == 0:
			if cred != "" || err != nil {
				t.Fatalf("no api_key, yet %q, %v", cred, err)
			}
		case len(got) > 1:
			if err != e.errTwice {
				t.Fatalf("%d api_key parameters, yet %q, %v", len(got), cred, err)
			}
		case err == nil:
			if cred != got[0] {
				t.Fatalf("credential %q, url.ParseQuery says %q", cred, got[0])
			}
		}
	})
}

func FuzzCookieExtractor(f *testing.F) {
	for _, s := range []string{
		"", "session=halfred_one", "a=b; session=x; c=d", "session=", `session="x"`, "session=a; session=b",
		"session=a,b", "session=a b", "session=\x00", "session=" + strings.Repeat("k", fuzzMax+1),
	} {
		f.Add(s)
	}
	e := CookieExtractor("session").(*cookieExtractor)
	fixed := []*Error{errTooLong, e.errTwice, e.errCharset}
	f.Fuzz(func(t *testing.T, c string) {
		r := &http.Request{Header: http.Header{"Cookie": {c}}}
		cred, err := e.extract(r, fuzzMax)
		switch {
		case err != nil:
			checkExtractorError(t, err, fixed...)
		case cred != "":
			checkToken(t, cred, c)
		}
	})
}

// FuzzGuard sends two headers through a Guard and checks that the
// Authenticator only ever sees a well-formed credential taken from them,
// and that the answer is one the error table allows.
func FuzzGuard(f *testing.F) {
	for _, s := range bearerSeeds {
		f.Add(s, "")
		f.Add(s, "x")
	}
	f.Add("Bearer abc", "abc")
	f.Add("Bearer abc", "abd")
	f.Fuzz(func(t *testing.T, authorization, apiKey string) {
		var seen string
		a := AuthenticatorFunc(func(_ context.Context, cred string) (Principal, error) {
			seen = cred
			if cred == "good" {
				return Principal{KeyID: "key_1"}, nil
			}
			return Principal{}, ErrInvalidCredential
		})
		g, err := New(a, WithMaxCredentialLength(fuzzMax))
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		if authorization != "" {
			h["Authorization"] = []string{authorization}
		}
		if apiKey != "" {
			h["Api-Key"] = []string{apiKey}
		}
		p, err := g.Authenticate(&http.Request{Header: h, URL: &url.URL{Path: "/"}})
		if seen != "" {
			checkToken(t, seen, authorization+"\n"+apiKey)
			if !strings.Contains(authorization, seen) && seen != apiKey {
				t.Fatalf("Authenticator saw %q, from neither header", seen)
			}
		}
		switch {
		case err == nil:
			if seen != "good" || p.KeyID != "key_1" {
				t.Fatalf("success with credential %q, principal %+v", seen, p)
			}
		case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrMalformedRequest), errors.Is(err, ErrInvalidCredential):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}
