package etcdstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// exportPage is how many keys one read of an export fetches.
const exportPage = 500

// Export writes the cluster's aliases as an engine-neutral stream
// (store.ExportVersion), read page by page at one revision: a consistent
// view while every host stays in use (unless the cluster compacts that
// revision away meanwhile, which fails the export). The refusal counts
// this host holds in memory are written first.
func (s *Store) Export(ctx context.Context, w io.Writer) error {
	if err := s.flushCounts(ctx); err != nil {
		return fmt.Errorf("etcd: export: %w", err)
	}
	if err := s.export(ctx, w); err != nil {
		return fmt.Errorf("etcd: export: %w", err)
	}
	return nil
}

func (s *Store) export(ctx context.Context, w io.Writer) error {
	e, err := store.NewExportWriter(w, store.ExportHeader{Engine: "etcd", TargetKey: s.targetKey, LinkKey: s.linkKey})
	if err != nil {
		return err
	}
	var rev int64
	err = s.walk(ctx, s.p+"a/", &rev, func(k string, v []byte) error {
		id := strings.TrimPrefix(k, s.p+"a/")
		if string(v) == tombstone {
			return e.Tombstone(id)
		}
		r, err := decode(id, v)
		if err != nil {
			return err
		}
		return e.Alias(store.ExportAlias{
			ID: r.ID, Target: r.Target, Created: time.Unix(r.Created, 0).UTC(), Expires: time.Unix(r.Expires, 0).UTC(),
			MaxUsage: r.MaxUsage, Used: r.Used, Refused: r.Refused, Revoked: r.Revoked,
			Unverified: r.Unverified, TokenHash: r.TokenHash, ConfirmHash: r.ConfirmHash,
			AllowFrom: r.AllowFrom, LockSender: r.LockSender, SweepAt: r.SweepAt,
			HourStart: r.HourStart, HourUsed: r.HourUsed,
		})
	})
	if err != nil {
		return err
	}
	err = s.walk(ctx, s.p+"v/", &rev, func(k string, v []byte) error {
		hash, err := hex.DecodeString(strings.TrimPrefix(k, s.p+"v/"))
		if err != nil {
			return fmt.Errorf("verified key %q: %w", k, err)
		}
		until, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return fmt.Errorf("verified key %q: %w", k, err)
		}
		return e.Verified(hash, until)
	})
	if err != nil {
		return err
	}
	err = s.walk(ctx, s.p+"d/", &rev, func(k string, v []byte) error {
		d, err := s.exportDaily(k, v)
		if err != nil || d.Count == 0 {
			return err // a count of 0 is none (none is written so)
		}
		return e.Daily(d)
	})
	if err != nil {
		return err
	}
	return e.Close()
}

// walk calls fn for every key under prefix, in key order, a page at a
// time, at revision *rev (the first read's, when 0).
func (s *Store) walk(ctx context.Context, prefix string, rev *int64, fn func(k string, v []byte) error) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		cctx, cancel := s.call(ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(exportPage)}
		if *rev != 0 {
			opts = append(opts, clientv3.WithRev(*rev))
		}
		resp, err := s.cli.Get(cctx, from, opts...)
		cancel()
		if err != nil {
			return unavailable(err)
		}
		if *rev == 0 {
			*rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Import reads an export into the cluster, which must never have issued
// an id (store.ErrImportNotEmpty otherwise); no host may be running on it
// meanwhile, since the cluster takes on the export's target and link keys
// and a running host keeps the keys it read at Open. Every id is created
// only if its key never existed, store.ImportBatch lines per transaction.
func (s *Store) Import(ctx context.Context, r io.Reader) error {
	er, err := store.NewExportReader(r)
	if err != nil {
		return err
	}
	cctx, cancel := s.call(ctx)
	resp, err := s.cli.Get(cctx, s.p+"a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return fmt.Errorf("etcd: import: %w", unavailable(err))
	}
	if resp.Count > 0 {
		return store.ErrImportNotEmpty
	}
	cctx, cancel = s.call(ctx)
	tr, err := s.cli.Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.p+"a/"), "=", 0).WithPrefix()).
		Then(clientv3.OpPut(s.p+"meta/target_key", string(er.Header.TargetKey)),
			clientv3.OpPut(s.p+"meta/link_key", string(er.Header.LinkKey))).
		Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("etcd: import: %w", unavailable(err))
	}
	if !tr.Succeeded {
		return store.ErrImportNotEmpty
	}
	s.targetKey, s.linkKey = append([]byte(nil), er.Header.TargetKey...), append([]byte(nil), er.Header.LinkKey...)
	return er.Batches(func(batch []store.ExportLine, lines []int) error {
		if err := s.importBatch(ctx, batch, lines); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		return nil
	})
}

func (s *Store) importBatch(ctx context.Context, batch []store.ExportLine, lines []int) error {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	ids := map[string]int{}   // id -> line, for the error naming a taken id
	daily := map[string]int{} // daily count key -> its index in the batch
	for i, l := range batch {
		switch {
		case l.Tombstone != "":
			id := l.Tombstone
			if _, dup := ids[id]; dup {
				return fmt.Errorf("import: line %d: id %s is already in the store (an id is never issued twice)", lines[i], id)
			}
			ids[id] = lines[i]
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.aliasKey(id)), "=", 0))
			ops = append(ops, clientv3.OpPut(s.aliasKey(id), tombstone))
		case l.Alias != nil:
			a := l.Alias
			if _, dup := ids[a.ID]; dup {
				return fmt.Errorf("import: line %d: id %s is already in the store (an id is never issued twice)", lines[i], a.ID)
			}
			ids[a.ID] = lines[i]
			r := &record{
				ID: a.ID, Target: a.Target, Created: a.Created.Unix(), Expires: a.Expires.Unix(),
				MaxUsage: a.MaxUsage, Used: a.Used, Refused: a.Refused, Revoked: a.Revoked,
				Unverified: a.Unverified, TokenHash: a.TokenHash, TargetHash: s.targetHash(a.Target),
				ConfirmHash: a.ConfirmHash, AllowFrom: a.AllowFrom, LockSender: a.LockSender, SweepAt: a.SweepAt,
				HourStart: a.HourStart, HourUsed: a.HourUsed,
			}
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.aliasKey(a.ID)), "=", 0))
			ops = append(ops, clientv3.OpPut(s.aliasKey(a.ID), s.value(r)), clientv3.OpPut(s.sweepKey(r.SweepAt, a.ID), ""))
			if aa := l.Alias.Alias(); !aa.UsedUp() {
				ops = append(ops, clientv3.OpPut(s.targetPrefix(r.TargetHash)+a.ID, ""))
			}
			if r.ConfirmHash != nil {
				ops = append(ops, clientv3.OpPut(s.confirmKey(r.ConfirmHash), a.ID))
			}
		case l.Verified != nil:
			ops = append(ops, clientv3.OpPut(s.verifiedKey(l.Verified.TargetHash), strconv.FormatInt(l.Verified.Until, 10)))
		case l.Daily != nil:
			d := l.Daily
			key := s.dailyKey(d.Day, dailyKind(d.Kind), d.TargetHash)
			if _, dup := daily[key]; dup {
				return dailyTwice(lines[i], d)
			}
			daily[key] = i
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			ops = append(ops, clientv3.OpPut(key, strconv.Itoa(d.Count)))
		}
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("import: line %d: %w", lines[0], unavailable(err))
	}
	if resp.Succeeded {
		return nil
	}
	for id, line := range ids {
		g, err := s.cli.Get(cctx, s.aliasKey(id), clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("import: line %d: %w", line, unavailable(err))
		}
		if g.Count > 0 {
			return fmt.Errorf("import: line %d: id %s is already in the store (an id is never issued twice)", line, id)
		}
	}
	for key, i := range daily {
		g, err := s.cli.Get(cctx, key, clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("import: line %d: %w", lines[i], unavailable(err))
		}
		if g.Count > 0 {
			return dailyTwice(lines[i], batch[i].Daily)
		}
	}
	return fmt.Errorf("import: line %d: a key of this batch was written meanwhile", lines[0])
}

// dailyTwice is the error for a daily count that the stream gives twice.
func dailyTwice(line int, d *store.ExportDaily) error {
	return fmt.Errorf("import: line %d: the %s of day %d for target hash %x are counted twice in the stream", line, d.Kind, d.Day, d.TargetHash)
}
