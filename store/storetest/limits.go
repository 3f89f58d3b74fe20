package storetest

// The limits the store counts, so that they hold across restarts and
// hosts (DESIGN "Store engines"): creations and confirmation mails per
// target per day.

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
		{"DailyAcrossReopen", testDailyAcrossReopen},
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
