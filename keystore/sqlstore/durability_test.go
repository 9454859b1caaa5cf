package sqlstore

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDurabilityChild is the child process of TestDurabilitySIGKILL; run
// on its own it does nothing. It creates keys and revokes every third one,
// printing a line after each statement has committed, until it is killed.
func TestDurabilityChild(t *testing.T) {
	if os.Getenv("SQLSTORE_CHILD") != "1" {
		t.Skip("child process of TestDurabilitySIGKILL")
	}
	ctx := context.Background()
	s, err := OpenSQLite(ctx, os.Getenv("SQLSTORE_DB"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	t0 := time.Now()
	for i := 0; time.Since(t0) < 30*time.Second; i++ {
		id := fmt.Sprintf("key_durable%05d", i)
		if err := s.Create(ctx, testRecord(id, time.Now())); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Println("created", id)
		if i%3 == 0 {
			if _, err := s.Revoke(ctx, id, t0); err != nil {
				fmt.Println("error", err)
				os.Exit(2)
			}
			fmt.Println("revoked", id)
		}
	}
	os.Exit(3) // never killed
}

// TestDurabilitySIGKILL runs a child that writes to a SQLite file, kills
// it with SIGKILL at a random point, and checks that every key and
// revocation the child reported committed is in the file.
func TestDurabilitySIGKILL(t *testing.T) {
	if os.Getenv("SQLSTORE_CHILD") == "1" {
		t.Skip("in the child")
	}
	t.Parallel()
	for round := range 3 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "durable.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestDurabilityChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SQLSTORE_CHILD=1", "SQLSTORE_DB="+path)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killAfter := 20 + rand.IntN(200) // lines
			var created, revoked []string
			sc := bufio.NewScanner(out)
			read := func() bool {
				if !sc.Scan() {
					return false
				}
				verb, id, _ := strings.Cut(sc.Text(), " ")
				switch verb {
				case "created":
					created = append(created, id)
				case "revoked":
					revoked = append(revoked, id)
				default:
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child: %s", sc.Text())
				}
				return true
			}
			for n := 0; n < killAfter && read(); n++ {
			}
			// Let the child run on for a random moment, so that it is
			// killed anywhere in a statement or between two.
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
				t.Fatalf("kill: %v", err)
			}
			// Lines the child wrote before it died were committed too.
			for read() {
			}
			cmd.Wait()
			if len(created) == 0 {
				t.Fatal("the child committed nothing before it was killed")
			}

			s, err := OpenSQLite(t.Context(), path)
			if err != nil {
				t.Fatalf("reopening the database after SIGKILL: %v", err)
			}
			defer s.Close()
			for _, id := range created {
				r, err := s.Get(t.Context(), id)
				if err != nil {
					t.Errorf("key %s was reported committed before SIGKILL, then: %v", id, err)
					continue
				}
				if _, err := s.LookupDigest(t.Context(), r.Digest); err != nil {
					t.Errorf("LookupDigest of key %s after SIGKILL: %v", id, err)
				}
			}
			for _, id := range revoked {
				r, err := s.Get(t.Context(), id)
				if err != nil || r.RevokedAt.IsZero() {
					t.Errorf("key %s was reported revoked before SIGKILL, then RevokedAt=%v, err=%v", id, r.RevokedAt, err)
				}
			}
			t.Logf("killed after %d keys and %d revocations, all present", len(created), len(revoked))
		})
	}
}
