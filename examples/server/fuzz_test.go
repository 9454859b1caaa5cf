package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func fuzzServer(f *testing.F) *server {
	f.Helper()
	// The server's limit for API keys bounds a key's own rate_limit.
	s, err := newServer(context.Background(), config{limits: rateLimits{apiKey: defaultLimitAPIKey}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.close() })
	return s
}

// FuzzParseChat checks that any body gives a valid request or a 400 whose
// message quotes no key.
func FuzzParseChat(f *testing.F) {
	s := fuzzServer(f)
	for _, seed := range []string{
		chatBody,
		``,
		`null`,
		`[]`,
		`{"model":"standard","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`,
		`{"model":"halfred_AAAAAAAAAAAAAAAAAAAAAAAAAAAA","messages":[]}`,
		`{"model":"standard","messages":[{"role":"halfred_AAAAAAAAAAAAAAAAAAAAAAAAAAAA","content":"x"}]}`,
		`{"model":"standard","stream":true,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"standard","messages":[{"role":"user","content":{"a":1}}]}`,
		`{"model":"\u0000\xff","messages":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, rerr := s.parseChat(body)
		if rerr != nil {
			if rerr.status != http.StatusBadRequest || rerr.code == "" || rerr.msg == "" {
				t.Fatalf("error = %+v", rerr)
			}
			if k := s.format.Pattern().FindString(rerr.msg); k != "" {
				t.Fatalf("message quotes a key: %q", rerr.msg)
			}
			if !utf8.ValidString(rerr.msg) {
				t.Fatalf("message is not UTF-8: %q", rerr.msg)
			}
			return
		}
		if !knownModel(req.model) || req.promptTokens < countTokens(req.lastUser) {
			t.Fatalf("accepted %q as %+v", body, req)
		}
	})
}

// FuzzParseCreateKey checks that any body gives a valid key spec or a 400
// whose message quotes no key.
func FuzzParseCreateKey(f *testing.F) {
	s := fuzzServer(f)
	for _, seed := range []string{
		``,
		`{}`,
		`{"name":"ci","scopes":["models:read","chat:write"],"expires_in":3600}`,
		`{"scopes":[]}`,
		`{"scopes":["halfred_AAAAAAAAAAAAAAAAAAAAAAAAAAAA"]}`,
		`{"expires_in":-1}`,
		`{"expires_in":1e400}`,
		`{"name":"a","name":"b"}`,
		`{"unknown":1}`,
		`{"halfred_AAAAAAAAAAAAAAAAAAAAAAAAAAAA":1}`,
		`{} {}`,
		`{"rate_limit":{"requests":10,"per_seconds":60}}`,
		`{"rate_limit":{"requests":600,"per_seconds":60}}`,
		`{"rate_limit":{"requests":601,"per_seconds":60}}`,
		`{"rate_limit":{"requests":10,"per_seconds":1}}`,
		`{"rate_limit":{"requests":0,"per_seconds":60}}`,
		`{"rate_limit":{"requests":1,"per_seconds":86401}}`,
		`{"rate_limit":{"requests":1}}`,
		`{"rate_limit":{"requests":1.5,"per_seconds":60}}`,
		`{"rate_limit":{"requests":1,"per_seconds":60,"burst":5}}`,
		`{"rate_limit":null}`,
		`{"rate_limit":"10/m"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		spec, rerr := s.parseCreateKey(body)
		if rerr != nil {
			if rerr.status != http.StatusBadRequest || rerr.code == "" || rerr.msg == "" {
				t.Fatalf("error = %+v", rerr)
			}
			if k := s.format.Pattern().FindString(rerr.msg); k != "" {
				t.Fatalf("message quotes a key: %q", rerr.msg)
			}
			return
		}
		for _, sc := range spec.scopes {
			if !slices.Contains(allScopes, sc) {
				t.Fatalf("accepted unknown scope %q", sc)
			}
		}
		if spec.lifetime < 0 || spec.lifetime > maxKeyLifetime || (spec.lifetime != 0 && spec.lifetime < time.Second) {
			t.Fatalf("accepted lifetime %v", spec.lifetime)
		}
		if l := spec.limit; l != nil {
			if lim := l.toLimit(); lim.Validate() != nil || lim.IsZero() || l.Requests > maxKeyLimitRequests ||
				l.PerSeconds < 1 || l.PerSeconds > int64(maxKeyLimitPeriod/time.Second) || l.widerThan(defaultLimitAPIKey) {
				t.Fatalf("accepted rate limit %+v", *l)
			}
		}
		if len(spec.name) > maxNameBytes || !utf8.ValidString(spec.name) || strings.ContainsAny(spec.name, "\x00\n\r") {
			t.Fatalf("accepted name %q", spec.name)
		}
	})
}
