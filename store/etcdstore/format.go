package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/tempalias/tempalias/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The records' format is the cluster's, not a host's: several hosts share
// one cluster and are upgraded one at a time, and a host of an older
// version cannot read a newer format. So
//
//	P meta/format   the format hosts write records in (decimal; absent: formatJSON)
//
// Every host reads every format it knows, at all times; it writes the
// format the marker names. A cluster where no host ran before starts at
// the newest (no older host has read it); an existing one stays where it
// is until the operator, once every host runs a version that reads the
// newer format, raises the marker (RaiseFormat: `tempalias
// store-format -raise`), which also rewrites the records stored before.
// A host notices a raised marker at its next read of a record (the read
// batches read the marker too) and writes the new format from then on;
// until then its writes are in the old one, which every host reads, so
// nothing is lost in between. (A host rewrites a record only after
// reading it in the same transaction as the marker, so it never writes
// an older format over a record of a newer one.) A host that finds a
// marker newer than it knows refuses to start.
const (
	formatJSON   = 1 // the record as JSON, what every version reads
	formatBinary = 2 // the binary record of record.go
	formatNewest = formatBinary
)

func (s *Store) formatKey() string { return s.p + "meta/format" }

// value is r as this host writes it now: in the cluster's format.
func (s *Store) value(r *record) string {
	if s.format.Load() < formatBinary {
		return r.jsonValue()
	}
	return r.value()
}

// parseFormat reads the marker's value.
func parseFormat(kvs []*mvccpb.KeyValue) (int, error) {
	if len(kvs) == 0 {
		return formatJSON, nil
	}
	f, err := strconv.Atoi(string(kvs[0].Value))
	if err != nil || f < formatJSON {
		return 0, fmt.Errorf("%s is %q, not a record format", kvs[0].Key, kvs[0].Value)
	}
	return f, nil
}

// loadFormat reads the cluster's marker at Open, setting it to the newest
// format on a cluster where no host ran before (fresh: this host wrote
// its target-hash key), and refuses a format newer than this version
// knows.
func (s *Store) loadFormat(ctx context.Context, fresh bool) error {
	k := s.formatKey()
	var kvs []*mvccpb.KeyValue
	if fresh {
		newest := strconv.Itoa(formatNewest)
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, newest)).
			Else(clientv3.OpGet(k)).
			Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			s.format.Store(formatNewest)
			return nil
		}
		kvs = resp.Responses[0].GetResponseRange().Kvs
	} else {
		resp, err := s.cli.Get(ctx, k)
		if err != nil {
			return err
		}
		kvs = resp.Kvs
	}
	f, err := parseFormat(kvs)
	if err != nil {
		return err
	}
	if f > formatNewest {
		return fmt.Errorf("the cluster's records are in format %d (%s), newer than this version knows (%d): run a newer tempalias", f, k, formatNewest)
	}
	s.format.Store(int64(f))
	return nil
}

// noteFormat takes the marker as a read batch saw it. A marker raised
// beyond this version while it runs (every host should have been
// upgraded first) is logged, once: this host keeps writing the newest
// format it knows, which the newer hosts read, and cannot read records
// of the newer format (their decode is an error naming the format).
func (s *Store) noteFormat(kvs []*mvccpb.KeyValue) {
	f, err := parseFormat(kvs)
	if err != nil {
		return // Open checked it; a damaged marker changes nothing here
	}
	if f > formatNewest {
		s.tooNewOnce.Do(func() {
			s.log.Error("etcd: the cluster's record format is newer than this version knows: upgrade this host",
				"format", f, "known", formatNewest)
		})
		f = formatNewest
	}
	s.format.Store(int64(f))
}

// Formats counts the cluster's records by format.
type Formats struct {
	Marker     int // the format hosts write (P meta/format)
	JSON       int // records in formatJSON
	Binary     int // records in formatBinary
	Tombstones int // swept ids
	Rewritten  int // records RaiseFormat rewrote
}

// Formats reads the marker and counts the records of each format, at one
// revision.
func (s *Store) Formats(ctx context.Context) (Formats, error) {
	var out Formats
	cctx, cancel := s.call(ctx)
	resp, err := s.cli.Get(cctx, s.formatKey())
	cancel()
	if err != nil {
		return out, fmt.Errorf("etcd: formats: %w", unavailable(err))
	}
	if out.Marker, err = parseFormat(resp.Kvs); err != nil {
		return out, fmt.Errorf("etcd: formats: %w", err)
	}
	var rev int64
	err = s.walk(ctx, s.p+"a/", &rev, func(k string, v []byte) error {
		switch f := storedFormat(v); f {
		case 0:
			out.Tombstones++
		case formatJSON:
			out.JSON++
		case formatBinary:
			out.Binary++
		default:
			id := strings.TrimPrefix(k, s.p+"a/")
			_, err := decode(id, v)
			return err
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("etcd: formats: %w", err)
	}
	return out, nil
}

// rewriters bounds the records RaiseFormat rewrites at once (their writes
// share the batches of batch.go).
const rewriters = 32

// RaiseFormat sets the cluster's marker to the newest format this version
// writes, then rewrites every record stored in an older one, each by
// compare-and-swap on the record as read (a record another host changed
// meanwhile is read again). Run it once every host of the cluster runs a
// version that reads the newest format: an older host cannot read the
// records written after it. Repeating it is harmless; it refuses a
// cluster whose marker is newer than this version knows.
func (s *Store) RaiseFormat(ctx context.Context) (Formats, error) {
	k := s.formatKey()
	mctx, mcancel := s.call(ctx)
	defer mcancel()
	err := retry(mctx, func() error {
		cctx, cancel := s.call(mctx)
		defer cancel()
		resp, err := s.cli.Get(cctx, k)
		if err != nil {
			return unavailable(err)
		}
		f, err := parseFormat(resp.Kvs)
		if err != nil {
			return err
		}
		if f > formatNewest {
			return fmt.Errorf("the cluster's records are in format %d, newer than this version knows (%d)", f, formatNewest)
		}
		if f == formatNewest {
			return nil
		}
		var modRev int64
		if len(resp.Kvs) > 0 {
			modRev = resp.Kvs[0].ModRevision
		}
		tr, err := s.cli.Txn(cctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", modRev)).
			Then(clientv3.OpPut(k, strconv.Itoa(formatNewest))).
			Commit()
		if err != nil {
			return unavailable(err)
		}
		if !tr.Succeeded {
			return errConflict
		}
		return nil
	})
	if err != nil {
		return Formats{}, fmt.Errorf("etcd: raise format: %w", err)
	}
	s.format.Store(formatNewest)

	var mu sync.Mutex
	var rewritten int
	var failed error
	sem := make(chan struct{}, rewriters)
	var wg sync.WaitGroup
	var rev int64
	err = s.walk(ctx, s.p+"a/", &rev, func(k string, v []byte) error {
		if f := storedFormat(v); f == 0 || f == formatNewest {
			return nil
		}
		id := strings.TrimPrefix(k, s.p+"a/")
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			did, err := s.rewrite(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if did {
				rewritten++
			}
			failed = errors.Join(failed, err)
		})
		return nil
	})
	wg.Wait()
	if err = errors.Join(err, failed); err != nil {
		return Formats{}, fmt.Errorf("etcd: raise format: %d records rewritten, then: %w", rewritten, err)
	}
	out, err := s.Formats(ctx)
	out.Rewritten = rewritten
	return out, err
}

// rewrite stores alias id's record again in the newest format, unless it
// is in it already or swept; did says whether this call wrote it.
func (s *Store) rewrite(ctx context.Context, id string) (did bool, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	err = retry(ctx, func() error {
		snap, err := s.load(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if snap.format == formatNewest {
			return nil // another host wrote it meanwhile
		}
		if err := s.swap(ctx, id, snap.modRev, clientv3.OpPut(s.aliasKey(id), snap.r.value())); err != nil {
			return err
		}
		did = true
		return nil
	})
	return did, err
}
