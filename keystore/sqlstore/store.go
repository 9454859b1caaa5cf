package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	_ "modernc.org/sqlite"             // registers driver "sqlite"
)

// Interface checks.
var (
	_ keystore.Store       = (*Store)(nil)
	_ keystore.Toucher     = (*Store)(nil)
	_ keystore.Disabler    = (*Store)(nil)
	_ keystore.UsageWriter = (*Store)(nil)
)

// Store is a [keystore.Store] on a SQL database, SQLite or PostgreSQL. It
// also implements [keystore.Toucher], [keystore.Disabler],
// [keystore.UsageWriter] and [token.RefreshStore]; [Store.Revocations] gives a [token.Revocations] on
// the same database.
//
// Each [keystore.Store] method is one statement or one transaction, and
// [Store.LookupDigest] is one round trip. Records returned carry their own Scopes and
// Metadata. Times come back in UTC, truncated to the microsecond.
//
// A Store is made by [Open], [OpenSQLite] or [OpenPostgres]; the zero
// value is not usable. It is safe for concurrent use by many goroutines,
// and by many processes sharing the database. It starts no goroutines of
// its own (database/sql may).
type Store struct {
	db      *sql.DB
	dialect Dialect
	ownDB   bool // Close closes db
	// lookup is LookupDigest's prepared statement: database/sql prepares
	// it once per pooled connection, which saves SQLite a parse per call
	// and PostgreSQL a round trip.
	lookup *sql.Stmt
	// channel is the PostgreSQL notification channel the writes publish
	// on (see feed.go); unused on SQLite.
	channel string
}

// Open returns a [Store] on db, which must be a database of the given
// dialect, after applying the migrations it lacks (see the package
// documentation). The Store does not own db: [Store.Close] leaves it open.
//
// On PostgreSQL, every write that can make a cached record stale
// publishes a notification on [DefaultChannel] (or the channel of
// [WithNotifyChannel]) for [ListenPostgres]; opts are ignored on SQLite.
//
// For SQLite, db should be opened with the DSN options [OpenSQLite] uses
// (WAL, busy_timeout, synchronous=FULL, _txlock=immediate); without a busy
// timeout, concurrent writers fail with "database is locked".
func Open(ctx context.Context, db *sql.DB, dialect Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: open: nil *sql.DB")
	}
	if !dialect.valid() {
		return nil, fmt.Errorf("sqlstore: open: invalid dialect %v", dialect)
	}
	cfg := storeConfig{channel: DefaultChannel}
	for _, o := range opts {
		o(&cfg)
	}
	if err := validChannel(cfg.channel); err != nil {
		return nil, fmt.Errorf("sqlstore: open: %w", err)
	}
	if err := migrate(ctx, db, dialect, time.Now()); err != nil {
		return nil, err
	}
	lookup, err := db.PrepareContext(ctx, "SELECT "+recordColumns+" FROM keys WHERE digest = $1")
	if err != nil {
		return nil, backend("open", err)
	}
	return &Store{db: db, dialect: dialect, lookup: lookup, channel: cfg.channel}, nil
}

// sqliteOptions are the DSN options of [OpenSQLite]; see the package
// documentation for why.
const sqliteOptions = "_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(FULL)" +
	"&_pragma=busy_timeout(10000)" +
	"&_pragma=foreign_keys(1)" +
	"&_txlock=immediate"

// OpenSQLite opens (creating it if need be) the SQLite database file at
// path and returns a [Store] on it that owns the database: [Store.Close]
// closes it. The file is opened in WAL mode with synchronous=FULL, a 10 s
// busy timeout and IMMEDIATE transactions. path must be a file name
// without '?'; ":memory:" is rejected, since every pooled connection would
// get its own empty database.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.Contains(path, "?") {
		return nil, errors.New("sqlstore: open sqlite: path must be a file name without '?'")
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteOptions)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	s, err := Open(ctx, db, SQLite)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.ownDB = true
	return s, nil
}

// OpenPostgres connects to the PostgreSQL database named by dsn (a URL
// such as postgres://user@host:5432/db?sslmode=disable, or key=value
// pairs, as pgx accepts) and returns a [Store] on it that owns the
// connection pool: [Store.Close] closes it. Errors never include the DSN,
// which may hold a password. opts are as for [Open].
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, errors.New("sqlstore: open postgres: invalid DSN")
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlstore: open postgres: %w", redact(err, dsn))
	}
	s, err := Open(ctx, db, Postgres, opts...)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.ownDB = true
	return s, nil
}

// redact returns err, or a plain error with the password of dsn masked if
// err's message contains it.
func redact(err error, dsn string) error {
	pw := ""
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		pw, _ = u.User.Password()
	}
	if pw != "" && strings.Contains(err.Error(), pw) {
		return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
	}
	return err
}

// DB returns the database the Store uses.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the Store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Close closes the database if the Store opened it ([OpenSQLite],
// [OpenPostgres]); a Store from [Open] leaves it to its owner. Calls after
// Close fail with a back-end error.
func (s *Store) Close() error {
	err := s.lookup.Close()
	if s.ownDB {
		err = s.db.Close()
	}
	return err
}

const recordColumns = "id, project, name, hint, digest, scopes, created_at, expires_at, revoked_at, last_used_at, disabled, metadata, " +
	"rate_limit_name, rate_limit_requests, rate_limit_period_ns, rate_limit_burst, usage_count, last_client_addr"

// errNoSuchID is the not-found error of the methods taking an ID. It does
// not quote the ID: a caller might pass a key there by mistake.
var errNoSuchID = fmt.Errorf("%w: no key has that ID", keystore.ErrNotFound)

// errInvalidRecord: a record no caller should pass (no ID, zero digest).
var errInvalidRecord = errors.New("sqlstore: invalid record")

// backend wraps a database error: it means the back end failed, and never
// matches a keystore sentinel.
func backend(op string, err error) error {
	return fmt.Errorf("sqlstore: %s: %w", op, err)
}

// LookupDigest implements [keystore.Lookuper]: one indexed query, exact
// equality on the digest column. A miss returns an error matching
// [keystore.ErrNotFound]; any other failure, a lost connection included,
// returns an error that does not.
func (s *Store) LookupDigest(ctx context.Context, d keystore.Digest) (keystore.Record, error) {
	row := s.lookup.QueryRowContext(ctx, d[:])
	r, err := scanRecord(row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return keystore.Record{}, keystore.ErrNotFound
	case err != nil:
		return keystore.Record{}, backend("lookup", err)
	}
	return r, nil
}

// Create implements [keystore.Store]. A record with an empty ID or a zero
// Digest is rejected with an error matching no keystore sentinel.
func (s *Store) Create(ctx context.Context, r keystore.Record) error {
	if err := validate(&r); err != nil {
		return err
	}
	args, err := recordArgs(&r)
	if err != nil {
		return err
	}
	return s.publish(ctx, "create", func(q querier) ([]string, error) {
		if _, err := q.ExecContext(ctx, insertRecord, args...); err != nil {
			return nil, s.insertError("create", &r, err)
		}
		return []string{r.ID}, nil
	})
}

const insertRecord = "INSERT INTO keys (" + recordColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"

func (s *Store) insertError(op string, r *keystore.Record, err error) error {
	if s.dialect.isUniqueViolation(err) {
		return fmt.Errorf("%w: a key with the ID %q or the same digest", keystore.ErrExists, r.ID)
	}
	return backend(op, err)
}

// Get implements [keystore.Store].
func (s *Store) Get(ctx context.Context, id string) (keystore.Record, error) {
	row := s.db.QueryRowContext(ctx, "SELECT "+recordColumns+" FROM keys WHERE id = $1", id)
	r, err := scanRecord(row)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return keystore.Record{}, errNoSuchID
	case err != nil:
		return keystore.Record{}, backend("get", err)
	}
	return r, nil
}

// List implements [keystore.Store], using the (project, created_at, id)
// index. It returns a non-nil slice.
func (s *Store) List(ctx context.Context, project string) ([]keystore.Record, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT "+recordColumns+" FROM keys WHERE project = $1 ORDER BY created_at, id", project)
	if err != nil {
		return nil, backend("list", err)
	}
	defer rows.Close()
	out := []keystore.Record{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, backend("list", err)
		}
		r.Digest = keystore.Digest{}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, backend("list", err)
	}
	return out, nil
}

// Revoke implements [keystore.Store] with one UPDATE … RETURNING statement
// that keeps the earlier of the stored and the given time; on PostgreSQL it
// runs in a transaction with the pg_notify that tells other instances'
// caches (see [ListenPostgres]). A zero at is an error.
func (s *Store) Revoke(ctx context.Context, id string, at time.Time) (keystore.Record, error) {
	if at.IsZero() {
		return keystore.Record{}, errors.New("sqlstore: revoke: zero revocation time")
	}
	var r keystore.Record
	err := s.publish(ctx, "revoke", func(q querier) (_ []string, err error) {
		row := q.QueryRowContext(ctx, `UPDATE keys SET revoked_at =
	CASE WHEN revoked_at IS NULL OR revoked_at > $1 THEN $1 ELSE revoked_at END
WHERE id = $2 RETURNING `+recordColumns, at.UnixMicro(), id)
		r, err = scanRecord(row)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, errNoSuchID
		case err != nil:
			return nil, backend("revoke", err)
		}
		return []string{r.ID}, nil
	})
	if err != nil {
		return keystore.Record{}, err
	}
	return r, nil
}

// Replace implements [keystore.Store] in one transaction. Its first
// statement revokes the old record only if it is not revoked yet; that
// UPDATE takes the row lock on PostgreSQL and the write lock on SQLite,
// so of concurrent Replaces of one key exactly one succeeds, and readers
// see the revocation and the new record together, at commit. A zero
// revokeAt is an error.
func (s *Store) Replace(ctx context.Context, oldID string, revokeAt time.Time, next keystore.Record) (err error) {
	if revokeAt.IsZero() {
		return errors.New("sqlstore: replace: zero revocation time")
	}
	if err := validate(&next); err != nil {
		return err
	}
	args, err := recordArgs(&next)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return backend("replace", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx,
		"UPDATE keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
		revokeAt.UnixMicro(), oldID)
	if err != nil {
		return backend("replace", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return backend("replace", err)
	}
	if n == 0 {
		var one int
		switch err := tx.QueryRowContext(ctx, "SELECT 1 FROM keys WHERE id = $1", oldID).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return errNoSuchID
		case err != nil:
			return backend("replace", err)
		}
		return fmt.Errorf("%w: id %q", keystore.ErrAlreadyRevoked, oldID)
	}
	if _, err := tx.ExecContext(ctx, insertRecord, args...); err != nil {
		return s.insertError("replace", &next, err)
	}
	if err := s.notify(ctx, tx, oldID, next.ID); err != nil {
		return backend("replace", err)
	}
	if err := tx.Commit(); err != nil {
		return backend("replace", err)
	}
	return nil
}

// Touch implements [keystore.Toucher] in one UPDATE that keeps the later
// of the stored and the given time.
func (s *Store) Touch(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE keys SET last_used_at =
	CASE WHEN last_used_at IS NULL OR last_used_at < $1 THEN $1 ELSE last_used_at END
WHERE id = $2`, nullTime(at), id)
	if err != nil {
		return backend("touch", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return backend("touch", err)
	}
	if n == 0 {
		return errNoSuchID
	}
	return nil
}

// RecordUsage implements [keystore.UsageWriter]. Entries with the same key
// ID are merged first (their Requests summed, the latest time and its
// address kept), which gives the result of applying them one by one. On
// PostgreSQL the whole batch is one UPDATE … FROM unnest(…) statement
// that first locks the rows in ID order (so concurrent batches from
// several instances cannot deadlock): one round trip and one transaction,
// whatever its size. On SQLite it is
// one transaction of one prepared UPDATE per key. Neither sends an
// invalidation notification: usage does not change whether a key works.
func (s *Store) RecordUsage(ctx context.Context, batch []keystore.Usage) error {
	us, err := mergeUsage(batch)
	if err != nil || len(us) == 0 {
		return err
	}
	if s.dialect == Postgres {
		return s.recordUsagePostgres(ctx, us)
	}
	return s.recordUsageSQLite(ctx, us)
}

// usageRow is one key's merged usage, as the statements take it.
type usageRow struct {
	id       string
	requests int64
	usedAt   *int64  // Unix microseconds; nil: no time
	addr     *string // nil: no address
}

// mergeUsage checks batch and merges the entries of each key, in the
// order of their first appearance.
func mergeUsage(batch []keystore.Usage) ([]usageRow, error) {
	rows := make([]usageRow, 0, len(batch))
	at := make(map[string]int, len(batch))
	last := make([]time.Time, 0, len(batch)) // full-precision latest time per row
	for i := range batch {
		u := &batch[i]
		if u.Requests < 0 {
			return nil, errors.New("sqlstore: record usage: negative Requests")
		}
		j, ok := at[u.KeyID]
		if !ok {
			j = len(rows)
			at[u.KeyID] = j
			rows = append(rows, usageRow{id: u.KeyID})
			last = append(last, time.Time{})
		}
		r := &rows[j]
		r.requests += u.Requests
		if u.LastUsedAt.IsZero() {
			continue
		}
		if u.ClientAddr.IsValid() && !u.LastUsedAt.Before(last[j]) {
			a := u.ClientAddr.String()
			r.addr = &a
		}
		if u.LastUsedAt.After(last[j]) {
			last[j] = u.LastUsedAt
			us := u.LastUsedAt.UnixMicro()
			r.usedAt = &us
		}
	}
	return rows, nil
}

// The SET expressions read the row as it was before the statement, on
// both databases: last_client_addr compares against the old last_used_at.
const usageSet = `usage_count = usage_count + %[1]s,
	last_used_at = CASE WHEN %[2]s IS NOT NULL AND (last_used_at IS NULL OR last_used_at < %[2]s)
		THEN %[2]s ELSE last_used_at END,
	last_client_addr = CASE WHEN %[3]s IS NOT NULL AND %[2]s IS NOT NULL AND (last_used_at IS NULL OR last_used_at <= %[2]s)
		THEN %[3]s ELSE last_client_addr END`

var (
	// The rows are locked in ID order first: two batches updating the
	// same keys in join order could each wait for a row the other holds
	// (a deadlock PostgreSQL breaks by failing one). The UPDATE only
	// touches rows the CTE has already locked, so every lock is taken in
	// ID order.
	recordUsagePostgres = `WITH u AS (
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS u(id, requests, used_at, addr)
), locked AS MATERIALIZED (
	SELECT keys.id FROM keys JOIN u ON keys.id = u.id ORDER BY keys.id FOR UPDATE OF keys
)
UPDATE keys SET ` + fmt.Sprintf(usageSet, "u.requests", "u.used_at", "u.addr") + `
FROM u JOIN locked ON locked.id = u.id
WHERE keys.id = u.id`
	recordUsageSQLite = `UPDATE keys SET ` + fmt.Sprintf(usageSet, "$1", "$2", "$3") + ` WHERE id = $4`
)

func (s *Store) recordUsagePostgres(ctx context.Context, us []usageRow) error {
	ids := make([]string, len(us))
	requests := make([]int64, len(us))
	usedAt := make([]*int64, len(us))
	addrs := make([]*string, len(us))
	for i, u := range us {
		ids[i], requests[i], usedAt[i], addrs[i] = u.id, u.requests, u.usedAt, u.addr
	}
	if _, err := s.db.ExecContext(ctx, recordUsagePostgres, ids, requests, usedAt, addrs); err != nil {
		return backend("record usage", err)
	}
	return nil
}

func (s *Store) recordUsageSQLite(ctx context.Context, us []usageRow) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return backend("record usage", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	stmt, err := tx.PrepareContext(ctx, recordUsageSQLite)
	if err != nil {
		return backend("record usage", err)
	}
	defer stmt.Close()
	for _, u := range us {
		if _, err := stmt.ExecContext(ctx, u.requests, u.usedAt, u.addr, u.id); err != nil {
			return backend("record usage", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return backend("record usage", err)
	}
	return nil
}

// SetDisabled implements [keystore.Disabler] with one UPDATE … RETURNING
// statement; on PostgreSQL it runs in a transaction with the pg_notify that
// tells other instances' caches (see [ListenPostgres]).
func (s *Store) SetDisabled(ctx context.Context, id string, disabled bool) (keystore.Record, error) {
	var r keystore.Record
	err := s.publish(ctx, "set disabled", func(q querier) (_ []string, err error) {
		row := q.QueryRowContext(ctx,
			"UPDATE keys SET disabled = $1 WHERE id = $2 RETURNING "+recordColumns, disabled, id)
		r, err = scanRecord(row)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, errNoSuchID
		case err != nil:
			return nil, backend("set disabled", err)
		}
		return []string{r.ID}, nil
	})
	if err != nil {
		return keystore.Record{}, err
	}
	return r, nil
}

func validate(r *keystore.Record) error {
	switch {
	case r.ID == "":
		return fmt.Errorf("%w: empty ID", errInvalidRecord)
	case r.Digest.IsZero():
		return fmt.Errorf("%w: zero digest", errInvalidRecord)
	}
	return nil
}

// recordArgs returns r's values in recordColumns order.
func recordArgs(r *keystore.Record) ([]any, error) {
	var scopes, metadata sql.NullString
	if r.Scopes != nil {
		b, err := json.Marshal(r.Scopes)
		if err != nil {
			return nil, fmt.Errorf("%w: scopes: %w", errInvalidRecord, err)
		}
		scopes = sql.NullString{String: string(b), Valid: true}
	}
	if len(r.Metadata) > 0 {
		b, err := json.Marshal(r.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%w: metadata: %w", errInvalidRecord, err)
		}
		metadata = sql.NullString{String: string(b), Valid: true}
	}
	return []any{
		r.ID, r.Project, r.Name, r.Hint, r.Digest[:], scopes,
		nullTime(r.CreatedAt), nullTime(r.ExpiresAt), nullTime(r.RevokedAt), nullTime(r.LastUsedAt),
		r.Disabled, metadata,
		r.RateLimit.Name, int64(r.RateLimit.Requests), int64(r.RateLimit.Period), int64(r.RateLimit.Burst),
		r.UsageCount, nullAddr(r.LastClientAddr),
	}, nil
}

// nullAddr returns a in its text form, NULL for the zero Addr.
func nullAddr(a netip.Addr) sql.NullString {
	if !a.IsValid() {
		return sql.NullString{}
	}
	return sql.NullString{String: a.String(), Valid: true}
}

// nullTime returns t in Unix microseconds, NULL for the zero time.
func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanRecord(sc scanner) (keystore.Record, error) {
	var (
		r                                   keystore.Record
		digest                              []byte
		scopes, metadata, addr              sql.NullString
		created, expires, revoked, lastUsed sql.NullInt64
		requests, period, burst             int64
	)
	if err := sc.Scan(&r.ID, &r.Project, &r.Name, &r.Hint, &digest, &scopes,
		&created, &expires, &revoked, &lastUsed, &r.Disabled, &metadata,
		&r.RateLimit.Name, &requests, &period, &burst, &r.UsageCount, &addr); err != nil {
		return keystore.Record{}, err
	}
	r.RateLimit.Requests, r.RateLimit.Period, r.RateLimit.Burst = int(requests), time.Duration(period), int(burst)
	if addr.Valid {
		a, err := netip.ParseAddr(addr.String)
		if err != nil {
			return keystore.Record{}, fmt.Errorf("stored client address of record %q: %w", r.ID, err)
		}
		r.LastClientAddr = a
	}
	if len(digest) != keystore.DigestSize {
		return keystore.Record{}, fmt.Errorf("stored digest of record %q has %d bytes, want %d", r.ID, len(digest), keystore.DigestSize)
	}
	copy(r.Digest[:], digest)
	if scopes.Valid {
		if err := json.Unmarshal([]byte(scopes.String), &r.Scopes); err != nil {
			return keystore.Record{}, fmt.Errorf("stored scopes of record %q: %w", r.ID, err)
		}
	}
	if metadata.Valid {
		if err := json.Unmarshal([]byte(metadata.String), &r.Metadata); err != nil {
			return keystore.Record{}, fmt.Errorf("stored metadata of record %q: %w", r.ID, err)
		}
	}
	r.CreatedAt = fromMicros(created)
	r.ExpiresAt = fromMicros(expires)
	r.RevokedAt = fromMicros(revoked)
	r.LastUsedAt = fromMicros(lastUsed)
	return r, nil
}
