package smtpd

import (
	"encoding/json"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/internal/syncbuf"
)

// txLine is the transaction log line as the JSON handler writes it.
type txLine struct {
	Msg      string        `json:"msg"`
	TX       string        `json:"tx"`
	Outcome  string        `json:"outcome"`
	Code     int           `json:"code"`
	Refused  []rcptRefusal `json:"refused"`
	More     int           `json:"refused_more"`
	Upstream string        `json:"upstream"`
}

// jsonLog is a JSON logger writing into a buffer, and the transaction
// lines found there.
type jsonLog struct{ buf syncbuf.Buffer }

func (j *jsonLog) configure(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&j.buf, nil)) }

// txLines waits for n transaction lines (a transaction that ends at
// QUIT is logged after the 221 went out) and returns them.
func (j *jsonLog) txLines(t *testing.T, n int) []txLine {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []txLine
		for _, l := range strings.Split(strings.TrimSpace(j.buf.String()), "\n") {
			var tl txLine
			if err := json.Unmarshal([]byte(l), &tl); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			if tl.Msg == "smtp transaction" {
				out = append(out, tl)
			}
		}
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline, not synchronisation by sleeping
	}
}

// The transaction's one log line names every refused recipient, why and
// what the client got, and the 250 for the message names the transaction
// that the line and the Received header name too.
func TestTransactionLog(t *testing.T) {
	var logs jsonLog
	e := newEnv(t, func(c *Config) {
		logs.configure(c)
		c.MaxMessagesPerAliasHour = 1
	})
	_, spent := e.newAlias("t@example.com", 3, 1)  // used up below: dead
	_, hourly := e.newAlias("t@example.com", 3, 0) // its one message this hour below
	_, held := e.newAlias("t@example.com", 3, 1)   // its use held by another transaction
	_, good := e.newAlias("t@example.com", 3, 0)
	if err := sendMail(e.addr, "s@example.org", []string{spent, hourly}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	holder := e.transaction(held)

	c := e.transaction()
	c.must(550, "RCPT TO:<nosuchid@%s>", testDomain)
	c.must(550, "RCPT TO:<%s>", spent)
	c.must(550, "RCPT TO:<someone@example.net>")
	c.must(450, "RCPT TO:<%s>", held)
	c.must(450, "RCPT TO:<%s>", hourly)
	c.must(250, "RCPT TO:<%s>", good)
	c.must(354, "DATA")
	msg := c.must(250, "Subject: x\r\n\r\nsecret-body\r\n.")
	c.must(221, "QUIT")
	holder.must(221, "QUIT")
	e.settled()

	m := regexp.MustCompile(`^2\.0\.0 OK: relayed as ([0-9a-f]{12})$`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("250 after the message says %q, want the transaction id", msg)
	}
	id := m[1]
	msgs := e.up.messages()
	if received, _ := stripReceived(t, msgs[len(msgs)-1].body); !strings.Contains(received, " id "+id) {
		t.Errorf("Received header %q does not name transaction %s", received, id)
	}
	var line *txLine
	// The line of the transaction under test was written before its 250.
	for _, l := range logs.txLines(t, 2) {
		if l.TX == id {
			line = &l
		}
	}
	if line == nil {
		t.Fatalf("no transaction line with tx %s:\n%s", id, logs.buf.String())
	}
	local := func(addr string) string { return strings.TrimSuffix(addr, "@"+testDomain) }
	want := []rcptRefusal{
		{Local: "nosuchid", Domain: testDomain, Reason: "unknown-or-dead", Code: 550},
		{Local: local(spent), Domain: testDomain, Reason: "unknown-or-dead", Code: 550},
		{Local: "someone", Domain: "example.net", Reason: "foreign-domain", Code: 550},
		{Local: local(held), Domain: testDomain, Reason: "busy", Code: 450},
		{Local: local(hourly), Domain: testDomain, Reason: "rate-limited", Code: 450},
	}
	if !slices.Equal(line.Refused, want) {
		t.Errorf("refused recipients logged as\n%+v\nwant\n%+v", line.Refused, want)
	}
	if line.Outcome != "delivered" || line.Code != 250 {
		t.Errorf("outcome %q code %d, want delivered 250", line.Outcome, line.Code)
	}
	if logs := logs.buf.String(); strings.Contains(logs, "secret") || strings.Contains(logs, "t@example.com") {
		t.Errorf("log leaks the body or the target:\n%s", logs)
	}
}

// What the smarthost said when it refused goes into the log line, with
// its code and text, and never into the reply.
func TestTransactionLogUpstream(t *testing.T) {
	for _, tc := range []struct {
		stage      string
		refusal    *smtp.SMTPError
		rcpt, data string // the client's replies (checkReply's form)
		logged     string
	}{
		{"MAIL", smtpErr(550, smtp.EnhancedCode{5, 7, 1}), "550 5.7.1", "", "MAIL: 550 5.7.1 secret upstream text t@example.com"},
		{"RCPT", smtpErr(452, smtp.EnhancedCode{4, 2, 2}), "452 4.2.2", "", "RCPT: 452 4.2.2 secret upstream text t@example.com"},
		{"END", smtpErr(554, smtp.EnhancedCode{5, 7, 1}), "250", "554 5.7.1", "end of DATA: 554 5.7.1 secret upstream text t@example.com"},
	} {
		t.Run(tc.stage, func(t *testing.T) {
			var logs jsonLog
			e := newEnv(t, logs.configure)
			e.up.fail(tc.stage, tc.refusal)
			_, addr := e.newAlias("t@example.com", 3, 0)
			c := e.transaction()
			code, msg := c.cmd("RCPT TO:<%s>", addr)
			checkReply(t, "RCPT", code, msg, tc.rcpt)
			if code == 250 {
				c.must(354, "DATA")
				code, msg = c.cmd("Subject: x\r\n\r\nbody\r\n.")
				checkReply(t, "DATA", code, msg, tc.data)
			}
			c.must(221, "QUIT")
			e.settled()
			lines := logs.txLines(t, 1)
			if len(lines) != 1 {
				t.Fatalf("%d transaction lines, want 1", len(lines))
			}
			l := lines[0]
			if tc.stage == "END" {
				if l.Upstream != tc.logged || len(l.Refused) != 0 {
					t.Errorf("logged upstream %q, refused %+v; want %q", l.Upstream, l.Refused, tc.logged)
				}
				return
			}
			want := []rcptRefusal{{Local: strings.TrimSuffix(addr, "@"+testDomain), Domain: testDomain, Reason: "upstream", Code: tc.refusal.Code, Upstream: tc.logged}}
			if !slices.Equal(l.Refused, want) {
				t.Errorf("refused logged as %+v, want %+v", l.Refused, want)
			}
		})
	}
}

// With the text handler the refused recipients are one quoted value.
func TestRefusalsText(t *testing.T) {
	var b strings.Builder
	l := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	l.Info("x", "refused", refusals{
		refusedRcpt("abc@"+testDomain, errNoSuchUser, 550),
		refusedRcpt("a b@example.net", errRelayDenied, 550),
		refusedRcpt("xyz@"+testDomain, &upstreamError{"RCPT", smtpErr(550, smtp.EnhancedCode{5, 1, 1})}, 550),
	}, "none", refusals(nil))
	want := `level=INFO msg=x refused="abc@tempalias.test unknown-or-dead 550, a b@example.net foreign-domain 550, xyz@tempalias.test upstream 550 (RCPT: 550 5.1.1 secret upstream text t@example.com)" none=""` + "\n"
	if b.String() != want {
		t.Errorf("logged\n%s\nwant\n%s", b.String(), want)
	}
}

// The refusals a transaction keeps for its log line are bounded: only the
// unknown, foreign and malformed recipients end the connection after
// MaxBadRecipients, so a client naming a busy alias again and again, for
// as long as TransactionTimeout lets it, made the transaction hold one
// more entry (and its command line) for each, without limit.
func TestRefusalsLoggedBounded(t *testing.T) {
	var logs jsonLog
	e := newEnv(t, logs.configure)
	_, held := e.newAlias("t@example.com", 3, 1)
	holder := e.transaction(held) // holds the one use: the alias is busy

	const n = 3 * maxRefusalsLogged
	c := e.transaction()
	var cmds strings.Builder
	for range n {
		cmds.WriteString("RCPT TO:<" + held + ">\r\n")
	}
	c.send(cmds.String())
	for i := range n {
		if code, msg := c.reply(); code != 450 {
			t.Fatalf("RCPT %d: %d %s, want 450", i, code, msg)
		}
	}
	c.must(221, "QUIT")
	holder.must(221, "QUIT")
	e.settled()

	var line *txLine
	for _, l := range logs.txLines(t, 2) {
		if len(l.Refused) > 0 {
			line = &l
		}
	}
	if line == nil {
		t.Fatalf("no transaction line with refusals:\n%s", logs.buf.String())
	}
	if len(line.Refused) != maxRefusalsLogged || line.More != n-maxRefusalsLogged {
		t.Errorf("log line holds %d refusals and counts %d more; want %d and %d", len(line.Refused), line.More, maxRefusalsLogged, n-maxRefusalsLogged)
	}
}
