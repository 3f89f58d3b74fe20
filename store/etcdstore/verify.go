package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TargetVerified reports whether target confirmed it wants mail, and that
// has not run out at now.
func (s *Store) TargetVerified(ctx context.Context, target string, now time.Time) (bool, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.verifiedKey(s.targetHash(target)))
	if err != nil {
		return false, fmt.Errorf("etcd: verified: %w", unavailable(err))
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	until, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	return err == nil && until > now.Unix(), nil
}

// Confirm takes a confirmation token, once: its pending alias starts
// relaying and its target counts as verified until now+remember. The
// token's key is deleted in the same transaction, so two hosts given the
// same token confirm once.
func (s *Store) Confirm(ctx context.Context, token string, now time.Time, remember time.Duration) (alias.Alias, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	ck := s.confirmKey(alias.HashToken(token))
	var got alias.Alias
	err := retry(ctx, func() error {
		cr, err := s.cli.Get(ctx, ck)
		if err != nil {
			return unavailable(err)
		}
		if len(cr.Kvs) == 0 {
			return store.ErrNotFound
		}
		id := string(cr.Kvs[0].Value)
		snap, err := s.load(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			_, err := s.cli.Delete(ctx, ck)
			if err != nil {
				return unavailable(err)
			}
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		r := snap.r
		if a := r.alias(snap.pending); a.Dead(now) || !a.Unverified {
			return store.ErrNotFound
		}
		r.Unverified, r.ConfirmHash = false, nil
		until := strconv.FormatInt(now.Add(remember).Unix(), 10)
		resp, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", snap.modRev),
			clientv3.Compare(clientv3.CreateRevision(ck), ">", 0),
		).Then(
			clientv3.OpDelete(ck),
			clientv3.OpPut(s.aliasKey(id), s.value(r)),
			clientv3.OpPut(s.verifiedKey(r.TargetHash), until),
		).Commit()
		if err != nil {
			return unavailable(err)
		}
		if !resp.Succeeded {
			return errConflict
		}
		got = r.alias(snap.pending)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return alias.Alias{}, err
	}
	if err != nil {
		return alias.Alias{}, fmt.Errorf("etcd: confirm: %w", err)
	}
	return got, nil
}
