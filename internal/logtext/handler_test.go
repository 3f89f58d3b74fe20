package logtext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// when is the records' time: not UTC, with milliseconds and more.
var when = time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.FixedZone("CET", 3600))

// both runs build on a slog.TextHandler and on a Handler over buffers and
// returns what each wrote.
func both(t *testing.T, opts *slog.HandlerOptions, build func(slog.Handler) slog.Handler, records ...slog.Record) (want, got string) {
	t.Helper()
	var wb, gb bytes.Buffer
	wh := build(slog.NewTextHandler(&wb, opts))
	gh := build(New(&gb, opts))
	if _, ok := New(&gb, opts).(*Handler); !ok {
		t.Fatalf("New(%+v) is not a *Handler", opts)
	}
	for _, r := range records {
		werr := wh.Handle(context.Background(), r.Clone())
		gerr := gh.Handle(context.Background(), r.Clone())
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("Handle: slog's error %v, ours %v", werr, gerr)
		}
	}
	return wb.String(), gb.String()
}

func record(msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(when, slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

func same(h slog.Handler) slog.Handler { return h }

// Types whose text comes from a method, with the ways a method goes wrong.
type (
	marshaler    struct{ s string }
	badMarshaler struct{}
	ptrMarshaler struct{ s string }
	panicker     struct{}
	stringer     struct{ n int }
	valuer       struct{ v slog.Value }
	loopValuer   struct{}
	namedBytes   []byte
	myByte       byte
	namedStrings []string
)

func (m marshaler) MarshalText() ([]byte, error)     { return []byte(m.s), nil }
func (badMarshaler) MarshalText() ([]byte, error)    { return nil, errors.New("no text = here") }
func (p *ptrMarshaler) MarshalText() ([]byte, error) { return []byte(p.s), nil }
func (panicker) MarshalText() ([]byte, error)        { panic("marshal went wrong") }
func (s stringer) String() string                    { return fmt.Sprintf("stringer #%d", s.n) }
func (v valuer) LogValue() slog.Value                { return v.v }
func (loopValuer) LogValue() slog.Value              { return slog.AnyValue(loopValuer{}) }
func (n namedStrings) String() string                { return strings.Join(n, "+") }

// values are one of each kind and of each way a value's text is made.
var values = []slog.Value{
	slog.StringValue("plain"),
	slog.StringValue(""),
	slog.StringValue("two words"),
	slog.StringValue("a=b"),
	slog.StringValue(`say "hi"`),
	slog.StringValue(`back\slash`),
	slog.StringValue("tab\there"),
	slog.StringValue("line\nbreak"),
	slog.StringValue("del\x7f"),
	slog.StringValue("nul\x00"),
	slog.StringValue("héllo wörld"),
	slog.StringValue("日本語"),
	slog.StringValue("nbsp\u00a0"),
	slog.StringValue("line sep\u2028"),
	slog.StringValue("zero width\u200b"),
	slog.StringValue("bad utf8 \xff\xfe"),
	slog.StringValue("replacement \ufffd"),
	slog.StringValue("[brackets]"),
	slog.StringValue("emoji 🙂"),
	slog.Int64Value(0),
	slog.Int64Value(-42),
	slog.Int64Value(math.MinInt64),
	slog.Uint64Value(math.MaxUint64),
	slog.Float64Value(1.5),
	slog.Float64Value(math.Copysign(0, -1)),
	slog.Float64Value(1e21),
	slog.Float64Value(1e-7),
	slog.Float64Value(math.NaN()),
	slog.Float64Value(math.Inf(1)),
	slog.Float64Value(math.Inf(-1)),
	slog.BoolValue(true),
	slog.BoolValue(false),
	slog.DurationValue(0),
	slog.DurationValue(1),
	slog.DurationValue(1500 * time.Nanosecond),
	slog.DurationValue(time.Millisecond),
	slog.DurationValue(90 * time.Second),
	slog.DurationValue(-time.Hour - 1),
	slog.DurationValue(math.MinInt64),
	slog.TimeValue(when),
	slog.TimeValue(when.UTC()),
	slog.TimeValue(time.Time{}),
	slog.TimeValue(time.Date(2026, 1, 1, 0, 0, 0, 999999999, time.FixedZone("", -9*3600-30*60))),
	slog.TimeValue(time.Date(1900, 1, 1, 0, 0, 0, 500000, time.FixedZone("LMT", 3600+17*60+31))),
	slog.TimeValue(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)),
	slog.TimeValue(time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC)),
	slog.TimeValue(time.Unix(0, 0).In(time.Local)),
	slog.AnyValue(nil),
	slog.AnyValue([]string(nil)),
	slog.AnyValue([]string{}),
	slog.AnyValue([]string{"one"}),
	slog.AnyValue([]string{"a", "b c", `"q"`, ""}),
	slog.AnyValue([]string{"\n"}),
	slog.AnyValue(namedStrings{"x", "y"}),
	slog.AnyValue([]byte("bytes here")),
	slog.AnyValue([]byte(nil)),
	slog.AnyValue(namedBytes("named")),
	slog.AnyValue([]myByte{'m', 'y'}),
	slog.AnyValue([2]byte{1, 2}),
	slog.AnyValue(errors.New("connection refused")),
	slog.AnyValue(fmt.Errorf("wrapped: %w", io.EOF)),
	slog.AnyValue(error(nil)),
	slog.AnyValue(marshaler{"text"}),
	slog.AnyValue(marshaler{""}),
	slog.AnyValue(marshaler{"needs quoting"}),
	slog.AnyValue(marshaler{"bad \xff"}),
	slog.AnyValue(badMarshaler{}),
	slog.AnyValue(&ptrMarshaler{"pointer"}),
	slog.AnyValue((*ptrMarshaler)(nil)),
	slog.AnyValue(panicker{}),
	slog.AnyValue(stringer{7}),
	slog.AnyValue(&stringer{8}),
	slog.AnyValue((*stringer)(nil)),
	slog.AnyValue(struct {
		A int
		B string
	}{1, "x y"}),
	slog.AnyValue(map[string]int{"k": 1}),
	slog.AnyValue([]int{1, 2, 3}),
	slog.AnyValue(3 + 4i),
	slog.AnyValue(float32(0.1)),
	slog.AnyValue(slog.LevelWarn),
	slog.AnyValue(slog.KindInt64),
	slog.AnyValue(netip.MustParseAddrPort("192.0.2.1:25")),
	slog.AnyValue(&slog.Source{File: "f.go", Line: 3}),
	slog.AnyValue(&slog.Source{Function: "main.f"}),
	slog.AnyValue(&slog.Source{}),
	slog.AnyValue((*slog.Source)(nil)),
	slog.AnyValue(valuer{slog.StringValue("resolved value")}),
	slog.AnyValue(valuer{slog.AnyValue(valuer{slog.IntValue(2)})}),
	slog.AnyValue(valuer{slog.GroupValue(slog.Int("in", 1))}),
	slog.AnyValue(valuer{slog.GroupValue()}),
	slog.AnyValue(valuer{}),
	slog.AnyValue(loopValuer{}),
	slog.GroupValue(slog.Int("a", 1), slog.String("b", "two words")),
	slog.GroupValue(slog.Group("inner", slog.Int("c", 3)), slog.Bool("d", true)),
	slog.GroupValue(slog.Attr{}),
	slog.GroupValue(),
}

// keys are keys and group names, plain and needing quotes.
var keys = []string{"k", "", "two words", "a=b", `q"`, "dotted.key", "ü", "\n"}

func TestValues(t *testing.T) {
	for i, v := range values {
		for _, k := range keys {
			t.Run(fmt.Sprintf("%d/%q", i, k), func(t *testing.T) {
				r := record("m", slog.String("before", "x"), slog.Attr{Key: k, Value: v}, slog.Int("after", 1))
				want, got := both(t, nil, same, r)
				if got != want {
					t.Errorf("value %d (%v), key %q:\n got %q\nwant %q", i, v.Kind(), k, got, want)
				}
				want, got = both(t, nil, func(h slog.Handler) slog.Handler {
					return h.WithGroup("g").WithAttrs([]slog.Attr{{Key: k, Value: v}}).WithGroup(k)
				}, r)
				if got != want {
					t.Errorf("in groups: value %d (%v), key %q:\n got %q\nwant %q", i, v.Kind(), k, got, want)
				}
			})
		}
	}
}

func TestRecords(t *testing.T) {
	withLevel := func(l slog.Level) slog.Record {
		r := slog.NewRecord(when, l, "leveled", 0)
		r.AddAttrs(slog.Int("n", 1))
		return r
	}
	cases := []struct {
		name string
		r    slog.Record
	}{
		{"no attrs", record("just a message")},
		{"empty message", record("")},
		{"quoted message", record("two words = \"x\"\n")},
		{"zero time", slog.NewRecord(time.Time{}, slog.LevelInfo, "no time", 0)},
		{"monotonic time", slog.NewRecord(time.Now(), slog.LevelInfo, "now", 0)},
		{"UTC", slog.NewRecord(when.UTC(), slog.LevelInfo, "utc", 0)},
		{"debug-2", withLevel(slog.LevelDebug - 2)},
		{"info+1", withLevel(slog.LevelInfo + 1)},
		{"warn", withLevel(slog.LevelWarn)},
		{"error+5", withLevel(slog.LevelError + 5)},
		{"only empty attrs", record("m", slog.Attr{}, slog.Group("g"))},
		{"group of empty attrs leaks its name", record("m", slog.Group("g", slog.Attr{}), slog.Int("after", 1))},
		{"nested empty", record("m", slog.Group("g", slog.Group("h", slog.Attr{})), slog.Int("after", 1))},
		{"inline group", record("m", slog.Group("", slog.Int("a", 1), slog.Int("b", 2)), slog.Int("c", 3))},
		{"deep groups", record("m", slog.Group("a", slog.Group("b", slog.Group("c", slog.Int("d", 4))), slog.Int("e", 5)))},
		{"many attrs", record("m", slog.Int("a1", 1), slog.Int("a2", 2), slog.Int("a3", 3), slog.Int("a4", 4),
			slog.Int("a5", 5), slog.Int("a6", 6), slog.Int("a7", 7), slog.String("a8", strings.Repeat("long ", 400)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, got := both(t, nil, same, c.r)
			if got != want {
				t.Errorf("\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestWithAttrsAndGroups(t *testing.T) {
	attrs := []slog.Attr{slog.Int("x", 1), slog.String("y", "two words")}
	empty := []slog.Attr{slog.Group("eg")}
	zero := []slog.Attr{{}}
	leak := []slog.Attr{slog.Group("leak", slog.Attr{})}
	cases := []struct {
		name  string
		build func(slog.Handler) slog.Handler
	}{
		{"attrs", func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) }},
		{"attrs twice", func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs).WithAttrs(attrs) }},
		{"no attrs", func(h slog.Handler) slog.Handler { return h.WithAttrs(nil) }},
		{"only empty groups", func(h slog.Handler) slog.Handler { return h.WithAttrs(empty) }},
		{"zero attr", func(h slog.Handler) slog.Handler { return h.WithAttrs(zero).WithAttrs(attrs) }},
		{"group", func(h slog.Handler) slog.Handler { return h.WithGroup("g") }},
		{"group then attrs", func(h slog.Handler) slog.Handler { return h.WithGroup("g").WithAttrs(attrs) }},
		{"attrs then group", func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs).WithGroup("g") }},
		{"group attrs group attrs", func(h slog.Handler) slog.Handler {
			return h.WithGroup("g").WithAttrs(attrs).WithGroup("h").WithAttrs(attrs)
		}},
		{"group, zero attr, group", func(h slog.Handler) slog.Handler { return h.WithGroup("g").WithAttrs(zero).WithGroup("h") }},
		{"group, leaking attrs", func(h slog.Handler) slog.Handler { return h.WithGroup("g").WithAttrs(leak).WithAttrs(attrs) }},
		{"empty group name", func(h slog.Handler) slog.Handler { return h.WithGroup("").WithAttrs(attrs) }},
		{"quoted group name", func(h slog.Handler) slog.Handler { return h.WithGroup("a b").WithAttrs(attrs).WithGroup("c") }},
	}
	records := []slog.Record{
		record("with attrs", slog.Int("z", 3), slog.Group("sub", slog.Int("w", 4))),
		record("without attrs"),
		record("only empty", slog.Attr{}),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, got := both(t, nil, c.build, records...)
			if got != want {
				t.Errorf("\n got %q\nwant %q", got, want)
			}
		})
	}
	// Handlers derived from one must not share what they add.
	var wb, gb bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&wb, nil), New(&gb, nil)} {
		base := h.WithAttrs(attrs)
		a, b := base.WithAttrs([]slog.Attr{slog.Int("a", 1)}), base.WithAttrs([]slog.Attr{slog.Int("b", 2)})
		ga, gb := base.WithGroup("ga"), base.WithGroup("gb")
		for _, h := range []slog.Handler{a, b, ga, gb, base} {
			h.Handle(context.Background(), record("m", slog.Int("r", 0)))
		}
	}
	if gb.String() != wb.String() {
		t.Errorf("derived handlers:\n got %q\nwant %q", gb.String(), wb.String())
	}
}

// A LogValue that panics is reported with the frames that called it,
// which name the handler's own functions: the one difference from slog's
// text, compared here without the frames.
func TestPanickingLogValuer(t *testing.T) {
	r := record("m", slog.Any("v", valuer{slog.AnyValue(panickingValuer{})}), slog.Int("after", 1))
	want, got := both(t, nil, same, r)
	frames := regexp.MustCompile(`called from [^"]*"`)
	want, got = frames.ReplaceAllString(want, `…"`), frames.ReplaceAllString(got, `…"`)
	if got != want || !strings.Contains(got, "LogValue panicked") {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}

type panickingValuer struct{}

func (panickingValuer) LogValue() slog.Value { panic("no value") }

func TestEnabled(t *testing.T) {
	var lv slog.LevelVar
	for _, opts := range []*slog.HandlerOptions{nil, {}, {Level: slog.LevelWarn}, {Level: &lv}} {
		w, g := slog.NewTextHandler(io.Discard, opts), New(io.Discard, opts)
		for _, set := range []slog.Level{slog.LevelDebug, slog.LevelError} {
			lv.Set(set)
			for l := slog.LevelDebug - 4; l <= slog.LevelError+4; l++ {
				ctx := context.Background()
				if w.Enabled(ctx, l) != g.Enabled(ctx, l) || w.Enabled(ctx, l) != g.WithGroup("g").WithAttrs([]slog.Attr{slog.Int("a", 1)}).Enabled(ctx, l) {
					t.Errorf("opts %+v, var %v: Enabled(%v) = %v, slog's %v", opts, set, l, g.Enabled(ctx, l), w.Enabled(ctx, l))
				}
			}
		}
	}
}

func TestUnsupportedOptionsFallBack(t *testing.T) {
	for _, opts := range []*slog.HandlerOptions{
		{AddSource: true},
		{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }},
	} {
		if _, ok := New(io.Discard, opts).(*slog.TextHandler); !ok {
			t.Errorf("New with %+v: %T, want *slog.TextHandler", opts, New(io.Discard, opts))
		}
	}
}

type failingWriter struct{ calls int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	return 0, errors.New("disk full")
}

func TestOneWritePerRecordAndItsError(t *testing.T) {
	var w failingWriter
	h := New(&w, nil)
	err := h.Handle(context.Background(), record("m", slog.String("long", strings.Repeat("x", 5000))))
	if err == nil || err.Error() != "disk full" || w.calls != 1 {
		t.Errorf("Handle: %v after %d writes, want disk full after 1", err, w.calls)
	}
}
