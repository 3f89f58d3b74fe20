package boltstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// committer is a group commit in front of bbolt's single writer.
//
// bbolt's own DB.Batch waits up to MaxBatchDelay before it commits, which
// adds that delay to every lone write and caps throughput at
// MaxBatchSize/MaxBatchDelay when callers wait for their answer (as HTTP
// clients and SMTP sessions do). Here a write waits only for the commit in
// progress: whatever queued up meanwhile goes into the next transaction, so
// a single caller pays one fsync and a crowd shares one.
//
// Background writes (the sweep's slices) are committed alone and after
// the writes queued meanwhile: a reservation or a creation never shares
// a transaction with a sweep slice (whose deletions and pages it would
// wait for) and never waits for more than the slice in progress. Each
// background write still gets every other commit under a steady stream
// of others, so the sweep cannot starve.
type committer struct {
	db       *bolt.DB
	maxBatch int
	ops      chan *op
	bg       chan *op // background writes: see above
	done     chan struct{}
	stop     sync.Once
	mu       sync.RWMutex // held for reading while sending on ops
	closed   bool
	broken   atomic.Bool // a write panicked: see errBroken
}

type op struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// errClosed is returned for writes submitted after Close.
var errClosed = errors.New("store closed")

func newCommitter(db *bolt.DB, maxBatch int) *committer {
	c := &committer{
		db:       db,
		maxBatch: maxBatch,
		ops:      make(chan *op, maxBatch),
		bg:       make(chan *op, 1),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// write runs fn in a write transaction, possibly shared with other
// callers' functions, and returns fn's result once that transaction is on
// disk. fn may run more than once (see run): only its last run's result
// counts, and it is returned with a refusal too. fn reports a refusal (store.ErrNotFound, say) as refuse(err),
// having written nothing, which leaves the others' writes in the
// transaction; any other error rolls back the whole shared transaction.
// ctx is checked before the write is queued: once queued it runs, and
// write waits for it, so that no caller gives up on a write that later
// takes effect (a reservation nobody holds).
func write[T any](ctx context.Context, c *committer, fn func(tx *bolt.Tx) (T, error)) (T, error) {
	var v T
	var refused error
	err := c.do(ctx, func(tx *bolt.Tx) error {
		var err error
		v, err = fn(tx)
		refused = nil
		if r, ok := err.(refusal); ok {
			refused, err = r.err, nil
		}
		return err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, refused
}

// refusal is an answer of a write function, not a failure of the
// transaction: see write.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

func refuse(err error) error { return refusal{err} }

// do is write for functions without a result or refusal of their own.
func (c *committer) do(ctx context.Context, fn func(*bolt.Tx) error) error {
	return c.submit(ctx, c.ops, fn)
}

// background is do for a background write (see committer): fn runs in a
// transaction of its own, once.
func (c *committer) background(ctx context.Context, fn func(*bolt.Tx) error) error {
	return c.submit(ctx, c.bg, fn)
}

func (c *committer) submit(ctx context.Context, ch chan *op, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{fn: fn, err: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errClosed
	}
	ch <- o
	c.mu.RUnlock()
	return <-o.err
}

func (c *committer) run() {
	defer close(c.done)
	batch := make([]*op, 0, c.maxBatch)
	ops, bg := c.ops, c.bg // nil once closed and drained
	bgTurn := false        // the last commit was of others: a waiting background write goes next
	for ops != nil || bg != nil {
		var o *op
		fromBG, ok := false, true
		select {
		case o, ok = <-bgIf(bg, bgTurn):
			fromBG = true
		default:
			select {
			case o, ok = <-ops:
			default:
				select {
				case o, ok = <-ops:
				case o, ok = <-bg:
					fromBG = true
				}
			}
		}
		switch {
		case !ok && fromBG:
			bg = nil
			continue
		case !ok:
			ops = nil
			continue
		case fromBG:
			c.commit([]*op{o})
			bgTurn = false
			continue
		}
		batch = append(batch[:0], o)
	fill:
		for len(batch) < c.maxBatch {
			select {
			case o, ok := <-ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		c.commit(batch)
		bgTurn = true
	}
}

// bgIf is bg on a background write's turn, else nil (never ready).
func bgIf(bg chan *op, turn bool) chan *op {
	if turn {
		return bg
	}
	return nil
}

func (c *committer) commit(batch []*op) {
	err := c.update(func(tx *bolt.Tx) error {
		for _, o := range batch {
			if err := o.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, o := range batch {
			o.err <- err
		}
		return
	}
	// One function failed and took the others down with it: run each on
	// its own so that only the failing one sees its error.
	for _, o := range batch {
		o.err <- c.update(o.fn)
	}
}

// errBroken is every write's answer once bbolt panicked in one: a file
// damaged in a way the check at Open cannot see (bbolt keeps no page
// checksums; a page id pointing at an older copy of a page is well
// formed). bbolt's writer lock may still be held, so no write is tried
// again; the process stays up, mail gets a 4xx and /healthz fails.
var errBroken = errors.New("the data file is damaged (bbolt failed in a write); restore it from a backup")

// update is db.Update, with a panic inside it (in this goroutine: the
// commit, or the rollback that rebuilds the free list) turned into
// errBroken for this write and every later one.
func (c *committer) update(fn func(*bolt.Tx) error) (err error) {
	if c.broken.Load() {
		return errBroken
	}
	defer func() {
		if r := recover(); r != nil {
			c.broken.Store(true)
			err = fmt.Errorf("%w: %v", errBroken, r)
		}
	}()
	return c.db.Update(fn)
}

// close stops accepting writes, finishes the queued ones and waits.
func (c *committer) close() {
	c.stop.Do(func() {
		c.mu.Lock()
		c.closed = true
		close(c.ops)
		close(c.bg)
		c.mu.Unlock()
		<-c.done
	})
}
