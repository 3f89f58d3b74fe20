package codec

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// Every field reads back as written, in order.
func TestRoundTrip(t *testing.T) {
	at := time.Unix(-5, 999999999).UTC()
	var b []byte
	b = AppendString(b, "target")
	b = AppendString(b, []byte{1, 2, 3})
	b = AppendString(b, "")
	b = AppendInt(b, math.MinInt64)
	b = AppendUint(b, math.MaxUint64)
	b = AppendTime(b, at)
	b = AppendStrings(b, []string{"a@example.org", "", "example.net"})
	b = AppendStrings(b, nil)
	b = AppendFlags(b, true, false, true)
	b = append(b, 7)
	d := NewDecoder(b)
	if s := d.String(); s != "target" {
		t.Errorf("string %q", s)
	}
	if v := d.Bytes(); !bytes.Equal(v, []byte{1, 2, 3}) || cap(v) != 3 {
		t.Errorf("bytes %v, cap %d", v, cap(v))
	}
	if s := d.String(); s != "" {
		t.Errorf("empty string %q", s)
	}
	if x := d.Varint(); x != math.MinInt64 {
		t.Errorf("varint %d", x)
	}
	if x := d.Uvarint(); x != math.MaxUint64 {
		t.Errorf("uvarint %d", x)
	}
	if x := d.Time(); !x.Equal(at) {
		t.Errorf("time %v", x)
	}
	if l := d.Strings(); len(l) != 3 || l[0] != "a@example.org" || l[1] != "" || l[2] != "example.net" {
		t.Errorf("strings %q", l)
	}
	if l := d.Strings(); l != nil {
		t.Errorf("no strings %q", l)
	}
	var f0, f1, f2 bool
	if d.Flags(&f0, &f1, &f2); !f0 || f1 || !f2 || d.Err() != nil {
		t.Errorf("flags %v %v %v, err %v", f0, f1, f2, d.Err())
	}
	if c := d.Byte(); c != 7 || d.More() || d.Err() != nil {
		t.Errorf("byte %d, more %v, err %v", c, d.More(), d.Err())
	}
}

// A malformed field sets Err; every read after it is a zero value and
// nothing panics.
func TestMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"length past the end": AppendUint(nil, 5),
		"huge length":         AppendUint(nil, math.MaxUint64),
		"overlong number":     bytes.Repeat([]byte{0xff}, 11),
		"nanoseconds":         AppendUint(AppendInt(nil, 1), 1e9),
		"empty":               nil,
	} {
		d := NewDecoder(b)
		switch name {
		case "nanoseconds":
			d.Time()
		case "overlong number":
			d.Varint()
		default:
			_ = d.String()
		}
		if d.Err() == nil {
			t.Errorf("%s: no error", name)
		}
		if d.String() != "" || d.Bytes() != nil || d.Varint() != 0 || d.Count() != 0 || d.Byte() != 0 || !d.Time().IsZero() || d.More() {
			t.Errorf("%s: a read after the error returned something", name)
		}
	}
	d := NewDecoder(AppendUint(nil, 3))
	if d.Count(); d.Err() == nil {
		t.Error("a count of 3 elements in no bytes")
	}
}

// A flag set beyond those the reader knows fails the decoding and sets
// none of them.
func TestUnknownFlag(t *testing.T) {
	d := NewDecoder(AppendFlags(nil, true, false, true))
	var f0, f1 bool
	if d.Flags(&f0, &f1); d.Err() == nil || f0 || f1 {
		t.Errorf("flags %v %v, err %v: want an unknown flag refused", f0, f1, d.Err())
	}
}
