package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/cpuclock"
	"github.com/tempalias/tempalias/internal/etcdtest"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkEngine measures the engine against one real 3-member cluster
// on this machine, the workloads of the RCPT path and of creation; run
// beside store/boltstore's benchmarks for a ratio in the same run.
// cpu-µs/op is this process's CPU (the host's side: client, encoding,
// batching), not the cluster members', which are processes of their own.
func BenchmarkEngine(b *testing.B) {
	cluster := etcdtest.Start(b)
	ctx := context.Background()
	now := time.Now()
	open := func(b *testing.B) *Store {
		s, err := Open(ctx, Options{Endpoints: cluster.Endpoints(), Prefix: newPrefix()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	perSec := func(b *testing.B, cpu time.Duration) {
		if s := b.Elapsed().Seconds(); s > 0 {
			b.ReportMetric(float64(b.N)/s, "ops/s")
		}
		cpuclock.Report(b, cpu)
	}
	spec := func(maxUsage int) alias.Spec {
		return alias.Spec{Target: "t@example.com", Expires: now.Add(24 * time.Hour), MaxUsage: maxUsage}
	}

	// Durable creations, 50 goroutines per CPU like a crowd of clients.
	b.Run("CreateParallel", func(b *testing.B) {
		s := open(b)
		b.SetParallelism(50)
		cpu := cpuclock.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Create(ctx, spec(5), now); err != nil {
					b.Error(err)
					return
				}
			}
		})
		perSec(b, cpu)
	})

	// An RCPT for an id never issued: one linearizable read.
	b.Run("RefuseUnknownParallel", func(b *testing.B) {
		s := open(b)
		b.SetParallelism(50)
		cpu := cpuclock.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Reserve(ctx, alias.NewID(8), now); !errors.Is(err, store.ErrNotFound) {
					b.Error(err)
					return
				}
			}
		})
		perSec(b, cpu)
	})

	// A relayed message to a limited alias: reserve at RCPT, commit before
	// the final dot. Many aliases, so sessions rarely contend for one.
	b.Run("RelayLimitedParallel", func(b *testing.B) {
		s := open(b)
		ids := make([]string, 2000)
		for i := range ids {
			c, err := s.Create(ctx, spec(1<<20), now)
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = c.Alias.ID
		}
		var next atomic.Uint64
		b.SetParallelism(50)
		b.ResetTimer()
		cpu := cpuclock.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := s.Reserve(ctx, ids[next.Add(1)%uint64(len(ids))], now)
				if err == nil {
					err = r.Commit(ctx, now)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
		perSec(b, cpu)
	})

	// Bytes per alias in the cluster, history compacted and the file
	// defragmented, as docs/deploy.md's sizing says.
	b.Run("Size", func(b *testing.B) {
		s := open(b)
		const n = 5000
		size := func() int64 {
			resp, err := s.cli.Get(ctx, "x")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
				b.Fatal(err)
			}
			var total int64
			for _, ep := range cluster.Endpoints() {
				if _, err := s.cli.Defragment(ctx, ep); err != nil {
					b.Fatal(err)
				}
				st, err := s.cli.Status(ctx, ep)
				if err != nil {
					b.Fatal(err)
				}
				total += st.DbSizeInUse
			}
			return total / int64(len(cluster.Endpoints()))
		}
		for b.Loop() {
			before := size()
			for i := 0; i < n; i++ {
				if _, err := s.Create(ctx, spec(5), now); err != nil {
					b.Fatal(err)
				}
			}
			live := size()
			b.ReportMetric(float64(live-before)/n, "bytes/alias")
			// Swept, each leaves its id's tombstone.
			if swept, err := s.Sweep(ctx, now.Add(48*time.Hour), 500); err != nil || swept != n {
				b.Fatalf("swept %d of %d: %v", swept, n, err)
			}
			b.ReportMetric(float64(size()-before)/n, "bytes/tombstone")
		}
	})
}

// benchRecord is a record as a busy alias's looks: a max-usage, a sender,
// an open hour window and recent commits' keys (up to recentUses).
func benchRecord(recent int) *record {
	now := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC).Unix()
	r := &record{
		ID: "k3x9q2ab", Target: "someone.somewhere@example.com", Created: now, Expires: now + 3*86400,
		MaxUsage: 100, Used: 40, TokenHash: make([]byte, 32), TargetHash: make([]byte, 16),
		AllowFrom: []string{"shop.example"}, LockSender: true, SweepAt: now + 3*86400,
		HourStart: now, HourUsed: 3,
	}
	for range recent {
		r.Recent = append(r.Recent, newKey())
	}
	return r
}

// The record alone, as a commit encodes it and every RCPT decodes it.
func BenchmarkRecordEncode(b *testing.B) {
	for _, recent := range []int{0, recentUses} {
		b.Run(fmt.Sprintf("recent=%d", recent), func(b *testing.B) {
			r := benchRecord(recent)
			cpu := cpuclock.Now()
			for b.Loop() {
				_ = r.value()
			}
			cpuclock.Report(b, cpu)
		})
	}
}

func BenchmarkRecordDecode(b *testing.B) {
	for _, recent := range []int{0, recentUses} {
		b.Run(fmt.Sprintf("recent=%d", recent), func(b *testing.B) {
			r := benchRecord(recent)
			v := []byte(r.value())
			cpu := cpuclock.Now()
			for b.Loop() {
				if _, err := decode(r.ID, v); err != nil {
					b.Fatal(err)
				}
			}
			cpuclock.Report(b, cpu)
		})
	}
}
