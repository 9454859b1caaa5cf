package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
)

// These tests run the real binary, as an operator does: built once, with
// the package's build flags but never -race (a race-instrumented server
// would measure the detector, not the server), and started as OS
// processes.

// serverBinary is the binary buildServer builds once per test run.
var serverBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if serverBinary.dir != "" {
		os.RemoveAll(serverBinary.dir)
	}
	os.Exit(code)
}

// buildServer builds the server with go build (once for every test that
// asks) and returns the binary's path. It skips t with -short or without
// a go tool.
func buildServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	b := &serverBinary
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "keygate-server-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "server")
		if runtime.GOOS == "windows" {
			b.path += ".exe"
		}
		out, err := exec.Command(goTool, "build", "-o", b.path, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// proc is the server binary running as a process.
type proc struct {
	cmd            *exec.Cmd
	addr           string
	stdout, stderr *syncbuf.Buffer
	exited         chan struct{} // closed once Wait returned
}

// noRateLimits turns every rate limit off, for the tests that poll a
// server as fast as they can (every revoked credential they poll is a
// failed authentication from 127.0.0.1) and measure something else.
var noRateLimits = []string{
	"-rate-limit-keys", "0", "-rate-limit-tokens", "0", "-rate-limit-failures", "0", "-rate-limit-credential-failures", "0",
	"-rate-limit-exchange", "0", "-rate-limit-refresh", "0",
}

var listeningLine = regexp.MustCompile(`(?m)^listening on http://(\S+)$`)

// startProc starts the binary with args in a new working directory and
// waits until it listens. The process is killed at cleanup.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = t.TempDir()
	p.cmd.Env = append(os.Environ(), "KEYGATE_PEPPER=")
	// Not *os.File: exec copies both streams into the buffers as they
	// come, so the server never blocks on a full pipe.
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	deadline := time.After(30 * time.Second)
	for {
		if m := listeningLine.FindStringSubmatch(p.stderr.String()); m != nil {
			p.addr = m[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("the server exited at start: %v\nstderr:\n%s", p.cmd.ProcessState, p.stderr)
		case <-deadline:
			t.Fatalf("no \"listening on\" line; stderr:\n%s", p.stderr)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL (on Unix) and waits for the process to be gone. It
// may be called more than once.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// key waits for the bootstrap key on the process's standard output.
func (p *proc) key(t *testing.T) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := keyLine("halfred").FindStringSubmatch(p.stdout.String()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no key on stdout: %q", p.stdout)
	return ""
}

// client sends requests to the processes over kept-alive connections.
type client struct{ http.Client }

func newClient() *client {
	return &client{http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 8},
		Timeout:   10 * time.Second,
	}}
}

// do sends method url with cred as Bearer credential (if set) and body
// (if set) and returns the status and the decoded JSON body, if any. The
// error is the transport's.
func (c *client) do(method, url, cred, body string) (int, map[string]any, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := c.Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	if len(b) > 0 {
		_ = json.Unmarshal(b, &out)
	}
	return res.StatusCode, out, nil
}

// must is do, failing t on a transport error.
func (c *client) must(t *testing.T, method, url, cred, body string) (int, map[string]any) {
	t.Helper()
	status, out, err := c.do(method, url, cred, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status, out
}

// percentile returns the q-quantile (0 < q ≤ 1) of sorted by the nearest
// rank method: the smallest value at least q of the values do not exceed.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// revocationBound is issue 4's target: a credential revoked through one
// instance is refused by every other within this, at the 99th percentile.
const revocationBound = 100 * time.Millisecond

// TestTwoProcessRevocation is issue 4's acceptance test: two server
// processes on one PostgreSQL database and one signing key file, as
// behind a load balancer. For each trial it makes a credential through A,
// warms both instances' caches with it, revokes it through A, then asks B
// in a tight loop until B refuses it, timing from the moment A's response
// to the revocation arrived. It logs the distribution and fails if the
// 99th percentile reaches 100 ms (twice: see bounded).
//
// It is not parallel, so that the package's other tests (paused until
// the sequential ones are done) do not share the CPU with the
// measurement; the servers are built without -race.
func TestTwoProcessRevocation(t *testing.T) {
	bin := buildServer(t)
	dsn := postgresDSN(t)
	keyFile := filepath.Join(t.TempDir(), "signing-key.pem")
	args := append([]string{"-addr", "127.0.0.1:0", "-postgres", dsn, "-signing-key", keyFile}, noRateLimits...)
	a := startProc(t, bin, args...)
	admin := a.key(t)
	b := startProc(t, bin, args...)
	urlA, urlB := "http://"+a.addr, "http://"+b.addr
	c := newClient()
	defer c.CloseIdleConnections()

	// untilRefused asks B for the models with cred until it answers 401,
	// and returns the time since revoked.
	untilRefused := func(t *testing.T, cred string, revoked time.Time) time.Duration {
		t.Helper()
		for {
			status, body := c.must(t, "GET", urlB+"/v1/models", cred, "")
			elapsed := time.Since(revoked)
			switch {
			case status == http.StatusUnauthorized:
				return elapsed
			case status != http.StatusOK:
				t.Fatalf("B: GET /v1/models = %d %v", status, body)
			case elapsed > 2*time.Second:
				t.Fatalf("B still accepts a credential revoked through A %v ago", elapsed)
			}
		}
	}
	// warm asks each instance once with cred (and B twice, the second
	// from its cache), wanting 200.
	warm := func(t *testing.T, cred string) {
		t.Helper()
		for _, u := range []string{urlA, urlB, urlB} {
			if status, body := c.must(t, "GET", u+"/v1/models", cred, ""); status != http.StatusOK {
				t.Fatalf("GET %s/v1/models with a new credential = %d %v", u, status, body)
			}
		}
	}
	// bounded runs trial n times and logs the distribution of the
	// revocation delays it returns, and of the revocation requests'
	// round trips. It fails t if the 99th percentile reaches the bound
	// twice in a row: once may be a busy machine (a 2-core CI box running
	// other tests), and the numbers of both runs are logged.
	bounded := func(t *testing.T, what string, n int, trial func(t *testing.T, i int) (delay, request time.Duration)) {
		t.Helper()
		for run := 1; ; run++ {
			lat := make([]time.Duration, n)
			req := make([]time.Duration, n)
			for i := range n {
				lat[i], req[i] = trial(t, i)
			}
			slices.Sort(lat)
			slices.Sort(req)
			p99 := percentile(lat, 0.99)
			t.Logf("%s revoked through A → 401 at B, %d trials: p50 %v, p90 %v, p99 %v, max %v (the revocation request's round trip: p50 %v, max %v)",
				what, n, percentile(lat, 0.5), percentile(lat, 0.9), p99, lat[n-1], percentile(req, 0.5), req[n-1])
			switch {
			case p99 < revocationBound:
				return
			case run == 1:
				t.Logf("p99 %v is over the %v bound: measuring again, in case the machine was busy", p99, revocationBound)
			default:
				t.Errorf("p99 %v twice in a row, want under %v", p99, revocationBound)
				return
			}
		}
	}

	t.Run("api key", func(t *testing.T) {
		bounded(t, "API key", 200, func(t *testing.T, i int) (time.Duration, time.Duration) {
			status, created := c.must(t, "POST", urlA+"/v1/keys", admin, fmt.Sprintf(`{"name":"k%d","scopes":["models:read"]}`, i))
			key, _ := created["key"].(string)
			id, _ := created["id"].(string)
			if status != http.StatusCreated || key == "" || id == "" {
				t.Fatalf("A: POST /v1/keys = %d %v", status, created)
			}
			warm(t, key)
			start := time.Now()
			if status, body := c.must(t, "DELETE", urlA+"/v1/keys/"+id, admin, ""); status != http.StatusNoContent {
				t.Fatalf("A: DELETE /v1/keys/%s = %d %v", id, status, body)
			}
			revoked := time.Now()
			return untilRefused(t, key, revoked), revoked.Sub(start)
		})
	})

	t.Run("access token", func(t *testing.T) {
		bounded(t, "access token", 50, func(t *testing.T, _ int) (time.Duration, time.Duration) {
			status, pair := c.must(t, "POST", urlA+"/v1/auth/token", admin, `{"scopes":["models:read"]}`)
			at, _ := pair["access_token"].(string)
			if status != http.StatusOK || at == "" {
				t.Fatalf("A: POST /v1/auth/token = %d %v", status, pair)
			}
			warm(t, at) // B accepts A's token: one signing key
			start := time.Now()
			if status, body := c.must(t, "POST", urlA+"/v1/auth/revoke", at, ""); status != http.StatusNoContent {
				t.Fatalf("A: POST /v1/auth/revoke = %d %v", status, body)
			}
			revoked := time.Now()
			return untilRefused(t, at, revoked), revoked.Sub(start)
		})
	})
}

// ledgerKey is a key whose creation the server acknowledged (201).
type ledgerKey struct {
	id, key string
	// deleting: a DELETE was sent; deleted: it was acknowledged (204).
	deleting, deleted bool
}

// ledger is what the server acknowledged: every key it answered 201 for,
// and which of them it answered 204 for a DELETE of. It is safe for
// concurrent use.
type ledger struct {
	mu   sync.Mutex
	keys []*ledgerKey
	acks chan struct{} // one per acknowledged change
}

// work changes keys through url until a request fails (the server was
// killed): it creates keys and deletes random ones it created, and
// records each acknowledgement.
func (l *ledger) work(t *testing.T, c *client, url, admin string, rng *rand.Rand, name string) {
	for n := 0; ; n++ {
		l.mu.Lock()
		var victim *ledgerKey
		if rng.IntN(5) < 2 {
			var live []*ledgerKey
			for _, k := range l.keys {
				if !k.deleting {
					live = append(live, k)
				}
			}
			if len(live) > 0 {
				victim = live[rng.IntN(len(live))]
				victim.deleting = true // before the request: its outcome may be lost
			}
		}
		l.mu.Unlock()

		if victim != nil {
			status, body, err := c.do("DELETE", url+"/v1/keys/"+victim.id, admin, "")
			if err != nil {
				return
			}
			if status != http.StatusNoContent {
				t.Errorf("DELETE /v1/keys/%s = %d %v", victim.id, status, body)
				return
			}
			l.mu.Lock()
			victim.deleted = true
			l.mu.Unlock()
		} else {
			status, created, err := c.do("POST", url+"/v1/keys", admin, fmt.Sprintf(`{"name":"%s-%d","scopes":["models:read"]}`, name, n))
			if err != nil {
				return
			}
			key, _ := created["key"].(string)
			id, _ := created["id"].(string)
			if status != http.StatusCreated || key == "" || id == "" {
				t.Errorf("POST /v1/keys = %d %v", status, created)
				return
			}
			l.mu.Lock()
			l.keys = append(l.keys, &ledgerKey{id: id, key: key})
			l.mu.Unlock()
		}
		l.acks <- struct{}{}
	}
}

// check asserts that the server at url keeps everything acknowledged:
// each key created works unless its deletion was acknowledged, each
// acknowledged deletion holds, and GET /v1/keys agrees. A deletion whose
// answer was lost is settled by what the server says now.
func (l *ledger) check(t *testing.T, c *client, url, admin string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	status, list := c.must(t, "GET", url+"/v1/keys", admin, "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/keys = %d %v", status, list)
	}
	revokedAt := map[string]bool{}
	data, _ := list["data"].([]any)
	for _, d := range data {
		m, _ := d.(map[string]any)
		id, _ := m["id"].(string)
		revokedAt[id] = m["revoked_at"] != nil
	}
	for _, k := range l.keys {
		status, _ := c.must(t, "GET", url+"/v1/models", k.key, "")
		revoked, listed := revokedAt[k.id]
		switch {
		case !listed:
			t.Errorf("key %s, created (201), is not in GET /v1/keys", k.id)
		case k.deleted && (status != http.StatusUnauthorized || !revoked):
			t.Errorf("key %s, deleted (204): GET /v1/models = %d, revoked_at set = %v; want 401, true", k.id, status, revoked)
		case k.deleted:
		case k.deleting && status == http.StatusUnauthorized && revoked:
			k.deleted = true // the lost DELETE was committed
		case k.deleting && status == http.StatusOK && !revoked:
			k.deleting = false // it was not
		case status != http.StatusOK || revoked:
			t.Errorf("key %s, created (201)%s: GET /v1/models = %d, revoked_at set = %v; want 200, false",
				k.id, map[bool]string{true: ", deletion unanswered"}[k.deleting], status, revoked)
		}
	}
}

// TestSIGKILL kills the real server with SIGKILL while it creates and
// revokes keys, right after an acknowledgement and with other requests in
// flight, then restarts it on the same store, several times: every key
// the server answered 201 for must still work (unless its deletion was
// answered 204), every deletion answered 204 must still hold, and access
// tokens issued before a kill must still be accepted after it (the
// signing key is in a file).
func TestSIGKILL(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL on Windows")
	}
	t.Parallel()
	bin := buildServer(t)
	tests := []struct {
		name  string
		store func(t *testing.T) []string
	}{
		{name: "sqlite", store: func(t *testing.T) []string {
			// The signing key file defaults to keygate.db.signing-key.pem.
			return []string{"-db", filepath.Join(t.TempDir(), "keygate.db")}
		}},
		{name: "postgres", store: func(t *testing.T) []string {
			return []string{"-postgres", postgresDSN(t), "-signing-key", filepath.Join(t.TempDir(), "signing-key.pem")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const rounds, workers = 5, 4
			args := append(append([]string{"-addr", "127.0.0.1:0"}, tt.store(t)...), noRateLimits...)
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 0))
			l := &ledger{acks: make(chan struct{}, 1024)}
			var admin string
			var tokens []string
			for round := 0; round <= rounds; round++ {
				p := startProc(t, bin, args...)
				url := "http://" + p.addr
				c := newClient()
				if round == 0 {
					admin = p.key(t)
				}
				// Everything acknowledged before the last kill survived it.
				l.check(t, c, url, admin)
				for i, at := range tokens {
					if status, _ := c.must(t, "GET", url+"/v1/me", at, ""); status != http.StatusOK {
						t.Errorf("round %d: an access token issued in round %d = %d, want 200", round, i, status)
					}
				}
				if round == rounds {
					p.kill()
					break
				}
				status, pair := c.must(t, "POST", url+"/v1/auth/token", admin, "")
				at, _ := pair["access_token"].(string)
				if status != http.StatusOK || at == "" {
					t.Fatalf("POST /v1/auth/token = %d %v", status, pair)
				}
				tokens = append(tokens, at)

				// Change keys from several workers; kill the server right
				// after the target-th acknowledgement, others in flight.
				target := 5 + rng.IntN(30)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					wrng := rand.New(rand.NewPCG(seed, uint64(round*workers+w+1)))
					go func() {
						defer wg.Done()
						l.work(t, c, url, admin, wrng, fmt.Sprintf("r%dw%d", round, w))
					}()
				}
				for range target {
					select {
					case <-l.acks:
					case <-time.After(30 * time.Second):
						p.kill()
						wg.Wait() // the workers stop before t ends
						t.Fatalf("round %d: no progress; stderr:\n%s", round, p.stderr)
					}
				}
				p.kill()
				drained := make(chan struct{})
				go func() { wg.Wait(); close(drained) }()
			drain:
				for {
					select {
					case <-l.acks:
					case <-drained:
						break drain
					}
				}
				c.CloseIdleConnections()
				if state := p.cmd.ProcessState; state == nil || state.Exited() {
					t.Fatalf("round %d: the server exited by itself (%v), not by SIGKILL; stderr:\n%s", round, state, p.stderr)
				}
				if out := p.stdout.String(); round > 0 && out != "" {
					t.Errorf("round %d: a restart printed %q, want nothing", round, out)
				}
			}
			deleted := 0
			for _, k := range l.keys {
				if k.deleted {
					deleted++
				}
			}
			t.Logf("%d kills; %d keys created (201), %d of them deleted (204)", rounds, len(l.keys), deleted)
			if len(l.keys) == 0 || deleted == 0 {
				t.Errorf("the test changed nothing")
			}
		})
	}
}
