// Package testalloc measures allocations in keygate's tests without the
// noise of other goroutines.
package testalloc

import "testing"

// Min returns the smallest of five [testing.AllocsPerRun](runs, f)
// measurements. AllocsPerRun counts every allocation in the process, so a
// goroutine left running by another test (a timer, an HTTP server) can add
// to one measurement; it cannot take away, so the minimum is f's own count.
// Like AllocsPerRun, it must not be called from a parallel test.
func Min(runs int, f func()) float64 {
	best := testing.AllocsPerRun(runs, f)
	for i := 0; i < 4 && best > 0; i++ {
		best = min(best, testing.AllocsPerRun(runs, f))
	}
	return best
}
