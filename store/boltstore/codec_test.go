package boltstore

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// codecRecords are records of every shape the store writes, and some it
// does not (negative and large counts, nanoseconds, times before 1970).
func codecRecords() []*record {
	at := func(sec, nsec int64) time.Time { return time.Unix(sec, nsec).UTC() }
	return []*record{
		{Alias: alias.Alias{ID: "a"}},
		{Alias: alias.Alias{
			ID: "k3x9q2", Target: "me@example.com", Created: t0, Expires: t0.Add(3 * day),
			MaxUsage: 5, Used: 2, Pending: 1, TokenHash: bytes.Repeat([]byte{0xab}, 32),
		}, SweepAt: t0.Add(3 * day).Unix(), TargetHash: bytes.Repeat([]byte{1}, 16)},
		{Alias: alias.Alias{
			ID: "zzzzzzzzzzzz", Target: strings.Repeat("x", 300) + "@example.com",
			Created: at(1, 999999999), Expires: at(-5, 7), MaxUsage: 1 << 40, Used: -1, Pending: 1 << 31,
			Revoked: true, Refused: 123456, Unverified: true, TokenHash: []byte{0},
			AllowFrom:  []string{"example.org", "a@example.net", "", strings.Repeat("d", 200)},
			LockSender: true,
		}, SweepAt: -1, TargetHash: []byte{2}, ConfirmHash: bytes.Repeat([]byte{3}, 32)},
		{Alias: alias.Alias{ID: "used", Target: "u@example.com", Created: t0, Expires: t0.Add(day), MaxUsage: 1, Used: 1, Refused: 3, AllowFrom: []string{"sender.example"}}},
	}
}

// encodeFormat3 is a record as format 3 stored it: the header, then JSON.
func encodeFormat3(r *record) []byte {
	a := &r.Alias
	j, err := json.Marshal(recordJSON{
		ID: a.ID, Target: a.Target, Created: a.Created, Expires: a.Expires,
		MaxUsage: a.MaxUsage, Used: a.Used, Pending: a.Pending, Revoked: a.Revoked,
		Refused: a.Refused, Unverified: a.Unverified, TokenHash: a.TokenHash,
		AllowFrom: a.AllowFrom, LockSender: a.LockSender,
		SweepAt: r.SweepAt, TargetHash: r.TargetHash, ConfirmHash: r.ConfirmHash,
	})
	if err != nil {
		panic(err)
	}
	v := make([]byte, headerLen)
	v[0] = headerJSON
	r.putHeader(v)
	return append(v, j...)
}

// Every record decodes to itself, from the binary encoding and from the
// JSON of formats 3 and 2 alike, and the header says what the record
// says.
func TestCodecRoundTrip(t *testing.T) {
	for _, r := range codecRecords() {
		t.Run(r.ID, func(t *testing.T) {
			bin := r.encode()
			if bin[0] != headerBinary {
				t.Fatalf("version byte %d", bin[0])
			}
			encodings := map[string][]byte{
				"binary":   bin,
				"format 3": encodeFormat3(r),
				"format 2": encodeFormat3(r)[headerLen:],
			}
			for name, v := range encodings {
				got, err := decode([]byte(r.ID), v)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !reflect.DeepEqual(got, r) {
					t.Errorf("%s: decoded\n%+v\nwant\n%+v", name, got, r)
				}
			}
			// The header alone refuses mail for exactly the aliases that
			// refuse it.
			refuses := r.Dead(t0) || r.Unverified
			if dead, _, ok := quickDead(bin, t0); ok != refuses || (ok && !dead) {
				t.Errorf("quickDead = %v, %v; refuses mail: %v", dead, ok, refuses)
			}
		})
	}
}

// The decoded record is the caller's: bbolt reuses the value's memory.
func TestDecodeCopies(t *testing.T) {
	r := codecRecords()[2]
	v := r.encode()
	got, err := decode([]byte(r.ID), v)
	if err != nil {
		t.Fatal(err)
	}
	for i := headerLen; i < len(v); i++ {
		v[i] = 0xff
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatal("the decoded record changed with the bytes it was read from")
	}
	// An append to one byte field leaves the next one alone.
	_ = append(got.TokenHash, 9, 9, 9)
	if !reflect.DeepEqual(got, r) {
		t.Fatal("an append to TokenHash overwrote the fields after it")
	}
}

// Malformed records are errors: cut anywhere, or with a byte changed in
// the header or the flags, or with bytes after the end.
func TestDecodeMalformed(t *testing.T) {
	r := codecRecords()[2]
	v := r.encode()
	for n := range len(v) {
		if _, err := decode([]byte(r.ID), v[:n]); err == nil {
			t.Errorf("a record cut to %d of %d bytes decoded", n, len(v))
		}
	}
	bad := map[string]func([]byte){
		"expiry in the header":     func(b []byte) { b[8]++ },
		"revoked in the header":    func(b []byte) { b[9] ^= flagRevoked },
		"unverified in the header": func(b []byte) { b[9] ^= flagUnverified },
		"unknown header flag":      func(b []byte) { b[9] |= 1 << 7 },
		"version":                  func(b []byte) { b[0] = 3 },
	}
	for name, change := range bad {
		b := bytes.Clone(v)
		change(b)
		if _, err := decode([]byte(r.ID), b); err == nil {
			t.Errorf("%s changed: decoded", name)
		}
	}
	if _, err := decode([]byte(r.ID), append(bytes.Clone(v), 0)); err == nil {
		t.Error("a record with a byte after its end decoded")
	}
	if _, err := decode([]byte("x"), tombstone); err == nil {
		t.Error("a tombstone decoded")
	}
}

// FuzzDecode: no bytes make decode panic, and a record it accepts
// encodes to a record that decodes to the same.
func FuzzDecode(f *testing.F) {
	for _, r := range codecRecords() {
		bin := r.encode()
		f.Add(bin)
		f.Add(bin[:len(bin)/2])
		f.Add(encodeFormat3(r))
		f.Add(encodeFormat3(r)[headerLen:])
	}
	f.Add([]byte{})
	f.Add(tombstone)
	f.Add([]byte{headerBinary, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decode([]byte("fuzz"), v)
		if err != nil {
			return
		}
		w := r.encode()
		got, err := decode([]byte(r.ID), w)
		if err != nil {
			t.Fatalf("an accepted record encodes to one that does not decode: %v", err)
		}
		want := normal(r)
		if got := normal(got); !reflect.DeepEqual(got, want) {
			t.Fatalf("re-encoded record decoded\n%+v\nwant\n%+v", got, want)
		}
	})
}

// FuzzRoundTrip: any record encodes and decodes to itself, every field
// of it, within the length size promised.
func FuzzRoundTrip(f *testing.F) {
	f.Add("me@example.com", t0.Unix(), int64(0), t0.Add(day).Unix(), int64(0), 5, 1, 1, 0, byte(0), []byte{1, 2}, "a.example,b@c.example", int64(7), []byte{3}, []byte(nil), int64(0), int64(0), 0, uint64(0), 0)
	f.Add("", int64(-1), int64(999999999), int64(1)<<40, int64(5), -3, 1<<40, 0, 9, byte(7), []byte(nil), "", int64(0), []byte(nil), []byte{4}, t0.Unix(), int64(1), 2, uint64(3), 1)
	f.Add("x@y.example", int64(1)<<62, int64(-7), int64(-1)<<62, int64(1)<<40, 1<<62, -1<<62, 1<<62, -1<<62, byte(0xff), []byte{0}, ",", int64(-1)<<62, []byte{5}, []byte{6}, int64(-1)<<62, int64(999999999), -1<<62, ^uint64(0), -1<<62)
	f.Fuzz(func(t *testing.T, target string, created, nsec, expires, expNsec int64, maxUsage, used, pending, refused int, bools byte, token []byte, allow string, sweepAt int64, targetHash, confirmHash []byte, hourStart, hourNsec int64, hourUsed int, lockGen uint64, lockHeld int) {
		r := &record{Alias: alias.Alias{
			ID: "fuzz", Target: target,
			Created: time.Unix(created, nanos(nsec)).UTC(), Expires: time.Unix(expires, nanos(expNsec)).UTC(),
			MaxUsage: maxUsage, Used: used, Pending: pending, Refused: refused,
			Revoked: bools&1 != 0, Unverified: bools&2 != 0, LockSender: bools&4 != 0,
			TokenHash: token, HourUsed: hourUsed, LockGen: lockGen, LockHeld: lockHeld,
		}, SweepAt: sweepAt, TargetHash: targetHash, ConfirmHash: confirmHash,
			CountedCreation: bools&8 != 0, CountedConfirmation: bools&16 != 0}
		if hourStart != 0 || hourNsec != 0 {
			r.HourStart = time.Unix(hourStart, nanos(hourNsec)).UTC()
		}
		if allow != "" {
			r.AllowFrom = strings.Split(allow, ",")
		}
		if n, max := len(r.appendBinary(nil)), r.size(); n > max {
			t.Fatalf("binary record of %d bytes, size promised at most %d", n, max)
		}
		got, err := decode([]byte("fuzz"), r.encode())
		if err != nil {
			t.Fatal(err)
		}
		if want := normal(r); !reflect.DeepEqual(normal(got), want) {
			t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
		}
	})
}

// nanos is x as the nanoseconds of a time, 0 to 999999999.
func nanos(x int64) int64 {
	x %= 1e9
	if x < 0 {
		x = -x
	}
	return x
}

// normal is r with empty slices nil and times in UTC, which an encoding
// need not keep apart.
func normal(r *record) *record {
	c := *r
	nilEmpty := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	c.TokenHash, c.TargetHash, c.ConfirmHash = nilEmpty(c.TokenHash), nilEmpty(c.TargetHash), nilEmpty(c.ConfirmHash)
	if len(c.AllowFrom) == 0 {
		c.AllowFrom = nil
	}
	c.Created, c.Expires, c.HourStart = c.Created.UTC(), c.Expires.UTC(), c.HourStart.UTC()
	return &c
}

// The hourly window (format 5) round-trips at the record's end; a record
// without one (as format 4 wrote every record) decodes with none open.
func TestCodecHourWindow(t *testing.T) {
	r := codecRecords()[1]
	r.HourStart, r.HourUsed = t0.Add(time.Hour), 7
	got, err := decode([]byte(r.ID), r.encode())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, r)
	}
	plain := codecRecords()[1]
	v := plain.encode()
	if w := r.encode(); !bytes.HasPrefix(w[headerLen:], v[headerLen:]) || len(w) <= len(v) {
		t.Fatal("the window is not an addition at the end of the record")
	}
	got, err = decode([]byte(plain.ID), v)
	if err != nil || !got.HourStart.IsZero() || got.HourUsed != 0 || got.LockGen != 0 || got.LockHeld != 0 {
		t.Fatalf("a record without a window: %+v, %v", got, err)
	}
	// A lock-sender lock's state (format 6) follows the window, which is
	// written then even if it was never opened.
	l := codecRecords()[1]
	l.LockGen, l.LockHeld = 2, 1
	w := l.encode()
	if !bytes.HasPrefix(w[headerLen:], v[headerLen:]) || len(w) <= len(v) {
		t.Fatal("the lock is not an addition at the end of the record")
	}
	if got, err := decode([]byte(l.ID), w); err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, l)
	}
}
