package redisfeed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keystore"
)

// newClient returns a client of addr, closed at the end of the test, with
// a client name of its own so that its connections can be found.
func newClient(tb testing.TB, addr string) (*redis.Client, string) {
	tb.Helper()
	name := "redisfeed-test-" + randomHex(6)
	c := redis.NewClient(&redis.Options{Addr: addr, ClientName: name})
	tb.Cleanup(func() { c.Close() })
	return c, name
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// uniqueChannel returns a channel no other test uses.
func uniqueChannel() string { return "keygate:test:" + randomHex(8) }

// quiet discards log output.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fastFeed are options that make a Feed notice and recover from losses
// within a test's patience.
func fastFeed(ch string) []Option {
	return []Option{
		WithChannel(ch),
		WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		WithHealthCheck(100*time.Millisecond, 500*time.Millisecond),
		WithLogger(quiet),
	}
}

// event is one call a recorder received.
type event struct {
	kind string // "invalidate", "all", "healthy", "unhealthy"
	id   string
	d    keystore.Digest
	at   time.Time
}

// recorder is an Invalidator that logs every call, in order, and forwards
// it to next if next is not nil.
type recorder struct {
	next Invalidator

	mu     sync.Mutex
	events []event
	// ids, if not nil, receives each Invalidate's ID and time.
	ids chan event
}

func (r *recorder) add(e event) {
	e.at = time.Now()
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	if e.kind == "invalidate" && r.ids != nil {
		r.ids <- e
	}
}

func (r *recorder) Invalidate(id string, d keystore.Digest) {
	if r.next != nil {
		r.next.Invalidate(id, d)
	}
	r.add(event{kind: "invalidate", id: id, d: d})
}

func (r *recorder) InvalidateAll() {
	if r.next != nil {
		r.next.InvalidateAll()
	}
	r.add(event{kind: "all"})
}

func (r *recorder) SetFeedHealthy(ok bool) {
	if r.next != nil {
		r.next.SetFeedHealthy(ok)
	}
	kind := "unhealthy"
	if ok {
		kind = "healthy"
	}
	r.add(event{kind: kind})
}

// log returns a copy of the calls so far.
func (r *recorder) log() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// kinds returns the kinds of the calls from index from on, Invalidate
// calls left out.
func (r *recorder) kinds(from int) []string {
	var out []string
	for _, e := range r.log()[from:] {
		if e.kind != "invalidate" {
			out = append(out, e.kind)
		}
	}
	return out
}

// waitKinds waits up to 5 s until the non-Invalidate calls since index
// from start with want, and returns the log's length then.
func (r *recorder) waitKinds(t testing.TB, from int, want ...string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := r.kinds(from)
		if len(got) >= len(want) {
			if strings.Join(got[:len(want)], ",") != strings.Join(want, ",") {
				t.Fatalf("calls since %d: %v, want %v first", from, got, want)
			}
			return len(r.log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls since %d: %v, want %v within 5 s", from, got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// eventually polls cond every 2 ms for up to 2 s and returns how long it
// took to hold.
func eventually(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%s: not within 2 s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var clientLine = regexp.MustCompile(`(?:^| )id=(\d+) `)

// clientIDs returns the IDs of the connections named name that are in
// Pub/Sub mode, as CLIENT LIST shows them.
func clientIDs(t testing.TB, admin *redis.Client, name string) []int64 {
	t.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var ids []int64
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") || strings.Contains(line, " sub=0 ") {
			continue
		}
		m := clientLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("no id in CLIENT LIST line %q", line)
		}
		id, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// plainStore is a keystore.Store without the optional interfaces.
type plainStore struct{ keystore.Store }
