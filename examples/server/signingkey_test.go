package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/token"
)

// signingKeyFile writes data to a new file with mode and returns its path.
func signingKeyFile(t *testing.T, mode os.FileMode, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signing-key.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by the umask
		t.Fatal(err)
	}
	return path
}

// pemPKCS8 encodes key as a PKCS#8 "PRIVATE KEY" PEM block.
func pemPKCS8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pemEd25519 is a new Ed25519 key in PKCS#8 PEM.
func pemEd25519(t testing.TB) []byte {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pemPKCS8(t, key)
}

// testRSAKey is one RSA key for the tests that refuse RSA keys.
var testRSAKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// pemRSA is an RSA key in PKCS#8 PEM.
func pemRSA(t testing.TB) []byte {
	t.Helper()
	key, err := testRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	return pemPKCS8(t, key)
}

// ecKey is a new ECDSA key on curve.
func ecKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// pemSEC1 encodes key as an "EC PRIVATE KEY" block after an "EC
// PARAMETERS" block, as openssl ecparam -genkey writes it.
func pemSEC1(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	return append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
}

// base64Line matches a line of a PEM block's body.
var base64Line = regexp.MustCompile(`^[A-Za-z0-9+/]{16,}={0,2}$`)

// pemBodies returns the base64 lines of data (of 16 characters or more):
// the key material of its PEM blocks, which no error or log may hold.
func pemBodies(data []byte) []string {
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); base64Line.MatchString(line) {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestLoadSigningKey(t *testing.T) {
	t.Parallel()
	ed := pemEd25519(t)
	p256 := ecKey(t, elliptic.P256())
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    os.FileMode
		data    []byte
		alg     string // want a key with this algorithm, or
		wantErr string // an error holding this
	}{
		{name: "Ed25519 PKCS#8", mode: 0o600, data: ed, alg: token.EdDSA},
		{name: "owner read only", mode: 0o400, data: ed, alg: token.EdDSA},
		{name: "ECDSA P-256 PKCS#8", mode: 0o600, data: pemPKCS8(t, p256), alg: token.ES256},
		{name: "ECDSA P-256 SEC 1 with parameters", mode: 0o600, data: pemSEC1(t, p256), alg: token.ES256},
		{name: "text around the block", mode: 0o600, data: append(append([]byte("my signing key\n"), ed...), "\n\n"...), alg: token.EdDSA},
		{name: "group readable", mode: 0o640, data: ed, wantErr: "group or others may access it"},
		{name: "world readable", mode: 0o604, data: ed, wantErr: "chmod 600"},
		{name: "group writable", mode: 0o620, data: ed, wantErr: "mode 0620"},
		{name: "empty", mode: 0o600, data: nil, wantErr: "holds no PEM private key"},
		{name: "not PEM", mode: 0o600, data: []byte("hello, world\n"), wantErr: "holds no PEM private key"},
		{name: "truncated", mode: 0o600, data: ed[:len(ed)-30], wantErr: "holds no PEM private key"},
		{name: "public key only", mode: 0o600, data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), wantErr: "holds no PEM private key"},
		{name: "corrupt PKCS#8", mode: 0o600, data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: bytes.Repeat([]byte{0x30}, 40)}), wantErr: "does not parse"},
		{name: "RSA PKCS#8", mode: 0o600, data: pemRSA(t), wantErr: "RSA key"},
		{name: "RSA PKCS#1", mode: 0o600, data: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), wantErr: "RSA key"},
		{name: "encrypted", mode: 0o600, data: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), wantErr: "encrypted"},
		{name: "OpenSSH", mode: 0o600, data: pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte("openssh-key-v1")}), wantErr: "OpenSSH"},
		{name: "ECDSA P-384", mode: 0o600, data: pemPKCS8(t, ecKey(t, elliptic.P384())), wantErr: "P-256"},
		{name: "X25519", mode: 0o600, data: pemPKCS8(t, x25519), wantErr: "not an Ed25519 or ECDSA P-256 signing key"},
		{name: "two keys", mode: 0o600, data: append(append([]byte{}, ed...), pemEd25519(t)...), wantErr: "more than one private key"},
		{name: "too large", mode: 0o600, data: append(bytes.Repeat([]byte("#"), maxSigningKeyFile), ed...), wantErr: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.mode&0o077 != 0 && runtime.GOOS == "windows" {
				t.Skip("file modes are not checked on Windows")
			}
			path := signingKeyFile(t, tt.mode, tt.data)
			key, created, err := loadOrCreateSigningKey(path)
			if created {
				t.Errorf("created = true for an existing file")
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("loaded %v, want an error holding %q", key, tt.wantErr)
				}
				if msg := err.Error(); !strings.Contains(msg, tt.wantErr) || !strings.Contains(msg, path) {
					t.Errorf("error = %q, want it to hold %q and the path", msg, tt.wantErr)
				}
				for _, line := range pemBodies(tt.data) {
					if strings.Contains(err.Error(), line) {
						t.Errorf("error holds key material: %q", err)
					}
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.data) {
					t.Errorf("the refused file was changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if key.Alg != tt.alg {
				t.Errorf("alg = %q, want %q", key.Alg, tt.alg)
			}
			// The kid is the key's thumbprint: the same at every load, and
			// the one token.NewSigningKey gives the same key.
			again, _, err := loadOrCreateSigningKey(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := token.NewSigningKey("", key.Key)
			if err != nil {
				t.Fatal(err)
			}
			if key.KID == "" || again.KID != key.KID || want.KID != key.KID {
				t.Errorf("kid = %q, then %q; thumbprint %q", key.KID, again.KID, want.KID)
			}
		})
	}
}

func TestCreateSigningKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keygate.db"+signingKeySuffix)
	key, created, err := loadOrCreateSigningKey(path)
	if err != nil || !created {
		t.Fatalf("create = %v, %v; want a new key", created, err)
	}
	if key.Alg != token.EdDSA {
		t.Errorf("alg = %q, want EdDSA", key.Alg)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm != 0o600 {
		t.Errorf("mode = %#o, want 0600", perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(data); block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("the file is not a PKCS#8 PEM block:\n%s", data)
	}
	loaded, created, err := loadOrCreateSigningKey(path)
	if err != nil || created {
		t.Fatalf("second load = %v, %v; want the existing key", created, err)
	}
	if loaded.KID != key.KID || !bytes.Equal(loaded.Key.(ed25519.PrivateKey), key.Key.(ed25519.PrivateKey)) {
		t.Errorf("second load gave another key: kid %q, want %q", loaded.KID, key.KID)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the key file only: %v", len(entries), entries)
	}
}

// TestCreateSigningKeyConcurrently starts several loads of one missing
// file at once, as instances started together would: one creates it, and
// every one ends up with its key.
func TestCreateSigningKeyConcurrently(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "shared.pem")
	const n = 8
	kids := make([]string, n)
	createdBy := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var key token.SigningKey
			key, createdBy[i], errs[i] = loadOrCreateSigningKey(path)
			kids[i] = key.KID
		}()
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("load %d: %v", i, errs[i])
		}
		if kids[i] != kids[0] {
			t.Errorf("load %d has kid %q, load 0 %q: two keys", i, kids[i], kids[0])
		}
		if createdBy[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Errorf("%d loads created the file, want 1", creators)
	}
	file, err := readSigningKey(path)
	if err != nil || file.KID != kids[0] {
		t.Errorf("the file holds kid %q (%v), the loads %q", file.KID, err, kids[0])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the key file only", len(entries))
	}
}

func TestReadSigningKeyMissing(t *testing.T) {
	t.Parallel()
	_, err := readSigningKey(filepath.Join(t.TempDir(), "missing.pem"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

// jwksKIDs returns the kids of the JWK Set a server publishes.
func jwksKIDs(t *testing.T, addr string) []string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

// accessToken exchanges key for an access token at addr.
func accessToken(t *testing.T, addr, key string) string {
	t.Helper()
	status, body := postJSON(t, addr, "/v1/auth/token", key, "")
	at, _ := body["access_token"].(string)
	if status != http.StatusOK || at == "" {
		t.Fatalf("POST /v1/auth/token = %d %v", status, body)
	}
	return at
}

// TestSigningKeyRestart checks that an access token survives a restart
// when the signing key is in a file: by default beside the SQLite file,
// or named by -signing-key.
func TestSigningKeyRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// args returns the store and signing key flags, and the key file.
		args func(t *testing.T) ([]string, string)
		// existing: args writes the key file; the server must not replace it.
		existing bool
	}{
		{name: "default beside -db", args: func(t *testing.T) ([]string, string) {
			db := filepath.Join(t.TempDir(), "keygate.db")
			return []string{"-db", db}, db + ".signing-key.pem"
		}},
		{name: "-signing-key with -db", args: func(t *testing.T) ([]string, string) {
			file := filepath.Join(t.TempDir(), "tokens.pem")
			return []string{"-db", filepath.Join(t.TempDir(), "keygate.db"), "-signing-key", file}, file
		}},
		{name: "-signing-key with -postgres", args: func(t *testing.T) ([]string, string) {
			file := filepath.Join(t.TempDir(), "tokens.pem")
			return []string{"-postgres", postgresDSN(t), "-signing-key", file}, file
		}},
		{name: "existing ECDSA P-256 key", existing: true, args: func(t *testing.T) ([]string, string) {
			file := signingKeyFile(t, 0o600, pemSEC1(t, ecKey(t, elliptic.P256())))
			return []string{"-db", filepath.Join(t.TempDir(), "keygate.db"), "-signing-key", file}, file
		}},
		{name: "existing Ed25519 key", existing: true, args: func(t *testing.T) ([]string, string) {
			file := signingKeyFile(t, 0o400, pemEd25519(t))
			return []string{"-db", filepath.Join(t.TempDir(), "keygate.db"), "-signing-key", file}, file
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, file := tt.args(t)
			before, _ := os.ReadFile(file)
			args := append([]string{"-addr", "127.0.0.1:0"}, store...)
			first := startRun(t, nil, args...)
			m := keyLine("halfred").FindStringSubmatch(first.stdout.String())
			if m == nil {
				t.Fatalf("stdout = %q", first.stdout)
			}
			at := accessToken(t, first.addr, m[1])
			kids := jwksKIDs(t, first.addr)
			stopRun(t, first)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("no signing key file: %v", err)
			}
			if got := strings.Contains(first.stderr.String(), "created the signing key file"); got == tt.existing {
				t.Errorf("first start logs a new file: %v, want %v:\n%s", got, !tt.existing, first.stderr)
			}
			if tt.existing && !bytes.Equal(data, before) {
				t.Errorf("the server changed the existing key file")
			}

			second := startRun(t, nil, args...)
			defer stopRun(t, second)
			if got := get(t, second.addr, "/v1/me", at); got != http.StatusOK {
				t.Errorf("GET /v1/me with an access token issued before the restart = %d, want 200", got)
			}
			if again := jwksKIDs(t, second.addr); len(kids) != 1 || len(again) != 1 || again[0] != kids[0] {
				t.Errorf("JWKS kids: %v before the restart, %v after; want one, the same", kids, again)
			}
			stderr := second.stderr.String()
			if !strings.Contains(stderr, "signed with the key in the signing key file") || !strings.Contains(stderr, `"kid":"`+kids[0]+`"`) {
				t.Errorf("second start does not log the file's key and kid:\n%s", stderr)
			}
			for _, line := range pemBodies(data) {
				if strings.Contains(first.stderr.String()+stderr, line) {
					t.Errorf("the logs hold the signing key")
				}
			}
		})
	}
}

// TestSigningKeyShared runs two instances on one PostgreSQL database, as
// behind a load balancer: with one -signing-key file each accepts the
// other's access tokens; without, each has a key of its own, warns so,
// and refuses the other's tokens.
func TestSigningKeyShared(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		shared bool
	}{
		{name: "one file", shared: true},
		{name: "no file", shared: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"-addr", "127.0.0.1:0", "-postgres", postgresDSN(t)}
			if tt.shared {
				args = append(args, "-signing-key", filepath.Join(t.TempDir(), "shared.pem"))
			}
			a, b, admin := startPair(t, args...)

			fromA, fromB := accessToken(t, a.addr, admin), accessToken(t, b.addr, admin)
			want := http.StatusUnauthorized
			if tt.shared {
				want = http.StatusOK
			}
			if got := get(t, b.addr, "/v1/models", fromA); got != want {
				t.Errorf("B: GET /v1/models with A's access token = %d, want %d", got, want)
			}
			if got := get(t, a.addr, "/v1/models", fromB); got != want {
				t.Errorf("A: GET /v1/models with B's access token = %d, want %d", got, want)
			}
			if got := get(t, a.addr, "/v1/models", fromA); got != http.StatusOK {
				t.Errorf("A: GET /v1/models with its own access token = %d", got)
			}
			const warning = "access tokens are signed with a key made at start, so they are per-instance"
			for name, s := range map[string]*started{"A": a, "B": b} {
				if got := strings.Contains(s.stderr.String(), warning); got == tt.shared {
					t.Errorf("%s: warning logged = %v, want %v:\n%s", name, got, !tt.shared, s.stderr)
				}
			}
		})
	}
}

// TestRunMemory starts the server with -memory: it works, and leaves no
// file behind (no database, no signing key file).
func TestRunMemory(t *testing.T) {
	t.Parallel()
	s := startRun(t, nil, "-addr", "127.0.0.1:0", "-memory")
	m := keyLine("halfred").FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Fatalf("stdout = %q", s.stdout)
	}
	at := accessToken(t, s.addr, m[1])
	if got := get(t, s.addr, "/v1/models", at); got != http.StatusOK {
		t.Errorf("GET /v1/models with an access token = %d", got)
	}
	if got := get(t, s.addr, "/v1/models", m[1]); got != http.StatusOK {
		t.Errorf("GET /v1/models with the key = %d", got)
	}
	stopRun(t, s)
	stderr := s.stderr.String()
	if !strings.Contains(stderr, "kept in memory") || strings.Contains(stderr, "SQLite") {
		t.Errorf("stderr does not say the store is in memory:\n%s", stderr)
	}
	for _, name := range []string{"keygate.db", "keygate.db" + signingKeySuffix} {
		if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("-memory left %s in the working directory (%v)", name, err)
		}
	}
}

// FuzzParseSigningKey checks that no file content makes the parser panic,
// that what it accepts is a usable key that round-trips, and that its
// errors never quote the file.
func FuzzParseSigningKey(f *testing.F) {
	f.Add(pemEd25519(f))
	f.Add(pemPKCS8(f, ecKey(f, elliptic.P256())))
	f.Add(pemSEC1(f, ecKey(f, elliptic.P256())))
	f.Add(pemPKCS8(f, ecKey(f, elliptic.P384())))
	f.Add(pemRSA(f))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Add([]byte("not a key"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseSigningKey(data)
		if err != nil {
			for _, line := range pemBodies(data) {
				if strings.Contains(err.Error(), line) {
					t.Fatalf("error quotes the file: %v", err)
				}
			}
			return
		}
		if key.Alg != token.EdDSA && key.Alg != token.ES256 {
			t.Fatalf("accepted a %s key", key.Alg)
		}
		out, err := marshalSigningKey(key)
		if err != nil {
			t.Fatalf("marshal an accepted key: %v", err)
		}
		again, err := parseSigningKey(out)
		if err != nil || again.KID != key.KID {
			t.Fatalf("round trip: kid %q, then %q (%v)", key.KID, again.KID, err)
		}
	})
}
