package alias

import "time"

// The messages an alias relays per hour (limits.messages_per_alias_hour)
// are counted in a window that opens with the first message delivered
// after the last window ended and lasts an hour, as the in-memory
// windows of the per-client limits do. The engines keep the window with
// the alias and change it in the transactions that commit and give back
// uses, so the limit holds across restarts and hosts.

// HourTaken is what counts against the hourly limit at now: the messages
// delivered in the window still open at now, and every use reserved (a
// message under way may still be delivered).
func (a *Alias) HourTaken(now time.Time) int {
	n := a.Pending
	if a.hourOpen(now) {
		n += a.HourUsed
	}
	return n
}

// CountHour counts a message delivered at now, opening a new window if
// the last one has ended. The start is kept in whole seconds, as the
// engines store it.
func (a *Alias) CountHour(now time.Time) {
	if !a.hourOpen(now) {
		a.HourStart, a.HourUsed = now.UTC().Truncate(time.Second), 0
	}
	a.HourUsed++
}

// UncountHour takes back a message that CountHour counted at at, if the
// window it was counted in is still the alias's. A later window opened
// after at (a window starts at least an hour after the one before, and
// at fell inside that one), so it owes the message nothing.
func (a *Alias) UncountHour(at time.Time) {
	if a.HourUsed > 0 && !a.HourStart.After(at) {
		a.HourUsed--
	}
}

func (a *Alias) hourOpen(now time.Time) bool {
	return !a.HourStart.IsZero() && now.Before(a.HourStart.Add(time.Hour))
}
