package smtpd

import (
	"sync"
	"time"
)

// maxTracked bounds each windowCounts map: with about 100 bytes an entry,
// a flood from many addresses costs a few MiB at most. When it is full,
// expired entries are swept and, if that does not free a sixteenth of
// it, arbitrary idle ones are forgotten until it does, so that a full map
// costs one pass per maxTracked/16 new keys, not one per key. The limits
// are there to slow abuse down; an attacker with that many addresses is
// beyond them anyway.
const maxTracked = 65536

// windowCounts counts events per key in fixed windows: a key's window
// opens at its first event and lasts window; the count starts again in
// the next one. Time comes from the caller (the server's injected clock).
// A limit of 0 turns it off: every method then does nothing.
type windowCounts[K comparable] struct {
	window time.Duration
	limit  int

	mu    sync.Mutex
	m     map[K]*windowEntry
	swept time.Time
}

type windowEntry struct {
	start   time.Time // when the current window opened
	n       int       // events in the current window
	pending int       // taken but not yet settled
	until   time.Time // refused until then
}

func newWindowCounts[K comparable](window time.Duration, limit int) *windowCounts[K] {
	return &windowCounts[K]{window: window, limit: limit, m: make(map[K]*windowEntry)}
}

func (w *windowCounts[K]) off() bool { return w.limit <= 0 }

// take reserves one event for k if the window has room for it, counting
// events still pending; settle must follow.
func (w *windowCounts[K]) take(k K, now time.Time) bool {
	if w.off() {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.entry(k, now)
	if e.n+e.pending >= w.limit {
		return false
	}
	e.pending++
	return true
}

// settle ends a take: counted if happened, given back otherwise.
func (w *windowCounts[K]) settle(k K, happened bool) {
	if w.off() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.m[k]
	if e == nil { // forgotten under pressure; nothing to settle
		return
	}
	if e.pending > 0 {
		e.pending--
	}
	if happened {
		e.n++
	}
}

// hit counts an event for k and reports whether it went over the limit;
// if so, k is blocked until a window from now.
func (w *windowCounts[K]) hit(k K, now time.Time) (over bool) {
	if w.off() {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.entry(k, now)
	e.n++
	if e.n > w.limit {
		e.until = now.Add(w.window)
		return true
	}
	return false
}

// blocked reports whether k went over the limit less than a window ago.
func (w *windowCounts[K]) blocked(k K, now time.Time) bool {
	if w.off() {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.m[k]
	return e != nil && now.Before(e.until)
}

// entry returns k's entry with its window current, making room for it if
// the map is full.
func (w *windowCounts[K]) entry(k K, now time.Time) *windowEntry {
	if now.Sub(w.swept) >= w.window {
		w.sweep(now)
	}
	e := w.m[k]
	if e == nil {
		if len(w.m) >= maxTracked {
			w.sweep(now)
			w.evict(maxTracked - maxTracked/16)
		}
		e = &windowEntry{start: now}
		w.m[k] = e
	}
	if !now.Before(e.start.Add(w.window)) {
		e.start, e.n = now, 0
	}
	return e
}

// sweep forgets every entry that no longer says anything.
func (w *windowCounts[K]) sweep(now time.Time) {
	w.swept = now
	for k, e := range w.m {
		if e.pending == 0 && !now.Before(e.start.Add(w.window)) && !now.Before(e.until) {
			delete(w.m, k)
		}
	}
}

// evict forgets idle entries until at most keep are left.
func (w *windowCounts[K]) evict(keep int) {
	for k, e := range w.m {
		if len(w.m) <= keep {
			return
		}
		if e.pending == 0 {
			delete(w.m, k)
		}
	}
}
