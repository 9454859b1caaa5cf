package keystore_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keystore"
)

// TestIssueRateLimit: a key's own rate limit is validated at issue, kept
// in its record, copied to its Principal, and carried over by Rotate.
func TestIssueRateLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		limit auth.Limit
		ok    bool
	}{
		{"none", auth.Limit{}, true},
		{"per minute", auth.PerMinute("tier-2", 600), true},
		{"unnamed", auth.Limit{Requests: 10, Period: time.Second}, true},
		{"with burst", auth.Limit{Name: "a.b_c-d", Requests: 100, Period: time.Hour, Burst: 20}, true},
		{"name of 64 bytes", auth.Limit{Name: strings.Repeat("n", 64), Requests: 1, Period: time.Minute}, true},
		{"name too long", auth.Limit{Name: strings.Repeat("n", 64) + "n", Requests: 1, Period: time.Minute}, false},
		{"name with a space", auth.Limit{Name: "tier 2", Requests: 1, Period: time.Minute}, false},
		{"name with a quote", auth.Limit{Name: `tier"`, Requests: 1, Period: time.Minute}, false},
		{"name with a comma", auth.Limit{Name: "a,b", Requests: 1, Period: time.Minute}, false},
		{"name with a semicolon", auth.Limit{Name: "a;w=1", Requests: 1, Period: time.Minute}, false},
		{"non-ASCII name", auth.Limit{Name: "tïer", Requests: 1, Period: time.Minute}, false},
		{"negative requests", auth.Limit{Requests: -1, Period: time.Minute}, false},
		{"requests without a period", auth.Limit{Requests: 5}, false},
		{"negative period", auth.Limit{Requests: 5, Period: -time.Minute}, false},
		{"negative burst", auth.Limit{Requests: 5, Period: time.Minute, Burst: -1}, false},
		{"name without requests", auth.Limit{Name: "tier-2"}, false},
		{"period without requests", auth.Limit{Period: time.Minute}, false},
		{"burst without requests", auth.Limit{Burst: 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			store := keystore.NewMemoryStore()
			m := newManager(t, store, newClock())
			key, rec, err := m.Issue(ctx, keystore.KeySpec{Project: "p", RateLimit: tt.limit})
			if !tt.ok {
				if !errors.Is(err, keystore.ErrInvalidSpec) {
					t.Fatalf("Issue with rate limit %+v: %v, want keystore.ErrInvalidSpec", tt.limit, err)
				}
				if store.Len() != 0 {
					t.Error("a refused Issue stored a key")
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue with rate limit %+v: %v", tt.limit, err)
			}
			if rec.RateLimit != tt.limit {
				t.Errorf("issued record's RateLimit %+v, want %+v", rec.RateLimit, tt.limit)
			}
			stored, err := store.Get(ctx, rec.ID)
			if err != nil || stored.RateLimit != tt.limit {
				t.Errorf("stored RateLimit %+v (%v), want %+v", stored.RateLimit, err, tt.limit)
			}
			p, err := m.Authenticate(ctx, key.Plaintext())
			if err != nil {
				t.Fatal(err)
			}
			if p.RateLimit != tt.limit {
				t.Errorf("Principal.RateLimit %+v, want the key's %+v", p.RateLimit, tt.limit)
			}
			next, nrec, err := m.Rotate(ctx, rec.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			if nrec.RateLimit != tt.limit {
				t.Errorf("rotated record's RateLimit %+v, want the old key's %+v", nrec.RateLimit, tt.limit)
			}
			if p, err := m.Authenticate(ctx, next.Plaintext()); err != nil || p.RateLimit != tt.limit {
				t.Errorf("rotated key's Principal.RateLimit %+v (%v), want %+v", p.RateLimit, err, tt.limit)
			}
		})
	}
}

// TestRotateResetsUsage: a rotated key starts with no usage of its own.
func TestRotateResetsUsage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := keystore.NewMemoryStore()
	m := newManager(t, store, newClock())
	_, rec, err := m.Issue(ctx, keystore.KeySpec{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.RecordUsage(ctx, []keystore.Usage{{KeyID: rec.ID, Requests: 5, LastUsedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	_, next, err := m.Rotate(ctx, rec.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if next.UsageCount != 0 || !next.LastUsedAt.IsZero() || next.LastClientAddr.IsValid() {
		t.Errorf("rotated key starts with usage %d, last used %v from %v; want none", next.UsageCount, next.LastUsedAt, next.LastClientAddr)
	}
	old, err := m.Get(ctx, rec.ID)
	if err != nil || old.UsageCount != 5 {
		t.Errorf("old key's usage after Rotate: %d (%v), want 5 kept", old.UsageCount, err)
	}
}
