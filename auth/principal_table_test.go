package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testalloc"
)

// TestSamePrincipalFields: samePrincipal tells apart two Principals that
// differ in any one field, so that a Principal added a field later cannot
// be shared with a caller it does not describe.
func TestSamePrincipalFields(t *testing.T) {
	t.Parallel()
	base := Principal{Method: MethodAPIKey, KeyID: "key_1", Project: "p", Scopes: []string{"a"}, Hint: "halfred_…abcd"}
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		other := base
		o := reflect.ValueOf(&other).Elem().Field(i)
		switch o.Interface().(type) {
		case Method, string:
			o.SetString(o.String() + "x")
		case []string:
			o.Set(reflect.ValueOf([]string{"a", "b"}))
		case time.Time:
			o.Set(reflect.ValueOf(time.Unix(1, 0)))
		case Limit:
			o.Set(reflect.ValueOf(PerMinute("x", 1)))
		default:
			t.Fatalf("field %s of type %s: teach this test how to change it", f.Name, f.Type)
		}
		if samePrincipal(&base, &other) || samePrincipal(&other, &base) {
			t.Errorf("Principals that differ in %s are taken to be the same", f.Name)
		}
	}
	// Every field of a Limit counts too.
	lv := reflect.ValueOf(&base.RateLimit).Elem()
	for i := range lv.NumField() {
		other := base
		o := reflect.ValueOf(&other.RateLimit).Elem().Field(i)
		switch o.Kind() {
		case reflect.String:
			o.SetString(o.String() + "x")
		case reflect.Int, reflect.Int64:
			o.SetInt(o.Int() + 1)
		default:
			t.Fatalf("Limit field %s of kind %s: teach this test how to change it", lv.Type().Field(i).Name, o.Kind())
		}
		if samePrincipal(&base, &other) {
			t.Errorf("Principals whose RateLimit differs in %s are taken to be the same", lv.Type().Field(i).Name)
		}
	}
	if !samePrincipal(&base, &base) {
		t.Error("a Principal differs from itself")
	}
	copied := base
	copied.Scopes = append([]string(nil), base.Scopes...)
	if !samePrincipal(&base, &copied) {
		t.Error("equal scopes in another array are taken to differ")
	}
	// The same instant in another location, and nil against empty scopes,
	// differ: the shared Principal must be the returned one exactly.
	inUTC, local := base, base
	inUTC.ExpiresAt = time.Unix(100, 0).UTC()
	local.ExpiresAt = time.Unix(100, 0).In(time.FixedZone("X", 3600))
	if samePrincipal(&inUTC, &local) {
		t.Error("times in different locations are taken to be the same")
	}
	empty, none := base, base
	empty.Scopes, none.Scopes = []string{}, nil
	if samePrincipal(&empty, &none) {
		t.Error("empty and nil scopes are taken to be the same")
	}
}

// TestPrincipalTable: the table returns its shared Principal while the
// caller's stays the same, a new one, equal to the caller's, as soon as it
// differs, and never one that differs from what it was given.
func TestPrincipalTable(t *testing.T) {
	table := newPrincipalTable()
	p := alice
	first := table.shared(&p)
	if first == &p || !samePrincipal(first, &p) {
		t.Fatalf("shared(%+v) = %+v", p, *first)
	}
	if again := table.shared(&p); again != first {
		t.Error("the same Principal twice got two copies")
	}
	changed := p
	changed.Scopes = []string{"models:read"} // the key's scopes changed
	second := table.shared(&changed)
	if second == first || !samePrincipal(second, &changed) {
		t.Fatalf("a changed Principal got %+v", *second)
	}
	if back := table.shared(&p); back == second || !samePrincipal(back, &p) {
		t.Errorf("the first Principal again got %+v", *back)
	}
	if !samePrincipal(first, &alice) {
		t.Error("a shared Principal was modified")
	}
	if n := testalloc.Min(100, func() { table.shared(&p) }); n != 0 {
		t.Errorf("a shared Principal found in the table allocates %v times, want 0", n)
	}
}

// TestPrincipalTableConcurrent: many callers, more than the table has
// slots, from several goroutines, always get a Principal equal to their
// own.
func TestPrincipalTableConcurrent(t *testing.T) {
	t.Parallel()
	table := newPrincipalTable()
	ps := make([]Principal, 3*principalSlots)
	for i := range ps {
		ps[i] = Principal{Method: MethodAccessToken, KeyID: fmt.Sprintf("key_%d", i%50), TokenID: fmt.Sprint(i), Scopes: []string{fmt.Sprint(i)}}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				for i := range ps {
					p := &ps[(i*7+g+round)%len(ps)]
					if q := table.shared(p); !samePrincipal(q, p) {
						t.Errorf("got %+v for %+v", *q, *p)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestMiddlewareSharesPrincipal: two requests of one caller see the same
// Principal, another caller its own, and each the one its Authenticator
// returned.
func TestMiddlewareSharesPrincipal(t *testing.T) {
	t.Parallel()
	bob := alice
	bob.KeyID = "key_bob"
	a := &fakeAuth{fn: func(_ context.Context, cred string) (Principal, error) {
		if cred == goodKey {
			return alice, nil
		}
		return bob, nil
	}}
	var seen []*Principal
	h := mustNew(t, a).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := FromContext(r.Context())
		seen = append(seen, p)
	}))
	for _, key := range []string{goodKey, goodKey, otherKey} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	if len(seen) != 3 {
		t.Fatalf("handler ran %d times, want 3", len(seen))
	}
	if seen[0] != seen[1] || !samePrincipal(seen[0], &alice) {
		t.Errorf("one caller's requests: %p %+v and %p, want one shared Principal equal to alice", seen[0], *seen[0], seen[1])
	}
	if seen[2] == seen[0] || !samePrincipal(seen[2], &bob) {
		t.Errorf("another caller got %+v", *seen[2])
	}
}
