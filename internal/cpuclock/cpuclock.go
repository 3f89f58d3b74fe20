// Package cpuclock reads the CPU time this process has used, for
// benchmarks that report CPU per operation beside wall time: on a shared
// machine the wall time of a benchmark moves with the neighbours' load,
// its CPU time much less, and the CPU of every goroutine counts (the
// store's single writer, the fake smarthost, the garbage collector).
package cpuclock

import (
	"syscall"
	"testing"
	"time"
)

// Now is the user and system CPU time of the process so far.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report adds the metric cpu-µs/op to b: the CPU time since start (a
// value of Now taken where the measured loop begins) over b.N.
func Report(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(Now()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	}
}
