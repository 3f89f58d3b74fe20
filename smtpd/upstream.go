package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
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
func (s *Server) dial() (*upstream, error) {
	u := s.cfg.Smarthost
	d := net.Dialer{Timeout: u.DialTimeout}
	raw, err := d.DialContext(s.dialCtx, "tcp", u.Address)
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
