package token

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/syncbuf"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

const svcIssuer = "https://api.example.test"

// svcFixture is a Service wired as in production: a keystore.Manager for
// API keys and as the KeyChecker, a real Issuer and Verifier, memory
// stores, a fake clock shared by all of them, and one API key.
type svcFixture struct {
	clock    *testclock.Clock
	keys     *keystore.Manager
	issuer   *Issuer
	verifier *Verifier
	refresh  *MemoryRefreshStore
	revs     *MemoryRevocations
	svc      *Service
	logs     *syncbuf.Buffer

	apiKey    string         // plaintext of the key
	principal auth.Principal // the key's principal, as the Guard gives it
}

// svcScopes are the scopes of the fixture's key.
var svcScopes = []string{"chat:write", "models:read", ExchangeScope}

type svcOptions struct {
	service []ServiceOption
	issuer  []IssuerOption
	refresh RefreshStore
	revs    Revocations
	keys    KeyChecker
	keySpec *keystore.KeySpec
}

func newSvcFixture(t testing.TB, o svcOptions) *svcFixture {
	t.Helper()
	ctx := context.Background()
	f := &svcFixture{clock: newSvcClock(), logs: &syncbuf.Buffer{}, refresh: NewMemoryRefreshStore()}
	f.revs = NewMemoryRevocations(WithRevocationsClock(f.clock.Now))
	quiet := slog.New(slog.DiscardHandler)
	var err error
	f.keys, err = keystore.NewManager(keystore.NewMemoryStore(), keystore.WithClock(f.clock.Now), keystore.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	spec := keystore.KeySpec{Project: "default", Scopes: svcScopes}
	if o.keySpec != nil {
		spec = *o.keySpec
	}
	key, _, err := f.keys.Issue(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	f.apiKey = key.Plaintext()
	if f.principal, err = f.keys.Authenticate(ctx, f.apiKey); err != nil {
		t.Fatal(err)
	}
	signer, err := GenerateSigningKey(EdDSA, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.issuer, err = NewIssuer(svcIssuer, signer, append([]IssuerOption{WithIssuerClock(f.clock.Now)}, o.issuer...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier, err = NewVerifier(f.issuer.KeySet(),
		WithExpectedIssuer(svcIssuer), WithExpectedAudience(svcIssuer),
		WithRevocations(f.revs), WithKeyChecker(f.keys), WithVerifierClock(f.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	var (
		refresh RefreshStore = f.refresh
		revs    Revocations  = f.revs
		checker KeyChecker   = f.keys
	)
	if o.refresh != nil {
		refresh = o.refresh
	}
	if o.revs != nil {
		revs = o.revs
	}
	if o.keys != nil {
		checker = o.keys
	}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := append([]ServiceOption{WithServiceClock(f.clock.Now), WithServiceLogger(logger)}, o.service...)
	f.svc, err = NewService(f.issuer, f.verifier, refresh, revs, checker, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// exchange exchanges the fixture's key for a pair, or fails the test.
func (f *svcFixture) exchange(t testing.TB) Pair {
	t.Helper()
	pair, err := f.svc.Exchange(context.Background(), f.principal, nil)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return pair
}

// accessPrincipal returns the principal of an access token, as the Guard
// gives it.
func (f *svcFixture) accessPrincipal(t testing.TB, tok string) auth.Principal {
	t.Helper()
	p, err := f.verifier.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatalf("Authenticate(access token): %v", err)
	}
	return p
}

// claims verifies an access token and returns its claims, or the error.
func (f *svcFixture) claims(tok string) (*Claims, error) {
	return f.verifier.Verify(context.Background(), tok)
}

// record returns the stored record of a refresh token without spending
// it.
func (f *svcFixture) record(t testing.TB, tok string) RefreshRecord {
	t.Helper()
	f.refresh.mu.Lock()
	defer f.refresh.mu.Unlock()
	e := f.refresh.tokens[f.svc.hasher.Digest(tok)]
	if e == nil {
		t.Fatalf("no record for the refresh token")
	}
	return e.record()
}

// svcFailingStore is a RefreshStore whose every call fails while fail is
// set.
type svcFailingStore struct {
	RefreshStore
	fail atomic.Bool
}

var errSvcBackend = errors.New("test: back end down")

func (s *svcFailingStore) CreateRefresh(ctx context.Context, r RefreshRecord) error {
	if s.fail.Load() {
		return errSvcBackend
	}
	return s.RefreshStore.CreateRefresh(ctx, r)
}

func (s *svcFailingStore) SpendRefresh(ctx context.Context, d keystore.Digest, at time.Time) (RefreshRecord, error) {
	if s.fail.Load() {
		return RefreshRecord{}, errSvcBackend
	}
	return s.RefreshStore.SpendRefresh(ctx, d, at)
}

func (s *svcFailingStore) RevokeFamily(ctx context.Context, family string, at time.Time) error {
	if s.fail.Load() {
		return errSvcBackend
	}
	return s.RefreshStore.RevokeFamily(ctx, family, at)
}

func (s *svcFailingStore) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	if s.fail.Load() {
		return false, errSvcBackend
	}
	return s.RefreshStore.FamilyRevoked(ctx, family)
}

// svcFailingRevocations is a Revocations whose Revoke fails while fail is
// set.
type svcFailingRevocations struct {
	Revocations
	fail atomic.Bool
}

func (r *svcFailingRevocations) Revoke(ctx context.Context, id string, exp time.Time) error {
	if r.fail.Load() {
		return errSvcBackend
	}
	return r.Revocations.Revoke(ctx, id, exp)
}

// svcKeyChecker is a KeyChecker that answers err.
type svcKeyChecker struct{ err error }

func (k svcKeyChecker) CheckKey(context.Context, string) error { return k.err }

func TestNewServiceErrors(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	iss, ver, rs, rv, kc := f.issuer, f.verifier, f.refresh, f.revs, f.keys
	tests := []struct {
		name string
		new  func() (*Service, error)
	}{
		{"nil issuer", func() (*Service, error) { return NewService(nil, ver, rs, rv, kc) }},
		{"nil verifier", func() (*Service, error) { return NewService(iss, nil, rs, rv, kc) }},
		{"nil refresh store", func() (*Service, error) { return NewService(iss, ver, nil, rv, kc) }},
		{"nil revocations", func() (*Service, error) { return NewService(iss, ver, rs, nil, kc) }},
		{"nil key checker", func() (*Service, error) { return NewService(iss, ver, rs, rv, nil) }},
		{"zero lifetime", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithRefreshLifetime(0)) }},
		{"negative lifetime", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithRefreshLifetime(-time.Hour)) }},
		{"nil format", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithRefreshFormat(nil)) }},
		{"nil hasher", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithRefreshHasher(nil)) }},
		{"nil clock", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithServiceClock(nil)) }},
		{"nil random", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithServiceRandom(nil)) }},
		{"nil logger", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithServiceLogger(nil)) }},
		{"nil error handler", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithServiceErrorHandler(nil)) }},
		{"realm with a quote", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithServiceRealm(`a"b`)) }},
		{"realm with a newline", func() (*Service, error) { return NewService(iss, ver, rs, rv, kc, WithServiceRealm("a\nb")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := tt.new()
			if !errors.Is(err, ErrInvalidConfig) || s != nil {
				t.Fatalf("NewService = %v, %v; want nil, ErrInvalidConfig", s, err)
			}
		})
	}
	t.Run("nil option ignored", func(t *testing.T) {
		t.Parallel()
		if _, err := NewService(iss, ver, rs, rv, kc, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestExchange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		principal func(t *testing.T, f *svcFixture) auth.Principal
		scopes    []string
		wantErr   error  // an auth sentinel
		wantMsg   string // part of the *auth.Error message
		wantMiss  []string
		wantScope string
		wantIn    int           // expires_in
		wantEnd   time.Duration // session end, from now
	}{
		{
			name:      "all the key's scopes",
			wantScope: "chat:write models:read tokens:issue",
			wantIn:    900, wantEnd: DefaultRefreshLifetime,
		},
		{
			name:      "narrowed",
			scopes:    []string{"models:read"},
			wantScope: "models:read",
			wantIn:    900, wantEnd: DefaultRefreshLifetime,
		},
		{
			name:      "duplicates and order do not matter",
			scopes:    []string{"models:read", "chat:write", "models:read"},
			wantScope: "chat:write models:read",
			wantIn:    900, wantEnd: DefaultRefreshLifetime,
		},
		{
			name:      "empty list means all",
			scopes:    []string{},
			wantScope: "chat:write models:read tokens:issue",
			wantIn:    900, wantEnd: DefaultRefreshLifetime,
		},
		{
			name:     "more than the key has",
			scopes:   []string{"models:read", "keys:manage", "admin"},
			wantErr:  auth.ErrInsufficientScope,
			wantMsg:  "lacks the requested scopes: admin, keys:manage",
			wantMiss: []string{"admin", "keys:manage"},
		},
		{
			name: "access token principal",
			principal: func(t *testing.T, f *svcFixture) auth.Principal {
				return f.accessPrincipal(t, f.exchange(t).AccessToken)
			},
			wantErr: auth.ErrInsufficientScope,
			wantMsg: "Exchange an API key, not a token",
		},
		{
			name: "key without tokens:issue",
			principal: func(t *testing.T, f *svcFixture) auth.Principal {
				p := f.principal
				p.Scopes = []string{"models:read"}
				return p
			},
			wantErr:  auth.ErrInsufficientScope,
			wantMsg:  "lacks the scope tokens:issue",
			wantMiss: []string{ExchangeScope},
		},
		{
			name: "key already expired",
			principal: func(t *testing.T, f *svcFixture) auth.Principal {
				p := f.principal
				p.ExpiresAt = f.clock.Now()
				return p
			},
			wantErr: auth.ErrInvalidCredential,
		},
		{
			name: "key without an ID",
			principal: func(t *testing.T, f *svcFixture) auth.Principal {
				p := f.principal
				p.KeyID = ""
				return p
			},
			wantErr: auth.ErrInternal,
		},
		{
			name: "key expires before the session would",
			principal: func(t *testing.T, f *svcFixture) auth.Principal {
				p := f.principal
				p.ExpiresAt = f.clock.Now().Add(2 * time.Hour)
				return p
			},
			wantScope: "chat:write models:read tokens:issue",
			wantIn:    900, wantEnd: 2 * time.Hour,
		},
		{
			name: "key expires before the access token would",
			principal: func(t *testing.T, f *svcFixture) auth.Principal {
				p := f.principal
				p.ExpiresAt = f.clock.Now().Add(5 * time.Minute)
				return p
			},
			wantScope: "chat:write models:read tokens:issue",
			wantIn:    300, wantEnd: 5 * time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, svcOptions{})
			p := f.principal
			if tt.principal != nil {
				p = tt.principal(t, f)
			}
			before, _ := f.refresh.len()
			pair, err := f.svc.Exchange(t.Context(), p, tt.scopes)
			if tt.wantErr != nil {
				var ae *auth.Error
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &ae) {
					t.Fatalf("Exchange = %v, want an *auth.Error matching %v", err, tt.wantErr)
				}
				if !strings.Contains(ae.Message, tt.wantMsg) {
					t.Errorf("message %q does not contain %q", ae.Message, tt.wantMsg)
				}
				if !slices.Equal(ae.Scopes, tt.wantMiss) {
					t.Errorf("Scopes = %q, want %q", ae.Scopes, tt.wantMiss)
				}
				if pair != (Pair{}) {
					t.Errorf("pair %v returned with an error", pair)
				}
				if after, _ := f.refresh.len(); after != before {
					t.Errorf("a refused exchange stored a refresh token")
				}
				return
			}
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if pair.TokenType != "Bearer" || pair.Scope != tt.wantScope || pair.ExpiresIn != tt.wantIn {
				t.Errorf("pair = %v; want scope %q, expires_in %d", pair, tt.wantScope, tt.wantIn)
			}
			claims, err := f.claims(pair.AccessToken)
			if err != nil {
				t.Fatalf("the access token does not verify: %v", err)
			}
			rec := f.record(t, pair.RefreshToken)
			if claims.Session == "" || claims.Session != rec.Family {
				t.Errorf("sid %q, refresh family %q: want the same non-empty ID", claims.Session, rec.Family)
			}
			if claims.Subject != f.principal.KeyID || claims.ClientID != f.principal.KeyID || claims.Project != "default" {
				t.Errorf("claims sub %q client_id %q project %q", claims.Subject, claims.ClientID, claims.Project)
			}
			if rec.KeyID != f.principal.KeyID || rec.Project != "default" || strings.Join(rec.Scopes, " ") != tt.wantScope {
				t.Errorf("refresh record %+v", rec)
			}
			if want := f.clock.Now().Add(tt.wantEnd); !rec.ExpiresAt.Equal(want) {
				t.Errorf("session ends at %v, want %v", rec.ExpiresAt, want)
			}
			if !rec.SpentAt.IsZero() || !rec.RevokedAt.IsZero() {
				t.Errorf("new record is spent or revoked: %+v", rec)
			}
		})
	}
}

func TestExchangeSessionsAreDistinct(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	seen := map[string]bool{}
	for range 20 {
		pair := f.exchange(t)
		rec := f.record(t, pair.RefreshToken)
		if seen[rec.Family] {
			t.Fatalf("session ID %q repeated", rec.Family)
		}
		seen[rec.Family] = true
		if len(rec.Family) != 22 {
			t.Fatalf("session ID %q is not 128 bits of base64url", rec.Family)
		}
	}
}

func TestRefreshTokenFormat(t *testing.T) {
	t.Parallel()
	custom := keystore.MustFormat(keystore.WithPrefix("acmert"), keystore.WithRandomLength(32))
	tests := []struct {
		name   string
		opts   []ServiceOption
		prefix string
		length int
	}{
		{"default", nil, "halfredrt_", 38},
		{"custom", []ServiceOption{WithRefreshFormat(custom)}, "acmert_", 7 + 32 + 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, svcOptions{service: tt.opts})
			rt := f.exchange(t).RefreshToken
			if !strings.HasPrefix(rt, tt.prefix) || len(rt) != tt.length {
				t.Fatalf("refresh token %s: want prefix %q and length %d", maskToken(rt), tt.prefix, tt.length)
			}
			// The API key is not a refresh token, nor the other way round.
			if _, err := f.svc.Refresh(t.Context(), f.apiKey); !errors.Is(err, errNotRefreshToken) {
				t.Errorf("Refresh(API key) = %v, want errNotRefreshToken", err)
			}
			if _, err := f.keys.Authenticate(t.Context(), rt); !errors.Is(err, auth.ErrInvalidCredential) {
				t.Errorf("the API key authenticator accepts a refresh token: %v", err)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	first := f.exchange(t)
	f.clock.Advance(10 * time.Minute)
	second, err := f.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh returned a token it had returned before")
	}
	if second.TokenType != "Bearer" || second.Scope != first.Scope || second.ExpiresIn != 900 {
		t.Errorf("second pair = %v", second)
	}
	c1, err1 := f.claims(first.AccessToken)
	c2, err2 := f.claims(second.AccessToken)
	if err1 != nil || err2 != nil {
		t.Fatalf("access tokens do not verify: %v, %v", err1, err2)
	}
	if c1.Session != c2.Session || c1.ID == c2.ID {
		t.Errorf("sid %q → %q, jti %q → %q: want the same sid and a new jti", c1.Session, c2.Session, c1.ID, c2.ID)
	}
	r1, r2 := f.record(t, first.RefreshToken), f.record(t, second.RefreshToken)
	if !r1.SpentAt.Equal(f.clock.Now()) {
		t.Errorf("old refresh token SpentAt = %v, want now", r1.SpentAt)
	}
	if r2.Family != r1.Family || !r2.ExpiresAt.Equal(r1.ExpiresAt) || !r2.IssuedAt.Equal(f.clock.Now()) || !r2.SpentAt.IsZero() {
		t.Errorf("new record %+v, old %+v: want the same family and session end", r2, r1)
	}
	// And once more, with the new token.
	third, err := f.svc.Refresh(ctx, second.RefreshToken)
	if err != nil || third.RefreshToken == second.RefreshToken {
		t.Fatalf("second refresh: %v", err)
	}
}

func TestRefreshNarrowedScopesStayNarrow(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	pair, err := f.svc.Exchange(t.Context(), f.principal, []string{"models:read"})
	if err != nil {
		t.Fatal(err)
	}
	next, err := f.svc.Refresh(t.Context(), pair.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if next.Scope != "models:read" {
		t.Fatalf("scope after refresh = %q, want models:read", next.Scope)
	}
	p := f.accessPrincipal(t, next.AccessToken)
	if !slices.Equal(p.Scopes, []string{"models:read"}) {
		t.Fatalf("principal scopes = %q", p.Scopes)
	}
}

// TestRefreshRefused covers every way a refresh is refused without reuse.
func TestRefreshRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  svcOptions
		token func(t *testing.T, f *svcFixture) string
		want  error // errNotRefreshToken, errAccessTokenGrant, or another grant error
		also  error
	}{
		{"empty", svcOptions{}, func(*testing.T, *svcFixture) string { return "" }, errNotRefreshToken, nil},
		{"garbage", svcOptions{}, func(*testing.T, *svcFixture) string { return "not a token at all" }, errNotRefreshToken, nil},
		{"API key", svcOptions{}, func(_ *testing.T, f *svcFixture) string { return f.apiKey }, errNotRefreshToken, nil},
		{"access token", svcOptions{}, func(t *testing.T, f *svcFixture) string { return f.exchange(t).AccessToken }, errAccessTokenGrant, nil},
		{"refresh token with a typo", svcOptions{}, func(t *testing.T, f *svcFixture) string {
			rt := []byte(f.exchange(t).RefreshToken)
			rt[12] ^= 1
			return string(rt)
		}, errNotRefreshToken, nil},
		{"refresh token with a space", svcOptions{}, func(t *testing.T, f *svcFixture) string { return f.exchange(t).RefreshToken + " " }, errNotRefreshToken, nil},
		{"well-formed but unknown", svcOptions{}, func(t *testing.T, f *svcFixture) string {
			k, err := defaultRefreshFormat.Generate()
			if err != nil {
				t.Fatal(err)
			}
			return k.Plaintext()
		}, errUnknownRefresh, nil},
		{"session over", svcOptions{service: []ServiceOption{WithRefreshLifetime(time.Hour)}}, func(t *testing.T, f *svcFixture) string {
			rt := f.exchange(t).RefreshToken
			f.clock.Advance(time.Hour)
			return rt
		}, errExpiredRefresh, nil},
		{"session over, record forgotten", svcOptions{service: []ServiceOption{WithRefreshLifetime(time.Hour)}}, func(t *testing.T, f *svcFixture) string {
			rt := f.exchange(t).RefreshToken
			f.clock.Advance(2 * time.Hour)
			return rt
		}, errUnknownRefresh, nil},
		{"session revoked", svcOptions{}, func(t *testing.T, f *svcFixture) string {
			pair := f.exchange(t)
			if err := f.svc.Revoke(context.Background(), f.accessPrincipal(t, pair.AccessToken)); err != nil {
				t.Fatal(err)
			}
			return pair.RefreshToken
		}, errRevokedRefresh, nil},
		{"API key revoked", svcOptions{}, func(t *testing.T, f *svcFixture) string {
			rt := f.exchange(t).RefreshToken
			if _, err := f.keys.Revoke(context.Background(), f.principal.KeyID); err != nil {
				t.Fatal(err)
			}
			return rt
		}, errKeyGrant, ErrKeyRevoked},
		{"API key rotated", svcOptions{}, func(t *testing.T, f *svcFixture) string {
			rt := f.exchange(t).RefreshToken
			if _, _, err := f.keys.Rotate(context.Background(), f.principal.KeyID, 0); err != nil {
				t.Fatal(err)
			}
			return rt
		}, errKeyGrant, ErrKeyRevoked},
		{"API key expired", svcOptions{keySpec: &keystore.KeySpec{Project: "default", Scopes: svcScopes, ExpiresAt: newSvcClock().Now().Add(time.Hour)}}, func(t *testing.T, f *svcFixture) string {
			rt := f.exchange(t).RefreshToken
			f.clock.Advance(59 * time.Minute)
			return rt
		}, nil, nil}, // the session still has a minute: succeeds
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, tt.opts)
			tok := tt.token(t, f)
			pair, err := f.svc.Refresh(t.Context(), tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Refresh = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalidGrant) {
				t.Fatalf("Refresh = %v, want %v (and ErrInvalidGrant)", err, tt.want)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("Refresh = %v, want it to match %v too", err, tt.also)
			}
			if errors.Is(err, ErrRefreshReused) {
				t.Errorf("Refresh = %v: not a reuse", err)
			}
			if pair != (Pair{}) {
				t.Errorf("pair returned with an error: %v", pair)
			}
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Errorf("error %q contains the token", err)
			}
			if strings.Contains(f.logs.String(), "WARN") {
				t.Errorf("a refusal without reuse logged a warning:\n%s", f.logs)
			}
		})
	}
}

// svcNoRevokedAtStore is a RefreshStore that leaves RevokedAt zero in the
// records it returns, as a store might that keeps revocation apart.
type svcNoRevokedAtStore struct{ RefreshStore }

func (s svcNoRevokedAtStore) SpendRefresh(ctx context.Context, d keystore.Digest, at time.Time) (RefreshRecord, error) {
	rec, err := s.RefreshStore.SpendRefresh(ctx, d, at)
	rec.RevokedAt = time.Time{}
	return rec, err
}

// TestRefreshAsksFamilyRevoked checks that the Service asks the store
// whether the session was revoked, rather than relying on the record's
// RevokedAt alone.
func TestRefreshAsksFamilyRevoked(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{refresh: svcNoRevokedAtStore{NewMemoryRefreshStore()}})
	pair := f.exchange(t)
	if err := f.svc.Revoke(t.Context(), f.accessPrincipal(t, pair.AccessToken)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Refresh(t.Context(), pair.RefreshToken); !errors.Is(err, errRevokedRefresh) {
		t.Fatalf("Refresh = %v, want the session revoked", err)
	}
}

// TestRefreshSessionEndsWithKey checks that a key that expires ends the
// session with it.
func TestRefreshSessionEndsWithKey(t *testing.T) {
	t.Parallel()
	spec := keystore.KeySpec{Project: "default", Scopes: svcScopes, ExpiresAt: newSvcClock().Now().Add(time.Hour)}
	f := newSvcFixture(t, svcOptions{keySpec: &spec})
	pair := f.exchange(t)
	f.clock.Advance(50 * time.Minute)
	next, err := f.svc.Refresh(t.Context(), pair.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if next.ExpiresIn != 600 {
		t.Errorf("expires_in = %d, want 600: the access token must not outlive the key", next.ExpiresIn)
	}
	f.clock.Advance(10 * time.Minute)
	if _, err := f.svc.Refresh(t.Context(), next.RefreshToken); !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("refresh after the key expired = %v, want ErrInvalidGrant", err)
	}
}

// TestRefreshSessionLifetime follows one session on a fake clock: refreshes
// do not extend it, and the last access token ends with it.
func TestRefreshSessionLifetime(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{service: []ServiceOption{WithRefreshLifetime(2 * time.Hour)}})
	ctx := t.Context()
	start := f.clock.Now()
	pair := f.exchange(t)
	steps := []struct {
		advance time.Duration
		wantIn  int // expires_in; 0 = refused
	}{
		{time.Hour, 900},
		{50 * time.Minute, 600},
		{9 * time.Minute, 60},
		{time.Minute, 0},
	}
	for i, st := range steps {
		f.clock.Advance(st.advance)
		next, err := f.svc.Refresh(ctx, pair.RefreshToken)
		if st.wantIn == 0 {
			if !errors.Is(err, errExpiredRefresh) {
				t.Fatalf("step %d: Refresh = %v, want the session over", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if next.ExpiresIn != st.wantIn {
			t.Errorf("step %d: expires_in = %d, want %d", i, next.ExpiresIn, st.wantIn)
		}
		if rec := f.record(t, next.RefreshToken); !rec.ExpiresAt.Equal(start.Add(2 * time.Hour)) {
			t.Errorf("step %d: session end moved to %v", i, rec.ExpiresAt)
		}
		pair = next
	}
}

// TestRefreshReuse presents a spent refresh token: the session is revoked,
// tokens issued after the first spend included, and a warning is logged
// without any token in it.
func TestRefreshReuse(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	first := f.exchange(t)
	second, err := f.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	other := f.exchange(t) // another session of the same key
	f.clock.Advance(time.Minute)

	_, err = f.svc.Refresh(ctx, first.RefreshToken)
	if !errors.Is(err, ErrRefreshReused) || !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("reuse = %v, want ErrRefreshReused and ErrInvalidGrant", err)
	}
	if _, err := f.svc.Refresh(ctx, second.RefreshToken); !errors.Is(err, errRevokedRefresh) {
		t.Errorf("the session's newest refresh token = %v, want revoked", err)
	}
	for name, tok := range map[string]string{"first": first.AccessToken, "second": second.AccessToken} {
		if _, err := f.claims(tok); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s access token after reuse: Verify = %v, want ErrRevoked", name, err)
		}
	}
	if _, err := f.claims(other.AccessToken); err != nil {
		t.Errorf("another session's access token: %v", err)
	}
	if _, err := f.svc.Refresh(ctx, other.RefreshToken); err != nil {
		t.Errorf("another session's refresh token: %v", err)
	}

	logs := f.logs.String()
	family := f.record(t, first.RefreshToken).Family
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "reused") || !strings.Contains(logs, family) {
		t.Errorf("no warning naming the session %s:\n%s", family, logs)
	}
	for _, secret := range []string{first.RefreshToken, first.AccessToken, second.RefreshToken, second.AccessToken, f.apiKey} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log contains a secret:\n%s", logs)
		}
	}
	if !strings.Contains(logs, defaultRefreshFormat.Hint(first.RefreshToken)) {
		t.Errorf("the warning does not show the masked token:\n%s", logs)
	}

	// Reusing it again is still a reuse, and still refused.
	if _, err := f.svc.Refresh(ctx, first.RefreshToken); !errors.Is(err, ErrRefreshReused) {
		t.Errorf("second reuse = %v", err)
	}
}

// TestRefreshConcurrent refreshes one token from 50 goroutines at once:
// exactly one gets a pair, the others see a reuse, and since reuse was
// detected the winner's new tokens are revoked too (RFC 9700 §4.14.2: the
// server cannot tell the legitimate client from the attacker).
func TestRefreshConcurrent(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	pair := f.exchange(t)
	const n = 50
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		winners []Pair
		reused  int
		other   []error
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p, err := f.svc.Refresh(ctx, pair.RefreshToken)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, p)
			case errors.Is(err, ErrRefreshReused):
				reused++
			default:
				other = append(other, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || reused != n-1 || len(other) != 0 {
		t.Fatalf("%d successes, %d reuses, other errors %v; want 1, %d, none", len(winners), reused, other, n-1)
	}
	w := winners[0]
	if _, err := f.svc.Refresh(ctx, w.RefreshToken); !errors.Is(err, ErrInvalidGrant) || errors.Is(err, ErrRefreshReused) {
		t.Errorf("winner's refresh token = %v, want ErrInvalidGrant (session revoked)", err)
	}
	if _, err := f.claims(w.AccessToken); !errors.Is(err, ErrRevoked) {
		t.Errorf("winner's access token: Verify = %v, want ErrRevoked", err)
	}
}

func TestRefreshBackEndFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) (*svcFixture, string) // returns the token to refresh
	}{
		{"refresh store", func(t *testing.T) (*svcFixture, string) {
			store := &svcFailingStore{RefreshStore: NewMemoryRefreshStore()}
			f := newSvcFixture(t, svcOptions{refresh: store})
			rt := f.exchange(t).RefreshToken
			store.fail.Store(true)
			return f, rt
		}},
		{"key store", func(t *testing.T) (*svcFixture, string) {
			f := newSvcFixture(t, svcOptions{keys: svcKeyChecker{&auth.Error{Kind: auth.ErrUnavailable, Err: errSvcBackend}}})
			return f, f.exchange(t).RefreshToken
		}},
		{"key checker with a raw error", func(t *testing.T) (*svcFixture, string) {
			f := newSvcFixture(t, svcOptions{keys: svcKeyChecker{errSvcBackend}})
			return f, f.exchange(t).RefreshToken
		}},
		{"revocations, on reuse", func(t *testing.T) (*svcFixture, string) {
			revs := &svcFailingRevocations{Revocations: NewMemoryRevocations()}
			f := newSvcFixture(t, svcOptions{revs: revs})
			rt := f.exchange(t).RefreshToken
			if _, err := f.svc.Refresh(context.Background(), rt); err != nil {
				t.Fatal(err)
			}
			revs.fail.Store(true)
			return f, rt
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, rt := tt.setup(t)
			_, err := f.svc.Refresh(t.Context(), rt)
			if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, ErrInvalidGrant) {
				t.Fatalf("Refresh = %v, want auth.ErrUnavailable and not an invalid grant", err)
			}
			if !errors.Is(err, errSvcBackend) {
				t.Errorf("Refresh = %v: the cause is lost", err)
			}
		})
	}
}

func TestExchangeBackEndFailure(t *testing.T) {
	t.Parallel()
	store := &svcFailingStore{RefreshStore: NewMemoryRefreshStore()}
	f := newSvcFixture(t, svcOptions{refresh: store})
	store.fail.Store(true)
	if _, err := f.svc.Exchange(t.Context(), f.principal, nil); !errors.Is(err, auth.ErrUnavailable) || !errors.Is(err, errSvcBackend) {
		t.Fatalf("Exchange = %v, want auth.ErrUnavailable wrapping the cause", err)
	}
	bad := newSvcFixture(t, svcOptions{service: []ServiceOption{WithServiceRandom(strings.NewReader(""))}})
	if _, err := bad.svc.Exchange(t.Context(), bad.principal, nil); !errors.Is(err, auth.ErrInternal) {
		t.Fatalf("Exchange with a broken random source = %v, want auth.ErrInternal", err)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		principal func(t *testing.T, f *svcFixture, pair Pair) auth.Principal
		wantErr   error
		wantMsg   string
	}{
		{"access token", func(t *testing.T, f *svcFixture, pair Pair) auth.Principal {
			return f.accessPrincipal(t, pair.AccessToken)
		}, nil, ""},
		{"API key", func(_ *testing.T, f *svcFixture, _ Pair) auth.Principal { return f.principal }, auth.ErrInsufficientScope, "Only an access token"},
		{"zero principal", func(*testing.T, *svcFixture, Pair) auth.Principal { return auth.Principal{} }, auth.ErrInsufficientScope, "Only an access token"},
		{"token without jti", func(t *testing.T, f *svcFixture, pair Pair) auth.Principal {
			p := f.accessPrincipal(t, pair.AccessToken)
			p.TokenID = ""
			return p
		}, auth.ErrInsufficientScope, "no token ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newSvcFixture(t, svcOptions{})
			pair := f.exchange(t)
			err := f.svc.Revoke(t.Context(), tt.principal(t, f, pair))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Revoke = %v", err)
				}
				return
			}
			var ae *auth.Error
			if !errors.Is(err, tt.wantErr) || !errors.As(err, &ae) || !strings.Contains(ae.Message, tt.wantMsg) {
				t.Fatalf("Revoke = %v, want %v with %q", err, tt.wantErr, tt.wantMsg)
			}
			if _, err := f.claims(pair.AccessToken); err != nil {
				t.Errorf("a refused revocation revoked the token: %v", err)
			}
		})
	}
}

// TestRevokeEndsSession revokes an access token and checks, with the real
// Verifier, that it and every other token of its session stop working at
// once, and that other sessions go on.
func TestRevokeEndsSession(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	first := f.exchange(t)
	second, err := f.svc.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	other := f.exchange(t)
	// The verifier caches verified tokens: make sure they are cached.
	for _, tok := range []string{first.AccessToken, second.AccessToken, other.AccessToken} {
		if _, err := f.claims(tok); err != nil {
			t.Fatal(err)
		}
	}
	p := f.accessPrincipal(t, second.AccessToken)
	if err := f.svc.Revoke(ctx, p); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"revoked token": second.AccessToken, "earlier token of the session": first.AccessToken} {
		if _, err := f.claims(tok); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s: Verify = %v, want ErrRevoked", name, err)
		}
		if _, err := f.verifier.Authenticate(ctx, tok); !errors.Is(err, auth.ErrInvalidCredential) {
			t.Errorf("%s: Authenticate = %v, want auth.ErrInvalidCredential", name, err)
		}
	}
	if _, err := f.svc.Refresh(ctx, second.RefreshToken); !errors.Is(err, errRevokedRefresh) {
		t.Errorf("the session's refresh token = %v, want revoked", err)
	}
	if _, err := f.claims(other.AccessToken); err != nil {
		t.Errorf("another session's access token: %v", err)
	}
	if _, err := f.svc.Refresh(ctx, other.RefreshToken); err != nil {
		t.Errorf("another session's refresh token: %v", err)
	}
	// Idempotent.
	if err := f.svc.Revoke(ctx, p); err != nil {
		t.Errorf("second Revoke = %v", err)
	}
	// The revocation lasts as long as the token would have: until its
	// exp and the verifier's leeway have passed.
	f.clock.Advance(15*time.Minute + 30*time.Second)
	if _, err := f.claims(second.AccessToken); !errors.Is(err, ErrRevoked) && !errors.Is(err, ErrExpired) {
		t.Errorf("revoked token within the leeway: Verify = %v", err)
	}
	if ok, _ := f.revs.IsRevoked(ctx, p.TokenID); !ok {
		t.Errorf("revocation dropped before exp + leeway")
	}
}

func TestRevokeTokenWithoutSession(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	p := auth.Principal{Method: auth.MethodAccessToken, Subject: "user-1", TokenID: "external-jti", ExpiresAt: f.clock.Now().Add(time.Hour)}
	if err := f.svc.Revoke(ctx, p); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.revs.IsRevoked(ctx, "external-jti"); !ok {
		t.Fatal("jti not revoked")
	}
	if f.revs.len() != 1 {
		t.Fatalf("%d revocations recorded, want only the jti", f.revs.len())
	}
}

func TestRevokeBackEndFailures(t *testing.T) {
	t.Parallel()
	t.Run("revocations", func(t *testing.T) {
		t.Parallel()
		revs := &svcFailingRevocations{Revocations: NewMemoryRevocations()}
		f := newSvcFixture(t, svcOptions{revs: revs})
		p := f.accessPrincipal(t, f.exchange(t).AccessToken)
		revs.fail.Store(true)
		if err := f.svc.Revoke(t.Context(), p); !errors.Is(err, auth.ErrUnavailable) || !errors.Is(err, errSvcBackend) {
			t.Fatalf("Revoke = %v, want auth.ErrUnavailable", err)
		}
	})
	t.Run("refresh store", func(t *testing.T) {
		t.Parallel()
		store := &svcFailingStore{RefreshStore: NewMemoryRefreshStore()}
		f := newSvcFixture(t, svcOptions{refresh: store})
		p := f.accessPrincipal(t, f.exchange(t).AccessToken)
		store.fail.Store(true)
		if err := f.svc.Revoke(t.Context(), p); !errors.Is(err, auth.ErrUnavailable) || !errors.Is(err, errSvcBackend) {
			t.Fatalf("Revoke = %v, want auth.ErrUnavailable", err)
		}
	})
}

// TestRevokingKeyEndsTokens revokes the API key with keystore.Manager:
// every access token derived from it fails at its next verification, and
// its refresh tokens stop working.
func TestRevokingKeyEndsTokens(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	ctx := t.Context()
	pair := f.exchange(t)
	next, err := f.svc.Refresh(ctx, pair.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.claims(next.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.Revoke(ctx, f.principal.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.claims(next.AccessToken); !errors.Is(err, ErrKeyRevoked) {
		t.Errorf("Verify after the key was revoked = %v, want ErrKeyRevoked", err)
	}
	if _, err := f.svc.Refresh(ctx, next.RefreshToken); !errors.Is(err, ErrInvalidGrant) || !errors.Is(err, ErrKeyRevoked) {
		t.Errorf("Refresh after the key was revoked = %v, want ErrInvalidGrant and ErrKeyRevoked", err)
	}
}

// TestRefreshPepperRotation checks that refresh tokens hashed under a
// previous pepper still work.
func TestRefreshPepperRotation(t *testing.T) {
	t.Parallel()
	oldPepper := bytes.Repeat([]byte{1}, 32)
	newPepper := bytes.Repeat([]byte{2}, 32)
	oldHasher, err := keystore.NewHasher(oldPepper)
	if err != nil {
		t.Fatal(err)
	}
	f := newSvcFixture(t, svcOptions{service: []ServiceOption{WithRefreshHasher(oldHasher)}})
	pair := f.exchange(t)
	if _, err := f.refresh.SpendRefresh(t.Context(), (&keystore.Hasher{}).Digest(pair.RefreshToken), f.clock.Now()); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("the token was stored under plain SHA-256: %v", err)
	}
	rotated, err := keystore.NewHasher(newPepper, oldPepper)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(f.issuer, f.verifier, f.refresh, f.revs, f.keys, WithServiceClock(f.clock.Now), WithRefreshHasher(rotated))
	if err != nil {
		t.Fatal(err)
	}
	next, err := svc.Refresh(t.Context(), pair.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh after the pepper rotation: %v", err)
	}
	if _, err := f.refresh.SpendRefresh(t.Context(), rotated.Digest(next.RefreshToken), f.clock.Now()); err != nil {
		t.Fatalf("the new token is not stored under the new pepper: %v", err)
	}
}

func TestPairDoesNotPrintTokens(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{})
	pair := f.exchange(t)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("pair", "pair", pair)
	outputs := map[string]string{
		"%v":      fmt.Sprintf("%v", pair),
		"%+v":     fmt.Sprintf("%+v", pair),
		"%#v":     fmt.Sprintf("%#v", pair),
		"%s":      fmt.Sprintf("%s", pair),
		"%q":      fmt.Sprintf("%q", pair),
		"String":  pair.String(),
		"slog":    logs.String(),
		"pointer": fmt.Sprintf("%v", &pair),
	}
	for name, out := range outputs {
		if strings.Contains(out, pair.AccessToken) || strings.Contains(out, pair.RefreshToken) {
			t.Errorf("%s shows a token: %s", name, out)
		}
		if !strings.Contains(out, "halfredrt_…"+pair.RefreshToken[len(pair.RefreshToken)-4:]) {
			t.Errorf("%s does not show the refresh token's hint: %s", name, out)
		}
	}
}

func TestMaskToken(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"short", "…"},
		{"halfredrt_0123456789abcdefABCDEF", "halfredrt_…CDEF"},
		{"halfredrt_short", "halfredrt_…"},
		{"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJrIn0.c2lnbmF0dXJlX2J5dGVz", "…dGVz"},
		{"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJrIn0.c2lnbmF0dXJlX2J5dGV-", "…"},
		{"Upper_case_is_not_a_prefix_0123456789", "…6789"},
		{"a-b" + strings.Repeat("x", 20) + "\n\x00", "a-…"},
	}
	for _, tt := range tests {
		if got := maskToken(tt.in); got != tt.want {
			t.Errorf("maskToken(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpiresIn(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 500_000_000, time.UTC)
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }
	tests := []struct {
		name     string
		exp, iat *jwt.NumericDate
		want     int
	}{
		{"exp - iat", at(15 * time.Minute), at(0), 900},
		{"no exp", nil, at(0), 0},
		{"no iat: from now, rounded up", at(90 * time.Second), nil, 90},
		{"no iat, already past", at(-time.Second), nil, 0},
	}
	for _, tt := range tests {
		c := &Claims{}
		c.ExpiresAt, c.IssuedAt = tt.exp, tt.iat
		if got := expiresIn(c, now); got != tt.want {
			t.Errorf("%s: expiresIn = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestRefreshSpentAfterSessionOver presents a spent token after its
// session ended: refused as expired, and not treated as a reuse, since
// nothing of the session works any more.
func TestRefreshSpentAfterSessionOver(t *testing.T) {
	t.Parallel()
	f := newSvcFixture(t, svcOptions{service: []ServiceOption{WithRefreshLifetime(time.Hour)}})
	pair := f.exchange(t)
	if _, err := f.svc.Refresh(t.Context(), pair.RefreshToken); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	_, err := f.svc.Refresh(t.Context(), pair.RefreshToken)
	if !errors.Is(err, errExpiredRefresh) || errors.Is(err, ErrRefreshReused) {
		t.Fatalf("Refresh = %v, want expired and no reuse", err)
	}
	if strings.Contains(f.logs.String(), "WARN") {
		t.Errorf("warning logged:\n%s", f.logs)
	}
}

// BenchmarkRefresh measures one refresh: parse, hash, spend, check the
// session and the key, sign an access token, make and store a refresh
// token.
func BenchmarkRefresh(b *testing.B) {
	f := newSvcFixture(b, svcOptions{})
	ctx := context.Background()
	rt := f.exchange(b).RefreshToken
	b.ReportAllocs()
	for b.Loop() {
		pair, err := f.svc.Refresh(ctx, rt)
		if err != nil {
			b.Fatal(err)
		}
		rt = pair.RefreshToken
	}
}

// BenchmarkExchange measures one exchange of an API key for a pair.
func BenchmarkExchange(b *testing.B) {
	f := newSvcFixture(b, svcOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.Exchange(ctx, f.principal, nil); err != nil {
			b.Fatal(err)
		}
	}
}
