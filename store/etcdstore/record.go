package etcdstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/codec"
)

// record is an alias as this engine stores it: as JSON (formatJSON), or
// in the binary record below (formatBinary). The JSON names are those of
// formatJSON, which hosts of every version read.
type record struct {
	ID          string   `json:"id"`
	Target      string   `json:"target"`
	Created     int64    `json:"created"`
	Expires     int64    `json:"expires"`
	MaxUsage    int      `json:"max_usage,omitempty"`
	Used        int      `json:"used,omitempty"`
	Refused     int      `json:"refused,omitempty"`
	Revoked     bool     `json:"revoked,omitempty"`
	Unverified  bool     `json:"unverified,omitempty"`
	TokenHash   []byte   `json:"token_hash"`
	TargetHash  []byte   `json:"target_hash"`
	ConfirmHash []byte   `json:"confirm_hash,omitempty"`
	AllowFrom   []string `json:"allow_from,omitempty"`
	LockSender  bool     `json:"lock_sender,omitempty"`
	SweepAt     int64    `json:"sweep_at"` // the time part of its sweep key
	// Recent are the keys of the latest committed reservations (see
	// recentUses).
	Recent []string `json:"recent,omitempty"`
	// HourStart (unix seconds, 0 for none) and HourUsed are the alias's
	// hourly window (alias.Alias.HourTaken).
	HourStart int64 `json:"hour_start,omitempty"`
	HourUsed  int   `json:"hour_used,omitempty"`
	// LockGen and LockHeld are the state of a lock-sender lock
	// (alias.Alias.ReleaseLock).
	LockGen  uint64 `json:"lock_gen,omitempty"`
	LockHeld int    `json:"lock_held,omitempty"`
	// CountedCreation and CountedConfirmation say what its creation
	// counted against its target's day (a limit was set), which is what
	// Withdraw gives back.
	CountedCreation     bool `json:"counted_creation,omitempty"`
	CountedConfirmation bool `json:"counted_confirmation,omitempty"`
}

// tombstone is the value of a swept alias's key: only the id stays.
const tombstone = "\x00"

func (r *record) alias(pending int) alias.Alias {
	var hourStart time.Time
	if r.HourStart != 0 {
		hourStart = time.Unix(r.HourStart, 0).UTC()
	}
	return alias.Alias{
		HourStart:  hourStart,
		HourUsed:   r.HourUsed,
		ID:         r.ID,
		Target:     r.Target,
		Created:    time.Unix(r.Created, 0).UTC(),
		Expires:    time.Unix(r.Expires, 0).UTC(),
		MaxUsage:   r.MaxUsage,
		Used:       r.Used,
		Pending:    pending,
		Revoked:    r.Revoked,
		Refused:    r.Refused,
		Unverified: r.Unverified,
		TokenHash:  r.TokenHash,
		AllowFrom:  r.AllowFrom,
		LockSender: r.LockSender,
		LockGen:    r.LockGen,
		LockHeld:   r.LockHeld,
	}
}

// setAllowFrom takes allow-from and its lock-sender lock back from a,
// after a commit, a refund or a change set them.
func (r *record) setAllowFrom(a *alias.Alias) {
	r.AllowFrom, r.LockGen, r.LockHeld = a.AllowFrom, a.LockGen, a.LockHeld
}

// setHour takes the hourly window back from a, after CountHour or
// UncountHour changed it.
func (r *record) setHour(a *alias.Alias) {
	r.HourStart, r.HourUsed = 0, a.HourUsed
	if !a.HourStart.IsZero() {
		r.HourStart = a.HourStart.Unix()
	}
}

// value is r in the newest format, the binary record below.
func (r *record) value() string { return string(r.appendBinary(make([]byte, 0, r.size()))) }

// jsonValue is r in formatJSON.
func (r *record) jsonValue() string {
	v, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings, numbers and bytes always encodes
	}
	return string(v)
}

// The binary record (formatBinary). Every RCPT decodes one and every
// commit encodes one, so it is a fixed sequence of fields, no names, no
// text, encoded as package store/codec says:
//
//	version      byte: formatBinary
//	Target       string
//	Created      int (unix seconds, as are the other times)
//	Expires      int
//	MaxUsage     int
//	Used         int
//	Refused      int
//	flags        byte, lowest bit first: Revoked, Unverified, LockSender,
//	             CountedCreation, CountedConfirmation
//	TokenHash    bytes
//	TargetHash   bytes
//	ConfirmHash  bytes
//	AllowFrom    uvarint count, then each a string
//	SweepAt      int
//	Recent       uvarint count, then each a string
//	HourStart    int (0: no window)
//	HourUsed     int
//	LockGen      uvarint
//	LockHeld     int
//
// The id is the record's key and is not repeated. The first byte tells
// the formats apart: '{' is JSON, a lone 0 a tombstone. Decoding refuses
// what no encoder writes: a length past the end, an unknown bit, bytes
// left over.
//
// To add a field: make a new format (formatNewest+1, its own version
// byte) that appends it at the end, in appendBinary, size and
// decodeBinary, which reads it only from records of that version, so
// that the records of the formats before decode with its zero value. The
// marker then decides when hosts write it (format.go), and a host that
// would drop the field on its next write refuses the cluster.
// size bounds the length of r's binary record.
func (r *record) size() int {
	n := 2 + 16*binary.MaxVarintLen64 + len(r.Target) + len(r.TokenHash) + len(r.TargetHash) + len(r.ConfirmHash)
	for _, s := range r.AllowFrom {
		n += binary.MaxVarintLen64 + len(s)
	}
	for _, s := range r.Recent {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n
}

// appendBinary appends r's binary record, its version byte first, to b.
func (r *record) appendBinary(b []byte) []byte {
	b = append(b, formatBinary)
	b = codec.AppendString(b, r.Target)
	b = codec.AppendInt(b, r.Created)
	b = codec.AppendInt(b, r.Expires)
	b = codec.AppendInt(b, int64(r.MaxUsage))
	b = codec.AppendInt(b, int64(r.Used))
	b = codec.AppendInt(b, int64(r.Refused))
	b = codec.AppendFlags(b, r.Revoked, r.Unverified, r.LockSender, r.CountedCreation, r.CountedConfirmation)
	b = codec.AppendString(b, r.TokenHash)
	b = codec.AppendString(b, r.TargetHash)
	b = codec.AppendString(b, r.ConfirmHash)
	b = codec.AppendStrings(b, r.AllowFrom)
	b = codec.AppendInt(b, r.SweepAt)
	b = codec.AppendStrings(b, r.Recent)
	b = codec.AppendInt(b, r.HourStart)
	b = codec.AppendInt(b, int64(r.HourUsed))
	b = codec.AppendUint(b, r.LockGen)
	return codec.AppendInt(b, int64(r.LockHeld))
}

// decodeBinary reads the binary record v (its version byte first) of
// alias id. The record's byte fields are slices of v and its strings
// share one copy of it: v, a value of a client response, is never
// changed afterwards.
func decodeBinary(id string, v []byte) (*record, error) {
	d := codec.NewDecoder(v)
	if d.Byte() != formatBinary {
		return nil, errors.New("not a binary record")
	}
	r := &record{ID: id}
	r.Target = d.String()
	r.Created = d.Varint()
	r.Expires = d.Varint()
	r.MaxUsage = d.Int()
	r.Used = d.Int()
	r.Refused = d.Int()
	d.Flags(&r.Revoked, &r.Unverified, &r.LockSender, &r.CountedCreation, &r.CountedConfirmation)
	r.TokenHash = d.Bytes()
	r.TargetHash = d.Bytes()
	r.ConfirmHash = d.Bytes()
	r.AllowFrom = d.Strings()
	r.SweepAt = d.Varint()
	r.Recent = d.Strings()
	r.HourStart = d.Varint()
	r.HourUsed = d.Int()
	r.LockGen = d.Uvarint()
	r.LockHeld = d.Int()
	if d.Err() == nil && d.More() {
		d.Fail("bytes after the record")
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	return r, nil
}

// storedFormat tells the format of a stored value from its first byte:
// 0 for a tombstone, -1 for what is no record of any format.
func storedFormat(v []byte) int {
	switch {
	case string(v) == tombstone:
		return 0
	case len(v) > 0 && v[0] == '{':
		return formatJSON
	case len(v) > 0 && v[0] >= formatBinary && v[0] < '{':
		return int(v[0]) // a binary record of this version or a later one
	}
	return -1
}

// decode reads a stored record of any format this version knows; id is
// its key. A tombstone is store.ErrNotFound; anything else that is no
// record is an error naming the id, never a panic.
func decode(id string, v []byte) (*record, error) {
	if string(v) == tombstone {
		return nil, store.ErrNotFound
	}
	var r *record
	var err error
	switch f := storedFormat(v); {
	case f == formatJSON:
		r = new(record)
		err = json.Unmarshal(v, r)
	case f == formatBinary:
		r, err = decodeBinary(id, v)
	case f > formatNewest:
		err = fmt.Errorf("record format %d is newer than this version reads (%d): upgrade this host", f, formatNewest)
	default:
		err = errors.New("not a record")
	}
	if err != nil {
		return nil, fmt.Errorf("etcd: decode %s: %w", id, err)
	}
	return r, nil
}
