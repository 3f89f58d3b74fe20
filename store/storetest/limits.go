package storetest

// The limits the store counts, so that they hold across restarts and
// hosts (DESIGN "Store engines"): creations and confirmation mails per
// target per day, messages per alias per hour.

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// limits runs the checks of this file; Run runs them.
func limits(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"CreationsPerDayRace", testCreationsPerDayRace},
		{"ConfirmationsPerDayRace", testConfirmationsPerDayRace},
		{"DailyRefusalsCountNothing", testDailyRefusalsCountNothing},
		{"DailyNextDay", testDailyNextDay},
		{"Withdraw", testWithdraw},
		{"WithdrawUncounted", testWithdrawUncounted},
		{"DailyAcrossReopen", testDailyAcrossReopen},
		{"PerHourRace", testPerHourRace},
		{"PerHourSettle", testPerHourSettle},
		{"PerHourOrder", testPerHourOrder},
		{"PerHourAcrossReopen", testPerHourAcrossReopen},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// race runs create n times at once and counts the creations made and
// those refused with want; anything else fails the test.
func race(t *testing.T, n int, want error, create func() error) (made, refused int64) {
	t.Helper()
	var ok, over atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			switch err := create(); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, want):
				over.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	return ok.Load(), over.Load()
}

// 50 creations at once for a target allowed 5 a day make exactly 5;
// another target has its own count.
func testCreationsPerDayRace(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	made, refused := race(t, 50, store.ErrCreationsPerDay, func() error {
		_, err := s.Create(bg, spec(day, 0), t0, store.CreationsPerDay(5))
		return err
	})
	if made != 5 || refused != 45 {
		t.Fatalf("made %d, refused %d; want 5 and 45", made, refused)
	}
	if n, err := s.LiveForTarget(bg, "t@example.com", t0); err != nil || n != 5 {
		t.Fatalf("LiveForTarget = %d, %v; want 5", n, err)
	}
	// The count is per target, whatever the case of its address.
	if _, err := s.Create(bg, alias.Spec{Target: "T@Example.com", Expires: t0.Add(day)}, t0, store.CreationsPerDay(5)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Errorf("same target in capitals: %v, want ErrCreationsPerDay", err)
	}
	if _, err := s.Create(bg, alias.Spec{Target: "u@example.com", Expires: t0.Add(day)}, t0, store.CreationsPerDay(5)); err != nil {
		t.Errorf("another target: %v", err)
	}
	// Without the option nothing limits (the limit is the caller's).
	if _, err := s.Create(bg, spec(day, 0), t0); err != nil {
		t.Errorf("without a daily limit: %v", err)
	}
}

// 50 pending creations at once for a target allowed 5 confirmation mails
// a day make exactly 5; creations that mail nobody do not count.
func testConfirmationsPerDayRace(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	if _, err := s.Create(bg, spec(day, 0), t0, store.ConfirmationsPerDay(1)); err != nil {
		t.Fatalf("an active alias: %v", err)
	}
	made, refused := race(t, 50, store.ErrConfirmationsPerDay, func() error {
		_, err := s.Create(bg, spec(day, 0), t0, store.Pending(), store.CreationsPerDay(20), store.ConfirmationsPerDay(5))
		return err
	})
	if made != 5 || refused != 45 {
		t.Fatalf("made %d, refused %d; want 5 and 45", made, refused)
	}
	// The 45 refused counted no creation either: 15 more of the 20 fit.
	for i := range 16 {
		_, err := s.Create(bg, spec(day, 0), t0, store.CreationsPerDay(20))
		if i < 15 && err != nil {
			t.Fatalf("creation %d after the race: %v", i, err)
		}
		if i == 15 && !errors.Is(err, store.ErrCreationsPerDay) {
			t.Fatalf("creation 21 of the day: %v, want ErrCreationsPerDay", err)
		}
	}
}

// A creation refused for one limit counts against none: not the day's
// creations when the target is full, nor the confirmation mails when the
// day's creations are spent. A target over the daily limit and full is
// told about the day.
func testDailyRefusalsCountNothing(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	sp := spec(day, 0)
	sp.MaxLive = 1
	daily := []store.CreateOption{store.CreationsPerDay(2)}
	first, err := s.Create(bg, sp, t0, daily...)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Create(bg, sp, t0, daily...); !errors.Is(err, store.ErrTargetFull) {
			t.Fatalf("second live alias: %v, want ErrTargetFull", err)
		}
	}
	if err := s.Revoke(bg, first.Alias.ID, first.Token, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(bg, sp, t0, daily...); err != nil {
		t.Fatalf("the day's second creation: %v", err)
	}
	if _, err := s.Create(bg, sp, t0, daily...); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("over the day's creations and full: %v, want ErrCreationsPerDay", err)
	}
	// The day's creations spent, a pending creation takes no mail.
	other := alias.Spec{Target: "p@example.com", Expires: t0.Add(day)}
	if _, err := s.Create(bg, other, t0, store.CreationsPerDay(1)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Create(bg, other, t0, store.Pending(), store.CreationsPerDay(1), store.ConfirmationsPerDay(1)); !errors.Is(err, store.ErrCreationsPerDay) {
			t.Fatalf("pending over the day's creations: %v", err)
		}
	}
	if _, err := s.Create(bg, other, t0, store.Pending(), store.ConfirmationsPerDay(1)); err != nil {
		t.Fatalf("the day's one confirmation mail: %v", err)
	}
}

// The day is a UTC calendar day: its counts hold until midnight UTC and
// start again then (store.Day, store.NextDay). The sweep forgets only
// days gone by.
func testDailyNextDay(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	midnight := store.NextDay(t0)
	if want := time.Date(2030, 1, 3, 0, 0, 0, 0, time.UTC); !midnight.Equal(want) || store.Day(midnight) != store.Day(t0)+1 || store.Day(midnight.Add(-time.Nanosecond)) != store.Day(t0) {
		t.Fatalf("NextDay(%v) = %v, want %v", t0, midnight, want)
	}
	create := func(at time.Time) error {
		_, err := s.Create(bg, alias.Spec{Target: "t@example.com", Expires: at.Add(3 * day)}, at, store.CreationsPerDay(2))
		return err
	}
	last := midnight.Add(-time.Second)
	for i, at := range []time.Time{t0, last} {
		if err := create(at); err != nil {
			t.Fatalf("creation %d: %v", i, err)
		}
	}
	if _, err := s.Sweep(bg, last, 0); err != nil {
		t.Fatal(err)
	}
	if err := create(last); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("a second before midnight, after a sweep: %v, want ErrCreationsPerDay", err)
	}
	for i := range 2 {
		if err := create(midnight.Add(time.Duration(i) * time.Hour)); err != nil {
			t.Fatalf("the next day, creation %d: %v", i, err)
		}
	}
	if err := create(midnight.Add(2 * time.Hour)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("the next day's third: %v", err)
	}
	// A sweep on the next day forgets the first day, never the current one.
	if _, err := s.Sweep(bg, midnight.Add(3*time.Hour), 1); err != nil {
		t.Fatal(err)
	}
	if err := create(midnight.Add(3 * time.Hour)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("after the next day's sweep: %v, want ErrCreationsPerDay", err)
	}
}

// Withdraw kills an alias and gives back its day's creation and, for a
// pending alias, its confirmation mail; a wrong token withdraws nothing.
// A withdrawal on a later day gives nothing to that day.
func testWithdraw(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	opts := []store.CreateOption{store.Pending(), store.CreationsPerDay(2), store.ConfirmationsPerDay(1)}
	c, err := s.Create(bg, spec(3*day, 0), t0, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(bg, spec(3*day, 0), t0, opts...); !errors.Is(err, store.ErrConfirmationsPerDay) {
		t.Fatalf("second confirmation mail: %v", err)
	}
	if err := s.Withdraw(bg, c.Alias.ID, typo(c.Token), t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Withdraw with a wrong token: %v, want ErrNotFound", err)
	}
	if err := s.Withdraw(bg, c.Alias.ID, c.Token, t0); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	if _, err := s.Held(bg, c.Alias.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("withdrawn alias still held: %v", err)
	}
	if err := s.Withdraw(bg, c.Alias.ID, c.Token, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Withdraw: %v, want ErrNotFound (nothing given back twice)", err)
	}
	// Both counts came back: one pending and one active creation fit,
	// and then the day's two creations are spent.
	late, err := s.Create(bg, spec(3*day, 0), t0, opts...)
	if err != nil {
		t.Fatalf("pending creation after the withdrawal: %v", err)
	}
	if _, err := s.Create(bg, spec(3*day, 0), t0, store.CreationsPerDay(2)); err != nil {
		t.Fatalf("the day's second creation: %v", err)
	}
	if _, err := s.Create(bg, spec(3*day, 0), t0, store.CreationsPerDay(2)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("the day's third creation: %v", err)
	}
	// Withdrawn the next day, late gives back nothing to that day.
	next := store.NextDay(t0)
	for range 2 {
		if _, err := s.Create(bg, spec(3*day, 0), next, store.CreationsPerDay(2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Withdraw(bg, late.Alias.ID, late.Token, next); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(bg, spec(3*day, 0), next, store.CreationsPerDay(2)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("a withdrawal of yesterday's alias made room today: %v", err)
	}
}

// Withdraw gives back exactly what the creation counted: nothing for a
// limit that was not set when the alias was made (the API had none
// configured, or the operator made it), so that a count another creation
// took stays taken.
func testWithdrawUncounted(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	made := func(opts ...store.CreateOption) store.Created {
		t.Helper()
		c, err := s.Create(bg, spec(3*day, 0), t0, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	withdraw := func(c store.Created) {
		t.Helper()
		if err := s.Withdraw(bg, c.Alias.ID, c.Token, t0); err != nil {
			t.Fatal(err)
		}
	}
	// Made without a limit, then the day's two creations under one.
	free := made(store.Pending())
	made(store.CreationsPerDay(2))
	made(store.CreationsPerDay(2))
	withdraw(free)
	if _, err := s.Create(bg, spec(3*day, 0), t0, store.CreationsPerDay(2)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("a third creation after withdrawing one that counted nothing: %v, want ErrCreationsPerDay", err)
	}
	// Pending without a limit on confirmation mails, then the day's one
	// mail under a limit.
	unmailed := made(store.Pending(), store.CreationsPerDay(3))
	made(store.Pending(), store.ConfirmationsPerDay(1))
	withdraw(unmailed)
	if _, err := s.Create(bg, spec(3*day, 0), t0, store.Pending(), store.ConfirmationsPerDay(1)); !errors.Is(err, store.ErrConfirmationsPerDay) {
		t.Fatalf("a second mail after withdrawing an alias that counted none: %v, want ErrConfirmationsPerDay", err)
	}
	// What it did count it gave back: of the day's three creations
	// counted (the two above and unmailed), two are left, so one more
	// fits under 3.
	if _, err := s.Create(bg, spec(3*day, 0), t0, store.CreationsPerDay(3)); err != nil {
		t.Fatalf("the creation unmailed gave back: %v", err)
	}
}

// The day's counts are the store's: they survive the owner's end (a
// restart, or for a shared store another host).
func testDailyAcrossReopen(t *testing.T, open Open) {
	s, reopen := open(t, Options{})
	opts := []store.CreateOption{store.Pending(), store.CreationsPerDay(3), store.ConfirmationsPerDay(2)}
	for range 2 {
		if _, err := s.Create(bg, spec(day, 0), t0, opts...); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen()
	if _, err := s.Create(bg, spec(day, 0), t0, opts...); !errors.Is(err, store.ErrConfirmationsPerDay) {
		t.Fatalf("third confirmation mail after reopen: %v", err)
	}
	if _, err := s.Create(bg, spec(day, 0), t0, store.CreationsPerDay(3)); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	if _, err := s.Create(bg, spec(day, 0), t0, store.CreationsPerDay(3)); !errors.Is(err, store.ErrCreationsPerDay) {
		t.Fatalf("fourth creation after reopen: %v", err)
	}
}

// Peers returns two engines on one new, empty store that several hosts
// share (two hosts on one etcd cluster), both closed when the test ends.
type Peers func(t *testing.T) (a, b store.Engine)

// RunShared runs the checks for an engine that several hosts share at
// once: every limit the store counts holds across two of them, so that
// N hosts do not allow N times a limit. An engine that one process holds
// (bbolt) has nothing to run it with.
func RunShared(t *testing.T, peers Peers) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Peers)
	}{
		{"CreationsPerDay", testSharedCreationsPerDay},
		{"PerHour", testSharedPerHour},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, peers) })
	}
}

// either alternates between a and b.
func either(a, b store.Engine) func() store.Engine {
	var n atomic.Int64
	return func() store.Engine {
		if n.Add(1)%2 == 0 {
			return a
		}
		return b
	}
}

// 50 creations at once over two hosts for a target allowed 5 a day, and
// as many pending ones for 3 confirmation mails, make exactly 5 and 3.
func testSharedCreationsPerDay(t *testing.T, peers Peers) {
	a, b := peers(t)
	host := either(a, b)
	made, refused := race(t, 50, store.ErrCreationsPerDay, func() error {
		_, err := host().Create(bg, spec(day, 0), t0, store.CreationsPerDay(5))
		return err
	})
	if made != 5 || refused != 45 {
		t.Fatalf("creations: made %d, refused %d; want 5 and 45", made, refused)
	}
	other := alias.Spec{Target: "p@example.com", Expires: t0.Add(day)}
	made, refused = race(t, 50, store.ErrConfirmationsPerDay, func() error {
		_, err := host().Create(bg, other, t0, store.Pending(), store.ConfirmationsPerDay(3))
		return err
	})
	if made != 3 || refused != 47 {
		t.Fatalf("confirmation mails: made %d, refused %d; want 3 and 47", made, refused)
	}
}

// reserveRace runs n reservations of alias id at once under opts and
// returns those made; every other must be refused with want.
func reserveRace(t *testing.T, host func() store.Engine, n int, id string, now time.Time, want error, opts ...store.ReserveOption) []*store.Reservation {
	t.Helper()
	var mu sync.Mutex
	var got []*store.Reservation
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			r, err := host().Reserve(bg, id, now, opts...)
			switch {
			case err == nil:
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
			case !errors.Is(err, want):
				t.Errorf("Reserve: %v, want nil or %v", err, want)
			}
		})
	}
	close(start)
	wg.Wait()
	return got
}

func commitAll(t *testing.T, rs []*store.Reservation, now time.Time) {
	t.Helper()
	for _, r := range rs {
		if err := r.Commit(bg, now); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
}

// 50 sessions at once for an alias allowed 5 messages an hour reserve
// exactly 5, with or without a use limit; committed, they fill the hour,
// which starts again an hour after its first message.
func testPerHourRace(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	host := func() store.Engine { return s }
	for _, maxUsage := range []int{0, 100} {
		id := mustCreate(t, s, spec(3*day, maxUsage)).Alias.ID
		got := reserveRace(t, host, 50, id, t0, store.ErrMessagesPerHour, store.PerHour(5))
		if len(got) != 5 {
			t.Fatalf("max-usage %d: %d reserved, want 5", maxUsage, len(got))
		}
		if _, p := uses(t, s, id, t0); p != 5 {
			t.Errorf("max-usage %d: %d pending, want the 5 reservations", maxUsage, p)
		}
		commitAll(t, got, t0.Add(time.Minute))
		if _, err := s.Reserve(bg, id, t0.Add(59*time.Minute), store.PerHour(5)); !errors.Is(err, store.ErrMessagesPerHour) {
			t.Fatalf("max-usage %d: sixth in the hour: %v, want ErrMessagesPerHour", maxUsage, err)
		}
		// Without the option the hour limits nothing.
		if r, err := s.Reserve(bg, id, t0.Add(59*time.Minute)); err != nil {
			t.Fatalf("max-usage %d: without PerHour: %v", maxUsage, err)
		} else if err := r.Refund(bg, t0); err != nil {
			t.Fatal(err)
		}
		// The window opened with the first commit, at t0+1m.
		if _, err := s.Reserve(bg, id, t0.Add(60*time.Minute), store.PerHour(5)); !errors.Is(err, store.ErrMessagesPerHour) {
			t.Fatalf("max-usage %d: before the window's end: %v", maxUsage, err)
		}
		later := t0.Add(61 * time.Minute)
		got = reserveRace(t, host, 20, id, later, store.ErrMessagesPerHour, store.PerHour(5))
		if len(got) != 5 {
			t.Fatalf("max-usage %d: the next hour: %d reserved, want 5", maxUsage, len(got))
		}
		commitAll(t, got, later)
		if a, err := s.Held(bg, id, later); err != nil || a.Used != 10 || a.Pending != 0 {
			t.Fatalf("max-usage %d: Held = %+v, %v; want 10 used", maxUsage, a, err)
		}
	}
}

// A refunded reservation gives its place in the hour back; a refund after
// the commit (the smarthost refused) does too, but only to the window the
// commit counted in.
func testPerHourSettle(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	id := mustCreate(t, s, spec(3*day, 0)).Alias.ID
	two := store.PerHour(2)
	reserve := func(at time.Time) (*store.Reservation, error) { return s.Reserve(bg, id, at, two) }
	r1, err := reserve(t0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := reserve(t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(t0); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("third under way: %v", err)
	}
	if err := r1.Refund(bg, t0); err != nil {
		t.Fatal(err)
	}
	r3, err := reserve(t0)
	if err != nil {
		t.Fatalf("after a refund: %v", err)
	}
	commitAll(t, []*store.Reservation{r2, r3}, t0)
	if _, err := reserve(t0); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("two delivered: %v", err)
	}
	if err := r3.Refund(bg, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	r4, err := reserve(t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("after a committed use was given back: %v", err)
	}
	if err := r4.Commit(bg, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// r4, committed in the first window, is given back after the next
	// window opened with two messages: that window stays full.
	next := t0.Add(time.Hour)
	commitAll(t, []*store.Reservation{mustReserveOpts(t, s, id, next, two), mustReserveOpts(t, s, id, next, two)}, next)
	if err := r4.Refund(bg, next); err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(next); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("a refund from the last hour made room in this one: %v", err)
	}
	if a, err := s.Held(bg, id, next); err != nil || a.Used != 3 || a.Pending != 0 {
		t.Fatalf("Held = %+v, %v; want 3 used", a, err)
	}
}

func mustReserveOpts(t *testing.T, s store.Engine, id string, now time.Time, opts ...store.ReserveOption) *store.Reservation {
	t.Helper()
	r, err := s.Reserve(bg, id, now, opts...)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", id, err)
	}
	return r
}

// A dead alias is ErrNotFound and a busy one ErrExhausted before its
// hour is looked at; the sender check comes first too.
func testPerHourOrder(t *testing.T, open Open) {
	s, _ := open(t, Options{})
	one := store.PerHour(1)
	busy := mustCreate(t, s, spec(3*day, 1)).Alias.ID
	mustReserveOpts(t, s, busy, t0, one)
	if _, err := s.Reserve(bg, busy, t0, one); !errors.Is(err, store.ErrExhausted) {
		t.Errorf("busy and over the hour: %v, want ErrExhausted", err)
	}
	full := mustCreate(t, s, spec(3*day, 2)).Alias.ID
	deliver(t, s, full, t0)
	if _, err := s.Reserve(bg, full, t0, one); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Errorf("over the hour: %v", err)
	}
	used := mustCreate(t, s, spec(3*day, 1)).Alias.ID
	deliver(t, s, used, t0)
	if _, err := s.Reserve(bg, used, t0, one); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("used up and over the hour: %v, want ErrNotFound", err)
	}
	picky := createSpec(t, s, alias.Spec{AllowFrom: []string{"example.org"}}).Alias.ID
	deliverFrom(t, s, picky, store.From("a@example.org"))
	if _, err := s.Reserve(bg, picky, t0, one, store.From("a@example.net")); !errors.Is(err, store.ErrSenderNotAllowed) {
		t.Errorf("sender not allowed and over the hour: %v, want ErrSenderNotAllowed", err)
	}
}

// The hour's messages are the store's: they count after the owner's end,
// and its reservations, released, no longer do.
func testPerHourAcrossReopen(t *testing.T, open Open) {
	s, reopen := open(t, Options{})
	three := store.PerHour(3)
	id := mustCreate(t, s, spec(3*day, 0)).Alias.ID
	commitAll(t, []*store.Reservation{mustReserveOpts(t, s, id, t0, three), mustReserveOpts(t, s, id, t0, three)}, t0)
	mustReserveOpts(t, s, id, t0, three) // never settled
	if _, err := s.Reserve(bg, id, t0, three); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("before reopen: %v", err)
	}
	s = reopen()
	r := mustReserveOpts(t, s, id, t0, three)
	if _, err := s.Reserve(bg, id, t0, three); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("after reopen, two delivered and one reserved: %v", err)
	}
	if err := r.Commit(bg, t0); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	if _, err := s.Reserve(bg, id, t0.Add(59*time.Minute), three); !errors.Is(err, store.ErrMessagesPerHour) {
		t.Fatalf("after a second reopen, three delivered: %v", err)
	}
	mustReserveOpts(t, s, id, t0.Add(time.Hour), three)
}

// 50 sessions at once over two hosts for an alias allowed 5 messages an
// hour reserve exactly 5, and once committed the hour is full on both.
func testSharedPerHour(t *testing.T, peers Peers) {
	a, b := peers(t)
	id := mustCreate(t, a, spec(3*day, 0)).Alias.ID
	got := reserveRace(t, either(a, b), 50, id, t0, store.ErrMessagesPerHour, store.PerHour(5))
	if len(got) != 5 {
		t.Fatalf("%d reserved over two hosts, want 5", len(got))
	}
	commitAll(t, got, t0)
	for _, h := range []store.Engine{a, b} {
		if _, err := h.Reserve(bg, id, t0, store.PerHour(5)); !errors.Is(err, store.ErrMessagesPerHour) {
			t.Fatalf("sixth: %v, want ErrMessagesPerHour", err)
		}
	}
}
