package httpd

import (
	"slices"
	"sync"
	"time"
)

// quota counts events per key in fixed windows (per target per day, say).
// It is in memory: a restart forgets it, which only ever errs towards
// letting someone through once more.
type quota struct {
	limit  int
	window time.Duration
	max    int // keys kept before expired windows are dropped

	mu   sync.Mutex
	seen map[string]*quotaWindow
}

type quotaWindow struct {
	start time.Time
	n     int
}

func newQuota(limit int, window time.Duration) *quota {
	return &quota{limit: limit, window: window, max: 100_000, seen: map[string]*quotaWindow{}}
}

// take counts one event for key at now and reports whether it is within
// the limit; an event over the limit is not counted. A nil quota or a
// limit of 0 allows everything.
func (q *quota) take(key string, now time.Time) bool {
	if q == nil || q.limit <= 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.seen[key]
	if w == nil || now.Sub(w.start) >= q.window {
		if len(q.seen) >= q.max {
			q.purge(now)
		}
		w = &quotaWindow{start: now}
		q.seen[key] = w
	}
	if w.n >= q.limit {
		return false
	}
	w.n++
	return true
}

// undo gives back an event take counted for key, when what it counted
// did not happen after all.
func (q *quota) undo(key string) {
	if q == nil || q.limit <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.seen[key]; w != nil && w.n > 0 {
		w.n--
	}
}

// purge drops expired windows; if every window is still live, it drops
// the oldest tenth. Clearing them all would let a flood of new keys reset
// everyone's count.
func (q *quota) purge(now time.Time) {
	for k, w := range q.seen {
		if now.Sub(w.start) >= q.window {
			delete(q.seen, k)
		}
	}
	if len(q.seen) < q.max {
		return
	}
	keys := make([]string, 0, len(q.seen))
	for k := range q.seen {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return q.seen[a].start.Compare(q.seen[b].start) })
	for _, k := range keys[:max(len(keys)/10, 1)] {
		delete(q.seen, k)
	}
}
