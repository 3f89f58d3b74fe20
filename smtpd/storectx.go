package smtpd

import (
	"context"
	"sync"
	"time"
)

// callCtx is context.WithDeadline(parent, deadline) for one store call,
// without its cost where nobody waits: bbolt only asks Err before it
// queues a write, and WithDeadline's timer and its entry in the parent
// (every session's calls share one parent, the server's dialCtx) were
// a few per cent of a relayed message's CPU. Err answers from the clock
// and the parent until someone asks for Done or a Value (etcd waits on
// Done); from then on every method is that of a WithDeadline context
// made at that moment, with the same deadline, so the two cannot
// disagree: an Err already reported is what it reports too.
type callCtx struct {
	parent   context.Context
	deadline time.Time

	mu     sync.Mutex
	real   context.Context    // WithDeadline(parent, deadline), once armed
	cancel context.CancelFunc // real's
	err    error              // before real: set once the call is over (sticky)
}

func newCallCtx(parent context.Context, deadline time.Time) *callCtx {
	return &callCtx{parent: parent, deadline: deadline}
}

// Deadline is WithDeadline's: the earlier of the parent's and ours.
func (c *callCtx) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real != nil {
		return c.real.Err()
	}
	if c.err == nil {
		if err := c.parent.Err(); err != nil {
			c.err = err
		} else if !time.Now().Before(c.deadline) {
			c.err = context.DeadlineExceeded
		}
	}
	return c.err
}

func (c *callCtx) Done() <-chan struct{} { return c.armed().Done() }

// Value arms too: the context package finds a parent it can register
// with through Value, and it must find real's, whose Done is ours.
func (c *callCtx) Value(key any) any { return c.armed().Value(key) }

// armed makes real if it is not made yet. A call already over before
// that gives a real that is over for the same reason: the deadline in
// the past, the parent's cancellation, or stop (cancelled at once).
func (c *callCtx) armed() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real == nil {
		c.real, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.err == context.Canceled {
			c.cancel()
		}
	}
	return c.real
}

// stop ends the call: its CancelFunc.
func (c *callCtx) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real != nil {
		c.cancel()
		return
	}
	if c.err == nil {
		c.err = context.Canceled
	}
}
