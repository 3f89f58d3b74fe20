package smtpd

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

func tlsEnv(t *testing.T) (*env, *x509.CertPool) {
	t.Helper()
	cert, pool := testCert(t)
	e := newEnv(t, func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	return e, pool
}

// startTLS turns c into a TLS client after EHLO, the way a raw client
// would, and says EHLO again.
func (c *client) startTLS(pool *x509.CertPool) {
	c.t.Helper()
	c.must(220, "STARTTLS")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.tp = textproto.NewConn(tc)
}

// tlsRcpt is a client in a transaction under STARTTLS, up to its
// accepted RCPT of addr.
func (e *env) tlsRcpt(pool *x509.CertPool, addr string) *client {
	e.t.Helper()
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.startTLS(pool)
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(250, "RCPT TO:<%s>", addr)
	return c
}

func TestSTARTTLS(t *testing.T) {
	e, pool := tlsEnv(t)
	_, addr := e.newAlias("t@example.com", 3, 0)

	c, err := netsmtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered again inside TLS")
	}
	msg := "Subject: secret\r\n\r\nbody\r\n.dot\r\n"
	for range 2 { // two messages on one TLS connection
		if err := c.Mail("s@example.org"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(addr); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(msg))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	for _, m := range msgs {
		hdr, rest := stripTrace(t, m.body, addr)
		if !strings.Contains(hdr, "(tempalias) with ESMTPS id ") {
			t.Errorf("Received header does not say ESMTPS: %q", hdr)
		}
		if string(rest) != msg {
			t.Errorf("body %q, want %q", rest, msg)
		}
	}
	e.settled()
	if !strings.Contains(e.logs.String(), "tls=true") {
		t.Errorf("transaction log does not record TLS:\n%s", e.logs.String())
	}
}

func TestNoSTARTTLSWithoutConfig(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	if msg := c.must(250, "EHLO client.example"); strings.Contains(msg, "STARTTLS") {
		t.Errorf("STARTTLS offered without a TLS config: %q", msg)
	}
	c.must(502, "STARTTLS")
	_, addr := e.newAlias("t@example.com", 3, 0)
	if err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	if hdr, _ := stripReceived(t, e.up.messages()[0].body); !strings.Contains(hdr, " with ESMTP id ") {
		t.Errorf("Received header %q", hdr)
	}
}

// Under TLS the body checks still hold, and an idle TLS client still gets
// a readable 421 at shutdown.
func TestSTARTTLSRefusalsAndShutdown(t *testing.T) {
	e, pool := tlsEnv(t)
	id, addr := e.newAlias("t@example.com", 3, 0)

	c := e.dial()
	c.must(250, "EHLO client.example")
	c.startTLS(pool)
	// go-smtp forgets the EHLO of before STARTTLS (rfc 3207:4.2).
	c.must(502, "MAIL FROM:<s@example.org>")
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(250, "RCPT TO:<%s>", addr)
	c.must(354, "DATA")
	c.send("Subject: x\r\n\r\nbare\nLF\r\n.\r\n")
	c.expect(554)
	if !c.closed() {
		t.Error("connection open after bare LF")
	}

	idle := e.dial()
	idle.must(250, "EHLO client.example")
	idle.startTLS(pool)
	idle.must(250, "EHLO client.example")
	// A larger message, many TLS records.
	idle.must(250, "MAIL FROM:<s@example.org>")
	idle.must(250, "RCPT TO:<%s>", addr)
	idle.must(354, "DATA")
	idle.send("Subject: y\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 4096) + ".\r\n")
	idle.expect(250)

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(t.Context()) }()
	code, msg := idle.reply()
	if code != 421 || !strings.HasPrefix(msg, "4.3.2") {
		t.Errorf("idle TLS client got %d %s at shutdown, want 421 4.3.2", code, msg)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(e.up.messages()); n != 1 {
		t.Errorf("smarthost got %d messages, want 1", n)
	}
	if used, pending, ok := e.uses(id); !ok || used != 1 || pending != 0 {
		t.Errorf("used %d pending %d alive %v", used, pending, ok)
	}
}

// Once TLS is up the raw scanner sees ciphertext: it must forget what it
// made of the handshake and look no further.
func TestRawScanStopsUnderTLS(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	cc := &clientConn{Conn: server}
	go client.Write([]byte("\r\n.\rX"))
	cc.Read(make([]byte, 16))
	if !cc.smuggled.Load() {
		t.Fatal("plaintext <CRLF>.<CR>X not noticed")
	}
	cc.startedTLS(&tls.Conn{})
	if cc.smuggled.Load() {
		t.Error("verdict on the handshake's bytes kept after STARTTLS")
	}
	go client.Write([]byte("\r\n.\rX"))
	cc.Read(make([]byte, 16))
	if cc.smuggled.Load() {
		t.Error("ciphertext scanned after STARTTLS")
	}
}

// Under TLS the raw scan sees only ciphertext, but a DATA message passes
// the body checks dot-stuffed, as the client sent it: the "<CRLF>.<CR>x"
// that go-smtp's un-stuffing turns into "x" is refused as any bare CR,
// and nothing reaches the smarthost.
func TestSTARTTLSDotBareCR(t *testing.T) {
	e, pool := tlsEnv(t)
	id, addr := e.newAlias("t@example.com", 3, 0)

	c := e.tlsRcpt(pool, addr)
	c.must(354, "DATA")
	c.send("Subject: x\r\n\r\nhello\r\n.\rMAIL FROM:<e@vil.example>\r\n.\r\n")
	c.expect(554)
	e.settled()
	if n := len(e.up.messages()); n != 0 {
		t.Errorf("smarthost got %d messages, want none", n)
	}
	if used, pending, ok := e.uses(id); !ok || used != 0 || pending != 0 {
		t.Errorf("used %d pending %d alive %v", used, pending, ok)
	}
}

func TestDotStuff(t *testing.T) {
	for in, want := range map[string]string{
		"Received: x\r\n\tby y\r\n": "Received: x\r\n\tby y\r\n",
		".a\r\n.b\r\n":              "..a\r\n..b\r\n",
		"":                          "",
	} {
		if got := dotStuff(in); got != want {
			t.Errorf("dotStuff(%q) = %q, want %q", in, got, want)
		}
	}
}

// Under STARTTLS the raw scan sees only ciphertext, so the end of data
// after CR CR LF must be found by the data reader itself (go-smtp's, as
// released, took the second CR for the middle of a line and read on until
// the timeout): the bare CR gets its 554 at once and the use comes back.
func TestSTARTTLSCRCRBeforeEndOfData(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"CR CR LF . CR LF", "Subject: x\r\n\r\nbody\r\r\n.\r\n"},
		{". CR CR LF . CR LF", "Subject: x\r\n\r\nbody\r\n.\r\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, pool := testCert(t)
			e := newEnv(t, func(c *Config) {
				c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				c.ReadTimeout = time.Minute // far longer than the wait below
			})
			id, addr := e.newAlias("t@example.com", 3, 1)
			c := e.tlsRcpt(pool, addr)
			c.must(354, "DATA")
			c.send(tc.body)
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			code, msg := c.reply()
			checkReply(t, "DATA", code, msg, "554 5.6.0")
			e.settled()
			if used, pending, ok := e.uses(id); !ok || used != 0 || pending != 0 {
				t.Errorf("used %d pending %d alive %v", used, pending, ok)
			}
		})
	}
}

// A BDAT chunk cut short by the client's TLS close_notify is never
// completed upstream: under TLS the raw connection reads on without an
// error (the alert is a record like any other), so only the chunk's own
// count shows that it ended early.
func TestSTARTTLSBDATTruncatedByCloseNotify(t *testing.T) {
	e, pool := tlsEnv(t)
	id, addr := e.newAlias("t@example.com", 3, 5)
	c := e.tlsRcpt(pool, addr)
	c.send("BDAT 100000 LAST\r\nSubject: wire transfer\r\n\r\nPlease pay to account 1234\r\n")
	if err := c.conn.(*tls.Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	e.nothingDelivered(t, id)
}
