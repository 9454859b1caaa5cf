package promobserver_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/auth/promobserver"
	"github.com/keygate/keygate/keystore"
)

// Count a Guard's requests and a Manager's key events, and serve them on
// /metrics.
func Example() {
	obs, err := promobserver.New()
	if err != nil {
		panic(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(obs)

	keys, err := keystore.NewManager(keystore.NewMemoryStore(), keystore.WithObserver(obs))
	if err != nil {
		panic(err)
	}
	guard, err := auth.New(keys, auth.WithObserver(obs))
	if err != nil {
		panic(err)
	}
	key, _, err := keys.Issue(context.Background(), keystore.KeySpec{Project: "default"})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /v1/models", guard.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "models")
	})))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	for _, credential := range []string{key.Plaintext(), key.Plaintext(), "halfred_wrong", ""} {
		r := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
		if credential != "" {
			r.Header.Set("Authorization", "Bearer "+credential)
		}
		mux.ServeHTTP(httptest.NewRecorder(), r)
	}

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	// Print the non-zero counters.
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "_total{") && !strings.HasSuffix(line, " 0") {
			fmt.Println(line)
		}
	}
	// Output:
	// keygate_auth_requests_total{method="api_key",outcome="success"} 2
	// keygate_auth_requests_total{method="none",outcome="invalid_credential"} 1
	// keygate_auth_requests_total{method="none",outcome="no_credentials"} 1
	// keygate_events_total{event="key.created"} 1
}
