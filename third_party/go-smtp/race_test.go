//go:build race

package smtp

// raceEnabled: the race detector is on, and sync.Pool drops what it is
// given at random.
const raceEnabled = true
