package boltstore

import (
	"github.com/tempalias/tempalias/store"
	"testing"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/cpuclock"
)

// The RCPT answer for an id without a live alias (issue 11 item 8): a
// never-issued id, an expired alias not swept yet, a used-up one (whose
// refusal is counted for its holder) and a swept one (a tombstone) should
// cost about the same, so that timing tells no more than the reply. Each
// looks its ids up in the same store of 2,000 records.
func benchmarkRefusal(b *testing.B, kind string) {
	s, _ := openStore(b, Options{})
	expired := seedAliases(b, s, 500) // spec(day, 0): dead a day after t0
	var usedUp, swept, never []string
	for range 500 {
		a, _ := mustCreate(b, s, spec(3*day, 1))
		r, err := s.Reserve(bg, a.ID, t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Commit(bg, t0); err != nil {
			b.Fatal(err)
		}
		usedUp = append(usedUp, a.ID)
	}
	for range 500 {
		a, token := mustCreate(b, s, spec(3*day, 0))
		if err := s.Revoke(bg, a.ID, token, t0); err != nil {
			b.Fatal(err)
		}
		swept = append(swept, a.ID)
	}
	if _, err := s.Sweep(bg, t0, 0); err != nil {
		b.Fatal(err)
	}
	for len(never) < 500 {
		id := alias.NewID(6)
		if _, err := s.Get(bg, id, t0); err == store.ErrNotFound {
			never = append(never, id)
		}
	}
	mustCreate(b, s, spec(3*day, 0)) // 2,000 records and tombstones in all
	ids := map[string][]string{"never-issued": never, "expired": expired, "used-up": usedUp, "swept": swept}[kind]
	now := t0.Add(day + 1) // after the expired ones' expiry, before the others'
	i := 0
	cpu := cpuclock.Now()
	for b.Loop() {
		if _, err := s.Reserve(bg, ids[i%len(ids)], now); err != store.ErrNotFound {
			b.Fatal(err)
		}
		i++
	}
	cpuclock.Report(b, cpu)
}

func BenchmarkRefusalNeverIssued(b *testing.B) { benchmarkRefusal(b, "never-issued") }
func BenchmarkRefusalExpired(b *testing.B)     { benchmarkRefusal(b, "expired") }
func BenchmarkRefusalUsedUp(b *testing.B)      { benchmarkRefusal(b, "used-up") }
func BenchmarkRefusalSwept(b *testing.B)       { benchmarkRefusal(b, "swept") }
