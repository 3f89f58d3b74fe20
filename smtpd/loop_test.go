package smtpd

import (
	"strings"
	"testing"
)

// One Delivered-To per alias, under the Received header, when the
// transaction has one target; none when it has several, so that no
// target learns another's alias.
func TestDeliveredTo(t *testing.T) {
	e := newEnv(t, nil)
	_, a1 := e.newAlias("t@example.com", 3, 0)
	_, a2 := e.newAlias("t@example.com", 3, 0)
	_, a3 := e.newAlias("u@example.net", 3, 0)
	msg := "Subject: x\r\n\r\nbody\r\n"

	if err := sendMail(e.addr, "s@example.org", []string{a1, strings.ToUpper(a1), a2}, msg); err != nil {
		t.Fatal(err)
	}
	if err := sendMail(e.addr, "s@example.org", []string{a1, a3}, msg); err != nil {
		t.Fatal(err)
	}
	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	if _, rest := stripTrace(t, msgs[0].body, a1, a2); string(rest) != msg {
		t.Errorf("one target: after the trace %q", rest)
	}
	if _, rest := stripTrace(t, msgs[1].body); string(rest) != msg {
		t.Errorf("two targets: after Received %q, want the message as sent", rest)
	}
}

// A message that already carries Delivered-To for one of the
// transaction's aliases went round in a loop: 554 5.4.6, nothing
// completed upstream, the use refunded. The looping message is exactly
// what tempalias sent out the first time.
func TestDeliveredToLoop(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 5)
	_, other := e.newAlias("t@example.com", 3, 5)
	if err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	first := string(e.up.messages()[0].body)

	for _, tc := range []struct{ name, msg string }{
		{"as sent out", first},
		{"upper case, folded, deeper down", "Received: from a by b; Sat, 01 Mar 2025 12:00:00 +0000\r\nDelivered-To:\r\n <" + strings.ToUpper(addr) + ">\r\nSubject: x\r\n\r\nbody\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.up.messages())
			c := e.transaction(other, addr)
			c.must(354, "DATA")
			code, msg := c.cmd("%s.", tc.msg)
			checkReply(t, "DATA", code, msg, "554 5.4.6")
			c.must(221, "QUIT")
			if n := len(e.up.messages()) - before; n != 0 {
				t.Errorf("smarthost completed %d messages", n)
			}
		})
	}
	e.settled()
	if used, pending, ok := e.uses(id); !ok || used != 1 || pending != 0 {
		t.Errorf("used %d pending %d alive %v, want 1 0", used, pending, ok)
	}
	// Another alias's Delivered-To is no loop.
	if err := sendMail(e.addr, "s@example.org", []string{other}, first); err != nil {
		t.Fatalf("message with another alias's Delivered-To: %v", err)
	}
}
