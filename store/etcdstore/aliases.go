package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// snapshot is an alias as read at one revision, with the count of its
// open reservations.
type snapshot struct {
	r       *record
	modRev  int64 // the record's revision, for compare-and-swap
	pending int
	rev     int64 // the cluster revision of the read
	format  int   // the format the record is stored in
}

// load reads alias id and its open reservations in one linearizable
// read. A malformed id, an unknown one and a tombstone are ErrNotFound.
func (s *Store) load(ctx context.Context, id string) (snapshot, error) {
	if !alias.ValidID(id) {
		return snapshot{}, store.ErrNotFound
	}
	rd := &read{ctx: ctx, id: id, done: make(chan readResult, 1)}
	select {
	case s.reads <- rd:
	case <-ctx.Done():
		return snapshot{}, unavailable(ctx.Err())
	}
	select {
	case res := <-rd.done:
		return res.snap, res.err
	case <-ctx.Done():
		return snapshot{}, unavailable(ctx.Err())
	}
}

// loadOps are the reads of one load: the record, and the count of its
// open reservations.
func (s *Store) loadOps(id string) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(s.aliasKey(id)),
		clientv3.OpGet(s.resPrefix(id), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	}
}

// loaded makes load's answer from its two responses.
func loaded(id string, rec, res *etcdserverpb.RangeResponse, rev int64) (snapshot, error) {
	if len(rec.Kvs) == 0 {
		return snapshot{}, store.ErrNotFound
	}
	v := rec.Kvs[0].Value
	r, err := decode(id, v)
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{r: r, modRev: rec.Kvs[0].ModRevision, pending: int(res.Count), rev: rev, format: storedFormat(v)}, nil
}

// Create stores a new alias with an id no host ever issued: the id's key
// is created only if it never existed, in the same transaction as the
// record's indexes (and, with a per-target limit, only if no alias for
// the target was added since they were counted).
func (s *Store) Create(ctx context.Context, spec alias.Spec, now time.Time, opts ...store.CreateOption) (store.Created, error) {
	o := store.NewCreateOptions(opts)
	ctx, cancel := s.call(ctx)
	defer cancel()
	c := store.Created{Token: alias.NewToken()}
	if o.Pending {
		c.Confirm = alias.NewToken()
	}
	hash := s.targetHash(spec.Target)
	day := store.Day(now)
	takes := []dailyTake{{s.dailyKey(day, kindCreated, hash), o.CreationsPerDay, store.ErrCreationsPerDay}}
	if o.Pending {
		takes = append(takes, dailyTake{s.dailyKey(day, kindConfirmed, hash), o.ConfirmationsPerDay, store.ErrConfirmationsPerDay})
	}
	collisions := 0
	err := retry(ctx, func() error {
		// The daily limits before the live count: a target over both is
		// told about the day.
		cmps, daily, err := s.takeDaily(ctx, takes)
		if err != nil {
			return err
		}
		if spec.MaxLive > 0 {
			n, rev, err := s.liveForTarget(ctx, hash, now)
			if err != nil {
				return err
			}
			if n >= spec.MaxLive {
				return store.ErrTargetFull
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.targetPrefix(hash)), "<", rev+1).WithPrefix())
		}
		n, issued, err := s.idLength(ctx)
		if err != nil {
			return err
		}
		done := false
		defer func() { issued(done) }()
		// Repeated collisions (a nearly full id space) make ids longer.
		id := alias.NewID(min(n+collisions/8, alias.MaxIDLength))
		r := &record{
			ID:         id,
			Target:     spec.Target,
			Created:    now.Unix(),
			Expires:    spec.Expires.Unix(),
			MaxUsage:   spec.MaxUsage,
			TokenHash:  alias.HashToken(c.Token),
			TargetHash: hash,
			Unverified: o.Pending,
			SweepAt:    spec.Expires.Unix(),
			AllowFrom:  spec.AllowFrom,
			LockSender: spec.LockSender,

			CountedCreation:     o.CreationsPerDay > 0,
			CountedConfirmation: o.Pending && o.ConfirmationsPerDay > 0,
		}
		if o.Pending {
			r.ConfirmHash = alias.HashToken(c.Confirm)
		}
		ops := []clientv3.Op{
			clientv3.OpPut(s.aliasKey(id), s.value(r)),
			clientv3.OpPut(s.targetPrefix(hash)+id, ""),
			clientv3.OpPut(s.sweepKey(r.SweepAt, id), ""),
		}
		if o.Pending {
			ops = append(ops, clientv3.OpPut(s.confirmKey(r.ConfirmHash), id))
		}
		ops = append(ops, daily...)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.aliasKey(id)), "=", 0))
		ok, err := s.txn(ctx, cmps, ops...)
		if err != nil {
			return err
		}
		if !ok {
			// The id was taken, or (with a per-target limit) the target
			// gained an alias or a daily count meanwhile.
			if resp, err := s.cli.Get(ctx, s.aliasKey(id), clientv3.WithCountOnly()); err == nil && resp.Count > 0 {
				collisions++
			}
			return errConflict
		}
		done = true
		c.Alias = r.alias(0)
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrTargetFull) || errors.Is(err, store.ErrCreationsPerDay) || errors.Is(err, store.ErrConfirmationsPerDay) {
			return store.Created{}, err
		}
		return store.Created{}, fmt.Errorf("etcd: create: %w", err)
	}
	return c, nil
}

// idLength is the length of the next id, from the count of ids issued in
// the whole cluster, read again every few seconds (other hosts' ids are
// counted late: an estimate), plus this host's own since and those it is
// creating right now, so that concurrent creations on one host never all
// take the shorter length. issued must be called once the attempt is
// over, saying whether it issued the id.
func (s *Store) idLength(ctx context.Context) (n int, issued func(bool), err error) {
	s.issuedMu.Lock()
	stale := time.Since(s.issuedRead) > 10*time.Second
	s.issuedMu.Unlock()
	if stale {
		resp, err := s.cli.Get(ctx, s.p+"a/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		if err != nil {
			return 0, nil, unavailable(err)
		}
		s.issuedMu.Lock()
		// Ids are never taken back, so the count only grows: a member
		// behind the leader must not make it shrink.
		s.issued, s.issuedRead = max(s.issued, uint64(resp.Count)), time.Now()
		s.issuedMu.Unlock()
	}
	s.issuedMu.Lock()
	defer s.issuedMu.Unlock()
	n = alias.IDLength(s.issued+s.creating, s.opts.IDMinLength, s.opts.GuessProbability)
	s.creating++
	return n, func(ok bool) {
		s.issuedMu.Lock()
		s.creating--
		if ok {
			s.issued++
		}
		s.issuedMu.Unlock()
	}, nil
}

// liveForTarget counts the live aliases of a target hash, and returns the
// revision it counted at.
func (s *Store) liveForTarget(ctx context.Context, hash []byte, now time.Time) (int, int64, error) {
	pfx := s.targetPrefix(hash)
	resp, err := s.cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, 0, unavailable(err)
	}
	rev := resp.Header.Revision
	n := 0
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), pfx)
		ar, err := s.cli.Get(ctx, s.aliasKey(id), clientv3.WithRev(rev))
		if err != nil {
			return 0, 0, unavailable(err)
		}
		if len(ar.Kvs) == 0 {
			continue
		}
		r, err := decode(id, ar.Kvs[0].Value)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		if a := r.alias(0); !a.Dead(now) {
			n++
		}
	}
	return n, rev, nil
}

// LiveForTarget counts the aliases alive at now that forward to target.
func (s *Store) LiveForTarget(ctx context.Context, target string, now time.Time) (int, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	n, _, err := s.liveForTarget(ctx, s.targetHash(target), now)
	if err != nil {
		return 0, fmt.Errorf("etcd: count for target: %w", err)
	}
	return n, nil
}

// Get returns alias id if it is alive at now.
func (s *Store) Get(ctx context.Context, id string, now time.Time) (alias.Alias, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	var snap snapshot
	err := retry(ctx, func() (err error) { snap, err = s.load(ctx, strings.ToLower(id)); return err })
	if err != nil {
		return alias.Alias{}, err
	}
	a := snap.r.alias(snap.pending)
	if a.Dead(now) {
		return alias.Alias{}, store.ErrNotFound
	}
	return a, nil
}

// Held returns alias id as its holder sees it: alive, or used up and not
// yet expired, with the mail refused since.
func (s *Store) Held(ctx context.Context, id string, now time.Time) (alias.Alias, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	id = strings.ToLower(id)
	var snap snapshot
	err := retry(ctx, func() (err error) { snap, err = s.load(ctx, id); return err })
	if err != nil {
		return alias.Alias{}, err
	}
	a := snap.r.alias(snap.pending)
	if a.Gone(now) {
		return alias.Alias{}, store.ErrNotFound
	}
	a.Refused += s.unflushed(id)
	return a, nil
}

// Authorized is Held for the holder of the alias's token.
func (s *Store) Authorized(ctx context.Context, id, token string, now time.Time) (alias.Alias, error) {
	a, err := s.Held(ctx, id, now)
	if err != nil {
		return alias.Alias{}, err
	}
	if !a.TokenMatches(token) {
		return alias.Alias{}, store.ErrNotFound
	}
	return a, nil
}

// Revoke kills alias id if token is its token.
func (s *Store) Revoke(ctx context.Context, id, token string, now time.Time) error {
	return s.revoke(ctx, id, now, func(a *alias.Alias) bool { return a.TokenMatches(token) }, nil)
}

// RevokeID kills alias id without its token: for the operator.
func (s *Store) RevokeID(ctx context.Context, id string, now time.Time) error {
	return s.revoke(ctx, id, now, func(*alias.Alias) bool { return true }, nil)
}

// Withdraw is Revoke that also gives back, in the same transaction, what
// the alias's creation counted against its target's day (the record
// says: nothing for a limit that was not set), to the day of its
// creation, so that a withdrawal just after midnight takes nothing from
// the new day.
func (s *Store) Withdraw(ctx context.Context, id, token string, now time.Time) error {
	return s.revoke(ctx, id, now, func(a *alias.Alias) bool { return a.TokenMatches(token) }, func(ctx context.Context, r *record) ([]clientv3.Cmp, []clientv3.Op, error) {
		day := store.Day(time.Unix(r.Created, 0))
		var keys []string
		if r.CountedCreation {
			keys = append(keys, s.dailyKey(day, kindCreated, r.TargetHash))
		}
		if r.Unverified && r.CountedConfirmation {
			keys = append(keys, s.dailyKey(day, kindConfirmed, r.TargetHash))
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, k := range keys {
			c, o, err := s.giveBackDaily(ctx, k)
			if err != nil {
				return nil, nil, err
			}
			cmps, ops = append(cmps, c...), append(ops, o...)
		}
		return cmps, ops, nil
	})
}

// revoke kills alias id if allowed says so; also (if not nil) adds its
// compares and writes to the same transaction.
func (s *Store) revoke(ctx context.Context, id string, now time.Time, allowed func(*alias.Alias) bool,
	also func(context.Context, *record) ([]clientv3.Cmp, []clientv3.Op, error)) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	id = strings.ToLower(id)
	err := retry(ctx, func() error {
		snap, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		r := snap.r
		if a := r.alias(snap.pending); a.Gone(now) || !allowed(&a) {
			return store.ErrNotFound
		}
		old := r.SweepAt
		r.Revoked, r.SweepAt = true, now.Unix()
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		if also != nil {
			if cmps, ops, err = also(ctx, r); err != nil {
				return err
			}
		}
		ops = append(ops, clientv3.OpPut(s.aliasKey(id), s.value(r)))
		if old != r.SweepAt {
			ops = append(ops, clientv3.OpDelete(s.sweepKey(old, id)), clientv3.OpPut(s.sweepKey(r.SweepAt, id), ""))
		}
		if len(cmps) == 0 {
			return s.swap(ctx, id, snap.modRev, ops...)
		}
		ok, err := s.txn(ctx, append(cmps, clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", snap.modRev)), ops...)
		if err != nil {
			return err
		}
		if !ok {
			return errConflict
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("etcd: revoke %s: %w", id, err)
	}
	return nil
}

// swap applies ops if alias id's record is still at modRev, else reports
// a conflict.
func (s *Store) swap(ctx context.Context, id string, modRev int64, ops ...clientv3.Op) error {
	ok, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", modRev)}, ops...)
	if err != nil {
		return err
	}
	if !ok {
		return errConflict
	}
	return nil
}

// livePage is how many aliases Live reads at a time.
const livePage = 500

// Live calls fn for every alias alive at now, in id order, reading a page
// at a time at one revision.
func (s *Store) Live(ctx context.Context, now time.Time, fn func(alias.Alias) bool) error {
	pfx := s.p + "a/"
	end := clientv3.GetPrefixRangeEnd(pfx)
	from := pfx
	var rev int64
	for {
		pctx, cancel := s.call(ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(livePage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(pctx, from, opts...)
		if err != nil {
			cancel()
			return fmt.Errorf("etcd: list: %w", unavailable(err))
		}
		rev = resp.Header.Revision
		pending := map[string]int{}
		if len(resp.Kvs) > 0 {
			first := strings.TrimPrefix(string(resp.Kvs[0].Key), pfx)
			last := strings.TrimPrefix(string(resp.Kvs[len(resp.Kvs)-1].Key), pfx)
			rr, err := s.cli.Get(pctx, s.resPrefix(first), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.resPrefix(last))), clientv3.WithKeysOnly(), clientv3.WithRev(rev))
			if err != nil {
				cancel()
				return fmt.Errorf("etcd: list: %w", unavailable(err))
			}
			for _, kv := range rr.Kvs {
				rest := strings.TrimPrefix(string(kv.Key), s.p+"r/")
				if i := strings.IndexByte(rest, '/'); i > 0 {
					pending[rest[:i]]++
				}
			}
		}
		cancel()
		for _, kv := range resp.Kvs {
			id := strings.TrimPrefix(string(kv.Key), pfx)
			r, err := decode(id, kv.Value)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if a := r.alias(pending[id]); !a.Dead(now) && !fn(a) {
				return nil
			}
		}
		if !resp.More {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
