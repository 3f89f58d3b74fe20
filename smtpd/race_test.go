//go:build race

package smtpd

// raceEnabled: the race detector slows byte-at-a-time code (go-smtp's
// dataReader, textproto's dotWriter) about fifteenfold.
const raceEnabled = true
