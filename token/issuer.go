package token

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
)

// Defaults of an [Issuer] and a [Verifier].
const (
	// DefaultLifetime is how long an access token lives by default.
	DefaultLifetime = 15 * time.Minute
	// DefaultMaxLifetime is the longest lifetime an [Issuer] may be
	// configured with, and the longest exp - iat a [Verifier] accepts, by
	// default.
	DefaultMaxLifetime = time.Hour
)

// IssuerOption configures an [Issuer] in [NewIssuer].
type IssuerOption interface {
	applyIssuer(*Issuer) error
}

// VerifierOption configures a [Verifier] in [NewVerifier].
type VerifierOption interface {
	applyVerifier(*Verifier) error
}

// SharedOption is an option that configures both an [Issuer] and a
// [Verifier] in the same way, such as [WithMaxLifetime].
type SharedOption interface {
	IssuerOption
	VerifierOption
}

type issuerOption func(*Issuer) error

func (o issuerOption) applyIssuer(i *Issuer) error { return o(i) }

// Issuer signs keygate's access tokens (RFC 9068 JWTs) for API-key
// principals. Create one with [NewIssuer]; the zero Issuer issues nothing
// (Issue returns an [ErrInvalidConfig] error).
// An Issuer is immutable and safe for concurrent use.
type Issuer struct {
	name        string
	audience    []string
	signer      *SigningKey // a pointer, so that printing an Issuer shows no key
	previous    []VerificationKey
	keys        *KeySet
	lifetime    time.Duration
	maxLifetime time.Duration
	now         func() time.Time
	random      io.Reader
}

// WithAudience sets the aud claim of the tokens. Default: the issuer
// name alone. Each audience must be non-empty; duplicates are removed.
func WithAudience(aud ...string) IssuerOption {
	return issuerOption(func(i *Issuer) error {
		if len(aud) == 0 || slices.Contains(aud, "") {
			return fmt.Errorf("%w: WithAudience needs non-empty audiences", ErrInvalidConfig)
		}
		i.audience = i.audience[:0]
		for _, a := range aud {
			if !slices.Contains(i.audience, a) {
				i.audience = append(i.audience, a)
			}
		}
		return nil
	})
}

// WithLifetime sets how long tokens live. Default: [DefaultLifetime]
// (15 minutes). It must be at least one second and at most the maximum
// lifetime ([WithMaxLifetime]). A token never outlives the API key it was
// exchanged from.
func WithLifetime(d time.Duration) IssuerOption {
	return issuerOption(func(i *Issuer) error {
		if d < time.Second {
			return fmt.Errorf("%w: token lifetime %v is under one second", ErrInvalidConfig, d)
		}
		i.lifetime = d
		return nil
	})
}

// WithPreviousKeys adds keys that no longer sign but still verify, during
// a rotation: publish the new key, then sign with it, and keep the old one
// here until the last token it signed has expired. They appear in
// [Issuer.KeySet] and its JWK Set. Their kids must differ from each other
// and from the signing key's.
func WithPreviousKeys(keys ...VerificationKey) IssuerOption {
	return issuerOption(func(i *Issuer) error {
		i.previous = append(i.previous, keys...)
		return nil
	})
}

// WithIssuerClock sets the clock that gives the iat, nbf and exp claims.
// Default: [time.Now].
func WithIssuerClock(now func() time.Time) IssuerOption {
	return issuerOption(func(i *Issuer) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidConfig)
		}
		i.now = now
		return nil
	})
}

// WithIssuerRandom sets the source of the token IDs (jti, 128 random
// bits). Default: crypto/rand. It must be safe for concurrent use.
func WithIssuerRandom(r io.Reader) IssuerOption {
	return issuerOption(func(i *Issuer) error {
		if r == nil {
			return fmt.Errorf("%w: nil random source", ErrInvalidConfig)
		}
		i.random = r
		return nil
	})
}

type maxLifetimeOption time.Duration

func (o maxLifetimeOption) check() error {
	if time.Duration(o) < time.Second {
		return fmt.Errorf("%w: maximum token lifetime %v is under one second", ErrInvalidConfig, time.Duration(o))
	}
	return nil
}

func (o maxLifetimeOption) applyIssuer(i *Issuer) error {
	i.maxLifetime = time.Duration(o)
	return o.check()
}

func (o maxLifetimeOption) applyVerifier(v *Verifier) error {
	v.maxLifetime = time.Duration(o)
	return o.check()
}

// WithMaxLifetime sets the longest lifetime of a token: for an [Issuer],
// the most [WithLifetime] may be; for a [Verifier], the most exp - iat may
// be (a token without iat may not expire later than that from now).
// Default: [DefaultMaxLifetime] (one hour). It must be at least one
// second. The same option value configures both.
func WithMaxLifetime(d time.Duration) SharedOption { return maxLifetimeOption(d) }

// NewIssuer returns an Issuer whose tokens carry iss = issuer and are
// signed by signer. issuer is required (typically the service's URL). It
// returns an error matching [ErrInvalidConfig] or [ErrWeakKey] for an
// unusable signer, option or previous key.
func NewIssuer(issuer string, signer SigningKey, opts ...IssuerOption) (*Issuer, error) {
	if issuer == "" {
		return nil, fmt.Errorf("%w: an issuer needs a name (the iss claim)", ErrInvalidConfig)
	}
	if signingMethod(signer.Alg) == nil || signer.Key == nil {
		return nil, fmt.Errorf("%w: the signing key is not usable: make it with NewSigningKey or GenerateSigningKey", ErrInvalidConfig)
	}
	pub := signer.Public()
	if err := checkVerificationKey(pub); err != nil {
		return nil, err
	}
	s := signer
	i := &Issuer{
		name:        issuer,
		signer:      &s,
		lifetime:    DefaultLifetime,
		maxLifetime: DefaultMaxLifetime,
		now:         time.Now,
		random:      rand.Reader,
	}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil IssuerOption", ErrInvalidConfig)
		}
		if err := o.applyIssuer(i); err != nil {
			return nil, err
		}
	}
	if i.lifetime > i.maxLifetime {
		return nil, fmt.Errorf("%w: token lifetime %v exceeds the maximum %v", ErrInvalidConfig, i.lifetime, i.maxLifetime)
	}
	if i.audience == nil {
		i.audience = []string{issuer}
	}
	keys, err := NewKeySet(append([]VerificationKey{pub}, i.previous...)...)
	if err != nil {
		return nil, err
	}
	i.keys = keys
	return i, nil
}

// Issue signs an access token for p, an API-key principal (Method
// [auth.MethodAPIKey] with a KeyID) such as the one the auth middleware
// put in the request context. It returns the token (a compact JWS) and its
// claims.
//
// scopes narrows the token: nil means all of p.Scopes; otherwise every
// requested scope must be one of p.Scopes, or Issue returns an
// [*auth.Error] of kind [auth.ErrInsufficientScope] listing the missing
// ones (403). session is the refresh-token family (the sid claim), or "".
//
// The header is {"alg","kid","typ":"at+jwt"}; the claims are iss, aud,
// sub and client_id (both p.KeyID), exp (now + lifetime, but never after
// p.ExpiresAt), nbf and iat (now, in whole seconds), jti (128 random bits,
// base64url), scope (the sorted scopes, space-separated), project
// (p.Project) and sid (session). A principal of another method, or one
// without a KeyID, is an [ErrInvalidConfig] error; an API key that has
// already expired gives an [*auth.Error] of kind
// [auth.ErrInvalidCredential] matching [ErrKeyRevoked].
func (i *Issuer) Issue(p auth.Principal, scopes []string, session string) (string, Claims, error) {
	if i == nil || i.signer == nil {
		return "", Claims{}, fmt.Errorf("%w: Issuer not made by NewIssuer", ErrInvalidConfig)
	}
	if p.Method != auth.MethodAPIKey || p.KeyID == "" {
		return "", Claims{}, fmt.Errorf("%w: only an API-key principal can be exchanged for a token", ErrInvalidConfig)
	}
	granted, err := grantScopes(p, scopes)
	if err != nil {
		return "", Claims{}, err
	}
	now := time.Unix(i.now().Unix(), 0)
	exp := now.Add(i.lifetime).Truncate(time.Second)
	if !p.ExpiresAt.IsZero() {
		if end := time.Unix(p.ExpiresAt.Unix(), 0); end.Before(exp) {
			exp = end
		}
		if !exp.After(now) {
			return "", Claims{}, &auth.Error{Kind: auth.ErrInvalidCredential, Err: ErrKeyRevoked}
		}
	}
	var id [16]byte
	if _, err := io.ReadFull(i.random, id[:]); err != nil {
		return "", Claims{}, fmt.Errorf("token: token ID: %w", err)
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.name,
			Subject:   p.KeyID,
			Audience:  slices.Clone(i.audience),
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		},
		ClientID: p.KeyID,
		Scope:    strings.Join(granted, " "),
		Project:  p.Project,
		Session:  session,
	}
	t := jwt.NewWithClaims(signingMethod(i.signer.Alg), claims)
	t.Header["kid"] = i.signer.KID
	t.Header["typ"] = AccessTokenType
	input, err := t.SigningString()
	if err != nil {
		return "", Claims{}, fmt.Errorf("token: encode token: %w", err)
	}
	sig, err := i.signer.sign(input)
	if err != nil {
		return "", Claims{}, err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), claims, nil
}

// grantScopes returns the sorted scopes a token for p gets when scopes are
// requested.
func grantScopes(p auth.Principal, requested []string) ([]string, error) {
	if requested == nil {
		requested = p.Scopes
	} else if missing := p.MissingScopes(requested...); missing != nil {
		msg := "The API key lacks the requested scope: "
		if len(missing) > 1 {
			msg = "The API key lacks the requested scopes: "
		}
		return nil, &auth.Error{
			Kind:    auth.ErrInsufficientScope,
			Message: msg + strings.Join(missing, ", ") + ".",
			Scopes:  missing,
		}
	}
	out := slices.Clone(requested)
	for _, s := range out {
		if !auth.ValidScope(s) {
			return nil, fmt.Errorf("%w: scope %q is not a scope token", ErrInvalidConfig, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// KeySet returns the keys that verify the Issuer's tokens: its signing
// key's public half and the previous keys. Give it to [NewVerifier], and
// serve its [KeySet.Handler] at /.well-known/jwks.json.
func (i *Issuer) KeySet() *KeySet { return i.keys }

// Lifetime returns how long the Issuer's tokens live.
func (i *Issuer) Lifetime() time.Duration { return i.lifetime }

// Name returns the Issuer's name, the iss claim of its tokens.
func (i *Issuer) Name() string { return i.name }

// Audience returns the aud claim of the Issuer's tokens (a copy).
func (i *Issuer) Audience() []string { return slices.Clone(i.audience) }

// SigningKeyID returns the kid of the key that signs the Issuer's tokens.
func (i *Issuer) SigningKeyID() string { return i.signer.KID }

// String describes the Issuer by its name and signing key ID, never its
// key.
func (i *Issuer) String() string {
	if i == nil || i.signer == nil {
		return "token.Issuer(nil)"
	}
	return "token.Issuer{Name:" + strconv.Quote(i.name) + " KID:" + strconv.Quote(i.signer.KID) + " Alg:" + strconv.Quote(i.signer.Alg) + "}"
}

// Format writes String for every verb, so that no formatting of an Issuer
// prints its signing key.
func (i *Issuer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, i.String()) }
