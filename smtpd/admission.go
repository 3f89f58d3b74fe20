package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"time"
)

// Admission: go-smtp greets every connection and asks the backend for a
// session only at EHLO, too late to refuse a client at connect. The
// banner is the first thing go-smtp writes, so clientConn's first Write
// decides whether the client is welcome (connection limits, blocked
// client, DNSBL) and says 421 or 554 instead.

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
			s.cfg.Metrics.ConnsRefused.WithLabelValues("smtp", "total").Inc()
		case errTooManyConnsClient:
			s.cfg.Metrics.ConnsRefused.WithLabelValues("smtp", "per-client").Inc()
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
