package auth

import (
	"hash/maphash"
	"slices"
	"sync/atomic"
)

// principalSlots is how many Principals a Guard shares between requests:
// 8 KiB of pointers, and the Principals they keep (about 200 bytes each,
// besides strings and scopes, which they share with what the Authenticator
// returned).
const principalSlots = 1024

// principalTable shares Principals between the requests of one caller.
// The middleware puts a pointer to a Principal in each request's context;
// without the table each request would get a copy of its own (about 200
// bytes, allocated and copied on every request). With it, a request whose
// Principal equals, field for field, the one in its slot gets a pointer to
// that one, which nobody modifies; any other gets a new copy, which takes
// the slot. The Principal a request sees is therefore always equal to the
// one its Authenticator returned; two requests of one caller may just see
// the same one.
//
// Slots are chosen by key ID, token ID and subject, so the requests of one
// API key, or of one access token, find their Principal again. Callers
// that share a slot only cost each other the copy. The zero table is not
// usable: see newPrincipalTable. It is safe for concurrent use.
type principalTable struct {
	seed  maphash.Seed
	slots [principalSlots]atomic.Pointer[Principal]
}

func newPrincipalTable() *principalTable {
	return &principalTable{seed: maphash.MakeSeed()}
}

// shared returns a pointer to a Principal equal to *p that is never
// modified. It reads p and does not keep it.
func (t *principalTable) shared(p *Principal) *Principal {
	s := &t.slots[t.slot(p)]
	if q := s.Load(); q != nil && samePrincipal(q, p) {
		return q
	}
	q := new(Principal)
	*q = *p
	s.Store(q)
	return q
}

func (t *principalTable) slot(p *Principal) uint64 {
	h := maphash.String(t.seed, p.KeyID)
	if p.TokenID != "" {
		h = h*0x9e3779b97f4a7c15 ^ maphash.String(t.seed, p.TokenID)
	}
	if p.KeyID == "" {
		h = h*0x9e3779b97f4a7c15 ^ maphash.String(t.seed, p.Subject)
	}
	return h % principalSlots
}

// samePrincipal reports whether a and b are equal in every field, so that
// one may stand for the other. Times are compared with ==, not Equal: the
// shared Principal must not differ from the returned one even in its
// location. TestSamePrincipalFields checks that every field is compared.
func samePrincipal(a, b *Principal) bool {
	return a.Method == b.Method &&
		a.KeyID == b.KeyID &&
		a.Subject == b.Subject &&
		a.Project == b.Project &&
		sameStrings(a.Scopes, b.Scopes) &&
		a.ExpiresAt == b.ExpiresAt &&
		a.TokenID == b.TokenID &&
		a.Session == b.Session &&
		a.Hint == b.Hint &&
		sameLimit(a.RateLimit, b.RateLimit)
}

// sameLimit is a == b, field by field: inlined, unlike the compiler's
// comparison of the struct. TestSamePrincipalFields checks every field.
func sameLimit(a, b Limit) bool {
	return a.Requests == b.Requests && a.Period == b.Period && a.Burst == b.Burst && a.Name == b.Name
}

// sameStrings reports whether a and b hold the same strings; scopes that
// share their array, as a store's record and the Principals made from it
// do, compare at once. A nil and an empty slice differ, so that the shared
// Principal is the returned one exactly.
func sameStrings(a, b []string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.Equal(a, b)
}
