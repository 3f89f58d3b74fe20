package smtpd

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
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
	cc := &clientConn{
		Conn:      c,
		srv:       l.srv,
		idleLimit: l.srv.cfg.ReadTimeout,
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

// clientConn is a client connection as go-smtp sees it. It does what
// go-smtp cannot do by itself, each job in a file of its own:
//
//   - admission (admission.go): refusing a client at connect, in place of
//     the banner;
//   - reply batching (batch.go): replies held until go-smtp next reads,
//     then written at once;
//   - deadlines during DATA (here): go-smtp sets one read deadline when it
//     reads the DATA command and none after, so a client could trickle a
//     message for as long as that one deadline allows per command. While a
//     message is read, every Read gets its own deadline: ReadTimeout from
//     now, but never past the end of the DATA phase (DataTimeout). BDAT
//     chunks are read by go-smtp after a command line, so each chunk is
//     bounded by ReadTimeout instead;
//   - closing after a reply (here): go-smtp writes the reply a Session
//     method returns but has no way to then hang up, as 421 requires;
//   - the smuggling scan (scan.go): a look at the raw bytes for what
//     go-smtp's dataReader hides.
type clientConn struct {
	net.Conn
	srv       *Server
	idleLimit time.Duration

	// admission
	client    netip.Prefix // the unit of per-client limits
	counted   bool         // in srv.open and srv.perClient; guarded by srv.mu
	verdict   *refusal     // decided at accept: said instead of the banner
	admitOnce sync.Once

	replyBatch
	scanner

	// the DATA phase
	mu         sync.Mutex
	inData     bool
	dataUntil  time.Time
	closeAfter bool
	// readFailed: a read from the client failed (disconnect, reset,
	// timeout); whatever go-smtp makes of it, no message in progress is
	// complete.
	readFailed atomic.Bool
	// relaying: a message is being read and relayed (from beginData to
	// endData); a failed read then says so in our words (see Read).
	relaying atomic.Bool

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

// forceClose ends the connection and any upstream connection of its
// session, whatever they are doing.
func (c *clientConn) forceClose() {
	c.Close()
	if s := c.sess.Load(); s != nil {
		s.ups.abortAll()
	}
}
