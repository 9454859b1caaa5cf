// Package pgtest gives a test a PostgreSQL schema of its own, in the
// database that the environment variable KEYGATE_POSTGRES_DSN names.
//
// Without the variable (a laptop with no PostgreSQL) the test is skipped
// with a message saying how to run it; under CI=true it fails instead, so
// that CI can never pass by skipping.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// EnvDSN is the environment variable that names the test database.
const EnvDSN = "KEYGATE_POSTGRES_DSN"

// DSN creates a schema named prefix followed by random hex digits, drops it
// in tb.Cleanup, and returns a DSN whose search_path makes every pooled
// connection use it. It skips tb when EnvDSN is unset or the server is
// unreachable, unless CI=true: then it fails tb.
func DSN(tb testing.TB, prefix string) string {
	tb.Helper()
	dsn := os.Getenv(EnvDSN)
	ci := os.Getenv("CI") == "true"
	if dsn == "" {
		if ci {
			tb.Fatal("CI=true but " + EnvDSN + " is not set; CI must run the PostgreSQL tests")
		}
		tb.Skip(EnvDSN + " not set: skipping PostgreSQL tests (set it to e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatalf("%s is not a valid DSN: %v", EnvDSN, err)
	}
	tb.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if ci {
			tb.Fatalf("PostgreSQL at %s is unreachable: %v", EnvDSN, err)
		}
		tb.Skipf("PostgreSQL at %s is unreachable, skipping: %v", EnvDSN, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := prefix + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("CREATE SCHEMA: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			tb.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
	})
	return WithSearchPath(tb, dsn, schema)
}

// WithSearchPath sets the search_path run-time parameter in dsn, a URL or
// key=value DSN, so that every pooled connection uses schema.
func WithSearchPath(tb testing.TB, dsn, schema string) string {
	tb.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("%s: %v", EnvDSN, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}
