package boltstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	bolt "go.etcd.io/bbolt"
)

// t0 is the tests' clock: every now is derived from it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const day = 24 * time.Hour

func openStore(tb testing.TB, opts Options) (*testStore, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "tempalias.db")
	st, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	s := &testStore{Store: st}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s, path
}

// mustView runs fn in a read transaction of db and fails tb if it fails.
func mustView(tb testing.TB, db *bolt.DB, fn func(*bolt.Tx) error) {
	tb.Helper()
	if err := db.View(fn); err != nil {
		tb.Fatal(err)
	}
}

// spec is a request for an alias that lives for d after t0.
func spec(d time.Duration, maxUsage int) alias.Spec {
	return alias.Spec{Target: "t@example.com", Expires: t0.Add(d), MaxUsage: maxUsage}
}

func mustCreate(tb testing.TB, s *testStore, sp alias.Spec) (alias.Alias, string) {
	tb.Helper()
	a, token, err := s.Create(sp, t0)
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	return a, token
}

func mustGet(tb testing.TB, s *testStore, id string, now time.Time) alias.Alias {
	tb.Helper()
	a, err := s.Get(id, now)
	if err != nil {
		tb.Fatalf("Get(%s): %v", id, err)
	}
	return a
}

func mustStats(tb testing.TB, s *testStore) store.Stats {
	tb.Helper()
	st, err := s.Stats()
	if err != nil {
		tb.Fatalf("Stats: %v", err)
	}
	return st
}

// lastTx is the id of the last committed write transaction: it moves with
// every write, shared or not, even one that changed nothing.
func lastTx(tb testing.TB, s *testStore) int {
	tb.Helper()
	var id int
	if err := s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		tb.Fatalf("View: %v", err)
	}
	return id
}

func sameAlias(tb testing.TB, got, want alias.Alias) {
	tb.Helper()
	if got.ID != want.ID || got.Target != want.Target || !got.Created.Equal(want.Created) ||
		!got.Expires.Equal(want.Expires) || got.MaxUsage != want.MaxUsage || got.Used != want.Used ||
		got.Pending != want.Pending || got.Revoked != want.Revoked || string(got.TokenHash) != string(want.TokenHash) {
		tb.Fatalf("alias = %+v\nwant    %+v", got, want)
	}
}

func TestCreateGet(t *testing.T) {
	s, _ := openStore(t, Options{})
	now := t0.Add(1234 * time.Millisecond).In(time.FixedZone("X", -7*3600))
	sp := alias.Spec{Target: "t@example.com", Expires: t0.Add(3 * day), MaxUsage: 5}
	a, token, err := s.Create(sp, now)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(a.ID) != 6 || !alias.ValidID(a.ID) {
		t.Errorf("id %q, want 6 characters of [0-9a-z]", a.ID)
	}
	if a.Target != sp.Target || !a.Expires.Equal(sp.Expires) || a.MaxUsage != 5 || a.Used != 0 || a.Pending != 0 || a.Revoked {
		t.Errorf("created %+v from %+v", a, sp)
	}
	if want := t0.Add(time.Second); !a.Created.Equal(want) || a.Created.Location() != time.UTC {
		t.Errorf("Created = %v, want %v in UTC", a.Created, want)
	}
	if a.Expires.Location() != time.UTC {
		t.Errorf("Expires in %v, want UTC", a.Expires.Location())
	}
	if len(token) < 32 || !a.TokenMatches(token) {
		t.Errorf("token %q does not match the alias", token)
	}
	if strings.Contains(string(a.TokenHash), token) {
		t.Error("token stored in clear")
	}

	got := mustGet(t, s, a.ID, now)
	sameAlias(t, got, a)

	b, token2 := mustCreate(t, s, sp)
	if b.ID == a.ID || token2 == token {
		t.Errorf("second alias reuses id or token: %s/%s", b.ID, a.ID)
	}
	if st := mustStats(t, s); st.Aliases != 2 || st.Issued != 2 {
		t.Errorf("Stats = %+v, want 2 aliases, 2 issued", st)
	}
	if err := s.Ping(); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestTokenNeverStored(t *testing.T) {
	s, path := openStore(t, Options{})
	_, token := mustCreate(t, s, spec(day, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), token) {
		t.Fatal("the token is in the data file")
	}
}

func TestIDMinLength(t *testing.T) {
	s, _ := openStore(t, Options{IDMinLength: 11})
	for range 5 {
		if a, _ := mustCreate(t, s, spec(day, 0)); len(a.ID) != 11 {
			t.Fatalf("id %q, want length 11", a.ID)
		}
	}
}

func TestGetMisses(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(3*day, 0))
	tests := []struct {
		name string
		id   string
		now  time.Time
	}{
		{"unknown", "zzzzzz", t0},
		{"empty", "", t0},
		{"too long", strings.Repeat("a", alias.MaxIDLength+1), t0},
		{"junk", "../../etc/passwd", t0},
		{"with domain", a.ID + "@tempalias.example", t0},
		{"at expiry", a.ID, t0.Add(3 * day)},
		{"long after expiry", a.ID, t0.Add(300 * day)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := s.Get(tt.id, tt.now); !errors.Is(err, ErrNotFound) || got.ID != "" {
				t.Errorf("Get(%q) = %+v, %v; want ErrNotFound", tt.id, got, err)
			}
		})
	}
	mustGet(t, s, a.ID, t0.Add(3*day-time.Nanosecond))
}

func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tempalias.db")
	s, err := openTest(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	type created struct {
		a     alias.Alias
		token string
	}
	var all []created
	for i := range 20 {
		a, token := mustCreate(t, s, spec(time.Duration(i+1)*day, i%3))
		all = append(all, created{a, token})
	}
	// State changes must survive too: a delivered use and a revocation.
	// A reservation never settled is not kept: no process can settle it
	// once the file was closed, so the reopened file has its use back.
	limited := all[1].a // max-usage 1
	if _, err := s.Reserve(all[2].a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(all[5].a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(all[5].a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(all[7].a.ID, all[7].token, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = openTest(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	if st := mustStats(t, s); st.Aliases != 20 || st.Issued != 20 {
		t.Errorf("after reopen Stats = %+v", st)
	}
	for i, c := range all {
		if i == 7 {
			if _, err := s.Get(c.a.ID, t0); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoked alias after reopen: %v", err)
			}
			continue
		}
		got, err := s.Authorized(c.a.ID, c.token, t0)
		if err != nil {
			t.Fatalf("Authorized(%s) after reopen: %v", c.a.ID, err)
		}
		want := c.a
		switch i {
		case 5:
			want.Used = 1
		}
		sameAlias(t, got, want)
	}
	if _, err := s.Reserve(limited.ID, t0); err != nil {
		t.Errorf("Reserve on untouched max-usage 1 alias: %v", err)
	}
	b, _ := mustCreate(t, s, spec(day, 0))
	for _, c := range all {
		if b.ID == c.a.ID {
			t.Fatalf("id %s issued again after reopen", b.ID)
		}
	}
	if st := mustStats(t, s); st.Issued != 21 {
		t.Errorf("Issued = %d after one more creation, want 21", st.Issued)
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	s, path := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(day, 0))

	start := time.Now()
	s2, err := openTest(path, Options{OpenTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say that %s is locked", err, path)
	}
	if elapsed > 5*time.Second {
		t.Errorf("second Open took %v", elapsed)
	}

	// The first store is unharmed, and the lock goes with it.
	mustGet(t, s, a.ID, t0)
	mustCreate(t, s, spec(day, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := openTest(path, Options{OpenTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s3.Close()
	mustGet(t, s3, a.ID, t0)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(dir, "missing", "tempalias.db"),
		garbage,
		dir,
	} {
		s, err := openTest(path, Options{OpenTimeout: 100 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) succeeded", path)
			continue
		}
		if !strings.HasPrefix(err.Error(), "store: ") {
			t.Errorf("Open(%s): error %q lacks context", path, err)
		}
	}
}

func TestClosed(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(day, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := s.Create(spec(day, 0), t0); err == nil {
		t.Error("Create after Close succeeded")
	}
	if _, err := s.Get(a.ID, t0); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Close = %v, want a store error", err)
	}
	if err := s.Revoke(a.ID, token, t0); err == nil {
		t.Error("Revoke after Close succeeded")
	}
	if err := s.Commit(a.ID, t0); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := s.Sweep(t0, 0); err == nil {
		t.Error("Sweep after Close succeeded")
	}
	if err := s.Ping(); err == nil {
		t.Error("Ping after Close succeeded")
	}
}

// typo changes the last character of token, whatever it is.
func typo(token string) string {
	last := "A"
	if token[len(token)-1] == 'A' {
		last = "B"
	}
	return token[:len(token)-1] + last
}

func TestRevoke(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(3*day, 5))
	other, otherToken := mustCreate(t, s, spec(3*day, 5))

	for _, tt := range []struct {
		name, id, token string
	}{
		{"empty token", a.ID, ""},
		{"other alias's token", a.ID, otherToken},
		{"token with a typo", a.ID, typo(token)},
		{"unknown id", "zzzzzz", token},
		{"invalid id", "ZZ", token},
		{"empty id", "", token},
	} {
		before := lastTx(t, s)
		if err := s.Revoke(tt.id, tt.token, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Revoke = %v, want ErrNotFound", tt.name, err)
		}
		// Guesses are answered without a write transaction.
		if lastTx(t, s) != before {
			t.Errorf("%s: Revoke wrote to the store", tt.name)
		}
	}
	mustGet(t, s, a.ID, t0)

	if err := s.Revoke(a.ID, token, t0.Add(time.Hour)); err != nil {
		t.Fatalf("Revoke with the right token: %v", err)
	}
	for _, now := range []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * day)} {
		if _, err := s.Get(a.ID, now); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get at %v after Revoke = %v", now, err)
		}
	}
	if _, err := s.Reserve(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Reserve after Revoke = %v", err)
	}
	if err := s.Revoke(a.ID, token, t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Revoke = %v, want ErrNotFound", err)
	}
	// Revoking one alias leaves the other alone.
	mustGet(t, s, other.ID, t0)

	// An expired alias cannot be revoked: it is already gone as far as
	// the API can tell.
	if err := s.Revoke(other.ID, otherToken, t0.Add(3*day)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke of an expired alias = %v", err)
	}
}

func TestAuthorized(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(3*day, 1))
	_, otherToken := mustCreate(t, s, spec(3*day, 1))

	got, err := s.Authorized(a.ID, token, t0)
	if err != nil {
		t.Fatalf("Authorized: %v", err)
	}
	sameAlias(t, got, a)

	tests := []struct {
		name, id, token string
		now             time.Time
	}{
		{"wrong token", a.ID, otherToken, t0},
		{"empty token", a.ID, "", t0},
		{"unknown id", "zzzzzz", token, t0},
		{"invalid id", "Not-An-Id", token, t0},
		{"expired", a.ID, token, t0.Add(3 * day)},
	}
	for _, tt := range tests {
		if got, err := s.Authorized(tt.id, tt.token, tt.now); !errors.Is(err, ErrNotFound) || got.ID != "" {
			t.Errorf("%s: Authorized = %+v, %v; want ErrNotFound", tt.name, got, err)
		}
	}

	// Used up: dead for mail, still shown to its holder (and only to its
	// holder) until it expires.
	if _, err := s.Reserve(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Authorized(a.ID, token, t0); err != nil || !got.UsedUp() {
		t.Errorf("Authorized on a used-up alias = %+v, %v; want it, used up", got, err)
	}
	if _, err := s.Authorized(a.ID, "wrong", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Authorized on a used-up alias with a wrong token = %v", err)
	}
	if _, err := s.Authorized(a.ID, token, a.Expires); !errors.Is(err, ErrNotFound) {
		t.Errorf("Authorized on a used-up alias at its expiry = %v", err)
	}
}

func TestReserveCommitRefund(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(3*day, 3))

	check := func(used, pending, remaining int) {
		t.Helper()
		got := mustGet(t, s, a.ID, t0)
		if got.Used != used || got.Pending != pending {
			t.Fatalf("used %d pending %d, want %d %d", got.Used, got.Pending, used, pending)
		}
		if n, ok := got.Remaining(); !ok || n != remaining {
			t.Fatalf("Remaining = %d, %v; want %d", n, ok, remaining)
		}
	}
	for i := range 3 {
		r, err := s.Reserve(a.ID, t0)
		if err != nil {
			t.Fatalf("Reserve %d: %v", i, err)
		}
		if r.ID != a.ID || r.Target != a.Target || r.Pending != i+1 {
			t.Fatalf("Reserve %d returned %+v", i, r)
		}
	}
	check(0, 3, 0)
	if _, err := s.Reserve(a.ID, t0); !errors.Is(err, ErrExhausted) {
		t.Fatalf("fourth Reserve = %v, want ErrExhausted", err)
	}
	if err := s.Refund(a.ID); err != nil {
		t.Fatal(err)
	}
	check(0, 2, 1)
	if err := s.Commit(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	check(1, 1, 1)
	if _, err := s.Reserve(a.ID, t0); err != nil {
		t.Fatalf("Reserve after a refund: %v", err)
	}
	check(1, 2, 0)
	if err := s.Commit(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	check(2, 1, 0)
	if err := s.Commit(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after the last commit = %v, want ErrNotFound", err)
	}

	// A refund never drives Pending below zero.
	b, _ := mustCreate(t, s, spec(3*day, 2))
	for range 3 {
		if err := s.Refund(b.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustGet(t, s, b.ID, t0); got.Pending != 0 {
		t.Fatalf("Pending = %d after refunds without reservations", got.Pending)
	}
}

func TestReserveUnlimited(t *testing.T) {
	s, _ := openStore(t, Options{})
	a, _ := mustCreate(t, s, spec(day, 0))
	for i := range 50 {
		if _, err := s.Reserve(a.ID, t0); err != nil {
			t.Fatalf("Reserve %d: %v", i, err)
		}
		if err := s.Commit(a.ID, t0); err != nil {
			t.Fatal(err)
		}
	}
	got := mustGet(t, s, a.ID, t0)
	if got.Used != 50 || got.Pending != 0 {
		t.Fatalf("used %d pending %d", got.Used, got.Pending)
	}
	if _, ok := got.Remaining(); ok {
		t.Fatal("an alias without max-usage reports a remaining count")
	}
	if _, err := s.Reserve(a.ID, t0.Add(day)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Reserve at expiry = %v", err)
	}

	// Without a count to protect, a reservation and its refund write
	// nothing; only the delivery is counted.
	b, _ := mustCreate(t, s, spec(day, 0))
	before := lastTx(t, s)
	if _, err := s.Reserve(b.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Refund(b.ID); err != nil {
		t.Fatal(err)
	}
	if lastTx(t, s) != before {
		t.Fatal("Reserve and Refund of an unlimited alias wrote to the store")
	}
	if _, err := s.Reserve(b.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(b.ID, t0); err != nil || lastTx(t, s) == before {
		t.Fatalf("Commit of an unlimited alias: %v, wrote %v", err, lastTx(t, s) != before)
	}
	if got := mustGet(t, s, b.ID, t0); got.Used != 1 || got.Pending != 0 {
		t.Fatalf("after one delivery: used %d pending %d", got.Used, got.Pending)
	}
}

func TestReserveDeadWritesNothing(t *testing.T) {
	s, _ := openStore(t, Options{})
	expired, _ := mustCreate(t, s, spec(day, 0))
	revoked, token := mustCreate(t, s, spec(day, 0))
	if err := s.Revoke(revoked.ID, token, t0); err != nil {
		t.Fatal(err)
	}
	usedUp, _ := mustCreate(t, s, spec(day, 1))
	if _, err := s.Reserve(usedUp.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(usedUp.ID, t0); err != nil {
		t.Fatal(err)
	}
	swept, _ := mustCreate(t, s, spec(time.Hour, 0))
	// Sweeps the revoked and the hour-long alias; the used-up one stays
	// until it expires.
	if n, err := s.Sweep(t0.Add(time.Hour), 0); err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2", n, err)
	}

	tests := []struct {
		name string
		id   string
		now  time.Time
	}{
		{"expired", expired.ID, t0.Add(day)},
		{"revoked", revoked.ID, t0},
		{"used up", usedUp.ID, t0},
		{"swept", swept.ID, t0.Add(time.Hour)},
		{"unknown", "zzzzzz", t0},
		{"invalid", "NOPE!", t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := lastTx(t, s)
			if got, err := s.Reserve(tt.id, tt.now); !errors.Is(err, ErrNotFound) || got.ID != "" {
				t.Fatalf("Reserve = %+v, %v; want ErrNotFound", got, err)
			}
			if after := lastTx(t, s); after != before {
				t.Fatalf("Reserve on a dead alias wrote: tx %d -> %d", before, after)
			}
		})
	}
}

func TestCommitRefundAfterDeath(t *testing.T) {
	// A transaction under way when its alias is revoked or swept still
	// ends with Commit or Refund; neither may fail or resurrect it.
	s, _ := openStore(t, Options{})
	a, token := mustCreate(t, s, spec(day, 5))
	if _, err := s.Reserve(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(a.ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(a.ID, token, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(a.ID, t0); err != nil {
		t.Errorf("Commit after Revoke: %v", err)
	}
	if n, err := s.Sweep(t0, 0); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if err := s.Refund(a.ID); err != nil {
		t.Errorf("Refund after Sweep: %v", err)
	}
	if err := s.Commit(a.ID, t0); err != nil {
		t.Errorf("Commit after Sweep: %v", err)
	}
	if st := mustStats(t, s); st.Aliases != 0 {
		t.Errorf("Commit/Refund brought a swept alias back: %+v", st)
	}
	if _, err := s.Get(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get = %v", err)
	}
}

func TestBackup(t *testing.T) {
	s, _ := openStore(t, Options{})
	type created struct {
		a     alias.Alias
		token string
	}
	var before []created
	for i := range 50 {
		a, token := mustCreate(t, s, spec(time.Duration(i+1)*day, 3))
		before = append(before, created{a, token})
	}

	// Writers keep going while the backup runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var during []string
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, _, err := s.Create(spec(day, 0), t0)
				if err != nil {
					t.Errorf("Create during backup: %v", err)
					return
				}
				mu.Lock()
				during = append(during, a.ID)
				mu.Unlock()
			}
		})
	}

	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Backup(f)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	if fi, err := os.Stat(backup); err != nil || fi.Size() != n {
		t.Fatalf("backup file: %v, size vs %d bytes reported", err, n)
	}

	// The store is still fully usable.
	a, _ := mustCreate(t, s, spec(day, 1))
	if _, err := s.Reserve(a.ID, t0); err != nil {
		t.Fatalf("Reserve after Backup: %v", err)
	}
	live := mustStats(t, s)
	if want := 50 + len(during) + 1; live.Aliases != want {
		t.Errorf("store holds %d aliases, want %d", live.Aliases, want)
	}

	// A plain read-only bbolt open of the copy sees the buckets.
	db, err := bolt.Open(backup, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("bbolt cannot open the backup: %v", err)
	}
	var keys int
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketAliases, bucketSweep, bucketMeta} {
			if tx.Bucket(name) == nil {
				return errors.New("bucket " + string(name) + " missing")
			}
		}
		keys = tx.Bucket(bucketAliases).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if keys < 50 || keys > 50+len(during) {
		t.Errorf("backup holds %d aliases, want 50 to %d", keys, 50+len(during))
	}

	// And store.Open serves the aliases from it, tokens included.
	restored, err := openTest(backup, Options{})
	if err != nil {
		t.Fatalf("Open(backup): %v", err)
	}
	defer restored.Close()
	for _, c := range before {
		got, err := restored.Authorized(c.a.ID, c.token, t0)
		if err != nil {
			t.Fatalf("backup lacks %s: %v", c.a.ID, err)
		}
		sameAlias(t, got, c.a)
	}
	st := mustStats(t, restored)
	if st.Aliases != keys || st.Issued != uint64(keys) {
		t.Errorf("restored Stats = %+v, want %d aliases and issued", st, keys)
	}
	if _, err := restored.Get(a.ID, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("backup holds an alias created after it: %v", err)
	}
}
