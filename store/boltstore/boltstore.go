// Package boltstore is the embedded engine of the store contract (package
// store): aliases in one bbolt file, held by one process. It creates
// aliases with unique ids, looks them up, reserves and settles uses,
// revokes, sweeps dead aliases and writes hot backups.
//
// Writes that arrive together are committed together (see commit.go): each
// caller still waits for its own fsync, but one fsync serves many callers,
// so durable throughput grows with concurrency.
//
// The files, by concern: this one opens the file and keeps its format
// (check.go refuses damaged files first), record.go is the stored record,
// aliases.go creation and look-up, uses.go reservations and refusal
// counts, limits.go the per-target daily counts, verify.go pending
// aliases, sweep.go the sweep, backup.go backups and statistics.
package boltstore

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	// Every id ever issued is a key here: a stored alias's value is its
	// record, a swept alias's is the tombstone. One bucket for both means
	// a creation writes one page at a random key, not two.
	bucketAliases  = []byte("aliases")
	bucketOldIDs   = []byte("ids")   // format 1 kept issued ids here; migrated at Open
	bucketSweep    = []byte("sweep") // 8-byte unix seconds + id -> target hash length, target hash, confirm hash
	bucketMeta     = []byte("meta")
	bucketConfirm  = []byte("confirm")    // hash of a confirmation token -> id
	bucketTargets  = []byte("targets")    // target hash + id -> nothing, per alias not used up (targets.go)
	bucketVerify   = []byte("verified")   // target hash -> 8-byte unix seconds it stays verified
	bucketReserved = []byte("reserved")   // reservation key -> id, per reservation not yet settled
	bucketDaily    = []byte("daily")      // day + kind + target hash -> count (limits.go)
	keyIssued      = []byte("issued")     // count of ids ever issued, uint64
	keyStored      = []byte("stored")     // count of records in the aliases bucket, uint64
	keyTargetKey   = []byte("target_key") // HMAC key for target hashes
	keyLinkKey     = []byte("link_key")   // HMAC key for revoke links
	keyFormat      = []byte("format")     // the file's layout version, uint64
	present        = []byte{1}            // the value of set-like buckets
)

// format is the layout this version writes:
//
//	2: issued ids are tombstones in the aliases bucket, not keys of their own bucket.
//	3: a record starts with a fixed header (record.go), and every reserved
//	   use is filed in the reserved bucket under its key.
//	4: the record after the header is binary (codec.go), not JSON.
//	5: the binary record may end with the alias's hourly window
//	   (HourStart, HourUsed: messages_per_alias_hour counted by the
//	   store). A format 4 file needs no rewrite (its records decode with
//	   no window open); the format is raised so that a format 4 version,
//	   which would drop the window at its next write, refuses the file.
//	6: the binary record may end with the state of a lock-sender lock
//	   (LockGen, LockHeld: which refund of a committed use undoes it), and
//	   its bools say what its creation counted against the target's day
//	   (for Withdraw). A format 5 file needs no rewrite: its records
//	   decode with neither (a lock in them is taken as a list a refund
//	   leaves alone, and a withdrawal of them gives nothing back).
//
// Buckets added within format 4: daily (the per-target daily
// counts, limits.go). A file that lacks one gets it, empty, at Open; an
// older version ignores it.
//
// A file of a later format is refused rather than misread.
const format = 6

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
	// NoTargetIndex keeps no per-target index (targets.go): creations
	// write a page less, and a Spec.MaxLive is refused as a wiring
	// mistake. For a service without limits.aliases_per_target.
	NoTargetIndex bool
}

// Store is an open alias database. Its methods are safe for concurrent use.
type Store struct {
	db        *bolt.DB
	opts      Options
	w         *committer
	targetKey []byte // keys the target hashes, so the file lists no addresses in those buckets
	linkKey   []byte // keys the revoke links (alias.RevokeMAC)

	// refused counts mail refused for used-up aliases since the last
	// flush: a refusal is the hot path and costs no write.
	refusedMu sync.Mutex
	refused   map[string]int
}

var _ store.Engine = (*Store)(nil)

// Open opens or creates the store at path. A file that exists but is not
// a whole store file (empty, truncated, damaged) is refused with an error
// naming it, never opened as a new store. Reservations found in the file
// were never settled by the process that made them, which is gone (only
// one process holds the file): they are released.
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
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := openBolt(path, opts.OpenTimeout)
	var panicked *panicError
	if errors.As(err, &panicked) {
		// bbolt's locks may be held: the file stays open until exit.
		return nil, &damagedError{path, panicked.what}
	}
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is locked by another process (is tempalias already running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	targetKey, linkKey, err := prepare(db, !opts.NoTargetIndex)
	if errors.As(err, &panicked) {
		return nil, &damagedError{path, panicked.what}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, targetKey: targetKey, linkKey: linkKey, refused: make(map[string]int)}
	s.w = newCommitter(db, opts.MaxBatch)
	return s, nil
}

// panicError is a panic of bbolt's in this goroutine (its walk of every
// page to rebuild the free list panics on what it finds wrong), taken as
// a damaged file.
type panicError struct{ what string }

func (p *panicError) Error() string { return p.what }

func recovered(err *error) {
	if r := recover(); r != nil {
		*err = &panicError{fmt.Sprint(r)}
	}
}

func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer recovered(&err)
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		// Sweeping many aliases makes the freelist large: keep it in a
		// hash map and rebuild it at open instead of writing it at every
		// commit (as etcd does), which keeps commits and their lock short.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
}

// prepare readies an opened file: buckets, format, migrations, stranded
// reservations, the per-target index kept or not (targetIndex).
func prepare(db *bolt.DB, targetIndex bool) (targetKey, linkKey []byte, err error) {
	defer recovered(&err)
	if targetKey, linkKey, err = initFile(db); err != nil {
		return nil, nil, err
	}
	if err := migrate(db); err != nil {
		return nil, nil, err
	}
	if err := releaseStranded(db); err != nil {
		return nil, nil, err
	}
	return targetKey, linkKey, prepareTargetIndex(db, targetIndex)
}

// initFile creates the buckets a new file lacks, refuses a later format
// and returns the target-hash and revoke-link keys, made on first use.
func initFile(db *bolt.DB) (targetKey, linkKey []byte, err error) {
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAliases, bucketSweep, bucketMeta, bucketConfirm, bucketTargets, bucketVerify, bucketReserved, bucketDaily} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := fileFormat(tx); v > format {
			return fmt.Errorf("written by a newer tempalias (file format %d, this version reads up to %d)", v, format)
		}
		if meta.Get(keyStored) == nil {
			// Written by a version that did not count: count once.
			n := uint64(tx.Bucket(bucketAliases).Stats().KeyN)
			if err := meta.Put(keyStored, binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		if targetKey, err = metaKey(meta, keyTargetKey); err != nil {
			return err
		}
		linkKey, err = metaKey(meta, keyLinkKey)
		return err
	})
	return targetKey, linkKey, err
}

// metaKey returns the 32-byte key stored under name, making it the first
// time.
func metaKey(meta *bolt.Bucket, name []byte) ([]byte, error) {
	if k := meta.Get(name); len(k) == 32 {
		return append([]byte(nil), k...), nil
	}
	k := make([]byte, 32)
	rand.Read(k)
	return k, meta.Put(name, k)
}

// LinkKey is the file's key for revoke links, made once with the file.
func (s *Store) LinkKey() []byte { return s.linkKey }

// fileFormat is the format the file says it has; 0 for none (format 1, or
// a new file).
func fileFormat(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyFormat); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// migrateSlice bounds the records one migration transaction touches, so
// that a large file needs no large transaction.
const migrateSlice = 10000

// migrate brings an older file to this format, a slice per transaction;
// an interrupted migration goes on at the next Open, and each step is
// safe to repeat. Then the file is marked with this format.
func migrate(db *bolt.DB) error {
	var old uint64
	if err := db.View(func(tx *bolt.Tx) error { old = fileFormat(tx); return nil }); err != nil {
		return err
	}
	if old == format {
		return nil
	}
	if err := migrateIDs(db); err != nil {
		return fmt.Errorf("migrate ids: %w", err)
	}
	if err := migrateRecords(db); err != nil {
		return fmt.Errorf("migrate records: %w", err)
	}
	return db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint64(nil, format))
	})
}

// migrateIDs moves a format 1 file's issued ids into the aliases bucket
// as tombstones (the ids of stored aliases are there already).
func migrateIDs(db *bolt.DB) error {
	for {
		done := false
		err := db.Update(func(tx *bolt.Tx) error {
			ids := tx.Bucket(bucketOldIDs)
			if ids == nil {
				done = true
				return nil
			}
			aliases := tx.Bucket(bucketAliases)
			c := ids.Cursor()
			k, _ := c.First()
			for n := 0; k != nil && n < migrateSlice; n++ {
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

// migrateRecords rewrites the records of a format 2 or 3 file as binary
// records with a header (format 4). The reserved uses of a format 2
// record were made by a process that is gone and kept no key of them:
// they are released here, as releaseStranded releases those filed in the
// reserved bucket (formats 3 and 4) after the migration.
func migrateRecords(db *bolt.DB) error {
	var from []byte
	for {
		var next []byte
		err := db.Update(func(tx *bolt.Tx) error {
			next = nil
			aliases := tx.Bucket(bucketAliases)
			c := aliases.Cursor()
			var todo []*record
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for ; k != nil; k, v = c.Next() {
				if len(todo) == migrateSlice {
					next = append([]byte(nil), k...)
					break
				}
				if isTombstone(v) || (hasHeader(v) && v[0] == headerBinary) {
					continue
				}
				r, err := decode(k, v)
				if err != nil {
					return err
				}
				if !hasHeader(v) {
					r.Pending = 0 // format 2
				}
				todo = append(todo, r)
			}
			for _, r := range todo {
				if err := aliases.Put([]byte(r.ID), r.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || next == nil {
			return err
		}
		from = next
	}
}

// releaseStranded gives back every reservation filed in the reserved
// bucket: the file was not open, so none of them can still be settled.
// Only open reservations are filed there, so this walks what a crash
// left behind, not the aliases.
func releaseStranded(db *bolt.DB) error {
	for {
		more := false
		err := db.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketReserved).Cursor()
			n := 0
			for k, id := c.First(); k != nil; k, id = c.First() {
				if n == migrateSlice {
					more = true
					return nil
				}
				n++
				if err := release(tx, string(id)); err != nil {
					return err
				}
				if err := c.Delete(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || !more {
			return err
		}
	}
}

// Close writes the refusal counts, waits for queued writes and closes the
// file.
func (s *Store) Close() error {
	err := s.flushCounts()
	s.w.close()
	if s.w.broken.Load() {
		return errors.Join(err, fmt.Errorf("store: %w", errBroken)) // bbolt's locks may be held: closing could hang
	}
	return errors.Join(err, s.db.Close())
}
