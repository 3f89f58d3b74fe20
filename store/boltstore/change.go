package boltstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// Change applies c to alias id if token is its token (see store.Engine).
// The check against the uses delivered and reserved and the write are one
// transaction, so a change racing a delivery cannot lose a count.
func (s *Store) Change(ctx context.Context, id, token string, c alias.Change, now time.Time) (alias.Alias, error) {
	return s.change(ctx, id, c, now, func(r *record) bool { return r.TokenMatches(token) })
}

// ChangeID applies c to alias id without asking for its token: for the
// operator.
func (s *Store) ChangeID(ctx context.Context, id string, c alias.Change, now time.Time) (alias.Alias, error) {
	return s.change(ctx, id, c, now, func(*record) bool { return true })
}

func (s *Store) change(ctx context.Context, id string, c alias.Change, now time.Time, allowed func(*record) bool) (alias.Alias, error) {
	id = strings.ToLower(id)
	if !alias.ValidID(id) {
		return alias.Alias{}, store.ErrNotFound
	}
	a, err := write(ctx, s.w, func(tx *bolt.Tx) (alias.Alias, error) {
		r, err := get(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return alias.Alias{}, refuse(err)
		}
		if err != nil {
			return alias.Alias{}, err
		}
		if r.Gone(now) || !allowed(r) {
			return alias.Alias{}, refuse(store.ErrNotFound)
		}
		wasLive := !r.UsedUp()
		if err := r.Apply(c); err != nil {
			return alias.Alias{}, refuse(err)
		}
		if live := !r.UsedUp(); live != wasLive && len(r.TargetHash) > 0 {
			// A used-up alias revived counts again as live for its
			// target (Commit took it out of the index); one used up by
			// a lower max-usage leaves it.
			if live {
				err = s.indexTarget(tx, r)
			} else {
				err = tx.Bucket(bucketTargets).Delete(r.targetEntry())
			}
			if err != nil {
				return alias.Alias{}, err
			}
		}
		sweepAt := time.Unix(r.SweepAt, 0)
		if c.Expires != nil {
			sweepAt = r.Expires
		}
		return r.Alias, put(tx, r, sweepAt)
	})
	var inv *alias.InvalidError
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &inv) {
		return alias.Alias{}, err
	}
	if err != nil {
		return alias.Alias{}, fmt.Errorf("store: change %s: %w", id, err)
	}
	a.Refused += s.unflushed(id)
	return a, nil
}
