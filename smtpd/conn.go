package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempalias/tempalias/metrics"
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
	cc := &clientConn{
		Conn:      c,
		srv:       l.srv,
		idleLimit: l.srv.cfg.ReadTimeout,
		scan:      scanLineStart,
		client:    clientKey(remoteIP(c.RemoteAddr())),
	}
	switch v := l.srv.track(cc); v {
	case nil:
	case errShuttingDown:
		cc.sayAndClose(errShuttingDown)
	default:
		// Said in place of the banner, from the connection's own
		// goroutine: this loop must not wait on any client.
		cc.verdict = v
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
//   - Admission: go-smtp greets every connection and asks the backend
//     for a session only at EHLO, too late to refuse a client at connect.
//     The banner is the first thing written, so the first Write decides
//     whether the client is welcome (connection limits, blocked client,
//     DNSBL) and says 421 or 554 instead.
//   - Reply batching: go-smtp flushes every reply line by itself (an EHLO
//     answer is one write per extension) and every reply to a pipelined
//     command group separately. Here replies are held until go-smtp next
//     reads from the client, the connection closes or a DATA phase starts,
//     and then go out in one write: what rfc 2920:3.1 allows, and what
//     Postfix's smtpd does. A client waiting for a reply has it as soon as
//     go-smtp waits for the client again.
type clientConn struct {
	net.Conn
	srv       *Server
	idleLimit time.Duration
	client    netip.Prefix // the unit of per-client limits
	counted   bool         // in srv.open and srv.perClient; guarded by srv.mu
	verdict   *refusal     // decided at accept: said instead of the banner
	admitOnce sync.Once

	mu         sync.Mutex
	inData     bool
	dataUntil  time.Time
	closeAfter bool

	wmu writeLock // one reply at a time, also for sayAndClose from Shutdown and timers
	out []byte    // replies held until the next read; guarded by wmu
	// holding: out is not empty. Read checks it without wmu, so that a
	// read with nothing to send takes no lock.
	holding atomic.Bool

	scan     byte        // scanner state; only the reading goroutine touches it
	smuggled atomic.Bool // saw <CRLF>.<CR> followed by something other than <LF>
	// crcr: the scan saw CR CR on this connection. go-smtp's dataReader
	// takes the second CR for the middle of a line, so it misses the end
	// of the data that follows "<CR><CR><LF>.<CR><LF>" and would wait for
	// more until the read timeout, holding the transaction's reservations.
	// A bare CR is refused anyway, so a read during DATA after it fails at
	// once instead of waiting. It stays set: the bytes may have been read
	// (and scanned) in one go with the commands before DATA.
	crcr bool
	// readFailed: a read from the client failed (disconnect, reset,
	// timeout); whatever go-smtp makes of it, no message in progress is
	// complete.
	readFailed atomic.Bool
	// relaying: a message is being read and relayed (from beginData to
	// endData); a failed read then says so in our words (see Read).
	relaying atomic.Bool
	// encrypted: STARTTLS is done and what passes here is ciphertext, which
	// rawScan cannot read. go-smtp reads the plaintext from its *tls.Conn
	// with no hook, so under TLS the one sequence its dataReader alters
	// (<CRLF>.<CR>x loses the CR) goes unnoticed. That is not smuggling:
	// go-smtp does not end the data there, and the upstream writer
	// re-encodes every line. Every other bare CR or LF is still refused,
	// but a CR CR (see crcr) is found only at the end of the message: under
	// TLS a message ending "<CR><CR><LF>.<CR><LF>" waits for ReadTimeout.
	encrypted atomic.Bool
	tlsConn   atomic.Pointer[tls.Conn] // for sayAndClose once TLS is up

	sess      atomic.Pointer[session]
	closeOnce sync.Once
	closed    atomic.Bool
}

func (c *clientConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		c.readFailed.Store(true)
		return 0, c.readError(err)
	}
	c.mu.Lock()
	inData, until := c.inData, c.dataUntil
	c.mu.Unlock()
	if inData && c.crcr {
		c.readFailed.Store(true)
		c.closeAfterReply()
		return 0, errReadBareCR
	}
	if inData {
		d := time.Now().Add(c.idleLimit)
		if until.Before(d) {
			d = until
		}
		c.Conn.SetReadDeadline(d)
	}
	n, err := c.Conn.Read(p)
	if !c.encrypted.Load() {
		c.rawScan(p[:n])
	}
	if err != nil {
		c.readFailed.Store(true)
		err = c.readError(err)
	}
	return n, err
}

// readError is what Read reports for err. While a message is relayed, a
// timeout or a broken connection becomes our reply: go-smtp answers a
// failed BDAT chunk read with the error's own text ("read tcp …: i/o
// timeout") unless it is an *smtp.SMTPError, and the connection is closed
// after it, as the reply says. The end of input and a closed connection
// stay what they are: go-smtp and relay look for them.
func (c *clientConn) readError(err error) error {
	if !c.relaying.Load() || err == io.EOF || errors.Is(err, net.ErrClosed) {
		return err
	}
	c.closeAfterReply()
	if isTimeout(err) {
		return errReadTimeout
	}
	return errReadBroken
}

// startedTLS is called from the first session after STARTTLS, before any
// transaction: the scanner saw the handshake's ciphertext, which means
// nothing, and is of no use from now on.
func (c *clientConn) startedTLS(tc *tls.Conn) {
	if c.encrypted.Swap(true) {
		return
	}
	c.tlsConn.Store(tc)
	c.smuggled.Store(false)
	c.crcr = false
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
// until. The 354 goes out now, not after the smarthost's own 354.
func (c *clientConn) beginData(until time.Time) {
	c.mu.Lock()
	c.inData = true
	c.dataUntil = until
	c.mu.Unlock()
	c.relaying.Store(true)
	c.flush()
}

// endData ends what beginData started, once the message is relayed or
// failed.
func (c *clientConn) endData() {
	c.relaying.Store(false)
}

// maxHeld bounds the replies held for one write; go-smtp reads commands
// through a 4 KiB buffer, so a pipelined group rarely comes near it.
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
		c.closed.Store(true)
		// The last replies (221, 421) are still held: they go first,
		// briefly, as sayAndClose does. A write blocked on a client that does
		// not read is waited for only briefly: closing is what ends it.
		if c.wmu.lockWithin(time.Second) {
			c.flushLocked(time.Second)
			c.wmu.Unlock()
		}
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

// sayAndClose tells the client r, a reply go-smtp knows nothing about
// (the service going away, a transaction over its time), and hangs up
// (rfc 5321:3.8).
func (c *clientConn) sayAndClose(r *refusal) {
	line := r.line(c.srv.cfg.Hostname)
	if tc := c.tlsConn.Load(); tc != nil {
		// Through TLS, whose own lock orders it with go-smtp's replies;
		// its writes come back through Write, which takes wmu.
		tc.SetWriteDeadline(time.Now().Add(time.Second))
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

// dnsblTimeout bounds a blocklist check, should the Blocklist not bound
// it itself.
const dnsblTimeout = 10 * time.Second

// admit runs when go-smtp writes the banner and reports whether the
// client may have it. A refused client gets its reply instead and the
// connection is closed; go-smtp then finds it closed at its first read
// and ends quietly.
func (c *clientConn) admit() bool {
	s := c.srv
	remote := remoteIP(c.RemoteAddr())
	if c.closed.Load() { // turned away at accept: shutting down
		return false
	}
	if c.verdict != nil {
		switch c.verdict {
		case errTooManyConns:
			metrics.ConnsRefused.WithLabelValues("smtp", "total").Inc()
		case errTooManyConnsClient:
			metrics.ConnsRefused.WithLabelValues("smtp", "per-client").Inc()
		}
		s.log.Info("smtp: connection refused", "remote", remote.String(), "code", c.verdict.code, "reason", c.verdict.msg)
		c.rawWrite(c.verdict.line(s.cfg.Hostname))
		c.Close()
		return false
	}
	if s.cfg.DNSBL == nil {
		return true
	}
	ip, ok := netip.AddrFromSlice(remote)
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(s.dialCtx, dnsblTimeout)
	zone, listed := s.cfg.DNSBL.Listed(ctx, ip.Unmap())
	cancel()
	if !listed {
		return true
	}
	s.log.Info("smtp: connection refused", "remote", remote.String(), "code", 554, "dnsbl", zone)
	c.refuseUntilQuit(blockedBy(ip.Unmap(), zone).line(s.cfg.Hostname))
	return false
}

// quitWait bounds how long a client refused with 554 at connect may take
// to say QUIT.
const quitWait = 30 * time.Second

// refuseUntilQuit says line instead of the banner and then, as rfc
// 5321:3.1 asks after a 554 greeting, answers 503 to everything until
// QUIT, within quitWait and a few commands, before closing.
func (c *clientConn) refuseUntilQuit(line string) {
	defer c.Close()
	c.rawWrite(line)
	wait := min(c.idleLimit, quitWait)
	c.Conn.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReaderSize(c.Conn, 512)
	for range 10 {
		cmd, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if bytes.EqualFold(bytes.TrimSpace(cmd), []byte("QUIT")) {
			c.rawWrite("221 2.0.0 Bye\r\n")
			return
		}
		c.rawWrite("503 5.5.1 Bad sequence of commands\r\n")
	}
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
			if st == scanCR || st == scanDotCR {
				c.crcr = true
			}
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
