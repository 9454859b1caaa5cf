package stallproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestProxy: bytes go through, are held while stalled, and arrive once
// forwarding resumes.
func TestProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			c.Write([]byte(line))
		}
	}()
	p := New(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	echo := func(msg string, wait time.Duration) (string, error) {
		c.Write([]byte(msg + "\n"))
		c.SetReadDeadline(time.Now().Add(wait))
		return r.ReadString('\n')
	}
	if got, err := echo("one", 2*time.Second); err != nil || got != "one\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	p.SetStalled(true)
	if got, err := echo("two", 100*time.Millisecond); err == nil {
		t.Fatalf("stalled, yet %q arrived", got)
	}
	p.SetStalled(false)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after resuming: %q, %v", got, err)
	}
	p.Close()
	p.Close()
}
