package store

import (
	"context"
	"sync"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// A Reservation is one use of an alias taken at RCPT TO for a message
// under way, settled exactly once (DESIGN "Usage accounting"):
//
//   - Commit, just before the end of the message goes to the smarthost,
//     makes the use durable: from then on it counts as delivered, and a
//     crash keeps it spent (the message may have been delivered).
//   - Refund gives the use back: before Commit, for a transaction that
//     ended early (RSET, QUIT, disconnect, timeout, a refusal, a failed
//     commit); after Commit, when the smarthost refused the message.
//
// A second Refund, or a Commit after Refund or after Commit, returns
// ErrSettled and changes nothing, so a use is never given back twice. A
// reservation never settled (its process died) is released by the
// engine once its owner is gone.
//
// The key identifies the reservation in the engine's record, so that an
// engine whose writes may take effect after a timeout can repeat a commit
// or refund safely. An alias without a use limit may reserve nothing
// (its key is ""); its Commit still counts the delivery.
type Reservation struct {
	// Alias is the alias as it was when the use was reserved.
	Alias alias.Alias
	// Sender is the envelope sender it was reserved for, when HasSender
	// (see From): Commit applies lock-sender with it.
	Sender    string
	HasSender bool
	// PerHour is the hourly limit it was reserved under (see PerHour):
	// with one, an engine holds a reservation even for an alias without
	// a use limit, for the hour's count.
	PerHour int

	key string
	s   Settler
	// lockGen is the generation of the lock-sender lock that the last run
	// of the commit's transaction set or held (see Admits), 0 for none:
	// what a refund after the commit releases (see Unlock).
	lockGen uint64

	mu    sync.Mutex
	state reservationState
	// triedAt is the now of the last Commit call, whether or not it
	// succeeded: see Settler.Refund.
	triedAt time.Time
}

type reservationState int

const (
	reserved reservationState = iota
	committed
	settled
)

// Settler carries out a Reservation's settlement in an engine. The
// Reservation calls it at most once per step, in order: Commit at most
// once, then Refund at most once.
type Settler interface {
	// Commit makes r's use durable.
	Commit(ctx context.Context, r *Reservation, now time.Time) error
	// Refund gives r's use back: a reservation still open unless
	// committed (its Commit succeeded). at is the now of r's Commit call
	// whatever its outcome (the last, if several; zero if none): the hour
	// a commit that took effect counted the use in. An engine whose
	// writes may take effect though the call failed (an answer lost to a
	// timeout) decides by r's key, not by committed, and takes such a use
	// out of the hour of at too.
	Refund(ctx context.Context, r *Reservation, committed bool, at, now time.Time) error
}

// NewReservation is for engines: a reservation of a's use under key,
// settled through s, for the message that Reserve's opts describe.
func NewReservation(a alias.Alias, key string, s Settler, opts ...ReserveOption) *Reservation {
	o := NewReserveOptions(opts)
	return &Reservation{Alias: a, Sender: o.Sender, HasSender: o.HasSender, PerHour: o.PerHour, key: key, s: s}
}

// Admits reports whether a, the alias as stored at commit, still takes
// the reservation's sender, and applies lock-sender to a: the first
// message delivered locks, and each one after it under that lock holds it
// too (alias.HoldLock); locked reports whether a lock was set. Engines
// call it inside the commit's transaction, so two racing first messages
// cannot both lock; the reservation remembers the lock of the last call,
// for Unlock.
func (r *Reservation) Admits(a *alias.Alias) (ok, locked bool) {
	r.lockGen = 0
	if !r.HasSender {
		return true, false
	}
	if !a.SenderAllowed(r.Sender) {
		return false, false
	}
	if a.LockTo(r.Sender) {
		r.lockGen = a.LockGen
		return true, true
	}
	r.lockGen = a.HoldLock()
	return true, false
}

// Unlock takes the committed use out of the lock-sender lock it set or
// held (see Admits) on a, the alias as stored at a refund of that use
// (DESIGN: the lock is the sender domain of the first message delivered,
// and a message the smarthost refused was not delivered): once no
// message delivered holds it, the lock is undone and the next message
// locks instead. A lock replaced since, or an allow-from set by a change
// (a PATCH, even of the same list), is left alone. It reports whether a
// changed. Engines call it in the refund's transaction, and only for a
// use whose commit took effect.
func (r *Reservation) Unlock(a *alias.Alias) bool { return a.ReleaseLock(r.lockGen) }

// Key is the reservation's identity in the engine's record ("" when the
// alias has no use limit and nothing was reserved).
func (r *Reservation) Key() string { return r.key }

// Commit makes the use durable; call it just before the end of the
// message goes to the smarthost. If it fails the use is not committed and
// the message must not be finished: Refund it. A reservation that holds
// nothing (taken while the alias had no max-usage nor hourly limit) fails
// with ErrExhausted if a max-usage set since has no use left for it.
func (r *Reservation) Commit(ctx context.Context, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != reserved {
		return ErrSettled
	}
	r.triedAt = now
	if err := r.s.Commit(ctx, r, now); err != nil {
		return err
	}
	r.state = committed
	return nil
}

// Refund gives the use back, whether or not it was committed. The
// reservation is settled afterwards even if the engine failed: a use is
// lost rather than ever given back twice.
func (r *Reservation) Refund(ctx context.Context, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == settled {
		return ErrSettled
	}
	done := r.state == committed
	r.state = settled
	return r.s.Refund(ctx, r, done, r.triedAt, now)
}

// Committed reports whether Commit succeeded and no Refund followed.
func (r *Reservation) Committed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == committed
}
