package alias

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckAllowFrom(t *testing.T) {
	ok := []struct {
		in   []string
		want []string
	}{
		{[]string{}, []string{}},
		{[]string{"Shop.Example"}, []string{"shop.example"}},
		{[]string{" friend@Mail.Example ", "mail.example", "MAIL.example"}, []string{"friend@mail.example", "mail.example"}},
		{[]string{"a.b.c.example", "x+tag@sub.example"}, []string{"a.b.c.example", "x+tag@sub.example"}},
	}
	for _, tc := range ok {
		got, err := CheckAllowFrom(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("CheckAllowFrom(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	eleven := make([]string, 11)
	for i := range eleven {
		eleven[i] = string(rune('a'+i)) + ".example"
	}
	for _, in := range [][]string{
		{"localhost"}, {""}, {"-bad.example"}, {"exa mple.com"}, {"x@"}, {"@example.com"},
		{"a@b@c"}, {"user@localhost"}, {"[127.0.0.1]"}, {"good.example", "bad..example"},
		{"ünï.example"}, {"x\r\n.example"}, eleven,
	} {
		_, err := CheckAllowFrom(in)
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "allow-from" {
			t.Errorf("CheckAllowFrom(%q) = %v, want an allow-from error", in, err)
			continue
		}
		if len(in) <= MaxAllowFrom && !strings.Contains(inv.Reason, "\"") {
			t.Errorf("CheckAllowFrom(%q): %q does not name the entry", in, inv.Reason)
		}
	}
}

func TestSenderAllowed(t *testing.T) {
	a := Alias{AllowFrom: []string{"shop.example", "friend@mail.example"}}
	for sender, want := range map[string]bool{
		"x@shop.example": true, "x@EU.Shop.Example": true, "Friend@mail.EXAMPLE": true,
		"other@mail.example": false, "x@myshop.example": false, "x@shop.example.org": false,
		"": false, "noat": false,
	} {
		if got := a.SenderAllowed(sender); got != want {
			t.Errorf("SenderAllowed(%q) = %v", sender, got)
		}
	}
	if open := (Alias{}); !open.SenderAllowed("") || !open.SenderAllowed("x@any.example") {
		t.Error("without allow-from every sender, the null one included, is allowed")
	}
}

func TestLockTo(t *testing.T) {
	a := Alias{LockSender: true}
	if a.LockTo("") || a.AllowFrom != nil {
		t.Fatal("the null sender locked")
	}
	if !a.LockTo("X@Shop.Example") || !slices.Equal(a.AllowFrom, []string{"shop.example"}) {
		t.Fatalf("lock: %q", a.AllowFrom)
	}
	if a.LockTo("y@other.example") || !slices.Equal(a.AllowFrom, []string{"shop.example"}) {
		t.Fatalf("locked twice: %q", a.AllowFrom)
	}
	if b := (Alias{}); b.LockTo("x@shop.example") {
		t.Fatal("locked without lock-sender")
	}
}

// A lock stays while a message counted under it does; one of another
// generation, or a list set by a change, owes a refund nothing.
func TestReleaseLock(t *testing.T) {
	a := Alias{LockSender: true}
	a.LockTo("x@shop.example")
	first := a.LockGen
	if gen := a.HoldLock(); gen != first || a.LockHeld != 2 {
		t.Fatalf("hold: generation %d (lock %d), held %d", gen, first, a.LockHeld)
	}
	if !a.ReleaseLock(first) || !slices.Equal(a.AllowFrom, []string{"shop.example"}) {
		t.Fatalf("released one of two holds: %q", a.AllowFrom)
	}
	if !a.ReleaseLock(first) || a.AllowFrom != nil || a.ReleaseLock(first) {
		t.Fatalf("released the last hold: %q, held %d", a.AllowFrom, a.LockHeld)
	}
	a.LockTo("y@other.example")
	if a.ReleaseLock(first) || a.LockGen == first {
		t.Fatal("a refund under the first lock undid the second")
	}
	if err := a.Apply(Change{AllowFrom: &[]string{"other.example"}}); err != nil {
		t.Fatal(err)
	}
	if a.HoldLock() != 0 || a.ReleaseLock(a.LockGen) || !slices.Equal(a.AllowFrom, []string{"other.example"}) {
		t.Fatalf("a list set by a change is no lock: %q, held %d", a.AllowFrom, a.LockHeld)
	}
	if b := (Alias{AllowFrom: []string{"given.example"}, LockSender: true}); b.HoldLock() != 0 {
		t.Fatal("a list given at creation is held as a lock")
	}
}

func TestCheckChangeAndApply(t *testing.T) {
	l := Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100}
	now := time.Date(2030, 1, 1, 0, 0, 0, 500, time.UTC)
	n := func(v int) *int { return &v }
	for _, r := range []ChangeRequest{{}, {Days: n(0)}, {Days: n(61)}, {MaxUsage: n(0)}, {MaxUsage: n(101)}, {AllowFrom: &[]string{"nodot"}}} {
		if _, err := l.CheckChange(r, now); err == nil {
			t.Errorf("CheckChange(%+v) accepted", r)
		}
	}
	c, err := l.CheckChange(ChangeRequest{Days: n(60), MaxUsage: n(100), AllowFrom: &[]string{"A.example"}}, now)
	if err != nil || !c.Expires.Equal(now.Add(60*24*time.Hour).Truncate(time.Second)) || *c.MaxUsage != 100 || !slices.Equal(*c.AllowFrom, []string{"a.example"}) {
		t.Fatalf("CheckChange: %+v %v", c, err)
	}
	a := Alias{MaxUsage: 3, Used: 2, Pending: 1, AllowFrom: []string{"x.example"}}
	var inv *InvalidError
	if err := a.Apply(Change{MaxUsage: n(2)}); !errors.As(err, &inv) || !strings.Contains(inv.Reason, "at least 3") || a.MaxUsage != 3 {
		t.Fatalf("below used+pending: %v, %+v", err, a)
	}
	if err := a.Apply(Change{MaxUsage: n(3), AllowFrom: &[]string{}}); err != nil || a.AllowFrom != nil {
		t.Fatalf("apply: %v %+v", err, a)
	}
}

func TestRevokeMAC(t *testing.T) {
	k1, k2 := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	m := RevokeMAC(k1, "abc123")
	if len(m) < 20 || strings.ContainsAny(m, "/+=") {
		t.Fatalf("mac %q", m)
	}
	if !RevokeMACValid(k1, "abc123", m) || !RevokeMACValid(k1, "ABC123", m) {
		t.Error("its own mac refused")
	}
	if RevokeMACValid(k1, "abc124", m) || RevokeMACValid(k2, "abc123", m) || RevokeMACValid(nil, "abc123", m) || RevokeMACValid(k1, "abc123", m[:len(m)-1]+"A") && m[len(m)-1] != 'A' {
		t.Error("a mac valid for another id or key")
	}
}
