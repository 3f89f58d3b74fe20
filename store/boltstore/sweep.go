package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sweep deletes aliases that are expired or revoked at now, at most batch
// per write transaction so that the writer lock is never held for long,
// and returns how many it deleted. Only the ids stay behind, so they are
// never reused. Each transaction is a background write (commit.go): the
// writes queued meanwhile go first, in transactions of their own. It
// writes the refusal counts first (flushCounts), and deletes the
// per-target counts of days gone by (sweepDaily).
func (s *Store) Sweep(ctx context.Context, now time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	flushErr := s.flushCounts() // reported, but no reason not to sweep
	flushErr = errors.Join(flushErr, s.sweepDaily(ctx, now, batch))
	total := 0
	for {
		if due, err := s.sweepDue(ctx, now); err != nil || !due {
			return total, errors.Join(flushErr, err)
		}
		n, more, err := s.sweepOnce(ctx, now, batch)
		total += n
		if err != nil || !more {
			return total, errors.Join(flushErr, err)
		}
	}
}

// sweepDue reports, from a read transaction, whether any sweep entry is
// due at now, so that an idle sweeper tick costs no write and no fsync.
func (s *Store) sweepDue(ctx context.Context, now time.Time) (bool, error) {
	var due bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketSweep).Cursor().First()
		due = len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= now.Unix()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: sweep: %w", err)
	}
	return due, nil
}

// sweepOnce deletes up to batch aliases whose sweep entry is due at now,
// in one background write (see Sweep).
// An entry's time is the alias's expiry, or the moment it was revoked if
// that came first (see put's callers), so a due entry is a dead alias:
// nothing needs decoding.
func (s *Store) sweepOnce(ctx context.Context, now time.Time, batch int) (deleted int, more bool, err error) {
	limit := now.Unix()
	err = s.w.background(ctx, func(tx *bolt.Tx) error {
		deleted, more = 0, false
		aliases, targets, confirm := tx.Bucket(bucketAliases), tx.Bucket(bucketTargets), tx.Bucket(bucketConfirm)
		c := tx.Bucket(bucketSweep).Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > limit {
				break
			}
			if deleted == batch {
				more = true
				break
			}
			id := append([]byte(nil), k[8:]...)
			var targetKey, confirmHash []byte
			if len(v) > 0 && int(v[0]) <= len(v)-1 {
				n := int(v[0])
				targetKey, confirmHash = append(append([]byte(nil), v[1:1+n]...), id...), append([]byte(nil), v[1+n:]...)
			}
			if err := c.Delete(); err != nil {
				return err
			}
			if err := aliases.Put(id, tombstone); err != nil {
				return err
			}
			if targetKey != nil {
				if err := targets.Delete(targetKey); err != nil {
					return err
				}
			}
			if len(confirmHash) > 0 {
				if err := confirm.Delete(confirmHash); err != nil {
					return err
				}
			}
			deleted++
		}
		if deleted == 0 {
			return nil
		}
		return addStored(tx, -int64(deleted))
	})
	if err != nil {
		return 0, false, fmt.Errorf("store: sweep: %w", err)
	}
	return deleted, more, nil
}
