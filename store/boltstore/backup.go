package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole database to w while the
// store stays in use, and returns the number of bytes written.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// addStored keeps the count of stored aliases, so that Stats (read at
// every metrics scrape) need not walk the bucket.
func addStored(tx *bolt.Tx, delta int64) error {
	meta := tx.Bucket(bucketMeta)
	var n uint64
	if v := meta.Get(keyStored); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	return meta.Put(keyStored, binary.BigEndian.AppendUint64(nil, uint64(int64(n)+delta)))
}

// Stats reads the counts of stored aliases and issued ids.
func (s *Store) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	err := s.view(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyStored); len(v) == 8 {
			st.Aliases = int(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get(keyIssued); len(v) == 8 {
			st.Issued = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return st, err
}

// Ping checks that the store answers a read.
func (s *Store) Ping(ctx context.Context) error {
	if s.w.broken.Load() {
		return fmt.Errorf("store: %w", errBroken)
	}
	return s.view(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAliases) == nil {
			return errors.New("store: aliases bucket missing")
		}
		return nil
	})
}
