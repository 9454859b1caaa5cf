package redisfeed

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistest"
	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/keystore"
)

// testRecord returns a record with a digest derived from id.
func testRecord(id string) keystore.Record {
	var d keystore.Digest
	copy(d[:], id)
	d[31] = 1
	return keystore.Record{ID: id, Project: "p", Digest: d, CreatedAt: time.Now().UTC()}
}

// subscribed returns a subscription to ch whose messages arrive on the
// returned channel, closed at the end of the test.
func subscribed(t *testing.T, client *redis.Client, ch string) <-chan *redis.Message {
	t.Helper()
	ps := client.Subscribe(t.Context(), ch)
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { ps.Close() })
	return ps.Channel()
}

func nextMessage(t *testing.T, msgs <-chan *redis.Message) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m.Payload
	case <-time.After(2 * time.Second):
		t.Fatal("no message within 2 s")
		return ""
	}
}

func noMessage(t *testing.T, msgs <-chan *redis.Message) {
	t.Helper()
	select {
	case m := <-msgs:
		t.Fatalf("unexpected message %q", m.Payload)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestPublishingStoreMessages checks what each write publishes.
func TestPublishingStoreMessages(t *testing.T) {
	t.Parallel()
	client, _ := newClient(t, redistest.Addr(t))
	ch := uniqueChannel()
	msgs := subscribed(t, client, ch)
	mem := keystore.NewMemoryStore()
	s, err := NewPublishingStore(mem, client, WithChannel(ch), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if s.Channel() != ch {
		t.Fatalf("Channel() = %q, want %q", s.Channel(), ch)
	}
	ctx := t.Context()
	r := testRecord("key_pub1")
	want := `{"id":"key_pub1","digest":"` + r.Digest.String() + `"}`

	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	noMessage(t, msgs) // Create publishes nothing
	if err := s.Touch(ctx, r.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	noMessage(t, msgs) // nor does Touch

	tests := []struct {
		name  string
		write func() error
		want  string
	}{
		{"disable", func() error { _, err := s.SetDisabled(ctx, r.ID, true); return err }, want},
		{"enable", func() error { _, err := s.SetDisabled(ctx, r.ID, false); return err }, want},
		{"revoke", func() error { _, err := s.Revoke(ctx, r.ID, time.Now()); return err }, want},
		{"revoke again", func() error { _, err := s.Revoke(ctx, r.ID, time.Now()); return err }, want},
		{"replace", func() error {
			old := testRecord("key_pub2")
			if err := mem.Create(ctx, old); err != nil {
				return err
			}
			return s.Replace(ctx, old.ID, time.Now(), testRecord("key_pub3"))
		}, `{"id":"key_pub2","digest":"` + testRecord("key_pub2").Digest.String() + `"}`},
	}
	for _, tc := range tests {
		if err := tc.write(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := nextMessage(t, msgs); got != tc.want {
			t.Fatalf("%s published %s, want %s", tc.name, got, tc.want)
		}
	}

	failing := []struct {
		name  string
		write func() error
		want  error
	}{
		{"revoke unknown", func() error { _, err := s.Revoke(ctx, "key_none", time.Now()); return err }, keystore.ErrNotFound},
		{"disable unknown", func() error { _, err := s.SetDisabled(ctx, "key_none", true); return err }, keystore.ErrNotFound},
		{"replace unknown", func() error { return s.Replace(ctx, "key_none", time.Now(), testRecord("key_pub4")) }, keystore.ErrNotFound},
		{"replace revoked", func() error { return s.Replace(ctx, r.ID, time.Now(), testRecord("key_pub5")) }, keystore.ErrAlreadyRevoked},
		{"create existing", func() error { return s.Create(ctx, r) }, keystore.ErrExists},
	}
	for _, tc := range failing {
		if err := tc.write(); !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
		noMessage(t, msgs)
	}
}

// TestPublishAfterCancel: a write whose context is cancelled once the
// store has made it still publishes.
func TestPublishAfterCancel(t *testing.T) {
	t.Parallel()
	client, _ := newClient(t, redistest.Addr(t))
	ch := uniqueChannel()
	msgs := subscribed(t, client, ch)
	mem := keystore.NewMemoryStore()
	ctx, cancel := context.WithCancel(t.Context())
	r := testRecord("key_cancel")
	if err := mem.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	s, err := NewPublishingStore(cancelAfterWrite{mem, cancel}, client, WithChannel(ch))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, r.ID, time.Now()); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if got := nextMessage(t, msgs); !strings.Contains(got, r.ID) {
		t.Fatalf("published %q", got)
	}
}

// cancelAfterWrite cancels the caller's context after each Revoke.
type cancelAfterWrite struct {
	*keystore.MemoryStore
	cancel context.CancelFunc
}

func (c cancelAfterWrite) Revoke(ctx context.Context, id string, at time.Time) (keystore.Record, error) {
	r, err := c.MemoryStore.Revoke(ctx, id, at)
	c.cancel()
	return r, err
}

// TestPublishFailure: with a client that cannot publish, Revoke and
// SetDisabled are done and return ErrNotPublished; Replace is done, logs
// and returns nil.
func TestPublishFailure(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-pw"
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: pw})
	client.Close()
	mem := keystore.NewMemoryStore()
	logs := new(syncbuf.Buffer)
	s, err := NewPublishingStore(mem, client, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	r := testRecord("key_fail1")
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}

	got, err := s.Revoke(ctx, r.ID, time.Now())
	if !errors.Is(err, ErrNotPublished) || !errors.Is(err, redis.ErrClosed) {
		t.Fatalf("Revoke: %v, want ErrNotPublished wrapping redis.ErrClosed", err)
	}
	if got.ID != r.ID || got.RevokedAt.IsZero() {
		t.Fatalf("Revoke returned %+v with its error, want the revoked record", got)
	}
	if stored, _ := mem.Get(ctx, r.ID); stored.RevokedAt.IsZero() {
		t.Fatal("revocation not stored")
	}
	if !strings.Contains(err.Error(), "write done, but other instances were not told") {
		t.Fatalf("error %q does not say what happened", err)
	}

	got, err = s.SetDisabled(ctx, r.ID, true)
	if !errors.Is(err, ErrNotPublished) || !got.Disabled {
		t.Fatalf("SetDisabled: %+v, %v; want the disabled record and ErrNotPublished", got, err)
	}

	old := testRecord("key_fail2")
	if err := mem.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, old.ID, time.Now(), testRecord("key_fail3")); err != nil {
		t.Fatalf("Replace: %v, want nil (the new key must reach the caller)", err)
	}
	if _, err := mem.Get(ctx, "key_fail3"); err != nil {
		t.Fatalf("new key not stored: %v", err)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "key_fail2") {
		t.Fatalf("Replace's publish failure not logged: %q", out)
	}

	for _, out := range []string{err.Error(), logs.String()} {
		if strings.Contains(out, pw) {
			t.Fatalf("password in %q", out)
		}
	}
}

// TestPublishingStoreOptional: without Toucher, Disabler and UsageWriter
// in the wrapped store, Touch, SetDisabled and RecordUsage fail with
// ErrUnsupported; with them, they reach the store.
func TestPublishingStoreOptional(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	mem := keystore.NewMemoryStore()
	r := testRecord("key_opt1")
	if err := mem.Create(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		store       keystore.Store
		unsupported bool
	}{
		{"full store", mem, false},
		{"plain store", plainStore{mem}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewPublishingStore(tc.store, client)
			if err != nil {
				t.Fatal(err)
			}
			errTouch := s.Touch(t.Context(), r.ID, time.Now())
			_, errDisable := s.SetDisabled(t.Context(), "key_none", true)
			errUsage := s.RecordUsage(t.Context(), []keystore.Usage{{KeyID: r.ID, Requests: 3, LastUsedAt: time.Now()}})
			for name, err := range map[string]error{"Touch": errTouch, "SetDisabled": errDisable, "RecordUsage": errUsage} {
				if got := errors.Is(err, errors.ErrUnsupported); got != tc.unsupported {
					t.Errorf("%s: %v; ErrUnsupported %v, want %v", name, err, got, tc.unsupported)
				}
			}
			got, err := mem.Get(t.Context(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(3); !tc.unsupported && got.UsageCount != want {
				t.Errorf("UsageCount = %d after RecordUsage through the PublishingStore, want %d", got.UsageCount, want)
			}
		})
	}
}

func TestNewPublishingStoreErrors(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	mem := keystore.NewMemoryStore()
	tests := []struct {
		name   string
		store  keystore.Store
		client redis.UniversalClient
		opts   []Option
	}{
		{"nil store", nil, client, nil},
		{"nil client", mem, nil, nil},
		{"empty channel", mem, client, []Option{WithChannel("")}},
		{"long channel", mem, client, []Option{WithChannel(strings.Repeat("c", 257))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := NewPublishingStore(tc.store, tc.client, tc.opts...); err == nil {
				t.Fatalf("NewPublishingStore succeeded: %v", s)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	const pw = "hunter2hunter2"
	tests := []struct {
		name   string
		client redis.UniversalClient
	}{
		{"client", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Password: pw})},
		{"cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, Password: pw})},
		{"ring", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}, Password: pw})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.client.Close()
			r := newRedactor(tc.client)
			base := errors.New("auth " + pw + " failed")
			err := r.redact(base)
			if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "auth xxxxx failed") {
				t.Fatalf("redact: %q", err)
			}
			if !errors.Is(err, base) {
				t.Fatal("redacted error does not match the original")
			}
			if errors.Unwrap(err) != nil {
				t.Fatal("redacted error unwraps to the original")
			}
			plain := errors.New("connection refused")
			if r.redact(plain) != plain || r.redact(nil) != nil {
				t.Fatal("redact changed an error without the password")
			}
		})
	}
}
