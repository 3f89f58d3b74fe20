package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// recentUses is how many committed reservation keys a record remembers,
// so that a repeated commit is recognised and a committed use can be
// given back while its message waits for the smarthost's verdict. A key
// pushed out by that many later commits of the same alias can no longer
// be given back: its use stays spent, never delivered twice.
const recentUses = 32

// errReservationLost is a commit whose reservation is gone: this host's
// lease ran out (it could not reach the cluster for longer than its TTL),
// so another host may have taken the use. The message must not be
// finished.
var errReservationLost = errors.New("reservation expired with this host's lease")

// Reserve takes one use of alias id: a key of its own under r/, on this
// host's lease, written only if neither the record nor the alias's
// reservations changed since they were read, so that two hosts racing
// for the last use are decided by the cluster. With store.From, a sender
// that allow-from does not take is ErrSenderNotAllowed, counted as a
// refusal, and nothing is written.
func (s *Store) Reserve(ctx context.Context, id string, now time.Time, opts ...store.ReserveOption) (*store.Reservation, error) {
	o := store.NewReserveOptions(opts)
	ctx, cancel := s.call(ctx)
	defer cancel()
	id = strings.ToLower(id)
	var res *store.Reservation
	defer s.turns.lock(id)()
	err := retry(ctx, func() error {
		// A key of its own for every attempt: after a write that timed
		// out, forget deletes that attempt's key, which must never be a
		// later attempt's reservation.
		key := newKey()
		snap, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		a := snap.r.alias(snap.pending)
		switch {
		case a.Dead(now):
			s.countRefused(&a, now)
			return store.ErrNotFound
		case a.Unverified:
			return store.ErrNotFound
		case o.HasSender && !a.SenderAllowed(o.Sender):
			s.countRefusedID(id)
			return store.ErrSenderNotAllowed
		case !a.CanReserve(now):
			return store.ErrExhausted
		case o.PerHour > 0 && a.HourTaken(now) >= o.PerHour:
			// Decided on the record and the reservations as read: the
			// write below compares both, so a commit or a reservation
			// meanwhile (on any host) makes this attempt read again.
			return store.ErrMessagesPerHour
		case a.MaxUsage == 0 && o.PerHour <= 0:
			// Nothing to count against: nothing is written. Commit still
			// counts the delivery.
			res = store.NewReservation(a, key, s, opts...)
			s.reserved.Store(key, snap)
			return nil
		}
		sess, err := s.session(ctx)
		if err != nil {
			return err
		}
		ok, err := s.txn(ctx, []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", snap.modRev),
			clientv3.Compare(clientv3.ModRevision(s.resPrefix(id)), "<", snap.rev+1).WithPrefix(),
		}, clientv3.OpPut(s.resPrefix(id)+key, "", clientv3.WithLease(sess.Lease())))
		if err != nil {
			// The write may still take effect: take the key back later,
			// so that it does not hold a use for as long as this host
			// lives.
			go s.forget(s.resPrefix(id) + key)
			return err
		}
		if !ok {
			return errConflict
		}
		a.Pending++
		res = store.NewReservation(a, key, s, opts...)
		s.reserved.Store(key, snap)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExhausted) || errors.Is(err, store.ErrSenderNotAllowed) || errors.Is(err, store.ErrMessagesPerHour) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("etcd: reserve %s: %w", id, err)
	}
	return res, nil
}

// forgetFor is how long forget keeps trying.
const forgetFor = time.Minute

// forget deletes a reservation key whose write timed out, trying until it
// succeeds or forgetFor has passed; after that the key goes with this
// host's lease.
func (s *Store) forget(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), forgetFor)
	defer cancel()
	for ctx.Err() == nil && s.cli.Ctx().Err() == nil {
		cctx, ccancel := s.call(ctx)
		_, err := s.cli.Delete(cctx, key)
		ccancel()
		if err == nil || errors.Is(err, context.Canceled) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func newKey() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Commit counts res's use in the record and deletes its reservation, in
// one transaction that requires the reservation to still exist. The
// reservation's key stays in the record (see recentUses), so a commit
// repeated after a lost answer finds its work done. The record's
// allow-from is checked again and lock-sender applied in the same
// compare-and-swap, so two racing first messages cannot both lock: the
// later one is refused with ErrSenderNotAllowed unless its sender fits.
func (s *Store) Commit(ctx context.Context, res *store.Reservation, now time.Time) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	id, key := res.Alias.ID, res.Key()
	limited := held(res)
	// First try on the record as Reserve read it, saving a read: if
	// anything changed since, the compare fails and the loop reads again.
	cached, fresh := s.reserved.LoadAndDelete(key)
	defer s.turns.lock(id)()
	err := retry(ctx, func() error {
		var snap snapshot
		var resKV bool
		var err error
		if fresh {
			fresh = false
			snap, resKV = cached.(snapshot), true
			r := *snap.r
			r.Recent = slices.Clone(r.Recent)
			snap.r = &r
		} else if limited {
			snap, resKV, err = s.loadUse(ctx, id, key)
		} else {
			// With the count of reservations, for a limit set since.
			snap, err = s.load(ctx, id)
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil // swept meanwhile; the use is spent either way
		}
		if err != nil {
			return err
		}
		r := snap.r
		if slices.Contains(r.Recent, key) {
			return nil // a repeat: committed already
		}
		if limited && !resKV {
			return errReservationLost
		}
		// Reserved while the alias had no limit, which a change set
		// since: the uses left are the reserved ones' (or none). The
		// compare on the reservations below makes a reservation taken
		// meanwhile, on any host, read again.
		lateLimit := !limited && r.MaxUsage > 0
		if lateLimit && r.Used+snap.pending >= r.MaxUsage {
			return store.ErrExhausted
		}
		a := r.alias(0)
		if ok, _ := res.Admits(&a); !ok {
			return store.ErrSenderNotAllowed
		}
		r.setAllowFrom(&a)
		r.Used++
		a.CountHour(now)
		r.setHour(&a)
		r.Recent = append(r.Recent, key)
		if len(r.Recent) > recentUses {
			r.Recent = slices.Delete(r.Recent, 0, len(r.Recent)-recentUses)
		}
		ops := []clientv3.Op{clientv3.OpPut(s.aliasKey(id), s.value(r))}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.aliasKey(id)), "=", snap.modRev)}
		if limited {
			ops = append(ops, clientv3.OpDelete(s.resPrefix(id)+key))
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.resPrefix(id)+key), ">", 0))
		}
		if lateLimit {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.resPrefix(id)), "<", snap.rev+1).WithPrefix())
		}
		if a := r.alias(0); a.UsedUp() {
			// No longer live: out of the per-target index, so counting a
			// target's live aliases never walks used-up ones.
			ops = append(ops, clientv3.OpDelete(s.targetPrefix(r.TargetHash)+id))
		}
		ok, err := s.txn(ctx, cmps, ops...)
		if err != nil {
			return err
		}
		if !ok {
			return errConflict
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("etcd: commit %s: %w", id, err)
	}
	return nil
}

// Refund gives res's use back. The record decides, not committed: a
// commit whose answer was lost may have taken effect, and its key in the
// record says so (it counted in the hour of committedAt, the now it was
// called with, whatever it answered). An open reservation is deleted
// (deleting a key that is gone changes nothing, so repeating is
// harmless); a committed use is taken out of the record, once, with its
// hold on the lock-sender lock its commit set or held (see
// store.Reservation.Unlock). A refund the cluster did not answer in
// time goes on in the background, for as long as forget would: else its
// use stays held for as long as this host lives.
func (s *Store) Refund(ctx context.Context, res *store.Reservation, _ bool, committedAt, _ time.Time) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	s.reserved.Delete(res.Key())
	err := s.refund(ctx, res, committedAt)
	if errors.Is(err, store.ErrUnavailable) {
		go func() {
			ctx, cancel := context.WithTimeout(s.cli.Ctx(), forgetFor)
			defer cancel()
			if err := s.refund(ctx, res, committedAt); err != nil {
				// The use stays counted (the safe side) and its
				// reservation key goes with this host's lease.
				s.log.Warn("etcd: a refund was not written; the use stays counted", "alias", res.Alias.ID, "err", err)
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("etcd: refund %s: %w", res.Alias.ID, err)
	}
	return nil
}

// refund is Refund's work, safe to repeat: the record decides.
func (s *Store) refund(ctx context.Context, res *store.Reservation, committedAt time.Time) error {
	id, key := res.Alias.ID, res.Key()
	defer s.turns.lock(id)()
	limited := held(res)
	return retry(ctx, func() error {
		snap, resKV, err := s.loadUse(ctx, id, key)
		if errors.Is(err, store.ErrNotFound) {
			if limited {
				_, err := s.cli.Delete(ctx, s.resPrefix(id)+key)
				return unavailable(err)
			}
			return nil
		}
		if err != nil {
			return err
		}
		r := snap.r
		i := slices.Index(r.Recent, key)
		if i < 0 {
			if limited && resKV {
				_, err := s.cli.Delete(ctx, s.resPrefix(id)+key)
				return unavailable(err)
			}
			return nil // nothing reserved, or given back already
		}
		before := r.alias(0)
		wasUsedUp := before.UsedUp()
		r.Used--
		before.UncountHour(committedAt)
		r.setHour(&before)
		if res.Unlock(&before) { // the message was not delivered: it holds no lock
			r.setAllowFrom(&before)
		}
		r.Recent = slices.Delete(r.Recent, i, i+1)
		ops := []clientv3.Op{clientv3.OpPut(s.aliasKey(id), s.value(r))}
		if wasUsedUp && !r.Revoked {
			ops = append(ops, clientv3.OpPut(s.targetPrefix(r.TargetHash)+id, ""))
		}
		return s.swap(ctx, id, snap.modRev, ops...)
	})
}

// held reports whether res holds a key of its own under r/: a use of an
// alias with a use limit, or any use reserved under an hourly limit
// (which counts against the hour until it is settled).
func held(res *store.Reservation) bool { return res.Alias.MaxUsage > 0 || res.PerHour > 0 }

// loadUse is load, also telling whether reservation key of alias id is
// still open.
func (s *Store) loadUse(ctx context.Context, id, key string) (snapshot, bool, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.aliasKey(id)),
		clientv3.OpGet(s.resPrefix(id)+key, clientv3.WithCountOnly()),
		clientv3.OpGet(s.formatKey()),
	).Commit()
	if err != nil {
		return snapshot{}, false, unavailable(err)
	}
	s.noteFormat(resp.Responses[2].GetResponseRange().Kvs)
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return snapshot{}, false, store.ErrNotFound
	}
	r, err := decode(id, kvs[0].Value)
	if err != nil {
		return snapshot{}, false, err
	}
	open := resp.Responses[1].GetResponseRange().Count > 0
	return snapshot{r: r, modRev: kvs[0].ModRevision, rev: resp.Header.Revision, format: storedFormat(kvs[0].Value)}, open, nil
}

// maxUnflushed bounds the ids whose refusals are counted between two
// flushes.
const maxUnflushed = 1 << 16

// countRefused notes mail refused for a used-up alias still visible to
// its holder; the count reaches the cluster at the next Sweep or Close.
func (s *Store) countRefused(a *alias.Alias, now time.Time) {
	if !a.UsedUp() || a.Gone(now) {
		return
	}
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	if _, ok := s.refused[a.ID]; ok || len(s.refused) < maxUnflushed {
		s.refused[a.ID]++
	}
}

// countRefusedID notes mail refused for alias id, alive, because its
// allow-from does not take the sender.
func (s *Store) countRefusedID(id string) {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	if _, ok := s.refused[id]; ok || len(s.refused) < maxUnflushed {
		s.refused[id]++
	}
}

func (s *Store) unflushed(id string) int {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	return s.refused[id]
}

// flushCounts adds this host's refusal counts to the records; what cannot
// be written goes back into memory for the next flush.
func (s *Store) flushCounts(ctx context.Context) error {
	s.refusedMu.Lock()
	counts := s.refused
	s.refused = make(map[string]int)
	s.refusedMu.Unlock()
	var failed error
	for id, n := range counts {
		if failed != nil {
			s.keepCount(id, n)
			continue
		}
		err := retry(ctx, func() error {
			snap, err := s.load(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			snap.r.Refused += n
			return s.swap(ctx, id, snap.modRev, clientv3.OpPut(s.aliasKey(id), s.value(snap.r)))
		})
		if err != nil {
			failed = fmt.Errorf("etcd: flush counts: %w", err)
			s.keepCount(id, n)
		}
	}
	return failed
}

func (s *Store) keepCount(id string, n int) {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	if _, ok := s.refused[id]; ok || len(s.refused) < maxUnflushed {
		s.refused[id] += n
	}
}

// keyed is a mutex per alias id, so that this host's sessions take turns
// on one alias instead of racing each other through the cluster: each
// reservation or commit changes what the others compare against, so
// many sessions on one alias would mostly retry. Hosts still race each
// other, decided by the cluster's compares.
type keyed struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu    sync.Mutex
	users int
}

// lock takes id's mutex and returns its unlock.
func (k *keyed) lock(id string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyLock)
	}
	l := k.locks[id]
	if l == nil {
		l = new(keyLock)
		k.locks[id] = l
	}
	l.users++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, id)
		}
		k.mu.Unlock()
	}
}
