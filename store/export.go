package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// The export stream (Engine.Export, Engine.Import) is how a store moves
// between engines and hosts: JSON lines, the same whichever engine wrote
// them. The first line is the header,
//
//	{"tempalias-export":2,"engine":"bolt","target_key":"…","link_key":"…"}
//
// then, in any order, one line per stored alias ({"alias":{…}}, with its
// counters, its hourly window and the hashes of its token and of its
// confirmation token, never a token), per swept alias's id
// ({"tombstone":"id"}: the id is never issued again), per verified target
// ({"verified":{"target_hash":"…","until":N}}) and per count a target's
// day holds against a daily limit
// ({"daily":{"day":N,"kind":"creations","target_hash":"…","count":N}}),
// and last {"end":{"aliases":N,"tombstones":N,"verified":N,"daily":N}},
// so that a truncated stream is told from a whole one. The keys in the
// header keep the target hashes (per-target counts, verified targets) and
// the revoke links of the old store working in the new one.
//
// Left out, because nothing in the new store can use them: open
// reservations (a new owner releases them anyway), and what only a
// settlement or a withdrawal of a use reserved in the old store would
// read (the keys of recent commits, the state of a lock-sender lock
// beyond its allow-from list, what a creation counted for Withdraw):
// those calls are made by the processes of the old store, on it.
//
// Versions:
//
//	1: aliases, tombstones, verified targets.
//	2: adds each alias's hourly window (hour_start, hour_used) and the
//	   daily lines, so that messages_per_alias_hour and the per-target
//	   daily limits hold across a move. A version 1 stream still imports
//	   (its windows and days start from zero). The version was raised
//	   because a version 1 importer decodes strictly: given these fields it
//	   would stop at the first of them, after importing the batches before
//	   it, and leave a store that refuses a second try; now it refuses the
//	   stream at line 1, having written nothing.
const ExportVersion = 2

// minExportVersion is the oldest stream this version imports.
const minExportVersion = 1

// The kinds of daily count (ExportDaily.Kind): aliases made for the
// target (store.CreationsPerDay) and confirmation mails sent to it
// (store.ConfirmationsPerDay).
const (
	DailyCreations     = "creations"
	DailyConfirmations = "confirmations"
)

// ExportHeader is the first line of an export.
type ExportHeader struct {
	Version   int    `json:"tempalias-export"`
	Engine    string `json:"engine"`
	TargetKey []byte `json:"target_key"`
	LinkKey   []byte `json:"link_key"`
}

// ExportAlias is one stored alias with all of its state.
type ExportAlias struct {
	ID          string    `json:"id"`
	Target      string    `json:"target"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	MaxUsage    int       `json:"max_usage,omitempty"`
	Used        int       `json:"used,omitempty"`
	Refused     int       `json:"refused,omitempty"`
	Revoked     bool      `json:"revoked,omitempty"`
	Unverified  bool      `json:"unverified,omitempty"`
	TokenHash   []byte    `json:"token_hash"`
	ConfirmHash []byte    `json:"confirm_hash,omitempty"` // while pending
	AllowFrom   []string  `json:"allow_from,omitempty"`
	LockSender  bool      `json:"lock_sender,omitempty"`
	// SweepAt is when the sweep may delete it (unix seconds): its expiry,
	// or its revocation.
	SweepAt int64 `json:"sweep_at"`
	// HourStart (unix seconds, 0 for none) and HourUsed are its hourly
	// window (alias.Alias.HourTaken); version 2.
	HourStart int64 `json:"hour_start,omitempty"`
	HourUsed  int   `json:"hour_used,omitempty"`
}

// Alias is the domain view of a (no use reserved).
func (a *ExportAlias) Alias() alias.Alias {
	var hourStart time.Time
	if a.HourStart != 0 {
		hourStart = time.Unix(a.HourStart, 0).UTC()
	}
	return alias.Alias{
		ID: a.ID, Target: a.Target, Created: a.Created, Expires: a.Expires,
		MaxUsage: a.MaxUsage, Used: a.Used, Refused: a.Refused, Revoked: a.Revoked,
		Unverified: a.Unverified, TokenHash: a.TokenHash, AllowFrom: a.AllowFrom,
		LockSender: a.LockSender, HourStart: hourStart, HourUsed: a.HourUsed,
	}
}

// ExportHour is a's hourly window as an export line carries it: the
// start in unix seconds, 0 for none.
func ExportHour(a *alias.Alias) (start int64, used int) {
	if !a.HourStart.IsZero() {
		start = a.HourStart.Unix()
	}
	return start, a.HourUsed
}

// ExportVerified is a verified target, by its hash under the header's
// target key.
type ExportVerified struct {
	TargetHash []byte `json:"target_hash"`
	Until      int64  `json:"until"` // unix seconds
}

// ExportDaily is what one target's day counts against one daily limit
// (version 2): Count aliases made (DailyCreations) or confirmation mails
// sent (DailyConfirmations) on Day (store.Day), the target by its hash
// under the header's target key. A store keeps the counts of today and
// of the days its sweep has not yet forgotten, and exports them all; the
// next sweep of the new store forgets the days gone by.
type ExportDaily struct {
	Day        int64  `json:"day"`
	Kind       string `json:"kind"`
	TargetHash []byte `json:"target_hash"`
	Count      int    `json:"count"`
}

// ExportEnd is the last line: what came before it.
type ExportEnd struct {
	Aliases    int `json:"aliases"`
	Tombstones int `json:"tombstones"`
	Verified   int `json:"verified"`
	Daily      int `json:"daily"` // version 2; absent from a version 1 end line
}

// ExportLine is one line after the header: exactly one field is set.
type ExportLine struct {
	Alias     *ExportAlias    `json:"alias,omitempty"`
	Tombstone string          `json:"tombstone,omitempty"`
	Verified  *ExportVerified `json:"verified,omitempty"`
	Daily     *ExportDaily    `json:"daily,omitempty"`
	End       *ExportEnd      `json:"end,omitempty"`
}

// ExportWriter writes an export stream; Close writes the end line.
type ExportWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
	end ExportEnd
}

// NewExportWriter writes the header h (its Version set here) to w.
func NewExportWriter(w io.Writer, h ExportHeader) (*ExportWriter, error) {
	bw := bufio.NewWriter(w)
	e := &ExportWriter{w: bw, enc: json.NewEncoder(bw)}
	h.Version = ExportVersion
	if err := e.enc.Encode(h); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return e, nil
}

// Alias writes a stored alias.
func (e *ExportWriter) Alias(a ExportAlias) error {
	e.end.Aliases++
	return e.line(ExportLine{Alias: &a})
}

// Tombstone writes the id of a swept alias.
func (e *ExportWriter) Tombstone(id string) error {
	e.end.Tombstones++
	return e.line(ExportLine{Tombstone: id})
}

// Verified writes a verified target.
func (e *ExportWriter) Verified(targetHash []byte, until int64) error {
	e.end.Verified++
	return e.line(ExportLine{Verified: &ExportVerified{TargetHash: targetHash, Until: until}})
}

// Daily writes a target's count of a day against a daily limit.
func (e *ExportWriter) Daily(d ExportDaily) error {
	e.end.Daily++
	return e.line(ExportLine{Daily: &d})
}

// Close writes the end line and flushes; it does not close the writer
// underneath.
func (e *ExportWriter) Close() error {
	end := e.end
	if err := e.line(ExportLine{End: &end}); err != nil {
		return err
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func (e *ExportWriter) line(l ExportLine) error {
	if err := e.enc.Encode(l); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// maxExportLine bounds one line of an export (an alias with ten allow-from
// entries is well under 2 KiB).
const maxExportLine = 1 << 20

// ExportReader reads an export stream one line at a time, checking each:
// an error names the line.
type ExportReader struct {
	Header ExportHeader
	sc     *bufio.Scanner
	n      int // lines read
	seen   ExportEnd
	done   bool
}

// NewExportReader reads and checks the header.
func NewExportReader(r io.Reader) (*ExportReader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	er := &ExportReader{sc: sc}
	b, err := er.next()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("import: empty stream, not a tempalias export")
	}
	if err != nil {
		return nil, err
	}
	if err := strict(b, &er.Header); err != nil || er.Header.Version == 0 {
		return nil, fmt.Errorf("import: line 1: not a tempalias export header")
	}
	if er.Header.Version < minExportVersion || er.Header.Version > ExportVersion {
		return nil, fmt.Errorf("import: line 1: export version %d, this tempalias reads versions %d to %d (an export of a newer tempalias needs one at least as new)", er.Header.Version, minExportVersion, ExportVersion)
	}
	if len(er.Header.TargetKey) != 32 || len(er.Header.LinkKey) != 32 {
		return nil, errors.New("import: line 1: target_key and link_key must be 32 bytes each")
	}
	return er, nil
}

// Line is the number of the line Next returned last.
func (r *ExportReader) Line() int { return r.n }

func (r *ExportReader) next() ([]byte, error) {
	for r.sc.Scan() {
		r.n++
		if b := bytes.TrimSpace(r.sc.Bytes()); len(b) > 0 {
			return b, nil
		}
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("import: line %d: longer than %d bytes", r.n+1, maxExportLine)
		}
		return nil, fmt.Errorf("import: after line %d: %w", r.n, err)
	}
	return nil, io.EOF
}

func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("more than one value on the line")
	}
	return nil
}

// Next returns the next alias, tombstone, verified target or daily count, and io.EOF
// after the end line once the counts it states match what came before.
// A stream that stops before its end line is an error: it was cut short.
func (r *ExportReader) Next() (ExportLine, error) {
	if r.done {
		return ExportLine{}, io.EOF
	}
	b, err := r.next()
	if errors.Is(err, io.EOF) {
		return ExportLine{}, fmt.Errorf("import: the stream ends after line %d without its end line: it was cut short", r.n)
	}
	if err != nil {
		return ExportLine{}, err
	}
	var l ExportLine
	if err := strict(b, &l); err != nil {
		return ExportLine{}, fmt.Errorf("import: line %d: %v", r.n, err)
	}
	if err := r.check(&l); err != nil {
		return ExportLine{}, fmt.Errorf("import: line %d: %s", r.n, err)
	}
	if l.End != nil {
		if *l.End != r.seen {
			return ExportLine{}, fmt.Errorf("import: line %d: the end line counts %+v, the stream held %+v", r.n, *l.End, r.seen)
		}
		if _, err := r.next(); !errors.Is(err, io.EOF) {
			if err == nil {
				err = fmt.Errorf("import: line %d: more after the end line", r.n)
			}
			return ExportLine{}, err
		}
		r.done = true
		return ExportLine{}, io.EOF
	}
	return l, nil
}

func (r *ExportReader) check(l *ExportLine) error {
	set := 0
	if l.Alias != nil {
		set++
	}
	if l.Tombstone != "" {
		set++
	}
	if l.Verified != nil {
		set++
	}
	if l.Daily != nil {
		set++
	}
	if l.End != nil {
		set++
	}
	if set != 1 {
		return errors.New("want exactly one of alias, tombstone, verified, daily, end")
	}
	if r.Header.Version < 2 && (l.Daily != nil || l.Alias != nil && (l.Alias.HourStart != 0 || l.Alias.HourUsed != 0)) {
		return fmt.Errorf("a daily count or an hourly window in a version %d export (they came with version 2)", r.Header.Version)
	}
	switch {
	case l.Alias != nil:
		a := l.Alias
		switch {
		case !alias.ValidID(a.ID):
			return fmt.Errorf("alias id %q is not a valid id", a.ID)
		case a.Target == "":
			return fmt.Errorf("alias %s has no target", a.ID)
		case len(a.TokenHash) != 32:
			return fmt.Errorf("alias %s: token_hash must be 32 bytes", a.ID)
		case a.ConfirmHash != nil && len(a.ConfirmHash) != 32:
			return fmt.Errorf("alias %s: confirm_hash must be 32 bytes", a.ID)
		case a.Unverified != (a.ConfirmHash != nil):
			return fmt.Errorf("alias %s: an unverified alias has a confirm_hash, and only it", a.ID)
		case a.MaxUsage < 0 || a.Used < 0 || a.Refused < 0 || a.MaxUsage > 0 && a.Used > a.MaxUsage:
			return fmt.Errorf("alias %s: counters out of range", a.ID)
		case a.SweepAt <= 0:
			return fmt.Errorf("alias %s: sweep_at missing", a.ID)
		case a.HourStart < 0 || a.HourUsed < 0 || a.HourUsed > 0 && a.HourStart == 0:
			return fmt.Errorf("alias %s: hourly window out of range (hour_used needs an hour_start)", a.ID)
		}
		r.seen.Aliases++
	case l.Tombstone != "":
		if !alias.ValidID(l.Tombstone) {
			return fmt.Errorf("tombstone %q is not a valid id", l.Tombstone)
		}
		r.seen.Tombstones++
	case l.Verified != nil:
		if len(l.Verified.TargetHash) != 16 {
			return errors.New("verified target_hash must be 16 bytes")
		}
		r.seen.Verified++
	case l.Daily != nil:
		d := l.Daily
		switch {
		case d.Kind != DailyCreations && d.Kind != DailyConfirmations:
			return fmt.Errorf("daily kind %q, want %q or %q", d.Kind, DailyCreations, DailyConfirmations)
		case len(d.TargetHash) != 16:
			return errors.New("daily target_hash must be 16 bytes")
		case d.Count < 1 || d.Count > math.MaxInt32:
			return fmt.Errorf("daily count %d out of range", d.Count)
		}
		r.seen.Daily++
	}
	return nil
}

// ErrImportNotEmpty is Import's answer for a store that already issued
// an id: an import never merges, so that no id can be issued twice and
// the keys of the export are the only ones the store has used.
var ErrImportNotEmpty = errors.New("import: the store is not empty (it has issued ids); import only into a new, empty store")

// ImportBatch is how many lines an engine writes per transaction.
const ImportBatch = 20

// Batches reads the rest of the stream ImportBatch lines at a time and
// calls write with each batch and its lines' numbers (for errors naming
// a line), stopping at the first error of either.
func (r *ExportReader) Batches(write func(batch []ExportLine, lines []int) error) error {
	for {
		var batch []ExportLine
		var lines []int
		var end error
		for len(batch) < ImportBatch {
			l, err := r.Next()
			if err != nil {
				end = err
				break
			}
			batch, lines = append(batch, l), append(lines, r.Line())
		}
		if len(batch) > 0 {
			if err := write(batch, lines); err != nil {
				return err
			}
		}
		if errors.Is(end, io.EOF) {
			return nil
		}
		if end != nil {
			return end
		}
	}
}
