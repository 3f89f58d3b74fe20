package etcdstore

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Writes that arrive together go to the cluster together: one transaction
// whose branches are the callers' own transactions, each with its own
// compares (etcd evaluates nested transactions independently). The
// cluster then does one raft proposal, one apply and one fsync round for
// the lot, instead of one per caller. Each caller still waits for its own
// answer, so nothing is acknowledged before it is durable.

// maxBatch bounds the callers in one transaction: etcd refuses more than
// --max-txn-ops (128 by default) operations at one level.
const maxBatch = 64

// batchers is how many batches may be in flight at once: one collects
// while the others wait for the cluster.
const batchers = 4

// write is one caller's conditional transaction.
type write struct {
	ctx  context.Context
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	// scope is every key the write compares or writes, a prefix standing
	// for its range. etcd evaluates every compare of a transaction, the
	// nested ones too, before it applies any operation: two writes in one
	// batch would both pass compares that the other's operations should
	// have failed (two reservations of the last use, say). So writes whose
	// scopes overlap never share a batch. (etcd also refuses one key
	// written twice in a transaction.)
	scope []string
	solo  bool // cannot share a transaction (a range written, a read)
	done  chan writeResult
}

// overlaps reports whether two scopes share a key or range.
func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if strings.HasPrefix(x, y) || strings.HasPrefix(y, x) {
				return true
			}
		}
	}
	return false
}

type writeResult struct {
	ok  bool // the compares held and ops were applied
	err error
}

// txn runs ops if cmps hold, batched with other callers' writes, and
// reports whether they held. An error wraps store.ErrUnavailable: the
// cluster did not answer in time, and the write may still take effect.
func (s *Store) txn(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) (bool, error) {
	w := newWrite(ctx, cmps, ops)
	select {
	case s.writes <- w:
	case <-ctx.Done():
		return false, unavailable(ctx.Err())
	}
	select {
	case r := <-w.done:
		return r.ok, r.err
	case <-ctx.Done():
		// The batch may still be applied: the callers' transactions are
		// written so that this is harmless.
		return false, unavailable(ctx.Err())
	}
}

func newWrite(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) *write {
	w := &write{ctx: ctx, cmps: cmps, ops: ops, done: make(chan writeResult, 1)}
	for _, c := range cmps {
		key := string(c.KeyBytes())
		if end := c.GetCompare().RangeEnd; len(end) > 0 && string(end) != clientv3.GetPrefixRangeEnd(key) {
			w.solo = true // a range that is not a prefix
		}
		w.scope = append(w.scope, key)
	}
	for _, op := range ops {
		if (!op.IsPut() && !op.IsDelete()) || len(op.RangeBytes()) > 0 {
			w.solo = true
		}
		w.scope = append(w.scope, string(op.KeyBytes()))
	}
	return w
}

// gather makes first's batch: the writes next yields while they may share
// its transaction. The first that may not is returned as carry, for the
// next batch.
func gather(first *write, next func() (*write, bool)) (group []*write, carry *write) {
	group = []*write{first}
	if first.solo {
		return group, nil
	}
	scope := append([]string(nil), first.scope...)
	for len(group) < maxBatch {
		w, ok := next()
		if !ok {
			return group, nil
		}
		if w.solo || overlaps(w.scope, scope) {
			return group, w
		}
		scope = append(scope, w.scope...)
		group = append(group, w)
	}
	return group, nil
}

// batch runs until stop is closed, sending whatever writes queued up as
// one transaction at a time.
func (s *Store) batch(stop <-chan struct{}) {
	queued := func() (*write, bool) {
		select {
		case w := <-s.writes:
			return w, true
		default:
			return nil, false
		}
	}
	var carry *write // the write that did not fit the last batch
	for {
		first := carry
		if first == nil {
			select {
			case first = <-s.writes:
			case <-stop:
				return
			}
		}
		var group []*write
		group, carry = gather(first, queued)
		s.send(group)
	}
}

// send commits group as one transaction (or, alone, as its own).
func (s *Store) send(group []*write) {
	live := group[:0]
	for _, w := range group {
		if err := w.ctx.Err(); err != nil {
			w.done <- writeResult{err: unavailable(err)} // its caller has given up
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	if len(live) == 1 {
		w := live[0]
		resp, err := s.cli.Txn(ctx).If(w.cmps...).Then(w.ops...).Commit()
		if err != nil {
			w.done <- writeResult{err: unavailable(err)}
			return
		}
		w.done <- writeResult{ok: resp.Succeeded}
		return
	}
	branches := make([]clientv3.Op, len(live))
	for i, w := range live {
		branches[i] = clientv3.OpTxn(w.cmps, w.ops, nil)
	}
	resp, err := s.cli.Txn(ctx).Then(branches...).Commit()
	if err != nil {
		for _, w := range live {
			w.done <- writeResult{err: unavailable(err)}
		}
		return
	}
	if len(resp.Responses) != len(live) {
		err := fmt.Errorf("etcd: batch of %d answered with %d results", len(live), len(resp.Responses))
		for _, w := range live {
			w.done <- writeResult{err: err}
		}
		return
	}
	for i, w := range live {
		w.done <- writeResult{ok: resp.Responses[i].GetResponseTxn().GetSucceeded()}
	}
}

// Reads are batched the same way: the loads of many RCPTs at once go to
// the cluster as one read-only transaction, one linearizable read (one
// read index, one round of heartbeats) for all of them. Reads need no
// care about overlaps: nothing is written.

// maxReads bounds the loads in one transaction (two operations each, and
// one for the format marker).
const maxReads = 60

type read struct {
	ctx  context.Context
	id   string
	done chan readResult
}

type readResult struct {
	snap snapshot
	err  error
}

// readBatch runs until stop is closed, sending queued loads together.
func (s *Store) readBatch(stop <-chan struct{}) {
	for {
		var first *read
		select {
		case first = <-s.reads:
		case <-stop:
			return
		}
		group := []*read{first}
	fill:
		for len(group) < maxReads {
			select {
			case r := <-s.reads:
				group = append(group, r)
			default:
				break fill
			}
		}
		s.sendReads(group)
	}
}

func (s *Store) sendReads(group []*read) {
	live := group[:0]
	var ops []clientv3.Op
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- readResult{err: unavailable(err)}
			continue
		}
		live = append(live, r)
		ops = append(ops, s.loadOps(r.id)...)
	}
	if len(live) == 0 {
		return
	}
	// The cluster's record format too, so that a host writes the format
	// raised meanwhile from its next read on (format.go).
	ops = append(ops, clientv3.OpGet(s.formatKey()))
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err == nil && len(resp.Responses) != 2*len(live)+1 {
		err = fmt.Errorf("etcd: %d reads answered with %d results", 2*len(live)+1, len(resp.Responses))
	}
	if err == nil {
		s.noteFormat(resp.Responses[2*len(live)].GetResponseRange().Kvs)
	}
	for i, r := range live {
		if err != nil {
			r.done <- readResult{err: unavailable(err)}
			continue
		}
		snap, lerr := loaded(r.id, resp.Responses[2*i].GetResponseRange(), resp.Responses[2*i+1].GetResponseRange(), resp.Header.Revision)
		r.done <- readResult{snap: snap, err: lerr}
	}
}
