package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/sqlstore"
)

func ExampleOpenSQLite() {
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "keygate.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	rec := keystore.Record{
		ID:        "key_3kTMd9x0aH2bQe7L",
		Project:   "acme",
		Name:      "ci",
		Hint:      "halfred_…a1B2",
		Digest:    keystore.Digest(sha256.Sum256([]byte("example"))),
		Scopes:    []string{"models:read"},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if err := store.Create(ctx, rec); err != nil {
		log.Fatal(err)
	}
	got, err := store.LookupDigest(ctx, rec.Digest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.ID, got.Project, got.Scopes, got.CreatedAt)

	_, err = store.LookupDigest(ctx, keystore.Digest{1})
	fmt.Println(errors.Is(err, keystore.ErrNotFound))
	fmt.Println(errors.Is(store.Create(ctx, rec), keystore.ErrExists))
	// Output:
	// key_3kTMd9x0aH2bQe7L acme [models:read] 2026-01-02 03:04:05 +0000 UTC
	// true
	// true
}
