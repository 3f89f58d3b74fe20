// Package boltstore keeps aliases in a bbolt file: creation with unique ids,
// look-up, the reserve/commit/refund cycle of one use, revocation, the sweep
// of dead aliases and hot backups.
//
// Writes that arrive together are committed together (see commit.go): each
// caller still waits for its own fsync, but one fsync serves many callers,
// so durable throughput grows with concurrency.
package boltstore

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tempalias/tempalias/alias"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrNotFound is returned for an id that has no live alias: unknown,
// expired, used up or revoked, deliberately alike.
var ErrNotFound = alias.ErrNotFound

// ErrExhausted is returned by Reserve when the alias is alive but every
// remaining use is reserved by transactions still under way.
var ErrExhausted = alias.ErrExhausted

var (
	// Every id ever issued is a key here: a stored alias's value is its
	// JSON record, a swept alias's is the tombstone. One bucket for both
	// means a creation writes one page at a random key, not two.
	bucketAliases = []byte("aliases")
	bucketOldIDs  = []byte("ids")   // format 1 kept issued ids here; migrated at Open
	bucketSweep   = []byte("sweep") // 8-byte unix seconds + id -> nothing
	bucketMeta    = []byte("meta")
	bucketConfirm = []byte("confirm")    // hash of a confirmation token -> id
	bucketTargets = []byte("targets")    // target hash + id -> nothing, per live alias
	bucketVerify  = []byte("verified")   // target hash -> 8-byte unix seconds it stays verified
	keyIssued     = []byte("issued")     // count of ids ever issued, uint64
	keyStored     = []byte("stored")     // count of records in the aliases bucket, uint64
	keyTargetKey  = []byte("target_key") // HMAC key for target hashes
	keyFormat     = []byte("format")     // the file's layout version, uint64
	present       = []byte{1}            // the value of set-like buckets
	tombstone     = []byte{0}            // a swept alias: only its id stays (records are JSON objects)
)

// format is the layout this version writes: 2 since issued ids became
// tombstones in the aliases bucket instead of keys of their own bucket.
// A file of a later format is refused rather than misread.
const format = 2

// isTombstone reports whether v, a value of the aliases bucket, marks a
// swept alias.
func isTombstone(v []byte) bool { return len(v) == 1 && v[0] == 0 }

// Options tune a store; zero values get defaults.
type Options struct {
	// IDMinLength is the shortest id ever handed out (default 6).
	IDMinLength int
	// GuessProbability bounds the chance that a random id of the current
	// length names a live alias (default one in a million).
	GuessProbability float64
	// OpenTimeout bounds the wait for another process's lock on the file
	// (default 1s).
	OpenTimeout time.Duration
	// MaxBatch bounds how many writes share one transaction (default 1000).
	MaxBatch int
}

// Store is an open alias database. Its methods are safe for concurrent use.
type Store struct {
	db        *bolt.DB
	opts      Options
	w         *committer
	targetKey []byte // keys the target hashes, so the file lists no addresses in those buckets

	// refused counts mail refused for used-up aliases since the last
	// FlushCounts: a refusal is the hot path and costs no write.
	refusedMu sync.Mutex
	refused   map[string]int
}

// maxUnflushed bounds the ids whose refusals are counted between two
// flushes; refusals for further ids are not counted until the next one.
const maxUnflushed = 1 << 16

// record is what is stored per alias: the alias and the key of its entry
// in the sweep index.
type record struct {
	alias.Alias
	SweepAt     int64  `json:"sweep_at"`
	TargetHash  []byte `json:"target_hash,omitempty"`
	ConfirmHash []byte `json:"confirm_hash,omitempty"`
}

// sweepValue is what the sweep index holds for r: the keys of r's entries
// in the per-target and confirmation buckets, so that the sweeper deletes
// an alias without decoding it.
func (r *record) sweepValue() []byte {
	v := make([]byte, 0, 1+len(r.TargetHash)+len(r.ConfirmHash))
	v = append(v, byte(len(r.TargetHash)))
	v = append(v, r.TargetHash...)
	return append(v, r.ConfirmHash...)
}

// Open opens or creates the store at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.IDMinLength <= 0 {
		opts.IDMinLength = 6
	}
	if opts.GuessProbability <= 0 || opts.GuessProbability > 1 {
		opts.GuessProbability = 1e-6
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.OpenTimeout,
		// Sweeping many aliases makes the freelist large: keep it in a
		// hash map and rebuild it at open instead of writing it at every
		// commit (as etcd does), which keeps commits and their lock short.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is locked by another process (is tempalias already running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	var targetKey []byte
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAliases, bucketSweep, bucketMeta, bucketConfirm, bucketTargets, bucketVerify} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyFormat); len(v) == 8 && binary.BigEndian.Uint64(v) > format {
			return fmt.Errorf("written by a newer tempalias (file format %d, this version reads up to %d)", binary.BigEndian.Uint64(v), format)
		}
		if meta.Get(keyStored) == nil {
			// Written by a version that did not count: count once.
			n := uint64(tx.Bucket(bucketAliases).Stats().KeyN)
			if err := meta.Put(keyStored, binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		if k := meta.Get(keyTargetKey); len(k) == 32 {
			targetKey = append([]byte(nil), k...)
			return nil
		}
		targetKey = make([]byte, 32)
		rand.Read(targetKey)
		return meta.Put(keyTargetKey, targetKey)
	})
	if err == nil {
		err = migrateIDs(db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, targetKey: targetKey, refused: make(map[string]int)}
	s.w = newCommitter(db, opts.MaxBatch)
	return s, nil
}

// migrateIDs moves a format 1 file's issued ids into the aliases bucket
// as tombstones (the ids of stored aliases are there already), a slice per
// transaction so that a large file needs no large transaction; an
// interrupted migration goes on at the next Open. Then the file is
// marked as format 2.
func migrateIDs(db *bolt.DB) error {
	const slice = 10000
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			ids := tx.Bucket(bucketOldIDs)
			if ids == nil {
				done = true
				return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, format))
			}
			aliases := tx.Bucket(bucketAliases)
			c := ids.Cursor()
			k, _ := c.First()
			for n := 0; k != nil && n < slice; n++ {
				if aliases.Get(k) == nil {
					if err := aliases.Put(append([]byte(nil), k...), tombstone); err != nil {
						return err
					}
				}
				if err := c.Delete(); err != nil {
					return err
				}
				k, _ = c.First()
			}
			if k == nil {
				return tx.DeleteBucket(bucketOldIDs)
			}
			return nil
		})
		if err != nil || done {
			return err
		}
	}
}

// Close writes the refusal counts, waits for queued writes and closes the
// file.
func (s *Store) Close() error {
	err := s.FlushCounts()
	s.w.close()
	return errors.Join(err, s.db.Close())
}

// Create stores a new alias for spec with a fresh id and returns it with
// its management token; only the token's hash is kept. The alias is on
// disk when Create returns.
func (s *Store) Create(spec alias.Spec, now time.Time) (alias.Alias, string, error) {
	a, token, _, err := s.create(spec, now, false)
	return a, token, err
}

// CreateUnverified stores a new alias that refuses mail until its target
// confirms with the returned confirmation token (see Confirm).
func (s *Store) CreateUnverified(spec alias.Spec, now time.Time) (a alias.Alias, token, confirm string, err error) {
	return s.create(spec, now, true)
}

func (s *Store) create(spec alias.Spec, now time.Time, unverified bool) (alias.Alias, string, string, error) {
	token := alias.NewToken()
	var confirm string
	if unverified {
		confirm = alias.NewToken()
	}
	var created alias.Alias
	var refused error
	hash := s.targetHash(spec.Target)
	err := s.w.do(func(tx *bolt.Tx) error {
		refused = nil
		if spec.MaxLive > 0 {
			// Counted in the transaction that inserts, so two creations at
			// once cannot both take the last place.
			n, err := liveForTarget(tx, hash, now)
			if err != nil {
				return err
			}
			if n >= spec.MaxLive {
				refused = alias.ErrTargetFull
				return nil
			}
		}
		id, err := s.newID(tx)
		if err != nil {
			return err
		}
		created = alias.Alias{
			ID:         id,
			Target:     spec.Target,
			Created:    now.UTC().Truncate(time.Second),
			Expires:    spec.Expires.UTC().Truncate(time.Second), // the sweep index counts seconds
			MaxUsage:   spec.MaxUsage,
			TokenHash:  alias.HashToken(token),
			Unverified: unverified,
		}
		r := &record{Alias: created, TargetHash: hash}
		if unverified {
			r.ConfirmHash = alias.HashToken(confirm)
			if err := tx.Bucket(bucketConfirm).Put(r.ConfirmHash, []byte(id)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketTargets).Put(append(r.TargetHash[:len(r.TargetHash):len(r.TargetHash)], id...), present); err != nil {
			return err
		}
		if err := addStored(tx, 1); err != nil {
			return err
		}
		return put(tx, r, r.Expires)
	})
	if err != nil {
		return alias.Alias{}, "", "", fmt.Errorf("store: create: %w", err)
	}
	if refused != nil {
		return alias.Alias{}, "", "", refused
	}
	return created, token, confirm, nil
}

// targetHash is a keyed hash of a target, so that the per-target buckets
// do not list addresses.
func (s *Store) targetHash(target string) []byte {
	m := hmac.New(sha256.New, s.targetKey)
	m.Write([]byte(alias.TargetKey(target)))
	return m.Sum(nil)[:16]
}

// TargetVerified reports whether target confirmed it wants our mail and
// that confirmation has not run out at now.
func (s *Store) TargetVerified(target string, now time.Time) (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketVerify).Get(s.targetHash(target))
		ok = len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > now.Unix()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: verified: %w", err)
	}
	return ok, nil
}

// Confirm takes a confirmation token: the alias it belongs to starts
// relaying, and its target counts as verified until now+remember. A token
// works once; an unknown, used or dead one gives ErrNotFound.
func (s *Store) Confirm(token string, now time.Time, remember time.Duration) (alias.Alias, error) {
	// Unknown tokens (anyone can post one) are answered from a read.
	var known bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		known = tx.Bucket(bucketConfirm).Get(alias.HashToken(token)) != nil
		return nil
	}); err != nil {
		return alias.Alias{}, fmt.Errorf("store: confirm: %w", err)
	}
	if !known {
		return alias.Alias{}, ErrNotFound
	}
	var got alias.Alias
	var refused error
	err := s.w.do(func(tx *bolt.Tx) error {
		refused = nil
		confirm := tx.Bucket(bucketConfirm)
		h := alias.HashToken(token)
		id := confirm.Get(h)
		if id == nil {
			refused = ErrNotFound
			return nil
		}
		r, err := get(tx, string(id))
		if errors.Is(err, ErrNotFound) {
			refused = err
			return confirm.Delete(h)
		}
		if err != nil {
			return err
		}
		if r.Dead(now) || !r.Unverified {
			refused = ErrNotFound
			return nil
		}
		if err := confirm.Delete(h); err != nil {
			return err
		}
		r.Unverified, r.ConfirmHash = false, nil
		until := binary.BigEndian.AppendUint64(nil, uint64(now.Add(remember).Unix()))
		if err := tx.Bucket(bucketVerify).Put(s.targetHash(r.Target), until); err != nil {
			return err
		}
		got = r.Alias
		return put(tx, r, time.Unix(r.SweepAt, 0))
	})
	if err != nil {
		return alias.Alias{}, fmt.Errorf("store: confirm: %w", err)
	}
	return got, refused
}

// LiveForTarget counts the aliases alive at now that forward to target.
func (s *Store) LiveForTarget(target string, now time.Time) (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = liveForTarget(tx, s.targetHash(target), now)
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
		if errors.Is(err, ErrNotFound) {
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

// Get returns the alias id if it is alive at now.
func (s *Store) Get(id string, now time.Time) (alias.Alias, error) {
	a, err := s.read(id)
	if err != nil {
		return alias.Alias{}, err
	}
	if a.Dead(now) {
		return alias.Alias{}, ErrNotFound
	}
	return a, nil
}

// read returns alias id as stored, dead or alive, from a read transaction.
func (s *Store) read(id string) (alias.Alias, error) {
	id = strings.ToLower(id) // ids are lower case; people copy them otherwise
	if !alias.ValidID(id) {
		return alias.Alias{}, ErrNotFound
	}
	var r *record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = get(tx, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return alias.Alias{}, ErrNotFound
	}
	if err != nil {
		return alias.Alias{}, fmt.Errorf("store: get %s: %w", id, err)
	}
	return r.Alias, nil
}

// countRefused notes that mail for a was refused, if a is used up but
// still visible to its holder; the count reaches the file at the next
// FlushCounts.
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

// FlushCounts adds the refusals counted in memory to the stored aliases,
// in one write transaction. Sweep calls it, and Close; a crash loses the
// counts since the last call.
func (s *Store) FlushCounts() error {
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
		err := s.w.do(func(tx *bolt.Tx) error {
			for _, id := range chunk {
				r, err := get(tx, id)
				if errors.Is(err, ErrNotFound) {
					continue // swept meanwhile
				}
				if err != nil {
					return err
				}
				r.Refused += counts[id]
				if err := put(tx, r, time.Unix(r.SweepAt, 0)); err != nil {
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

// flushBatch is how many aliases one FlushCounts transaction updates.
const flushBatch = 500

// unflushed is the count of refusals for id not yet written.
func (s *Store) unflushed(id string) int {
	s.refusedMu.Lock()
	defer s.refusedMu.Unlock()
	return s.refused[id]
}

// Reserve takes one use of alias id for a message about to be relayed and
// returns the alias. It fails with ErrNotFound if the alias is not alive and
// with ErrExhausted if its remaining uses are all reserved already. Every
// successful Reserve must be followed by exactly one Commit or Refund.
func (s *Store) Reserve(id string, now time.Time) (alias.Alias, error) {
	// Most mail to a temporary alias service is for dead aliases: answer
	// those from a read transaction without queueing for the writer.
	if a, err := s.read(id); err != nil {
		return alias.Alias{}, err
	} else if a.Dead(now) {
		s.countRefused(&a, now)
		return alias.Alias{}, ErrNotFound
	} else if a.Unverified {
		return alias.Alias{}, ErrNotFound
	} else if !a.CanReserve(now) {
		return alias.Alias{}, ErrExhausted
	} else if a.MaxUsage == 0 {
		// Nothing to count against: no reservation is written, and
		// Refund has nothing to give back. Commit still counts the
		// delivery for the relayed statistic.
		return a, nil
	}
	var got, dead alias.Alias
	var refused error // a refusal is an answer, not a failed transaction
	err := s.w.do(func(tx *bolt.Tx) error {
		// The committer may run this more than once: set, never add.
		got, dead, refused = alias.Alias{}, alias.Alias{}, nil
		r, err := get(tx, id)
		if errors.Is(err, ErrNotFound) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case r.Dead(now):
			dead = r.Alias
			refused = ErrNotFound
			return nil
		case r.Unverified:
			refused = ErrNotFound
			return nil
		case !r.CanReserve(now):
			refused = ErrExhausted
			return nil
		}
		refused = nil
		r.Pending++
		got = r.Alias
		return put(tx, r, time.Unix(r.SweepAt, 0))
	})
	if err != nil {
		return alias.Alias{}, fmt.Errorf("store: reserve %s: %w", id, err)
	}
	if refused != nil {
		if dead.ID != "" {
			s.countRefused(&dead, now)
		}
		return alias.Alias{}, refused
	}
	return got, nil
}

// Commit turns a reservation into a delivered use. An alias whose uses are
// all delivered stays filed at its expiry: until then its holder can see
// it, and how much mail it refused since.
func (s *Store) Commit(id string, now time.Time) error {
	return wrap("commit", id, s.w.do(func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil // swept or revoked meanwhile; the use is spent either way
		}
		if err != nil {
			return err
		}
		if r.Pending > 0 {
			r.Pending--
		}
		r.Used++
		if r.UsedUp() && len(r.TargetHash) > 0 {
			// No longer live: out of the per-target index now, so that
			// counting a target's live aliases never walks used-up ones.
			// The sweeper's delete of the entry later finds nothing.
			k := append(r.TargetHash[:len(r.TargetHash):len(r.TargetHash)], r.ID...)
			if err := tx.Bucket(bucketTargets).Delete(k); err != nil {
				return err
			}
		}
		return put(tx, r, time.Unix(r.SweepAt, 0))
	}))
}

// Refund gives back a reservation that did not end in a delivery.
func (s *Store) Refund(id string) error {
	var limited bool
	err := s.db.View(func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		limited = err == nil && r.MaxUsage > 0
		return nil
	})
	if err != nil || !limited {
		return wrap("refund", id, err) // unlimited aliases reserve nothing
	}
	return wrap("refund", id, s.w.do(func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if r.Pending > 0 {
			r.Pending--
		}
		return put(tx, r, time.Unix(r.SweepAt, 0))
	}))
}

func wrap(op, id string, err error) error {
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", op, id, err)
	}
	return nil
}

// Revoke kills alias id if token is its token; a used-up alias may be
// revoked too, which removes it (and its target) at the next sweep instead
// of at its expiry. A wrong token, an unknown id and an expired or revoked
// alias all give ErrNotFound.
func (s *Store) Revoke(id, token string, now time.Time) error {
	return s.revoke(id, now, func(r *record) bool { return r.TokenMatches(token) })
}

func (s *Store) revoke(id string, now time.Time, allowed func(*record) bool) error {
	id = strings.ToLower(id)
	if !alias.ValidID(id) {
		return ErrNotFound
	}
	// Anyone may send a DELETE with a guessed id or token: answer those
	// from a read transaction, without a write and its fsync.
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		ok = err == nil && !r.Gone(now) && allowed(r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: revoke %s: %w", id, err)
	}
	if !ok {
		return ErrNotFound
	}
	var refused error
	err = s.w.do(func(tx *bolt.Tx) error {
		refused = nil
		r, err := get(tx, id)
		if errors.Is(err, ErrNotFound) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		if r.Gone(now) || !allowed(r) {
			refused = ErrNotFound
			return nil
		}
		r.Revoked = true
		return put(tx, r, now)
	})
	if err != nil {
		return fmt.Errorf("store: revoke %s: %w", id, err)
	}
	return refused
}

// RevokeID kills alias id without asking for its token: for the operator.
func (s *Store) RevokeID(id string, now time.Time) error {
	return s.revoke(id, now, func(*record) bool { return true })
}

// Live calls fn for every alias alive at now, in id order, from one read
// transaction; fn returning false stops the walk.
func (s *Store) Live(now time.Time, fn func(alias.Alias) bool) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			if isTombstone(v) {
				return nil
			}
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
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

// Authorized returns alias id to the holder of its token: while it lives,
// and once used up until it expires, with the mail it refused since.
// Expired and revoked aliases, unknown ids and wrong tokens all give
// ErrNotFound.
func (s *Store) Authorized(id, token string, now time.Time) (alias.Alias, error) {
	a, err := s.Held(id, now)
	if err != nil {
		return alias.Alias{}, err
	}
	if !a.TokenMatches(token) {
		return alias.Alias{}, ErrNotFound
	}
	return a, nil
}

// Held returns alias id as its holder sees it (see Authorized), without
// asking for the token: for the operator.
func (s *Store) Held(id string, now time.Time) (alias.Alias, error) {
	a, err := s.read(id)
	if err != nil {
		return alias.Alias{}, err
	}
	if a.Gone(now) {
		return alias.Alias{}, ErrNotFound
	}
	a.Refused += s.unflushed(id)
	return a, nil
}

// Sweep deletes aliases that are expired or revoked at now, at most batch
// per write transaction so that the writer lock is never held for long,
// and returns how many it deleted. Only the ids stay behind, so they are
// never reused. It writes the refusal counts first (FlushCounts).
func (s *Store) Sweep(now time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = 500
	}
	flushErr := s.FlushCounts() // reported, but no reason not to sweep
	total := 0
	for {
		if due, err := s.sweepDue(now); err != nil || !due {
			return total, errors.Join(flushErr, err)
		}
		n, more, err := s.sweepOnce(now, batch)
		total += n
		if err != nil || !more {
			return total, errors.Join(flushErr, err)
		}
	}
}

// sweepDue reports, from a read transaction, whether any sweep entry is
// due at now, so that an idle sweeper tick costs no write and no fsync.
func (s *Store) sweepDue(now time.Time) (bool, error) {
	var due bool
	err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketSweep).Cursor().First()
		due = len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= now.Unix()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: sweep: %w", err)
	}
	return due, nil
}

// sweepOnce deletes up to batch aliases whose sweep entry is due at now.
// An entry's time is the alias's expiry, or the moment it was revoked if
// that came first (see put's callers), so a due entry is a dead alias: nothing needs decoding. It runs through the group commit,
// so reservations queued meanwhile share its transaction instead of
// waiting for it.
func (s *Store) sweepOnce(now time.Time, batch int) (deleted int, more bool, err error) {
	limit := now.Unix()
	err = s.w.do(func(tx *bolt.Tx) error {
		deleted, more = 0, false
		aliases, targets, confirm := tx.Bucket(bucketAliases), tx.Bucket(bucketTargets), tx.Bucket(bucketConfirm)
		c := tx.Bucket(bucketSweep).Cursor()
		for k, v := c.First(); k != nil; k, v = c.First() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > limit {
				return nil
			}
			if deleted == batch {
				more = true
				return nil
			}
			id := append([]byte(nil), k[8:]...)
			var targetKey, confirmHash []byte
			if len(v) > 0 && int(v[0]) <= len(v)-1 {
				n := int(v[0])
				targetKey, confirmHash = append(append([]byte(nil), v[1:1+n]...), id...), append([]byte(nil), v[1+n:]...)
			}
			if err := c.Delete(); err != nil {
				return err
			}
			if err := aliases.Put(id, tombstone); err != nil {
				return err
			}
			if targetKey != nil {
				if err := targets.Delete(targetKey); err != nil {
					return err
				}
			}
			if len(confirmHash) > 0 {
				if err := confirm.Delete(confirmHash); err != nil {
					return err
				}
			}
			if err := addStored(tx, -1); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("store: sweep: %w", err)
	}
	return deleted, more, nil
}

// Backup writes a consistent copy of the whole database to w while the
// store stays in use, and returns the number of bytes written.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// Stats is a summary for operators and metrics.
type Stats struct {
	Aliases int    // stored aliases, dead ones not yet swept included
	Issued  uint64 // ids ever issued
}

// addStored keeps the count of stored aliases, so that Stats (read at
// every metrics scrape) need not walk the bucket.
func addStored(tx *bolt.Tx, delta int64) error {
	meta := tx.Bucket(bucketMeta)
	var n uint64
	if v := meta.Get(keyStored); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	return meta.Put(keyStored, binary.BigEndian.AppendUint64(nil, uint64(int64(n)+delta)))
}

// Stats reads the counts of stored aliases and issued ids.
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyStored); len(v) == 8 {
			st.Aliases = int(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get(keyIssued); len(v) == 8 {
			st.Issued = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return st, err
}

// Ping checks that the store answers a read.
func (s *Store) Ping() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAliases) == nil {
			return errors.New("store: aliases bucket missing")
		}
		return nil
	})
}

func get(tx *bolt.Tx, id string) (*record, error) {
	v := tx.Bucket(bucketAliases).Get([]byte(id))
	if v == nil || isTombstone(v) {
		return nil, ErrNotFound
	}
	r := new(record)
	if err := json.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", id, err)
	}
	return r, nil
}

// put stores r and files it in the sweep index at sweepAt, moving its
// previous entry.
func put(tx *bolt.Tx, r *record, sweepAt time.Time) error {
	sweep := tx.Bucket(bucketSweep)
	at := sweepAt.Unix()
	if r.SweepAt != 0 && r.SweepAt != at {
		if err := sweep.Delete(sweepKey(r.SweepAt, r.ID)); err != nil {
			return err
		}
	}
	key, val := sweepKey(at, r.ID), r.sweepValue()
	if r.SweepAt != at || !bytes.Equal(sweep.Get(key), val) {
		if err := sweep.Put(key, val); err != nil {
			return err
		}
	}
	r.SweepAt = at
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketAliases).Put([]byte(r.ID), v)
}

func sweepKey(at int64, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(at))
	return append(k, id...)
}
