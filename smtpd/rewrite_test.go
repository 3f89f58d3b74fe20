package smtpd

import (
	"strings"
	"testing"
)

func TestRewriteFrom(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RewriteFrom = true })
	_, a1 := e.newAlias("t@example.com", 3, 0)
	_, a2 := e.newAlias("t@example.com", 3, 0)
	_, a3 := e.newAlias("u@example.net", 3, 0)

	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<alice@example.org>")
	c.must(250, "RCPT TO:<%s>", a1)
	c.must(250, "RCPT TO:<%s>", a2) // the same target
	// Another target would see a1 in From: it waits for a transaction
	// of its own (rfc 5321:4.5.3.1.10), and costs no use.
	code, msg := c.cmd("RCPT TO:<%s>", a3)
	checkReply(t, "RCPT", code, msg, "452 4.5.3")
	c.must(354, "DATA")
	c.must(250, "%s", "From: Alice Example <alice@example.org>\r\nTo: "+a1+"\r\nSubject: hi\r\n\r\nFrom: not a header\r\n.")
	c.must(250, "MAIL FROM:<alice@example.org>")
	c.must(250, "RCPT TO:<%s>", a3)
	c.must(354, "DATA")
	c.must(250, "%s", "From: alice@example.org\r\nReply-To: list@example.org\r\nSubject: again\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")

	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	if got := strings.Join(msgs[0].rcpts, ","); got != "t@example.com" {
		t.Errorf("first transaction to %s", got)
	}
	_, rest := stripTrace(t, msgs[0].body, a1, a2)
	want := "From: \"Alice Example via tempalias\" <" + a1 + ">\r\nTo: " + a1 + "\r\nSubject: hi\r\n" +
		"Reply-To: Alice Example <alice@example.org>\r\n\r\nFrom: not a header\r\n"
	if string(rest) != want {
		t.Errorf("first message\n got %q\nwant %q", rest, want)
	}
	_, rest = stripTrace(t, msgs[1].body, a3)
	want = "From: \"alice at example.org via tempalias\" <" + a3 + ">\r\nReply-To: list@example.org\r\nSubject: again\r\n\r\nbody\r\n"
	if string(rest) != want {
		t.Errorf("second message\n got %q\nwant %q", rest, want)
	}
	if c, f := e.settled(); c != 3 || f != 1 {
		t.Errorf("%d committed, %d refunded; want 3, 1 (the 452)", c, f)
	}
}

// A bounce has no alias: its From becomes the SRS address it came to,
// which is in our domain too.
func TestRewriteFromBounce(t *testing.T) {
	e, r := srsEnv(t, func(c *Config) { c.RewriteFrom = true })
	bounceTo, err := r.Forward("alice@example.org", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<>")
	c.must(250, "RCPT TO:<%s>", bounceTo)
	c.must(354, "DATA")
	c.must(250, "%s", "From: Mail Delivery System <MAILER-DAEMON@example.net>\r\nSubject: Undelivered\r\n\r\nsorry\r\n.")
	c.must(221, "QUIT")
	msgs := e.up.messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	_, rest := stripTrace(t, msgs[0].body)
	want := "From: \"Mail Delivery System via tempalias\" <" + bounceTo + ">\r\nSubject: Undelivered\r\n" +
		"Reply-To: Mail Delivery System <MAILER-DAEMON@example.net>\r\n\r\nsorry\r\n"
	if string(rest) != want {
		t.Errorf("\n got %q\nwant %q", rest, want)
	}
}

// A DATA message arrives dot-stuffed (rfc 5321:4.5.2): a line the client
// sends as ".From: x" is "From: x" in the message, and ". x" is a
// continuation line. The header filter looks at the message, not at its
// stuffing, so neither slips a From past the rewrite, and a stuffed fold
// at the very top cannot continue our Received header.
func TestDotStuffedHeaderLines(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RewriteFrom = true })
	_, a := e.newAlias("t@example.com", 3, 0)
	for _, tc := range []struct{ name, sent, want string }{
		{"stuffed From",
			".From: Mallory <m@evil.example>\r\nSubject: hi\r\n\r\nbody\r\n",
			"From: \"Mallory via tempalias\" <" + a + ">\r\nSubject: hi\r\nReply-To: Mallory <m@evil.example>\r\n\r\nbody\r\n"},
		{"stuffed continuation of From",
			"From: Alice <alice@example.org>\r\n. , Mallory <m@evil.example>\r\nSubject: hi\r\n\r\nbody\r\n",
			"From: \"Alice via tempalias\" <" + a + ">\r\nSubject: hi\r\nReply-To: Alice <alice@example.org>\r\n , Mallory <m@evil.example>\r\n\r\nbody\r\n"},
		{"stuffed Reply-To",
			"From: Alice <alice@example.org>\r\n.Reply-To: list@example.org\r\n\r\nbody\r\n",
			"From: \"Alice via tempalias\" <" + a + ">\r\nReply-To: list@example.org\r\n\r\nbody\r\n"},
		{"a dot line that is no field",
			"From: Alice <alice@example.org>\r\n..From: x\r\n\r\nbody\r\n",
			"From: \"Alice via tempalias\" <" + a + ">\r\n.From: x\r\nReply-To: Alice <alice@example.org>\r\n\r\nbody\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.up.messages())
			c := e.transaction(a)
			c.must(354, "DATA")
			c.must(250, "%s", tc.sent+".")
			c.must(221, "QUIT")
			msgs := e.up.messages()
			if len(msgs) != before+1 {
				t.Fatalf("smarthost got %d messages, want %d", len(msgs), before+1)
			}
			if _, rest := stripTrace(t, msgs[before].body, a); string(rest) != tc.want {
				t.Errorf("relayed\n got %q\nwant %q", rest, tc.want)
			}
		})
	}
	t.Run("stuffed fold at the top", func(t *testing.T) {
		before := len(e.up.messages())
		c := e.transaction(a)
		c.must(354, "DATA")
		code, msg := c.cmd("%s", ". injected: into Received\r\nSubject: hi\r\n\r\nbody\r\n.")
		checkReply(t, "DATA", code, msg, "554 5.6.0")
		c.must(221, "QUIT")
		if n := len(e.up.messages()) - before; n != 0 {
			t.Errorf("smarthost completed %d messages", n)
		}
	})
}
