package boltstore

import (
	"sync/atomic"
	"testing"
)

// Every write benchmark is durable: each Create, Reserve and Commit returns
// only after its transaction was fsynced, alone (serial) or shared with
// whatever queued up meanwhile (parallel).

func reportOps(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

func BenchmarkCreate(b *testing.B) {
	s, _ := openStore(b, Options{})
	sp := spec(day, 5)
	for b.Loop() {
		if _, _, err := s.Create(sp, t0); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
}

// BenchmarkCreateParallel runs 50 goroutines per CPU, like a crowd of HTTP
// clients: the group commit lets them share fsyncs.
func BenchmarkCreateParallel(b *testing.B) {
	s, _ := openStore(b, Options{})
	sp := spec(day, 5)
	b.SetParallelism(50)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Create(sp, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b)
}

func seedAliases(b *testing.B, s *testStore, n int) []string {
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
	for b.Loop() {
		if _, err := s.Get(ids[i%len(ids)], t0); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportOps(b)
}

func BenchmarkGetParallel(b *testing.B) {
	s, _ := openStore(b, Options{})
	ids := seedAliases(b, s, 1000)
	var next atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ids[next.Add(1)%uint64(len(ids))], t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b)
}

// BenchmarkReserveCommit is one delivered message: a use reserved at
// RCPT TO and committed after the smarthost's 250.
func BenchmarkReserveCommit(b *testing.B) {
	s, _ := openStore(b, Options{})
	a, _ := mustCreate(b, s, spec(day, 0))
	for b.Loop() {
		if _, err := s.Reserve(a.ID, t0); err != nil {
			b.Fatal(err)
		}
		if err := s.Commit(a.ID, t0); err != nil {
			b.Fatal(err)
		}
	}
	reportOps(b)
}

func BenchmarkReserveCommitParallel(b *testing.B) {
	s, _ := openStore(b, Options{})
	ids := seedAliases(b, s, 100)
	var next atomic.Uint64
	b.SetParallelism(50)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)%uint64(len(ids))]
			if _, err := s.Reserve(id, t0); err != nil {
				b.Error(err)
				return
			}
			if err := s.Commit(id, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportOps(b)
}

// BenchmarkReserveDead is the most common SMTP case: mail for an alias
// that is gone, answered from a read transaction.
