package etcdstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The per-target daily limits (store.CreateOptions) are counted in the
// cluster, so that N hosts do not allow N times a limit: one key per
// store.Day, kind and target,
//
//	P d/<day, 16 hex digits>/<kind>/<target hash>  ->  count (decimal)
//
// written in the creating transaction with a compare on its revision.
// The day leads, so the sweep deletes the days gone by with one range.
const (
	kindCreated   = "c" // aliases made for the target
	kindConfirmed = "m" // confirmation mails, one per pending alias
)

func (s *Store) dailyPrefix(day int64) string { return s.p + fmt.Sprintf("d/%016x/", uint64(day)) }

func (s *Store) dailyKey(day int64, kind string, hash []byte) string {
	return s.dailyPrefix(day) + kind + "/" + hex.EncodeToString(hash)
}

// dailyKind is the kind of an export's daily kind (checked by the
// export's reader: one of the two).
func dailyKind(kind string) string {
	if kind == store.DailyConfirmations {
		return kindConfirmed
	}
	return kindCreated
}

// exportDaily is the daily count under key k, of value v, as an export
// line.
func (s *Store) exportDaily(k string, v []byte) (store.ExportDaily, error) {
	parts := strings.Split(strings.TrimPrefix(k, s.p+"d/"), "/")
	bad := func(why string) (store.ExportDaily, error) {
		return store.ExportDaily{}, fmt.Errorf("daily count %q: %s", k, why)
	}
	if len(parts) != 3 {
		return bad("not day/kind/hash")
	}
	day, err := strconv.ParseUint(parts[0], 16, 64)
	if err != nil || len(parts[0]) != 16 {
		return bad("a bad day")
	}
	hash, err := hex.DecodeString(parts[2])
	if err != nil || len(hash) != 16 {
		return bad("a bad target hash")
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return bad(fmt.Sprintf("a count of %q", v))
	}
	d := store.ExportDaily{Day: int64(day), TargetHash: hash, Count: n}
	switch parts[1] {
	case kindCreated:
		d.Kind = store.DailyCreations
	case kindConfirmed:
		d.Kind = store.DailyConfirmations
	default:
		return bad(fmt.Sprintf("unknown kind %q", parts[1]))
	}
	return d, nil
}

// dailyTake is one count under key within limit, refused with over.
type dailyTake struct {
	key   string
	limit int
	over  error
}

// takeDaily reads the counts of takes (those with a limit) and returns the
// compares and puts that count one more each, or the refusal of the first
// that has no room left. The compares fail if another creation counted
// meanwhile, on any host.
func (s *Store) takeDaily(ctx context.Context, takes []dailyTake) ([]clientv3.Cmp, []clientv3.Op, error) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, t := range takes {
		if t.limit <= 0 {
			continue
		}
		n, modRev, err := s.dailyCount(ctx, t.key)
		if err != nil {
			return nil, nil, err
		}
		if n >= t.limit {
			return nil, nil, t.over
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.key), "=", modRev))
		ops = append(ops, clientv3.OpPut(t.key, strconv.Itoa(n+1)))
	}
	return cmps, ops, nil
}

// dailyCount reads a count and its revision (0 for none) linearizably.
func (s *Store) dailyCount(ctx context.Context, key string) (n int, modRev int64, err error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, 0, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, nil
	}
	n, err = strconv.Atoi(string(resp.Kvs[0].Value))
	if err != nil {
		return 0, 0, fmt.Errorf("etcd: daily count %s: %w", key, err)
	}
	return n, resp.Kvs[0].ModRevision, nil
}

// giveBackDaily returns the compare and the write that take one count
// back from key, if it has one.
func (s *Store) giveBackDaily(ctx context.Context, key string) ([]clientv3.Cmp, []clientv3.Op, error) {
	n, modRev, err := s.dailyCount(ctx, key)
	if err != nil || n == 0 {
		return nil, nil, err
	}
	cmp := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}
	if n == 1 {
		return cmp, []clientv3.Op{clientv3.OpDelete(key)}, nil
	}
	return cmp, []clientv3.Op{clientv3.OpPut(key, strconv.Itoa(n-1))}, nil
}

// sweepDaily deletes the counts of every day before now's, in one range.
func (s *Store) sweepDaily(ctx context.Context, now time.Time) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.cli.Delete(ctx, s.p+"d/", clientv3.WithRange(s.dailyPrefix(store.Day(now))))
	if err != nil {
		return fmt.Errorf("etcd: sweep daily counts: %w", unavailable(err))
	}
	return nil
}
