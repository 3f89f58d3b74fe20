package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/alias"
)

// quitTimeout bounds the polite QUIT to an idle upstream connection; no
// client waits on it.
const quitTimeout = 2 * time.Second

// upstream is one connection to the smarthost, ready for MAIL (greeted,
// TLS and AUTH as configured: that state is the connection's own and
// lasts as long as it does). While a transaction is open on it, it
// belongs to that transaction's delivery alone; between transactions it
// waits in the server's pool.
type upstream struct {
	raw        net.Conn
	dc         *deadlineConn
	c          *smtp.Client
	pipelining bool        // the smarthost offers PIPELINING (rfc 2920)
	expiry     *time.Timer // while pooled: closes it after the idle time
}

// abort drops the connection. This is how a transaction is abandoned: the
// smarthost never sees the final dot, so it cannot deliver a partial
// message (rfc 5321:3.3 and 4.1.1.4: only the dot ends the data).
func (u *upstream) abort() { u.raw.Close() }

// quit ends an idle connection politely.
func (u *upstream) quit() {
	u.dc.timeout.Store(int64(quitTimeout))
	u.c.Quit()
	u.raw.Close()
}

// pool holds the smarthost connections that are idle, shared by every
// client session, so that a session per message (what most sending MTAs
// do) does not pay a dial, a TLS handshake and an EHLO each. Only a
// connection whose last message the smarthost accepted comes back here
// (Commit); any error, a refusal or a message the client cut short
// drops the connection instead. A connection is said RSET before its
// next use (delivery.open), which is also its health check: one the
// smarthost closed, or that fails RSET, is dropped and a fresh one
// dialled before the client is told anything. At most max wait, each
// for at most idleTimeout; Shutdown closes them.
type pool struct {
	srv         *Server
	max         int
	idleTimeout time.Duration

	mu     sync.Mutex
	closed bool
	idle   []*upstream // the most recently used last: taken first, so the others can expire
}

// get hands out an idle connection if there is one (reused), or dials.
func (p *pool) get(ctx context.Context) (u *upstream, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		u = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if u != nil {
		// Taken out under mu: if the timer fired meanwhile, expire finds
		// it gone and leaves it alone.
		u.expiry.Stop()
		return u, true, nil
	}
	u, err = p.srv.dial(ctx)
	return u, false, err
}

// put parks a connection whose message the smarthost accepted, or says
// QUIT on it if the pool is full or closed.
func (p *pool) put(u *upstream) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		go u.quit() // the client's reply does not wait for the smarthost's 221
		return
	}
	p.idle = append(p.idle, u)
	if u.expiry == nil {
		u.expiry = time.AfterFunc(p.idleTimeout, func() { p.expire(u) })
	} else {
		u.expiry.Reset(p.idleTimeout)
	}
	p.mu.Unlock()
}

// expire closes u if it is still idle in the pool.
func (p *pool) expire(u *upstream) {
	p.mu.Lock()
	i := slices.Index(p.idle, u)
	if i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	p.mu.Unlock()
	if i >= 0 {
		u.quit()
	}
}

// len is how many connections are idle.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// close says QUIT on every idle connection and keeps none from now on.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, u := range idle {
		u.expiry.Stop()
		wg.Go(u.quit)
	}
	wg.Wait()
}

// upstreams are the smarthost connections a session has in use, so that
// Shutdown can drop them whatever they are doing.
type upstreams struct {
	srv    *Server
	mu     sync.Mutex
	closed bool        // the session is over: no more connections
	all    []*upstream // a session has one at a time, but for moments
	one    [1]*upstream
}

// get takes a connection from the pool (reused) or dials one.
func (p *upstreams) get(ctx context.Context) (u *upstream, reused bool, err error) {
	u, reused, err = p.srv.pool.get(ctx)
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		if p.all == nil {
			p.all = p.one[:0]
		}
		p.all = append(p.all, u)
	}
	p.mu.Unlock()
	if closed {
		u.abort()
		return nil, false, errors.New("session closed")
	}
	return u, reused, nil
}

// put gives a connection whose message the smarthost accepted back to
// the pool, or says QUIT on it while the server shuts down.
func (p *upstreams) put(u *upstream) {
	p.forget(u)
	if p.srv.isDraining() {
		go u.quit()
		return
	}
	p.srv.pool.put(u)
}

// drop abandons a connection, and with it any transaction open on it.
func (p *upstreams) drop(u *upstream) {
	u.abort()
	p.forget(u)
}

func (p *upstreams) forget(u *upstream) {
	p.mu.Lock()
	if i := slices.Index(p.all, u); i >= 0 {
		p.all = slices.Delete(p.all, i, i+1)
	}
	p.mu.Unlock()
}

// close ends the session's use of the smarthost: nothing is dialled any
// more. The connections it gave back stay in the pool.
func (p *upstreams) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// abortAll drops every connection in use, whatever it is doing.
func (p *upstreams) abortAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.all {
		u.abort()
	}
}

// dial connects to the smarthost and gets it ready for MAIL: greeting,
// EHLO, TLS as configured and AUTH PLAIN if there are credentials.
func (s *Server) dial(ctx context.Context) (*upstream, error) {
	u := s.cfg.Smarthost
	d := net.Dialer{Timeout: u.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", u.Address)
	if err != nil {
		return nil, err
	}
	dc := &deadlineConn{Conn: raw}
	dc.timeout.Store(int64(u.CommandTimeout))
	c, err := s.handshake(dc)
	if err != nil {
		raw.Close()
		return nil, err
	}
	ok, _ := c.Extension("PIPELINING")
	return &upstream{raw: raw, dc: dc, c: c, pipelining: ok}, nil
}

func (s *Server) handshake(conn net.Conn) (*smtp.Client, error) {
	u := s.cfg.Smarthost
	host, _, err := net.SplitHostPort(u.Address)
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if u.TLS != "none" {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if u.TLSConfig != nil {
			tlsConfig = u.TLSConfig.Clone()
		}
		if tlsConfig.ServerName == "" {
			tlsConfig.ServerName = host
		}
	}
	var c *smtp.Client
	switch u.TLS {
	case "none":
		c = smtp.NewClient(conn)
	case "tls":
		tc := tls.Client(conn, tlsConfig)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = smtp.NewClient(tc)
	case "starttls":
		// go-smtp says EHLO localhost before STARTTLS; the EHLO that
		// counts, after it, uses our name.
		c, err = smtp.NewClientStartTLS(conn, tlsConfig)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown smarthost TLS mode %q", u.TLS)
	}
	c.SetWriteBufferSize(bodyBufferSize)
	if err := c.Hello(s.cfg.Hostname); err != nil {
		return nil, err
	}
	if u.Username != "" {
		ip := net.ParseIP(host)
		if u.TLS == "none" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, errors.New("refusing to send smarthost credentials without TLS")
		}
		if err := c.Auth(sasl.NewPlainClient("", u.Username, u.Password)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// positive is err from go-smtp's client, except that a 2xx reply is
// success: rfc 5321:4.2.1 makes any 2yz a positive completion, but the
// client wants exactly 250 at MAIL and after the final dot (and 25x at
// RCPT), and reports a 251, 252 or 200 as an *smtp.SMTPError. The reply
// has been read whole by then, so the connection is still in step.
func positive(err error) error {
	// errors.AsType, not errors.As: no target escapes to the heap, and
	// most calls are for a nil error.
	if se, ok := errors.AsType[*smtp.SMTPError](err); ok && se.Code >= 200 && se.Code <= 299 {
		return nil
	}
	return err
}

// ours reports whether domain is one of the alias domains.
func (s *Server) ours(domain string) bool { return alias.InDomains(domain, s.cfg.Domains) }

// srsDomain reports whether domain is the domain of SRS addresses.
func (s *Server) srsDomain(domain string) bool {
	return s.cfg.SRS != nil && strings.EqualFold(domain, s.cfg.SRS.Domain())
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
