package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/keygate/keygate/token"
)

// signingKeySuffix is appended to the -db file's name to make the default
// -signing-key file: keygate.db keeps its signing key in
// keygate.db.signing-key.pem.
const signingKeySuffix = ".signing-key.pem"

// maxSigningKeyFile bounds the size of a signing key file read at start:
// a PEM Ed25519 or P-256 key is a few hundred bytes.
const maxSigningKeyFile = 64 << 10

// loadOrCreateSigningKey returns the signing key in the PEM file at path,
// and created false. If there is no such file it generates an Ed25519
// key, writes it there with mode 0600 and returns it with created true.
//
// The new file appears atomically, complete and synced: the key is
// written to a temporary file in the same directory, which is then
// hard-linked to path. A link, unlike a rename, never replaces a file, so
// two instances starting at once on a missing file end up with one key:
// the second reads the key the first wrote. (On a file system without
// hard links it falls back to a rename, where the last start wins.)
//
// An existing file must be a regular file that neither group nor others
// may access (on Unix), holding one Ed25519 or ECDSA P-256 private key in
// PEM: PKCS#8 ("BEGIN PRIVATE KEY", what openssl genpkey writes) or SEC 1
// ("BEGIN EC PRIVATE KEY", what openssl ecparam -genkey writes). Anything
// else is an error that names the file and the problem, never any of its
// contents. The key ID is the key's RFC 7638 thumbprint, the same at
// every load of the same key.
func loadOrCreateSigningKey(path string) (key token.SigningKey, created bool, err error) {
	key, err = readSigningKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	key, err = token.GenerateSigningKey(token.EdDSA, nil)
	if err != nil {
		return token.SigningKey{}, false, fmt.Errorf("generate a signing key: %w", err)
	}
	data, err := marshalSigningKey(key)
	if err != nil {
		return token.SigningKey{}, false, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp creates the file with mode 0600.
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return token.SigningKey{}, false, fmt.Errorf("create the signing key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return token.SigningKey{}, false, fmt.Errorf("write the signing key file %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another start created it first: use its key.
			key, err = readSigningKey(path)
			return key, false, err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return token.SigningKey{}, false, fmt.Errorf("create the signing key file %s: %w", path, err)
		}
	}
	syncDir(dir)
	return key, true, nil
}

// syncDir flushes a directory's entries to disk, so that a file just
// linked into it survives a crash. Failures are ignored: some systems
// cannot sync a directory, and the file itself is already synced.
func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// readSigningKey reads the signing key in the PEM file at path. Its error
// matches fs.ErrNotExist when there is no file at path.
func readSigningKey(path string) (token.SigningKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return token.SigningKey{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return token.SigningKey{}, err
	}
	if !fi.Mode().IsRegular() {
		return token.SigningKey{}, fmt.Errorf("signing key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return token.SigningKey{}, fmt.Errorf("signing key file %s has mode %#o: group or others may access it, and anyone who reads it can sign access tokens; make it private to the server's user (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSigningKeyFile+1))
	if err != nil {
		return token.SigningKey{}, fmt.Errorf("read the signing key file %s: %w", path, err)
	}
	if len(data) > maxSigningKeyFile {
		return token.SigningKey{}, fmt.Errorf("signing key file %s is larger than %d bytes: it is not a PEM private key", path, maxSigningKeyFile)
	}
	key, err := parseSigningKey(data)
	if err != nil {
		return token.SigningKey{}, fmt.Errorf("signing key file %s: %w", path, err)
	}
	return key, nil
}

// errNoPrivateKey is parseSigningKey's error for data without a usable
// PEM private key block.
var errNoPrivateKey = errors.New(`holds no PEM private key: want an Ed25519 or ECDSA P-256 key, "-----BEGIN PRIVATE KEY-----" (PKCS#8, e.g. from "openssl genpkey -algorithm ed25519") or "-----BEGIN EC PRIVATE KEY-----"`)

// parseSigningKey parses PEM data holding one Ed25519 or ECDSA P-256
// private key, PKCS#8 or SEC 1 (an "EC PARAMETERS" block beside it is
// skipped), and returns it as a signing key named by its thumbprint. Its
// errors describe the problem without quoting data.
func parseSigningKey(data []byte) (token.SigningKey, error) {
	var key any
	found := false
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var parsed any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return token.SigningKey{}, errors.New("holds an encrypted private key: the server cannot ask for a passphrase; store the key unencrypted, readable by the server's user only")
		case "RSA PRIVATE KEY":
			return token.SigningKey{}, errors.New("holds an RSA key: the server signs access tokens with Ed25519 or ECDSA P-256")
		case "OPENSSH PRIVATE KEY":
			return token.SigningKey{}, errors.New("holds an OpenSSH key: convert it to PKCS#8 PEM, or let the server create the file")
		default:
			continue
		}
		if err != nil {
			// x509's error is left out: it may describe the bytes.
			return token.SigningKey{}, fmt.Errorf("holds a %s block that does not parse as an Ed25519 or ECDSA key", block.Type)
		}
		if found {
			return token.SigningKey{}, errors.New("holds more than one private key: keep one")
		}
		key, found = parsed, true
	}
	if !found {
		return token.SigningKey{}, errNoPrivateKey
	}
	switch k := key.(type) {
	case ed25519.PrivateKey, *ecdsa.PrivateKey:
		sk, err := token.NewSigningKey("", k)
		if err != nil {
			return token.SigningKey{}, fmt.Errorf("holds an unusable key: %w", err)
		}
		return sk, nil
	case *rsa.PrivateKey:
		return token.SigningKey{}, errors.New("holds an RSA key: the server signs access tokens with Ed25519 or ECDSA P-256")
	default:
		return token.SigningKey{}, fmt.Errorf("holds a %T, not an Ed25519 or ECDSA P-256 signing key", key)
	}
}

// marshalSigningKey encodes k's private key as a PKCS#8 PEM block.
func marshalSigningKey(k token.SigningKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("encode the signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
