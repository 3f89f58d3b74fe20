package smtpd

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener hands go-smtp clientConns instead of bare connections.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &clientConn{Conn: c, srv: l.srv, idleLimit: l.srv.cfg.ReadTimeout, scan: scanLineStart}
	if !l.srv.track(cc) {
		cc.goodbye()
	}
	return cc, nil
}

// clientConn is a client connection as go-smtp sees it. It adds three
// things go-smtp cannot do by itself:
//
//   - Deadlines during DATA: go-smtp sets one read deadline when it reads
//     the DATA command and none after, so a client could trickle a message
//     for as long as that one deadline allows per command. While a message
//     is read, every Read gets its own deadline: ReadTimeout from now, but
//     never past the end of the DATA phase (DataTimeout). BDAT chunks are
//     read by go-smtp after a command line, so each chunk is bounded by
//     ReadTimeout instead.
//   - A look at the raw bytes: go-smtp's dataReader silently drops the CR of
//     "<CRLF>.<CR>x", so that bare CR never reaches Session.Data. The scan
//     here notices it (rfc 5321:2.3.8; the 2023 SMTP smuggling attacks).
//   - Closing after a reply: go-smtp writes the reply a Session method
//     returns but has no way to then hang up, as 421 requires.
type clientConn struct {
	net.Conn
	srv       *Server
	idleLimit time.Duration

	mu         sync.Mutex
	inData     bool
	dataUntil  time.Time
	closeAfter bool

	wmu sync.Mutex // one reply at a time, also for goodbye from Shutdown

	scan     byte        // scanner state; only the reading goroutine touches it
	smuggled atomic.Bool // saw <CRLF>.<CR> followed by something other than <LF>

	sess      atomic.Pointer[session]
	closeOnce sync.Once
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	inData, until := c.inData, c.dataUntil
	c.mu.Unlock()
	if inData {
		d := time.Now().Add(c.idleLimit)
		if until.Before(d) {
			d = until
		}
		c.Conn.SetReadDeadline(d)
	}
	n, err := c.Conn.Read(p)
	c.rawScan(p[:n])
	return n, err
}

// SetReadDeadline is only called by go-smtp before it reads a command line,
// which means any DATA phase is over.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.inData = false
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// beginData starts the per-read deadlines of a DATA phase that must end by
// until.
func (c *clientConn) beginData(until time.Time) {
	c.mu.Lock()
	c.inData = true
	c.dataUntil = until
	c.mu.Unlock()
}

func (c *clientConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	n, err := c.Conn.Write(p)
	c.wmu.Unlock()
	c.mu.Lock()
	closing := c.closeAfter
	c.mu.Unlock()
	if closing {
		c.Close()
	}
	return n, err
}

// closeAfterReply makes the next reply the last one. If a message is still
// being read, the rest of it is not waited for: go-smtp drains it before
// replying, and there is no point.
func (c *clientConn) closeAfterReply() {
	c.mu.Lock()
	c.closeAfter = true
	if c.inData {
		c.dataUntil = time.Now()
	}
	c.mu.Unlock()
}

func (c *clientConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.srv.untrack(c)
	})
	return err
}

// idle reports whether the connection is between transactions.
func (c *clientConn) idle() bool {
	s := c.sess.Load()
	return s == nil || s.idle()
}

// goodbye tells an idle client the service is going away and hangs up
// (rfc 5321:3.8).
func (c *clientConn) goodbye() {
	c.wmu.Lock()
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.Conn.Write([]byte("421 4.3.2 " + c.srv.cfg.Hostname + " Service shutting down\r\n"))
	c.wmu.Unlock()
	c.Close()
}

// forceClose ends the connection and any upstream connection of its
// session, whatever they are doing.
func (c *clientConn) forceClose() {
	c.Close()
	if s := c.sess.Load(); s != nil {
		s.closeUpstreams()
	}
}

// States of rawScan, which mirrors go-smtp's dataReader closely enough to
// find the one sequence it alters: a line starting with ".<CR>" whose CR
// is not followed by LF loses both the dot and the CR.
const (
	scanMid       = iota // inside a line
	scanCR               // after CR
	scanLineStart        // after CRLF
	scanDot              // after CRLF "."
	scanDotCR            // after CRLF "." CR
)

func (c *clientConn) rawScan(p []byte) {
	st := c.scan
	for _, b := range p {
		if st == scanDotCR && b != '\n' {
			c.smuggled.Store(true)
		}
		switch {
		case b == '\r':
			if st == scanDot {
				st = scanDotCR
			} else {
				st = scanCR
			}
		case b == '\n':
			if st == scanCR || st == scanDotCR {
				st = scanLineStart
			} else {
				st = scanMid
			}
		case b == '.' && st == scanLineStart:
			st = scanDot
		default:
			st = scanMid
		}
	}
	c.scan = st
}

// deadlineConn gives every read and write on an upstream connection its
// own deadline. go-smtp's client sets a deadline per command and clears it
// afterwards, which leaves the message body (written between DATA and the
// final dot) with none at all; here the client's own deadline calls are
// ignored and nothing can block longer than the timeout.
type deadlineConn struct {
	net.Conn
	timeout atomic.Int64 // time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
	return c.Conn.Write(p)
}

func (c *deadlineConn) SetDeadline(time.Time) error      { return nil }
func (c *deadlineConn) SetReadDeadline(time.Time) error  { return nil }
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
