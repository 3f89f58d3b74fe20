package storetest

import (
	"bytes"
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
	held     map[string]alias.Alias // as the source store showed them
	live     map[string]int         // LiveForTarget per target
	linkKey  []byte
	issued   uint64
}

// Fill puts in s (open with TinyIDs, so that swept ids crowd the id
// space) aliases in every state, swept ids, a verified target and an open
// reservation, and records what a store importing s's export must show.
func Fill(t *testing.T, s store.Engine) *Moved {
	t.Helper()
	m := &Moved{Tokens: map[string]string{}, Swept: map[string]bool{}, Targets: []string{"a@example.com", "b@example.org", "v@example.net"}}
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
// was imported, holds the same aliases with the same counters (no use
// reserved), usable with their tokens, the same per-target counts, the
// verified target, the revoke-link key, and never issues a swept or
// stored id again.
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
			!slices.Equal(got.AllowFrom, want.AllowFrom) || got.LockSender != want.LockSender {
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
	if !strings.HasPrefix(first, `{"tempalias-export":1,`) {
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
	for _, tc := range []struct{ name, stream, want string }{
		{"empty", "", "empty stream"},
		{"not an export", "hello\n", "line 1"},
		{"later version", strings.Replace(lines[0], `"tempalias-export":1`, `"tempalias-export":2`, 1), "version 2"},
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
