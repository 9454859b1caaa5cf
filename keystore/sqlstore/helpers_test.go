package sqlstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/keystore/sqlstore/pgtest"
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

// postgresDSN returns the DSN of a fresh schema in the test database
// named by KEYGATE_POSTGRES_DSN (see pgtest.DSN).
func postgresDSN(t testing.TB) string {
	t.Helper()
	return pgtest.DSN(t, "kg_test_")
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
