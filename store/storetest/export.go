package storetest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Moved is what Fill made in a store, to be checked in another one the
// store's export was imported into (see CheckMoved).
type Moved struct {
	Tokens  map[string]string // id -> management token, of every stored alias
	Swept   map[string]bool   // ids swept before the export
	Live    string            // an alias with uses left (and an open reservation, not exported)
	Pending string            // an unverified alias, and its confirmation token
	Confirm string
	Targets []string // the targets used
	// Verified is a target confirmed until well after t0.
	Verified string
	// Daily is a target whose day (t0's) has spent its creations under
	// CreationsPerDay(3) and its confirmation mail under
	// ConfirmationsPerDay(1). Live's hour holds its two messages.
	Daily   string
	held    map[string]alias.Alias // as the source store showed them
	live    map[string]int         // LiveForTarget per target
	linkKey []byte
	issued  uint64
}

// Fill puts in s (open with TinyIDs, so that swept ids crowd the id
// space) aliases in every state, swept ids, a verified target, a target's
// daily counts, an alias's hourly window and an open reservation, and
// records what a store importing s's export must show.
func Fill(t *testing.T, s store.Engine) *Moved {
	t.Helper()
	m := &Moved{Tokens: map[string]string{}, Swept: map[string]bool{}, Targets: []string{"a@example.com", "b@example.org", "v@example.net", "d@example.com"}}
	for range 25 {
		c := mustCreate(t, s, alias.Spec{Target: m.Targets[0], Expires: t0.Add(time.Minute)})
		m.Swept[c.Alias.ID] = true
	}
	if n, err := s.Sweep(bg, t0.Add(time.Minute), 100); err != nil || n != len(m.Swept) {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, len(m.Swept))
	}
	add := func(sp alias.Spec, opts ...store.CreateOption) store.Created {
		c, err := s.Create(bg, sp, t0, opts...)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		m.Tokens[c.Alias.ID] = c.Token
		return c
	}
	live := add(alias.Spec{Target: m.Targets[0], Expires: t0.Add(3 * day), MaxUsage: 5})
	m.Live = live.Alias.ID
	deliver(t, s, m.Live, t0)
	deliver(t, s, m.Live, t0)
	mustReserve(t, s, m.Live, t0) // open: not exported, released anyway
	usedUp := add(alias.Spec{Target: m.Targets[0], Expires: t0.Add(3 * day), MaxUsage: 1})
	deliver(t, s, usedUp.Alias.ID, t0)
	for range 2 {
		if _, err := s.Reserve(bg, usedUp.Alias.ID, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Reserve of a used-up alias: %v", err)
		}
	}
	revoked := add(alias.Spec{Target: m.Targets[1], Expires: t0.Add(3 * day)})
	if err := s.RevokeID(bg, revoked.Alias.ID, t0); err != nil {
		t.Fatal(err)
	}
	add(alias.Spec{Target: m.Targets[1], Expires: t0.Add(2 * day), AllowFrom: []string{"example.com", "x@example.org"}})
	add(alias.Spec{Target: m.Targets[1], Expires: t0.Add(2 * day), LockSender: true})
	p := add(alias.Spec{Target: m.Targets[1], Expires: t0.Add(day), MaxUsage: 3}, store.Pending())
	m.Pending, m.Confirm = p.Alias.ID, p.Confirm
	v := add(alias.Spec{Target: m.Targets[2], Expires: t0.Add(day)}, store.Pending())
	if _, err := s.Confirm(bg, v.Confirm, t0, 90*day); err != nil {
		t.Fatal(err)
	}
	m.Verified = m.Targets[2]
	m.Daily = m.Targets[3]
	daily := store.CreationsPerDay(3)
	add(alias.Spec{Target: m.Daily, Expires: t0.Add(day)}, daily)
	add(alias.Spec{Target: m.Daily, Expires: t0.Add(day)}, daily)
	add(alias.Spec{Target: m.Daily, Expires: t0.Add(day)}, daily, store.Pending(), store.ConfirmationsPerDay(1))

	m.held, m.live = map[string]alias.Alias{}, map[string]int{}
	for id := range m.Tokens {
		a, err := s.Authorized(bg, id, m.Tokens[id], t0)
		if errors.Is(err, store.ErrNotFound) {
			continue // revoked
		}
		if err != nil {
			t.Fatal(err)
		}
		m.held[id] = a
	}
	for _, target := range m.Targets {
		n, err := s.LiveForTarget(bg, target, t0)
		if err != nil {
			t.Fatal(err)
		}
		m.live[target] = n
	}
	m.linkKey, m.issued = s.LinkKey(), mustStats(t, s).Issued
	return m
}

// CheckMoved checks that s, into which the export of a store Fill filled
// was imported, holds the same aliases with the same counters and hourly
// windows (no use reserved), usable with their tokens, the same
// per-target counts (live aliases, and the day's creations and
// confirmation mails), the verified target, the revoke-link key, and
// never issues a swept or stored id again.
func CheckMoved(t *testing.T, s store.Engine, m *Moved) {
	t.Helper()
	for id, want := range m.held {
		got, err := s.Authorized(bg, id, m.Tokens[id], t0)
		if err != nil {
			t.Errorf("alias %s after the move: %v", id, err)
			continue
		}
		want.Pending = 0
		if got.ID != want.ID || got.Target != want.Target || !got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) ||
			got.MaxUsage != want.MaxUsage || got.Used != want.Used || got.Pending != 0 || got.Refused != want.Refused ||
			got.Revoked != want.Revoked || got.Unverified != want.Unverified || !bytes.Equal(got.TokenHash, want.TokenHash) ||
			!slices.Equal(got.AllowFrom, want.AllowFrom) || got.LockSender != want.LockSender ||
			!got.HourStart.Equal(want.HourStart) || got.HourUsed != want.HourUsed {
			t.Errorf("alias %s after the move:\n got %+v\nwant %+v", id, got, want)
		}
	}
	if n := len(m.held); n != len(m.Tokens)-1 {
		t.Fatalf("%d aliases held of %d (one revoked)", n, len(m.Tokens))
	}
	for _, target := range m.Targets {
		if n, err := s.LiveForTarget(bg, target, t0); err != nil || n != m.live[target] {
			t.Errorf("LiveForTarget(%s) = %d, %v; want %d", target, n, err, m.live[target])
		}
	}
	if ok, err := s.TargetVerified(bg, m.Verified, t0.Add(80*day)); err != nil || !ok {
		t.Errorf("TargetVerified(%s) = %v, %v after the move", m.Verified, ok, err)
	}
	if ok, err := s.TargetVerified(bg, m.Targets[1], t0); err != nil || ok {
		t.Errorf("TargetVerified(%s), never confirmed, = %v, %v", m.Targets[1], ok, err)
	}
	if !bytes.Equal(s.LinkKey(), m.linkKey) {
		t.Error("the revoke-link key did not move: links in mail already sent stop working")
	}
	if st := mustStats(t, s); st.Issued != m.issued {
		t.Errorf("Stats.Issued = %d after the move, want %d", st.Issued, m.issued)
	}
	// The limits go on counting where they were: the live alias's two
	// messages at t0 fill an hour of two until t0+1h, and the daily
	// target's creations and mail are spent until midnight.
	two := store.PerHour(2)
	if r, err := s.Reserve(bg, m.Live, t0.Add(59*time.Minute), two); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Errorf("a third message in the hour of an alias allowed two, after the move: %v, want ErrMessagesPerHour", err)
		if err == nil {
			r.Refund(bg, t0)
		}
	}
	if err := mustReserveOpts(t, s, m.Live, t0.Add(time.Hour), two).Refund(bg, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(bg, alias.Spec{Target: m.Daily, Expires: t0.Add(day)}, t0, store.CreationsPerDay(3)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Errorf("a fourth creation of the day under CreationsPerDay(3) after the move: %v, want ErrCreationsPerDay", err)
	}
	if _, err := s.Create(bg, alias.Spec{Target: m.Daily, Expires: t0.Add(day)}, t0, store.Pending(), store.ConfirmationsPerDay(1)); !errors.Is(err, store.ErrConfirmationsPerDay) {
		t.Errorf("a second confirmation mail of the day under ConfirmationsPerDay(1) after the move: %v, want ErrConfirmationsPerDay", err)
	}
	if _, err := s.Create(bg, alias.Spec{Target: m.Daily, Expires: t0.Add(3 * day)}, store.NextDay(t0), store.CreationsPerDay(1)); err != nil {
		t.Errorf("the daily target's first creation of the next day after the move: %v", err)
	}
	// The live alias: its open reservation is gone, three uses remain.
	for range 3 {
		deliver(t, s, m.Live, t0)
	}
	if _, err := s.Reserve(bg, m.Live, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("sixth use of a max-usage 5 alias after the move: %v", err)
	}
	if _, err := s.Reserve(bg, m.Pending, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve of a pending alias after the move: %v", err)
	}
	if _, err := s.Confirm(bg, m.Confirm, t0, 90*day); err != nil {
		t.Errorf("Confirm of the pending alias after the move: %v", err)
	}
	mustReserve(t, s, m.Pending, t0)
	// Ids swept or stored in the old store are never issued by the new one.
	for range 60 {
		c := mustCreate(t, s, alias.Spec{Target: "new@example.com", Expires: t0.Add(day)})
		if id := c.Alias.ID; m.Swept[id] || m.Tokens[id] != "" {
			t.Fatalf("id %s issued again after the move", id)
		}
	}
}

func testExportImport(t *testing.T, open Open) {
	src, _ := open(t, Options{TinyIDs: true})
	m := Fill(t, src)
	var buf bytes.Buffer
	if err := src.Export(bg, &buf); err != nil {
		t.Fatalf("Export: %v", err)
	}
	first, _, _ := strings.Cut(buf.String(), "\n")
	if !strings.HasPrefix(first, `{"tempalias-export":2,`) {
		t.Fatalf("first line %q, want the versioned header", first)
	}
	for _, token := range m.Tokens {
		if strings.Contains(buf.String(), token) {
			t.Fatal("a management token is in the export")
		}
	}
	export := buf.String()
	dst, _ := open(t, Options{TinyIDs: true})
	if err := dst.Import(bg, strings.NewReader(export)); err != nil {
		t.Fatalf("Import: %v", err)
	}
	// The new store's export is the old one's, line for line: the import
	// kept all the export carries.
	var again bytes.Buffer
	if err := dst.Export(bg, &again); err != nil {
		t.Fatalf("Export after Import: %v", err)
	}
	if again.String() != export {
		t.Errorf("export after import differs:\n%s\nwas\n%s", again.String(), export)
	}
	CheckMoved(t, dst, m)
	// A store that issued ids refuses an import, even of itself.
	if err := dst.Import(bg, strings.NewReader(export)); !errors.Is(err, store.ErrImportNotEmpty) {
		t.Errorf("Import into a store in use: %v, want ErrImportNotEmpty", err)
	}
}

func testImportMalformed(t *testing.T, open Open) {
	src, _ := open(t, Options{})
	for range 3 {
		mustCreate(t, src, spec(day, 0))
	}
	var buf bytes.Buffer
	if err := src.Export(bg, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("export of 3 aliases has %d lines, want header, 3 aliases, end:\n%s", len(lines), buf.String())
	}
	v1 := strings.Replace(lines[0], `"tempalias-export":2`, `"tempalias-export":1`, 1)
	dailyLine := `{"daily":{"day":1,"kind":"creations","target_hash":"AAAAAAAAAAAAAAAAAAAAAA==","count":2}}` + "\n"
	withHour := strings.Replace(lines[1], `"sweep_at"`, `"hour_start":1893553445,"hour_used":1,"sweep_at"`, 1)
	for _, tc := range []struct{ name, stream, want string }{
		{"empty", "", "empty stream"},
		{"not an export", "hello\n", "line 1"},
		{"later version", strings.Replace(lines[0], `"tempalias-export":2`, `"tempalias-export":3`, 1), "version 3"},
		{"version 0", strings.Replace(lines[0], `"tempalias-export":2`, `"tempalias-export":0`, 1), "line 1"},
		{"daily in version 1", v1 + dailyLine + `{"end":{"aliases":0,"tombstones":0,"verified":0,"daily":1}}` + "\n", "line 2"},
		{"hour in version 1", v1 + withHour + `{"end":{"aliases":1,"tombstones":0,"verified":0}}` + "\n", "line 2"},
		{"hour used without a start", lines[0] + strings.Replace(lines[1], `"sweep_at"`, `"hour_used":1,"sweep_at"`, 1), "line 2"},
		{"daily kind", lines[0] + strings.Replace(dailyLine, `"creations"`, `"mails"`, 1), "line 2"},
		{"daily count", lines[0] + strings.Replace(dailyLine, `"count":2`, `"count":0`, 1), "line 2"},
		{"daily twice", lines[0] + dailyLine + strings.Replace(dailyLine, `"count":2`, `"count":1`, 1) + `{"end":{"aliases":0,"tombstones":0,"verified":0,"daily":2}}` + "\n", "line 3"},
		{"broken line", lines[0] + lines[1] + "{\"alias\":{\"id\":\n" + lines[3], "line 3"},
		{"bad id", lines[0] + lines[1] + lines[2] + `{"tombstone":"NOT AN ID"}` + "\n", "line 4"},
		{"cut short", lines[0] + lines[1] + lines[2], "cut short"},
		{"end miscounts", lines[0] + lines[1] + lines[4], "end line"},
		{"two in one line", lines[0] + `{"tombstone":"abcdef","verified":{"target_hash":"AAAAAAAAAAAAAAAAAAAAAA==","until":1}}` + "\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, _ := open(t, Options{})
			err := dst.Import(bg, strings.NewReader(tc.stream))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Import = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// A whole stream imports, and a second export says the same.
	dst, _ := open(t, Options{})
	if err := dst.Import(bg, strings.NewReader(buf.String())); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := dst.Export(bg, &again); err != nil {
		t.Fatal(err)
	}
	if a, b := strings.SplitN(again.String(), "\n", 2)[1], strings.SplitN(buf.String(), "\n", 2)[1]; a != b {
		t.Errorf("export after import differs:\n%s\nwas\n%s", a, b)
	}
}

// exportV1 is an export as version 1 wrote it (before hourly windows and
// daily counts): a live alias with two of five uses delivered at t0, a
// swept id and a verified target. TOKEN_HASH stands for the alias's
// token hash.
const exportV1 = `{"tempalias-export":1,"engine":"bolt","target_key":"dGFyZ2V0LWtleS10YXJnZXQta2V5LXRhcmdldC1rZXk=","link_key":"bGluay1rZXktbGluay1rZXktbGluay1rZXktbGluay0="}
{"alias":{"id":"k3x9q2","target":"t@example.com","created":"2030-01-02T03:04:05Z","expires":"2030-01-05T03:04:05Z","max_usage":5,"used":2,"token_hash":"TOKEN_HASH","sweep_at":1893812645}}
{"tombstone":"swept1"}
{"verified":{"target_hash":"dmVyaWZpZWQtdGFyZ2V0IQ==","until":1901329445}}
{"end":{"aliases":1,"tombstones":1,"verified":1}}
`

// An export of version 1 still imports, everything it carries intact; the
// hourly window and the daily counts it never had start from zero.
func testImportVersion1(t *testing.T, open Open) {
	const token = "a-token-from-a-version-1-store"
	stream := strings.Replace(exportV1, "TOKEN_HASH", base64.StdEncoding.EncodeToString(alias.HashToken(token)), 1)
	s, _ := open(t, Options{})
	if err := s.Import(bg, strings.NewReader(stream)); err != nil {
		t.Fatalf("Import of a version 1 export: %v", err)
	}
	a, err := s.Authorized(bg, "k3x9q2", token, t0)
	if err != nil {
		t.Fatalf("the alias of a version 1 export: %v", err)
	}
	if a.Target != "t@example.com" || !a.Created.Equal(t0) || !a.Expires.Equal(t0.Add(3*day)) || a.MaxUsage != 5 || a.Used != 2 ||
		!a.HourStart.IsZero() || a.HourUsed != 0 {
		t.Errorf("the alias of a version 1 export: %+v", a)
	}
	if st := mustStats(t, s); st.Aliases != 1 || st.Issued != 2 {
		t.Errorf("Stats = %+v, want 1 alias and 2 ids issued", st)
	}
	if !bytes.Equal(s.LinkKey(), []byte("link-key-link-key-link-key-link-")) {
		t.Errorf("link key %q, not the export's", s.LinkKey())
	}
	// No window: an hour of one takes a message at once.
	r, err := s.Reserve(bg, "k3x9q2", t0, store.PerHour(1))
	if err != nil {
		t.Fatalf("Reserve under PerHour(1): %v", err)
	}
	if err := r.Commit(bg, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(bg, "k3x9q2", t0, store.PerHour(1)); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Errorf("a second message in the hour of one: %v, want ErrMessagesPerHour", err)
	}
	// No day's count: the target's first creation under a limit of one.
	if _, err := s.Create(bg, spec(day, 0), t0, store.CreationsPerDay(1)); err != nil {
		t.Errorf("a creation under CreationsPerDay(1) after a version 1 import: %v", err)
	}
}
