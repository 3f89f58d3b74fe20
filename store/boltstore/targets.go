package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The per-target index (the targets bucket: target hash + id) exists for
// one reader, the live count of Spec.MaxLive (limits.aliases_per_target).
// Its entry is a page at a random place for every creation, as the
// record is: a third of the bytes a creation writes and a quarter of its
// CPU in the store (BenchmarkCreateParallel against
// BenchmarkCreateParallelNoTargetIndex). So a store opened with
// Options.NoTargetIndex writes no entries, and one opened without it
// keeps the index whole:
//
//   - keyTargetsStale in the meta bucket says that the targets bucket
//     may lack entries. Without it, the bucket holds an entry for every
//     stored alias that is not used up (revoked and expired ones until
//     the sweep deletes them), kept so by every write: so it was kept by
//     every version before NoTargetIndex existed;
//   - Open with NoTargetIndex sets the mark (durably, before any write
//     skips an entry);
//   - Open without it, on a marked file, rebuilds the index from the
//     records, a slice per transaction, and deletes the mark in the
//     last one; an interrupted rebuild starts over at the next Open.
//
// A version before this one ignores the mark: opened by it with
// aliases_per_target set, a file last served with NoTargetIndex counts
// fewer live aliases than there are.
var keyTargetsStale = []byte("targets_stale")

// errNoTargetIndex is Create's answer to a Spec.MaxLive on a store opened
// with NoTargetIndex: a wiring mistake, never a client's.
var errNoTargetIndex = errors.New("a per-target limit (Spec.MaxLive) needs the target index; the store was opened with NoTargetIndex")

// prepareTargetIndex makes the file's index match keep (see above).
func prepareTargetIndex(db *bolt.DB, keep bool) error {
	var stale bool
	if err := db.View(func(tx *bolt.Tx) error {
		stale = tx.Bucket(bucketMeta).Get(keyTargetsStale) != nil
		return nil
	}); err != nil {
		return err
	}
	switch {
	case keep && stale:
		return rebuildTargetIndex(db)
	case !keep && !stale:
		return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyTargetsStale, present) })
	}
	return nil
}

// rebuildTargetIndex empties the targets bucket, files every stored alias
// that is not used up, a slice of records per transaction, and deletes
// the stale mark.
func rebuildTargetIndex(db *bolt.DB) error {
	if err := db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketTargets); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketTargets)
		return err
	}); err != nil {
		return fmt.Errorf("target index: %w", err)
	}
	var from []byte
	for {
		var next []byte
		err := db.Update(func(tx *bolt.Tx) error {
			targets := tx.Bucket(bucketTargets)
			c := tx.Bucket(bucketAliases).Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for n := 0; k != nil; k, v = c.Next() {
				if n == migrateSlice {
					next = append([]byte(nil), k...)
					return nil
				}
				if isTombstone(v) {
					continue
				}
				n++
				r, err := decode(k, v)
				if err != nil {
					return err
				}
				if r.UsedUp() || len(r.TargetHash) == 0 {
					continue
				}
				if err := targets.Put(r.targetEntry(), present); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Delete(keyTargetsStale)
		})
		if err != nil {
			return fmt.Errorf("target index: %w", err)
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

// indexTarget files r in the per-target index, if the store keeps it.
func (s *Store) indexTarget(tx *bolt.Tx, r *record) error {
	if s.opts.NoTargetIndex {
		return nil
	}
	return tx.Bucket(bucketTargets).Put(r.targetEntry(), present)
}

// liveForTargetScan is liveForTarget without the index: every record
// read. Only LiveForTarget on a store opened with NoTargetIndex takes it
// (the API does not call it; the live count of a creation needs the
// index).
func liveForTargetScan(tx *bolt.Tx, hash []byte, now time.Time) (int, error) {
	n := 0
	err := tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
		if isTombstone(v) {
			return nil
		}
		r, err := decode(k, v)
		if err != nil {
			return err
		}
		if bytes.Equal(r.TargetHash, hash) && !r.Dead(now) {
			n++
		}
		return nil
	})
	return n, err
}
