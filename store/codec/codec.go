// Package codec is the binary encoding of the fields of the records the
// store engines keep (boltstore's alias record, etcdstore's): every
// lookup on the RCPT path and every write of a reservation decodes and
// encodes one, so a record is a fixed sequence of fields, no names, no
// text. Each engine lays out its own record with these primitives and
// versions it itself (boltstore in its file format, etcdstore in the
// cluster's format marker).
//
// A string or bytes is its length (uvarint), then its bytes; an int is a
// varint; a time is its unix seconds (varint), then its nanoseconds
// (uvarint).
package codec

import (
	"encoding/binary"
	"errors"
	"time"
)

// AppendString appends s, a string or bytes, to b.
func AppendString[S ~string | ~[]byte](b []byte, s S) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// AppendStrings appends a count, then each string of l.
func AppendStrings(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = AppendString(b, s)
	}
	return b
}

// AppendFlags appends up to eight bools as one byte, the first in its
// lowest bit.
func AppendFlags(b []byte, flags ...bool) []byte {
	var x byte
	for i, f := range flags {
		if f {
			x |= 1 << i
		}
	}
	return append(b, x)
}

// AppendInt appends x as a varint.
func AppendInt(b []byte, x int64) []byte { return binary.AppendVarint(b, x) }

// AppendUint appends x as a uvarint.
func AppendUint(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }

// AppendTime appends t's unix seconds and nanoseconds.
func AppendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

// A Decoder reads the fields of one record in order. After the first
// malformed field Err is set and every later read returns a zero value,
// so a decoding function reads every field and checks Err once. Nothing
// it is given makes it panic.
type Decoder struct {
	b   []byte
	s   string // b as a string, made at the first String
	i   int    // where the next field starts
	err error
}

// NewDecoder reads b. The byte fields it returns are slices of b, and
// its strings share one copy of b: the caller must not change b while
// they are in use.
func NewDecoder(b []byte) Decoder { return Decoder{b: b} }

// Err is the first malformed field's error, or nil.
func (d *Decoder) Err() error { return d.err }

// Fail records why the record is malformed, unless an earlier field did;
// the reads after it return zero values.
func (d *Decoder) Fail(why string) {
	if d.err == nil {
		d.err = errors.New(why)
	}
	d.i = len(d.b)
}

// More reports whether bytes are left after the fields read so far.
func (d *Decoder) More() bool { return d.i < len(d.b) }

// Left is how many bytes are left.
func (d *Decoder) Left() int { return len(d.b) - d.i }

// Uvarint reads a uvarint.
func (d *Decoder) Uvarint() uint64 {
	x, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		d.Fail("truncated or overlong number")
		return 0
	}
	d.i += n
	return x
}

// Varint reads a varint.
func (d *Decoder) Varint() int64 {
	x, n := binary.Varint(d.b[d.i:])
	if n <= 0 {
		d.Fail("truncated or overlong number")
		return 0
	}
	d.i += n
	return x
}

// Int reads a varint that must fit an int.
func (d *Decoder) Int() int {
	x := d.Varint()
	if int64(int(x)) != x {
		d.Fail("count out of range")
		return 0
	}
	return int(x)
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.i >= len(d.b) {
		d.Fail("truncated")
		return 0
	}
	c := d.b[d.i]
	d.i++
	return c
}

// span reads a length and returns where its bytes start, advancing past
// them; ok is false when the length runs past the end.
func (d *Decoder) span() (start, n int, ok bool) {
	l := d.Uvarint()
	if d.err != nil {
		return 0, 0, false
	}
	if l > uint64(len(d.b)-d.i) {
		d.Fail("length past the end")
		return 0, 0, false
	}
	start, n = d.i, int(l)
	d.i += n
	return start, n, true
}

// Bytes reads a length-prefixed field, nil when empty; its capacity ends
// with it, so that an append to it never overwrites the next field.
func (d *Decoder) Bytes() []byte {
	start, n, ok := d.span()
	if !ok || n == 0 {
		return nil
	}
	return d.b[start : start+n : start+n]
}

// String reads a length-prefixed field as a string. The strings of one
// Decoder share a single copy of its bytes.
func (d *Decoder) String() string {
	start, n, ok := d.span()
	if !ok || n == 0 {
		return ""
	}
	if d.s == "" {
		d.s = string(d.b)
	}
	return d.s[start : start+n]
}

// Count reads a uvarint count of elements that take a byte each at
// least, so that a damaged count cannot make the caller allocate more
// than the record could hold.
func (d *Decoder) Count() int {
	n := d.Uvarint()
	if n > uint64(len(d.b)-d.i) {
		d.Fail("count past the end")
		return 0
	}
	return int(n)
}

// Strings reads what AppendStrings wrote; nil for none.
func (d *Decoder) Strings() []string {
	n := d.Count()
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.String()
	}
	return l
}

// Flags reads what AppendFlags wrote into the bools flags point to, in
// the same order; a bit set beyond them is an unknown flag, a failure.
func (d *Decoder) Flags(flags ...*bool) {
	x := d.Byte()
	if x>>len(flags) != 0 {
		d.Fail("unknown flags")
		x = 0
	}
	for i, f := range flags {
		*f = x&(1<<i) != 0
	}
}

// Time reads unix seconds and nanoseconds, as a UTC time.
func (d *Decoder) Time() time.Time {
	sec := d.Varint()
	nsec := d.Uvarint()
	if nsec >= 1e9 {
		d.Fail("nanoseconds out of range")
		return time.Time{}
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}
