package alias

import (
	"testing"
	"time"
)

func TestHourWindow(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	var a Alias
	if n := a.HourTaken(t0); n != 0 {
		t.Fatalf("new alias: %d taken", n)
	}
	a.Pending = 1
	a.CountHour(t0)
	a.CountHour(t0.Add(30 * time.Minute))
	if n := a.HourTaken(t0.Add(59 * time.Minute)); n != 3 {
		t.Fatalf("two delivered, one reserved: %d taken, want 3", n)
	}
	// The window opened at t0 (in whole seconds) and ends an hour later.
	end := t0.Truncate(time.Second).Add(time.Hour)
	if n := a.HourTaken(end); n != 1 {
		t.Fatalf("at the window's end: %d taken, want the reservation only", n)
	}
	// A message committed in the old window and given back after the new
	// one opened takes nothing from the new one.
	a.CountHour(end)
	a.UncountHour(t0.Add(30 * time.Minute))
	if a.HourUsed != 1 {
		t.Fatalf("a give-back from the last window changed this one: %d", a.HourUsed)
	}
	a.UncountHour(end)
	a.UncountHour(end)
	if a.HourUsed != 0 {
		t.Fatalf("given back: %d, want 0, never below", a.HourUsed)
	}
}
