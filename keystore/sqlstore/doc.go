// Package sqlstore is a [keystore.Store] on database/sql for SQLite
// (modernc.org/sqlite, pure Go, no cgo) and PostgreSQL
// (github.com/jackc/pgx/v5/stdlib). It is a nested module,
// github.com/keygate/keygate/keystore/sqlstore, so that importing keygate's
// core never pulls a database driver into a build.
//
// # Usage
//
//	store, err := sqlstore.OpenSQLite(ctx, "keygate.db")
//	// or: sqlstore.OpenPostgres(ctx, "postgres://app@db:5432/app?sslmode=verify-full")
//	// or: sqlstore.Open(ctx, myDB, sqlstore.Postgres) on a *sql.DB you manage
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close()
//	keys, err := keystore.NewManager(store, keystore.WithHasher(hasher))
//
// [Store] implements [keystore.Store], [keystore.Toucher],
// [keystore.Disabler] and [keystore.UsageWriter], and passes storetest.Run
// on real SQLite and PostgreSQL databases. It also implements [token.RefreshStore], and
// [Store.Revocations] returns a [token.Revocations] on the same database,
// so that a refresh-token family or an access token revoked through one
// instance is revoked for every instance sharing the database:
//
//	svc, err := token.NewService(issuer, verifier, store, store.Revocations(), keys)
//
// # Schema
//
// One table, keys, created by the embedded migrations (migrations/sqlite
// and migrations/postgres in the module):
//
//	id           TEXT PRIMARY KEY   -- COLLATE "C" on PostgreSQL: byte order, as in Go
//	digest       BLOB / BYTEA       NOT NULL UNIQUE -- the 32-byte HMAC digest; never the key
//	project      TEXT               NOT NULL
//	name, hint   TEXT               NOT NULL DEFAULT ''
//	scopes       TEXT               -- JSON array; NULL for nil Scopes
//	created_at, expires_at, revoked_at, last_used_at
//	             INTEGER / BIGINT   -- Unix microseconds, UTC; NULL for the zero time
//	disabled     INTEGER / BOOLEAN  NOT NULL
//	metadata     TEXT               -- JSON object; NULL for empty Metadata
//	rate_limit_name                 TEXT    NOT NULL DEFAULT '' -- Record.RateLimit
//	rate_limit_requests, rate_limit_burst
//	                                INTEGER / BIGINT NOT NULL DEFAULT 0
//	rate_limit_period_ns            INTEGER / BIGINT NOT NULL DEFAULT 0 -- a time.Duration
//	usage_count  INTEGER / BIGINT   NOT NULL DEFAULT 0 -- Record.UsageCount
//	last_client_addr TEXT           -- netip.Addr text form; NULL when unknown
//	INDEX keys_project_created ON keys (project, created_at, id)
//
// and, for the token stores:
//
//	refresh_families (family TEXT PRIMARY KEY, expires_at, revoked_at)
//	refresh_tokens   (digest BLOB/BYTEA PRIMARY KEY, family, key_id, project,
//	                  scopes, issued_at, expires_at, spent_at)
//	revoked_tokens   (jti TEXT PRIMARY KEY, keep_until)
//
// each with an index on its expiry column. [Store.CreateRefresh] drops the
// refresh records and families that expired by the new record's IssuedAt,
// and [Revocations.Revoke] drops the entries whose keep_until
// (expiresAt + [token.RevocationSlack]) has passed, so the tables stay
// bounded by the live tokens.
//
// Times are integers, not timestamptz, so that both databases store,
// compare and order them the same way, to the microsecond (the precision
// PostgreSQL would keep anyway; storetest accepts it). Times come back in
// UTC.
//
// # Migrations
//
// Migrations are SQL files embedded in the package, one per version
// (NNNN_name.sql). [Open] applies the ones the database lacks, all in one
// transaction, and records each in schema_migrations (version, name,
// applied_at). Opening a migrated database again changes nothing. On
// PostgreSQL the transaction first takes pg_advisory_xact_lock, so several
// processes may open one database at once and each migration is applied
// exactly once; on SQLite it begins with BEGIN IMMEDIATE, which takes the
// database's single write lock. A database migrated by a newer version of
// this package (an unknown version in schema_migrations) is refused.
//
// # Atomicity
//
// [Store.RecordUsage] writes a batch of usage counters in one statement on
// PostgreSQL (UPDATE … FROM unnest of the batch's arrays, after locking
// the rows in ID order so that batches from several instances cannot
// deadlock) and in one transaction on SQLite; counts are increments, so
// instances sharing the database add up.
//
// Revoke, Touch and SetDisabled are single UPDATE statements; Revoke keeps
// the earlier time with
//
//	SET revoked_at = CASE WHEN revoked_at IS NULL OR revoked_at > $1 THEN $1 ELSE revoked_at END
//
// Replace is one transaction whose first statement is
//
//	UPDATE keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL
//
// which takes the old row's lock on PostgreSQL (what SELECT … FOR UPDATE
// would, without the extra round trip) and the write lock on SQLite. A
// concurrent Replace of the same key waits for it and then finds the key
// revoked, so exactly one succeeds; readers see the revocation and the new
// record together, at commit. [Store.SpendRefresh] works the same way
// (UPDATE … WHERE spent_at IS NULL RETURNING …): of concurrent spends of
// one refresh token exactly one succeeds.
//
// # Durability
//
// [OpenSQLite] opens the file with journal_mode=WAL (readers never block
// the writer), synchronous=FULL (each commit is fsynced before it
// returns, so a committed key or revocation survives a power loss too;
// NORMAL would survive a killed process but might lose the last commits
// on power loss), busy_timeout=10000 (a writer waits up to 10 s for
// another instead of failing with "database is locked") and
// _txlock=immediate (transactions take the write lock when they begin, so
// they never fail upgrading a read lock). A test kills a writing process
// with SIGKILL at random points and finds every commit it reported. On
// PostgreSQL durability is the server's (synchronous_commit).
//
// # Errors
//
// Driver errors are translated: sql.ErrNoRows becomes an error matching
// [keystore.ErrNotFound]; a unique violation (SQLite
// SQLITE_CONSTRAINT_PRIMARYKEY or SQLITE_CONSTRAINT_UNIQUE, PostgreSQL
// SQLSTATE 23505) becomes one matching [keystore.ErrExists]. Every other
// error, a lost connection or a closed database included, is returned
// wrapped ("sqlstore: lookup: …") and matches no keystore sentinel, so the
// middleware answers 503, never 401. Errors never contain a key, a digest,
// or the password of a DSN.
//
// # Performance
//
// [Store.LookupDigest] is one prepared, indexed query: one round trip to
// PostgreSQL (pgx caches the prepared statement per connection). On the
// machine the package was written on (2 cores), it took about 75 µs on
// SQLite (modernc.org/sqlite parses the statement on every call) and
// about 150 µs on PostgreSQL over loopback; put a cache in front of it
// on the request path.
//
// # Go version
//
// The module says go 1.24, like keygate's core. It uses
// modernc.org/sqlite v1.38.2 and github.com/jackc/pgx/v5 v5.7.6, whose
// go.mod files say go 1.23.0; pgx v5.8.0 says go 1.24.0, which a go.work
// file saying go 1.24 rejects ("requires go >= 1.24.0").
//
// # Invalidation across instances
//
// On PostgreSQL every write that can make another instance's cached record
// stale (Create, Revoke, Replace, SetDisabled) sends pg_notify on the
// store's channel ([DefaultChannel], or [WithNotifyChannel]) inside its own
// transaction, so the message goes out only if the write commits.
// [ListenPostgres] listens on a dedicated connection and applies each
// message to a [keystore.CachedStore] (any [Invalidator]); it marks the feed
// unhealthy the moment the connection fails, reconnects with backoff, and
// on reconnect the cache drops everything, since messages may have been
// missed. Measured on loopback: a key revoked through one instance is seen
// revoked by another's cache after 3.1 ms at the median and 7.5 ms at the
// 99th percentile (100 trials, TestFeedLatency). SQLite is single-process
// and sends nothing.
package sqlstore
