package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// The per-target daily limits (store.CreateOptions) are counted in the
// daily bucket, one key per target, kind and store.Day:
//
//	8-byte day, big endian | kind | target hash  ->  4-byte count
//
// The day leads, so that the counts of days gone by are one range at the
// start of the bucket: sweepDaily deletes them, and the bucket holds at
// most the targets of today and of the days not yet swept.
const (
	kindCreated   = 'c' // aliases made for the target
	kindConfirmed = 'm' // confirmation mails, one per pending alias
)

// dailyKind is the kind byte of an export's daily kind (checked by the
// export's reader: one of the two).
func dailyKind(kind string) byte {
	if kind == store.DailyConfirmations {
		return kindConfirmed
	}
	return kindCreated
}

// exportDaily is the daily bucket's entry k, v as an export line.
func exportDaily(k, v []byte) (store.ExportDaily, error) {
	if len(k) != 8+1+16 || len(v) != 4 {
		return store.ExportDaily{}, fmt.Errorf("daily count %x: a key of %d bytes and a value of %d, want 25 and 4", k, len(k), len(v))
	}
	d := store.ExportDaily{
		Day:        int64(binary.BigEndian.Uint64(k[:8])),
		TargetHash: append([]byte(nil), k[9:]...),
		Count:      int(binary.BigEndian.Uint32(v)),
	}
	switch k[8] {
	case kindCreated:
		d.Kind = store.DailyCreations
	case kindConfirmed:
		d.Kind = store.DailyConfirmations
	default:
		return store.ExportDaily{}, fmt.Errorf("daily count %x: unknown kind %q", k, k[8])
	}
	return d, nil
}

func dailyKey(day int64, kind byte, hash []byte) []byte {
	k := make([]byte, 8, 9+len(hash))
	binary.BigEndian.PutUint64(k, uint64(day))
	return append(append(k, kind), hash...)
}

func dailyCount(b *bolt.Bucket, key []byte) uint32 {
	if v := b.Get(key); len(v) == 4 {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// dailyTake is one count for key within limit: refused with over, and
// nothing counted, if limit counts are there already. A limit of 0
// counts nothing.
type dailyTake struct {
	key   []byte
	limit int
	over  error
}

// checkDaily refuses with the first take that has no room left.
func checkDaily(tx *bolt.Tx, takes []dailyTake) error {
	b := tx.Bucket(bucketDaily)
	for _, t := range takes {
		if t.limit > 0 && dailyCount(b, t.key) >= uint32(t.limit) {
			return refuse(t.over)
		}
	}
	return nil
}

// takeDaily counts every take that has a limit; checkDaily has made sure
// they fit, and the caller counts them last, once nothing else can refuse
// the creation: a refused creation counts against none of its limits.
func takeDaily(tx *bolt.Tx, takes ...dailyTake) error {
	b := tx.Bucket(bucketDaily)
	for _, t := range takes {
		if t.limit <= 0 {
			continue
		}
		if err := b.Put(t.key, binary.BigEndian.AppendUint32(nil, dailyCount(b, t.key)+1)); err != nil {
			return err
		}
	}
	return nil
}

// giveBackDaily takes one count back from key, if it has one.
func giveBackDaily(tx *bolt.Tx, key []byte) error {
	b := tx.Bucket(bucketDaily)
	switch n := dailyCount(b, key); n {
	case 0:
		return nil
	case 1:
		return b.Delete(key)
	default:
		return b.Put(key, binary.BigEndian.AppendUint32(nil, n-1))
	}
}

// sweepDaily deletes the counts of the days before now's, at most batch
// a transaction; an idle call costs a read.
func (s *Store) sweepDaily(ctx context.Context, now time.Time, batch int) error {
	today := binary.BigEndian.AppendUint64(nil, uint64(store.Day(now)))
	for {
		var due bool
		if err := s.view(ctx, func(tx *bolt.Tx) error {
			k, _ := tx.Bucket(bucketDaily).Cursor().First()
			due = k != nil && string(k[:min(len(k), 8)]) < string(today)
			return nil
		}); err != nil || !due {
			return err
		}
		more, err := write(ctx, s.w, func(tx *bolt.Tx) (bool, error) {
			c := tx.Bucket(bucketDaily).Cursor()
			n := 0
			for k, _ := c.First(); k != nil && string(k[:min(len(k), 8)]) < string(today); k, _ = c.First() {
				if n == batch {
					return true, nil
				}
				if err := c.Delete(); err != nil {
					return false, err
				}
				n++
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("store: sweep daily counts: %w", err)
		}
		if !more {
			return nil
		}
	}
}
