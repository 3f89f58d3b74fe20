package etcdstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/codec"
)

// recordShapes are records of every shape the engine writes, and some it
// does not (negative and huge numbers, empty strings in lists).
func recordShapes() []*record {
	now := int64(1796198400) // 2026-12-01
	recent := make([]string, recentUses)
	for i := range recent {
		recent[i] = newKey()
	}
	return []*record{
		{ID: "a"},
		{ID: "k3x9q2", Target: "me@example.com", Created: now, Expires: now + 3*86400, MaxUsage: 5, Used: 2,
			TokenHash: bytes.Repeat([]byte{0xab}, 32), TargetHash: bytes.Repeat([]byte{1}, 16), SweepAt: now + 3*86400},
		{ID: "zzzzzzzzzzzz", Target: strings.Repeat("x", 300) + "@example.com", Created: -5, Expires: 1 << 40,
			MaxUsage: 1 << 40, Used: -1, Refused: 123456, Revoked: true, Unverified: true, LockSender: true,
			TokenHash: []byte{0}, TargetHash: []byte{2}, ConfirmHash: bytes.Repeat([]byte{3}, 32),
			AllowFrom: []string{"example.org", "a@example.net", "", strings.Repeat("d", 200)},
			SweepAt:   -1, Recent: recent, HourStart: now + 3600, HourUsed: 7,
			LockGen: 1<<64 - 1, LockHeld: -2, CountedCreation: true, CountedConfirmation: true},
		{ID: "hour", Target: "h@example.com", Created: now, Expires: now + 86400, MaxUsage: 3, Used: 1,
			TokenHash: []byte{9}, TargetHash: []byte{8}, Recent: recent[:1], HourStart: now, HourUsed: 1,
			LockSender: true, AllowFrom: []string{"shop.example"}, LockGen: 3, LockHeld: 1, CountedCreation: true},
		{ID: "nohour", Target: "n@example.com", HourStart: 0, HourUsed: 4}, // a window's count without its start
	}
}

// Every record decodes to itself from both formats, and a record read
// from JSON and written again as binary (RaiseFormat's rewrite) is the
// same record.
func TestRecordRoundTrip(t *testing.T) {
	for _, r := range recordShapes() {
		t.Run(r.ID, func(t *testing.T) {
			checkRoundTrip(t, r)
		})
	}
}

func checkRoundTrip(t *testing.T, r *record) {
	t.Helper()
	bin := []byte(r.value())
	if bin[0] != formatBinary || storedFormat(bin) != formatBinary {
		t.Fatalf("binary record starts with %d", bin[0])
	}
	js := []byte(r.jsonValue())
	if storedFormat(js) != formatJSON {
		t.Fatalf("JSON record %q", js)
	}
	for name, v := range map[string][]byte{"binary": bin, "JSON": js} {
		got, err := decode(r.ID, v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("%s: decoded\n%+v\nwant\n%+v", name, got, r)
		}
		again, err := decode(r.ID, []byte(got.value()))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("%s, written again as binary: %+v, %v", name, again, err)
		}
	}
}

// Random records, the hour window's fields included, round-trip through
// both formats.
func TestRecordRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	num := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return rng.Int64N(100)
		case 2:
			return -rng.Int64()
		}
		return rng.Int64()
	}
	text := func() string {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return strings.ToValidUTF8(string(b), "?") // JSON keeps valid UTF-8 only, as the engine's strings are
	}
	blob := func() []byte {
		if rng.IntN(3) == 0 {
			return nil
		}
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	list := func(max int) []string {
		n := rng.IntN(max + 1)
		if n == 0 {
			return nil
		}
		l := make([]string, n)
		for i := range l {
			l[i] = text()
		}
		return l
	}
	for range 3000 {
		r := &record{
			ID: newKey(), Target: text(), Created: num(), Expires: num(), MaxUsage: int(num()), Used: int(num()),
			Refused: int(num()), Revoked: rng.IntN(2) == 0, Unverified: rng.IntN(2) == 0, LockSender: rng.IntN(2) == 0,
			TokenHash: blob(), TargetHash: blob(), ConfirmHash: blob(), AllowFrom: list(10), SweepAt: num(),
			Recent: list(recentUses), HourStart: num(), HourUsed: int(num()),
			LockGen: uint64(num()), LockHeld: int(num()),
			CountedCreation: rng.IntN(2) == 0, CountedConfirmation: rng.IntN(2) == 0,
		}
		checkRoundTrip(t, r)
	}
}

// A damaged record is an error naming its id, never a panic and never
// ErrNotFound (which would refuse mail for a live alias as unknown).
func TestDecodeDamaged(t *testing.T) {
	r := recordShapes()[2]
	v := []byte(r.value())
	for n := range len(v) {
		_, err := decode(r.ID, v[:n])
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("a record cut to %d of %d bytes: %v", n, len(v), err)
		}
	}
	// The flags byte follows the version, the target and five numbers.
	head := codec.AppendString([]byte{formatBinary}, r.Target)
	for _, x := range []int64{r.Created, r.Expires, int64(r.MaxUsage), int64(r.Used), int64(r.Refused)} {
		head = codec.AppendInt(head, x)
	}
	flagsAt := len(head)
	if !bytes.HasPrefix(v, head) || v[flagsAt] != 0b11111 {
		t.Fatalf("the record does not start as laid out: %x", v[:flagsAt+1])
	}
	unknownFlag := bytes.Clone(v)
	unknownFlag[flagsAt] |= 1 << 7
	cases := map[string][]byte{
		"a byte after the end": append(bytes.Clone(v), 0),
		"a newer format":       append([]byte{formatNewest + 1}, v[1:]...),
		"no record":            []byte{1, 2, 3},
		"empty":                {},
		"an unknown flag":      unknownFlag,
		"bad JSON":             []byte(`{"id":`),
		"JSON of another type": []byte(`{"used":"many"}`),
		"huge allow-from count": func() []byte {
			// The record up to its allow-from, then a count no record holds.
			short := &record{ID: "x", TokenHash: []byte{1}}
			b := []byte(short.value())
			cut := len(b) - 7 // before AllowFrom, SweepAt, Recent, HourStart, HourUsed, LockGen, LockHeld (one byte each)
			return append(b[:cut:cut], 0xff, 0xff, 0xff, 0xff, 0x0f)
		}(),
	}
	for name, b := range cases {
		_, err := decode(r.ID, b)
		if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "decode "+r.ID) {
			t.Errorf("%s: %v, want an error naming %s", name, err, r.ID)
		}
	}
	if _, err := decode(r.ID, append([]byte{formatNewest + 1}, v[1:]...)); err == nil || !strings.Contains(err.Error(), "newer than this version") {
		t.Errorf("a newer format: %v", err)
	}
	if _, err := decode("x", []byte(tombstone)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a tombstone: %v", err)
	}
}

// FuzzDecodeRecord: no bytes make decode panic, and a binary record it
// accepts decodes again to the same record once written.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range recordShapes() {
		bin := []byte(r.value())
		f.Add(bin)
		f.Add(bin[:len(bin)/2])
		f.Add([]byte(r.jsonValue()))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decode("fuzz", v)
		if err != nil {
			return
		}
		again, err := decode("fuzz", []byte(r.value()))
		if err != nil {
			t.Fatalf("an accepted record, written again, does not decode: %v", err)
		}
		// JSON tells an empty list from none, which binary does not.
		if storedFormat(v) == formatBinary && !reflect.DeepEqual(again, r) {
			t.Fatalf("decoded %+v, written and decoded again %+v", r, again)
		}
	})
}
