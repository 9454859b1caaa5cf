package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
)

// JWKSCacheControl is the Cache-Control header of [KeySet.Handler]'s
// responses: clients may reuse the key set for five minutes. When keys
// rotate, publish the new key at least that long before signing with it.
const JWKSCacheControl = "public, max-age=300"

// KeySet is a fixed set of verification keys, found by kid. It implements
// [KeySource] for the tokens of an [Issuer] (see [Issuer.KeySet]) and
// publishes the public keys as an RFC 7517 JWK Set.
//
// A KeySet is immutable and safe for concurrent use. To rotate keys, build
// a new KeySet (and a new [Verifier]). The zero KeySet, like a nil one,
// holds no keys. Printing a KeySet shows only its kids: HS256 secrets
// never appear.
type KeySet struct {
	keys map[string]VerificationKey
	kids []string // in the order given
	jwks []byte
	etag string
	clen string
}

// NewKeySet returns a KeySet of keys. Each key's algorithm must be one of
// [EdDSA], [ES256], [RS256] and [HS256], with a key of the matching type
// (an [ErrInvalidConfig] error otherwise) and strength (an [ErrWeakKey]
// error otherwise), and a kid of 1 to [MaxKIDLength] bytes. Two keys with
// the same kid, or no key at all, are an [ErrInvalidConfig] error. Byte
// slices are copied.
func NewKeySet(keys ...VerificationKey) (*KeySet, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: a key set needs at least one key", ErrInvalidConfig)
	}
	s := &KeySet{keys: make(map[string]VerificationKey, len(keys))}
	set := jwkSet{Keys: []jwk{}}
	for _, k := range keys {
		if err := checkVerificationKey(k); err != nil {
			return nil, err
		}
		if _, dup := s.keys[k.KID]; dup {
			return nil, fmt.Errorf("%w: two keys with kid %q", ErrInvalidConfig, k.KID)
		}
		switch key := k.Key.(type) {
		case ed25519.PublicKey:
			k.Key = append(ed25519.PublicKey(nil), key...)
		case []byte:
			k.Key = append([]byte(nil), key...)
		}
		s.keys[k.KID] = k
		s.kids = append(s.kids, k.KID)
		if j, ok := publicJWK(k); ok {
			set.Keys = append(set.Keys, j)
		}
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("token: encode JWK Set: %w", err)
	}
	sum := sha256.Sum256(body)
	s.jwks = body
	s.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	s.clen = strconv.Itoa(len(body))
	return s, nil
}

// VerificationKey returns the key with this kid, or [ErrUnknownKID]. It
// implements [KeySource]; it makes no I/O and does not allocate.
func (s *KeySet) VerificationKey(_ context.Context, kid string) (VerificationKey, error) {
	if s != nil {
		if k, ok := s.keys[kid]; ok {
			return k, nil
		}
	}
	return VerificationKey{}, ErrUnknownKID
}

// KIDs returns the kids of the set's keys, in the order given to
// [NewKeySet].
func (s *KeySet) KIDs() []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s.kids...)
}

// JWKS returns the RFC 7517 JWK Set of the set's public keys, as JSON:
// {"keys":[…]}, one JWK per EdDSA, ES256 or RS256 key, in the order given,
// each with kty, use "sig", alg and kid. HS256 secrets are never included.
// Ed25519 keys are {"kty":"OKP","crv":"Ed25519","x"} (RFC 8037), P-256
// keys {"kty":"EC","crv":"P-256","x","y"} with 32-byte coordinates, RSA
// keys {"kty":"RSA","n","e"} (RFC 7518 §6). The result is a copy.
func (s *KeySet) JWKS() []byte {
	if s == nil || s.jwks == nil {
		return []byte(`{"keys":[]}`)
	}
	return bytes.Clone(s.jwks)
}

// Handler returns an http.Handler that serves [KeySet.JWKS], for
// GET /.well-known/jwks.json. Responses carry Content-Type
// application/json, Cache-Control [JWKSCacheControl] and a strong ETag;
// a request whose If-None-Match matches the ETag gets 304 Not Modified
// without a body. HEAD is answered like GET without the body; other
// methods get 405 with an Allow header.
func (s *KeySet) Handler() http.Handler {
	body, etag, clen := []byte(`{"keys":[]}`), `"empty"`, "11"
	if s != nil && s.jwks != nil {
		body, etag, clen = s.jwks, s.etag, s.clen
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = io.WriteString(w, `{"error":{"message":"Use GET to fetch the JWK Set.","type":"invalid_request_error","code":"method_not_allowed"}}`+"\n")
			return
		}
		h.Set("Cache-Control", JWKSCacheControl)
		h.Set("ETag", etag)
		if etagMatches(r.Header.Values("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", clen)
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

// etagMatches reports whether an If-None-Match header (RFC 9110 §13.1.2)
// matches etag: "*", or a list containing etag, weakly compared.
func etagMatches(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// String returns the kids of the set, never key material.
func (s *KeySet) String() string {
	if s == nil {
		return "token.KeySet(nil)"
	}
	return fmt.Sprintf("token.KeySet{KIDs:%q}", s.kids)
}

// Format writes String for every verb, so that formatting a KeySet never
// prints an HS256 secret.
func (s *KeySet) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// jwkSet and jwk are the JSON shapes of RFC 7517.
type jwkSet struct {
	Keys []jwk `json:"keys"`
}

type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// publicJWK returns the public JWK of k; false for an HS256 secret or a
// key it does not know.
func publicJWK(k VerificationKey) (jwk, bool) {
	b64 := base64.RawURLEncoding.EncodeToString
	j := jwk{Use: "sig", Alg: k.Alg, Kid: k.KID}
	switch key := k.Key.(type) {
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(key)
	case *ecdsa.PublicKey:
		pub, err := key.ECDH()
		if err != nil {
			return jwk{}, false
		}
		b := pub.Bytes() // 0x04 || X || Y, each coordinate 32 bytes
		if len(b) != 65 {
			return jwk{}, false
		}
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64(b[1:33]), b64(b[33:])
	case *rsa.PublicKey:
		j.Kty, j.N, j.E = "RSA", b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes())
	default:
		return jwk{}, false
	}
	return j, true
}
