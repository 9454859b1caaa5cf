package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUsageCounts: GET /v1/keys shows, after a flush, how many requests
// each key authenticated (with its access tokens), when, and from where.
func TestUsageCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	k := e.createKey(e.root, `{"name":"app","scopes":["models:read","tokens:issue"]}`)
	idle := e.createKey(e.root, `{"name":"idle","scopes":["models:read"]}`)
	flush := func() {
		t.Helper()
		if err := e.srv.usage.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	usage := func(id string) keyItem {
		t.Helper()
		it, ok := findItem(e.listKeys(e.root), id)
		if !ok {
			t.Fatalf("key %s not listed", id)
		}
		return it
	}
	flush() // the bootstrap key's requests so far

	requests := []struct {
		req    req
		status int
	}{
		{req{method: "GET", path: "/v1/models", key: k.Key}, 200},
		{req{method: "GET", path: "/v1/models", key: k.Key}, 200},
		{req{method: "GET", path: "/v1/me", key: k.Key}, 200},
		// Authenticated, then refused for a scope: counted.
		{req{method: "POST", path: "/v1/chat/completions", key: k.Key, body: chatBody}, 403},
		{req{method: "POST", path: "/v1/auth/token", key: k.Key}, 200},
		// Not authenticated: not counted, for no key.
		{req{method: "GET", path: "/v1/models", key: e.unknownKey()}, 401},
	}
	for _, r := range requests {
		if res := e.do(r.req); res.status != r.status {
			t.Fatalf("%s %s = %d, want %d", r.req.method, r.req.path, res.status, r.status)
		}
	}
	at := e.exchange(k.Key, "").AccessToken // counted: 1
	for range 2 {
		if e.me(at) != http.StatusOK { // counted under the key: 2
			t.Fatal("access token refused")
		}
	}
	const want = 5 + 1 + 2

	if it := usage(k.ID); it.UsageCount != 0 || it.LastUsedAt != nil {
		t.Errorf("before the flush: usage_count %d, last_used_at %v; want 0, null (written behind)", it.UsageCount, it.LastUsedAt)
	}
	flush()
	it := usage(k.ID)
	if it.UsageCount != want || it.LastClientAddr == nil || *it.LastClientAddr != "127.0.0.1" || it.LastUsedAt == nil {
		t.Fatalf("after the flush: usage_count %d, last_client_addr %v, last_used_at %v; want %d, 127.0.0.1, a time",
			it.UsageCount, it.LastClientAddr, it.LastUsedAt, want)
	}
	if d := time.Since(time.Unix(*it.LastUsedAt, 0)); d < -time.Second || d > time.Minute {
		t.Errorf("last_used_at is %v ago", d)
	}
	if it := usage(idle.ID); it.UsageCount != 0 || it.LastUsedAt != nil || it.LastClientAddr != nil {
		t.Errorf("unused key: %d, %v, %v; want 0, null, null", it.UsageCount, it.LastUsedAt, it.LastClientAddr)
	}
	// A flush adds what came since the last one, and nothing twice.
	flush()
	if got := usage(k.ID).UsageCount; got != want {
		t.Errorf("after a second flush with no requests: %d, want %d", got, want)
	}
	e.me(k.Key)
	flush()
	if got := usage(k.ID).UsageCount; got != want+1 {
		t.Errorf("after one more request: %d, want %d", got, want+1)
	}
}

// TestUsageFlushedAtShutdown: counts not yet written when the server is
// stopped are written on the way out (the flush interval is 10 s, and
// the test stops the server at once).
func TestUsageFlushedAtShutdown(t *testing.T) {
	t.Parallel()
	args := []string{"-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "keygate.db")}
	first := startRun(t, nil, args...)
	m := keyLine("halfred").FindStringSubmatch(first.stdout.String())
	if m == nil {
		t.Fatalf("stdout = %q", first.stdout)
	}
	key := m[1]
	for range 4 {
		if got := get(t, first.addr, "/v1/models", key); got != http.StatusOK {
			t.Fatalf("GET /v1/models = %d", got)
		}
	}
	stopRun(t, first)

	second := startRun(t, nil, args...)
	defer stopRun(t, second)
	res := getResponse(t, second.addr, "/v1/keys", key)
	defer res.Body.Close()
	var l list[keyItem]
	if err := json.NewDecoder(res.Body).Decode(&l); err != nil || len(l.Data) != 1 {
		t.Fatalf("GET /v1/keys = %d, %v, %+v", res.StatusCode, err, l)
	}
	if got := l.Data[0]; got.UsageCount != 4 || got.LastUsedAt == nil || got.LastClientAddr == nil {
		t.Errorf("after a restart: usage_count %d, last_used_at %v, last_client_addr %v; want 4 (written at shutdown)",
			got.UsageCount, got.LastUsedAt, got.LastClientAddr)
	}
}

// auditRecords parses the JSON log lines whose "event" is set: the audit
// records.
func auditRecords(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue // "listening on", in run's output
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if ev, _ := m["event"].(string); ev != "" {
			if m["msg"] != ev {
				t.Errorf("audit record's msg %v is not its event %q", m["msg"], ev)
			}
			out = append(out, m)
		}
	}
	return out
}

// TestAuditLog walks a key and token through their lives and checks the
// audit records, parsed from the JSON log: one per event, with the IDs
// that say what happened and who did it, and no key or token.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *config) { c.limits = rateLimits{exchange: 2} })
	var secrets []string
	k := e.createKey(e.root, `{"name":"doomed","scopes":["models:read"]}`)
	if res := e.do(req{method: "GET", path: "/v1/keys", key: k.Key}); res.status != 403 { // lacks keys:manage
		t.Fatalf("GET /v1/keys without keys:manage = %d", res.status)
	}
	res := e.do(req{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", key: e.root})
	var rotated keyCreated
	res.decode(t, &rotated)
	if res := e.do(req{method: "DELETE", path: "/v1/keys/" + rotated.ID, key: e.root}); res.status != 204 {
		t.Fatalf("DELETE = %d", res.status)
	}
	first := e.exchange(e.root, "")
	second := wantPair(t, e.refresh(first.RefreshToken))
	if res := e.refresh(first.RefreshToken); res.status != 401 { // reuse: the session is revoked
		t.Fatalf("reuse = %d", res.status)
	}
	third := e.exchange(e.root, "")
	if res := e.do(req{method: "POST", path: "/v1/auth/revoke", key: third.AccessToken}); res.status != 204 {
		t.Fatalf("revoke = %d %s", res.status, res.body)
	}
	if res := e.do(req{method: "POST", path: "/v1/auth/token", key: e.root}); res.status != 429 { // the third exchange
		t.Fatalf("third exchange = %d", res.status)
	}
	mangled := mangle(e.root)
	if e.me(mangled) != 401 {
		t.Fatal("mangled key accepted")
	}
	secrets = append(secrets, e.root, k.Key, rotated.Key, mangled,
		first.AccessToken, first.RefreshToken, second.AccessToken, second.RefreshToken, third.AccessToken, third.RefreshToken)

	records := auditRecords(t, e.logs.String())
	find := func(event string, match func(map[string]any) bool) map[string]any {
		t.Helper()
		for _, r := range records {
			if r["event"] == event && match(r) {
				return r
			}
		}
		t.Errorf("no %s record matching; records:\n%s", event, e.logs)
		return map[string]any{}
	}
	is := func(key string, want any) func(map[string]any) bool {
		return func(r map[string]any) bool { return r[key] == want }
	}
	check := func(r map[string]any, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if r[k] != v {
				t.Errorf("%s record: %s = %v, want %v (%v)", r["event"], k, r[k], v, r)
			}
		}
	}
	root := e.rootID
	check(find("key.created", is("key_id", k.ID)), map[string]any{"level": "INFO", "project": "default", "by": root})
	check(find("key.rotated", is("key_id", rotated.ID)), map[string]any{"level": "INFO", "previous_key_id": k.ID, "project": "default", "by": root})
	check(find("key.revoked", is("key_id", rotated.ID)), map[string]any{"level": "INFO", "project": "default", "by": root})
	issued := find("token.issued", is("key_id", root))
	check(issued, map[string]any{"level": "INFO", "project": "default", "by": root})
	if issued["token_id"] == nil || issued["session"] == nil {
		t.Errorf("token.issued lacks token_id or session: %v", issued)
	}
	session := issued["session"]
	check(find("token.refreshed", is("session", session)), map[string]any{"level": "INFO", "key_id": root})
	check(find("token.refresh_reuse", is("session", session)), map[string]any{"level": "WARN", "key_id": root})
	check(find("token.revoked", func(r map[string]any) bool { return r["session"] != session }),
		map[string]any{"level": "INFO", "key_id": root, "by": root})
	check(find("auth.rate_limited", is("key_id", root)), map[string]any{"level": "WARN", "status": float64(429), "client_addr": "127.0.0.1"})
	check(find("auth.forbidden", is("key_id", k.ID)), map[string]any{"level": "INFO", "status": float64(403), "client_addr": "127.0.0.1", "method": "api_key"})
	failed := find("auth.failed", is("status", float64(401)))
	check(failed, map[string]any{"level": "INFO", "client_addr": "127.0.0.1", "hint": e.srv.format.Hint(mangled)})
	if msg, _ := failed["error"].(string); msg == "" {
		t.Errorf("auth.failed says not why: %v", failed)
	}
	// The bootstrap key's creation, with no caller.
	boot := find("key.created", is("key_id", root))
	if _, ok := boot["by"]; ok {
		t.Errorf("bootstrap key.created has a caller: %v", boot)
	}
	// Successful authentications are audited at Debug only.
	check(find("auth.succeeded", is("key_id", root)), map[string]any{"level": "DEBUG", "method": "api_key"})

	logs := e.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs hold a credential ending %q", s[len(s)-4:])
		}
	}
}
