package testalloc

import "testing"

var sink []byte

func TestMin(t *testing.T) {
	if n := Min(100, func() {}); n != 0 {
		t.Fatalf("an empty function allocates %v times", n)
	}
	if n := Min(100, func() { sink = make([]byte, 64) }); n != 1 {
		t.Fatalf("one make allocates %v times, want 1", n)
	}
}
