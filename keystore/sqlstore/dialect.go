package sqlstore

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names the SQL database behind a [Store]: what its migrations
// look like, how it locks, and how its driver reports a unique violation.
// The zero Dialect is invalid; [Open] rejects it. Queries use $1-style
// placeholders on every dialect: PostgreSQL requires them, and SQLite
// (modernc.org/sqlite) binds $N to the N-th argument.
type Dialect int

const (
	// SQLite is SQLite through modernc.org/sqlite (driver name "sqlite"),
	// pure Go, no cgo.
	SQLite Dialect = iota + 1
	// Postgres is PostgreSQL through github.com/jackc/pgx/v5/stdlib
	// (driver name "pgx").
	Postgres
)

// String returns "sqlite", "postgres", or "Dialect(n)" for an invalid one.
func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

func (d Dialect) valid() bool { return d == SQLite || d == Postgres }

// migrationDir is the directory of the dialect's migrations in
// [migrationFS].
func (d Dialect) migrationDir() string { return "migrations/" + d.String() }

// isUniqueViolation reports whether err is the driver's report of a
// violated PRIMARY KEY or UNIQUE constraint.
func (d Dialect) isUniqueViolation(err error) bool {
	switch d {
	case SQLite:
		var se *sqlite.Error
		if errors.As(err, &se) {
			c := se.Code()
			return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
	case Postgres:
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code == "23505" // unique_violation
		}
	}
	return false
}
