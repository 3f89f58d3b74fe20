package smtpd

import (
	"strings"
	"testing"
	"time"
)

// Mail to an SRS address from anyone but the null sender is refused like
// an unknown alias: otherwise every address we ever rewrote would relay
// to its original sender for three weeks. Genuine bounces are held to an
// hourly limit per SRS address.
func TestSRSOnlyFromNullSender(t *testing.T) {
	e, r := srsEnv(t)
	addr, err := r.Forward("victim@foreign.example", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	before := len(e.up.messages())
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<spammer@spam.example>")
	c.must(550, "RCPT TO:<%s>", addr)
	c.must(221, "QUIT")
	for i := range 10 {
		c := e.dial()
		c.must(250, "EHLO mta.example")
		c.must(250, "MAIL FROM:<>")
		c.must(250, "RCPT TO:<%s>", addr)
		c.must(354, "DATA")
		c.must(250, "Subject: bounce %d\r\n\r\nbody\r\n.", i)
		c.must(221, "QUIT")
	}
	c = e.dial()
	c.must(250, "EHLO mta.example")
	c.must(250, "MAIL FROM:<>")
	if code, _ := c.cmd("RCPT TO:<%s>", addr); code != 450 {
		t.Fatalf("eleventh bounce in an hour: %d, want 450", code)
	}
	c.must(221, "QUIT")
	if n := len(e.up.messages()) - before; n != 10 {
		t.Fatalf("smarthost got %d messages, want the 10 bounces", n)
	}
}

// The hourly bound on bounces holds for the original sender, however its
// SRS address is spelled: Reverse takes any separator after the tag, any
// characters after the four of the hash, and an address of any of the
// last 21 days, so bounds per SRS address as written were as many bounds
// as an attacker cared to spell, each another 10 bounces an hour at
// someone who once sent to an alias.
func TestSRSBounceLimitPerSender(t *testing.T) {
	e, r := srsEnv(t, func(c *Config) { c.MaxMessagesPerAliasHour = 2 })
	now := e.clock.Now()
	addr, err := r.Forward("victim@foreign.example", now)
	if err != nil {
		t.Fatal(err)
	}
	older, err := r.Forward("victim@foreign.example", now.Add(-3*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// SRS0=HHHH=TT=foreign.example=victim@tempalias.test
	spellings := []string{
		addr,
		addr[:9] + "x" + addr[9:], // after the hash
		"SRS0+" + addr[5:],        // another separator
		older,                     // another day
		strings.Replace(addr, "victim", "VICTIM", 1), // the same mailbox
	}
	for _, a := range spellings[1:4] {
		if orig, err := r.Reverse(a, now); err != nil || orig != "victim@foreign.example" {
			t.Fatalf("Reverse(%q) = %q, %v", a, orig, err)
		}
	}
	before := len(e.up.messages())
	for i, a := range spellings {
		c := e.dial()
		c.must(250, "EHLO mta.example")
		c.must(250, "MAIL FROM:<>")
		code, msg := c.cmd("RCPT TO:<%s>", a)
		if i < 2 {
			checkReply(t, "RCPT "+a, code, msg, "250")
			c.must(354, "DATA")
			c.must(250, "Subject: bounce %d\r\n\r\nbody\r\n.", i)
		} else {
			checkReply(t, "RCPT "+a, code, msg, "450 4.7.1")
		}
		c.must(221, "QUIT")
	}
	if n := len(e.up.messages()) - before; n != 2 {
		t.Errorf("smarthost got %d bounces for one sender, want 2 (the hourly bound)", n)
	}
}

// A BDAT LAST chunk cut short by a disconnect is never completed upstream
// and costs no use.
func TestBDATTruncatedByDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 5)
	c := e.transaction(addr)
	c.send("BDAT 100000 LAST\r\nSubject: wire transfer\r\n\r\nPlease pay to account 1234\r\n")
	c.conn.Close()
	e.nothingDelivered(t, id)
}

// A BDAT chunk that stops arriving ends in our 421 and a hang-up, never
// in go-smtp's own reply, which carried the Go error ("read tcp …: i/o
// timeout") to the client; nothing is completed upstream.
func TestBDATStallReply(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	id, addr := e.newAlias("t@example.com", 3, 5)
	c := e.transaction(addr)
	c.send("BDAT 100000 LAST\r\nSubject: x\r\n\r\npart of it\r\n")
	code, msg := c.reply()
	if code != 421 || msg != "4.4.2 Timeout, closing connection" {
		t.Fatalf("stalled chunk: %d %q, want 421 4.4.2 Timeout, closing connection", code, msg)
	}
	if !c.closed() {
		t.Fatal("still open after the 421")
	}
	e.nothingDelivered(t, id)
}

// A transaction that idles between commands is ended after
// TransactionTimeout: its reservation comes back.
func TestTransactionTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TransactionTimeout = 300 * time.Millisecond })
	id, addr := e.newAlias("t@example.com", 3, 1)
	c := e.transaction(addr)
	// NOOPs keep every per-command timeout happy; the transaction's own
	// limit still ends it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.send("NOOP\r\n")
		code, msg := c.reply()
		if code == 421 {
			if msg != "4.4.2 mx.tempalias.test Transaction took too long, closing connection" {
				t.Fatalf("421 %q", msg)
			}
			break // the server says why, then hangs up
		}
		if code != 250 {
			t.Fatalf("NOOP: %d %s", code, msg)
		}
		if time.Now().After(deadline) {
			t.Fatal("the transaction outlived its timeout by far")
		}
		time.Sleep(50 * time.Millisecond) // a slow client's pace, not synchronisation
	}
	if !c.closed() {
		t.Fatal("still open after the 421")
	}
	if _, refunded := e.settled(); refunded != 1 {
		t.Fatalf("refunded %d, want 1", refunded)
	}
	if used, pending, ok := e.uses(id); !ok || used != 0 || pending != 0 {
		t.Fatalf("used %d pending %d alive %v", used, pending, ok)
	}
}

// With the hourly limit on, a used-up alias answers exactly like an
// unknown one, not with the limit's 450.
func TestHourlyLimitIsNoOracle(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessagesPerAliasHour = 2 })
	_, addr := e.newAlias("t@example.com", 3, 2)
	for range 2 {
		if err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	e.settled()
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	_, dead := c.cmd("RCPT TO:<%s>", addr)
	_, unknown := c.cmd("RCPT TO:<%s>", "zzzzzz@"+testDomain)
	if dead != unknown || !strings.HasPrefix(dead, "5.1.1") {
		t.Fatalf("used-up alias %q, unknown alias %q: want the same 550 5.1.1", dead, unknown)
	}
}
