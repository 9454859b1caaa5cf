package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/token"
)

// Interface checks.
var (
	_ token.RefreshStore = (*Store)(nil)
	_ token.Revocations  = (*Revocations)(nil)
)

// errInvalidRefreshRecord: a refresh record no caller should pass.
var errInvalidRefreshRecord = errors.New("sqlstore: invalid refresh record: it needs a digest, a family and an expiry time")

// CreateRefresh implements [token.RefreshStore]. It first drops the
// records, and the families, whose ExpiresAt is at or before r.IssuedAt
// (when set): that is what bounds the refresh tables. A record without a
// Digest, a Family or an ExpiresAt is rejected with an error matching no
// sentinel. r.RevokedAt and r.SpentAt are ignored: revocation is per
// family, and a new record is unspent.
func (s *Store) CreateRefresh(ctx context.Context, r token.RefreshRecord) (err error) {
	if r.Digest.IsZero() || r.Family == "" || r.ExpiresAt.IsZero() {
		return errInvalidRefreshRecord
	}
	var scopes sql.NullString
	if r.Scopes != nil {
		b, err := json.Marshal(r.Scopes)
		if err != nil {
			return fmt.Errorf("%w: %w", errInvalidRefreshRecord, err)
		}
		scopes = sql.NullString{String: string(b), Valid: true}
	}
	if !r.IssuedAt.IsZero() {
		now := r.IssuedAt.UnixMicro()
		if _, err := s.db.ExecContext(ctx, "DELETE FROM refresh_tokens WHERE expires_at <= $1", now); err != nil {
			return backend("create refresh", err)
		}
		if _, err := s.db.ExecContext(ctx, "DELETE FROM refresh_families WHERE expires_at <= $1", now); err != nil {
			return backend("create refresh", err)
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return backend("create refresh", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_families (family, expires_at) VALUES ($1, $2)
ON CONFLICT (family) DO UPDATE SET expires_at =
	CASE WHEN refresh_families.expires_at < excluded.expires_at THEN excluded.expires_at ELSE refresh_families.expires_at END`,
		r.Family, r.ExpiresAt.UnixMicro()); err != nil {
		return backend("create refresh", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens
	(digest, family, key_id, project, scopes, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		r.Digest[:], r.Family, r.KeyID, r.Project, scopes, nullTime(r.IssuedAt), r.ExpiresAt.UnixMicro()); err != nil {
		if s.dialect.isUniqueViolation(err) {
			return fmt.Errorf("%w: a refresh token with the same digest", keystore.ErrExists)
		}
		return backend("create refresh", err)
	}
	if err := tx.Commit(); err != nil {
		return backend("create refresh", err)
	}
	return nil
}

const refreshColumns = "digest, family, key_id, project, scopes, issued_at, expires_at, spent_at"

// SpendRefresh implements [token.RefreshStore] with one conditional UPDATE
// (… WHERE spent_at IS NULL): of concurrent calls for one digest, the row
// lock (PostgreSQL) or the write lock (SQLite) lets exactly one change the
// row; the others find it spent and get [token.ErrRefreshReused] with the
// first SpentAt. It does not forget expired records: a record is dropped
// by a later [Store.CreateRefresh].
func (s *Store) SpendRefresh(ctx context.Context, d keystore.Digest, at time.Time) (token.RefreshRecord, error) {
	row := s.db.QueryRowContext(ctx, "UPDATE refresh_tokens SET spent_at = $1 WHERE digest = $2 AND spent_at IS NULL RETURNING "+
		refreshColumns+", (SELECT f.revoked_at FROM refresh_families f WHERE f.family = refresh_tokens.family)",
		at.UnixMicro(), d[:])
	r, err := scanRefresh(row)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return token.RefreshRecord{}, backend("spend refresh", err)
	}
	row = s.db.QueryRowContext(ctx, "SELECT "+refreshColumns+
		", (SELECT f.revoked_at FROM refresh_families f WHERE f.family = refresh_tokens.family) FROM refresh_tokens WHERE digest = $1", d[:])
	r, err = scanRefresh(row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return token.RefreshRecord{}, fmt.Errorf("%w: no refresh token has that digest", keystore.ErrNotFound)
	case err != nil:
		return token.RefreshRecord{}, backend("spend refresh", err)
	}
	return r, token.ErrRefreshReused
}

// RevokeFamily implements [token.RefreshStore] in one UPDATE that keeps
// the earlier time. An unknown family is not an error and is not created.
func (s *Store) RevokeFamily(ctx context.Context, family string, at time.Time) error {
	if at.IsZero() {
		return errors.New("sqlstore: revoke family: zero revocation time")
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE refresh_families SET revoked_at =
	CASE WHEN revoked_at IS NULL OR revoked_at > $1 THEN $1 ELSE revoked_at END
WHERE family = $2`, at.UnixMicro(), family); err != nil {
		return backend("revoke family", err)
	}
	return nil
}

// FamilyRevoked implements [token.RefreshStore].
func (s *Store) FamilyRevoked(ctx context.Context, family string) (bool, error) {
	var revoked sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT revoked_at FROM refresh_families WHERE family = $1", family).Scan(&revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, backend("family revoked", err)
	}
	return revoked.Valid, nil
}

func scanRefresh(sc scanner) (token.RefreshRecord, error) {
	var (
		r                               token.RefreshRecord
		digest                          []byte
		scopes                          sql.NullString
		issued, expires, spent, revoked sql.NullInt64
	)
	if err := sc.Scan(&digest, &r.Family, &r.KeyID, &r.Project, &scopes, &issued, &expires, &spent, &revoked); err != nil {
		return token.RefreshRecord{}, err
	}
	if len(digest) != keystore.DigestSize {
		return token.RefreshRecord{}, fmt.Errorf("stored refresh digest has %d bytes, want %d", len(digest), keystore.DigestSize)
	}
	copy(r.Digest[:], digest)
	if scopes.Valid {
		if err := json.Unmarshal([]byte(scopes.String), &r.Scopes); err != nil {
			return token.RefreshRecord{}, fmt.Errorf("stored refresh scopes: %w", err)
		}
	}
	r.IssuedAt = fromMicros(issued)
	r.ExpiresAt = fromMicros(expires)
	r.SpentAt = fromMicros(spent)
	r.RevokedAt = fromMicros(revoked)
	return r, nil
}

// Revocations is a [token.Revocations] on a [Store]'s database (table
// revoked_tokens), so that every instance sharing the database sees a
// revoked access token at once. Get one from [Store.Revocations].
//
// Each entry is kept until [token.RevocationSlack] after the expiry time
// given to Revoke; Revoke drops the entries whose time has passed by its
// clock ([time.Now] unless set with [Revocations.WithClock]). It is safe
// for concurrent use, and closed with its Store.
type Revocations struct {
	s   *Store
	now func() time.Time
}

// Revocations returns the store's [Revocations], reading [time.Now].
func (s *Store) Revocations() *Revocations { return &Revocations{s: s, now: time.Now} }

// WithClock returns a copy of r that reads now (nil: [time.Now]) to decide
// which entries may be dropped.
func (r *Revocations) WithClock(now func() time.Time) *Revocations {
	if now == nil {
		now = time.Now
	}
	return &Revocations{s: r.s, now: now}
}

// Revoke implements [token.Revocations]. Revoking an ID again keeps the
// later expiry. An expiresAt so far in the past that the entry would be
// dropped at once records nothing: that token no longer verifies anyway.
// An empty jti is an error.
func (r *Revocations) Revoke(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" {
		return errors.New("sqlstore: revoke token: empty token ID")
	}
	now := r.now().UnixMicro()
	until := expiresAt.Add(token.RevocationSlack).UnixMicro()
	if _, err := r.s.db.ExecContext(ctx, "DELETE FROM revoked_tokens WHERE keep_until <= $1", now); err != nil {
		return backend("revoke token", err)
	}
	if until <= now {
		return nil
	}
	if _, err := r.s.db.ExecContext(ctx, `INSERT INTO revoked_tokens (jti, keep_until) VALUES ($1, $2)
ON CONFLICT (jti) DO UPDATE SET keep_until =
	CASE WHEN revoked_tokens.keep_until < excluded.keep_until THEN excluded.keep_until ELSE revoked_tokens.keep_until END`,
		jti, until); err != nil {
		return backend("revoke token", err)
	}
	return nil
}

// IsRevoked implements [token.Revocations]: one indexed query. An error
// means the database failed, never "not revoked".
func (r *Revocations) IsRevoked(ctx context.Context, jti string) (bool, error) {
	var one int
	err := r.s.db.QueryRowContext(ctx, "SELECT 1 FROM revoked_tokens WHERE jti = $1", jti).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, backend("is revoked", err)
	}
	return true, nil
}
