// Package logtext is a slog.Handler that writes what slog.TextHandler
// writes, byte for byte, for less CPU: one pooled buffer per record
// instead of two, a MarshalText result quoted without first becoming a
// string, a []string formatted without reflection, plain ASCII copied
// into a quoted value in one go, and no deferred recover around values
// that cannot panic. tempalias writes a line per SMTP transaction, which
// was a good part of a refused transaction's cost.
//
// The one difference: a LogValue method that panics is logged, by
// slog.Value.Resolve, with the frames that called it, and those are this
// package's functions rather than slog's.
//
// Of slog.HandlerOptions it implements Level: New hands options with
// AddSource or ReplaceAttr to slog.NewTextHandler instead.
package logtext

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"
)

// New returns a handler that writes records to w as slog.TextHandler
// does with opts: its own when opts sets at most Level, else
// slog.NewTextHandler's.
func New(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	if opts.AddSource || opts.ReplaceAttr != nil {
		return slog.NewTextHandler(w, opts)
	}
	return &Handler{level: opts.Level, w: w, mu: new(sync.Mutex)}
}

// Handler is the text handler. Its fields mirror slog's commonHandler
// for text, and so do its methods, so that every quirk of the output
// (an empty group that leaves its name on later keys, the attributes of
// WithAttrs formatted once) is the same.
type Handler struct {
	level slog.Leveler
	// pre is the attributes of WithAttrs, formatted, without the
	// separator before the first.
	pre []byte
	// prefix is the key prefix of the groups opened in pre.
	prefix string
	// groups are all groups of WithGroup; the first nOpen are in prefix.
	groups []string
	nOpen  int
	mu     *sync.Mutex // shared by every handler derived from one New
	w      io.Writer
}

// Enabled reports whether level is at least the handler's level (Info
// when opts.Level is nil).
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	least := slog.LevelInfo
	if h.level != nil {
		least = h.level.Level()
	}
	return level >= least
}

// WithAttrs returns a handler whose lines carry attrs after the built-in
// attributes, in the groups opened so far.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if countEmptyGroups(attrs) == len(attrs) {
		return h
	}
	h2 := h.clone()
	s := newState()
	defer s.free()
	s.buf = append(s.buf, h.pre...)
	s.prefix = append(s.prefix, h.prefix...)
	s.sep = len(h.pre) > 0
	pos := len(s.buf)
	s.openGroups(h)
	if !s.appendAttrs(attrs) {
		s.buf = s.buf[:pos]
	} else {
		h2.prefix = string(s.prefix)
		h2.nOpen = len(h2.groups)
	}
	h2.pre = slices.Clone(s.buf)
	return h2
}

// WithGroup returns a handler whose later attributes' keys start with
// name and a dot.
func (h *Handler) WithGroup(name string) slog.Handler {
	h2 := h.clone()
	h2.groups = append(h2.groups, name)
	return h2
}

func (h *Handler) clone() *Handler {
	h2 := *h
	h2.pre = slices.Clip(h.pre)
	h2.groups = slices.Clip(h.groups)
	return &h2
}

// Handle writes r as one line in one call to the writer's Write.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	s := newState()
	defer s.free()
	if !r.Time.IsZero() {
		s.appendKey(slog.TimeKey)
		s.buf = appendRFC3339Millis(s.buf, r.Time.Round(0))
	}
	s.appendKey(slog.LevelKey)
	s.appendString(r.Level.String())
	s.appendKey(slog.MessageKey)
	s.appendString(r.Message)
	if len(h.pre) > 0 {
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, h.pre...)
	}
	if r.NumAttrs() > 0 {
		s.prefix = append(s.prefix, h.prefix...)
		s.openGroups(h)
		r.Attrs(func(a slog.Attr) bool {
			s.appendAttr(a)
			return true
		})
	}
	s.buf = append(s.buf, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(s.buf)
	return err
}

// state is one Handle's or WithAttrs's formatting.
type state struct {
	buf    []byte
	prefix []byte // of the next key: the open groups' names, each and a dot
	sep    bool   // a space before the next key
}

var statePool = sync.Pool{New: func() any {
	return &state{buf: make([]byte, 0, 1024), prefix: make([]byte, 0, 64)}
}}

func newState() *state { return statePool.Get().(*state) }

func (s *state) free() {
	// Big buffers go, as slog's do: no line keeps 16 KiB per pooled state.
	const most = 16 << 10
	if cap(s.buf) > most || cap(s.prefix) > most {
		return
	}
	s.buf, s.prefix, s.sep = s.buf[:0], s.prefix[:0], false
	statePool.Put(s)
}

func (s *state) openGroups(h *Handler) {
	for _, g := range h.groups[h.nOpen:] {
		s.openGroup(g)
	}
}

func (s *state) openGroup(name string) {
	s.prefix = append(s.prefix, name...)
	s.prefix = append(s.prefix, '.')
}

func (s *state) closeGroup(name string) {
	s.prefix = s.prefix[:len(s.prefix)-len(name)-1]
	s.sep = true
}

// appendAttrs reports whether it appended anything.
func (s *state) appendAttrs(as []slog.Attr) bool {
	appended := false
	for _, a := range as {
		if s.appendAttr(a) {
			appended = true
		}
	}
	return appended
}

// appendAttr appends a's key and value, or a group's attributes. It
// reports false for an attribute slog elides: the zero one, an empty
// Source, a group whose attributes all are. As slog's does, a group that
// turns out empty leaves its name in the prefix of the keys after it.
func (s *state) appendAttr(a slog.Attr) bool {
	a.Value = a.Value.Resolve()
	v := a.Value
	if a.Key == "" && v.Kind() == slog.KindAny && v.Any() == nil {
		return false
	}
	if v.Kind() == slog.KindAny {
		if src, ok := v.Any().(*slog.Source); ok {
			if src == nil || *src == (slog.Source{}) {
				return false
			}
			v = slog.StringValue(fmt.Sprintf("%s:%d", src.File, src.Line))
		}
	}
	if v.Kind() != slog.KindGroup {
		s.appendKey(a.Key)
		s.appendValue(v)
		return true
	}
	attrs := v.Group()
	if len(attrs) == 0 {
		return true
	}
	pos := len(s.buf)
	if a.Key != "" {
		s.openGroup(a.Key)
	}
	if !s.appendAttrs(attrs) {
		s.buf = s.buf[:pos]
		return false
	}
	if a.Key != "" {
		s.closeGroup(a.Key)
	}
	return true
}

func (s *state) appendKey(key string) {
	if s.sep {
		s.buf = append(s.buf, ' ')
	}
	if len(s.prefix) > 0 {
		if !needsQuoting(s.prefix) && !needsQuoting(key) {
			s.buf = append(s.buf, s.prefix...)
			s.buf = append(s.buf, key...)
		} else {
			s.buf = appendQuote(s.buf, string(s.prefix)+key)
		}
	} else {
		s.appendString(key)
	}
	s.buf = append(s.buf, '=')
	s.sep = true
}

func (s *state) appendString(str string) {
	if needsQuoting(str) {
		s.buf = appendQuote(s.buf, str)
	} else {
		s.buf = append(s.buf, str...)
	}
}

func (s *state) appendBytes(b []byte) {
	if needsQuoting(b) {
		s.buf = appendQuote(s.buf, b)
	} else {
		s.buf = append(s.buf, b...)
	}
}

func (s *state) appendValue(v slog.Value) {
	switch v.Kind() {
	case slog.KindString:
		s.appendString(v.String())
	case slog.KindInt64:
		s.buf = strconv.AppendInt(s.buf, v.Int64(), 10)
	case slog.KindUint64:
		s.buf = strconv.AppendUint(s.buf, v.Uint64(), 10)
	case slog.KindFloat64:
		s.buf = strconv.AppendFloat(s.buf, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		s.buf = strconv.AppendBool(s.buf, v.Bool())
	case slog.KindDuration:
		s.buf = append(s.buf, v.Duration().String()...)
	case slog.KindTime:
		s.buf = appendRFC3339Millis(s.buf, v.Time())
	default: // KindAny: Resolve leaves no LogValuer, appendAttr no group
		s.appendAny(v.Any())
	}
}

// appendAny is slog's text of a value of no slog kind: MarshalText if it
// has one, a quoted string for bytes, else fmt's %+v, quoted as needed.
// A panic in a method is caught, as slog catches it.
func (s *state) appendAny(x any) {
	defer func() {
		if r := recover(); r != nil {
			if v := reflect.ValueOf(x); v.Kind() == reflect.Pointer && v.IsNil() {
				s.appendString("<nil>")
				return
			}
			s.appendString(fmt.Sprintf("!PANIC: %v", r))
		}
	}()
	switch x := x.(type) {
	case encoding.TextMarshaler:
		data, err := x.MarshalText()
		if err != nil {
			s.appendString(fmt.Sprintf("!ERROR:%v", err))
			return
		}
		s.appendBytes(data)
	case []byte:
		s.buf = appendQuote(s.buf, x)
	case []string:
		// fmt's %+v of a []string: its elements, spaces between, in
		// brackets.
		pos := len(s.buf)
		s.buf = append(s.buf, '[')
		for i, e := range x {
			if i > 0 {
				s.buf = append(s.buf, ' ')
			}
			s.buf = append(s.buf, e...)
		}
		s.buf = append(s.buf, ']')
		if needsQuoting(s.buf[pos:]) {
			str := string(s.buf[pos:])
			s.buf = appendQuote(s.buf[:pos], str)
		}
	default:
		if t := reflect.TypeOf(x); t != nil && t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			s.buf = appendQuote(s.buf, reflect.ValueOf(x).Bytes())
			return
		}
		s.appendString(fmt.Sprintf("%+v", x))
	}
}

// appendRFC3339Millis is time.RFC3339 with exactly three digits of
// milliseconds, as slog writes it: RFC3339Nano of the time truncated to
// milliseconds plus a tenth of one (so that no trailing zero is trimmed),
// less the fourth digit.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

func countEmptyGroups(as []slog.Attr) int {
	n := 0
	for _, a := range as {
		if a.Value.Kind() == slog.KindGroup && len(a.Value.Group()) == 0 {
			n++
		}
	}
	return n
}
