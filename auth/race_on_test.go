//go:build race

package auth

// raceEnabled reports whether the race detector is on, to scale down the
// tests it slows tenfold.
const raceEnabled = true
