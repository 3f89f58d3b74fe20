// Package store is the contract between tempalias and the engines that keep
// its aliases (store/boltstore, one host; an etcd engine for several): the
// errors every engine answers with, the Reservation of one use, and Engine,
// the whole of what the program needs from a store. It holds no engine
// code. The front ends declare their own smaller interfaces with these
// types; store/storetest checks that an engine keeps the guarantees.
package store

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/tempalias/tempalias/alias"
)

var (
	// ErrNotFound is the answer for an id that has no live alias: unknown,
	// expired, used up or revoked, deliberately alike.
	ErrNotFound = alias.ErrNotFound
	// ErrExhausted is Reserve's answer when the alias is alive but every
	// remaining use is reserved by transactions still under way.
	ErrExhausted = alias.ErrExhausted
	// ErrTargetFull is Create's answer when the target already has
	// Spec.MaxLive live aliases.
	ErrTargetFull = alias.ErrTargetFull
	// ErrUnavailable is wrapped by any error that means the store cannot
	// be reached (an etcd cluster without quorum, say): nothing was
	// decided, and the same call may succeed later. HTTP answers it with
	// 503, SMTP with a 4xx.
	ErrUnavailable = errors.New("the store cannot be reached")
	// ErrSenderNotAllowed is Reserve's (and Commit's) answer when the
	// alias is alive but its allow-from list does not name the envelope
	// sender: SMTP refuses it exactly as an unknown alias.
	ErrSenderNotAllowed = errors.New("sender not allowed by the alias")
	// ErrSettled is the answer to settling a Reservation a second time.
	ErrSettled = errors.New("store: reservation already settled")
	// ErrCreationsPerDay is Create's answer when CreationsPerDay aliases
	// were made for the target on this Day already.
	ErrCreationsPerDay = errors.New("store: too many aliases made for the target today")
	// ErrConfirmationsPerDay is Create's answer for a Pending alias when
	// ConfirmationsPerDay pending aliases (each of which mails its target)
	// were made for the target on this Day already.
	ErrConfirmationsPerDay = errors.New("store: too many confirmation mails for the target today")
	// ErrMessagesPerHour is Reserve's answer, with PerHour(n), when the
	// alias is alive and has a use to reserve but n messages count
	// against its hour already (alias.Alias.HourTaken: delivered in its
	// window, or reserved).
	ErrMessagesPerHour = errors.New("store: the alias relayed its messages for the hour")
)

// Day is the day that the per-target daily limits count in: a UTC
// calendar day, numbered from the Unix epoch. The count starts again at
// midnight UTC, and an engine forgets the counts of days gone by.
func Day(t time.Time) int64 {
	d := t.Unix() / 86400
	if t.Unix() < 0 && t.Unix()%86400 != 0 {
		d--
	}
	return d
}

// NextDay is when the Day of t ends: the time a refusal for a daily limit
// tells the client to try again at.
func NextDay(t time.Time) time.Time { return time.Unix((Day(t)+1)*86400, 0).UTC() }

// Engine is a store as the program holds it: the union of what the SMTP
// and HTTP front ends, the admin commands and the sweeper need. Every
// method takes the caller's context first, so that a session's or a
// request's deadline reaches the store. Methods are safe for concurrent
// use.
type Engine interface {
	// Create stores a new alias for spec with a fresh id, never issued
	// before, and returns it with its management token (only a hash of
	// which is kept); with Pending, also with the confirmation token. The
	// alias is durable when Create returns. The per-target limits (see
	// CreateOptions, and spec.MaxLive: ErrTargetFull) are counted in the
	// transaction that creates, so that concurrent creations, on one host
	// or on several, never pass them; a creation refused by one of them
	// counts against none.
	Create(ctx context.Context, spec alias.Spec, now time.Time, opts ...CreateOption) (Created, error)
	// Get returns the alias id if it is alive at now.
	Get(ctx context.Context, id string, now time.Time) (alias.Alias, error)
	// Held returns alias id as its holder sees it: while alive, and once
	// used up until it expires, with the mail refused since.
	Held(ctx context.Context, id string, now time.Time) (alias.Alias, error)
	// Authorized is Held for the holder of the alias's token; a wrong
	// token is ErrNotFound.
	Authorized(ctx context.Context, id, token string, now time.Time) (alias.Alias, error)
	// Reserve takes one use of alias id for a message about to be
	// relayed: ErrNotFound if it is not alive, ErrExhausted if every
	// remaining use is reserved already. With From(sender), an alias
	// whose allow-from does not match sender gives ErrSenderNotAllowed
	// (counted as refused, no use taken), and the commit applies
	// lock-sender and checks allow-from again. With PerHour(n), an alias
	// with n messages against its hour gives ErrMessagesPerHour, decided
	// in the transaction that reserves, so that concurrent sessions on
	// any number of hosts never relay more; every commit counts in the
	// alias's hour, and a refund after the commit takes it back out.
	Reserve(ctx context.Context, id string, now time.Time, opts ...ReserveOption) (*Reservation, error)
	// Change applies c to alias id if token is its token, in one
	// transaction (or compare-and-swap) with the read it is checked
	// against, and returns the alias changed; ChangeID without a token
	// (for the operator). The alias must be held (see Held): a
	// wrong token, unknown, expired or revoked alias is ErrNotFound; a
	// max-usage below the uses delivered and reserved is an
	// *alias.InvalidError.
	Change(ctx context.Context, id, token string, c alias.Change, now time.Time) (alias.Alias, error)
	ChangeID(ctx context.Context, id string, c alias.Change, now time.Time) (alias.Alias, error)
	// LinkKey is the store's key for revoke links (alias.RevokeMAC): made
	// once per store and kept in it, so that links survive restarts and
	// hold on every host.
	LinkKey() []byte
	// Revoke kills alias id if token is its token; RevokeID without one
	// (for the operator).
	Revoke(ctx context.Context, id, token string, now time.Time) error
	RevokeID(ctx context.Context, id string, now time.Time) error
	// Withdraw is Revoke for an alias that must count as never made (its
	// confirmation mail could not be sent): in the same transaction it
	// gives back what its creation counted against its target's day
	// (CreationsPerDay, and ConfirmationsPerDay while it is pending).
	Withdraw(ctx context.Context, id, token string, now time.Time) error
	// TargetVerified reports whether target confirmed it wants mail and
	// that has not run out at now.
	TargetVerified(ctx context.Context, target string, now time.Time) (bool, error)
	// Confirm takes a confirmation token (once): its pending alias starts
	// relaying and its target counts as verified until now+remember.
	Confirm(ctx context.Context, token string, now time.Time, remember time.Duration) (alias.Alias, error)
	// LiveForTarget counts the aliases alive at now that forward to target.
	LiveForTarget(ctx context.Context, target string, now time.Time) (int, error)
	// Live calls fn for every alias alive at now, in id order; fn
	// returning false stops the walk.
	Live(ctx context.Context, now time.Time, fn func(alias.Alias) bool) error
	// Sweep deletes aliases expired or revoked at now, at most batch per
	// write, keeping their ids; it returns how many it deleted.
	Sweep(ctx context.Context, now time.Time, batch int) (int, error)
	// Backup writes a consistent copy of the store to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Export writes every stored alias (with its hourly window), swept
	// id, verified target and per-target daily count, and the store's
	// keys, as an engine-neutral stream (see ExportVersion), read from one
	// consistent view while the store stays in use.
	Export(ctx context.Context, w io.Writer) error
	// Import reads an export into this store, which must be new: one that
	// ever issued an id refuses it with ErrImportNotEmpty, and an id that
	// is already taken (another writer meanwhile) is an error naming it.
	// It takes on the export's keys, so no other call may run on the
	// store (nor, for a shared store, on another host) during an import.
	// A malformed line is an error naming it; what came before it stays
	// imported.
	Import(ctx context.Context, r io.Reader) error
	// Stats counts stored aliases and issued ids.
	Stats(ctx context.Context) (Stats, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store; reservations not yet settled are released
	// by the next owner (see Reservation).
	Close() error
}

// Created is what Create returns.
type Created struct {
	Alias alias.Alias
	Token string // the management token, shown once
	// Confirm is the confirmation token of a Pending alias, else "".
	Confirm string
}

// CreateOptions are the choices Create offers; engines read them with
// NewCreateOptions.
type CreateOptions struct {
	// Pending makes the alias refuse mail, like an unknown one, until its
	// target confirms with Created.Confirm (see Engine.Confirm).
	Pending bool
	// CreationsPerDay bounds the aliases made for one target a Day
	// (ErrCreationsPerDay); ConfirmationsPerDay bounds the Pending ones
	// among them (ErrConfirmationsPerDay). 0: no limit, and nothing is
	// counted.
	CreationsPerDay     int
	ConfirmationsPerDay int
}

// CreateOption sets one of CreateOptions.
type CreateOption func(*CreateOptions)

// Pending creates the alias unverified: see CreateOptions.Pending.
func Pending() CreateOption { return func(o *CreateOptions) { o.Pending = true } }

// CreationsPerDay limits the aliases made for the target a day: see
// CreateOptions.CreationsPerDay.
func CreationsPerDay(n int) CreateOption { return func(o *CreateOptions) { o.CreationsPerDay = n } }

// ConfirmationsPerDay limits the pending aliases made for the target a
// day: see CreateOptions.ConfirmationsPerDay.
func ConfirmationsPerDay(n int) CreateOption {
	return func(o *CreateOptions) { o.ConfirmationsPerDay = n }
}

// NewCreateOptions applies opts.
func NewCreateOptions(opts []CreateOption) CreateOptions {
	var o CreateOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ReserveOptions are the choices Reserve offers; engines read them with
// NewReserveOptions.
type ReserveOptions struct {
	// Sender is the envelope sender ("" for the null sender), when
	// HasSender.
	Sender    string
	HasSender bool
	// PerHour bounds the messages counted against the alias's hour (see
	// ErrMessagesPerHour); 0: no limit.
	PerHour int
}

// ReserveOption sets one of ReserveOptions.
type ReserveOption func(*ReserveOptions)

// From names the message's envelope sender ("" for the null sender) for
// allow-from and lock-sender. Without it neither applies.
func From(sender string) ReserveOption {
	return func(o *ReserveOptions) { o.Sender, o.HasSender = sender, true }
}

// PerHour limits the messages the alias relays an hour: see
// ReserveOptions.PerHour.
func PerHour(n int) ReserveOption { return func(o *ReserveOptions) { o.PerHour = n } }

// NewReserveOptions applies opts.
func NewReserveOptions(opts []ReserveOption) ReserveOptions {
	var o ReserveOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Stats is a summary for operators and metrics.
type Stats struct {
	Aliases int    // stored aliases, dead ones not yet swept included
	Issued  uint64 // ids ever issued
}
