package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Change applies c to alias id if token is its token (see store.Engine),
// by compare-and-swap on the record and on its reservations, so that the
// uses counted against a new max-usage are those at the write, and a
// delivery racing the change cannot lose a count.
func (s *Store) Change(ctx context.Context, id, token string, c alias.Change, now time.Time) (alias.Alias, error) {
	return s.change(ctx, id, c, now, func(a *alias.Alias) bool { return a.TokenMatches(token) })
}

// ChangeID applies c to alias id without its token: for the operator.
func (s *Store) ChangeID(ctx context.Context, id string, c alias.Change, now time.Time) (alias.Alias, error) {
	return s.change(ctx, id, c, now, func(*alias.Alias) bool { return true })
}

func (s *Store) change(ctx context.Context, id string, c alias.Change, now time.Time, allowed func(*alias.Alias) bool) (alias.Alias, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	id = strings.ToLower(id)
	var out alias.Alias
	err := retry(ctx, func() error {
		snap, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		r := snap.r
		a := r.alias(snap.pending)
		if a.Gone(now) || !allowed(&a) {
			return store.ErrNotFound
		}
		wasLive := !a.UsedUp()
		if err := a.Apply(c); err != nil {
			return err
		}
		r.MaxUsage = a.MaxUsage
		r.setAllowFrom(&a)
		ops := []clientv3.Op{}
		if c.Expires != nil {
			r.Expires = a.Expires.Unix()
			if old := r.SweepAt; !r.Revoked && old != r.Expires {
				r.SweepAt = r.Expires
				ops = append(ops, clientv3.OpDelete(s.sweepKey(old, id)), clientv3.OpPut(s.sweepKey(r.SweepAt, id), ""))
			}
		}
		switch live := !a.UsedUp(); {
		case live && !wasLive:
			// Revived: counts again as live for its target.
			ops = append(ops, clientv3.OpPut(s.targetPrefix(r.TargetHash)+id, ""))
		case !live && wasLive:
			ops = append(ops, clientv3.OpDelete(s.targetPrefix(r.TargetHash)+id))
		}
		ops = append(ops, clientv3.OpPut(s.aliasKey(id), s.value(r)))
		ok, err := s.txn(ctx, []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", snap.modRev),
			clientv3.Compare(clientv3.ModRevision(s.resPrefix(id)), "<", snap.rev+1).WithPrefix(),
		}, ops...)
		if err != nil {
			return err
		}
		if !ok {
			return errConflict
		}
		out = a
		return nil
	})
	var inv *alias.InvalidError
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &inv) {
		return alias.Alias{}, err
	}
	if err != nil {
		return alias.Alias{}, fmt.Errorf("etcd: change %s: %w", id, err)
	}
	out.Refused += s.unflushed(id)
	return out, nil
}
