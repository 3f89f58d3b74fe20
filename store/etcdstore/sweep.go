package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Sweep deletes the aliases expired or revoked at now, leaving their ids,
// a transaction per alias and at most batch a round, guided by the sweep
// index ordered by time. One host sweeps at a time: the others find the
// lock taken and return at once. It writes this host's refusal counts
// first, and deletes the per-target counts of days gone by.
func (s *Store) Sweep(ctx context.Context, now time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	fctx, cancel := s.call(ctx)
	flushErr := s.flushCounts(fctx)
	cancel()
	sess, err := s.sessionFor(ctx)
	if err != nil {
		return 0, errors.Join(flushErr, err)
	}
	mu := concurrency.NewMutex(sess, s.p+"sweeper")
	lctx, cancel := s.call(ctx)
	err = mu.TryLock(lctx)
	cancel()
	if errors.Is(err, concurrency.ErrLocked) {
		return 0, flushErr // another host is sweeping
	}
	if err != nil {
		return 0, errors.Join(flushErr, fmt.Errorf("etcd: sweep: %w", unavailable(err)))
	}
	defer func() {
		uctx, cancel := s.call(context.Background())
		mu.Unlock(uctx)
		cancel()
	}()
	flushErr = errors.Join(flushErr, s.sweepDaily(ctx, now))
	total := 0
	for {
		n, more, err := s.sweepOnce(ctx, now, batch)
		total += n
		if err != nil || !more {
			return total, errors.Join(flushErr, err)
		}
	}
}

func (s *Store) sessionFor(ctx context.Context) (*concurrency.Session, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	return s.session(ctx)
}

// sweepOnce deletes up to batch aliases whose sweep entry is due at now.
func (s *Store) sweepOnce(ctx context.Context, now time.Time, batch int) (deleted int, more bool, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	pfx := s.p + "x/"
	end := s.sweepKey(now.Unix()+1, "")
	end = end[:len(end)-1] // up to and including second now.Unix()
	resp, err := s.cli.Get(ctx, pfx, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(int64(batch)))
	if err != nil {
		return 0, false, fmt.Errorf("etcd: sweep: %w", unavailable(err))
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		rest := strings.TrimPrefix(k, pfx)
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			continue
		}
		at, ok := unixKey(rest[:i])
		id := rest[i+1:]
		if !ok {
			continue
		}
		err := retry(ctx, func() error {
			snap, err := s.load(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				_, err := s.cli.Delete(ctx, k) // an entry left behind
				return unavailable(err)
			}
			if err != nil {
				return err
			}
			r := snap.r
			if a := r.alias(0); r.SweepAt != at || !a.Gone(now) {
				// Moved since (a stale entry): not this alias's due time.
				if r.SweepAt != at {
					_, err := s.cli.Delete(ctx, k)
					return unavailable(err)
				}
				return nil
			}
			ops := []clientv3.Op{
				clientv3.OpPut(s.aliasKey(id), tombstone),
				clientv3.OpDelete(k),
				clientv3.OpDelete(s.targetPrefix(r.TargetHash) + id),
			}
			if len(r.ConfirmHash) > 0 {
				ops = append(ops, clientv3.OpDelete(s.confirmKey(r.ConfirmHash)))
			}
			if err := s.swap(ctx, id, snap.modRev, ops...); err != nil {
				return err
			}
			deleted++
			return nil
		})
		if err != nil {
			return deleted, false, fmt.Errorf("etcd: sweep %s: %w", id, err)
		}
	}
	return deleted, resp.More, nil
}
