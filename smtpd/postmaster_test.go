package smtpd

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const testPostmaster = "operator@example.net"

// postmaster@ every alias domain is relayed to Config.Postmaster
// (rfc 5321:4.5.1), from any sender, whatever the case, costing no alias
// anything: one upstream recipient however many domains are named.
func TestPostmaster(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Domains = []string{testDomain, "other.test"}
		c.Postmaster = testPostmaster
	})
	_, addr := e.newAlias("t@example.com", 3, 1)
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<>")
	c.must(250, "RCPT TO:<postmaster@%s>", testDomain)
	c.must(250, "RCPT TO:<PostMaster@OTHER.TEST>")
	c.must(354, "DATA")
	c.must(250, "Subject: abuse report\r\n\r\nbody\r\n.")
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(250, "RCPT TO:<postmaster@%s>", testDomain)
	c.must(250, "RCPT TO:<%s>", addr)
	c.must(354, "DATA")
	c.must(250, "Subject: both\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")

	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages, want 2", len(msgs))
	}
	if got := msgs[0].rcpts; !slices.Equal(got, []string{testPostmaster}) {
		t.Errorf("first message went to %q, want only %s", got, testPostmaster)
	}
	if got := msgs[1].rcpts; !slices.Equal(got, []string{testPostmaster, "t@example.com"}) {
		t.Errorf("second message went to %q", got)
	}
	// One reservation, the alias's: postmaster costs none.
	if cm, f := e.settled(); cm != 1 || f != 0 {
		t.Errorf("%d committed, %d refunded; want the alias's one use committed", cm, f)
	}
	if r := e.st.reserved.Load(); r != 1 {
		t.Errorf("%d reservations, want 1 (the alias's)", r)
	}
	if logs := e.logs.String(); strings.Contains(logs, "postmaster@ the alias domains is refused") {
		t.Errorf("start-up says postmaster is refused although it is set:\n%s", logs)
	}
}

// RCPT TO:<Postmaster> without a domain must be accepted (rfc 5321:4.5.1,
// the syntax in 4.1.1.3): it is the postmaster of the alias domains, the
// same mailbox as postmaster@ each of them.
func TestPostmasterWithoutDomain(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Postmaster = testPostmaster })
	c := e.transaction()
	c.must(250, "RCPT TO:<Postmaster>")
	c.must(250, "RCPT TO:<postmaster@%s>", testDomain)
	c.must(354, "DATA")
	c.must(250, "Subject: abuse report\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")
	msgs := e.up.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].rcpts, []string{testPostmaster}) {
		t.Fatalf("smarthost got %+v, want one message to %s alone", msgs, testPostmaster)
	}
}

// Mail to postmaster has the hourly bound of SRS bounces: past it the
// sender is told to retry (450), and the next hour it is accepted again.
// A transaction that did not deliver does not count.
func TestPostmasterHourlyBound(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Postmaster = testPostmaster
		c.MaxMessagesPerAliasHour = 2
	})
	pm := "postmaster@" + testDomain
	// Given up at RSET: not counted.
	c := e.transaction(pm)
	c.must(250, "RSET")
	for i := range 2 {
		if err := sendMail(e.addr, "s@example.org", []string{pm}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(450, "RCPT TO:<%s>", pm)
	e.clock.Add(time.Hour)
	c.must(250, "RCPT TO:<%s>", pm)
	c.must(221, "QUIT")
	if n := len(e.up.messages()); n != 2 {
		t.Errorf("smarthost got %d messages, want 2", n)
	}
}

// Without Config.Postmaster, postmaster@ is refused like an unknown
// alias, and the server says so once when it is made.
func TestPostmasterUnset(t *testing.T) {
	e := newEnv(t, nil)
	c := e.transaction()
	c.must(550, "RCPT TO:<postmaster@%s>", testDomain)
	c.must(550, "RCPT TO:<Postmaster>")
	c.must(221, "QUIT")
	if n := strings.Count(e.logs.String(), "postmaster@ the alias domains is refused"); n != 1 {
		t.Errorf("start-up said %d times that postmaster is refused, want once:\n%s", n, e.logs.String())
	}
}
