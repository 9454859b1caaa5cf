package main

import (
	"bufio"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var metricsLine = regexp.MustCompile(`(?m)^metrics on http://(\S+)/metrics$`)

// scrape returns the samples of GET url as "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s = %d %s", url, res.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics starts the server with -metrics and watches the counters
// move: authentications by outcome, rate-limited requests, key events and
// the usage recorder's, on a listener apart from the API's.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := startRun(t, nil, "-addr", "127.0.0.1:0", "-memory", "-metrics", "127.0.0.1:0", "-rate-limit-keys", "3", "-usage-interval", "100ms")
	m := metricsLine.FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no \"metrics on\" line:\n%s", s.stderr)
	}
	metricsURL := "http://" + m[1] + "/metrics"
	key := keyLine("halfred").FindStringSubmatch(s.stdout.String())[1]

	const (
		success     = `keygate_auth_requests_total{method="api_key",outcome="success"}`
		rateLimited = `keygate_auth_requests_total{method="api_key",outcome="rate_limited"}`
		invalid     = `keygate_auth_requests_total{method="none",outcome="invalid_credential"}`
		created     = `keygate_events_total{event="key.created"}`
		revoked     = `keygate_events_total{event="key.revoked"}`
		flushed     = `keygate_usage_requests_flushed_total`
	)
	before := scrape(t, metricsURL)
	for name, want := range map[string]float64{success: 0, rateLimited: 0, invalid: 0, created: 1, revoked: 0, flushed: 0} {
		if got, ok := before[name]; !ok || got != want {
			t.Errorf("at start: %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if before["go_goroutines"] <= 0 {
		t.Errorf("no Go runtime metrics: go_goroutines = %v", before["go_goroutines"])
	}

	for i, want := range []int{200, 200, 200, 429} {
		if got := get(t, s.addr, "/v1/models", key); got != want {
			t.Fatalf("request %d = %d, want %d", i, got, want)
		}
	}
	mangled := mangle(key)
	if got := get(t, s.addr, "/v1/models", mangled); got != http.StatusUnauthorized {
		t.Fatalf("mangled key = %d", got)
	}
	// The success that was then limited counts as both.
	var after map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after = scrape(t, metricsURL)
		if after[flushed] >= 4 || time.Now().After(deadline) {
			break
		}
	}
	for name, want := range map[string]float64{success: 4, rateLimited: 1, invalid: 1, created: 1, revoked: 0, flushed: 4} {
		if got := after[name]; got != want {
			t.Errorf("after the requests: %s = %v, want %v", name, got, want)
		}
	}

	// Each listener serves its own: no metrics on the API, no API on
	// the metrics port.
	if got := get(t, s.addr, "/metrics", key); got != http.StatusNotFound {
		t.Errorf("GET /metrics on the API = %d, want 404", got)
	}
	if got := get(t, m[1], "/v1/models", key); got != http.StatusNotFound {
		t.Errorf("GET /v1/models on the metrics port = %d, want 404", got)
	}
}
