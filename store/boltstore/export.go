package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// Export writes the store as an engine-neutral stream (store.ExportVersion)
// from one read transaction: a consistent view, while the store stays in
// use. The refusal counts still in memory are written to the file first.
func (s *Store) Export(ctx context.Context, w io.Writer) error {
	if err := s.flushCounts(); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		e, err := store.NewExportWriter(w, store.ExportHeader{Engine: "bolt", TargetKey: s.targetKey, LinkKey: s.linkKey})
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketAliases).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if isTombstone(v) {
				if err := e.Tombstone(string(k)); err != nil {
					return err
				}
				continue
			}
			r, err := decode(k, v)
			if err != nil {
				return err
			}
			a := &r.Alias
			hourStart, hourUsed := store.ExportHour(a)
			if err := e.Alias(store.ExportAlias{
				ID: a.ID, Target: a.Target, Created: a.Created, Expires: a.Expires,
				MaxUsage: a.MaxUsage, Used: a.Used, Refused: a.Refused, Revoked: a.Revoked,
				Unverified: a.Unverified, TokenHash: a.TokenHash, ConfirmHash: r.ConfirmHash,
				AllowFrom: a.AllowFrom, LockSender: a.LockSender, SweepAt: r.SweepAt,
				HourStart: hourStart, HourUsed: hourUsed,
			}); err != nil {
				return err
			}
		}
		vc := tx.Bucket(bucketVerify).Cursor()
		for k, v := vc.First(); k != nil; k, v = vc.Next() {
			if len(v) != 8 {
				return fmt.Errorf("verified %x: a value of %d bytes, want 8", k, len(v))
			}
			if err := e.Verified(k, int64(binary.BigEndian.Uint64(v))); err != nil {
				return err
			}
		}
		dc := tx.Bucket(bucketDaily).Cursor()
		for k, v := dc.First(); k != nil; k, v = dc.Next() {
			d, err := exportDaily(k, v)
			if err != nil {
				return err
			}
			if d.Count == 0 {
				continue // no count, as if absent (none is written so)
			}
			if err := e.Daily(d); err != nil {
				return err
			}
		}
		return e.Close()
	})
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	return nil
}

// Import reads an export into this store, which must never have issued an
// id (store.ErrImportNotEmpty otherwise). It takes on the export's target
// and link keys, then writes store.ImportBatch lines per transaction, so
// that memory stays bounded whatever the size of the stream.
func (s *Store) Import(ctx context.Context, r io.Reader) error {
	er, err := store.NewExportReader(r)
	if err != nil {
		return err
	}
	err = s.w.do(ctx, func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketAliases).Cursor().First(); k != nil {
			return store.ErrImportNotEmpty
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyTargetKey, er.Header.TargetKey); err != nil {
			return err
		}
		return meta.Put(keyLinkKey, er.Header.LinkKey)
	})
	if err != nil {
		if errors.Is(err, store.ErrImportNotEmpty) {
			return err
		}
		return fmt.Errorf("store: import: %w", err)
	}
	s.targetKey, s.linkKey = append([]byte(nil), er.Header.TargetKey...), append([]byte(nil), er.Header.LinkKey...)
	return er.Batches(func(batch []store.ExportLine, lines []int) error {
		if err := s.w.do(ctx, func(tx *bolt.Tx) error { return s.importBatch(tx, batch, lines) }); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	})
}

func (s *Store) importBatch(tx *bolt.Tx, batch []store.ExportLine, lines []int) error {
	aliases, meta := tx.Bucket(bucketAliases), tx.Bucket(bucketMeta)
	var issued uint64
	if v := meta.Get(keyIssued); len(v) == 8 {
		issued = binary.BigEndian.Uint64(v)
	}
	stored := 0
	for i, l := range batch {
		id := l.Tombstone
		if l.Alias != nil {
			id = l.Alias.ID
		}
		if id != "" && aliases.Get([]byte(id)) != nil {
			return fmt.Errorf("import: line %d: id %s is already in the store (an id is never issued twice)", lines[i], id)
		}
		switch {
		case l.Tombstone != "":
			if err := aliases.Put([]byte(id), tombstone); err != nil {
				return err
			}
			issued++
		case l.Alias != nil:
			r := &record{Alias: l.Alias.Alias(), TargetHash: s.targetHash(l.Alias.Target), ConfirmHash: l.Alias.ConfirmHash}
			if r.ConfirmHash != nil {
				if err := tx.Bucket(bucketConfirm).Put(r.ConfirmHash, []byte(id)); err != nil {
					return err
				}
			}
			if !r.UsedUp() {
				if err := s.indexTarget(tx, r); err != nil {
					return err
				}
			}
			if err := put(tx, r, time.Unix(l.Alias.SweepAt, 0)); err != nil {
				return err
			}
			issued++
			stored++
		case l.Verified != nil:
			until := binary.BigEndian.AppendUint64(nil, uint64(l.Verified.Until))
			if err := tx.Bucket(bucketVerify).Put(l.Verified.TargetHash, until); err != nil {
				return err
			}
		case l.Daily != nil:
			d := l.Daily
			key, daily := dailyKey(d.Day, dailyKind(d.Kind), d.TargetHash), tx.Bucket(bucketDaily)
			if daily.Get(key) != nil {
				return fmt.Errorf("import: line %d: the %s of day %d for target hash %x are counted twice in the stream", lines[i], d.Kind, d.Day, d.TargetHash)
			}
			if err := daily.Put(key, binary.BigEndian.AppendUint32(nil, uint32(d.Count))); err != nil {
				return err
			}
		}
	}
	if err := meta.Put(keyIssued, binary.BigEndian.AppendUint64(nil, issued)); err != nil {
		return err
	}
	return addStored(tx, int64(stored))
}
