package boltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/tempalias/tempalias/alias"
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
//	bools        byte: boolRevoked, boolUnverified, boolLockSender,
//	             boolCountedCreation, boolCountedConfirmation (format 6)
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
// A string or bytes is its length (uvarint), then its bytes; an int is a
// varint; a time is its unix seconds (varint), then its
// nanoseconds (uvarint). The id is the record's key and is not repeated.
// Decoding refuses what no encoder writes: a length past the end, an
// unknown bit, a header that does not match the record, bytes left over.
//
// To add a field: append it at the end, in appendBinary, size and
// decodeBinary, and read it only if the record has bytes left
// (d.more()), so that records written before it decode with its zero
// value; and raise the file format (boltstore.go), so that a version
// which would drop the field on its next write refuses the file.

const (
	boolRevoked = 1 << iota
	boolUnverified
	boolLockSender
	boolCountedCreation
	boolCountedConfirmation

	knownBools = boolRevoked | boolUnverified | boolLockSender | boolCountedCreation | boolCountedConfirmation
)

// size bounds the length of r's binary record: the longest varint for
// each number appendBinary writes (the fields, both halves of each time,
// every length and the allow-from count), the bools byte, and the bytes.
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
	b = appendString(b, a.Target)
	b = appendTime(b, a.Created)
	b = appendTime(b, a.Expires)
	b = binary.AppendVarint(b, int64(a.MaxUsage))
	b = binary.AppendVarint(b, int64(a.Used))
	b = binary.AppendVarint(b, int64(a.Pending))
	b = binary.AppendVarint(b, int64(a.Refused))
	var bools byte
	if a.Revoked {
		bools |= boolRevoked
	}
	if a.Unverified {
		bools |= boolUnverified
	}
	if a.LockSender {
		bools |= boolLockSender
	}
	if r.CountedCreation {
		bools |= boolCountedCreation
	}
	if r.CountedConfirmation {
		bools |= boolCountedConfirmation
	}
	b = append(b, bools)
	b = appendString(b, a.TokenHash)
	b = binary.AppendUvarint(b, uint64(len(a.AllowFrom)))
	for _, s := range a.AllowFrom {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, r.SweepAt)
	b = appendString(b, r.TargetHash)
	b = appendString(b, r.ConfirmHash)
	// The optional fields at the end are written up to the last one that
	// is set, as the formats before them wrote the record without them.
	lock := a.LockGen != 0 || a.LockHeld != 0
	if a.HourStart.IsZero() && a.HourUsed == 0 && !lock {
		return b // as format 4 wrote it: the window was never opened
	}
	b = appendTime(b, a.HourStart)
	b = binary.AppendVarint(b, int64(a.HourUsed))
	if !lock {
		return b // as format 5 wrote it
	}
	b = binary.AppendUvarint(b, a.LockGen)
	return binary.AppendVarint(b, int64(a.LockHeld))
}

func appendString[S string | []byte](b []byte, s S) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

// decodeBinary reads the binary record v of alias id. The record keeps
// none of v, which bbolt owns.
func decodeBinary(id string, v []byte) (*record, error) {
	// One copy for the byte fields, which are slices of it.
	d := &decoder{b: append([]byte(nil), v...)}
	r := &record{Alias: alias.Alias{ID: id}}
	a := &r.Alias
	a.Target = string(d.bytes())
	a.Created = d.time()
	a.Expires = d.time()
	a.MaxUsage = d.count()
	a.Used = d.count()
	a.Pending = d.count()
	a.Refused = d.count()
	bools := d.byte()
	if bools&^knownBools != 0 {
		d.fail("unknown flags")
	}
	a.Revoked = bools&boolRevoked != 0
	a.Unverified = bools&boolUnverified != 0
	a.LockSender = bools&boolLockSender != 0
	r.CountedCreation = bools&boolCountedCreation != 0
	r.CountedConfirmation = bools&boolCountedConfirmation != 0
	a.TokenHash = d.bytes()
	if n := d.uvarint(); n > uint64(len(d.b)) {
		d.fail("allow-from count past the end") // each takes a byte at least
	} else if n > 0 {
		a.AllowFrom = make([]string, n)
		for i := range a.AllowFrom {
			a.AllowFrom[i] = string(d.bytes())
		}
	}
	r.SweepAt = d.varint()
	r.TargetHash = d.bytes()
	r.ConfirmHash = d.bytes()
	if d.err == nil && d.more() {
		a.HourStart = d.time()
		a.HourUsed = d.count()
	}
	if d.err == nil && d.more() {
		a.LockGen = d.uvarint()
		a.LockHeld = d.count()
	}
	if d.err == nil && d.more() {
		d.fail("bytes after the record")
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// decoder reads the fields of a binary record in order. After the first
// malformed field, err is set and every later read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		d.err = errors.New(why)
	}
	d.b = nil
}

func (d *decoder) more() bool { return len(d.b) > 0 }

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong number")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong number")
		return 0
	}
	d.b = d.b[n:]
	return x
}

// count is an int.
func (d *decoder) count() int {
	x := d.varint()
	if int64(int(x)) != x {
		d.fail("count out of range")
		return 0
	}
	return int(x)
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes is a length-prefixed field, nil when empty; its capacity ends
// with it, so that an append to it never overwrites the next field.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length past the end")
		return nil
	}
	if n == 0 {
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail("nanoseconds out of range")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
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
