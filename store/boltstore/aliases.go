package boltstore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// Create stores a new alias for spec with a fresh id and returns it with
// its management token; only the token's hash is kept. With
// store.Pending() the alias refuses mail until its target confirms with
// the returned confirmation token (see Confirm). The alias is on disk when
// Create returns.
func (s *Store) Create(ctx context.Context, spec alias.Spec, now time.Time, opts ...store.CreateOption) (store.Created, error) {
	o := store.NewCreateOptions(opts)
	pending := o.Pending
	c := store.Created{Token: alias.NewToken()}
	if pending {
		c.Confirm = alias.NewToken()
	}
	hash := s.targetHash(spec.Target)
	day := store.Day(now)
	takes := []dailyTake{{dailyKey(day, kindCreated, hash), o.CreationsPerDay, store.ErrCreationsPerDay}}
	if pending {
		takes = append(takes, dailyTake{dailyKey(day, kindConfirmed, hash), o.ConfirmationsPerDay, store.ErrConfirmationsPerDay})
	}
	a, err := write(ctx, s.w, func(tx *bolt.Tx) (alias.Alias, error) {
		// The daily limits before the live count: a target over both is
		// told about the day.
		if err := checkDaily(tx, takes); err != nil {
			return alias.Alias{}, err
		}
		if spec.MaxLive > 0 {
			if s.opts.NoTargetIndex {
				return alias.Alias{}, errNoTargetIndex
			}
			// Counted in the transaction that inserts, so two creations at
			// once cannot both take the last place.
			n, err := liveForTarget(tx, hash, now)
			if err != nil {
				return alias.Alias{}, err
			}
			if n >= spec.MaxLive {
				return alias.Alias{}, refuse(store.ErrTargetFull)
			}
		}
		id, err := s.newID(tx)
		if err != nil {
			return alias.Alias{}, err
		}
		r := &record{Alias: alias.Alias{
			ID:         id,
			Target:     spec.Target,
			Created:    now.UTC().Truncate(time.Second),
			Expires:    spec.Expires.UTC().Truncate(time.Second), // the sweep index counts seconds
			MaxUsage:   spec.MaxUsage,
			TokenHash:  alias.HashToken(c.Token),
			Unverified: pending,
			AllowFrom:  spec.AllowFrom,
			LockSender: spec.LockSender,
		}, TargetHash: hash, CountedCreation: o.CreationsPerDay > 0, CountedConfirmation: pending && o.ConfirmationsPerDay > 0}
		if pending {
			r.ConfirmHash = alias.HashToken(c.Confirm)
			if err := tx.Bucket(bucketConfirm).Put(r.ConfirmHash, []byte(id)); err != nil {
				return alias.Alias{}, err
			}
		}
		if err := s.indexTarget(tx, r); err != nil {
			return alias.Alias{}, err
		}
		if err := addStored(tx, 1); err != nil {
			return alias.Alias{}, err
		}
		if err := takeDaily(tx, takes...); err != nil {
			return alias.Alias{}, err
		}
		return r.Alias, put(tx, r, r.Expires)
	})
	if errors.Is(err, store.ErrTargetFull) || errors.Is(err, store.ErrCreationsPerDay) || errors.Is(err, store.ErrConfirmationsPerDay) {
		return store.Created{}, err
	}
	if err != nil {
		return store.Created{}, fmt.Errorf("store: create: %w", err)
	}
	c.Alias = a
	return c, nil
}

// targetHash is a keyed hash of a target, so that the per-target buckets
// do not list addresses.
func (s *Store) targetHash(target string) []byte {
	m := hmac.New(sha256.New, s.targetKey)
	m.Write([]byte(alias.TargetKey(target)))
	return m.Sum(nil)[:16]
}

// LiveForTarget counts the aliases alive at now that forward to target.
func (s *Store) LiveForTarget(ctx context.Context, target string, now time.Time) (int, error) {
	var n int
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		if s.opts.NoTargetIndex {
			n, err = liveForTargetScan(tx, s.targetHash(target), now)
		} else {
			n, err = liveForTarget(tx, s.targetHash(target), now)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: count for target: %w", err)
	}
	return n, nil
}

// liveForTarget counts the live aliases whose target hashes to prefix.
func liveForTarget(tx *bolt.Tx, prefix []byte, now time.Time) (int, error) {
	n := 0
	c := tx.Bucket(bucketTargets).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		r, err := get(tx, string(k[len(prefix):]))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if !r.Dead(now) {
			n++
		}
	}
	return n, nil
}

// newID picks an id that was never issued and records it. The length grows
// with the number of ids issued; repeated collisions (a nearly full id
// space) make it grow further.
func (s *Store) newID(tx *bolt.Tx) (string, error) {
	meta, aliases := tx.Bucket(bucketMeta), tx.Bucket(bucketAliases)
	var issued uint64
	if v := meta.Get(keyIssued); len(v) == 8 {
		issued = binary.BigEndian.Uint64(v)
	}
	n := alias.IDLength(issued, s.opts.IDMinLength, s.opts.GuessProbability)
	for ; n <= alias.MaxIDLength; n++ {
		for try := 0; try < 8; try++ {
			id := alias.NewID(n)
			if aliases.Get([]byte(id)) != nil { // stored, or a tombstone
				continue
			}
			// The caller stores the record under id in this transaction.
			return id, meta.Put(keyIssued, binary.BigEndian.AppendUint64(nil, issued+1))
		}
	}
	return "", errors.New("id space exhausted")
}

// view runs fn in a read transaction, unless ctx has ended already.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// Get returns the alias id if it is alive at now.
func (s *Store) Get(ctx context.Context, id string, now time.Time) (alias.Alias, error) {
	a, err := s.read(ctx, id)
	if err != nil {
		return alias.Alias{}, err
	}
	if a.Dead(now) {
		return alias.Alias{}, store.ErrNotFound
	}
	return a, nil
}

// read returns alias id as stored, dead or alive, from a read transaction.
func (s *Store) read(ctx context.Context, id string) (alias.Alias, error) {
	id = strings.ToLower(id) // ids are lower case; people copy them otherwise
	if !alias.ValidID(id) {
		return alias.Alias{}, store.ErrNotFound
	}
	var r *record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		r, err = get(tx, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return alias.Alias{}, store.ErrNotFound
	}
	if err != nil {
		return alias.Alias{}, fmt.Errorf("store: get %s: %w", id, err)
	}
	return r.Alias, nil
}

// Authorized returns alias id to the holder of its token: while it lives,
// and once used up until it expires, with the mail it refused since.
// Expired and revoked aliases, unknown ids and wrong tokens all give
// ErrNotFound.
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

// Held returns alias id as its holder sees it (see Authorized), without
// asking for the token: for the operator.
func (s *Store) Held(ctx context.Context, id string, now time.Time) (alias.Alias, error) {
	a, err := s.read(ctx, id)
	if err != nil {
		return alias.Alias{}, err
	}
	if a.Gone(now) {
		return alias.Alias{}, store.ErrNotFound
	}
	a.Refused += s.unflushed(a.ID)
	return a, nil
}

// Revoke kills alias id if token is its token; a used-up alias may be
// revoked too, which removes it (and its target) at the next sweep instead
// of at its expiry. A wrong token, an unknown id and an expired or revoked
// alias all give ErrNotFound.
func (s *Store) Revoke(ctx context.Context, id, token string, now time.Time) error {
	return s.revoke(ctx, id, now, func(r *record) bool { return r.TokenMatches(token) }, nil)
}

// RevokeID kills alias id without asking for its token: for the operator.
func (s *Store) RevokeID(ctx context.Context, id string, now time.Time) error {
	return s.revoke(ctx, id, now, func(*record) bool { return true }, nil)
}

// Withdraw is Revoke that also gives back, in the same transaction, what
// the alias's creation counted against its target's day (the record
// says: nothing for a limit that was not set), to the day of its
// creation, so that a withdrawal just after midnight takes nothing from
// the new day.
func (s *Store) Withdraw(ctx context.Context, id, token string, now time.Time) error {
	return s.revoke(ctx, id, now, func(r *record) bool { return r.TokenMatches(token) }, func(tx *bolt.Tx, r *record) error {
		day := store.Day(r.Created)
		if r.Unverified && r.CountedConfirmation {
			if err := giveBackDaily(tx, dailyKey(day, kindConfirmed, r.TargetHash)); err != nil {
				return err
			}
		}
		if !r.CountedCreation {
			return nil
		}
		return giveBackDaily(tx, dailyKey(day, kindCreated, r.TargetHash))
	})
}

// revoke kills alias id if allowed says so, running also (if not nil) in
// the same transaction.
func (s *Store) revoke(ctx context.Context, id string, now time.Time, allowed func(*record) bool, also func(*bolt.Tx, *record) error) error {
	id = strings.ToLower(id)
	if !alias.ValidID(id) {
		return store.ErrNotFound
	}
	// Anyone may send a DELETE with a guessed id or token: answer those
	// from a read transaction, without a write and its fsync.
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		ok = err == nil && !r.Gone(now) && allowed(r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: revoke %s: %w", id, err)
	}
	if !ok {
		return store.ErrNotFound
	}
	_, err = write(ctx, s.w, func(tx *bolt.Tx) (struct{}, error) {
		r, err := get(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return struct{}{}, refuse(err)
		}
		if err != nil {
			return struct{}{}, err
		}
		if r.Gone(now) || !allowed(r) {
			return struct{}{}, refuse(store.ErrNotFound)
		}
		if also != nil {
			if err := also(tx, r); err != nil {
				return struct{}{}, err
			}
		}
		r.Revoked = true
		return struct{}{}, put(tx, r, now)
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("store: revoke %s: %w", id, err)
	}
	return err
}

// Live calls fn for every alias alive at now, in id order, from one read
// transaction; fn returning false stops the walk.
func (s *Store) Live(ctx context.Context, now time.Time, fn func(alias.Alias) bool) error {
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			if isTombstone(v) {
				return nil
			}
			if dead, _, ok := quickDead(v, now); ok && dead {
				return nil
			}
			r, err := decode(k, v)
			if err != nil {
				return err
			}
			if !r.Dead(now) && !fn(r.Alias) {
				return errStop
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("store: list: %w", err)
	}
	return nil
}

var errStop = errors.New("stop")
