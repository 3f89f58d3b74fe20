package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// TargetVerified reports whether target confirmed it wants our mail and
// that confirmation has not run out at now.
func (s *Store) TargetVerified(ctx context.Context, target string, now time.Time) (bool, error) {
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketVerify).Get(s.targetHash(target))
		ok = len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > now.Unix()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: verified: %w", err)
	}
	return ok, nil
}

// Confirm takes a confirmation token: the alias it belongs to starts
// relaying, and its target counts as verified until now+remember. A token
// works once; an unknown, used or dead one gives ErrNotFound.
func (s *Store) Confirm(ctx context.Context, token string, now time.Time, remember time.Duration) (alias.Alias, error) {
	h := alias.HashToken(token)
	// Unknown tokens (anyone can post one) are answered from a read.
	var known bool
	if err := s.view(ctx, func(tx *bolt.Tx) error {
		known = tx.Bucket(bucketConfirm).Get(h) != nil
		return nil
	}); err != nil {
		return alias.Alias{}, fmt.Errorf("store: confirm: %w", err)
	}
	if !known {
		return alias.Alias{}, store.ErrNotFound
	}
	a, err := write(ctx, s.w, func(tx *bolt.Tx) (alias.Alias, error) {
		confirm := tx.Bucket(bucketConfirm)
		id := confirm.Get(h)
		if id == nil {
			return alias.Alias{}, refuse(store.ErrNotFound)
		}
		r, err := get(tx, string(id))
		if errors.Is(err, store.ErrNotFound) {
			// Swept; the entry is a leftover. Deleting it is no refusal's
			// write of its own: it only tidies.
			return alias.Alias{}, confirm.Delete(h)
		}
		if err != nil {
			return alias.Alias{}, err
		}
		if r.Dead(now) || !r.Unverified {
			return alias.Alias{}, refuse(store.ErrNotFound)
		}
		if err := confirm.Delete(h); err != nil {
			return alias.Alias{}, err
		}
		r.Unverified, r.ConfirmHash = false, nil
		until := binary.BigEndian.AppendUint64(nil, uint64(now.Add(remember).Unix()))
		if err := tx.Bucket(bucketVerify).Put(s.targetHash(r.Target), until); err != nil {
			return alias.Alias{}, err
		}
		return r.Alias, update(tx, r)
	})
	if errors.Is(err, store.ErrNotFound) {
		return alias.Alias{}, err
	}
	if err != nil {
		return alias.Alias{}, fmt.Errorf("store: confirm: %w", err)
	}
	if a.ID == "" {
		return alias.Alias{}, store.ErrNotFound // the leftover entry above
	}
	return a, nil
}
