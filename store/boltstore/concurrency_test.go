package boltstore

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrentCreate(t *testing.T) {
	const n = 10_000
	s, _ := openStore(t, Options{})
	ids := make([]string, n)
	tokens := make([]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			a, token, err := s.Create(spec(day, 0), t0)
			if err != nil {
				t.Errorf("Create %d: %v", i, err)
				return
			}
			ids[i], tokens[i] = a.ID, token
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent creations in %v", n, time.Since(began))
	if t.Failed() {
		t.FailNow()
	}

	seen := make(map[string]int, n)
	lengths := make(map[int]int)
	for i, id := range ids {
		if j, dup := seen[id]; dup {
			t.Fatalf("creations %d and %d both got id %q", j, i, id)
		}
		seen[id] = i
		lengths[len(id)]++
	}
	// Ids of length 6 until 36^6 ids would no longer keep a guess below
	// one in a million (2176 issued), then 7.
	if lengths[6] != 2176 || lengths[7] != n-2176 {
		t.Errorf("id lengths %v, want 2176 of 6 and %d of 7", lengths, n-2176)
	}
	if st := mustStats(t, s); st.Aliases != n || st.Issued != n {
		t.Errorf("Stats = %+v, want %d aliases and issued", st, n)
	}
	for i, id := range ids {
		if _, err := s.Authorized(id, tokens[i], t0); err != nil {
			t.Fatalf("Authorized(%s): %v", id, err)
		}
	}
}

// reserveRace has n goroutines call Reserve on id at once and returns
// how many succeeded and how many were refused with ErrExhausted.
func reserveRace(t *testing.T, s *testStore, id string, n int) (ok, exhausted int) {
	t.Helper()
	var okN, exN atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			_, err := s.Reserve(id, t0)
			switch {
			case err == nil:
				okN.Add(1)
			case errors.Is(err, ErrExhausted):
				exN.Add(1)
			default:
				t.Errorf("Reserve: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(okN.Load()), int(exN.Load())
}

func TestReserveRace(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(3*day, 5))

	if ok, ex := reserveRace(t, s, a.ID, 100); ok != 5 || ex != 95 {
		t.Fatalf("%d reservations succeeded and %d were exhausted, want 5 and 95", ok, ex)
	}
	got := mustGet(t, s, a.ID, t0)
	if got.Pending != 5 || got.Used != 0 {
		t.Fatalf("pending %d used %d, want 5 0", got.Pending, got.Used)
	}

	// Two transactions fail: their uses come back.
	for range 2 {
		if err := s.Refund(a.ID); err != nil {
			t.Fatal(err)
		}
	}
	got = mustGet(t, s, a.ID, t0)
	if n, _ := got.Remaining(); n != 2 {
		t.Fatalf("Remaining after 2 refunds = %d, want 2", n)
	}
	// The other three are delivered.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Commit(a.ID, t0); err != nil {
				t.Errorf("Commit: %v", err)
			}
		})
	}
	wg.Wait()
	got = mustGet(t, s, a.ID, t0)
	if got.Used != 3 || got.Pending != 0 {
		t.Fatalf("used %d pending %d, want 3 0", got.Used, got.Pending)
	}

	// The refunded two are all that is left.
	if ok, ex := reserveRace(t, s, a.ID, 100); ok != 2 || ex != 98 {
		t.Fatalf("second race: %d succeeded, %d exhausted; want 2 and 98", ok, ex)
	}
	for range 2 {
		if err := s.Commit(a.ID, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after 5 commits = %v, want ErrNotFound", err)
	}
	if _, err := s.Reserve(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Reserve after 5 commits = %v, want ErrNotFound", err)
	}
	// Used up stays for its holder until it expires, then it is swept.
	if n, err := s.Sweep(t0, 0); err != nil || n != 0 {
		t.Fatalf("Sweep before expiry = %d, %v; want 0", n, err)
	}
	if n, err := s.Sweep(a.Expires, 0); err != nil || n != 1 {
		t.Fatalf("Sweep at expiry = %d, %v; want 1", n, err)
	}
}

// TestReserveCommitRefundInterleaved has sessions reserve, deliver and
// fail concurrently until the alias is used up; it must deliver exactly
// max-usage messages and never have more uses out than it has.
func TestReserveCommitRefundInterleaved(t *testing.T) {
	const maxUsage, workers = 5, 20
	s, _ := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(3*day, maxUsage))

	var held, delivered, refunded atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		wg.Go(func() {
			for {
				_, err := s.Reserve(a.ID, t0)
				switch {
				case errors.Is(err, ErrNotFound):
					return
				case errors.Is(err, ErrExhausted):
					runtime.Gosched()
					continue
				case err != nil:
					t.Errorf("Reserve: %v", err)
					return
				}
				// Held is counted only while surely held, delivered only
				// once surely delivered: their sum can never exceed the
				// alias's uses.
				if h := held.Add(1); h+delivered.Load() > maxUsage {
					t.Errorf("%d uses held and %d delivered, max-usage %d", h, delivered.Load(), maxUsage)
				}
				deliver := rng.IntN(2) == 0
				held.Add(-1)
				if deliver {
					if err := s.Commit(a.ID, t0); err != nil {
						t.Errorf("Commit: %v", err)
						return
					}
					delivered.Add(1)
				} else {
					if err := s.Refund(a.ID); err != nil {
						t.Errorf("Refund: %v", err)
						return
					}
					refunded.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d delivered, %d refunded", delivered.Load(), refunded.Load())
	if delivered.Load() != maxUsage {
		t.Fatalf("%d messages delivered, want exactly %d", delivered.Load(), maxUsage)
	}
	if _, err := s.Get(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after all uses = %v", err)
	}
}

// TestConcurrentMixed runs every operation at once on a shared store, for
// the race detector and for the group commit's isolation: a refusal in one
// caller's function must not fail the others in its batch.
func TestConcurrentMixed(t *testing.T) {
	s, _ := openStore(t, Options{MaxBatch: 16})
	type created struct {
		id, token string
	}
	seed := make([]created, 20)
	for i := range seed {
		a, token := mustCreate(t, s, spec(time.Duration(i%3+1)*time.Hour, 2))
		seed[i] = created{a.ID, token}
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 40 {
				c := seed[(w+i)%len(seed)]
				now := t0.Add(time.Duration(i) * 5 * time.Minute)
				var err error
				switch (w + i) % 6 {
				case 0:
					_, _, err = s.Create(spec(time.Hour, 1), now)
				case 1:
					if _, err = s.Reserve(c.id, now); err == nil {
						err = s.Commit(c.id, now)
					}
				case 2:
					if _, err = s.Reserve(c.id, now); err == nil {
						err = s.Refund(c.id)
					}
				case 3:
					err = s.Revoke(c.id, c.token, now)
				case 4:
					_, err = s.Authorized(c.id, c.token, now)
				case 5:
					_, err = s.Sweep(now, 3)
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExhausted) {
					t.Errorf("worker %d op %d: %v", w, i, err)
				}
			}
		})
	}
	wg.Wait()
	// Everything is dead three hours in; one sweep clears the rest.
	if _, err := s.Sweep(t0.Add(24*time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	st := mustStats(t, s)
	if st.Aliases != 0 {
		t.Errorf("%d aliases left after the final sweep", st.Aliases)
	}
	if int(st.Issued) < len(seed) {
		t.Errorf("Issued = %d", st.Issued)
	}
	checkSweepIndex(t, s)
}
