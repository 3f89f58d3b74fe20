// Package storetest is the conformance suite of the store contract: every
// guarantee a store engine gives tempalias (DESIGN "Identity", "Expiry",
// "Usage accounting"), each checked once, in the style of
// testing/fstest. An engine's own tests call Run with a function that
// opens a new, empty store of that engine.
//
// Time is what the suite passes as now: no test waits for a clock.
package storetest

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Options are what a test asks of the store it opens.
type Options struct {
	// TinyIDs asks for ids as short as the engine makes them (one
	// character to start with, growing only on collisions), so that
	// collisions with issued ids are frequent.
	TinyIDs bool
}

// Open returns a new, empty store, closed when the test ends, and reopen,
// which ends this owner's hold on it the way a crash does (reservations
// not settled) and returns the store as its next owner finds it. For bbolt
// that is closing and opening the file; for etcd, the owner's lease
// ending.
type Open func(t *testing.T, opts Options) (s store.Engine, reopen func() store.Engine)

// t0 is the suite's clock: every now is derived from it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const day = 24 * time.Hour

var bg = context.Background()

// Run runs the whole suite against the engine open makes.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"CreateGet", testCreateGet},
		{"ConcurrentCreate", testConcurrentCreate},
		{"IDsNeverReissued", testIDsNeverReissued},
		{"Revoke", testRevoke},
		{"Authorized", testAuthorized},
		{"Expiry", testExpiry},
		{"ReserveRace", testReserveRace},
		{"SettleOnce", testSettleOnce},
		{"RefundGivesBack", testRefundGivesBack},
		{"CommitBeforeEnd", testCommitBeforeEnd},
		{"Unlimited", testUnlimited},
		{"StaleReservationsReleased", testStaleReservationsReleased},
		{"DurableAcrossReopen", testDurableAcrossReopen},
		{"SettleAfterDeath", testSettleAfterDeath},
		{"Pending", testPending},
		{"RefusedAfterUse", testRefusedAfterUse},
		{"SweepNeverTakesTheLiving", testSweepNeverTakesTheLiving},
		{"MaxLivePerTarget", testMaxLivePerTarget},
		{"ConcurrentMixed", testConcurrentMixed},
		{"ExportImport", testExportImport},
		{"ImportMalformed", testImportMalformed},
		{"ImportVersion1", testImportVersion1},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
	features(t, open)
	limits(t, open)
}

func spec(d time.Duration, maxUsage int) alias.Spec {
	return alias.Spec{Target: "t@example.com", Expires: t0.Add(d), MaxUsage: maxUsage}
}

func mustCreate(t *testing.T, s store.Engine, sp alias.Spec) store.Created {
	t.Helper()
	c, err := s.Create(bg, sp, t0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return c
}

func mustReserve(t *testing.T, s store.Engine, id string, now time.Time) *store.Reservation {
	t.Helper()
	r, err := s.Reserve(bg, id, now)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", id, err)
	}
	return r
}

// deliver reserves and commits one use, as a delivered message does.
func deliver(t *testing.T, s store.Engine, id string, now time.Time) {
	t.Helper()
	if err := mustReserve(t, s, id, now).Commit(bg, now); err != nil {
		t.Fatalf("Commit(%s): %v", id, err)
	}
}

// uses is what the holder sees of alias id's uses: delivered, reserved.
func uses(t *testing.T, s store.Engine, id string, now time.Time) (used, pending int) {
	t.Helper()
	a, err := s.Held(bg, id, now)
	if err != nil {
		t.Fatalf("Held(%s): %v", id, err)
	}
	return a.Used, a.Pending
}

func wantUses(t *testing.T, s store.Engine, id string, used, pending int) {
	t.Helper()
	if u, p := uses(t, s, id, t0); u != used || p != pending {
		t.Fatalf("alias %s: used %d pending %d, want %d %d", id, u, p, used, pending)
	}
}

func mustStats(t *testing.T, s store.Engine) store.Stats {
	t.Helper()
	st, err := s.Stats(bg)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

func testCreateGet(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	now := t0.Add(1234 * time.Millisecond).In(time.FixedZone("X", -7*3600))
	sp := alias.Spec{Target: "t@example.com", Expires: t0.Add(3 * day), MaxUsage: 5}
	c, err := s.Create(bg, sp, now)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	a := c.Alias
	if !alias.ValidID(a.ID) || len(a.ID) < 6 {
		t.Errorf("id %q, want at least 6 characters of [0-9a-z]", a.ID)
	}
	if a.Target != sp.Target || !a.Expires.Equal(sp.Expires) || a.MaxUsage != 5 || a.Used != 0 || a.Pending != 0 || a.Revoked || a.Unverified {
		t.Errorf("created %+v from %+v", a, sp)
	}
	if want := t0.Add(time.Second); !a.Created.Equal(want) || a.Created.Location() != time.UTC || a.Expires.Location() != time.UTC {
		t.Errorf("Created = %v, Expires in %v; want %v, both UTC", a.Created, a.Expires.Location(), want)
	}
	if len(c.Token) < 32 || !a.TokenMatches(c.Token) || c.Confirm != "" {
		t.Errorf("token %q, confirmation %q", c.Token, c.Confirm)
	}
	if strings.Contains(string(a.TokenHash), c.Token) {
		t.Error("token kept in clear")
	}
	for _, id := range []string{a.ID, strings.ToUpper(a.ID)} { // people copy ids in any case
		got, err := s.Get(bg, id, now)
		if err != nil || got.ID != a.ID || got.Target != a.Target || !got.Expires.Equal(a.Expires) || string(got.TokenHash) != string(a.TokenHash) {
			t.Errorf("Get(%s) = %+v, %v; want %+v", id, got, err, a)
		}
	}
	for _, id := range []string{"zzzzzz", "", "Not-An-Id", strings.Repeat("a", 40)} {
		if _, err := s.Get(bg, id, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	b := mustCreate(t, s, sp)
	if b.Alias.ID == a.ID || b.Token == c.Token {
		t.Error("second alias reuses the id or the token")
	}
	if st := mustStats(t, s); st.Aliases != 2 || st.Issued != 2 {
		t.Errorf("Stats = %+v, want 2 aliases, 2 issued", st)
	}
	if err := s.Ping(bg); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// Creation is race-free: 10,000 creations at once get 10,000 ids, and
// the ids grow with the count as the guess probability asks.
func testConcurrentCreate(t *testing.T, open Open) {
	const n, workers = 10_000, 100
	s, _ := open(t, Options{})
	ids := make([]string, n)
	tokens := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				c, err := s.Create(bg, spec(day, 0), t0)
				if err != nil {
					t.Errorf("Create %d: %v", i, err)
					return
				}
				ids[i], tokens[i] = c.Alias.ID, c.Token
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	seen := make(map[string]int, n)
	lengths := make(map[int]int)
	for i, id := range ids {
		if j, dup := seen[id]; dup {
			t.Fatalf("creations %d and %d both got id %q", j, i, id)
		}
		seen[id] = i
		lengths[len(id)]++
	}
	// Ids of length 6 until 36^6 ids would no longer keep a guess below
	// one in a million (2176 issued), then 7: never more short ones, as
	// they would make guessing easier. (Collisions may lengthen an id
	// early, so fewer is fine.)
	if lengths[6] > 2176 || lengths[6]+lengths[7] != n {
		t.Errorf("id lengths %v, want at most 2176 of 6 and the rest of 7", lengths)
	}
	if st := mustStats(t, s); st.Aliases != n || st.Issued != n {
		t.Errorf("Stats = %+v, want %d aliases and issued", st, n)
	}
	for i := 0; i < n; i += 97 {
		if _, err := s.Authorized(bg, ids[i], tokens[i], t0); err != nil {
			t.Fatalf("Authorized(%s): %v", ids[i], err)
		}
	}
}

// An id is never handed out twice, not even after its alias was swept:
// with a tiny id space collisions with swept ids are frequent.
func testIDsNeverReissued(t *testing.T, open Open) {
	const rounds, perRound = 20, 10
	s, _ := open(t, Options{TinyIDs: true})
	seen := make(map[string]bool)
	lengths := make(map[int]int)
	var last string
	for round := range rounds {
		now := t0.Add(time.Duration(round) * time.Hour)
		for range perRound {
			c, err := s.Create(bg, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Minute)}, now)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if seen[c.Alias.ID] {
				t.Fatalf("id %q issued twice", c.Alias.ID)
			}
			seen[c.Alias.ID] = true
			lengths[len(c.Alias.ID)]++
			last = c.Alias.ID
		}
		if n, err := s.Sweep(bg, now.Add(time.Minute), 3); err != nil || n != perRound {
			t.Fatalf("round %d: Sweep = %d, %v; want %d", round, n, err, perRound)
		}
	}
	if lengths[1] == 0 || lengths[1] > len(alias.IDAlphabet) || len(last) < 2 {
		t.Errorf("id lengths %v, last %q: want some of 1 (at most 36), growing to 2", lengths, last)
	}
	if st := mustStats(t, s); st.Issued != rounds*perRound || st.Aliases != 0 {
		t.Errorf("Stats = %+v, want %d issued, none stored", st, rounds*perRound)
	}
	for id := range seen {
		if _, err := s.Held(bg, id, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("swept %s: %v", id, err)
		}
	}
}

// typo changes the last character of token, whatever it is.
func typo(token string) string {
	if token == "" {
		return "x"
	}
	b := []byte(token)
	b[len(b)-1] ^= 1
	return string(b)
}

func testRevoke(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	a := mustCreate(t, s, spec(3*day, 5))
	other := mustCreate(t, s, spec(3*day, 5))
	for _, tc := range []struct{ name, id, token string }{
		{"empty token", a.Alias.ID, ""},
		{"other alias's token", a.Alias.ID, other.Token},
		{"token with a typo", a.Alias.ID, typo(a.Token)},
		{"unknown id", "zzzzzz", a.Token},
		{"invalid id", "ZZ!", a.Token},
	} {
		if err := s.Revoke(bg, tc.id, tc.token, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: Revoke = %v, want ErrNotFound", tc.name, err)
		}
	}
	if err := s.Revoke(bg, strings.ToUpper(a.Alias.ID), a.Token, t0.Add(time.Hour)); err != nil {
		t.Fatalf("Revoke with the right token: %v", err)
	}
	for _, now := range []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * day)} {
		if _, err := s.Get(bg, a.Alias.ID, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get at %v after Revoke = %v", now, err)
		}
	}
	if _, err := s.Reserve(bg, a.Alias.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve after Revoke = %v", err)
	}
	if _, err := s.Authorized(bg, a.Alias.ID, a.Token, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Authorized after Revoke = %v", err)
	}
	if err := s.Revoke(bg, a.Alias.ID, a.Token, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Revoke = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(bg, other.Alias.ID, t0); err != nil {
		t.Errorf("the other alias: %v", err)
	}
	// An expired alias is gone as far as anyone can tell.
	if err := s.Revoke(bg, other.Alias.ID, other.Token, t0.Add(3*day)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Revoke of an expired alias = %v", err)
	}
	// The operator revokes without a token.
	third := mustCreate(t, s, spec(3*day, 0))
	if err := s.RevokeID(bg, third.Alias.ID, t0); err != nil {
		t.Fatalf("RevokeID: %v", err)
	}
	if _, err := s.Get(bg, third.Alias.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after RevokeID = %v", err)
	}
}

// Unknown, dead and wrong-token look-ups are alike; a used-up alias stays
// visible to its holder until it expires.
func testAuthorized(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	a := mustCreate(t, s, spec(3*day, 1))
	other := mustCreate(t, s, spec(3*day, 1))
	if got, err := s.Authorized(bg, a.Alias.ID, a.Token, t0); err != nil || got.ID != a.Alias.ID {
		t.Fatalf("Authorized: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name, id, token string
		now             time.Time
	}{
		{"wrong token", a.Alias.ID, other.Token, t0},
		{"empty token", a.Alias.ID, "", t0},
		{"unknown id", "zzzzzz", a.Token, t0},
		{"invalid id", "Not-An-Id", a.Token, t0},
		{"expired", a.Alias.ID, a.Token, t0.Add(3 * day)},
	} {
		if got, err := s.Authorized(bg, tc.id, tc.token, tc.now); !errors.Is(err, store.ErrNotFound) || got.ID != "" {
			t.Errorf("%s: Authorized = %+v, %v; want ErrNotFound", tc.name, got, err)
		}
	}
	deliver(t, s, a.Alias.ID, t0)
	if _, err := s.Get(bg, a.Alias.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of a used-up alias = %v, want ErrNotFound (dead for mail)", err)
	}
	if got, err := s.Authorized(bg, a.Alias.ID, a.Token, t0); err != nil || !got.UsedUp() {
		t.Errorf("Authorized on a used-up alias = %+v, %v; want it, used up", got, err)
	}
	if _, err := s.Authorized(bg, a.Alias.ID, other.Token, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("used-up alias, wrong token: %v", err)
	}
	if _, err := s.Authorized(bg, a.Alias.ID, a.Token, a.Alias.Expires); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("used-up alias at its expiry: %v", err)
	}
}

// An alias lives until its expiry, to the second, and not a moment after.
func testExpiry(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	a := mustCreate(t, s, spec(3*day, 0)).Alias
	if _, err := s.Get(bg, a.ID, t0.Add(3*day-time.Nanosecond)); err != nil {
		t.Errorf("just before expiry: %v", err)
	}
	r := mustReserve(t, s, a.ID, t0.Add(3*day-time.Second))
	if err := r.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{t0.Add(3 * day), t0.Add(4 * day)} {
		if _, err := s.Get(bg, a.ID, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get at +%v = %v", now.Sub(t0), err)
		}
		if _, err := s.Reserve(bg, a.ID, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Reserve at +%v = %v", now.Sub(t0), err)
		}
	}
	var live []string
	if err := s.Live(bg, t0, func(a alias.Alias) bool { live = append(live, a.ID); return true }); err != nil || len(live) != 1 {
		t.Errorf("Live before expiry: %v, %v", live, err)
	}
	live = nil
	if err := s.Live(bg, t0.Add(3*day), func(a alias.Alias) bool { live = append(live, a.ID); return true }); err != nil || len(live) != 0 {
		t.Errorf("Live after expiry: %v, %v", live, err)
	}
}

// 100 sessions racing for the uses of a max-usage 5 alias get exactly 5.
func testReserveRace(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	id := mustCreate(t, s, spec(3*day, 5)).Alias.ID
	var ok, exhausted atomic.Int64
	var mu sync.Mutex
	var got []*store.Reservation
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			<-start
			r, err := s.Reserve(bg, id, t0)
			switch {
			case err == nil:
				ok.Add(1)
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
			case errors.Is(err, store.ErrExhausted):
				exhausted.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 5 || exhausted.Load() != 95 {
		t.Fatalf("%d reserved, %d exhausted; want 5 and 95", ok.Load(), exhausted.Load())
	}
	// Committed concurrently too, they use the alias up: never a sixth.
	for _, r := range got {
		wg.Go(func() {
			if err := r.Commit(bg, t0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := s.Reserve(bg, id, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve of the used-up alias = %v", err)
	}
	if a, err := s.Held(bg, id, t0); err != nil || a.Used != 5 || a.Pending != 0 {
		t.Errorf("Held = %+v, %v; want 5 used", a, err)
	}
}

// A reservation is settled once: a second settlement is ErrSettled and
// changes nothing, whatever the order.
func testSettleOnce(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	id := mustCreate(t, s, spec(3*day, 3)).Alias.ID
	refunded := mustReserve(t, s, id, t0)
	if err := refunded.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	if err := refunded.Refund(bg, t0); !errors.Is(err, store.ErrSettled) {
		t.Errorf("second Refund = %v, want ErrSettled", err)
	}
	if err := refunded.Commit(bg, t0); !errors.Is(err, store.ErrSettled) {
		t.Errorf("Commit after Refund = %v, want ErrSettled", err)
	}
	wantUses(t, s, id, 0, 0)
	committed := mustReserve(t, s, id, t0)
	held := mustReserve(t, s, id, t0) // another transaction's, open throughout
	if err := committed.Commit(bg, t0); err != nil {
		t.Fatal(err)
	}
	if err := committed.Commit(bg, t0); !errors.Is(err, store.ErrSettled) {
		t.Errorf("second Commit = %v, want ErrSettled", err)
	}
	wantUses(t, s, id, 1, 1)
	if err := committed.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	if err := committed.Refund(bg, t0); !errors.Is(err, store.ErrSettled) {
		t.Errorf("second Refund after Commit = %v, want ErrSettled", err)
	}
	wantUses(t, s, id, 0, 1) // given back once, and the other reservation untouched
	if err := held.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	wantUses(t, s, id, 0, 0)
}

// A refund gives the use back: the alias can be reserved again.
func testRefundGivesBack(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	id := mustCreate(t, s, spec(3*day, 2)).Alias.ID
	r1, r2 := mustReserve(t, s, id, t0), mustReserve(t, s, id, t0)
	if r1.Alias.ID != id || r2.Alias.Target != "t@example.com" {
		t.Errorf("reservations carry %+v, %+v", r1.Alias, r2.Alias)
	}
	wantUses(t, s, id, 0, 2)
	if a, err := s.Held(bg, id, t0); err != nil {
		t.Fatal(err)
	} else if n, ok := a.Remaining(); !ok || n != 0 {
		t.Errorf("remaining %d with every use reserved; reservations count as used", n)
	}
	if _, err := s.Reserve(bg, id, t0); !errors.Is(err, store.ErrExhausted) {
		t.Fatalf("third Reserve = %v, want ErrExhausted", err)
	}
	if err := r1.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	wantUses(t, s, id, 0, 1)
	r3 := mustReserve(t, s, id, t0)
	for _, r := range []*store.Reservation{r2, r3} {
		if err := r.Refund(bg, t0); err != nil {
			t.Fatal(err)
		}
	}
	wantUses(t, s, id, 0, 0)
}

// The use is committed just before the end of the message goes upstream:
// a refusal of the message after that gives it back, no answer at all
// (connection lost after the dot) keeps it spent, across a reopen too.
func testCommitBeforeEnd(t *testing.T, open Open) {
	s, reopen := open(t, Options{})
	id := mustCreate(t, s, spec(3*day, 1)).Alias.ID
	r := mustReserve(t, s, id, t0)
	if err := r.Commit(bg, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(bg, id, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Reserve after the commit of the last use = %v, want ErrNotFound", err)
	}
	if err := r.Refund(bg, t0); err != nil { // the smarthost said 5xx
		t.Fatal(err)
	}
	wantUses(t, s, id, 0, 0)
	maybe := mustReserve(t, s, id, t0) // live again: the use came back
	if err := maybe.Commit(bg, t0); err != nil {
		t.Fatal(err)
	}
	// No answer after the dot: nothing more is said, and it stays spent.
	s = reopen()
	wantUses(t, s, id, 1, 0)
	if _, err := s.Reserve(bg, id, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve after a maybe-delivered message = %v, want ErrNotFound", err)
	}
}

// An alias without a use limit reserves nothing to count against, but its
// deliveries are counted, and a refused message is not.
func testUnlimited(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	id := mustCreate(t, s, spec(day, 0)).Alias.ID
	var rs []*store.Reservation
	for range 20 {
		rs = append(rs, mustReserve(t, s, id, t0))
	}
	for i, r := range rs {
		switch i % 3 {
		case 0:
			if err := r.Refund(bg, t0); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := r.Commit(bg, t0); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := errors.Join(r.Commit(bg, t0), r.Refund(bg, t0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, err := s.Get(bg, id, t0)
	if err != nil || a.Used != 7 || a.Pending != 0 {
		t.Errorf("Get = %+v, %v; want 7 relayed, nothing pending", a, err)
	}
	if _, ok := a.Remaining(); ok {
		t.Error("an unlimited alias has a remaining count")
	}
	if _, err := s.Reserve(bg, id, t0.Add(day)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reserve at expiry = %v", err)
	}
}

// A reservation its owner never settled (a crash between RCPT and the end
// of data) is released once the owner is gone: the alias does not stay
// busy. Committed uses stay spent.
func testStaleReservationsReleased(t *testing.T, open Open) {
	s, reopen := open(t, Options{})
	one := mustCreate(t, s, spec(3*day, 1)).Alias.ID
	three := mustCreate(t, s, spec(3*day, 3)).Alias.ID
	mustReserve(t, s, one, t0)
	mustReserve(t, s, three, t0)
	mustReserve(t, s, three, t0)
	deliver(t, s, three, t0)
	if _, err := s.Reserve(bg, one, t0); !errors.Is(err, store.ErrExhausted) {
		t.Fatalf("Reserve of the busy alias = %v, want ErrExhausted", err)
	}
	s = reopen()
	wantUses(t, s, one, 0, 0)
	wantUses(t, s, three, 1, 0)
	mustReserve(t, s, one, t0)
}

// Everything acknowledged survives a reopen: aliases, tokens, uses,
// revocations, and the count of issued ids.
func testDurableAcrossReopen(t *testing.T, open Open) {
	s, reopen := open(t, Options{})
	var all []store.Created
	for i := range 12 {
		all = append(all, mustCreate(t, s, spec(time.Duration(i+1)*day, i%3)))
	}
	deliver(t, s, all[5].Alias.ID, t0)
	if err := s.Revoke(bg, all[7].Alias.ID, all[7].Token, t0); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	if st := mustStats(t, s); st.Aliases != 12 || st.Issued != 12 {
		t.Errorf("after reopen Stats = %+v", st)
	}
	for i, c := range all {
		got, err := s.Authorized(bg, c.Alias.ID, c.Token, t0)
		if i == 7 {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("revoked alias after reopen: %v", err)
			}
			continue
		}
		want := 0
		if i == 5 {
			want = 1
		}
		if err != nil || got.Used != want || !got.Expires.Equal(c.Alias.Expires) || got.MaxUsage != c.Alias.MaxUsage {
			t.Errorf("alias %d after reopen: %+v, %v", i, got, err)
		}
	}
	b := mustCreate(t, s, spec(day, 0))
	for _, c := range all {
		if b.Alias.ID == c.Alias.ID {
			t.Fatalf("id %s issued again after reopen", b.Alias.ID)
		}
	}
}

// A transaction under way when its alias is revoked or swept still
// settles; neither commit nor refund fails or brings the alias back.
func testSettleAfterDeath(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	a := mustCreate(t, s, spec(day, 5))
	r1, r2, r3 := mustReserve(t, s, a.Alias.ID, t0), mustReserve(t, s, a.Alias.ID, t0), mustReserve(t, s, a.Alias.ID, t0)
	if err := s.Revoke(bg, a.Alias.ID, a.Token, t0); err != nil {
		t.Fatal(err)
	}
	if err := r1.Commit(bg, t0); err != nil {
		t.Errorf("Commit after Revoke: %v", err)
	}
	if n, err := s.Sweep(bg, t0, 0); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if err := r2.Refund(bg, t0); err != nil {
		t.Errorf("Refund after Sweep: %v", err)
	}
	if err := errors.Join(r3.Commit(bg, t0), r3.Refund(bg, t0), r1.Refund(bg, t0)); err != nil {
		t.Errorf("settling after Sweep: %v", err)
	}
	if st := mustStats(t, s); st.Aliases != 0 {
		t.Errorf("a settlement brought a swept alias back: %+v", st)
	}
	if _, err := s.Held(bg, a.Alias.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Held = %v", err)
	}
}

// A pending alias refuses mail like an unknown one until its target
// confirms; the confirmation works once, and the target stays verified.
func testPending(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	c, err := s.Create(bg, spec(3*day, 2), t0, store.Pending())
	if err != nil {
		t.Fatal(err)
	}
	if !c.Alias.Unverified || c.Confirm == "" || c.Token == "" || c.Confirm == c.Token {
		t.Fatalf("created %+v, token %q, confirm %q", c.Alias, c.Token, c.Confirm)
	}
	id := c.Alias.ID
	if ok, err := s.TargetVerified(bg, "t@example.com", t0); err != nil || ok {
		t.Fatalf("target verified before confirmation: %v, %v", ok, err)
	}
	if _, err := s.Reserve(bg, id, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Reserve on a pending alias: %v, want ErrNotFound", err)
	}
	if a, err := s.Authorized(bg, id, c.Token, t0); err != nil || !a.Unverified {
		t.Errorf("its holder sees %+v, %v; want it, pending", a, err)
	}
	if _, err := s.Confirm(bg, typo(c.Confirm), t0, 90*day); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("wrong token: %v", err)
	}
	got, err := s.Confirm(bg, c.Confirm, t0.Add(time.Hour), 90*day)
	if err != nil || got.ID != id || got.Unverified {
		t.Fatalf("Confirm: %+v %v", got, err)
	}
	if _, err := s.Confirm(bg, c.Confirm, t0.Add(time.Hour), 90*day); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Confirm: %v, want ErrNotFound", err)
	}
	mustReserve(t, s, id, t0.Add(time.Hour))
	for _, tc := range []struct {
		target string
		at     time.Time
		want   bool
	}{
		{"t@example.com", t0.Add(89 * day), true},
		{"T@EXAMPLE.com", t0.Add(89 * day), true},
		{"u@example.com", t0.Add(day), false},
		{"t@example.com", t0.Add(91 * day), false},
	} {
		if ok, err := s.TargetVerified(bg, tc.target, tc.at); ok != tc.want || err != nil {
			t.Errorf("TargetVerified(%s, +%v) = %v %v", tc.target, tc.at.Sub(t0), ok, err)
		}
	}
	// A confirmation that comes after its alias died confirms nothing.
	late, err := s.Create(bg, alias.Spec{Target: "late@example.com", Expires: t0.Add(day)}, t0, store.Pending())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(bg, late.Confirm, t0.Add(day), 90*day); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Confirm of an expired alias: %v", err)
	}
	if ok, err := s.TargetVerified(bg, "late@example.com", t0.Add(day)); err != nil || ok {
		t.Errorf("a late confirmation verified its target: %v, %v", ok, err)
	}
}

// Mail refused for a used-up alias is counted for its holder until it
// expires; the refusal is ErrNotFound like any other.
func testRefusedAfterUse(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	c := mustCreate(t, s, spec(day, 1))
	id := c.Alias.ID
	deliver(t, s, id, t0)
	for range 3 {
		if _, err := s.Reserve(bg, id, t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Reserve of a used-up alias = %v", err)
		}
	}
	if a, err := s.Authorized(bg, id, c.Token, t0.Add(time.Hour)); err != nil || a.Refused != 3 || a.Used != 1 {
		t.Fatalf("holder sees %+v, %v; want 1 relayed, 3 refused", a, err)
	}
}

// The sweep removes expired and revoked aliases, keeps used-up ones for
// their holders until expiry, never takes a live one, and keeps every id.
func testSweepNeverTakesTheLiving(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	type entry struct{ id, token string }
	var all []entry
	issued := map[string]bool{}
	now := t0
	for round := range 30 {
		for range 8 {
			sp := alias.Spec{Target: "t@example.com", Expires: now.Add(time.Duration(1+rng.IntN(7200)) * time.Second), MaxUsage: rng.IntN(3)}
			c, err := s.Create(bg, sp, now)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, entry{c.Alias.ID, c.Token})
			issued[c.Alias.ID] = true
		}
		for _, e := range all {
			switch rng.IntN(6) {
			case 0:
				s.Revoke(bg, e.id, e.token, now)
			case 1, 2:
				if r, err := s.Reserve(bg, e.id, now); err == nil {
					var err error
					if rng.IntN(2) == 0 {
						err = r.Commit(bg, now)
					} else {
						err = r.Refund(bg, now)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		now = now.Add(time.Duration(rng.IntN(900)) * time.Second)
		type seen struct{ live, held bool }
		before := map[string]seen{}
		for _, e := range all {
			_, lerr := s.Get(bg, e.id, now)
			_, herr := s.Held(bg, e.id, now)
			before[e.id] = seen{lerr == nil, herr == nil}
		}
		if _, err := s.Sweep(bg, now, 7); err != nil {
			t.Fatal(err)
		}
		stored := 0
		for _, e := range all {
			_, lerr := s.Get(bg, e.id, now)
			_, herr := s.Held(bg, e.id, now)
			if b := before[e.id]; b.live != (lerr == nil) || b.held != (herr == nil) {
				t.Fatalf("round %d: alias %s was live %v, held %v before the sweep; after it %v, %v", round, e.id, b.live, b.held, lerr, herr)
			}
			if herr == nil {
				stored++
			}
		}
		if st := mustStats(t, s); st.Issued != uint64(len(issued)) || st.Aliases < stored {
			t.Fatalf("round %d: Stats %+v with %d issued, %d held", round, st, len(issued), stored)
		}
	}
	// Swept or not, every id stays issued: new ones never repeat them.
	for range 50 {
		c := mustCreate(t, s, spec(day, 0))
		if issued[c.Alias.ID] {
			t.Fatalf("id %s issued again", c.Alias.ID)
		}
	}
}

// The live aliases per target are counted in the creating transaction:
// 20 creations at once for a target allowed 3 make 3; a dead one frees
// its place.
func testMaxLivePerTarget(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	sp := spec(day, 1)
	sp.MaxLive = 3
	var made, full atomic.Int64
	var ids sync.Map
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			c, err := s.Create(bg, sp, t0)
			switch {
			case err == nil:
				made.Add(1)
				ids.Store(c.Alias.ID, c.Token)
			case errors.Is(err, store.ErrTargetFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if made.Load() != 3 || full.Load() != 17 {
		t.Fatalf("made %d, refused %d; want 3 and 17", made.Load(), full.Load())
	}
	if n, err := s.LiveForTarget(bg, "T@example.com", t0); n != 3 || err != nil {
		t.Fatalf("live for target: %d %v", n, err)
	}
	if _, err := s.Create(bg, alias.Spec{Target: "other@example.com", Expires: t0.Add(day), MaxLive: 3}, t0); err != nil {
		t.Errorf("another target: %v", err)
	}
	// A used-up alias is no longer live: its place is free.
	ids.Range(func(k, _ any) bool {
		deliver(t, s, k.(string), t0)
		return false
	})
	if _, err := s.Create(bg, sp, t0); err != nil {
		t.Errorf("Create after one alias was used up: %v", err)
	}
	if _, err := s.Create(bg, sp, t0); !errors.Is(err, store.ErrTargetFull) {
		t.Errorf("Create past the limit again: %v", err)
	}
}

// Creations, reservations, settlements, revocations and sweeps at once
// keep every count: no alias ever delivers past its max-usage.
func testConcurrentMixed(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	const aliases, workers, rounds = 20, 16, 40
	type entry struct {
		id, token string
		max       int
	}
	entries := make([]entry, aliases)
	for i := range entries {
		c := mustCreate(t, s, spec(day, 1+i%4))
		entries[i] = entry{c.Alias.ID, c.Token, 1 + i%4}
	}
	var delivered [aliases]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				i := rng.IntN(aliases)
				e := entries[i]
				switch rng.IntN(8) {
				case 0:
					s.Create(bg, spec(day, 2), t0)
				case 1:
					if i == 0 {
						s.Revoke(bg, e.id, e.token, t0)
					}
				case 2:
					s.Sweep(bg, t0, 5)
				default:
					r, err := s.Reserve(bg, e.id, t0)
					if err != nil {
						continue
					}
					if err := r.Commit(bg, t0); err != nil {
						t.Error(err)
						continue
					}
					if rng.IntN(3) == 0 {
						if err := r.Refund(bg, t0); err != nil {
							t.Error(err)
						}
						continue
					}
					delivered[i].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for i, e := range entries {
		if d := delivered[i].Load(); d > int64(e.max) {
			t.Errorf("alias %s (max-usage %d) delivered %d", e.id, e.max, d)
		}
		a, err := s.Held(bg, e.id, t0)
		if errors.Is(err, store.ErrNotFound) {
			continue // revoked
		}
		if err != nil || a.Pending != 0 || int64(a.Used) != delivered[i].Load() {
			t.Errorf("alias %s: %+v, %v; want %d used, none pending", e.id, a, err, delivered[i].Load())
		}
	}
}
