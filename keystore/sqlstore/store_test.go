package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) keystore.Store { return newSQLiteStore(t) })
}

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	s := newPostgresStore(t) // one schema, shared by the subtests
	storetest.Run(t, func(t *testing.T) keystore.Store { return s })
}

// dialects runs fn on a fresh store of each dialect.
func dialects(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	for _, tc := range []struct {
		name string
		open func(testing.TB) *Store
	}{
		{"sqlite", newSQLiteStore},
		{"postgres", newPostgresStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fn(t, tc.open(t))
		})
	}
}

func testRecord(id string, created time.Time) keystore.Record {
	return keystore.Record{
		ID:        id,
		Project:   "proj",
		Name:      "name " + id,
		Hint:      "halfred_…" + id[len(id)-4:],
		Digest:    keystore.Digest(sha256.Sum256([]byte(id))),
		Scopes:    []string{"models:read"},
		CreatedAt: created,
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		r := testRecord("key_migrate0001", time.Now())
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create: %v", err)
		}
		// Open the same database again, several times at once: every
		// migration is already applied, nothing may change.
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				again, err := Open(ctx, s.DB(), s.Dialect())
				if err == nil {
					err = again.Close() // closes its statement, not the shared db
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("Open of a migrated database: %v", err)
			}
		}
		var n int
		if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		ms, err := migrations(s.Dialect())
		if err != nil {
			t.Fatal(err)
		}
		if n != len(ms) {
			t.Errorf("schema_migrations has %d rows, want %d (one per migration)", n, len(ms))
		}
		if _, err := s.Get(ctx, r.ID); err != nil {
			t.Errorf("Get after reopening: %v", err)
		}
	})
}

// TestConcurrentFirstOpen opens one fresh PostgreSQL schema from several
// pools at once: the advisory lock must make exactly one of them migrate.
func TestConcurrentFirstOpen(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	const n = 4
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenPostgres(t.Context(), dsn)
			if err != nil {
				t.Errorf("concurrent OpenPostgres of a fresh schema: %v", err)
				failed.Add(1)
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	s, err := OpenPostgres(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var count int
	if err := s.DB().QueryRowContext(t.Context(), "SELECT COUNT(*) FROM schema_migrations").Scan(&count); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrations(Postgres)
	if count != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d", count, len(ms))
	}
}

func TestSchemaTooNew(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.DB().ExecContext(ctx,
			"INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future.sql', 0)"); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, s.DB(), s.Dialect()); !errors.Is(err, errSchemaTooNew) {
			t.Errorf("Open of a database with a newer schema: got %v, want errSchemaTooNew", err)
		}
	})
}

// TestLostConnection: once the database is gone, every call fails with a
// back-end error, never one matching keystore.ErrNotFound.
func TestLostConnection(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		r := testRecord("key_lostconn001", time.Now())
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if err := s.DB().Close(); err != nil {
			t.Fatalf("closing the database: %v", err)
		}
		for name, call := range map[string]func() error{
			"LookupDigest": func() error { _, err := s.LookupDigest(ctx, r.Digest); return err },
			"Get":          func() error { _, err := s.Get(ctx, r.ID); return err },
			"List":         func() error { _, err := s.List(ctx, r.Project); return err },
			"Revoke":       func() error { _, err := s.Revoke(ctx, r.ID, time.Now()); return err },
			"Replace": func() error {
				return s.Replace(ctx, r.ID, time.Now(), testRecord("key_lostconn002", time.Now()))
			},
			"Touch":       func() error { return s.Touch(ctx, r.ID, time.Now()) },
			"SetDisabled": func() error { _, err := s.SetDisabled(ctx, r.ID, true); return err },
			"RecordUsage": func() error {
				return s.RecordUsage(ctx, []keystore.Usage{{KeyID: r.ID, Requests: 1, LastUsedAt: time.Now()}})
			},
		} {
			err := call()
			if err == nil {
				t.Errorf("%s on a closed database: no error", name)
				continue
			}
			for _, sentinel := range []error{keystore.ErrNotFound, keystore.ErrExists, keystore.ErrAlreadyRevoked} {
				if errors.Is(err, sentinel) {
					t.Errorf("%s on a closed database: %v matches %v; it must be a back-end error", name, err, sentinel)
				}
			}
		}
	})
}

// TestUnreachablePostgres: a server that does not answer is an error from
// OpenPostgres, not a store that later says "not found".
func TestUnreachablePostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := OpenPostgres(ctx, "postgres://postgres:s3cretpw@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("OpenPostgres of an unreachable server: no error")
	}
	if errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("OpenPostgres of an unreachable server: %v matches keystore.ErrNotFound", err)
	}
	if s := err.Error(); contains(s, "s3cretpw") {
		t.Errorf("OpenPostgres error %q contains the DSN's password", s)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestConcurrentReplaceExactlyOne hammers one key with Replaces from many
// goroutines: exactly one succeeds, the others get ErrAlreadyRevoked, and
// exactly one new record exists.
func TestConcurrentReplaceExactlyOne(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		const n = 16
		t0 := time.Now()
		old := testRecord("key_replace0000", t0)
		if err := s.Create(ctx, old); err != nil {
			t.Fatal(err)
		}
		var (
			ok    atomic.Int64
			wg    sync.WaitGroup
			start = make(chan struct{})
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				next := testRecord("key_replace"+string(rune('a'+i))+"xyz", t0)
				switch err := s.Replace(ctx, old.ID, t0, next); {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, keystore.ErrAlreadyRevoked):
					t.Errorf("concurrent Replace: %v, want nil or ErrAlreadyRevoked", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if got := ok.Load(); got != 1 {
			t.Errorf("%d of %d concurrent Replaces succeeded, want 1", got, n)
		}
		list, err := s.List(ctx, old.Project)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Errorf("after concurrent Replaces the project has %d keys, want 2 (old and one new)", len(list))
		}
	})
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	s := newSQLiteStore(t)
	ctx := t.Context()
	valid := testRecord("key_invalid0001", time.Now())
	if err := s.Create(ctx, valid); err != nil {
		t.Fatal(err)
	}
	noID := testRecord("key_invalid0002", time.Now())
	noID.ID = ""
	noDigest := testRecord("key_invalid0003", time.Now())
	noDigest.Digest = keystore.Digest{}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Create without ID", func() error { return s.Create(ctx, noID) }},
		{"Create without digest", func() error { return s.Create(ctx, noDigest) }},
		{"Replace with next without ID", func() error { return s.Replace(ctx, valid.ID, time.Now(), noID) }},
		{"Replace with zero time", func() error {
			return s.Replace(ctx, valid.ID, time.Time{}, testRecord("key_invalid0004", time.Now()))
		}},
		{"Revoke with zero time", func() error { _, err := s.Revoke(ctx, valid.ID, time.Time{}); return err }},
		{"RecordUsage with negative requests", func() error {
			return s.RecordUsage(ctx, []keystore.Usage{{KeyID: valid.ID, Requests: -1}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, keystore.ErrNotFound) || errors.Is(err, keystore.ErrExists) || errors.Is(err, keystore.ErrAlreadyRevoked) {
				t.Errorf("got %v; a caller bug must match no store sentinel", err)
			}
		})
	}
	got, err := s.Get(ctx, valid.ID)
	if err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("after the rejected calls: Get = %+v, %v; want the key unrevoked", got.RevokedAt, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		open func() (*Store, error)
	}{
		{"nil db", func() (*Store, error) { return Open(ctx, nil, SQLite) }},
		{"zero dialect", func() (*Store, error) { return Open(ctx, &sql.DB{}, 0) }},
		{"sqlite memory", func() (*Store, error) { return OpenSQLite(ctx, ":memory:") }},
		{"sqlite empty path", func() (*Store, error) { return OpenSQLite(ctx, "") }},
		{"sqlite path with query", func() (*Store, error) { return OpenSQLite(ctx, "x.db?mode=ro") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := tc.open(); err == nil {
				s.Close()
				t.Error("no error")
			}
		})
	}
}

func TestDialectString(t *testing.T) {
	for d, want := range map[Dialect]string{SQLite: "sqlite", Postgres: "postgres", 0: "Dialect(0)"} {
		if got := d.String(); got != want {
			t.Errorf("Dialect(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}
