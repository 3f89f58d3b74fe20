package smtpd

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Reply batching: go-smtp flushes every reply line by itself (an EHLO
// answer is one write per extension) and every reply to a pipelined
// command group separately. clientConn holds replies until go-smtp next
// reads from the client, the connection closes or a DATA phase starts,
// and then writes them at once: what rfc 2920:3.1 allows, and what
// Postfix's smtpd does. A client waiting for a reply has it as soon as
// go-smtp waits for the client again.

// replyBatch is the part of a clientConn that holds replies.
type replyBatch struct {
	wmu writeLock // one reply at a time, also for sayAndClose from Shutdown and timers
	out []byte    // replies held until the next read; guarded by wmu
	// holding: out is not empty. Read checks it without wmu, so that a
	// read with nothing to send takes no lock.
	holding atomic.Bool
}

// maxHeld bounds the replies held for one write; a pipelined group's
// replies rarely come near it.
const maxHeld = 8 << 10

func (c *clientConn) Write(p []byte) (int, error) {
	admitted := true
	c.admitOnce.Do(func() { admitted = c.admit() })
	if !admitted {
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	closing := c.closeAfter
	c.mu.Unlock()
	c.wmu.Lock()
	if c.out == nil {
		// Room for a session's usual replies (the EHLO answer is the
		// longest), so that they do not grow it step by step.
		c.out = make([]byte, 0, 512)
	}
	c.out = append(c.out, p...)
	c.holding.Store(true)
	var err error
	if closing || len(c.out) >= maxHeld {
		err = c.flushLocked(c.srv.cfg.WriteTimeout)
	}
	c.wmu.Unlock()
	if closing {
		c.Close()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetWriteDeadline does nothing: go-smtp sets a deadline before every
// reply, which here only joins the batch; flushLocked sets the one of
// the write that sends the batch (WriteTimeout, the same).
func (c *clientConn) SetWriteDeadline(time.Time) error { return nil }

// flush writes the replies held so far.
func (c *clientConn) flush() error {
	if !c.holding.Load() {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked(c.srv.cfg.WriteTimeout)
}

// flushLocked writes the held replies within timeout; wmu is held.
func (c *clientConn) flushLocked(timeout time.Duration) error {
	if len(c.out) == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Conn.Write(c.out)
	if cap(c.out) > maxHeld {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	c.holding.Store(false)
	return err
}

// sayAndClose tells the client r, a reply go-smtp knows nothing about
// (the service going away, a transaction over its time), and hangs up
// (rfc 5321:3.8).
func (c *clientConn) sayAndClose(r *refusal) {
	line := r.line(c.srv.cfg.Hostname)
	if tc := c.tlsConn.Load(); tc != nil {
		// Through TLS, whose own lock orders it with go-smtp's replies;
		// its writes come back through Write, which takes wmu. The
		// deadline is the connection's own (clientConn ignores one set
		// through TLS): it cuts short a reply blocked on the client.
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		tc.Write([]byte(line))
	} else {
		c.rawWrite(line)
	}
	c.Close()
}

// writeLock is a mutex whose holder may be stuck in a write to a client
// that does not read, so waiting for it can be given up (lockWithin).
type writeLock struct {
	once sync.Once
	ch   chan struct{}
}

func (l *writeLock) init() { l.once.Do(func() { l.ch = make(chan struct{}, 1) }) }

func (l *writeLock) Lock() {
	l.init()
	l.ch <- struct{}{}
}

func (l *writeLock) Unlock() { <-l.ch }

// lockWithin locks unless that takes longer than d, and reports whether
// it did.
func (l *writeLock) lockWithin(d time.Duration) bool {
	l.init()
	select {
	case l.ch <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l.ch <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// rawWrite writes a reply go-smtp knows nothing about, after the ones it
// wrote, within a second; not for long behind a write blocked on a client
// that does not read: such a client gets nothing.
func (c *clientConn) rawWrite(line string) {
	if !c.wmu.lockWithin(time.Second) {
		return
	}
	c.out = append(c.out, line...)
	c.flushLocked(time.Second)
	c.wmu.Unlock()
}
