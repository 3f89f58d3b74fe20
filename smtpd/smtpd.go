// Package smtpd is tempalias's SMTP front end. It accepts mail for aliases
// in the configured domains, reserves one use of each alias at RCPT TO and
// streams every accepted message through to the smarthost within the same
// SMTP transaction, so the sender hears 250 only once the smarthost has
// taken the message. Nothing is queued here: whatever goes wrong becomes a
// 4xx and the sender keeps the message and retries.
//
// go-smtp does the protocol; this package adds what go-smtp leaves open:
// address policy, usage accounting, the upstream client, bare CR/LF
// refusal, per-read deadlines during DATA, admission at connect (limits,
// DNSBL), trace and loop headers, sender rewriting (SRS, From) and the
// mapping of every error to an explicit reply (reply.go).
package smtpd

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/internal/peer"
	"github.com/tempalias/tempalias/metrics"
	"github.com/tempalias/tempalias/srs"
	"github.com/tempalias/tempalias/store"
)

// Store is what the SMTP front end needs from the alias store; every
// store.Engine satisfies it. A reservation is committed just before the
// end of the message goes to the smarthost, and refunded if the
// transaction ends before that or the smarthost then refuses the message.
type Store interface {
	Reserve(ctx context.Context, id string, now time.Time, opts ...store.ReserveOption) (*store.Reservation, error)
}

// Config configures a Server. Every zero value gets the default named in
// its comment.
type Config struct {
	// Hostname names this server in the banner, the EHLO reply, the
	// upstream EHLO and the Received header (default "localhost").
	Hostname string
	// Domains are the alias domains. A recipient in any other domain is
	// refused with 550 5.7.1; with no domains every recipient is.
	Domains []string
	// MaxMessageBytes bounds one message as the client sends it; it is
	// advertised as SIZE (rfc 1870) (default 25 MiB).
	MaxMessageBytes int64
	// MaxRecipients bounds RCPT TO per transaction (default 100, the
	// minimum rfc 5321:4.5.3.1.8 asks a server to accept).
	MaxRecipients int
	// ReadTimeout bounds the wait for each command line and, during DATA,
	// for each read of the message: a client that sends nothing for this
	// long is dropped (default 5m, rfc 5321:4.5.3.2.7).
	ReadTimeout time.Duration
	// WriteTimeout bounds the write of each reply (default 1m).
	WriteTimeout time.Duration
	// DataTimeout bounds the whole DATA phase, from the 354 reply to the
	// final dot, whatever the client's pace. go-smtp's own ReadTimeout
	// would be one deadline for the whole phase only by accident; here the
	// per-read idle limit (ReadTimeout) and this total apply together. With
	// the defaults a maximal message must arrive at about 43 KB/s on
	// average (default 10m, rfc 5321:4.5.3.2.6 allows 10 minutes for the
	// data termination reply).
	DataTimeout time.Duration
	// TransactionTimeout bounds one transaction from MAIL to DATA, however
	// the client paces its commands (NOOP keeps go-smtp's per-command
	// timeout from firing); past it the connection is closed and every
	// reservation refunded (default 10m).
	TransactionTimeout time.Duration
	// StoreTimeout bounds each store call of a session (reserving a use
	// at RCPT, committing it before the end of the message, refunding
	// it): a call still blocked then is cut off, and the client gets a
	// 4xx. At RCPT the call never outlasts the transaction either
	// (TransactionTimeout). An engine may bound its calls more tightly
	// (etcd: request_timeout) (default ReadTimeout, the command timeout:
	// rfc 5321:4.5.3.2 has a client wait about as long for a reply).
	StoreTimeout time.Duration
	// MaxBadRecipients is how many refused recipients (unknown alias,
	// foreign domain, bad address) one connection may name; the next one
	// gets 421 and the connection is closed, which slows down guessing
	// (default 5).
	MaxBadRecipients int
	// Smarthost is where accepted mail goes.
	Smarthost Upstream

	// TLS, when set, offers STARTTLS (rfc 3207) to clients. It is used as
	// given, so a GetCertificate callback can swap certificates without a
	// restart. Nil means STARTTLS is not offered.
	TLS *tls.Config
	// DNSBL, when set, is asked about every client before the banner; a
	// listed client gets 554 5.7.1 instead of it (rfc 5321:3.1) and is
	// hung up on. *dnsbl.Checker satisfies it. Nil means no check.
	DNSBL Blocklist
	// SRS, when set, rewrites the envelope sender of relayed mail into
	// our domain (so SPF passes at the receiver) and accepts bounces to
	// such addresses, relaying them to the original sender. Nil means
	// senders are replayed unchanged and SRS addresses are unknown.
	SRS *srs.Rewriter
	// RewriteFrom replaces the From: header of relayed mail with the
	// alias address (keeping the original display name) and adds a
	// Reply-To: with the original From, for smarthosts that only send
	// verified identities. It breaks the original DKIM signature. With it
	// a transaction carries one target only: a recipient for another
	// target gets 452 4.5.3 and the client sends it in a new transaction.
	RewriteFrom bool
	// RevokeLink, when set, gives the link that revokes alias id; a
	// message for one alias carries it as X-Tempalias-Revoke. Nil: no
	// such field (http.public_url is not set).
	RevokeLink func(id string) string

	// MaxMessagesPerAliasHour bounds the messages one alias relays in an
	// hour (store.PerHour: windows each opened by the alias's first
	// message after the last one closed; transactions under way count).
	// The store counts it, in the transaction that reserves, so it holds
	// across restarts and hosts, and only for a live alias, so that a
	// dead alias answers like an unknown one: a recipient over it gets
	// 450 4.7.1, and the sender retries later (0 means no limit).
	// The same number bounds the bounces relayed to one original sender
	// per hour (through any of its SRS addresses), and the mail relayed
	// to Postmaster, which always have a bound: 10 when this is 0.
	MaxMessagesPerAliasHour int
	// Postmaster, when set, is the address that mail to postmaster@ any
	// alias domain is relayed to (rfc 5321:4.5.1 says that mailbox must
	// be accepted). It is no alias: it costs no use, and its hourly bound
	// is that of SRS bounces, shared by all the domains. Empty means such
	// mail is refused like an unknown alias.
	Postmaster string
	// MaxBadRecipientsPerClient bounds refused recipients (as counted by
	// MaxBadRecipients) per client address across connections within
	// BadRecipientWindow. Past it the connection gets 421 and the client
	// gets 421 4.7.0 at connect for BadRecipientWindow (0 means no limit).
	// A client address is an IPv4 address or an IPv6 /64.
	MaxBadRecipientsPerClient int
	// BadRecipientWindow is the window of MaxBadRecipientsPerClient
	// (default 1h).
	BadRecipientWindow time.Duration
	// MaxConnsPerClient bounds simultaneous connections per client
	// address; more get 421 4.7.0 at connect (0 means no limit).
	MaxConnsPerClient int
	// MaxConns bounds simultaneous connections in total; more get 421
	// 4.7.0 at connect (0 means no limit).
	MaxConns int
	// Now is the clock for alias expiry; network deadlines always use the
	// wall clock (default time.Now).
	Now func() time.Time
	// Logger gets one line per transaction (default slog.Default()).
	Logger *slog.Logger
	// Metrics counts recipients, messages, bytes, smarthost latency and
	// refused connections (default: a registry of its own, which nothing
	// serves).
	Metrics *metrics.Metrics
}

// Blocklist says whether a client address is listed, and by which zone.
// It must fail open: an address it cannot check is not listed.
type Blocklist interface {
	Listed(ctx context.Context, ip netip.Addr) (zone string, listed bool)
}

// Upstream is the smarthost and how to talk to it.
type Upstream struct {
	// Address is host:port (default "127.0.0.1:25").
	Address string
	// TLS is "none", "starttls" or "tls" (implicit TLS); both TLS modes
	// verify the certificate (default "none"). Any other value makes every
	// delivery fail with 451 4.4.1, so a typo never sends mail in clear.
	TLS string
	// TLSConfig is cloned for each connection; its ServerName defaults to
	// the host of Address. Nil means the system roots.
	TLSConfig *tls.Config
	// Username and Password, when Username is set, authenticate with AUTH
	// PLAIN. Credentials are only sent over TLS or to a loopback address.
	Username, Password string
	// DialTimeout bounds the TCP connect (default 30s).
	DialTimeout time.Duration
	// CommandTimeout bounds each read and each write on the upstream
	// connection, including the wait for the reply to the final dot
	// (default 5m, rfc 5321:4.5.3.2).
	CommandTimeout time.Duration
	// MaxIdle bounds the connections kept open between messages, shared
	// by every client session (default 50, the connections Postfix's
	// smtpd allows one client by default, smtpd_client_connection_count_limit;
	// negative means none is kept).
	MaxIdle int
	// IdleTimeout is how long a connection is kept unused before it is
	// closed (default 10s: below the 10 s a Postfix smarthost under
	// stress waits for an idle client's next command, so that it is
	// tempalias that closes).
	IdleTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 25 << 20
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = 100
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 5 * time.Minute
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = time.Minute
	}
	if c.DataTimeout <= 0 {
		c.DataTimeout = 10 * time.Minute
	}
	if c.MaxBadRecipients <= 0 {
		c.MaxBadRecipients = 5
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = c.ReadTimeout
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = 10 * time.Minute
	}
	if c.BadRecipientWindow <= 0 {
		c.BadRecipientWindow = time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New()
	}
	u := &c.Smarthost
	if u.Address == "" {
		u.Address = "127.0.0.1:25"
	}
	if u.TLS == "" {
		u.TLS = "none"
	}
	if u.DialTimeout <= 0 {
		u.DialTimeout = 30 * time.Second
	}
	if u.CommandTimeout <= 0 {
		u.CommandTimeout = 5 * time.Minute
	}
	switch {
	case u.MaxIdle == 0:
		u.MaxIdle = 50
	case u.MaxIdle < 0:
		u.MaxIdle = 0
	}
	if u.IdleTimeout <= 0 {
		u.IdleTimeout = 10 * time.Second
	}
}

// Server is the SMTP front end. Create it with New, run it with Serve and
// stop it with Shutdown.
type Server struct {
	cfg  Config
	st   Store
	log  *slog.Logger
	smtp *smtp.Server

	pool *pool // idle smarthost connections

	// dialCtx is cancelled when Shutdown gives up waiting, so that a
	// connect in progress does not hold it up for DialTimeout.
	dialCtx    context.Context
	cancelDial context.CancelFunc

	srsRate *windowCounts[string]       // bounces per original sender per hour
	pmRate  *windowCounts[string]       // mail to Postmaster per hour, one key
	badRcpt *windowCounts[netip.Prefix] // refused recipients per client

	rcpts, messages resultCounters // metrics.Rcpt and metrics.Messages, by result

	mu        sync.Mutex
	draining  bool
	conns     map[*clientConn]struct{}
	open      int                  // admitted connections
	perClient map[netip.Prefix]int // admitted connections per client
	txs       sync.WaitGroup       // transactions not yet settled
}

// New returns a server that reserves uses in st and relays to
// cfg.Smarthost.
func New(cfg Config, st Store) *Server {
	cfg.setDefaults()
	s := &Server{
		cfg:       cfg,
		st:        st,
		log:       cfg.Logger,
		conns:     make(map[*clientConn]struct{}),
		perClient: make(map[netip.Prefix]int),
		srsRate:   newWindowCounts[string](time.Hour, cmp.Or(cfg.MaxMessagesPerAliasHour, 10)),
		pmRate:    newWindowCounts[string](time.Hour, cmp.Or(cfg.MaxMessagesPerAliasHour, 10)),
		badRcpt:   newWindowCounts[netip.Prefix](cfg.BadRecipientWindow, cfg.MaxBadRecipientsPerClient),
		rcpts:     newResultCounters(cfg.Metrics.Rcpt, rcptResults...),
		messages:  newResultCounters(cfg.Metrics.Messages, messageResults...),
	}
	s.pool = &pool{srv: s, max: cfg.Smarthost.MaxIdle, idleTimeout: cfg.Smarthost.IdleTimeout}
	s.dialCtx, s.cancelDial = context.WithCancel(context.Background())
	if cfg.Postmaster == "" {
		s.log.Info("smtp: mail to postmaster@ the alias domains is refused; set smtp.postmaster to accept it (rfc 5321 4.5.1)")
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.ReadBufferSize = bodyBufferSize
	// Must be non-zero: go-smtp's SetReadDeadline before each command is
	// what tells clientConn that a DATA phase is over.
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.ErrorLog = errorLog{cfg.Logger}
	s.smtp = srv
	return s
}

// Serve accepts connections on ln until Shutdown; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	if s.isDraining() {
		ln.Close()
		return nil
	}
	err := s.smtp.Serve(&listener{Listener: ln, srv: s})
	if s.isDraining() && (err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed)) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and closes idle ones at once (with
// 421, rfc 5321:3.8). Connections in a transaction may finish it and are
// closed when it ends; when ctx ends first, every connection, client and
// upstream, is closed. The idle smarthost connections are closed last. Shutdown returns once every reservation is settled:
// committed after an upstream 250, refunded otherwise. It returns ctx's
// error if it had to cut transactions short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	conns := s.snapshot()
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.smtp.Shutdown(context.Background()) // closes listeners, waits for connections
	}()
	for _, c := range conns {
		if c.idle() {
			go c.sayAndClose(errShuttingDown) // each may wait briefly on a client that does not read
		}
	}
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancelDial()
		s.mu.Lock()
		conns = s.snapshot()
		s.mu.Unlock()
		for _, c := range conns {
			c.forceClose()
		}
		<-done
	}
	// Sessions settle on Logout and BDAT transfers in their own goroutine;
	// either way every transaction ends once its connections are closed.
	s.txs.Wait()
	s.pool.close()
	s.cancelDial()
	return err
}

func (s *Server) snapshot() []*clientConn {
	out := make([]*clientConn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// track registers a new connection and decides whether it may go on:
// nil, or the reply it gets instead of the banner. Shutting down is the
// only verdict that leaves the connection untracked.
func (s *Server) track(c *clientConn) *refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errShuttingDown
	}
	s.conns[c] = struct{}{}
	if s.cfg.MaxConns > 0 && s.open >= s.cfg.MaxConns {
		return errTooManyConns
	}
	if s.cfg.MaxConnsPerClient > 0 && s.perClient[c.client] >= s.cfg.MaxConnsPerClient {
		return errTooManyConnsClient
	}
	if s.badRcpt.blocked(c.client, s.cfg.Now()) {
		return errClientBlocked
	}
	s.open++
	s.perClient[c.client]++
	c.counted = true
	return nil
}

func (s *Server) untrack(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.counted {
		c.counted = false
		s.open--
		if s.perClient[c.client]--; s.perClient[c.client] <= 0 {
			delete(s.perClient, c.client)
		}
	}
	s.mu.Unlock()
}

// beginTx counts a transaction in; false means the server is draining.
// Counting under mu with the draining check keeps txs.Add from racing
// with the txs.Wait in Shutdown.
func (s *Server) beginTx() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.txs.Add(1)
	return true
}

// newSession is called at the first EHLO or HELO, and again at the first
// one after STARTTLS, when go-smtp has put a *tls.Conn over ours.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	var tc *tls.Conn
	nc := c.Conn()
	if t, ok := nc.(*tls.Conn); ok {
		tc, nc = t, t.NetConn()
	}
	cc, ok := nc.(*clientConn)
	if !ok {
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error"}
	}
	if tc != nil {
		cc.startedTLS(tc)
	}
	if s.isDraining() {
		cc.closeAfterReply()
		return nil, errShuttingDown.smtpError()
	}
	sess := &session{
		srv:    s,
		ups:    upstreams{srv: s},
		conn:   cc,
		smtp:   c,
		remote: remoteIP(cc.RemoteAddr()),
		tls:    tc != nil,
	}
	cc.sess.Store(sess)
	return sess, nil
}

func remoteIP(a net.Addr) net.IP {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP
	}
	return nil
}

// clientKey is the unit per-client limits count in: peer.Key, as HTTP
// counts it.
func clientKey(ip net.IP) netip.Prefix {
	a, _ := netip.AddrFromSlice(ip) // invalid for none: the zero Prefix
	return peer.Key(a)
}

// errorLog routes go-smtp's own messages (mostly dropped connections) to
// slog; panics it recovered from are errors, the rest is noise.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.out(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.out(fmt.Sprint(v...)) }

func (e errorLog) out(msg string) {
	msg = strings.TrimSpace(msg)
	if strings.HasPrefix(msg, "panic") {
		e.l.Error("smtp: " + msg)
		return
	}
	e.l.Debug("smtp: " + msg)
}
