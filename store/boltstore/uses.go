package boltstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// Reserve takes one use of alias id for a message about to be relayed. It
// fails with ErrNotFound if the alias is not alive and with ErrExhausted
// if its remaining uses are all reserved already. The use is filed under
// the reservation's key in the reserved bucket, in the transaction that
// takes it, so that a reservation this process never settles is found and
// released by the next Open.
//
// With store.From, a live alias whose allow-from does not take the sender
// gives ErrSenderNotAllowed, counted as a refusal, and nothing is written.
// With store.PerHour, an alias whose hour is full (alias.HourTaken) gives
// ErrMessagesPerHour, decided again in the write that reserves; such a
// reservation is filed even for an alias without a use limit, since it
// counts against the hour until it is settled.
func (s *Store) Reserve(ctx context.Context, id string, now time.Time, opts ...store.ReserveOption) (*store.Reservation, error) {
	o := store.NewReserveOptions(opts)
	id = strings.ToLower(id)
	if !alias.ValidID(id) {
		return nil, store.ErrNotFound
	}
	// Most mail to a temporary alias service is for dead aliases: answer
	// those from a read transaction without queueing for the writer, and
	// from the record's header alone where it tells (record.go).
	var a alias.Alias
	var found, dead, usedUp bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAliases).Get([]byte(id))
		if v == nil || isTombstone(v) {
			return nil
		}
		found = true
		var ok bool
		if dead, usedUp, ok = quickDead(v, now); ok {
			return nil
		}
		r, err := decode([]byte(id), v)
		if err != nil {
			return err
		}
		a = r.Alias
		return nil
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("store: reserve %s: %w", id, err)
	case !found:
		return nil, store.ErrNotFound
	case dead:
		if usedUp {
			s.countRefused(id)
		}
		return nil, store.ErrNotFound
	case a.Dead(now):
		if a.UsedUp() && !a.Gone(now) {
			s.countRefused(id)
		}
		return nil, store.ErrNotFound
	case a.Unverified:
		return nil, store.ErrNotFound
	case o.HasSender && !a.SenderAllowed(o.Sender):
		s.countRefused(id)
		return nil, store.ErrSenderNotAllowed
	case !a.CanReserve(now):
		return nil, store.ErrExhausted
	case o.PerHour > 0 && a.HourTaken(now) >= o.PerHour:
		return nil, store.ErrMessagesPerHour
	case a.MaxUsage == 0 && o.PerHour <= 0:
		// Nothing to count against: nothing is written, and a refund
		// before the commit has nothing to give back. The commit still
		// counts the delivery for the relayed statistic.
		return store.NewReservation(a, "", settler{s}, opts...), nil
	}
	key := newKey()
	got, err := write(ctx, s.w, func(tx *bolt.Tx) (alias.Alias, error) {
		r, err := get(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return alias.Alias{}, refuse(err)
		}
		if err != nil {
			return alias.Alias{}, err
		}
		switch {
		case r.Dead(now):
			return r.Alias, refuse(store.ErrNotFound)
		case r.Unverified:
			return alias.Alias{}, refuse(store.ErrNotFound)
		case o.HasSender && !r.SenderAllowed(o.Sender):
			return alias.Alias{}, refuse(store.ErrSenderNotAllowed)
		case !r.CanReserve(now):
			return alias.Alias{}, refuse(store.ErrExhausted)
		case o.PerHour > 0 && r.HourTaken(now) >= o.PerHour:
			return alias.Alias{}, refuse(store.ErrMessagesPerHour)
		}
		r.Pending++
		if err := tx.Bucket(bucketReserved).Put([]byte(key), []byte(id)); err != nil {
			return alias.Alias{}, err
		}
		return r.Alias, update(tx, r)
	})
	if errors.Is(err, store.ErrSenderNotAllowed) {
		s.countRefused(id)
		return nil, err
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExhausted) || errors.Is(err, store.ErrMessagesPerHour) {
		if got.UsedUp() && !got.Gone(now) {
			s.countRefused(id)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("store: reserve %s: %w", id, err)
	}
	return store.NewReservation(got, key, settler{s}, opts...), nil
}

// newKey is a reservation's identity: random, so that no two
// reservations of one file share one.
func newKey() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errNotReserved is a commit of a reservation the file does not hold.
var errNotReserved = errors.New("reservation not held")

// settler settles this store's reservations (see store.Settler). It is
// not a method set of Store, so that nothing settles a use but its
// Reservation.
type settler struct{ s *Store }

// Commit turns the reservation into a delivered use. An alias whose uses
// are all delivered stays filed at its expiry: until then its holder can
// see it, and how much mail it refused since. A sender that allow-from no
// longer takes (changed, or locked by a message that committed first) is
// refused with ErrSenderNotAllowed, the reservation left open for its
// refund; the first commit of a lock-sender alias locks it.
func (st settler) Commit(ctx context.Context, res *store.Reservation, now time.Time) error {
	id, key := res.Alias.ID, res.Key()
	_, err := write(ctx, st.s.w, func(tx *bolt.Tx) (struct{}, error) {
		r, err := get(tx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return struct{}{}, err
		}
		if err == nil {
			if ok, _ := res.Admits(&r.Alias); !ok {
				return struct{}{}, refuse(store.ErrSenderNotAllowed)
			}
		}
		if key == "" && r != nil && r.MaxUsage > 0 && r.Used+r.Pending >= r.MaxUsage {
			// Reserved while the alias had no limit, which a change set
			// since: the uses left are the reserved ones' (or none).
			return struct{}{}, refuse(store.ErrExhausted)
		}
		if key != "" {
			reserved := tx.Bucket(bucketReserved)
			if reserved.Get([]byte(key)) == nil {
				return struct{}{}, refuse(errNotReserved)
			}
			if err := reserved.Delete([]byte(key)); err != nil {
				return struct{}{}, err
			}
		}
		if r == nil {
			return struct{}{}, nil // swept meanwhile; the use is spent either way
		}
		if key != "" && r.Pending > 0 {
			r.Pending--
		}
		r.Used++
		r.CountHour(now)
		if r.UsedUp() && len(r.TargetHash) > 0 {
			// No longer live: out of the per-target index now, so that
			// counting a target's live aliases never walks used-up ones.
			// The sweeper's delete of the entry later finds nothing.
			if err := tx.Bucket(bucketTargets).Delete(r.targetEntry()); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, update(tx, r)
	})
	return wrap("commit", id, err)
}

// Refund gives the use back: an open reservation is released, a
// committed use (the smarthost refused the message) is no longer counted
// as delivered, nor in the hour it was committed in, nor as holding the
// lock-sender lock its commit set or held (see store.Reservation.Unlock).
func (st settler) Refund(ctx context.Context, res *store.Reservation, committed bool, committedAt, now time.Time) error {
	id, key := res.Alias.ID, res.Key()
	if !committed && key == "" {
		return nil // an unlimited alias reserved nothing
	}
	// The refund must happen even if the session's deadline has passed
	// (it is how a timed-out transaction gives its use back).
	ctx = context.WithoutCancel(ctx)
	err := st.s.w.do(ctx, func(tx *bolt.Tx) error {
		if !committed {
			reserved := tx.Bucket(bucketReserved)
			if reserved.Get([]byte(key)) == nil {
				return nil // released already
			}
			if err := reserved.Delete([]byte(key)); err != nil {
				return err
			}
			return release(tx, id)
		}
		r, err := get(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if r.Used == 0 {
			return nil
		}
		wasUsedUp := r.UsedUp()
		r.Used--
		r.UncountHour(committedAt)
		res.Unlock(&r.Alias) // the message was not delivered: it holds no lock
		if wasUsedUp && !r.UsedUp() && !r.Gone(now) && len(r.TargetHash) > 0 {
			// Live again: back in the per-target index Commit took it out of.
			if err := st.s.indexTarget(tx, r); err != nil {
				return err
			}
		}
		return update(tx, r)
	})
	return wrap("refund", id, err)
}

// release gives back one reserved use of alias id, if it still exists.
func release(tx *bolt.Tx, id string) error {
	r, err := get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.Pending == 0 {
		return nil
	}
	r.Pending--
	return update(tx, r)
}

func wrap(op, id string, err error) error {
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", op, id, err)
	}
	return nil
}

// maxUnflushed bounds the ids whose refusals are counted between two
// flushes; refusals for further ids are not counted until the next one.
const maxUnflushed = 1 << 16

// countRefused notes that mail for alias id, used up but still visible
// to its holder, was refused; the count reaches the file at the next
// flush.
func (s *Store) countRefused(id string) {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	if _, ok := s.refused[id]; ok || len(s.refused) < maxUnflushed {
		s.refused[id]++
	}
}

// flushCounts adds the refusals counted in memory to the stored aliases.
// Sweep calls it, and Close; a crash loses the counts since the last call.
func (s *Store) flushCounts() error {
	s.refusedMu.Lock()
	counts := s.refused
	if len(counts) == 0 {
		s.refusedMu.Unlock()
		return nil
	}
	s.refused = make(map[string]int)
	s.refusedMu.Unlock()
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	// In slices, like the sweep, so the writer lock is never held long.
	for i := 0; i < len(ids); i += flushBatch {
		chunk := ids[i:min(i+flushBatch, len(ids))]
		err := s.w.do(context.Background(), func(tx *bolt.Tx) error {
			for _, id := range chunk {
				r, err := get(tx, id)
				if errors.Is(err, store.ErrNotFound) {
					continue // swept meanwhile
				}
				if err != nil {
					return err
				}
				r.Refused += counts[id]
				if err := update(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// Not written, this slice and the rest: back into the map,
			// as far as its bound allows.
			s.refusedMu.Lock()
			for _, id := range ids[i:] {
				if _, ok := s.refused[id]; ok || len(s.refused) < maxUnflushed {
					s.refused[id] += counts[id]
				}
			}
			s.refusedMu.Unlock()
			return fmt.Errorf("store: flush counts: %w", err)
		}
	}
	return nil
}

// flushBatch is how many aliases one flush transaction updates.
const flushBatch = 500

// unflushed is the count of refusals for id not yet written.
func (s *Store) unflushed(id string) int {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	return s.refused[id]
}
