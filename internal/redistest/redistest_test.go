package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeTB records how a helper ended a test. Fatal and Skip stop the
// helper as the real ones do, by leaving the goroutine; [run] turns that
// into a return.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

type stopped struct{}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Fatal(args ...any)                 { f.fatal = fmt.Sprint(args...); panic(stopped{}) }
func (f *fakeTB) Skip(args ...any)                  { f.skip = fmt.Sprint(args...); panic(stopped{}) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.Skip(fmt.Sprintf(format, args...)) }

// run calls addr with a fakeTB and returns what it returned and how it
// ended the test.
func run(t *testing.T, a string, ci bool, timeout time.Duration) (got string, tb *fakeTB) {
	t.Helper()
	tb = &fakeTB{TB: t}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopped); !ok {
				panic(r)
			}
		}
	}()
	return addr(tb, a, ci, timeout), tb
}

func TestAddr(t *testing.T) {
	t.Parallel()
	redis := fakeServer(t, "+PONG\r\n")
	tests := []struct {
		name      string
		addr      func(tb testing.TB) string
		ci        bool
		wantAddr  bool
		wantSkip  string // substring; "" means no skip
		wantFatal string // substring; "" means no failure
	}{
		{"unset", func(testing.TB) string { return "" }, false, false,
			"KEYGATE_REDIS_ADDR not set: skipping Redis tests (set it to e.g. 127.0.0.1:6379)", ""},
		{"unset under CI", func(testing.TB) string { return "" }, true, false,
			"", "CI=true but KEYGATE_REDIS_ADDR is not set; CI must run the Redis tests"},
		{"answers PONG", func(testing.TB) string { return redis }, false, true, "", ""},
		{"answers PONG under CI", func(testing.TB) string { return redis }, true, true, "", ""},
		{"nothing listening", ClosedAddr, false, false, "is unreachable, skipping", ""},
		{"nothing listening under CI", ClosedAddr, true, false, "", "is unreachable"},
		{"wants a password", func(t testing.TB) string { return fakeServer(t, "-NOAUTH Authentication required.\r\n") }, false, false,
			"NOAUTH", ""},
		{"not Redis under CI", func(t testing.TB) string { return fakeServer(t, "HTTP/1.1 400 Bad Request\r\n") }, true, false,
			"", "to PING, not +PONG"},
		{"silent", SilentServer, false, false, "is unreachable, skipping", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := tc.addr(t)
			got, tb := run(t, a, tc.ci, 200*time.Millisecond)
			if tc.wantAddr != (got == a && got != "") {
				t.Errorf("returned %q for %q; want the address: %v", got, a, tc.wantAddr)
			}
			if (tc.wantSkip == "") != (tb.skip == "") || !strings.Contains(tb.skip, tc.wantSkip) {
				t.Errorf("skip message %q, want one containing %q", tb.skip, tc.wantSkip)
			}
			if (tc.wantFatal == "") != (tb.fatal == "") || !strings.Contains(tb.fatal, tc.wantFatal) {
				t.Errorf("failure %q, want one containing %q", tb.fatal, tc.wantFatal)
			}
			if a != "" && tb.skip+tb.fatal != "" && !strings.Contains(tb.skip+tb.fatal, "KEYGATE_REDIS_ADDR="+a) {
				t.Errorf("message %q does not name the variable and the address", tb.skip+tb.fatal)
			}
		})
	}
}

// TestAddrEnv checks that Addr reads EnvAddr and CI.
func TestAddrEnv(t *testing.T) {
	a := fakeServer(t, "+PONG\r\n")
	t.Setenv(EnvAddr, a)
	t.Setenv("CI", "true")
	if got := Addr(t); got != a {
		t.Fatalf("Addr() = %q, want %q from %s", got, a, EnvAddr)
	}
}

func TestFakeServers(t *testing.T) {
	t.Parallel()
	if c, err := net.DialTimeout("tcp", ClosedAddr(t), time.Second); err == nil {
		c.Close()
		t.Fatal("ClosedAddr accepted a connection")
	}

	c, err := net.DialTimeout("tcp", SilentServer(t), time.Second)
	if err != nil {
		t.Fatalf("SilentServer refused a connection: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("SilentServer answered: %d bytes, %v", n, err)
	}
}
