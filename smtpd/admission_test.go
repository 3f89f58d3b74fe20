package smtpd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// stubBlocklist lists the addresses it is given and records what it was
// asked.
type stubBlocklist struct {
	listed map[netip.Addr]bool
	mu     sync.Mutex
	asked  []netip.Addr
}

func (b *stubBlocklist) Listed(ctx context.Context, ip netip.Addr) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asked = append(b.asked, ip)
	return "bl.example", b.listed[ip]
}

// rawDial connects and returns the connection and the first reply.
func (e *env) rawDial() (*client, int, string) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	e.t.Cleanup(func() { conn.Close() })
	c := &client{t: e.t, conn: conn, tp: textproto.NewConn(conn)}
	code, msg := c.reply()
	return c, code, msg
}

func TestDNSBL(t *testing.T) {
	localhost := netip.MustParseAddr("127.0.0.1")
	t.Run("listed", func(t *testing.T) {
		bl := &stubBlocklist{listed: map[netip.Addr]bool{localhost: true}}
		e := newEnv(t, func(c *Config) { c.DNSBL = bl })
		c, code, msg := e.rawDial()
		if code != 554 || msg != "5.7.1 mx.tempalias.test Service unavailable; client [127.0.0.1] blocked using bl.example" {
			t.Fatalf("greeting %d %q", code, msg)
		}
		// rfc 5321:3.1: 503 to anything but QUIT, then close.
		c.must(503, "EHLO client.example")
		c.must(503, "MAIL FROM:<s@example.org>")
		c.must(221, "QUIT")
		if !c.closed() {
			t.Error("connection still open after QUIT")
		}
		if n := e.st.reserved.Load(); n != 0 {
			t.Errorf("%d reservations", n)
		}
	})
	t.Run("listed client that says nothing", func(t *testing.T) {
		bl := &stubBlocklist{listed: map[netip.Addr]bool{localhost: true}}
		e := newEnv(t, func(c *Config) { c.DNSBL = bl; c.ReadTimeout = 200 * time.Millisecond })
		c, code, _ := e.rawDial()
		if code != 554 {
			t.Fatalf("greeting %d", code)
		}
		if !c.closed() {
			t.Error("connection still open")
		}
	})
	t.Run("not listed", func(t *testing.T) {
		bl := &stubBlocklist{listed: map[netip.Addr]bool{netip.MustParseAddr("192.0.2.1"): true}}
		e := newEnv(t, func(c *Config) { c.DNSBL = bl })
		_, addr := e.newAlias("t@example.com", 3, 0)
		if err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
			t.Fatal(err)
		}
		bl.mu.Lock()
		defer bl.mu.Unlock()
		if len(bl.asked) != 1 || bl.asked[0] != localhost {
			t.Errorf("blocklist asked about %v, want [127.0.0.1] once", bl.asked)
		}
	})
}

func TestConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*Config)
		want      string
	}{
		{"per client", func(c *Config) { c.MaxConnsPerClient = 2 }, "4.7.0 mx.tempalias.test Too many connections from your address, try again later"},
		{"in total", func(c *Config) { c.MaxConns = 2 }, "4.7.0 mx.tempalias.test Too many connections, try again later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.configure)
			c1 := e.dial()
			c2 := e.dial()
			c2.must(250, "EHLO client.example")
			for range 2 { // a refused connection does not count
				c3, code, msg := e.rawDial()
				if code != 421 || msg != tc.want {
					t.Fatalf("third connection: %d %q", code, msg)
				}
				if !c3.closed() {
					t.Fatal("third connection still open")
				}
			}
			c1.must(221, "QUIT")
			waitFor(t, "the server to let go of the first connection", func() bool {
				e.srv.mu.Lock()
				defer e.srv.mu.Unlock()
				return e.srv.open == 1
			})
			c4 := e.dial()
			c4.must(250, "EHLO client.example")
			c2.must(221, "QUIT")
			c4.must(221, "QUIT")
			waitFor(t, "every connection let go of", func() bool {
				e.srv.mu.Lock()
				defer e.srv.mu.Unlock()
				return e.srv.open == 0 && len(e.srv.perClient) == 0
			})
		})
	}
}

// Refused recipients add up across connections; past the limit the
// client is turned away at connect for a window, then welcome again.
func TestBadRecipientsPerClient(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxBadRecipients = 100
		c.MaxBadRecipientsPerClient = 3
		c.BadRecipientWindow = time.Hour
	})
	_, addr := e.newAlias("t@example.com", 3, 0)
	guess := func(c *client, i int) (int, string) {
		return c.cmd("RCPT TO:<guess%d@%s>", i, testDomain)
	}
	c := e.transaction(addr)
	for i := range 2 {
		if code, _ := guess(c, i); code != 550 {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	c.must(221, "QUIT")
	c = e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(550, "RCPT TO:<someone@example.com>") // foreign counts too
	code, msg := guess(c, 3)
	checkReply(t, "fourth refused RCPT", code, msg, "421 4.7.0")
	if !c.closed() {
		t.Error("connection open after 421")
	}

	e.clock.Add(59 * time.Minute)
	_, code, msg = e.rawDial()
	if code != 421 || !strings.HasPrefix(msg, "4.7.0 ") {
		t.Fatalf("within the window: %d %q", code, msg)
	}
	e.clock.Add(time.Minute)
	c = e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	for i := range 3 { // a fresh window
		if code, _ := guess(c, i); code != 550 {
			t.Fatalf("after the window, guess %d: %d", i, code)
		}
	}
	c.must(221, "QUIT")
}

func TestMessagesPerAliasHour(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessagesPerAliasHour = 2 })
	id, addr := e.newAlias("t@example.com", 3, 0)
	_, other := e.newAlias("t@example.com", 3, 0)
	send := func(to string) error {
		return sendMail(e.addr, "s@example.org", []string{to}, "Subject: x\r\n\r\nbody\r\n")
	}
	if err := send(addr); err != nil {
		t.Fatal(err)
	}
	// A failed delivery does not count.
	e.up.fail("END", smtpErr(451, [3]int{4, 3, 0}))
	if err := send(addr); replyCode(err) != 451 {
		t.Fatalf("got %v, want 451", err)
	}
	e.up.fail("END", nil)
	if err := send(addr); err != nil {
		t.Fatal(err)
	}
	reserved, refunded := e.st.reserved.Load(), e.st.refunded.Load()
	err := send(addr)
	if code := replyCode(err); code != 450 || !strings.HasPrefix(err.(*textproto.Error).Msg, "4.7.1 ") {
		t.Fatalf("third message in the hour: %v, want 450 4.7.1", err)
	}
	// The limit is checked once the alias is known alive (so a dead alias
	// answers like an unknown one); the use it reserved is given back.
	if n := (e.st.reserved.Load() - reserved) - (e.st.refunded.Load() - refunded); n != 0 {
		t.Errorf("%d uses kept past the limit", n)
	}
	if err := send(other); err != nil {
		t.Errorf("another alias: %v", err)
	}
	e.clock.Add(time.Hour)
	if err := send(addr); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
	e.settled()
	if used, pending, ok := e.uses(id); !ok || used != 3 || pending != 0 {
		t.Errorf("used %d pending %d alive %v, want 3 0", used, pending, ok)
	}
}

// Transactions under way count against the limit, and give their place
// back when they fail.
func TestMessagesPerAliasHourPending(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessagesPerAliasHour = 1 })
	_, addr := e.newAlias("t@example.com", 3, 0)
	a := e.dial()
	a.must(250, "EHLO a.example")
	a.must(250, "MAIL FROM:<s@example.org>")
	a.must(250, "RCPT TO:<%s>", addr)
	b := e.dial()
	b.must(250, "EHLO b.example")
	b.must(250, "MAIL FROM:<s@example.org>")
	b.must(450, "RCPT TO:<%s>", addr)
	a.must(250, "RSET")
	b.must(250, "RCPT TO:<%s>", addr)
	b.must(354, "DATA")
	b.must(250, "Subject: x\r\n\r\nbody\r\n.")
	a.must(250, "MAIL FROM:<s@example.org>")
	a.must(450, "RCPT TO:<%s>", addr)
}

func TestWindowCountsBounded(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	w := newWindowCounts[string](time.Hour, 1)
	for i := range maxTracked + 100 {
		w.hit(fmt.Sprint(i), now)
	}
	if n := w.size(); n > maxTracked {
		t.Errorf("%d entries, want at most %d", n, maxTracked)
	}
	// Expired entries go at the next sweep, blocked ones once unblocked.
	w.hit("x", now)
	w.hit("x", now.Add(59*time.Minute))
	if !w.blocked("x", now.Add(59*time.Minute)) {
		t.Fatal("x not blocked")
	}
	w.hit("y", now.Add(time.Hour))
	if n := w.size(); n != 2 {
		t.Errorf("%d entries an hour later, want x (blocked) and y", n)
	}
	w.hit("z", now.Add(2*time.Hour))
	if n := w.size(); n != 1 || w.blocked("x", now.Add(2*time.Hour)) {
		t.Errorf("%d entries two hours later, want only z", n)
	}
}

func (w *windowCounts[K]) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
