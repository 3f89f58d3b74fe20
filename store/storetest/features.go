package storetest

// The store's part in changing an alias (PATCH), allow-from, lock-sender
// and revoke links (issue "What people using alias services keep asking
// for").

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

var now = t0

// features runs the checks of this file; Run runs them.
func features(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"Change", testChange},
		{"ChangeRevives", testRevive},
		{"ChangeExpiry", testChangeExpiry},
		{"LimitSetInFlight", testLimitSetInFlight},
		{"AllowFrom", testAllowFrom},
		{"LockSender", testLockSender},
		{"LockSenderRefunded", testLockSenderRefunded},
		{"LinkKey", testLinkKey},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func createSpec(t *testing.T, st store.Engine, sp alias.Spec) store.Created {
	t.Helper()
	if sp.Target == "" {
		sp.Target = "t@example.com"
	}
	if sp.Expires.IsZero() {
		sp.Expires = now.Add(72 * time.Hour)
	}
	c, err := st.Create(bg, sp, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// deliverFrom reserves and commits one use for a message from the
// sender opts name.
func deliverFrom(t *testing.T, st store.Engine, id string, opts ...store.ReserveOption) {
	t.Helper()
	r, err := st.Reserve(bg, id, now, opts...)
	if err != nil {
		t.Fatalf("reserve %s: %v", id, err)
	}
	if err := r.Commit(bg, now); err != nil {
		t.Fatalf("commit %s: %v", id, err)
	}
}

func ptr[T any](v T) *T { return &v }

func testChange(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	c := createSpec(t, st, alias.Spec{MaxUsage: 3})
	id := c.Alias.ID
	deliverFrom(t, st, id)
	inFlight, err := st.Reserve(bg, id, now) // one under way
	if err != nil {
		t.Fatal(err)
	}

	// Below relayed + reserved (2): refused, naming the bound.
	_, err = st.Change(bg, id, c.Token, alias.Change{MaxUsage: ptr(1)}, now)
	var inv *alias.InvalidError
	if !errors.As(err, &inv) || inv.Field != "max-usage" {
		t.Fatalf("max-usage below used+pending: %v", err)
	}
	// Exactly relayed + reserved is fine.
	a, err := st.Change(bg, id, c.Token, alias.Change{MaxUsage: ptr(2)}, now)
	if err != nil || a.MaxUsage != 2 {
		t.Fatalf("max-usage 2: %+v %v", a, err)
	}
	if _, err := st.Reserve(bg, id, now); !errors.Is(err, store.ErrExhausted) {
		t.Fatalf("reserve at the new bound: %v", err)
	}
	if err := inFlight.Refund(bg, now); err != nil {
		t.Fatal(err)
	}

	exp := now.Add(24 * time.Hour)
	allow := []string{"example.org"}
	a, err = st.Change(bg, id, c.Token, alias.Change{Expires: &exp, AllowFrom: &allow}, now)
	if err != nil || !a.Expires.Equal(exp) || !slices.Equal(a.AllowFrom, allow) || a.MaxUsage != 2 {
		t.Fatalf("days and allow-from: %+v %v", a, err)
	}
	got, err := st.Held(bg, id, now)
	if err != nil || !got.Expires.Equal(exp) || !slices.Equal(got.AllowFrom, allow) || got.Used != 1 {
		t.Fatalf("stored: %+v %v", got, err)
	}
	// [] clears it.
	a, err = st.Change(bg, id, c.Token, alias.Change{AllowFrom: &[]string{}}, now)
	if err != nil || len(a.AllowFrom) != 0 {
		t.Fatalf("clear allow-from: %+v %v", a, err)
	}

	// Wrong token, unknown id, malformed id: not found.
	for _, tc := range []struct{ id, token string }{{id, c.Token + "x"}, {id, ""}, {"zzzzzzzz", c.Token}, {"no/such", c.Token}} {
		if _, err := st.Change(bg, tc.id, tc.token, alias.Change{MaxUsage: ptr(5)}, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Change(%q, %q): %v, want not found", tc.id, tc.token, err)
		}
	}
	// The operator needs no token.
	if a, err := st.ChangeID(bg, id, alias.Change{MaxUsage: ptr(9)}, now); err != nil || a.MaxUsage != 9 {
		t.Fatalf("ChangeID: %+v %v", a, err)
	}
	// Expired and revoked: not found.
	if _, err := st.Change(bg, id, c.Token, alias.Change{MaxUsage: ptr(5)}, exp); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired: %v", err)
	}
	if err := st.Revoke(bg, id, c.Token, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Change(bg, id, c.Token, alias.Change{MaxUsage: ptr(5)}, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoked: %v", err)
	}
}

func testRevive(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	const target = "revive@example.com"
	c := createSpec(t, st, alias.Spec{Target: target, MaxUsage: 1})
	id := c.Alias.ID
	deliverFrom(t, st, id)
	if n, err := st.LiveForTarget(bg, target, now); err != nil || n != 0 {
		t.Fatalf("used up: live for target %d %v", n, err)
	}
	if _, err := st.Reserve(bg, id, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("used up: reserve %v", err)
	}
	a, err := st.Change(bg, id, c.Token, alias.Change{MaxUsage: ptr(3)}, now)
	if err != nil || a.UsedUp() || a.Used != 1 {
		t.Fatalf("revive: %+v %v", a, err)
	}
	if n, err := st.LiveForTarget(bg, target, now); err != nil || n != 1 {
		t.Fatalf("revived: live for target %d %v", n, err)
	}
	// The per-target limit counts it again.
	_, err = st.Create(bg, alias.Spec{Target: target, Expires: now.Add(time.Hour), MaxLive: 1}, now)
	if !errors.Is(err, store.ErrTargetFull) {
		t.Fatalf("create over MaxLive with a revived alias: %v", err)
	}
	deliverFrom(t, st, id)
	deliverFrom(t, st, id)
	if _, err := st.Reserve(bg, id, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("used up again: reserve %v", err)
	}
	if n, err := st.LiveForTarget(bg, target, now); err != nil || n != 0 {
		t.Fatalf("used up again: live for target %d, %v", n, err)
	}
	// A live alias changed down to exactly its uses is used up, and leaves.
	c2 := createSpec(t, st, alias.Spec{Target: target, MaxUsage: 5})
	deliverFrom(t, st, c2.Alias.ID)
	if a, err := st.Change(bg, c2.Alias.ID, c2.Token, alias.Change{MaxUsage: ptr(1)}, now); err != nil || !a.UsedUp() {
		t.Fatalf("change down to used: %+v %v", a, err)
	}
	if n, err := st.LiveForTarget(bg, target, now); err != nil || n != 0 {
		t.Fatalf("changed down: live for target %d, %v", n, err)
	}
}

// A max-usage set on an alias that had none, while messages reserved
// without a limit are under way (such a reservation holds nothing to
// count), still bounds what is delivered: a commit past the new limit
// fails, and the message is not finished.
func testLimitSetInFlight(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	c := createSpec(t, st, alias.Spec{})
	id := c.Alias.ID
	var rs []*store.Reservation
	for range 3 {
		r, err := st.Reserve(bg, id, now)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if _, err := st.Change(bg, id, c.Token, alias.Change{MaxUsage: ptr(1)}, now); err != nil {
		t.Fatal(err)
	}
	committed := 0
	for _, r := range rs {
		if err := r.Commit(bg, now); err == nil {
			committed++
		} else if err := r.Refund(bg, now); err != nil {
			t.Fatalf("refund after a refused commit: %v", err)
		}
	}
	a, err := st.Held(bg, id, now)
	if err != nil {
		t.Fatal(err)
	}
	if committed != 1 || a.Used != 1 || a.Pending != 0 {
		t.Fatalf("max-usage 1 set with 3 unlimited messages in flight: %d commits, used %d, pending %d; want 1, 1, 0", committed, a.Used, a.Pending)
	}
}

func testChangeExpiry(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	c := createSpec(t, st, alias.Spec{Expires: now.Add(time.Hour)})
	later := now.Add(48 * time.Hour)
	if _, err := st.Change(bg, c.Alias.ID, c.Token, alias.Change{Expires: &later}, now); err != nil {
		t.Fatal(err)
	}
	// Past the old expiry the sweeper leaves it, and it relays.
	at := now.Add(2 * time.Hour)
	if _, err := st.Sweep(bg, at, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(bg, c.Alias.ID, at); err != nil {
		t.Fatalf("after the old expiry: %v", err)
	}
	// Shortened: gone at the new expiry, and swept then.
	sooner := now.Add(3 * time.Hour)
	if _, err := st.Change(bg, c.Alias.ID, c.Token, alias.Change{Expires: &sooner}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(bg, c.Alias.ID, sooner); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("at the new expiry: %v", err)
	}
	if n, err := st.Sweep(bg, sooner, 100); err != nil || n != 1 {
		t.Fatalf("sweep at the new expiry: %d %v", n, err)
	}
}

func testAllowFrom(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	c := createSpec(t, st, alias.Spec{MaxUsage: 10, AllowFrom: []string{"shop.example", "friend@mail.example"}})
	id := c.Alias.ID
	for _, tc := range []struct {
		sender string
		ok     bool
	}{
		{"orders@shop.example", true},
		{"news@eu.shop.example", true}, // subdomain
		{"ORDERS@Shop.Example", true},  // case
		{"friend@mail.example", true},
		{"Friend@MAIL.example", true},
		{"other@mail.example", false}, // only that address of the domain
		{"x@evilshop.example", false}, // not a subdomain
		{"x@shop.example.evil", false},
		{"", false}, // the null sender: backscatter
	} {
		r, err := st.Reserve(bg, id, now, store.From(tc.sender))
		if tc.ok {
			if err != nil {
				t.Errorf("sender %q: %v", tc.sender, err)
				continue
			}
			if err := r.Refund(bg, now); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !errors.Is(err, store.ErrSenderNotAllowed) {
			t.Errorf("sender %q: %v, want ErrSenderNotAllowed", tc.sender, err)
		}
	}
	a, err := st.Held(bg, id, now)
	if err != nil {
		t.Fatal(err)
	}
	if a.Refused != 4 || a.Pending != 0 || a.Used != 0 {
		t.Errorf("after the refusals: refused %d, pending %d, used %d; want 4, 0, 0", a.Refused, a.Pending, a.Used)
	}
	// Without a sender named, allow-from does not apply.
	deliverFrom(t, st, id)

	// A dead alias stays ErrNotFound whatever the sender.
	if err := st.Revoke(bg, id, c.Token, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reserve(bg, id, now, store.From("x@evil.example")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoked: %v", err)
	}
}

func testLockSender(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	// The null sender never locks.
	c := createSpec(t, st, alias.Spec{LockSender: true})
	id := c.Alias.ID
	deliverFrom(t, st, id, store.From(""))
	if a, _ := st.Held(bg, id, now); len(a.AllowFrom) != 0 || !a.LockSender {
		t.Fatalf("after a bounce: %+v", a)
	}
	// A refunded reservation does not lock.
	r, err := st.Reserve(bg, id, now, store.From("x@refunded.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	// Two first messages under way at once: the one committed first
	// locks, the other is refused at its commit.
	ra, err := st.Reserve(bg, id, now, store.From("a@First.example"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := st.Reserve(bg, id, now, store.From("b@second.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ra.Commit(bg, now); err != nil {
		t.Fatal(err)
	}
	if err := rb.Commit(bg, now); !errors.Is(err, store.ErrSenderNotAllowed) {
		t.Fatalf("second first message: %v, want ErrSenderNotAllowed", err)
	}
	if err := rb.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	a, err := st.Held(bg, id, now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.AllowFrom, []string{"first.example"}) || a.Used != 2 || a.Pending != 0 {
		t.Fatalf("locked: %+v", a)
	}
	if _, err := st.Reserve(bg, id, now, store.From("b@second.example")); !errors.Is(err, store.ErrSenderNotAllowed) {
		t.Fatalf("after the lock: %v", err)
	}
	deliverFrom(t, st, id, store.From("other@sub.first.example"))

	// An allow-from given at creation is not replaced.
	c2 := createSpec(t, st, alias.Spec{LockSender: true, AllowFrom: []string{"given.example"}})
	deliverFrom(t, st, c2.Alias.ID, store.From("x@given.example"))
	if a, _ := st.Held(bg, c2.Alias.ID, now); !slices.Equal(a.AllowFrom, []string{"given.example"}) {
		t.Fatalf("given allow-from: %+v", a)
	}
	// Many racing first messages of an alias without a limit: one domain wins.
	c3 := createSpec(t, st, alias.Spec{LockSender: true})
	res := make([]*store.Reservation, 8)
	for i := range res {
		if res[i], err = st.Reserve(bg, c3.Alias.ID, now, store.From("u@d"+string(rune('a'+i))+".example")); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, len(res))
	for _, r := range res {
		go func() { errs <- r.Commit(bg, now) }()
	}
	won := 0
	for range res {
		err := <-errs
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrSenderNotAllowed):
			t.Error(err)
		}
	}
	if a, _ := st.Held(bg, c3.Alias.ID, now); won != 1 || len(a.AllowFrom) != 1 || a.Used != 1 {
		t.Fatalf("racing first messages: %d won, %+v", won, a)
	}
}

// A message refused by the smarthost after its commit was not delivered,
// so it locks nothing (DESIGN: the first message delivered locks): its
// refund undoes the lock its commit set, unless a message delivered since
// under the lock holds it, or allow-from was set since (by a PATCH, even
// to the same list, or by another lock).
func testLockSenderRefunded(t *testing.T, open Open) {
	st, _ := open(t, Options{})
	allowFrom := func(id string) []string {
		t.Helper()
		a, err := st.Held(bg, id, now)
		if err != nil {
			t.Fatal(err)
		}
		return a.AllowFrom
	}
	commit := func(id, sender string) *store.Reservation {
		t.Helper()
		r, err := st.Reserve(bg, id, now, store.From(sender))
		if err != nil {
			t.Fatalf("reserve %s from %s: %v", id, sender, err)
		}
		if err := r.Commit(bg, now); err != nil {
			t.Fatalf("commit %s from %s: %v", id, sender, err)
		}
		return r
	}
	for _, sp := range []alias.Spec{{LockSender: true, MaxUsage: 5}, {LockSender: true}} {
		c := createSpec(t, st, sp)
		id := c.Alias.ID
		r := commit(id, "a@refused.example")
		if got := allowFrom(id); !slices.Equal(got, []string{"refused.example"}) {
			t.Fatalf("max-usage %d, committed: allow-from %q", sp.MaxUsage, got)
		}
		if err := r.Refund(bg, now); err != nil {
			t.Fatal(err)
		}
		a, err := st.Held(bg, id, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.AllowFrom) != 0 || !a.LockSender || a.Used != 0 || a.Pending != 0 {
			t.Fatalf("max-usage %d, refunded after the commit: allow-from %q, used %d, pending %d; want none, 0, 0", sp.MaxUsage, a.AllowFrom, a.Used, a.Pending)
		}
		// The next message delivered locks instead.
		deliverFrom(t, st, id, store.From("b@Delivered.example"))
		if got := allowFrom(id); !slices.Equal(got, []string{"delivered.example"}) {
			t.Fatalf("max-usage %d, next message: allow-from %q, want [delivered.example]", sp.MaxUsage, got)
		}
	}

	// Changed by a PATCH between the commit and the refund: kept.
	c := createSpec(t, st, alias.Spec{LockSender: true, MaxUsage: 5})
	id := c.Alias.ID
	r := commit(id, "a@refused.example")
	patched := []string{"patched.example"}
	if _, err := st.Change(bg, id, c.Token, alias.Change{AllowFrom: &patched}, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	if got := allowFrom(id); !slices.Equal(got, patched) {
		t.Errorf("patched, then refunded: allow-from %q, want %q", got, patched)
	}
	// Set by a PATCH to the very list the lock set: the explicit list
	// is no lock, and stays.
	c = createSpec(t, st, alias.Spec{LockSender: true, MaxUsage: 5})
	r = commit(c.Alias.ID, "a@same.example")
	same := []string{"same.example"}
	if _, err := st.Change(bg, c.Alias.ID, c.Token, alias.Change{AllowFrom: &same}, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	if got := allowFrom(c.Alias.ID); !slices.Equal(got, same) {
		t.Errorf("patched to the lock's own list, then refunded: allow-from %q, want %q", got, same)
	}
	// A second message from the locked domain, committed before the
	// first was refused, holds the lock: it stays until that one is
	// refused too, and then the next message locks.
	for _, sp := range []alias.Spec{{LockSender: true, MaxUsage: 5}, {LockSender: true}} {
		c := createSpec(t, st, sp)
		id := c.Alias.ID
		first, second := commit(id, "a@first.example"), commit(id, "b@mail.first.example")
		if err := first.Refund(bg, now); err != nil {
			t.Fatal(err)
		}
		if got := allowFrom(id); !slices.Equal(got, []string{"first.example"}) {
			t.Errorf("max-usage %d, the first of two refunded: allow-from %q, want [first.example]", sp.MaxUsage, got)
		}
		if err := second.Refund(bg, now); err != nil {
			t.Fatal(err)
		}
		if got := allowFrom(id); len(got) != 0 {
			t.Errorf("max-usage %d, both refunded: allow-from %q, want none", sp.MaxUsage, got)
		}
		deliverFrom(t, st, id, store.From("c@third.example"))
		if got := allowFrom(id); !slices.Equal(got, []string{"third.example"}) {
			t.Errorf("max-usage %d, after both refunded the next message: allow-from %q, want [third.example]", sp.MaxUsage, got)
		}
	}
	// Cleared by a PATCH and locked again by another message: the
	// refund of the first lock's message leaves the second lock.
	c = createSpec(t, st, alias.Spec{LockSender: true, MaxUsage: 5})
	id = c.Alias.ID
	r = commit(id, "a@refused.example")
	if _, err := st.Change(bg, id, c.Token, alias.Change{AllowFrom: &[]string{}}, now); err != nil {
		t.Fatal(err)
	}
	deliverFrom(t, st, id, store.From("b@second.example"))
	if err := r.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	if got := allowFrom(id); !slices.Equal(got, []string{"second.example"}) {
		t.Errorf("relocked, then refunded: allow-from %q, want [second.example]", got)
	}
	// A commit that locked nothing unlocks nothing: the allow-from given
	// at creation, and a lock set by another message, stay.
	c = createSpec(t, st, alias.Spec{LockSender: true, MaxUsage: 5, AllowFrom: []string{"given.example"}})
	r = commit(c.Alias.ID, "a@given.example")
	if err := r.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	if got := allowFrom(c.Alias.ID); !slices.Equal(got, []string{"given.example"}) {
		t.Errorf("given at creation, refunded: allow-from %q", got)
	}
	c = createSpec(t, st, alias.Spec{LockSender: true, MaxUsage: 5})
	deliverFrom(t, st, c.Alias.ID, store.From("a@first.example"))
	r = commit(c.Alias.ID, "b@sub.first.example")
	if err := r.Refund(bg, now); err != nil {
		t.Fatal(err)
	}
	if got := allowFrom(c.Alias.ID); !slices.Equal(got, []string{"first.example"}) {
		t.Errorf("locked by an earlier message, refunded: allow-from %q", got)
	}
}

// The revoke-link key is made once per store and kept in it: the next
// owner (a restart, another host) signs with the same key.
func testLinkKey(t *testing.T, open Open) {
	st, reopen := open(t, Options{})
	k := slices.Clone(st.LinkKey())
	if len(k) != 32 || slices.Equal(k, make([]byte, 32)) {
		t.Fatalf("link key %x", k)
	}
	if other, _ := open(t, Options{}); slices.Equal(other.LinkKey(), k) {
		t.Fatal("two stores share a link key")
	}
	if got := reopen().LinkKey(); !slices.Equal(got, k) {
		t.Fatalf("link key %x, after reopening %x", k, got)
	}
}
