package tokentest_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/token/tokentest"
)

// A store's own test runs the suite, giving each subtest a store: here a
// fresh MemoryRefreshStore, or one shared by every subtest.
func ExampleRunRefreshStore() {
	testRefreshStore := func(t *testing.T) {
		tokentest.RunRefreshStore(t, func(*testing.T) token.RefreshStore {
			return token.NewMemoryRefreshStore()
		})
	}
	_ = testRefreshStore // func TestRefreshStore(t *testing.T) in a _test.go file
}

// The revocation set must read the suite's clock, which decides when its
// entries may be dropped.
func ExampleRunRevocations() {
	testRevocations := func(t *testing.T) {
		tokentest.RunRevocations(t, func(_ *testing.T, now func() time.Time) token.Revocations {
			return token.NewMemoryRevocations(token.WithRevocationsClock(now))
		})
	}
	_ = testRevocations // func TestRevocations(t *testing.T) in a _test.go file
}
