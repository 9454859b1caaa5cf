// Package redistest gives a test the address of the Redis server that the
// environment variable KEYGATE_REDIS_ADDR names, for the Redis-backed
// modules' tests (auth/redislimit, keystore/redisfeed), and addresses
// that stand in for a Redis that is down ([ClosedAddr]) or hangs
// ([SilentServer]). It depends on no Redis client: each test makes its own
// from the address.
//
// Without the variable (a laptop with no Redis) the test is skipped with a
// message saying how to run it; under CI=true it fails instead, so that CI
// can never pass by skipping. It is internal to keygate and mirrors
// keystore/sqlstore/pgtest.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvAddr is the environment variable that names the test server, such as
// 127.0.0.1:6379.
const EnvAddr = "KEYGATE_REDIS_ADDR"

// timeout bounds the check that the server answers.
const timeout = 5 * time.Second

// Addr returns the address in EnvAddr once a server there has answered a
// PING within 5 s. It skips tb when EnvAddr is unset or the server is
// unreachable, unless CI=true: then it fails tb. It is safe to call from
// parallel tests; each call checks the server again.
func Addr(tb testing.TB) string {
	tb.Helper()
	return addr(tb, os.Getenv(EnvAddr), os.Getenv("CI") == "true", timeout)
}

func addr(tb testing.TB, addr string, ci bool, timeout time.Duration) string {
	tb.Helper()
	if addr == "" {
		if ci {
			tb.Fatal("CI=true but " + EnvAddr + " is not set; CI must run the Redis tests")
		}
		tb.Skip(EnvAddr + " not set: skipping Redis tests (set it to e.g. 127.0.0.1:6379)")
	}
	if err := ping(addr, timeout); err != nil {
		if ci {
			tb.Fatalf("Redis at %s=%s is unreachable: %v", EnvAddr, addr, err)
		}
		tb.Skipf("Redis at %s=%s is unreachable, skipping: %v", EnvAddr, addr, err)
	}
	return addr
}

// ping connects to addr and sends a Redis PING, without authentication,
// and reports an error unless the server answers PONG within timeout.
func ping(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(conn, 256).ReadSlice('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("no answer to PING: %w", err)
	}
	if got := strings.TrimRight(string(line), "\r\n"); got != "+PONG" {
		return fmt.Errorf("answered %.80q to PING, not +PONG", got)
	}
	return nil
}

// ClosedAddr returns a loopback address nothing listens on, for tests of
// a Redis that is down: connecting to it is refused at once.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// SilentServer returns the address of a server that accepts connections
// and reads from them but never answers, like a Redis that hangs. It
// stops, closing every connection, when tb ends.
func SilentServer(tb testing.TB) string {
	tb.Helper()
	return fakeServer(tb, "")
}

// fakeServer returns the address of a server that answers everything it
// reads on a connection with reply (nothing if reply is empty), until the
// client closes it. It stops, closing every connection, when tb ends.
func fakeServer(tb testing.TB, reply string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if reply != "" {
						if _, err := c.Write([]byte(reply)); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
