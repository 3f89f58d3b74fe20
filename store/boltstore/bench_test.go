package boltstore

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/cpuclock"
)

// Every write benchmark is durable: each Create, Reserve and Commit returns
// only after its transaction was fsynced, alone (serial) or shared with
// whatever queued up meanwhile (parallel).

// mark is where a benchmark's measured loop begins: the process's CPU
// time and the bytes of pages the file's write transactions had written.
type mark struct {
	cpu     time.Duration
	written int64
}

func begin(s *Store) mark { return mark{cpuclock.Now(), pagesWritten(s)} }

func pagesWritten(s *Store) int64 {
	st := s.db.Stats()
	return st.TxStats.GetPageAlloc()
}

// reportOps adds ops/s, cpu-µs/op (see cpuclock) and written-B/op, the
// pages written per operation: what a commit's write and fsync carry.
func reportOps(b *testing.B, s *Store, m mark) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
	cpuclock.Report(b, m.cpu)
	if b.N > 0 {
		b.ReportMetric(float64(pagesWritten(s)-m.written)/float64(b.N), "written-B/op")
	}
}

func BenchmarkCreate(b *testing.B) {
	s, _ := openStore(b, Options{})
	sp := spec(day, 5)
	m := begin(s)
	for b.Loop() {
		if _, err := s.Create(bg, sp, t0); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b, s, m)
}

// BenchmarkCreateParallel runs 50 goroutines per CPU, like a crowd of HTTP
// clients: the group commit lets them share fsyncs. …NoTargetIndex is
// the service without limits.aliases_per_target (targets.go).
func BenchmarkCreateParallel(b *testing.B) { benchmarkCreateParallel(b, Options{}) }
func BenchmarkCreateParallelNoTargetIndex(b *testing.B) {
	benchmarkCreateParallel(b, Options{NoTargetIndex: true})
}

func benchmarkCreateParallel(b *testing.B, opts Options) {
	s, _ := openStore(b, opts)
	sp := spec(day, 5)
	b.SetParallelism(50)
	m := begin(s)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Create(bg, sp, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b, s, m)
}

func seedAliases(b *testing.B, s *Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	for i := range ids {
		a, _ := mustCreate(b, s, spec(day, 0))
		ids[i] = a.ID
	}
	return ids
}

func BenchmarkGet(b *testing.B) {
	s, _ := openStore(b, Options{})
	ids := seedAliases(b, s, 1000)
	i := 0
	m := begin(s)
	for b.Loop() {
		if _, err := s.Get(bg, ids[i%len(ids)], t0); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportOps(b, s, m)
}

func BenchmarkGetParallel(b *testing.B) {
	s, _ := openStore(b, Options{})
	ids := seedAliases(b, s, 1000)
	var next atomic.Uint64
	m := begin(s)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(bg, ids[next.Add(1)%uint64(len(ids))], t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b, s, m)
}

// BenchmarkReserveCommit is one delivered message: a use reserved at
// RCPT TO and committed after the smarthost's 250. For an alias without
// a max-usage the reservation writes nothing; for a limited one
// (…Limited) both are durable writes.
func BenchmarkReserveCommit(b *testing.B)        { benchmarkReserveCommit(b, 0) }
func BenchmarkReserveCommitLimited(b *testing.B) { benchmarkReserveCommit(b, 1<<30) }

func benchmarkReserveCommit(b *testing.B, maxUsage int) {
	s, _ := openStore(b, Options{})
	a, _ := mustCreate(b, s, spec(day, maxUsage))
	m := begin(s)
	for b.Loop() {
		use(b, s, a.ID, t0)
	}
	reportOps(b, s, m)
}

func BenchmarkReserveCommitParallel(b *testing.B)        { benchmarkReserveCommitParallel(b, 0) }
func BenchmarkReserveCommitLimitedParallel(b *testing.B) { benchmarkReserveCommitParallel(b, 1<<30) }

func benchmarkReserveCommitParallel(b *testing.B, maxUsage int) {
	s, _ := openStore(b, Options{})
	ids := make([]string, 100)
	for i := range ids {
		a, _ := mustCreate(b, s, spec(day, maxUsage))
		ids[i] = a.ID
	}
	var next atomic.Uint64
	b.SetParallelism(50)
	m := begin(s)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%uint64(len(ids))]
			r, err := s.Reserve(bg, id, t0)
			if err != nil {
				b.Error(err)
				return
			}
			if err := r.Commit(bg, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b, s, m)
}

// BenchmarkRecordDecode and BenchmarkRecordEncode are the record's
// encoding alone: one of each per reservation and commit.
func BenchmarkRecordDecode(b *testing.B) {
	r := benchRecord()
	v := r.encode()
	cpu := cpuclock.Now()
	for b.Loop() {
		if _, err := decode([]byte(r.ID), v); err != nil {
			b.Fatal(err)
		}
	}
	cpuclock.Report(b, cpu)
}

func BenchmarkRecordEncode(b *testing.B) {
	r := benchRecord()
	cpu := cpuclock.Now()
	for b.Loop() {
		r.encode()
	}
	cpuclock.Report(b, cpu)
}

func benchRecord() *record {
	return &record{Alias: alias.Alias{
		ID: "k3x9q2vd", Target: "someone@example.com", Created: t0, Expires: t0.Add(3 * day),
		MaxUsage: 5, Used: 2, Pending: 1, TokenHash: make([]byte, 32), AllowFrom: []string{"example.org"},
	}, SweepAt: t0.Add(3 * day).Unix(), TargetHash: make([]byte, 16)}
}
