package keystore

import (
	"testing"
	"time"
)

// TestWallClock: the default clock stays within a second of time.Now and
// does not run backwards by more than a re-sync to a slewed wall clock
// could (well under 10 ms).
func TestWallClock(t *testing.T) {
	t.Parallel()
	var c wallClock
	prev := c.now()
	deadline := time.Now().Add(1500 * time.Millisecond) // spans a re-sync
	for time.Now().Before(deadline) {
		before := time.Now()
		got := c.now()
		after := time.Now()
		if got.Before(before.Add(-time.Second)) || got.After(after.Add(time.Second)) {
			t.Fatalf("wallClock.now() = %v, not within a second of [%v, %v]", got, before, after)
		}
		if got.Before(prev.Add(-10 * time.Millisecond)) {
			t.Fatalf("wallClock went backwards: %v after %v", got, prev)
		}
		prev = got
		time.Sleep(5 * time.Millisecond)
	}
}
