package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/keygate/keygate/internal/syncbuf"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/keystore"
)

// started is a server started by runEnv in the background.
type started struct {
	stdout, stderr *syncbuf.Buffer
	addr           string
	done           chan error
	stop           context.CancelFunc
}

// startRun starts runEnv with args and waits until it prints its address.
// Unless args name a store (-db, -postgres or -memory), the server gets a
// new SQLite file in t.TempDir.
func startRun(t *testing.T, env map[string]string, args ...string) *started {
	t.Helper()
	if !slices.Contains(args, "-db") && !slices.Contains(args, "-postgres") && !slices.Contains(args, "-memory") {
		args = append([]string{"-db", filepath.Join(t.TempDir(), "keygate.db")}, args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan error, 1), stop: cancel}
	getenv := func(k string) string { return env[k] }
	go func() { s.done <- runEnv(ctx, args, getenv, s.stdout, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	re := regexp.MustCompile(`(?m)^listening on http://(\S+)$`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(s.stderr.String()); m != nil {
			s.addr = m[1]
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("run returned early: %v\nstderr:\n%s", err, s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no \"listening on\" line; stderr:\n%s", s.stderr)
	return nil
}

// mangle returns key with its last character changed to one it is not,
// so the result is never the key itself (a fixed replacement would be,
// one time in 62).
func mangle(key string) string {
	if strings.HasSuffix(key, "x") {
		return key[:len(key)-1] + "y"
	}
	return key[:len(key)-1] + "x"
}

// get sends GET path with key as Bearer credential and returns the status.
func get(t *testing.T, addr, path, key string) int {
	t.Helper()
	res := getResponse(t, addr, path, key)
	res.Body.Close()
	return res.StatusCode
}

// getResponse sends GET path with key as Bearer credential and returns
// the response, whose body the caller closes.
func getResponse(t *testing.T, addr, path, key string) *http.Response {
	t.Helper()
	r, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// keyLine matches the one line the server prints on standard output.
func keyLine(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^API key: (` + prefix + `_[0-9A-Za-z]{28})\n$`)
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		prefix string
		// secret must appear in neither output.
		secret string
	}{
		{name: "defaults", args: []string{"-addr", "127.0.0.1:0"}, prefix: "halfred"},
		{name: "text logs and prefix", args: []string{"-addr", "127.0.0.1:0", "-log-format", "text", "-prefix", "acme"}, prefix: "acme"},
		{name: "pepper", env: map[string]string{"KEYGATE_PEPPER": "0123456789abcdef-pepper"}, args: []string{"-addr", "127.0.0.1:0"}, prefix: "halfred", secret: "0123456789abcdef-pepper"},
		{name: "pepper from another variable", env: map[string]string{"MY_PEPPER": "another-pepper-of-24-bytes"}, args: []string{"-addr", "127.0.0.1:0", "-pepper-env", "MY_PEPPER"}, prefix: "halfred", secret: "another-pepper-of-24-bytes"},
		{name: "db accepted", args: []string{"-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "k.db")}, prefix: "halfred"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startRun(t, tt.env, tt.args...)
			m := keyLine(tt.prefix).FindStringSubmatch(s.stdout.String())
			if m == nil {
				t.Fatalf("stdout = %q, want exactly one line \"API key: %s_…\"", s.stdout, tt.prefix)
			}
			key := m[1]
			if got := get(t, s.addr, "/v1/me", key); got != http.StatusOK {
				t.Errorf("GET /v1/me with the printed key = %d", got)
			}
			if got := get(t, s.addr, "/v1/models", key); got != http.StatusOK {
				t.Errorf("GET /v1/models with the printed key = %d", got)
			}
			if got := get(t, s.addr, "/v1/me", mangle(key)); got != http.StatusUnauthorized {
				t.Errorf("GET /v1/me with a mangled key = %d", got)
			}
			// Tokens, for their audit records.
			status, pair := postJSON(t, s.addr, "/v1/auth/token", key, "")
			if status != http.StatusOK {
				t.Fatalf("POST /v1/auth/token = %d %v", status, pair)
			}
			rt, _ := pair["refresh_token"].(string)
			if status, body := postJSON(t, s.addr, "/v1/auth/refresh", "", `{"refresh_token":"`+rt+`"}`); status != http.StatusOK {
				t.Fatalf("POST /v1/auth/refresh = %d %v", status, body)
			}
			s.stop()
			select {
			case err := <-s.done:
				if err != nil {
					t.Fatalf("run = %v after cancel, want nil", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("run did not return after cancel")
			}
			s.done <- nil // for the cleanup
			format, err := keystore.NewFormat(keystore.WithPrefix(tt.prefix))
			if err != nil {
				t.Fatal(err)
			}
			stderr := s.stderr.String()
			if f := format.Pattern().FindString(stderr); f != "" {
				t.Errorf("stderr holds a key:\n%s", stderr)
			}
			if strings.Contains(stderr, key[len(key)-8:]) {
				t.Errorf("stderr holds the key's tail:\n%s", stderr)
			}
			if tt.secret != "" && (strings.Contains(stderr, tt.secret) || strings.Contains(s.stdout.String(), tt.secret)) {
				t.Errorf("output holds the pepper")
			}
			if !strings.Contains(stderr, format.Hint(key)) {
				t.Errorf("stderr does not log the bootstrap key's hint %s:\n%s", format.Hint(key), stderr)
			}
			if m := secretPattern.FindString(stderr); m != "" {
				t.Errorf("stderr holds a token ending %q:\n%s", m[len(m)-4:], stderr)
			}
			for _, want := range []string{"stopped", "kept in SQLite", "signing key file (mode 0600)", "rate limits a minute"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			// The audit records, in the log format asked for.
			for _, event := range []string{"key.created", "token.issued", "token.refreshed", "auth.failed"} {
				want := `"event":"` + event + `"`
				if slices.Contains(tt.args, "text") {
					want = "event=" + event
				}
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks the audit record %s:\n%s", want, stderr)
				}
			}
		})
	}
}

// TestRunPepperMatters checks that the pepper is used: a key issued under
// one pepper is unknown to a server with another.
func TestRunPepperMatters(t *testing.T) {
	t.Parallel()
	store := keystore.NewMemoryStore()
	a, err := newServer(context.Background(), config{store: store, pepper: []byte("pepper-number-one")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := newServer(context.Background(), config{store: store, pepper: []byte("pepper-number-two")})
	if err != nil {
		t.Fatal(err)
	}
	key, issued, err := a.bootstrap(context.Background())
	if err != nil || !issued {
		t.Fatal(issued, err)
	}
	if _, err := a.keys.Authenticate(context.Background(), key.Plaintext()); err != nil {
		t.Errorf("same pepper: %v", err)
	}
	if _, err := b.keys.Authenticate(context.Background(), key.Plaintext()); err == nil {
		t.Errorf("another pepper accepted the key")
	}
	// The store is not empty any more: a second start issues no key.
	if _, issued, err := b.bootstrap(context.Background()); err != nil || issued {
		t.Errorf("second bootstrap = %v, %v; want no key", issued, err)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		usage  bool   // a usageError (exit status 2)
		help   bool   // flag.ErrHelp (exit status 0)
		stderr string // must appear in stderr or the error
	}{
		{name: "help", args: []string{"-help"}, help: true, stderr: "survive a restart"},
		{name: "h", args: []string{"-h"}, help: true, stderr: "KEYGATE_PEPPER"},
		{name: "unknown flag", args: []string{"-port", "8080"}, usage: true, stderr: "flag provided but not defined"},
		{name: "argument", args: []string{"serve"}, usage: true, stderr: "unexpected argument"},
		{name: "db and postgres", args: []string{"-db", "x.db", "-postgres", "postgres://localhost/keygate"}, usage: true, stderr: "give one"},
		{name: "empty db", args: []string{"-db", ""}, usage: true, stderr: "-db must name a file"},
		{name: "memory and db", args: []string{"-memory", "-db", "x.db"}, usage: true, stderr: "give one"},
		{name: "memory and postgres", args: []string{"-memory", "-postgres", "postgres://localhost/keygate"}, usage: true, stderr: "give one"},
		{name: "empty signing-key", args: []string{"-signing-key", ""}, usage: true, stderr: "-signing-key must name a file"},
		{name: "signing key readable by others", args: []string{"-signing-key", signingKeyFile(t, 0o644, pemEd25519(t))}, stderr: "chmod 600"},
		{name: "signing key readable by the group", args: []string{"-signing-key", signingKeyFile(t, 0o640, pemEd25519(t))}, stderr: "group or others"},
		{name: "signing key file not a key", args: []string{"-signing-key", signingKeyFile(t, 0o600, []byte("not a key\n"))}, stderr: "holds no PEM private key"},
		{name: "signing key is RSA", args: []string{"-signing-key", signingKeyFile(t, 0o600, pemRSA(t))}, stderr: "RSA key"},
		{name: "signing key is a directory", args: []string{"-signing-key", t.TempDir()}, stderr: "not a regular file"},
		{name: "signing key in a missing directory", args: []string{"-signing-key", filepath.Join(t.TempDir(), "missing", "k.pem")}, stderr: "create the signing key file"},
		{name: "db in a missing directory", args: []string{"-db", filepath.Join(t.TempDir(), "missing", "k.db")}, stderr: "-db: open the SQLite store"},
		{name: "postgres unreachable", args: []string{"-postgres", "postgres://keygate:" + dsnSecret + "@127.0.0.1:1/keygate?connect_timeout=5"}, stderr: "-postgres: open the PostgreSQL store"},
		{name: "postgres unreachable, key and value DSN", args: []string{"-postgres", "host=127.0.0.1 port=1 user=keygate password=" + dsnSecret + " connect_timeout=5"}, stderr: "-postgres: open the PostgreSQL store"},
		{name: "short pepper", env: map[string]string{"KEYGATE_PEPPER": "short"}, usage: true, stderr: "at least 16 bytes"},
		{name: "bad prefix", args: []string{"-prefix", "Halfred"}, usage: true, stderr: "prefix"},
		{name: "bad log format", args: []string{"-log-format", "xml"}, usage: true, stderr: "-log-format"},
		{name: "empty pepper-env", args: []string{"-pepper-env", ""}, usage: true, stderr: "-pepper-env"},
		{name: "address in use", args: []string{"-addr", busy.Addr().String()}, stderr: "address already in use"},
		{name: "trust-jwks alone", args: []string{"-trust-jwks", "https://idp.example.com/jwks.json"}, usage: true, stderr: "give all three or none"},
		{name: "trust without jwks", args: []string{"-trust-issuer", "https://idp.example.com/", "-trust-audience", "halfred"}, usage: true, stderr: "give all three or none"},
		{name: "trust-jwks not http", args: trustArgs("ftp://idp.example.com/jwks.json", "https://idp.example.com/"), usage: true, stderr: "http or https"},
		{name: "trust-jwks relative", args: trustArgs("/jwks.json", "https://idp.example.com/"), usage: true, stderr: "http or https"},
		{name: "trust-issuer is ours", args: trustArgs("https://idp.example.com/jwks.json", "halfred"), usage: true, stderr: "own issuer"},
		{name: "trust-jwks unreachable", args: trustArgs(unreachableURL(t), "https://idp.example.com/"), stderr: "-trust-jwks"},
		{name: "negative rate limit", args: []string{"-rate-limit-keys", "-1"}, usage: true, stderr: "-rate-limit-keys must be a number of requests a minute from 0"},
		{name: "huge rate limit", args: []string{"-rate-limit-failures", "1000001"}, usage: true, stderr: "-rate-limit-failures must be"},
		{name: "rate limit not a number", args: []string{"-rate-limit-refresh", "ten"}, usage: true, stderr: "invalid value"},
		{name: "zero usage interval", args: []string{"-usage-interval", "0"}, usage: true, stderr: "-usage-interval must be a positive duration"},
		{name: "empty metrics", args: []string{"-metrics", ""}, usage: true, stderr: "-metrics must name an address"},
		{name: "metrics address in use", args: []string{"-addr", "127.0.0.1:0", "-metrics", busy.Addr().String()}, stderr: "-metrics"},
		{name: "redis not host:port", args: []string{"-redis", "redis://localhost"}, usage: true, stderr: "-redis must be host:port"},
		{name: "empty redis prefix", args: []string{"-redis-prefix", ""}, usage: true, stderr: "-redis-prefix must not be empty"},
		{name: "unknown feed", args: []string{"-postgres", "postgres://localhost/keygate", "-feed", "kafka"}, usage: true, stderr: "-feed must be postgres or redis"},
		{name: "feed with db", args: []string{"-feed", "postgres"}, usage: true, stderr: "-feed applies to -postgres only"},
		{name: "feed with memory", args: []string{"-memory", "-redis", "127.0.0.1:6379", "-feed", "redis"}, usage: true, stderr: "-feed applies to -postgres only"},
		{name: "redis feed without redis", args: []string{"-postgres", "postgres://localhost/keygate", "-feed", "redis"}, usage: true, stderr: "-feed redis needs -redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(tt.name, "signing key readable") && runtime.GOOS == "windows" {
				t.Skip("file modes are not checked on Windows")
			}
			var stdout, stderr syncbuf.Buffer
			getenv := func(k string) string { return tt.env[k] }
			args := tt.args
			if !slices.Contains(args, "-db") && !slices.Contains(args, "-postgres") && !slices.Contains(args, "-memory") {
				// Never create keygate.db in the package directory.
				args = append([]string{"-db", filepath.Join(t.TempDir(), "keygate.db")}, args...)
			}
			err := runEnv(context.Background(), args, getenv, &stdout, &stderr)
			if err == nil {
				t.Fatal("run = nil, want an error")
			}
			var ue usageError
			if got := errors.As(err, &ue); got != tt.usage {
				t.Errorf("usage error = %v, want %v (%v)", got, tt.usage, err)
			}
			if got := errors.Is(err, flag.ErrHelp); got != tt.help {
				t.Errorf("ErrHelp = %v, want %v (%v)", got, tt.help, err)
			}
			if tt.name == "address in use" && runtime.GOOS == "windows" {
				return // the message differs
			}
			if all := stderr.String() + err.Error(); !strings.Contains(all, tt.stderr) {
				t.Errorf("stderr and error lack %q:\n%s", tt.stderr, all)
			}
			if stdout.String() != "" {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			if strings.Contains(stderr.String()+err.Error(), dsnSecret) {
				t.Errorf("output holds the DSN's password:\n%s\n%v", stderr.String(), err)
			}
			if strings.Contains(stderr.String()+err.Error(), "pepper") && tt.env["KEYGATE_PEPPER"] != "" &&
				strings.Contains(stderr.String()+err.Error(), tt.env["KEYGATE_PEPPER"]) {
				t.Errorf("output holds the pepper")
			}
		})
	}
}

// trustArgs are the three -trust-* flags, with port 0 to listen on.
func trustArgs(jwks, issuer string) []string {
	return []string{"-addr", "127.0.0.1:0", "-trust-jwks", jwks, "-trust-issuer", issuer, "-trust-audience", idpAudience}
}

// unreachableURL is the URL of a server that is gone.
func unreachableURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL + "/jwks.json"
}

// TestRunTrust starts the server with the -trust-* flags against an
// httptest identity provider and uses one of its tokens.
func TestRunTrust(t *testing.T) {
	t.Parallel()
	p := newIdentityProvider(t)
	s := startRun(t, nil, trustArgs(p.srv.URL, idpIssuer)...)
	tok := signJWT(t, jwt.SigningMethodEdDSA, p.ed.KID, p.ed.Key, idpClaims(time.Now()), nil)
	res := getResponse(t, s.addr, "/v1/me", tok)
	defer res.Body.Close()
	var me map[string]any
	if err := json.NewDecoder(res.Body).Decode(&me); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /v1/me = %d, %v", res.StatusCode, err)
	}
	if me["method"] != "access_token" || me["subject"] != "user-42" {
		t.Errorf("me = %v", me)
	}
	if p.fetches.Load() < 1 {
		t.Errorf("the JWK Set was not fetched")
	}
	head, payload, sig := splitJWT(t, tok)
	changed := head + "." + b64url(strings.Replace(decodeB64(t, payload), "user-42", "user-43", 1)) + "." + sig
	if got := get(t, s.addr, "/v1/me", changed); got != http.StatusUnauthorized {
		t.Errorf("a changed token = %d", got)
	}
	if stderr := s.stderr.String(); !strings.Contains(stderr, "identity provider") || secretPattern.MatchString(stderr) {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestBinary builds the real binary, starts it, uses it and stops it with
// SIGTERM.
func TestBinary(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGTERM")
	}
	t.Parallel()
	bin := buildServer(t)

	t.Run("serve and stop", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "keygate.db"))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "KEYGATE_PEPPER=")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderrPipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })

		// Standard output stays open while the server runs: read its first
		// line as it arrives, then the rest (which must be empty) at exit.
		firstc := make(chan string, 1)
		restc := make(chan string, 1)
		go func() {
			br := bufio.NewReader(stdout)
			first, _ := br.ReadString('\n')
			firstc <- first
			rest, _ := io.ReadAll(br)
			restc <- string(rest)
		}()
		addrc := make(chan string, 1)
		stderrc := make(chan string, 1)
		go func() {
			var all strings.Builder
			sc := bufio.NewScanner(stderrPipe)
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(&all, line)
				if a, ok := strings.CutPrefix(line, "listening on http://"); ok {
					addrc <- a
				}
			}
			stderrc <- all.String()
		}()
		var addr string
		select {
		case addr = <-addrc:
		case <-time.After(30 * time.Second):
			t.Fatal("no \"listening on\" line")
		}

		var key string
		select {
		case first := <-firstc:
			m := keyLine("halfred").FindStringSubmatch(first)
			if m == nil {
				t.Fatalf("first line of stdout = %q, want \"API key: halfred_…\"", first)
			}
			key = m[1]
		case <-time.After(30 * time.Second):
			t.Fatal("no key on stdout")
		}
		if got := get(t, addr, "/v1/me", key); got != http.StatusOK {
			t.Errorf("GET /v1/me = %d", got)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Read both pipes to EOF (the process closes them when it exits)
		// before Wait, which closes them itself.
		var stderr string
		select {
		case stderr = <-stderrc:
		case <-time.After(20 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
		if rest := <-restc; rest != "" {
			t.Errorf("stdout holds more than the key line: %q", rest)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		if keystore.DefaultFormat().Pattern().MatchString(stderr) {
			t.Errorf("stderr holds a key:\n%s", stderr)
		}
		if !strings.Contains(stderr, "stopped") {
			t.Errorf("stderr lacks the clean stop:\n%s", stderr)
		}
	})

	t.Run("rate limits, audit and metrics", func(t *testing.T) {
		t.Parallel()
		p := startProc(t, bin, "-addr", "127.0.0.1:0", "-memory", "-metrics", "127.0.0.1:0", "-rate-limit-keys", "2")
		key := p.key(t)
		m := metricsLine.FindStringSubmatch(p.stderr.String())
		if m == nil {
			t.Fatalf("no \"metrics on\" line:\n%s", p.stderr)
		}
		for i, want := range []int{200, 200, 429} {
			res := getResponse(t, p.addr, "/v1/models", key)
			res.Body.Close()
			if res.StatusCode != want || res.Header.Get("RateLimit-Policy") != `"api_key";q=2;w=60` ||
				(want == 429) != (res.Header.Get("Retry-After") == "30") || res.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("request %d: %d, headers %v", i, res.StatusCode, res.Header)
			}
		}
		if got := scrape(t, "http://"+m[1]+"/metrics")[`keygate_auth_requests_total{method="api_key",outcome="rate_limited"}`]; got != 1 {
			t.Errorf("rate_limited counter = %v, want 1", got)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
		if !p.cmd.ProcessState.Success() {
			t.Errorf("exit after SIGTERM: %v", p.cmd.ProcessState)
		}
		records := auditRecords(t, p.stderr.String())
		if !slices.ContainsFunc(records, func(r map[string]any) bool {
			return r["event"] == "auth.rate_limited" && r["status"] == float64(429) && r["client_addr"] == "127.0.0.1"
		}) {
			t.Errorf("no auth.rate_limited audit record:\n%s", p.stderr)
		}
		if stderr := p.stderr.String(); keystore.DefaultFormat().Pattern().MatchString(stderr) || !strings.Contains(stderr, `"msg":"stopped"`) {
			t.Errorf("stderr holds a key, or lacks the clean stop:\n%s", stderr)
		}
	})

	t.Run("postgres unreachable exits 1", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(bin, "-postgres", "postgres://keygate:"+dsnSecret+"@127.0.0.1:1/x?connect_timeout=5")
		cmd.Dir = t.TempDir()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("exit = %v, want status 1", err)
		}
		if !strings.Contains(stderr.String(), "-postgres: open the PostgreSQL store") {
			t.Errorf("stderr = %q", stderr.String())
		}
		if strings.Contains(stderr.String(), dsnSecret) {
			t.Errorf("stderr holds the DSN's password: %q", stderr.String())
		}
	})

	t.Run("help exits 0", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command(bin, "-help")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("exit = %v", err)
		}
		for _, want := range []string{"-addr", "-prefix", "-db", "-postgres", "-pepper-env", "survive a restart", "/v1/chat/completions",
			"-trust-jwks", "-trust-issuer", "-trust-audience", "/v1/auth/token", "/v1/auth/refresh", "/v1/auth/revoke", "/.well-known/jwks.json",
			"-rate-limit-keys", "-rate-limit-tokens", "-rate-limit-failures", "-rate-limit-credential-failures", "-rate-limit-exchange", "-rate-limit-refresh",
			"-rate-limit-fail-closed", "-redis", "-redis-prefix", "KEYGATE_REDIS_PASSWORD", "-feed", "-usage-interval", "-metrics",
			"-log-format", "rate_limit", "usage_count"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("help lacks %q:\n%s", want, out)
			}
		}
	})
}
