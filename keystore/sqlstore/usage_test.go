package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// instances opens two Stores on one database, each with its own pool, as
// two processes would.
func instances(t *testing.T, dialect string) (a, b *Store) {
	t.Helper()
	ctx := context.Background()
	var open func() (*Store, error)
	switch dialect {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "keys.db")
		open = func() (*Store, error) { return OpenSQLite(ctx, path) }
	case "postgres":
		dsn := postgresDSN(t)
		open = func() (*Store, error) { return OpenPostgres(ctx, dsn) }
	}
	for _, s := range []**Store{&a, &b} {
		var err error
		if *s, err = open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*s).Close() })
	}
	return a, b
}

// TestUsageTwoInstances runs two instances (own pool, CachedStore, Manager,
// Guard and UsageRecorder each, flushing every few milliseconds) on one
// database, sends requests through both at once, and checks that the
// stored counts are exactly the requests made.
func TestUsageTwoInstances(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			const (
				nkeys   = 20
				perInst = 1000
			)
			ctx := t.Context()
			stores := [2]*Store{}
			stores[0], stores[1] = instances(t, dialect)

			type instance struct {
				m   *keystore.Manager
				rec *keystore.UsageRecorder
				h   http.Handler
			}
			var inst [2]instance
			for i, s := range stores {
				cache, err := keystore.NewCachedStore(s)
				if err != nil {
					t.Fatal(err)
				}
				m, err := keystore.NewManager(cache, keystore.WithLastUsedInterval(0))
				if err != nil {
					t.Fatal(err)
				}
				rec, err := keystore.NewUsageRecorder(cache,
					keystore.WithUsageInterval(5*time.Millisecond), keystore.WithUsageBatchSize(8))
				if err != nil {
					t.Fatal(err)
				}
				g, err := auth.New(m, auth.WithObserver(rec))
				if err != nil {
					t.Fatal(err)
				}
				inst[i] = instance{m, rec, g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))}
			}

			keys := make([]string, nkeys)
			ids := make([]string, nkeys)
			for i := range keys {
				k, r, err := inst[i%2].m.Issue(ctx, keystore.KeySpec{Project: "usage"})
				if err != nil {
					t.Fatal(err)
				}
				keys[i], ids[i] = k.Plaintext(), r.ID
			}

			start := time.Now()
			var wg sync.WaitGroup
			for i := range inst {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := range perInst {
						req := httptest.NewRequest(http.MethodGet, "/v1/models", nil)
						req.Header.Set("Authorization", "Bearer "+keys[n%nkeys])
						req.RemoteAddr = fmt.Sprintf("192.0.2.%d:1234", i+1)
						w := httptest.NewRecorder()
						inst[i].h.ServeHTTP(w, req)
						if w.Code != http.StatusOK {
							t.Errorf("instance %d: status %d", i, w.Code)
							return
						}
					}
				}()
			}
			wg.Wait()
			end := time.Now()
			for i := range inst {
				if err := inst[i].rec.Close(ctx); err != nil {
					t.Fatalf("instance %d: Close: %v", i, err)
				}
				st := inst[i].rec.Stats()
				if st.Flushed != perInst || st.Dropped != 0 {
					t.Errorf("instance %d: Stats %+v, want %d requests flushed, none dropped", i, st, perInst)
				}
				t.Logf("instance %d: %d requests, %d writes in %d flushes", i, perInst, st.Writes, st.Flushes)
			}

			addrs := map[netip.Addr]bool{
				netip.MustParseAddr("192.0.2.1"): true,
				netip.MustParseAddr("192.0.2.2"): true,
			}
			for _, id := range ids {
				r, err := stores[0].Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if want := int64(2 * perInst / nkeys); r.UsageCount != want {
					t.Errorf("%s: UsageCount %d, want %d (both instances' requests, each counted once)", id, r.UsageCount, want)
				}
				if r.LastUsedAt.Before(start.Truncate(time.Microsecond)) || r.LastUsedAt.After(end) {
					t.Errorf("%s: LastUsedAt %v outside the run [%v, %v]", id, r.LastUsedAt, start, end)
				}
				if !addrs[r.LastClientAddr] {
					t.Errorf("%s: LastClientAddr %v, want one of the clients'", id, r.LastClientAddr)
				}
			}
			list, err := stores[1].List(ctx, "usage")
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, r := range list {
				total += r.UsageCount
			}
			if total != 2*perInst {
				t.Errorf("List: %d requests in all, want %d", total, 2*perInst)
			}
		})
	}
}

// TestRecordUsageLargeBatch: a batch far larger than the recorder's
// default goes through in one call.
func TestRecordUsageLargeBatch(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		const n = 600 // more than the recorder's default batch
		t0 := time.Now().UTC().Truncate(time.Microsecond)
		batch := make([]keystore.Usage, 0, n+1)
		for i := range n {
			r := testRecord(fmt.Sprintf("key_batch%06d", i), t0)
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
			batch = append(batch, keystore.Usage{
				KeyID: r.ID, Requests: int64(i + 1), LastUsedAt: t0.Add(time.Duration(i) * time.Microsecond),
				ClientAddr: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}),
			})
		}
		batch = append(batch, keystore.Usage{KeyID: "key_batch_unknown", Requests: 1})
		if err := s.RecordUsage(ctx, batch); err != nil {
			t.Fatalf("RecordUsage of %d keys: %v", n, err)
		}
		for _, i := range []int{0, 1, n / 2, n - 1} {
			r, err := s.Get(ctx, batch[i].KeyID)
			if err != nil {
				t.Fatal(err)
			}
			if r.UsageCount != batch[i].Requests || !r.LastUsedAt.Equal(batch[i].LastUsedAt) || r.LastClientAddr != batch[i].ClientAddr {
				t.Errorf("%s: got %d, %v, %v; want %d, %v, %v", r.ID, r.UsageCount, r.LastUsedAt, r.LastClientAddr,
					batch[i].Requests, batch[i].LastUsedAt, batch[i].ClientAddr)
			}
		}
		var sum int64
		if err := s.DB().QueryRowContext(ctx, "SELECT SUM(usage_count) FROM keys").Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if want := int64(n * (n + 1) / 2); sum != want {
			t.Errorf("sum of usage_count %d, want %d", sum, want)
		}
	})
}

// TestMigrateUsageColumns opens a database at schema version 2 that holds
// a key: migration 3 adds the rate-limit and usage columns, and the key
// reads back with them zero and everything else as it was.
func TestMigrateUsageColumns(t *testing.T) {
	t.Parallel()
	for _, dialect := range []Dialect{SQLite, Postgres} {
		t.Run(dialect.String(), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var db *sql.DB
			var err error
			if dialect == SQLite {
				db, err = sql.Open("sqlite", filepath.Join(t.TempDir(), "old.db")+"?"+sqliteOptions)
			} else {
				db, err = sql.Open("pgx", postgresDSN(t))
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ms, err := migrations(dialect)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at BIGINT  NOT NULL
)`); err != nil {
				t.Fatal(err)
			}
			for _, m := range ms[:2] {
				if _, err := db.ExecContext(ctx, m.sql); err != nil {
					t.Fatalf("%s: %v", m.name, err)
				}
				if _, err := db.ExecContext(ctx, "INSERT INTO schema_migrations VALUES ($1, $2, 0)", m.version, m.name); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now().UTC().Truncate(time.Microsecond)
			old := testRecord("key_oldschema01", t0)
			old.LastUsedAt = t0
			if _, err := db.ExecContext(ctx, `INSERT INTO keys
	(id, project, name, hint, digest, scopes, created_at, last_used_at, disabled)
	VALUES ($1, $2, $3, $4, $5, '["models:read"]', $6, $6, FALSE)`,
				old.ID, old.Project, old.Name, old.Hint, old.Digest[:], t0.UnixMicro()); err != nil {
				t.Fatal(err)
			}

			s, err := Open(ctx, db, dialect)
			if err != nil {
				t.Fatalf("Open of a version-2 database: %v", err)
			}
			defer s.Close()
			got, err := s.Get(ctx, old.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.UsageCount != 0 || got.LastClientAddr.IsValid() || got.RateLimit != (auth.Limit{}) {
				t.Errorf("migrated key: usage %d, address %v, rate limit %+v; want all zero", got.UsageCount, got.LastClientAddr, got.RateLimit)
			}
			if got.Name != old.Name || !got.CreatedAt.Equal(t0) || !got.LastUsedAt.Equal(t0) || len(got.Scopes) != 1 {
				t.Errorf("migrated key changed: %+v", got)
			}
			addr := netip.MustParseAddr("198.51.100.1")
			if err := s.RecordUsage(ctx, []keystore.Usage{{KeyID: old.ID, Requests: 3, LastUsedAt: t0.Add(time.Second), ClientAddr: addr}}); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Get(ctx, old.ID); err != nil || got.UsageCount != 3 || got.LastClientAddr != addr {
				t.Errorf("migrated key after RecordUsage: %d, %v (%v); want 3, %v", got.UsageCount, got.LastClientAddr, err, addr)
			}
		})
	}
}
