package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store/codec"
)

// The binary record (formats 4 to 6), after the header (record.go). Every
// lookup on the RCPT path and every write of a reservation decodes and
// encodes one, so it is a fixed sequence of fields, no names, no text:
//
//	Target       string
//	Created      time
//	Expires      time
//	MaxUsage     int
//	Used         int
//	Pending      int
//	Refused      int
//	flags        byte, lowest bit first: Revoked, Unverified, LockSender,
//	             CountedCreation, CountedConfirmation (format 6)
//	TokenHash    bytes
//	AllowFrom    uvarint count, then each a string
//	SweepAt      varint
//	TargetHash   bytes
//	ConfirmHash  bytes
//	HourStart    time (format 5; absent: the zero time)
//	HourUsed     int  (format 5; absent: 0)
//	LockGen      uvarint (format 6; absent: 0)
//	LockHeld     int     (format 6; absent: 0)
//
// The fields are encoded as package store/codec says (a string or bytes
// is its length, then its bytes; an int a varint; a time its unix
// seconds and nanoseconds). The id is the record's key and is not
// repeated.
// Decoding refuses what no encoder writes: a length past the end, an
// unknown bit, a header that does not match the record, bytes left over.
//
// To add a field: append it at the end, in appendBinary, size and
// decodeBinary, and read it only if the record has bytes left
// (d.More()), so that records written before it decode with its zero
// value; and raise the file format (boltstore.go), so that a version
// which would drop the field on its next write refuses the file.

// size bounds the length of r's binary record: the longest varint for
// each number appendBinary writes (the fields, both halves of each time,
// every length and the allow-from count), the flags byte, and the bytes.
func (r *record) size() int {
	a := &r.Alias
	const numbers = 19 // and one more per allow-from entry, below
	n := numbers*binary.MaxVarintLen64 + 1 + len(a.Target) + len(a.TokenHash) + len(r.TargetHash) + len(r.ConfirmHash)
	for _, s := range a.AllowFrom {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n
}

// appendBinary appends r's binary record to b.
func (r *record) appendBinary(b []byte) []byte {
	a := &r.Alias
	b = codec.AppendString(b, a.Target)
	b = codec.AppendTime(b, a.Created)
	b = codec.AppendTime(b, a.Expires)
	b = codec.AppendInt(b, int64(a.MaxUsage))
	b = codec.AppendInt(b, int64(a.Used))
	b = codec.AppendInt(b, int64(a.Pending))
	b = codec.AppendInt(b, int64(a.Refused))
	b = codec.AppendFlags(b, a.Revoked, a.Unverified, a.LockSender, r.CountedCreation, r.CountedConfirmation)
	b = codec.AppendString(b, a.TokenHash)
	b = codec.AppendStrings(b, a.AllowFrom)
	b = codec.AppendInt(b, r.SweepAt)
	b = codec.AppendString(b, r.TargetHash)
	b = codec.AppendString(b, r.ConfirmHash)
	// The optional fields at the end are written up to the last one that
	// is set, as the formats before them wrote the record without them.
	lock := a.LockGen != 0 || a.LockHeld != 0
	if a.HourStart.IsZero() && a.HourUsed == 0 && !lock {
		return b // as format 4 wrote it: the window was never opened
	}
	b = codec.AppendTime(b, a.HourStart)
	b = codec.AppendInt(b, int64(a.HourUsed))
	if !lock {
		return b // as format 5 wrote it
	}
	b = codec.AppendUint(b, a.LockGen)
	return codec.AppendInt(b, int64(a.LockHeld))
}

// decodeBinary reads the binary record v of alias id. The record keeps
// none of v, which bbolt owns.
func decodeBinary(id string, v []byte) (*record, error) {
	// One copy for the byte fields, which are slices of it.
	d := codec.NewDecoder(append([]byte(nil), v...))
	r := &record{Alias: alias.Alias{ID: id}}
	a := &r.Alias
	a.Target = d.String()
	a.Created = d.Time()
	a.Expires = d.Time()
	a.MaxUsage = d.Int()
	a.Used = d.Int()
	a.Pending = d.Int()
	a.Refused = d.Int()
	d.Flags(&a.Revoked, &a.Unverified, &a.LockSender, &r.CountedCreation, &r.CountedConfirmation)
	a.TokenHash = d.Bytes()
	a.AllowFrom = d.Strings()
	r.SweepAt = d.Varint()
	r.TargetHash = d.Bytes()
	r.ConfirmHash = d.Bytes()
	if d.Err() == nil && d.More() {
		a.HourStart = d.Time()
		a.HourUsed = d.Int()
	}
	if d.Err() == nil && d.More() {
		a.LockGen = d.Uvarint()
		a.LockHeld = d.Int()
	}
	if d.Err() == nil && d.More() {
		d.Fail("bytes after the record")
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	return r, nil
}

// recordJSON is the record as formats 2 and 3 stored it, read to migrate
// them (see migrateRecords).
type recordJSON struct {
	ID          string    `json:"id"`
	Target      string    `json:"target"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	MaxUsage    int       `json:"max_usage,omitempty"`
	Used        int       `json:"used,omitempty"`
	Pending     int       `json:"pending,omitempty"`
	Revoked     bool      `json:"revoked,omitempty"`
	Refused     int       `json:"refused,omitempty"`
	Unverified  bool      `json:"unverified,omitempty"`
	TokenHash   []byte    `json:"token_hash"`
	AllowFrom   []string  `json:"allow_from,omitempty"`
	LockSender  bool      `json:"lock_sender,omitempty"`
	SweepAt     int64     `json:"sweep_at"`
	TargetHash  []byte    `json:"target_hash,omitempty"`
	ConfirmHash []byte    `json:"confirm_hash,omitempty"`
}

func decodeJSON(v []byte) (*record, error) {
	var j recordJSON
	if err := json.Unmarshal(v, &j); err != nil {
		return nil, err
	}
	return &record{
		Alias: alias.Alias{
			ID: j.ID, Target: j.Target, Created: j.Created, Expires: j.Expires,
			MaxUsage: j.MaxUsage, Used: j.Used, Pending: j.Pending, Revoked: j.Revoked,
			Refused: j.Refused, Unverified: j.Unverified, TokenHash: j.TokenHash,
			AllowFrom: j.AllowFrom, LockSender: j.LockSender,
		},
		SweepAt: j.SweepAt, TargetHash: j.TargetHash, ConfirmHash: j.ConfirmHash,
	}, nil
}
