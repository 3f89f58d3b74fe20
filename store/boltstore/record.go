package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// record is what is stored per alias: the alias and the keys of its
// entries in the other buckets.
type record struct {
	alias.Alias
	SweepAt     int64  // unix seconds of its entry in the sweep index
	TargetHash  []byte // its entry in the targets bucket is TargetHash + ID
	ConfirmHash []byte // its entry in the confirm bucket, while pending
	// CountedCreation and CountedConfirmation say what its creation
	// counted against its target's day (a limit was set), which is what
	// Withdraw gives back.
	CountedCreation, CountedConfirmation bool
}

// A stored record is a header of headerLen bytes, then the record. The
// header holds what decides that an alias is dead, so that mail for a
// dead alias that is not swept yet is refused without decoding it, at
// about the cost of an unknown id (the refusal is the common case, and it
// should tell nothing about which ids were issued):
//
//	byte 0     the record's version: headerBinary, or headerJSON
//	bytes 1-8  Expires, unix seconds (expiry is kept in whole seconds)
//	byte 9     flags: flagRevoked, flagUsedUp, flagUnverified
//
// What follows the header is the binary record of codec.go (version
// headerBinary, formats 4 to 6), or JSON (headerJSON, format 3). A format 2
// record is the JSON alone: it starts with '{'. Open rewrites the records
// of older formats as binary ones. A tombstone is the single byte 0.
const (
	headerJSON   = 1
	headerBinary = 2
	headerLen    = 10

	flagRevoked    = 1 << 0
	flagUsedUp     = 1 << 1
	flagUnverified = 1 << 2
)

// tombstone is the value of a swept alias: only its id stays.
var tombstone = []byte{0}

// isTombstone reports whether v, a value of the aliases bucket, marks a
// swept alias.
func isTombstone(v []byte) bool { return len(v) == 1 && v[0] == 0 }

func hasHeader(v []byte) bool {
	return len(v) > headerLen && (v[0] == headerBinary || v[0] == headerJSON)
}

// quickDead tells from v's header alone whether its alias is dead at now
// for mail, and whether a refusal should be counted for its holder (used
// up, but neither expired nor revoked). ok is false when v must be decoded
// to tell: a live alias, or a record without a header.
func quickDead(v []byte, now time.Time) (dead, countRefusal, ok bool) {
	if !hasHeader(v) {
		return false, false, false
	}
	expired := now.Unix() >= int64(binary.BigEndian.Uint64(v[1:9]))
	flags := v[9]
	gone := expired || flags&flagRevoked != 0
	switch {
	case gone:
		return true, false, true
	case flags&flagUsedUp != 0:
		return true, true, true
	case flags&flagUnverified != 0:
		return true, false, true
	}
	return false, false, false
}

// encode is r as stored: the header, then the binary record.
func (r *record) encode() []byte {
	v := make([]byte, headerLen, headerLen+r.size())
	v[0] = headerBinary
	r.putHeader(v)
	return r.appendBinary(v)
}

// putHeader writes the expiry and flags of r's header into v.
func (r *record) putHeader(v []byte) {
	a := &r.Alias
	var flags byte
	if a.Revoked {
		flags |= flagRevoked
	}
	if a.UsedUp() {
		flags |= flagUsedUp
	}
	if a.Unverified {
		flags |= flagUnverified
	}
	exp := a.Expires.Unix()
	if a.Expires.Nanosecond() != 0 {
		exp++ // rounded up: the header may miss that an alias is dead, never call a live one dead
	}
	binary.BigEndian.PutUint64(v[1:9], uint64(exp))
	v[9] = flags
}

// decode reads a stored record of any format; id is its key.
func decode(id, v []byte) (*record, error) {
	var r *record
	var err error
	switch {
	case len(v) > 0 && v[0] == '{':
		r, err = decodeJSON(v)
	case !hasHeader(v):
		err = errors.New("not a record")
	case v[0] == headerBinary:
		r, err = decodeBinary(string(id), v[headerLen:])
		if err == nil && !headerMatches(r, v) {
			r, err = nil, errors.New("header does not match the record")
		}
	default:
		r, err = decodeJSON(v[headerLen:])
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", id, err)
	}
	return r, nil
}

// headerMatches reports whether v's header says what r, decoded from v,
// says: the header answers for the record on the RCPT path. The used-up
// flag is left out: it follows alias.UsedUp, whose rule may change
// without the stored fields changing, and a change there must not make
// every record unreadable.
func headerMatches(r *record, v []byte) bool {
	var h [headerLen]byte
	r.putHeader(h[:])
	const known = flagRevoked | flagUsedUp | flagUnverified
	return bytes.Equal(h[1:9], v[1:9]) && v[9]&^known == 0 && (h[9]^v[9])&^flagUsedUp == 0
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

// targetEntry is r's key in the targets bucket.
func (r *record) targetEntry() []byte {
	return append(r.TargetHash[:len(r.TargetHash):len(r.TargetHash)], r.ID...)
}

func get(tx *bolt.Tx, id string) (*record, error) {
	v := tx.Bucket(bucketAliases).Get([]byte(id))
	if v == nil || isTombstone(v) {
		return nil, store.ErrNotFound
	}
	return decode([]byte(id), v)
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
	return tx.Bucket(bucketAliases).Put([]byte(r.ID), r.encode())
}

// update stores r again under its sweep entry.
func update(tx *bolt.Tx, r *record) error { return put(tx, r, time.Unix(r.SweepAt, 0)) }

func sweepKey(at int64, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(at))
	return append(k, id...)
}
