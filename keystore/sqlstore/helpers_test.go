package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newSQLiteStore opens a store on a fresh file in t.TempDir and closes it
// in t.Cleanup.
func newSQLiteStore(t testing.TB) *Store {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const pgHint = "KEYGATE_POSTGRES_DSN not set: skipping PostgreSQL tests (set it to e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)"

// postgresDSN returns the DSN of a fresh schema in the test database
// named by KEYGATE_POSTGRES_DSN, dropped in t.Cleanup. It skips the test
// when the variable is unset or the server unreachable, unless CI=true:
// then it fails.
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("KEYGATE_POSTGRES_DSN")
	ci := os.Getenv("CI") == "true"
	if dsn == "" {
		if ci {
			t.Fatal("CI=true but KEYGATE_POSTGRES_DSN is not set; CI must run the PostgreSQL tests")
		}
		t.Skip(pgHint)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("KEYGATE_POSTGRES_DSN is not a valid DSN: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if ci {
			t.Fatalf("PostgreSQL at KEYGATE_POSTGRES_DSN is unreachable: %v", err)
		}
		t.Skipf("PostgreSQL at KEYGATE_POSTGRES_DSN is unreachable, skipping: %v", err)
	}
	schema := "kg_test_" + randHex(8)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("CREATE SCHEMA: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("DROP SCHEMA %s: %v", schema, err)
		}
	})
	return withSearchPath(t, dsn, schema)
}

// withSearchPath sets the search_path run-time parameter in dsn, so that
// every pooled connection uses schema.
func withSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("KEYGATE_POSTGRES_DSN: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// newPostgresStore opens a store in a fresh schema, closed in t.Cleanup
// before the schema is dropped.
func newPostgresStore(t testing.TB) *Store {
	t.Helper()
	dsn := postgresDSN(t)
	s, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
