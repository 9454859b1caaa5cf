package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Key size limits.
const (
	// MinHMACSecretSize is the shortest HS256 secret accepted, in bytes
	// (RFC 7518 §3.2: at least the size of the hash output).
	MinHMACSecretSize = 32
	// MinRSAKeyBits is the smallest RSA modulus accepted.
	MinRSAKeyBits = 2048
	// maxRSAKeyBits is the largest RSA modulus accepted: bigger keys make
	// every verification slow without adding useful security.
	maxRSAKeyBits = 8192
	// MaxKIDLength is the longest key ID accepted, in bytes. A token
	// whose kid is longer fails like one with an unknown kid, without the
	// [KeySource] being asked.
	MaxKIDLength = 256
)

// SigningKey is a private key (or an HS256 secret) that signs tokens,
// bound to one algorithm and named by a key ID.
//
// A SigningKey never prints its key material: String, GoString, Format
// (every fmt verb), LogValue and MarshalJSON show the kid and the
// algorithm only. fmt cannot call the methods of a value stored in an
// unexported struct field, and prints it field by field: do not keep a
// SigningKey in an unexported field of a type that may be printed, unless
// that type implements [fmt.Formatter] itself (as [Issuer] does). Make one with [NewSigningKey] or [GenerateSigningKey];
// the zero SigningKey signs nothing. A SigningKey is a value that must
// not be modified once in use; it is then safe for concurrent use.
type SigningKey struct {
	// KID is the key ID, written in the kid header of every token.
	KID string
	// Alg is the algorithm: [EdDSA], [ES256], [RS256] or [HS256].
	Alg string
	// Key is an ed25519.PrivateKey, a *ecdsa.PrivateKey on P-256, a
	// *rsa.PrivateKey of at least 2048 bits, or an HS256 secret ([]byte)
	// of at least 32 bytes.
	Key any
}

// NewSigningKey returns a SigningKey for key, with the algorithm its type
// implies: ed25519.PrivateKey is [EdDSA], *ecdsa.PrivateKey on P-256 is
// [ES256], *rsa.PrivateKey of 2048 to 8192 bits is [RS256], and a []byte
// secret of at least [MinHMACSecretSize] bytes is [HS256]. Byte slices are
// copied.
//
// kid names the key in tokens and in the JWK Set. It must be at most
// [MaxKIDLength] bytes of UTF-8 without control characters. An empty kid
// is replaced by the key's RFC 7638 JWK thumbprint; an HS256 key needs an
// explicit kid.
//
// It returns an error matching [ErrWeakKey] for an unsupported type, a
// curve other than P-256, an RSA key under 2048 bits or an HS256 secret
// under 32 bytes (the empty one included), and [ErrInvalidConfig] for a
// bad kid.
func NewSigningKey(kid string, key any) (SigningKey, error) {
	var k SigningKey
	switch key := key.(type) {
	case ed25519.PrivateKey:
		if len(key) != ed25519.PrivateKeySize {
			return SigningKey{}, fmt.Errorf("%w: Ed25519 private key of %d bytes", ErrWeakKey, len(key))
		}
		// The second half of a private key is its public key; a corrupted
		// one would sign tokens that verify under no published key.
		if subtle.ConstantTimeCompare(ed25519.NewKeyFromSeed(key.Seed())[32:], key[32:]) != 1 {
			return SigningKey{}, fmt.Errorf("%w: inconsistent Ed25519 private key", ErrWeakKey)
		}
		k = SigningKey{Alg: EdDSA, Key: append(ed25519.PrivateKey(nil), key...)}
	case *ecdsa.PrivateKey:
		if key == nil {
			return SigningKey{}, fmt.Errorf("%w: nil ECDSA key", ErrWeakKey)
		}
		if err := checkECDSA(&key.PublicKey); err != nil {
			return SigningKey{}, err
		}
		if _, err := key.ECDH(); err != nil {
			return SigningKey{}, fmt.Errorf("%w: invalid ECDSA private key", ErrWeakKey)
		}
		k = SigningKey{Alg: ES256, Key: key}
	case *rsa.PrivateKey:
		if key == nil {
			return SigningKey{}, fmt.Errorf("%w: nil RSA key", ErrWeakKey)
		}
		if err := checkRSA(&key.PublicKey); err != nil {
			return SigningKey{}, err
		}
		if err := key.Validate(); err != nil {
			return SigningKey{}, fmt.Errorf("%w: invalid RSA private key", ErrWeakKey)
		}
		k = SigningKey{Alg: RS256, Key: key}
	case []byte:
		if len(key) < MinHMACSecretSize {
			return SigningKey{}, fmt.Errorf("%w: HS256 secret of %d bytes, at least %d needed", ErrWeakKey, len(key), MinHMACSecretSize)
		}
		if kid == "" {
			return SigningKey{}, fmt.Errorf("%w: an HS256 key needs a kid", ErrInvalidConfig)
		}
		k = SigningKey{Alg: HS256, Key: append([]byte(nil), key...)}
	default:
		return SigningKey{}, fmt.Errorf("%w: unsupported key type %T", ErrWeakKey, key)
	}
	if kid == "" {
		kid = thumbprint(k.Public())
	}
	if err := checkKID(kid); err != nil {
		return SigningKey{}, err
	}
	k.KID = kid
	return k, nil
}

// GenerateSigningKey generates a new key for alg ([EdDSA], [ES256],
// [RS256] with 2048 bits, or [HS256] with a 32-byte secret) from random,
// or from crypto/rand when random is nil. The kid of an asymmetric key is
// its RFC 7638 JWK thumbprint; an HS256 key gets 128 random bits.
//
// Ed25519 keys and HS256 secrets are read from random, so a fixed reader
// gives a fixed key; since Go 1.26 the standard library generates ECDSA
// and RSA keys from a secure source whatever the reader.
func GenerateSigningKey(alg string, random io.Reader) (SigningKey, error) {
	if random == nil {
		random = rand.Reader
	}
	var key any
	var err error
	kid := ""
	switch alg {
	case EdDSA:
		_, key, err = ed25519.GenerateKey(random)
	case ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), random)
	case RS256:
		key, err = rsa.GenerateKey(random, MinRSAKeyBits)
	case HS256:
		secret := make([]byte, MinHMACSecretSize)
		var id [16]byte
		if _, err = io.ReadFull(random, secret); err == nil {
			_, err = io.ReadFull(random, id[:])
		}
		key, kid = secret, base64.RawURLEncoding.EncodeToString(id[:])
	default:
		return SigningKey{}, fmt.Errorf("%w: unsupported algorithm %q", ErrInvalidConfig, alg)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("token: generate %s key: %w", alg, err)
	}
	return NewSigningKey(kid, key)
}

// Public returns the key that verifies k's signatures: the public key, or
// for HS256 the secret itself (which must never be published; [KeySet]
// leaves it out of the JWK Set).
func (k SigningKey) Public() VerificationKey {
	v := VerificationKey{KID: k.KID, Alg: k.Alg}
	switch key := k.Key.(type) {
	case ed25519.PrivateKey:
		v.Key = key.Public().(ed25519.PublicKey)
	case *ecdsa.PrivateKey:
		v.Key = &key.PublicKey
	case *rsa.PrivateKey:
		v.Key = &key.PublicKey
	case []byte:
		v.Key = append([]byte(nil), key...)
	}
	return v
}

// sign signs a JWS signing input (base64url header, '.', base64url
// payload) with golang-jwt's signing method for k.Alg and returns the raw
// signature.
func (k *SigningKey) sign(signingInput string) ([]byte, error) {
	m := signingMethod(k.Alg)
	if m == nil {
		return nil, fmt.Errorf("%w: unsupported algorithm %q", ErrInvalidConfig, k.Alg)
	}
	sig, err := m.Sign(signingInput, k.Key)
	if err != nil {
		return nil, fmt.Errorf("token: sign: %w", err)
	}
	return sig, nil
}

// String returns the key's kid and algorithm, never the key.
func (k SigningKey) String() string {
	return "token.SigningKey{KID:" + strconv.Quote(k.KID) + " Alg:" + strconv.Quote(k.Alg) + "}"
}

// GoString is String, for the %#v verb.
func (k SigningKey) GoString() string { return k.String() }

// Format writes String for every verb (%v, %+v, %#v, %s, %q, %x, …), so
// that no formatting of a SigningKey, or of a struct holding one, prints
// its key material.
func (k SigningKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements [slog.LogValuer]: the kid and the algorithm.
func (k SigningKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kid", k.KID), slog.String("alg", k.Alg))
}

// MarshalJSON encodes the kid and the algorithm only, so that a
// SigningKey marshalled by mistake leaks nothing.
func (k SigningKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
	}{k.KID, k.Alg})
}

// signingMethod returns golang-jwt's signing method for alg, or nil.
func signingMethod(alg string) jwt.SigningMethod {
	switch alg {
	case EdDSA:
		return jwt.SigningMethodEdDSA
	case ES256:
		return jwt.SigningMethodES256
	case RS256:
		return jwt.SigningMethodRS256
	case HS256:
		return jwt.SigningMethodHS256
	}
	return nil
}

// checkKID reports whether kid can name a key.
func checkKID(kid string) error {
	if kid == "" || len(kid) > MaxKIDLength {
		return fmt.Errorf("%w: a kid is 1 to %d bytes", ErrInvalidConfig, MaxKIDLength)
	}
	if !utf8.ValidString(kid) {
		return fmt.Errorf("%w: kid is not UTF-8", ErrInvalidConfig)
	}
	for _, r := range kid {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: kid contains a control character", ErrInvalidConfig)
		}
	}
	return nil
}

func checkECDSA(k *ecdsa.PublicKey) error {
	if k == nil || k.Curve == nil || k.Curve.Params().Name != "P-256" {
		return fmt.Errorf("%w: ECDSA keys must be on P-256", ErrWeakKey)
	}
	if _, err := k.ECDH(); err != nil {
		return fmt.Errorf("%w: ECDSA public key is not a point of P-256", ErrWeakKey)
	}
	return nil
}

func checkRSA(k *rsa.PublicKey) error {
	if k == nil || k.N == nil {
		return fmt.Errorf("%w: nil RSA key", ErrWeakKey)
	}
	if n := k.N.BitLen(); n < MinRSAKeyBits || n > maxRSAKeyBits {
		return fmt.Errorf("%w: RSA key of %d bits, %d to %d needed", ErrWeakKey, n, MinRSAKeyBits, maxRSAKeyBits)
	}
	if k.E < 3 || k.E&1 == 0 {
		return fmt.Errorf("%w: RSA public exponent %d", ErrWeakKey, k.E)
	}
	return nil
}

// checkVerificationKey validates a verification key: a known algorithm, a
// key of the type that algorithm needs, and a strong enough key.
func checkVerificationKey(k VerificationKey) error {
	if err := checkKID(k.KID); err != nil {
		return err
	}
	switch k.Alg {
	case EdDSA:
		key, ok := k.Key.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("%w: key %q: EdDSA needs an ed25519.PublicKey, not %T", ErrInvalidConfig, k.KID, k.Key)
		}
		if len(key) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: key %q: Ed25519 public key of %d bytes", ErrWeakKey, k.KID, len(key))
		}
	case ES256:
		key, ok := k.Key.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: key %q: ES256 needs a *ecdsa.PublicKey, not %T", ErrInvalidConfig, k.KID, k.Key)
		}
		return checkECDSA(key)
	case RS256:
		key, ok := k.Key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: key %q: RS256 needs a *rsa.PublicKey, not %T", ErrInvalidConfig, k.KID, k.Key)
		}
		return checkRSA(key)
	case HS256:
		key, ok := k.Key.([]byte)
		if !ok {
			return fmt.Errorf("%w: key %q: HS256 needs a []byte secret, not %T", ErrInvalidConfig, k.KID, k.Key)
		}
		if len(key) < MinHMACSecretSize {
			return fmt.Errorf("%w: key %q: HS256 secret of %d bytes, at least %d needed", ErrWeakKey, k.KID, len(key), MinHMACSecretSize)
		}
	default:
		return fmt.Errorf("%w: key %q: unsupported algorithm %q", ErrInvalidConfig, k.KID, k.Alg)
	}
	return nil
}

// usableKey is the request-path check of a key a [KeySource] returned:
// the type its algorithm needs and a sane size. It does not allocate.
func usableKey(alg string, key any) bool {
	switch alg {
	case EdDSA:
		k, ok := key.(ed25519.PublicKey)
		return ok && len(k) == ed25519.PublicKeySize
	case ES256:
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k != nil && k.Curve == elliptic.P256()
	case RS256:
		k, ok := key.(*rsa.PublicKey)
		if !ok || k == nil || k.N == nil {
			return false
		}
		n := k.N.BitLen()
		return n >= MinRSAKeyBits && n <= maxRSAKeyBits
	case HS256:
		k, ok := key.([]byte)
		return ok && len(k) >= MinHMACSecretSize
	}
	return false
}

// thumbprint returns the RFC 7638 JWK thumbprint of an asymmetric public
// key: the base64url SHA-256 of its required JWK members in lexicographic
// order, without whitespace.
func thumbprint(k VerificationKey) string {
	j, ok := publicJWK(k)
	if !ok {
		return ""
	}
	var s string
	switch j.Kty {
	case "OKP":
		s = `{"crv":` + strconv.Quote(j.Crv) + `,"kty":"OKP","x":"` + j.X + `"}`
	case "EC":
		s = `{"crv":` + strconv.Quote(j.Crv) + `,"kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	case "RSA":
		s = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	}
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// String describes the key by its kid and algorithm, never its material:
// an HS256 VerificationKey holds the shared secret.
func (k VerificationKey) String() string {
	return "token.VerificationKey{KID:" + strconv.Quote(k.KID) + " Alg:" + strconv.Quote(k.Alg) + "}"
}

// GoString is String, for the %#v verb.
func (k VerificationKey) GoString() string { return k.String() }

// Format writes String for every verb, so that no formatting of a
// VerificationKey, or of a struct holding one, prints an HS256 secret.
func (k VerificationKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements [slog.LogValuer]: the kid and the algorithm.
func (k VerificationKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kid", k.KID), slog.String("alg", k.Alg))
}

// MarshalJSON encodes the kid and the algorithm only; publish public keys
// with [KeySet.JWKS].
func (k VerificationKey) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
	}{k.KID, k.Alg})
}
