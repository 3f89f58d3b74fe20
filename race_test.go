//go:build race

package main

// raceEnabled: this test binary runs with the race detector, so the
// binary it builds for end-to-end tests does too.
const raceEnabled = true
