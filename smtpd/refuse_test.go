package smtpd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// Recipients refused at RCPT, without a use reserved and without the
// smarthost ever hearing of them.
func TestRefuseRecipients(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBadRecipients = 100 })
	_, live := e.newAlias("t@example.com", 3, 0)
	now := e.clock.Now()
	ctx := context.Background()
	c, err := e.st.Create(ctx, alias.Spec{Target: "t@example.com", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	revoked := c.Alias
	if err := e.st.Revoke(ctx, revoked.ID, c.Token, now); err != nil {
		t.Fatal(err)
	}
	usedUpID, usedUp := e.newAlias("t@example.com", 3, 1)
	r, err := e.st.Store.Reserve(ctx, usedUpID, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx, now); err != nil {
		t.Fatal(err)
	}
	liveLocal := strings.TrimSuffix(live, "@"+testDomain)

	for _, tc := range []struct {
		name, rcpt, want string
	}{
		{"foreign domain", "<someone@example.com>", "550 5.7.1"},
		{"foreign domain with our alias id", "<" + liveLocal + "@example.com>", "550 5.7.1"},
		{"subdomain of ours", "<" + liveLocal + "@sub." + testDomain + ">", "550 5.7.1"},
		{"unknown", "<zzzzzzzzzz@" + testDomain + ">", "550 5.1.1"},
		{"not an id", "<postmaster@" + testDomain + ">", "550 5.1.1"},
		{"revoked", "<" + revoked.ID + "@" + testDomain + ">", "550 5.1.1"},
		{"used up", "<" + usedUp + ">", "550 5.1.1"},
		{"percent hack", "<t%example.com@" + testDomain + ">", "553 5.1.3"},
		{"bang path", "<example.com!t@" + testDomain + ">", "553 5.1.3"},
		{"quoted with space", `<"a b"@` + testDomain + ">", "553 5.1.3"},
		{"quoted with angle", `<"a>b"@` + testDomain + ">", "553 5.1.3"},
		{"NUL", "<a\x00b@" + testDomain + ">", "553 5.1.3"},
		{"non-ASCII", "<jö@" + testDomain + ">", "553 5.1.3"},
		{"local part over 64", "<" + strings.Repeat("a", 65) + "@" + testDomain + ">", "553 5.1.3"},
		{"path over 256", "<a@" + strings.Repeat("b.", 130) + testDomain + ">", "553 5.1.3"},
		{"address literal", "<a@[127.0.0.1]>", "553 5.1.3"},
		{"no domain", "<someone>", "501 5.5.2"}, // <Postmaster> alone is allowed: postmaster_test.go
		{"unbracketed junk", "<a@b> <c@d>", "500 5.5.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.must(250, "MAIL FROM:<s@example.org>")
			code, msg := c.cmd("RCPT TO:%s", tc.rcpt)
			checkReply(t, "RCPT", code, msg, tc.want)
			c.must(221, "QUIT")
		})
	}
	if n := e.up.sessions.Load(); n != 0 {
		t.Errorf("smarthost contacted %d times for refused recipients", n)
	}
	if r := e.st.reserved.Load(); r != 0 {
		t.Errorf("%d uses reserved for refused recipients", r)
	}
}

func TestRefuseSenders(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ from, want string }{
		{"<>", "250"},
		{"<s@example.org>", "250"},
		{"<s%t@example.org>", "553 5.1.7"},
		{"<a!s@example.org>", "553 5.1.7"},
		{`<"a b"@example.org>`, "553 5.1.7"},
		{"<a\x01b@example.org>", "553 5.1.7"},
		{"<ü@example.org>", "553 5.1.7"},
		{"<" + strings.Repeat("a", 65) + "@example.org>", "553 5.1.7"},
		{"<s@[192.0.2.1]>", "553 5.1.7"},
	} {
		c := e.dial()
		c.must(250, "EHLO client.example")
		code, msg := c.cmd("MAIL FROM:%s", tc.from)
		checkReply(t, "MAIL FROM:"+tc.from, code, msg, tc.want)
		c.must(221, "QUIT")
	}
}

// go-smtp drops a source route before the session sees the path, which is
// what rfc 5321:4.1.1.3 and appendix C ask of a server; the route never
// reaches the smarthost.
func TestSourceRoute(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 3, 0)
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<@relay.example:s@example.org>")
	c.must(550, "RCPT TO:<@%s:victim@example.com>", testDomain)
	c.must(250, "RCPT TO:<@relay.example,@other.example:%s>", addr)
	c.must(354, "DATA")
	c.must(250, "Subject: x\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")
	msgs := e.up.messages()
	if len(msgs) != 1 || msgs[0].from != "s@example.org" || strings.Join(msgs[0].rcpts, ",") != "t@example.com" {
		t.Fatalf("smarthost got %+v", msgs)
	}
}

func TestTooManyBadRecipients(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBadRecipients = 3 })
	_, addr := e.newAlias("t@example.com", 3, 1)
	c := e.transaction(addr)
	for i := range 3 {
		c.must(550, "RCPT TO:<guess%d@%s>", i, testDomain)
	}
	code, msg := c.cmd("RCPT TO:<guess9@%s>", testDomain)
	checkReply(t, "RCPT", code, msg, "421 4.7.0")
	if !c.closed() {
		t.Error("connection still open after 421")
	}
	if cm, f := e.settled(); cm != 0 || f != 1 {
		t.Errorf("%d committed, %d refunded; want 0, 1", cm, f)
	}
}

// Message bodies that must never be relayed. The refusal comes after the
// end of data as the client sends it; the smarthost sees at most a
// truncated transfer and no final dot.
func TestRefuseBodies(t *testing.T) {
	received := strings.Repeat("Received: from a by b; Sat, 01 Mar 2025 12:00:00 +0000\r\n", 51)
	for _, tc := range []struct {
		name string
		body string // what follows DATA, up to and including the client's end of data
		want string
		// closes is whether tempalias hangs up after the reply.
		closes bool
	}{
		{"bare LF", "Subject: x\r\n\r\nline\nline\r\n.\r\n", "554 5.6.0", true},
		{"bare LF header", "Subject: x\nFrom: y\r\n\r\nbody\r\n.\r\n", "554 5.6.0", true},
		{"bare CR", "Subject: x\r\n\r\nline\rline\r\n.\r\n", "554 5.6.0", true},
		// The 2023 smuggling sequences: a receiver that takes <LF>.<LF> or
		// <CR>.<CR> for the end of data would see a second message.
		{"LF.LF smuggling", "Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<t@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n.\r\n", "554 5.6.0", true},
		{"CR.CR smuggling", "Subject: x\r\n\r\nhello\r.\rMAIL FROM:<evil@example.org>\r\nRCPT TO:<t@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n.\r\n", "554 5.6.0", true},
		{"CRLF.CR smuggling", "Subject: x\r\n\r\nhello\r\n.\rMAIL FROM:<evil@example.org>\r\nDATA\r\nboo\r\n.\r\n", "554 5.6.0", true},
		{"LF.CRLF smuggling", "Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.org>\r\nDATA\r\nboo\r\n.\r\n", "554 5.6.0", true},
		{"51 Received", received + "Subject: loop\r\n\r\nbody\r\n.\r\n", "554 5.4.6", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			id, addr := e.newAlias("t@example.com", 3, 0)
			c := e.transaction(addr)
			c.must(354, "DATA")
			c.send(tc.body)
			code, msg := c.reply()
			checkReply(t, "DATA", code, msg, tc.want)
			if tc.closes {
				if !c.closed() {
					t.Error("connection still open")
				}
			} else {
				c.must(221, "QUIT")
			}
			e.nothingDelivered(t, id)
		})
	}
}

// go-smtp's data reader takes the second CR of CR CR for the middle of a
// line, so it never sees the end of data after "<CR><CR><LF>". That bare CR
// gets its 554 at once, not after the read timeout, and the use comes back.
func TestCRCRBeforeEndOfData(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"CR CR LF . CR LF", "Subject: x\r\n\r\nbody\r\r\n.\r\n"},
		{". CR CR LF . CR LF", "Subject: x\r\n\r\nbody\r\n.\r\r\n.\r\n"},
		{"in the header", "Subject: x\r\r\n\r\nbody\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Far longer than the wait for the reply below: without the
			// fix the reply comes only when the server gives up reading.
			e := newEnv(t, func(c *Config) { c.ReadTimeout = time.Minute })
			id, addr := e.newAlias("t@example.com", 3, 1)
			c := e.transaction(addr)
			c.must(354, "DATA")
			c.send(tc.body)
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			code, msg := c.reply()
			checkReply(t, "DATA", code, msg, "554 5.6.0")
			if !c.closed() {
				t.Error("connection still open")
			}
			e.nothingDelivered(t, id)
		})
	}
	// The same with the whole transaction in one write, read by the
	// server before it handled MAIL.
	t.Run("pipelined", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.ReadTimeout = time.Minute })
		id, addr := e.newAlias("t@example.com", 3, 1)
		c := e.dial()
		c.must(250, "EHLO client.example")
		c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<" + addr + ">\r\nDATA\r\nSubject: x\r\n\r\nbody\r\r\n.\r\n")
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for _, want := range []int{250, 250, 354} {
			c.expect(want)
		}
		code, msg := c.reply()
		checkReply(t, "DATA", code, msg, "554 5.6.0")
		e.nothingDelivered(t, id)
	})
}

// Fifty Received headers are fine, and so is a dot-stuffed line.
func TestAcceptFiftyReceived(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 3, 0)
	msg := strings.Repeat("Received: from a by b; Sat, 01 Mar 2025 12:00:00 +0000\r\n", 50) + "Subject: ok\r\n\r\n..dot\r\nbody\r\n"
	c := e.transaction(addr)
	c.must(354, "DATA")
	c.send(msg + ".\r\n")
	c.expect(250)
	c.must(221, "QUIT")
	msgs := e.up.messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	if _, rest := stripTrace(t, msgs[0].body, addr); string(rest) != strings.Replace(msg, "..dot", ".dot", 1) {
		t.Errorf("body %q", rest)
	}
}

// Mail refused for a used-up alias is counted for its token holder, and
// the refusal is the same 550 5.1.1 as for an unknown alias.
func TestRefusedAfterDeathCounted(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now()
	c, err := e.st.Create(context.Background(), alias.Spec{Target: "t@example.com", Expires: now.Add(24 * time.Hour), MaxUsage: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	a, token := c.Alias, c.Token
	addr := a.ID + "@" + testDomain
	if err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	e.settled()
	cl := e.dial()
	cl.must(250, "EHLO client.example")
	cl.must(250, "MAIL FROM:<s@example.org>")
	for range 3 {
		cl.must(550, "RCPT TO:<%s>", strings.ToUpper(addr))
	}
	cl.must(221, "QUIT")
	got, err := e.st.Authorized(context.Background(), a.ID, token, e.clock.Now())
	if err != nil || got.Used != 1 || got.Refused != 3 {
		t.Fatalf("holder sees %+v, %v; want 1 relayed, 3 refused", got, err)
	}
}
