package token_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/token"
	"github.com/keygate/keygate/token/tokentest"
)

func TestMemoryRefreshStoreConformance(t *testing.T) {
	t.Parallel()
	t.Run("fresh", func(t *testing.T) {
		t.Parallel()
		tokentest.RunRefreshStore(t, func(*testing.T) token.RefreshStore { return token.NewMemoryRefreshStore() })
	})
	t.Run("zero value", func(t *testing.T) {
		t.Parallel()
		tokentest.RunRefreshStore(t, func(*testing.T) token.RefreshStore { return new(token.MemoryRefreshStore) })
	})
	t.Run("shared", func(t *testing.T) {
		t.Parallel()
		s := token.NewMemoryRefreshStore()
		tokentest.RunRefreshStore(t, func(*testing.T) token.RefreshStore { return s })
	})
}

func TestMemoryRevocationsConformance(t *testing.T) {
	t.Parallel()
	t.Run("fresh", func(t *testing.T) {
		t.Parallel()
		tokentest.RunRevocations(t, func(_ *testing.T, now func() time.Time) token.Revocations {
			return token.NewMemoryRevocations(token.WithRevocationsClock(now))
		})
	})
	t.Run("shared", func(t *testing.T) {
		t.Parallel()
		var s *token.MemoryRevocations
		tokentest.RunRevocations(t, func(_ *testing.T, now func() time.Time) token.Revocations {
			if s == nil { // the subtests run one after another
				s = token.NewMemoryRevocations(token.WithRevocationsClock(now))
			}
			return s
		})
	})
}
