package smtpd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// headerValues returns the values of the fields named name in the header
// of msg.
func headerValues(t *testing.T, msg []byte, name string) []string {
	t.Helper()
	hdr, _, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no header in %q", msg)
	}
	var out []string
	for _, line := range strings.Split(string(hdr), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func (e *env) create(spec alias.Spec) store.Created {
	e.t.Helper()
	now := e.clock.Now()
	if spec.Target == "" {
		spec.Target = "t@example.com"
	}
	if spec.Expires.IsZero() {
		spec.Expires = now.Add(3 * 24 * time.Hour)
	}
	c, err := e.st.Create(context.Background(), spec, now)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// Each relayed message for one alias tells its holder the alias's state:
// expiry, what it relays after this message, and the revoke link.
func TestStateHeaders(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RevokeLink = func(id string) string { return "https://tempalias.test/revoke/" + id + "/mac" }
	})
	c := e.create(alias.Spec{MaxUsage: 3})
	addr := c.Alias.ID + "@" + testDomain
	msg := "Subject: hi\r\n\r\nbody\r\n"
	for i := range 3 {
		if err := sendMail(e.addr, "s@example.org", []string{addr}, msg); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	msgs := e.up.messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages relayed", len(msgs))
	}
	exp := c.Alias.Expires.UTC().Format(time.RFC3339)
	for i, m := range msgs {
		want := map[string][]string{
			"X-Tempalias-Expires":   {exp},
			"X-Tempalias-Remaining": {string(rune('2' - i))},
			"X-Tempalias-Revoke":    {"https://tempalias.test/revoke/" + c.Alias.ID + "/mac"},
		}
		for name, v := range want {
			if got := headerValues(t, m.body, name); !slices.Equal(got, v) {
				t.Errorf("message %d: %s %q, want %q", i+1, name, got, v)
			}
		}
		// Prepended: the message as sent follows, byte for byte.
		if _, rest := stripTrace(t, m.body, addr); string(rest) != msg {
			t.Errorf("message %d: %q after the added fields", i+1, rest)
		}
	}

	// Without a limit by count: no Remaining. Two aliases in one
	// transaction: no state at all (neither target learns of the other).
	unlimited := e.create(alias.Spec{})
	other := e.create(alias.Spec{Target: "u@example.com", MaxUsage: 5})
	uAddr, oAddr := unlimited.Alias.ID+"@"+testDomain, other.Alias.ID+"@"+testDomain
	if err := sendMail(e.addr, "s@example.org", []string{uAddr}, msg); err != nil {
		t.Fatal(err)
	}
	if err := sendMail(e.addr, "s@example.org", []string{uAddr, oAddr}, msg); err != nil {
		t.Fatal(err)
	}
	msgs = e.up.messages()
	if got := headerValues(t, msgs[3].body, "X-Tempalias-Remaining"); got != nil {
		t.Errorf("unlimited alias: Remaining %q", got)
	}
	if got := headerValues(t, msgs[3].body, "X-Tempalias-Expires"); !slices.Equal(got, []string{unlimited.Alias.Expires.UTC().Format(time.RFC3339)}) {
		t.Errorf("unlimited alias: Expires %q", got)
	}
	for _, name := range []string{"X-Tempalias-Expires", "X-Tempalias-Remaining", "X-Tempalias-Revoke"} {
		if got := headerValues(t, msgs[4].body, name); got != nil {
			t.Errorf("two aliases: %s %q", name, got)
		}
	}
}

// Without http.public_url there is no revoke link.
func TestStateHeadersNoLink(t *testing.T) {
	e := newEnv(t, nil)
	c := e.create(alias.Spec{MaxUsage: 2})
	if err := sendMail(e.addr, "s@example.org", []string{c.Alias.ID + "@" + testDomain}, "Subject: x\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	m := e.up.messages()[0].body
	if got := headerValues(t, m, "X-Tempalias-Revoke"); got != nil {
		t.Errorf("Revoke %q without a link", got)
	}
	if got := headerValues(t, m, "X-Tempalias-Remaining"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("Remaining %q", got)
	}
}

// A DKIM-signed message still verifies at the smarthost after relay: the
// fields are prepended, nothing signed is touched.
func TestStateHeadersKeepDKIM(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RevokeLink = func(id string) string { return "https://tempalias.test/revoke/" + id + "/mac" }
	})
	c := e.create(alias.Spec{MaxUsage: 2})
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: Shop <orders@shop.example>\r\nTo: " + c.Alias.ID + "@" + testDomain + "\r\nSubject: Your order\r\n" +
		"Date: Sat, 01 Mar 2025 12:00:00 +0000\r\nMessage-ID: <1@shop.example>\r\n\r\nThank you.\r\n.a dot\r\n"
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{
		Domain: "shop.example", Selector: "s1", Signer: priv,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := sendMail(e.addr, "orders@shop.example", []string{c.Alias.ID + "@" + testDomain}, signed.String()); err != nil {
		t.Fatal(err)
	}
	got := e.up.messages()[0].body
	if len(headerValues(t, got, "X-Tempalias-Expires")) != 1 || len(headerValues(t, got, "Received")) != 1 {
		t.Fatalf("relayed without the added fields: %q", got)
	}
	lookup := func(domain string) ([]string, error) {
		if domain != "s1._domainkey.shop.example" {
			t.Errorf("looked up %q", domain)
		}
		return []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(got), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "shop.example" {
		t.Fatalf("verification after relay: %v %+v", err, vs)
	}
	// The check can fail: a change to a signed field breaks it.
	tampered := bytes.Replace(got, []byte("Your order"), []byte("Your 0rder"), 1)
	vs, err = dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 || vs[0].Err == nil {
		t.Fatalf("a tampered message verified: %v %+v", err, vs)
	}
}

// allow-from over a real session: listed senders relay, the others and
// the null sender get the reply of an unknown alias at RCPT, take no use
// and are counted as refused; the log names the reason.
func TestAllowFrom(t *testing.T) {
	e := newEnv(t, nil)
	c := e.create(alias.Spec{MaxUsage: 10, AllowFrom: []string{"shop.example", "friend@mail.example"}})
	addr := c.Alias.ID + "@" + testDomain
	msg := "Subject: x\r\n\r\nx\r\n"
	unknown := sendMail(e.addr, "orders@shop.example", []string{"zzzzzzzz@" + testDomain}, msg)
	for _, tc := range []struct {
		sender string
		ok     bool
	}{
		{"orders@shop.example", true},
		{"news@EU.Shop.Example", true},
		{"Friend@mail.example", true},
		{"other@mail.example", false},
		{"x@notshop.example", false},
		{"", false},
	} {
		err := sendMail(e.addr, tc.sender, []string{addr}, msg)
		if tc.ok {
			if err != nil {
				t.Errorf("sender %q: %v", tc.sender, err)
			}
			continue
		}
		// The very reply of an unknown alias: no oracle.
		if err == nil || err.Error() != unknown.Error() || replyCode(err) != 550 {
			t.Errorf("sender %q: %v, want %v", tc.sender, err, unknown)
		}
	}
	e.settled()
	a, err := e.st.Held(context.Background(), c.Alias.ID, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Used != 3 || a.Pending != 0 || a.Refused != 3 {
		t.Errorf("used %d pending %d refused %d; want 3 0 3", a.Used, a.Pending, a.Refused)
	}
	if n := len(e.up.messages()); n != 3 {
		t.Errorf("smarthost got %d messages", n)
	}
	// Each refused transaction's line is written when its session ends.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(e.logs.String(), "sender-not-allowed 550") != 3; {
		if time.Now().After(deadline) {
			t.Fatalf("log lines with sender-not-allowed: want 3\n%s", e.logs.String())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// lock-sender: two sessions race to be the first sender. Both are
// accepted at RCPT (nothing is locked yet); the store's commit lets one
// lock and deliver, and refuses the other at the end of its data. From
// then on only the winner's domain gets through.
func TestLockSenderRace(t *testing.T) {
	e := newEnv(t, nil)
	c := e.create(alias.Spec{LockSender: true})
	addr := c.Alias.ID + "@" + testDomain
	senders := []string{"a@first.example", "b@second.example"}
	clients := make([]*client, len(senders))
	for i, s := range senders {
		cl := e.dial()
		cl.must(250, "EHLO client.example")
		cl.must(250, "MAIL FROM:<%s>", s)
		cl.must(250, "RCPT TO:<%s>", addr)
		cl.must(354, "DATA")
		clients[i] = cl
	}
	codes := make([]int, len(clients))
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.send("Subject: race\r\n\r\nx\r\n.\r\n")
			codes[i], _ = cl.reply()
		}()
	}
	wg.Wait()
	won := slices.Index(codes, 250)
	if won < 0 || slices.Index(codes[won+1:], 250) >= 0 || !slices.Contains(codes, 550) {
		t.Fatalf("replies %v, want one 250 and one 550", codes)
	}
	e.settled()
	a, err := e.st.Held(context.Background(), c.Alias.ID, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	winner := senders[won][strings.IndexByte(senders[won], '@')+1:]
	if !slices.Equal(a.AllowFrom, []string{winner}) || a.Used != 1 || len(e.up.messages()) != 1 {
		t.Fatalf("allow-from %q, used %d, %d relayed; want [%s], 1, 1", a.AllowFrom, a.Used, len(e.up.messages()), winner)
	}
	loser := senders[1-won]
	err = sendMail(e.addr, loser, []string{addr}, "Subject: x\r\n\r\nx\r\n")
	if replyCode(err) != 550 || !strings.Contains(err.Error(), "5.1.1") {
		t.Errorf("the loser's next message: %v", err)
	}
	if err := sendMail(e.addr, "c@mail."+winner, []string{addr}, "Subject: x\r\n\r\nx\r\n"); err != nil {
		t.Errorf("a subdomain of the winner: %v", err)
	}
	// The null sender never locks.
	c2 := e.create(alias.Spec{LockSender: true})
	if err := sendMail(e.addr, "", []string{c2.Alias.ID + "@" + testDomain}, "Subject: bounce\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.st.Held(context.Background(), c2.Alias.ID, e.clock.Now()); len(a.AllowFrom) != 0 {
		t.Errorf("locked by the null sender: %q", a.AllowFrom)
	}
}

// lock-sender locks to the first message delivered: one that the
// smarthost refuses after the commit (a 4xx or 5xx to the final dot) was
// not, so its sender's domain does not stay the alias's allow-from, and
// the next message delivered locks instead.
func TestLockSenderRefusedUpstream(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  error
		data string
	}{
		{"deferred", smtpErr(451, [3]int{4, 7, 1}), "451 4.7.1"},
		{"refused", smtpErr(554, [3]int{5, 7, 1}), "554 5.7.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.create(alias.Spec{LockSender: true, MaxUsage: 3})
			addr := c.Alias.ID + "@" + testDomain
			allowFrom := func() []string {
				t.Helper()
				a, err := e.st.Held(context.Background(), c.Alias.ID, e.clock.Now())
				if err != nil {
					t.Fatal(err)
				}
				return a.AllowFrom
			}
			locked := make(chan []string, 1)
			e.up.mu.Lock()
			e.up.atEnd = func() { locked <- allowFrom() } // the commit has locked by then
			e.up.mu.Unlock()
			e.up.fail("END", tc.end)
			cl := e.dial()
			cl.must(250, "EHLO client.example")
			cl.must(250, "MAIL FROM:<a@refused.example>")
			cl.must(250, "RCPT TO:<%s>", addr)
			cl.must(354, "DATA")
			code, msg := cl.cmd("Subject: x\r\n\r\nbody\r\n.")
			checkReply(t, "DATA", code, msg, tc.data)
			cl.must(221, "QUIT")
			if got := <-locked; !slices.Equal(got, []string{"refused.example"}) {
				t.Fatalf("at the end of data allow-from is %q; want the commit's lock [refused.example]", got)
			}
			e.settled()
			if got := allowFrom(); len(got) != 0 {
				t.Fatalf("after the smarthost's %s the alias stays locked to %q", tc.data, got)
			}

			e.up.mu.Lock()
			e.up.atEnd = nil
			e.up.mu.Unlock()
			e.up.fail("END", nil)
			if err := sendMail(e.addr, "b@delivered.example", []string{addr}, "Subject: x\r\n\r\nx\r\n"); err != nil {
				t.Fatalf("the next message: %v", err)
			}
			e.settled()
			if got := allowFrom(); !slices.Equal(got, []string{"delivered.example"}) {
				t.Fatalf("after the next message allow-from is %q; want [delivered.example]", got)
			}
			err := sendMail(e.addr, "a@refused.example", []string{addr}, "Subject: x\r\n\r\nx\r\n")
			if replyCode(err) != 550 || !strings.Contains(err.Error(), "5.1.1") {
				t.Errorf("the refused message's sender afterwards: %v, want 550 5.1.1", err)
			}
		})
	}
}
