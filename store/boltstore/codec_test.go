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

// FuzzRoundTrip: any record encodes and decodes to itself.
func FuzzRoundTrip(f *testing.F) {
	f.Add("me@example.com", t0.Unix(), int64(0), t0.Add(day).Unix(), 5, 1, 1, 0, byte(0), []byte{1, 2}, "a.example,b@c.example", int64(7), []byte{3}, []byte(nil))
	f.Add("", int64(-1), int64(999999999), int64(1)<<40, -3, 1<<40, 0, 9, byte(7), []byte(nil), "", int64(0), []byte(nil), []byte{4})
	f.Fuzz(func(t *testing.T, target string, created, nsec, expires int64, maxUsage, used, pending, refused int, bools byte, token []byte, allow string, sweepAt int64, targetHash, confirmHash []byte) {
		nsec %= 1e9
		if nsec < 0 {
			nsec = -nsec
		}
		r := &record{Alias: alias.Alias{
			ID: "fuzz", Target: target,
			Created: time.Unix(created, nsec).UTC(), Expires: time.Unix(expires, 0).UTC(),
			MaxUsage: maxUsage, Used: used, Pending: pending, Refused: refused,
			Revoked: bools&1 != 0, Unverified: bools&2 != 0, LockSender: bools&4 != 0,
			TokenHash: token,
		}, SweepAt: sweepAt, TargetHash: targetHash, ConfirmHash: confirmHash}
		if allow != "" {
			r.AllowFrom = strings.Split(allow, ",")
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
	c.Created, c.Expires = c.Created.UTC(), c.Expires.UTC()
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
	if err != nil || !got.HourStart.IsZero() || got.HourUsed != 0 {
		t.Fatalf("a record without a window: %+v, %v", got, err)
	}
}
