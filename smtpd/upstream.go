package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/metrics"
)

// quitTimeout bounds the polite QUIT to an idle upstream connection; the
// client session is over by then and should not wait on it.
const quitTimeout = 2 * time.Second

// upstream is one connection to the smarthost. It belongs to one session
// and, while a transaction is open on it, to that transaction alone.
type upstream struct {
	raw net.Conn
	dc  *deadlineConn
	c   *smtp.Client
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
	return &upstream{raw: raw, dc: dc, c: c}, nil
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

// Submit sends a message of tempalias's own (a confirmation mail, say)
// through the smarthost, in a connection of its own, with the same
// timeouts, TLS and AUTH as relayed mail. from may be "" for the null
// sender; the addresses are checked as strictly as those of relayed mail.
// msg is the whole message, header section first; LF line endings become
// CRLF. No header is added and the sender is not SRS-rewritten: from
// should be an address in our domain.
//
// Submit returns once the smarthost has taken the message. An error
// wraps the smarthost's *smtp.SMTPError if it refused (5xx permanent,
// 4xx worth a retry) and ctx's error if ctx ended first. Cancelling ctx
// drops the connection, and with it any message not yet accepted. After
// Shutdown, Submit fails.
func (s *Server) Submit(ctx context.Context, from string, to []string, msg io.Reader) error {
	if from != "" {
		if _, err := alias.ParseAddress(from); err != nil {
			return fmt.Errorf("smtpd: submit: sender: %w", err)
		}
	}
	if len(to) == 0 {
		return errors.New("smtpd: submit: no recipients")
	}
	rcpts := make([]string, len(to))
	for i, t := range to {
		a, err := alias.ParseAddress(t)
		if err != nil {
			return fmt.Errorf("smtpd: submit: recipient: %w", err)
		}
		rcpts[i] = a.String()
	}
	// Whichever ends first, the caller's ctx or the server.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.dialCtx, cancel)()

	err := s.submit(ctx, from, rcpts, msg)
	if err != nil && ctx.Err() != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
	}
	return err
}

func (s *Server) submit(ctx context.Context, from string, to []string, msg io.Reader) error {
	start := time.Now()
	up, err := s.dial(ctx)
	if err != nil {
		return fmt.Errorf("smtpd: submit: smarthost connect: %w", err)
	}
	// The deadlines bound every step; this makes ctx bound them too.
	defer context.AfterFunc(ctx, up.abort)()
	ok := false
	defer func() {
		if !ok {
			up.abort() // a message not yet accepted must not be completed
		}
	}()
	stage := func(name string, err error) error {
		return fmt.Errorf("smtpd: submit: smarthost %s: %w", name, err)
	}
	if err := positive(up.c.Mail(from, nil)); err != nil {
		return stage("MAIL", err)
	}
	metrics.SmarthostSeconds.WithLabelValues("dial").Observe(time.Since(start).Seconds())
	for _, t := range to {
		if err := positive(up.c.Rcpt(t, nil)); err != nil {
			return stage("RCPT", err)
		}
	}
	w, err := up.c.Data()
	if err != nil {
		return stage("DATA", err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		return fmt.Errorf("smtpd: submit: sending message: %w", err)
	}
	start = time.Now()
	err = positive(w.Close())
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		metrics.SmarthostSeconds.WithLabelValues("data").Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return stage("end of DATA", err)
	}
	ok = true
	up.quit()
	return nil
}

// positive is err from go-smtp's client, except that a 2xx reply is
// success: rfc 5321:4.2.1 makes any 2yz a positive completion, but the
// client wants exactly 250 at MAIL and after the final dot (and 25x at
// RCPT), and reports a 251, 252 or 200 as an *smtp.SMTPError. The reply
// has been read whole by then, so the connection is still in step.
func positive(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 200 && se.Code <= 299 {
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
