package smtpd

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"testing"

	"github.com/tempalias/tempalias/internal/testcert"
	"github.com/tempalias/tempalias/store"
)

var _ Store = store.Engine(nil)

// testCert is a self-signed certificate for 127.0.0.1 and the pool that
// trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	c := testcert.New(t, 1, "smarthost.test")
	return c.TLS, c.Pool()
}

// The smarthost over STARTTLS and implicit TLS, with AUTH PLAIN, and what
// happens when its certificate or the credentials are wrong.
func TestUpstreamTLSAndAuth(t *testing.T) {
	cert, pool := testCert(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, tc := range []struct {
		name     string
		mode     string
		implicit bool
		roots    *x509.CertPool
		user     string
		pass     string
		wantRcpt int
		wantMsgs int
	}{
		{name: "starttls", mode: "starttls", roots: pool, wantRcpt: 250, wantMsgs: 1},
		{name: "tls", mode: "tls", implicit: true, roots: pool, wantRcpt: 250, wantMsgs: 1},
		{name: "starttls auth", mode: "starttls", roots: pool, user: "relay", pass: "s3cret", wantRcpt: 250, wantMsgs: 1},
		{name: "tls auth", mode: "tls", implicit: true, roots: pool, user: "relay", pass: "s3cret", wantRcpt: 250, wantMsgs: 1},
		{name: "untrusted certificate", mode: "starttls", roots: x509.NewCertPool(), wantRcpt: 451},
		{name: "untrusted certificate, tls", mode: "tls", implicit: true, roots: x509.NewCertPool(), wantRcpt: 451},
		{name: "wrong password", mode: "starttls", roots: pool, user: "relay", pass: "wrong", wantRcpt: 451},
		{name: "unknown mode", mode: "ssl", roots: pool, wantRcpt: 451},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := fakeOptions{tls: serverTLS, implicit: tc.implicit}
			if tc.user != "" {
				opts.user, opts.pass = "relay", "s3cret"
			}
			fake := newFakeSmarthostWith(t, opts)
			e := newEnv(t, func(c *Config) {
				c.Smarthost.Address = fake.addr
				c.Smarthost.TLS = tc.mode
				c.Smarthost.TLSConfig = &tls.Config{RootCAs: tc.roots}
				c.Smarthost.Username = tc.user
				c.Smarthost.Password = tc.pass
			})
			_, addr := e.newAlias("t@example.com", 3, 1)
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.must(250, "MAIL FROM:<s@example.org>")
			c.must(tc.wantRcpt, "RCPT TO:<%s>", addr)
			if tc.wantRcpt == 250 {
				c.must(354, "DATA")
				c.must(250, "Subject: x\r\n\r\nbody\r\n.")
			}
			c.must(221, "QUIT")
			if n := len(fake.messages()); n != tc.wantMsgs {
				t.Errorf("smarthost got %d messages, want %d", n, tc.wantMsgs)
			}
			e.settled()
		})
	}
}

// Credentials never travel in clear to a remote smarthost.
func TestNoCleartextCredentials(t *testing.T) {
	s := New(Config{Smarthost: Upstream{Address: "192.0.2.1:25", Username: "u", Password: "p"}}, nil)
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		server.Write([]byte("220 hi\r\n"))
		buf := make([]byte, 512)
		server.Read(buf) // EHLO
		server.Write([]byte("250-hi\r\n250 AUTH PLAIN\r\n"))
		for {
			n, err := server.Read(buf)
			if err != nil {
				return
			}
			if n > 0 && string(buf[:4]) == "AUTH" {
				t.Error("credentials sent without TLS")
				return
			}
		}
	}()
	if _, err := s.handshake(&deadlineConn{Conn: client}); err == nil {
		t.Fatal("handshake sent credentials over a cleartext connection")
	}
}

// A smarthost that says 421 and hangs up after a message (as an MTA
// closing an idle connection does) leaves a parked connection that is
// gone: the next message dials afresh instead of failing with 451.
func TestReusedConnectionSaid421(t *testing.T) {
	up, sessions := scriptedSmarthost(t, scriptedOptions{byeAfter1: true})
	e := newEnv(t, func(c *Config) { c.Smarthost.Address = up })
	_, addr := e.newAlias("t@example.com", 3, 0)
	c := e.dial()
	c.must(250, "EHLO client.example")
	for i := range 2 {
		c.must(250, "MAIL FROM:<s@example.org>")
		c.must(250, "RCPT TO:<%s>", addr)
		c.must(354, "DATA")
		c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
		if code, msg := c.reply(); code != 250 {
			t.Fatalf("message %d: %d %s", i+1, code, msg)
		}
	}
	c.must(221, "QUIT")
	if n := sessions.Load(); n != 2 {
		t.Fatalf("%d smarthost connections, want 2", n)
	}
}

// Any 2xx from the smarthost is a success (rfc 5321:4.2.1), wherever go-smtp's
// client expects exactly 250: a message accepted with 251 at the final dot
// is delivered and its use counted, never refunded and retried (which
// delivered it again at every retry). Refusals still refund.
func TestUpstreamReplyCodes(t *testing.T) {
	for _, tc := range []struct {
		stage, reply string
		rcpt         int // the client's reply to RCPT
		data         int // to the final dot, if RCPT was accepted
	}{
		{"END", "200 ok", 250, 250},
		{"END", "250 2.0.0 ok", 250, 250},
		{"END", "251 2.1.5 will forward", 250, 250},
		{"END", "252 2.0.0 taken", 250, 250},
		{"END", "299 2.0.0 taken", 250, 250},
		{"MAIL", "251 2.1.0 sender ok", 250, 250},
		{"RCPT", "251 2.1.5 user not local; will forward", 250, 250},
		{"RCPT", "252 2.1.5 cannot verify, will try", 250, 250},
		{"RCPT", "200 ok", 250, 250},
		{"MAIL", "451 4.3.0 try later", 451, 0},
		{"RCPT", "452 4.2.2 mailbox full", 452, 0},
		{"RCPT", "550 5.1.1 no such user", 550, 0},
		{"END", "451 4.3.0 try later", 250, 451},
		{"END", "554 5.7.1 rejected", 250, 554},
	} {
		t.Run(tc.stage+" "+tc.reply[:3], func(t *testing.T) {
			delivered := new(atomic.Int64)
			up, _ := scriptedSmarthost(t, scriptedOptions{
				replies:   map[string]string{tc.stage: tc.reply},
				delivered: delivered,
			})
			e := newEnv(t, func(c *Config) { c.Smarthost.Address = up })
			id, addr := e.newAlias("t@example.com", 3, 1)
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.must(250, "MAIL FROM:<s@example.org>")
			c.must(tc.rcpt, "RCPT TO:<%s>", addr)
			if tc.rcpt == 250 {
				c.must(354, "DATA")
				c.must(tc.data, "Subject: x\r\n\r\nbody\r\n.")
			}
			c.must(221, "QUIT")
			ok := tc.data/100 == 2
			want := map[bool]int64{true: 1, false: 0}[ok]
			if n := delivered.Load(); n != want {
				t.Errorf("smarthost accepted %d messages, want %d", n, want)
			}
			cm, rf := e.settled()
			if cm != want || rf != 1-want {
				t.Errorf("%d committed, %d refunded; want %d, %d", cm, rf, want, 1-want)
			}
			used, pending, alive := e.uses(id)
			if ok {
				// max-usage 1, spent: the alias is used up.
				if alive {
					t.Errorf("alias still alive (used %d, pending %d) after its one message", used, pending)
				}
			} else if !alive || used != 0 || pending != 0 {
				t.Errorf("alias alive %v used %d pending %d; want the use back", alive, used, pending)
			}
		})
	}
}
