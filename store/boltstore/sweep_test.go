package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	bolt "go.etcd.io/bbolt"
)

// checkSweepIndex checks the store's internal bookkeeping: every stored
// alias has exactly the sweep entry its record names, no later than a
// second after its expiry; every sweep entry belongs to a stored alias;
// every other key of the aliases bucket is a swept alias's tombstone.
func checkSweepIndex(tb testing.TB, s *Store) {
	tb.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		aliases, sweep := tx.Bucket(bucketAliases), tx.Bucket(bucketSweep)
		if err := aliases.ForEach(func(k, v []byte) error {
			if isTombstone(v) {
				return nil
			}
			r, err := decode(k, v)
			if err != nil {
				return err
			}
			if string(k) != r.ID {
				return fmt.Errorf("key %s holds alias %s", k, r.ID)
			}
			if sweep.Get(sweepKey(r.SweepAt, r.ID)) == nil {
				return fmt.Errorf("alias %s: no sweep entry at %d", k, r.SweepAt)
			}
			if !time.Unix(r.SweepAt, 0).Before(r.Expires.Add(time.Second)) {
				return fmt.Errorf("alias %s: swept at %d, after its expiry %v", k, r.SweepAt, r.Expires)
			}
			return nil
		}); err != nil {
			return err
		}
		return sweep.ForEach(func(k, _ []byte) error {
			if len(k) < 9 {
				return fmt.Errorf("short sweep key %x", k)
			}
			at, id := int64(binary.BigEndian.Uint64(k)), k[8:]
			v := aliases.Get(id)
			if v == nil || isTombstone(v) {
				return fmt.Errorf("sweep entry %d/%s without an alias", at, id)
			}
			r, err := decode(id, v)
			if err != nil {
				return err
			}
			if r.SweepAt != at {
				return fmt.Errorf("stale sweep entry %d/%s; the alias is filed at %d", at, id, r.SweepAt)
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatalf("sweep index: %v", err)
	}
}

// checkGone checks that a swept alias left nothing behind but its id.
func checkGone(tb testing.TB, s *Store, id string) {
	tb.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketAliases).Get([]byte(id)); v == nil {
			return errors.New("id reservation gone")
		} else if !isTombstone(v) {
			return errors.New("alias record still stored")
		}
		return tx.Bucket(bucketSweep).ForEach(func(k, _ []byte) error {
			if bytes.Equal(k[8:], []byte(id)) {
				return errors.New("sweep entry still stored")
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatalf("swept alias %s: %v", id, err)
	}
}

func TestSweep(t *testing.T) {
	s, _ := openStore(t, Options{})

	live, liveToken := mustCreate(t, s, spec(3*day, 5))
	if _, err := s.Reserve(bg, live.ID, t0); err != nil {
		t.Fatal(err)
	}
	unlimited, _ := mustCreate(t, s, spec(3*day, 0))
	expired, _ := mustCreate(t, s, spec(time.Hour, 0))
	expiredPending, _ := mustCreate(t, s, spec(time.Hour, 2))
	if _, err := s.Reserve(bg, expiredPending.ID, t0); err != nil {
		t.Fatal(err)
	}
	usedUp, _ := mustCreate(t, s, spec(3*day, 1))
	useAt(t, s, usedUp.ID, t0, t0.Add(10*time.Minute))
	revoked, token := mustCreate(t, s, spec(3*day, 0))
	if err := s.Revoke(bg, revoked.ID, token, t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkSweepIndex(t, s)

	// Nothing is due yet at t0: the revoked alias is filed at the moment
	// it was revoked, the used-up one at its expiry.
	if n, err := s.Sweep(bg, t0, 0); err != nil || n != 0 {
		t.Fatalf("Sweep(t0) = %d, %v; want 0", n, err)
	}
	if st := mustStats(t, s); st.Aliases != 6 {
		t.Fatalf("Stats after an early sweep = %+v", st)
	}

	now := t0.Add(2 * time.Hour)
	if n, err := s.Sweep(bg, now, 0); err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3", n, err)
	}
	if st := mustStats(t, s); st.Aliases != 3 || st.Issued != 6 {
		t.Fatalf("Stats after the sweep = %+v, want 3 aliases, 6 issued", st)
	}
	for _, id := range []string{expired.ID, expiredPending.ID, revoked.ID} {
		checkGone(t, s, id)
	}
	got, err := s.Authorized(bg, live.ID, liveToken, now)
	if err != nil {
		t.Fatalf("live alias after sweep: %v", err)
	}
	if got.Pending != 1 {
		t.Errorf("live alias lost its reservation: %+v", got)
	}
	mustGet(t, s, unlimited.ID, now)
	checkSweepIndex(t, s)

	if n, err := s.Sweep(bg, now, 0); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want 0", n, err)
	}
	if n, err := s.Sweep(bg, t0.Add(3*day), 0); err != nil || n != 3 {
		t.Errorf("Sweep at expiry of the rest = %d, %v; want 3", n, err)
	}
	checkGone(t, s, usedUp.ID)
	if st := mustStats(t, s); st.Aliases != 0 || st.Issued != 6 {
		t.Errorf("Stats at the end = %+v", st)
	}
	checkSweepIndex(t, s)
}

func TestSweepEmpty(t *testing.T) {
	s, _ := openStore(t, Options{})
	if n, err := s.Sweep(bg, t0, 1); err != nil || n != 0 {
		t.Fatalf("Sweep of an empty store = %d, %v", n, err)
	}
}

func TestSweepBatches(t *testing.T) {
	tests := []struct {
		batch, txs int
	}{
		{1, 10},
		{3, 4},
		{5, 2},
		{10, 1},
		{0, 1}, // default 500
		{-1, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("batch ", tt.batch), func(t *testing.T) {
			s, _ := openStore(t, Options{})
			var dead []string
			for i := range 10 {
				a, _ := mustCreate(t, s, spec(time.Duration(i+1)*time.Minute, 0))
				dead = append(dead, a.ID)
			}
			for range 5 {
				mustCreate(t, s, spec(day, 0))
			}
			before := lastTx(t, s)
			n, err := s.Sweep(bg, t0.Add(time.Hour), tt.batch)
			if err != nil || n != 10 {
				t.Fatalf("Sweep = %d, %v; want 10", n, err)
			}
			if txs := lastTx(t, s) - before; txs != tt.txs {
				t.Errorf("Sweep used %d write transactions, want %d", txs, tt.txs)
			}
			if st := mustStats(t, s); st.Aliases != 5 {
				t.Errorf("%d aliases left, want 5", st.Aliases)
			}
			for _, id := range dead {
				checkGone(t, s, id)
			}
			checkSweepIndex(t, s)
		})
	}
}

// TestSweepManyPages sweeps a sweep index spread over many bbolt pages in
// one transaction, where deleting under a cursor is easiest to get wrong.
func TestSweepManyPages(t *testing.T) {
	const dead, live = 3000, 300
	s, _ := openStore(t, Options{})
	var wg sync.WaitGroup
	for i := range dead + live {
		wg.Go(func() {
			d := time.Duration(i%97+1) * time.Minute // interleaved keys
			if i >= dead {
				d = day + time.Duration(i)*time.Second
			}
			if _, err := s.Create(bg, spec(d, 0), t0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var pages int
	if err := s.db.View(func(tx *bolt.Tx) error {
		pages = tx.Bucket(bucketSweep).Stats().LeafPageN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if pages < 10 {
		t.Fatalf("sweep index on %d leaf pages; the test wants many", pages)
	}
	n, err := s.Sweep(bg, t0.Add(2*time.Hour), dead+live)
	if err != nil || n != dead {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, dead)
	}
	if st := mustStats(t, s); st.Aliases != live {
		t.Fatalf("%d aliases left, want %d", st.Aliases, live)
	}
	checkSweepIndex(t, s)
}

// TestSweepSubSecondExpiry covers an alias whose expiry is not on a whole
// second, so that its sweep entry (whole seconds) comes due before it dies.
// Sweep used to refile it under the same key and loop forever.
func TestSweepSubSecondExpiry(t *testing.T) {
	s, _ := openStore(t, Options{})
	expires := t0.Add(1500 * time.Millisecond)
	var ids []string
	for range 3 {
		c, err := s.Create(bg, alias.Spec{Target: "t@example.com", Expires: expires}, t0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Alias.ID)
	}
	sweep := func(now time.Time, batch int) int {
		t.Helper()
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		go func() {
			n, err := s.Sweep(bg, now, batch)
			done <- result{n, err}
		}()
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("Sweep: %v", r.err)
			}
			return r.n
		case <-time.After(10 * time.Second):
			// The store cannot be closed under a looping sweep; stop here.
			panic("Sweep does not return")
		}
	}
	// Create truncates expiry to the second (earlier, never later), which
	// is what the sweep index counts in.
	for _, batch := range []int{1, 2, 500} {
		if n := sweep(t0.Add(900*time.Millisecond), batch); n != 0 {
			t.Fatalf("Sweep before expiry deleted %d", n)
		}
	}
	for _, id := range ids {
		mustGet(t, s, id, t0.Add(999*time.Millisecond))
	}
	checkSweepIndex(t, s)
	n := sweep(t0.Add(1200*time.Millisecond), 1)
	if n += sweep(t0.Add(2*time.Second), 1); n != 3 {
		t.Fatalf("Sweeps deleted %d of 3", n)
	}
	if st := mustStats(t, s); st.Aliases != 0 {
		t.Fatalf("%d aliases left a second after their expiry", st.Aliases)
	}
	checkSweepIndex(t, s)
}

// The sweeper trusts the index: an entry due at now is a dead alias. This
// drives random lives and deaths and checks that no dead one is left
// behind once due and that the index and the kept count match the
// buckets. (That no live alias is swept is the suite's
// SweepNeverTakesTheLiving.)
func TestSweepIndexUnderRandomLives(t *testing.T) {
	s, _ := openStore(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	type entry struct {
		id    string
		token string
	}
	var all []entry
	now := t0
	for round := range 40 {
		for range 10 {
			sp := alias.Spec{Target: "t@example.com", Expires: now.Add(time.Duration(rng.IntN(7200)) * time.Second), MaxUsage: rng.IntN(3)}
			c, err := s.Create(bg, sp, now)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, entry{c.Alias.ID, c.Token})
		}
		for _, e := range all {
			switch rng.IntN(6) {
			case 0:
				s.Revoke(bg, e.id, e.token, now)
			case 1, 2:
				if r, err := s.Reserve(bg, e.id, now); err == nil {
					if rng.IntN(2) == 0 {
						if err := r.Commit(bg, now); err != nil {
							t.Error(err)
						}
					} else {
						if err := r.Refund(bg, now); err != nil {
							t.Error(err)
						}
					}
				}
			}
		}
		now = now.Add(time.Duration(rng.IntN(900)) * time.Second)
		alive := map[string]bool{}
		for _, e := range all {
			if _, err := s.Get(bg, e.id, now); err == nil {
				alive[e.id] = true
			}
		}
		if _, err := s.Sweep(bg, now, 7); err != nil {
			t.Fatal(err)
		}
		// Nothing dead and due stays in the aliases bucket but its
		// tombstone; the kept count of stored aliases matches the bucket.
		records := 0
		mustView(t, s.db, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
				if isTombstone(v) {
					return nil
				}
				records++
				if !alive[string(k)] {
					r, err := decode(k, v)
					if err != nil {
						return err
					}
					if r.SweepAt <= now.Unix() {
						t.Errorf("round %d: dead alias %s left after a sweep", round, k)
					}
				}
				return nil
			})
		})
		checkSweepIndex(t, s)
		if st := mustStats(t, s); st.Aliases != records {
			t.Errorf("round %d: Stats says %d aliases, the bucket holds %d", round, st.Aliases, records)
		}
	}
}
