package logtext

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"
)

// FuzzHandler builds the same handler chain and record on slog's text
// handler and on this one from the fuzzer's bytes, and fails on any
// difference in what they write.
func FuzzHandler(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, "key", "two words")
	f.Add([]byte{3, 0, 9, 1, 2, 2, 14, 0, 3, 12, 1, 15, 9, 4}, "a=b", "\"q\"\xff")
	f.Add([]byte{255, 128, 7, 7, 7, 13, 13, 13, 11, 11, 12}, "ü\u00a0", "")
	f.Fuzz(func(t *testing.T, prog []byte, s1, s2 string) {
		g := &gen{prog: prog, s1: s1, s2: s2}
		var wb, gb bytes.Buffer
		var wh, gh slog.Handler = slog.NewTextHandler(&wb, nil), New(&gb, nil)
		for n := g.next() % 4; n > 0; n-- {
			if g.next()%2 == 0 {
				name := g.str()
				wh, gh = wh.WithGroup(name), gh.WithGroup(name)
			} else {
				as := g.attrs(0)
				wh, gh = wh.WithAttrs(as), gh.WithAttrs(as)
			}
		}
		r := slog.NewRecord(g.time(), slog.Level(int8(g.next())), g.str(), 0)
		r.AddAttrs(g.attrs(0)...)
		wh.Handle(context.Background(), r.Clone())
		gh.Handle(context.Background(), r.Clone())
		if gb.String() != wb.String() {
			t.Errorf("\n got %q\nwant %q", gb.String(), wb.String())
		}
	})
}

// gen reads a handler chain and a record out of the fuzzer's bytes; past
// their end it reads zeros.
type gen struct {
	prog   []byte
	s1, s2 string
}

func (g *gen) next() byte {
	if len(g.prog) == 0 {
		return 0
	}
	b := g.prog[0]
	g.prog = g.prog[1:]
	return b
}

func (g *gen) u64() uint64 {
	var b [8]byte
	n := copy(b[:], g.prog)
	g.prog = g.prog[n:]
	return binary.LittleEndian.Uint64(b[:])
}

var fixed = []string{"", "k", "msg", "two words", "a.b", "=", "é", "\t", "\\", "[x]"}

// str is a fixed string, or a piece of the fuzzer's (cut anywhere, even
// inside a UTF-8 sequence).
func (g *gen) str() string {
	c := g.next()
	s := g.s1
	switch c % 3 {
	case 0:
		return fixed[int(c/3)%len(fixed)]
	case 2:
		s = g.s2
	}
	if len(s) == 0 {
		return s
	}
	i, j := int(g.next())%(len(s)+1), int(g.next())%(len(s)+1)
	if i > j {
		i, j = j, i
	}
	if g.next()%2 == 0 {
		return s
	}
	return s[i:j]
}

var zones = []*time.Location{time.UTC, time.Local, time.FixedZone("", 5*3600+30*60), time.FixedZone("W", -3600), time.FixedZone("odd", -(2*3600 + 17*60 + 31))}

func (g *gen) time() time.Time {
	switch g.next() % 4 {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, int64(g.u64())).In(zones[int(g.next())%len(zones)])
	case 2:
		return time.Date(int(int16(g.u64())), time.Month(g.next()), int(g.next()), int(g.next()), int(g.next()), int(g.next()), int(g.u64()%2e9), zones[int(g.next())%len(zones)])
	}
	return time.Now()
}

func (g *gen) attrs(depth int) []slog.Attr {
	n := int(g.next() % 6)
	as := make([]slog.Attr, 0, n)
	for range n {
		as = append(as, slog.Attr{Key: g.str(), Value: g.value(depth)})
	}
	if g.next()%8 == 0 {
		as = append(as, slog.Attr{}) // elided
	}
	return as
}

func (g *gen) value(depth int) slog.Value {
	switch g.next() % 20 {
	case 0:
		return slog.Int64Value(int64(g.u64()))
	case 1:
		return slog.Uint64Value(g.u64())
	case 2:
		return slog.Float64Value(math.Float64frombits(g.u64()))
	case 3:
		return slog.BoolValue(g.next()%2 == 0)
	case 4:
		return slog.DurationValue(time.Duration(g.u64()))
	case 5:
		return slog.TimeValue(g.time())
	case 6:
		return slog.AnyValue([]string{g.str(), g.str()}[:g.next()%3])
	case 7:
		return slog.AnyValue([]byte(g.str()))
	case 8:
		return slog.AnyValue(errors.New(g.str()))
	case 9:
		return slog.AnyValue(marshaler{g.str()})
	case 10:
		return slog.AnyValue(stringer{int(int8(g.next()))})
	case 11:
		if depth < 3 {
			return slog.GroupValue(g.attrs(depth + 1)...)
		}
	case 12:
		if depth < 3 {
			return slog.AnyValue(valuer{g.value(depth + 1)})
		}
	case 13:
		return slog.AnyValue(&slog.Source{Function: g.str(), File: g.str(), Line: int(int8(g.next()))})
	case 14:
		return slog.AnyValue(struct {
			S string
			N int
		}{g.str(), int(g.next())})
	case 15:
		return slog.AnyValue(nil)
	case 16:
		return slog.AnyValue([]any{g.str(), int(g.next())})
	case 17:
		return slog.AnyValue(namedBytes(g.str()))
	case 18:
		return slog.AnyValue(slog.Level(int8(g.next())))
	}
	return slog.StringValue(g.str())
}
