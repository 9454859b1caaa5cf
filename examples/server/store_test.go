package main

import (
	"encoding/json"
	"github.com/keygate/keygate/keystore/sqlstore/pgtest"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dsnSecret is the password of the DSNs the tests give: it must never
// appear in an output or an error.
const dsnSecret = "s3cret-Pa55word"

// TestRestart starts the server twice on one store: the second start
// prints no key, and the first start's key and refresh tokens, spent or
// not, are as the first start left them.
func TestRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		store func(t *testing.T) []string
	}{
		{name: "sqlite", store: func(t *testing.T) []string {
			return []string{"-db", filepath.Join(t.TempDir(), "keygate.db")}
		}},
		{name: "postgres", store: func(t *testing.T) []string {
			return []string{"-postgres", postgresDSN(t)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-addr", "127.0.0.1:0"}, tt.store(t)...)

			first := startRun(t, nil, args...)
			m := keyLine("halfred").FindStringSubmatch(first.stdout.String())
			if m == nil {
				t.Fatalf("first start: stdout = %q, want \"API key: halfred_…\"", first.stdout)
			}
			key := m[1]
			status, body := postJSON(t, first.addr, "/v1/auth/token", key, "")
			if status != http.StatusOK {
				t.Fatalf("POST /v1/auth/token = %d %v", status, body)
			}
			spent, _ := body["refresh_token"].(string)
			status, body = postJSON(t, first.addr, "/v1/auth/refresh", "", `{"refresh_token":"`+spent+`"}`)
			if status != http.StatusOK {
				t.Fatalf("POST /v1/auth/refresh = %d %v", status, body)
			}
			live, _ := body["refresh_token"].(string)
			stopRun(t, first)

			second := startRun(t, nil, args...)
			if out := second.stdout.String(); out != "" {
				t.Errorf("second start: stdout = %q, want nothing", out)
			}
			if stderr := second.stderr.String(); strings.Contains(stderr, "issued bootstrap key") || !strings.Contains(stderr, "already holds keys") {
				t.Errorf("second start: stderr does not say it issued no key:\n%s", stderr)
			}
			if got := get(t, second.addr, "/v1/me", key); got != http.StatusOK {
				t.Errorf("GET /v1/me with the first start's key = %d", got)
			}
			status, body = postJSON(t, second.addr, "/v1/auth/refresh", "", `{"refresh_token":"`+live+`"}`)
			if status != http.StatusOK {
				t.Fatalf("refresh with the first start's live refresh token = %d %v", status, body)
			}
			if at, _ := body["access_token"].(string); get(t, second.addr, "/v1/me", at) != http.StatusOK {
				t.Errorf("the refreshed access token does not work")
			}
			if status, body := postJSON(t, second.addr, "/v1/auth/refresh", "", `{"refresh_token":"`+spent+`"}`); status != http.StatusUnauthorized {
				t.Errorf("refresh with a token spent before the restart = %d %v, want 401", status, body)
			}
			stopRun(t, second)
		})
	}
}

// startPair starts two instances, A and B, with the same args (which
// should name one shared store), and returns them with the key A printed
// at its start; both are stopped, B first, when t ends.
func startPair(t *testing.T, args ...string) (a, b *started, key string) {
	t.Helper()
	a = startRun(t, nil, args...)
	m := keyLine("halfred").FindStringSubmatch(a.stdout.String())
	if m == nil {
		stopRun(t, a)
		t.Fatalf("instance A: stdout = %q, want \"API key: halfred_…\"", a.stdout)
	}
	b = startRun(t, nil, args...)
	t.Cleanup(func() {
		stopRun(t, b)
		stopRun(t, a)
	})
	return a, b, m[1]
}

// stopRun cancels a started server and checks that run returns nil.
func stopRun(t *testing.T, s *started) {
	t.Helper()
	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("run = %v after cancel, want nil\nstderr:\n%s", err, s.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	s.done <- nil // for the cleanup
}

// postJSON sends POST path with body and, if cred is set, cred as Bearer
// credential; it returns the status and the decoded JSON body.
func postJSON(t *testing.T, addr, path, cred, body string) (int, map[string]any) {
	t.Helper()
	r, err := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: decode: %v", path, err)
	}
	return res.StatusCode, out
}

// postgresDSN returns the DSN of a fresh schema in the test database
// named by KEYGATE_POSTGRES_DSN (see pgtest.DSN).
func postgresDSN(t *testing.T) string {
	t.Helper()
	return pgtest.DSN(t, "kg_example_")
}

func TestDSNPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dsn, want string
	}{
		{name: "url", dsn: "postgres://app:" + dsnSecret + "@db:5432/app", want: dsnSecret},
		{name: "postgresql url", dsn: "postgresql://app:pw@db/app?sslmode=disable", want: "pw"},
		{name: "url parameter", dsn: "postgres://app@db/app?password=pw2&sslmode=disable", want: "pw2"},
		{name: "url without password", dsn: "postgres://app@db/app", want: ""},
		{name: "key and value", dsn: "host=db user=app password=" + dsnSecret + " dbname=app", want: dsnSecret},
		{name: "key and value, spaces", dsn: "host=db password = pw3", want: "pw3"},
		{name: "key and value, quoted", dsn: "host=db password='with space' dbname=app", want: "with space"},
		{name: "key and value, last", dsn: "user=app password=pw4", want: "pw4"},
		{name: "no password", dsn: "host=db user=app", want: ""},
		{name: "empty", dsn: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := dsnPassword(tt.dsn); got != tt.want {
				t.Errorf("dsnPassword(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}

// TestTwoInstancesRevoke runs two servers on one PostgreSQL database, as
// behind a load balancer: a key revoked through instance A stops working
// at instance B, whose cache had it, as soon as B hears A's notification.
// It measures how long that takes over several keys.
func TestTwoInstancesRevoke(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	args := append([]string{"-addr", "127.0.0.1:0", "-postgres", dsn}, noRateLimits...)
	a, b, admin := startPair(t, args...)

	const trials = 20
	var lat []time.Duration
	for i := range trials {
		status, created := postJSON(t, a.addr, "/v1/keys", admin, `{"name":"k`+strconv.Itoa(i)+`","scopes":["models:read"]}`)
		if status != http.StatusCreated {
			t.Fatalf("POST /v1/keys on A = %d %v", status, created)
		}
		key, _ := created["key"].(string)
		id, _ := created["id"].(string)
		for range 2 { // the second is served from B's cache
			if got := get(t, b.addr, "/v1/me", key); got != http.StatusOK {
				t.Fatalf("B: GET /v1/me with a new key = %d", got)
			}
		}
		req, err := http.NewRequest(http.MethodDelete, "http://"+a.addr+"/v1/keys/"+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE on A = %d", res.StatusCode)
		}
		revoked := time.Now()
		for get(t, b.addr, "/v1/me", key) != http.StatusUnauthorized {
			if time.Since(revoked) > 2*time.Second {
				t.Fatalf("B still accepts a key revoked through A 2 s ago")
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(revoked))
	}
	slices.Sort(lat)
	p50, max := lat[len(lat)/2], lat[len(lat)-1]
	t.Logf("revoke through A → 401 at B: p50 %v, max %v over %d keys", p50, max, trials)
	// The feed's latency on loopback is a few milliseconds; allow for a
	// loaded CI machine, but not for the cache TTL (10 s) or StaleAfter (5 s).
	if max > time.Second {
		t.Errorf("slowest revocation took %v, want well under the cache's TTL", max)
	}
}
