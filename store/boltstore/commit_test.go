package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

var bucketTest = []byte("test")

func openCommitter(t *testing.T, maxBatch int) (*bolt.DB, *committer) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "commit.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucketTest)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c := newCommitter(db, maxBatch)
	t.Cleanup(func() {
		c.close()
		db.Close()
	})
	return db, c
}

// holdWriter occupies the committer with a write that waits for release,
// so that the writes submitted meanwhile queue up into one batch.
func holdWriter(t *testing.T, c *committer) (release func()) {
	t.Helper()
	return hold(t, c.do)
}

// hold is holdWriter with a write submitted by submit (c.do or
// c.background).
func hold(t *testing.T, submit func(context.Context, func(*bolt.Tx) error) error) (release func()) {
	t.Helper()
	entered, released := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- submit(bg, func(*bolt.Tx) error {
			close(entered)
			<-released
			return nil
		})
	}()
	<-entered
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(released)
			if err := <-done; err != nil {
				t.Errorf("held write: %v", err)
			}
		})
	}
	t.Cleanup(release) // a test that failed before releasing must not hang in close
	return release
}

// waitQueued polls until n writes are queued.
func waitQueued(t *testing.T, c *committer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.ops) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(c.ops), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCommitterSharesTransaction(t *testing.T) {
	const n = 10
	db, c := openCommitter(t, 100)
	release := holdWriter(t, c)

	txIDs := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = c.do(bg, func(tx *bolt.Tx) error {
				txIDs[i] = tx.ID()
				return tx.Bucket(bucketTest).Put(fmt.Append(nil, i), []byte("v"))
			})
		})
	}
	waitQueued(t, c, n)
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("write %d: %v", i, errs[i])
		}
		if txIDs[i] != txIDs[0] {
			t.Fatalf("writes queued together ran in transactions %v", txIDs)
		}
	}
	var keys int
	mustView(t, db, func(tx *bolt.Tx) error { keys = tx.Bucket(bucketTest).Stats().KeyN; return nil })
	if keys != n {
		t.Fatalf("%d keys stored, want %d", keys, n)
	}
}

func TestCommitterMaxBatch(t *testing.T) {
	const n, maxBatch = 10, 3
	_, c := openCommitter(t, maxBatch)
	release := holdWriter(t, c)
	var mu sync.Mutex
	perTx := make(map[int]int)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := c.do(bg, func(tx *bolt.Tx) error {
				mu.Lock()
				perTx[tx.ID()]++
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	// The queue holds maxBatch; the rest wait to be let in.
	waitQueued(t, c, maxBatch)
	release()
	wg.Wait()
	for id, k := range perTx {
		if k > maxBatch {
			t.Errorf("transaction %d ran %d writes, max %d", id, k, maxBatch)
		}
	}
}

// TestCommitterBackground: a background write (a sweep slice) commits
// alone; writes queued behind one go before the next, and a background
// write queued behind others goes right after them, so neither starves.
func TestCommitterBackground(t *testing.T) {
	const n = 3
	for _, tt := range []struct {
		name      string
		heldBy    func(*committer) func(context.Context, func(*bolt.Tx) error) error
		bgIsFirst bool
	}{
		{"held by a background write", func(c *committer) func(context.Context, func(*bolt.Tx) error) error { return c.background }, false},
		{"held by a write", func(c *committer) func(context.Context, func(*bolt.Tx) error) error { return c.do }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, c := openCommitter(t, 100)
			release := hold(t, tt.heldBy(c))
			var mu sync.Mutex
			var order []string // "bg" or "op", one per write, in the order they ran
			txOf := map[string]map[int]bool{"bg": {}, "op": {}}
			record := func(kind string) func(*bolt.Tx) error {
				return func(tx *bolt.Tx) error {
					mu.Lock()
					defer mu.Unlock()
					order = append(order, kind)
					txOf[kind][tx.ID()] = true
					return nil
				}
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if err := c.background(bg, record("bg")); err != nil {
					t.Error(err)
				}
			})
			deadline := time.Now().Add(10 * time.Second)
			for len(c.bg)+len(c.ops) < 1 {
				if time.Now().After(deadline) {
					t.Fatal("the background write was not queued")
				}
				time.Sleep(time.Millisecond)
			}
			for range n {
				wg.Go(func() {
					if err := c.do(bg, record("op")); err != nil {
						t.Error(err)
					}
				})
			}
			waitQueued(t, c, n)
			release()
			wg.Wait()
			want := []string{"op", "op", "op", "bg"}
			if tt.bgIsFirst {
				want = []string{"bg", "op", "op", "op"}
			}
			if fmt.Sprint(order) != fmt.Sprint(want) {
				t.Errorf("writes ran in the order %v, want %v", order, want)
			}
			for id := range txOf["bg"] {
				if txOf["op"][id] {
					t.Errorf("the background write shared transaction %d with others", id)
				}
			}
			if len(txOf["op"]) != 1 {
				t.Errorf("the queued writes took %d transactions, want 1", len(txOf["op"]))
			}
		})
	}
}

func TestCommitterIsolatesFailure(t *testing.T) {
	const n = 8
	const bad = 3
	db, c := openCommitter(t, 100)
	release := holdWriter(t, c)

	errBoom := errors.New("boom")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = c.do(bg, func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucketTest).Put(fmt.Append(nil, i), []byte("v")); err != nil {
					return err
				}
				if i == bad {
					return errBoom
				}
				return nil
			})
		})
	}
	waitQueued(t, c, n)
	release()
	wg.Wait()

	for i, err := range errs {
		switch {
		case i == bad && !errors.Is(err, errBoom):
			t.Errorf("failing write got %v, want its own error", err)
		case i != bad && err != nil:
			t.Errorf("write %d got %v from a neighbour in its batch", i, err)
		}
	}
	mustView(t, db, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTest)
		for i := range n {
			if got := b.Get(fmt.Append(nil, i)) != nil; got != (i != bad) {
				t.Errorf("key %d stored: %v", i, got)
			}
		}
		return nil
	})
}

func TestCommitterClose(t *testing.T) {
	const n = 5
	db, c := openCommitter(t, 100)
	release := holdWriter(t, c)
	results := make(chan error, n)
	for i := range n {
		go func() {
			results <- c.do(bg, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketTest).Put(fmt.Append(nil, i), []byte("v"))
			})
		}()
	}
	waitQueued(t, c, n)
	closed := make(chan struct{})
	go func() {
		c.close()
		close(closed)
	}()
	release()
	<-closed
	// close returned only after the queued writes were on disk.
	var keys int
	mustView(t, db, func(tx *bolt.Tx) error { keys = tx.Bucket(bucketTest).Stats().KeyN; return nil })
	if keys != n {
		t.Errorf("%d keys stored when close returned, want %d", keys, n)
	}
	for range n {
		if err := <-results; err != nil {
			t.Errorf("queued write: %v", err)
		}
	}
	if err := c.do(bg, func(*bolt.Tx) error { return nil }); !errors.Is(err, errClosed) {
		t.Errorf("write after close = %v, want errClosed", err)
	}
	c.close() // idempotent
}

// A panic inside a write (bbolt's, on a file damaged beyond what Open can
// see) fails that write and every later one with errBroken, and Ping,
// instead of killing the process; Close does not wait on bbolt's locks.
func TestWritePanicBreaksStore(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "tempalias.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.w.do(bg, func(*bolt.Tx) error { panic("page 43 already freed") }); !errors.Is(err, errBroken) || !strings.Contains(err.Error(), "page 43") {
		t.Fatalf("write that panicked: %v, want errBroken", err)
	}
	if _, err := s.Create(bg, spec(day, 0), t0); !errors.Is(err, errBroken) {
		t.Errorf("a later Create: %v, want errBroken", err)
	}
	if err := s.Ping(bg); !errors.Is(err, errBroken) {
		t.Errorf("Ping: %v, want errBroken", err)
	}
	if err := s.Close(); !errors.Is(err, errBroken) {
		t.Errorf("Close: %v, want errBroken", err)
	}
}

// The durable writes of concurrent messages share transactions (issue 14
// item 4): reservations at RCPT, commits before the end of data and
// refunds of limited aliases queued while the writer is busy are
// committed together, in one transaction and so one fsync, each with its
// own answer.
func TestUsesShareCommits(t *testing.T) {
	const n = 20
	s, err := Open(filepath.Join(t.TempDir(), "tempalias.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ids := make([]string, n)
	held := make([]*store.Reservation, 2*n) // n to commit, n to refund
	for i := range ids {
		c, err := s.Create(bg, spec(day, 10), t0)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.Alias.ID
		for j := range 2 {
			if held[2*i+j], err = s.Reserve(bg, ids[i], t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	var before int
	mustView(t, s.db, func(tx *bolt.Tx) error { before = tx.ID(); return nil })

	var once sync.Once
	hold := holdWriter(t, s.w)
	release := func() { once.Do(hold) }
	t.Cleanup(release) // a failure below must not leave Close waiting behind it
	errs := make([]error, 3*n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			_, err := s.Reserve(bg, id, t0)
			errs[3*i] = err
		})
		wg.Go(func() { errs[3*i+1] = held[2*i].Commit(bg, t0) })
		wg.Go(func() { errs[3*i+2] = held[2*i+1].Refund(bg, t0) })
	}
	waitQueued(t, s.w, 3*n)
	release()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var after int
	mustView(t, s.db, func(tx *bolt.Tx) error { after = tx.ID(); return nil })
	if after != before+2 { // the held write's, then one for all the others
		t.Errorf("%d reservations, commits and refunds took %d transactions, want 1", 3*n, after-before-1)
	}
	for _, id := range ids {
		a, err := s.Held(bg, id, t0)
		if err != nil || a.Used != 1 || a.Pending != 1 {
			t.Errorf("alias %s: %+v, %v; want used 1, pending 1", id, a, err)
		}
	}
}

// Creations queued while the writer is busy are one transaction (issue
// 14 item 6): 100 HTTP clients waiting on the group commit share one
// fsync, each with its own alias. The per-target limit stays exact
// inside that one transaction: of the creations for a target allowed 5
// live aliases, 5 are made and the rest refused.
func TestCreationsShareCommits(t *testing.T) {
	const n, limited, maxLive = 60, 20, 5
	s, err := Open(filepath.Join(t.TempDir(), "tempalias.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var before int
	mustView(t, s.db, func(tx *bolt.Tx) error { before = tx.ID(); return nil })

	var once sync.Once
	hold := holdWriter(t, s.w)
	release := func() { once.Do(hold) }
	t.Cleanup(release)
	made := make([]store.Created, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sp := spec(day, 5)
			if i < limited {
				sp.Target, sp.MaxLive = "full@example.com", maxLive
			}
			made[i], errs[i] = s.Create(bg, sp, t0)
		})
	}
	waitQueued(t, s.w, n)
	release()
	wg.Wait()

	var after int
	mustView(t, s.db, func(tx *bolt.Tx) error { after = tx.ID(); return nil })
	if after != before+2 { // the held write's, then one for all the creations
		t.Errorf("%d creations took %d transactions, want 1", n, after-before-1)
	}
	ids := map[string]bool{}
	full, live := 0, 0
	for i, err := range errs {
		switch {
		case errors.Is(err, store.ErrTargetFull) && i < limited:
			full++
			continue
		case err != nil:
			t.Fatalf("creation %d: %v", i, err)
		}
		if i < limited {
			live++
		}
		c := made[i]
		if ids[c.Alias.ID] {
			t.Fatalf("id %s handed out twice", c.Alias.ID)
		}
		ids[c.Alias.ID] = true
		if _, err := s.Authorized(bg, c.Alias.ID, c.Token, t0); err != nil {
			t.Errorf("alias %s with its token: %v", c.Alias.ID, err)
		}
	}
	if live != maxLive || full != limited-maxLive {
		t.Errorf("target limited to %d: %d made, %d refused; want %d and %d", maxLive, live, full, maxLive, limited-maxLive)
	}
	if n, err := s.LiveForTarget(bg, "full@example.com", t0); err != nil || n != maxLive {
		t.Errorf("LiveForTarget = %d, %v; want %d", n, err, maxLive)
	}
}
