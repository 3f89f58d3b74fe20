package smtpd

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/srs"
)

func srsEnv(t *testing.T, configure ...func(*Config)) (*env, *srs.Rewriter) {
	t.Helper()
	r, err := srs.New(testDomain, []string{"new secret", "old secret"}, srs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, func(c *Config) {
		c.SRS = r
		c.MaxBadRecipients = 100
		for _, f := range configure {
			f(c)
		}
	}), r
}

// The envelope sender goes upstream SRS-rewritten; the null sender stays
// null.
func TestSRSForward(t *testing.T) {
	e, r := srsEnv(t)
	_, addr := e.newAlias("t@example.com", 3, 0)
	for _, from := range []string{"s@example.org", ""} {
		c := e.dial()
		c.must(250, "EHLO client.example")
		c.must(250, "MAIL FROM:<%s>", from)
		c.must(250, "RCPT TO:<%s>", addr)
		c.must(354, "DATA")
		c.must(250, "Subject: x\r\n\r\nbody\r\n.")
		c.must(221, "QUIT")
	}
	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	got := msgs[0].from
	if !strings.HasPrefix(got, "SRS0=") || !strings.HasSuffix(got, "@"+testDomain) {
		t.Errorf("sender upstream %q, want an SRS0 address in our domain", got)
	}
	if orig, err := r.Reverse(got, e.clock.Now()); err != nil || orig != "s@example.org" {
		t.Errorf("Reverse(%q) = %q, %v", got, orig, err)
	}
	if msgs[1].from != "" {
		t.Errorf("null sender became %q", msgs[1].from)
	}
	// What ParseAddress lets through Forward can rewrite (go-smtp has
	// unquoted quoted local parts by then); should that ever change, the
	// sender goes as it is.
	s := &session{srv: e.srv, remote: net.ParseIP("127.0.0.1")}
	if got := s.srsForward("no-at-sign"); got != "no-at-sign" {
		t.Errorf("unrewritable sender became %q", got)
	}
}

// A bounce to a rewritten sender reaches the original sender, in the
// same upstream transaction as any alias, and costs no alias a use.
func TestSRSBounce(t *testing.T) {
	e, r := srsEnv(t)
	_, addr := e.newAlias("t@example.com", 3, 0)
	// A sender with a long domain makes an SRS local part over 64 octets.
	longSender := "someone.with.a.long.name@mail.department.some-long-company-name.example"
	var bounceTo []string
	for _, from := range []string{"s@example.org", longSender} {
		if err := sendMail(e.addr, from, []string{addr}, "Subject: x\r\n\r\nbody\r\n"); err != nil {
			t.Fatal(err)
		}
		msgs := e.up.messages()
		bounceTo = append(bounceTo, msgs[len(msgs)-1].from)
	}
	if l, _, _ := strings.Cut(bounceTo[1], "@"); len(l) <= 64 {
		t.Fatalf("SRS local part %q is not over 64 octets", l)
	}
	reserved := e.st.reserved.Load()
	e.clock.Add(20 * 24 * time.Hour) // SRS addresses live 21 days

	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<>")
	c.must(250, "RCPT TO:<%s>", bounceTo[0])
	c.must(250, "RCPT TO:<%s>", strings.ToLower(bounceTo[1])) // hashes compare without case
	c.must(354, "DATA")
	c.must(250, "Subject: Undelivered Mail Returned to Sender\r\n\r\nbounce\r\n.")
	c.must(221, "QUIT")
	msgs := e.up.messages()
	m := msgs[len(msgs)-1]
	if m.from != "" || strings.Join(m.rcpts, ",") != "s@example.org,"+longSender {
		t.Errorf("bounce went %q -> %q", m.from, m.rcpts)
	}
	hdr, rest := stripTrace(t, m.body)
	if strings.Contains(hdr, "for <") || strings.HasPrefix(string(rest), "Delivered-To") {
		t.Errorf("bounce trace names a recipient: %q %q", hdr, rest)
	}
	if got := e.st.reserved.Load(); got != reserved {
		t.Errorf("%d uses reserved for bounces", got-reserved)
	}
	if orig, err := r.Reverse(bounceTo[1], e.clock.Now()); err != nil || orig != longSender {
		t.Errorf("Reverse = %q, %v", orig, err)
	}
}

// Forged, altered, expired and malformed SRS addresses get the reply of
// an unknown alias, and the smarthost never hears of them.
func TestSRSRefused(t *testing.T) {
	e, r := srsEnv(t)
	now := e.clock.Now()
	good, err := r.Forward("s@example.org", now)
	if err != nil {
		t.Fatal(err)
	}
	// SRS0=HHHH=TT=example.org=s@tempalias.test
	tampered := []byte(good)
	if tampered[5] == 'A' {
		tampered[5] = 'B'
	} else {
		tampered[5] = 'A'
	}
	forged := mustForward(t, testDomain, "someone else's secret", "victim@example.org", now)
	// A genuine address (same secret, and the SRS domain is not hashed)
	// that reverses into our own domain: relaying it would be a loop.
	selfSRS := mustForward(t, "elsewhere.example", "new secret", "x@"+testDomain, now)
	selfSRS = strings.Replace(selfSRS, "@elsewhere.example", "@"+testDomain, 1)
	if orig, err := r.Reverse(selfSRS, now); err != nil || orig != "x@"+testDomain {
		t.Fatalf("Reverse(%q) = %q, %v", selfSRS, orig, err)
	}

	for _, tc := range []struct{ name, rcpt, want string }{
		{"tampered hash", string(tampered), "550 5.1.1"},
		{"other secret", forged, "550 5.1.1"},
		{"malformed", "SRS0=abcd@" + testDomain, "550 5.1.1"},
		{"no fields", "SRS1=@" + testDomain, "550 5.1.1"},
		{"pointing at ourselves", selfSRS, "550 5.1.1"},
		{"foreign domain", strings.Replace(good, "@"+testDomain, "@example.com", 1), "550 5.7.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.must(250, "MAIL FROM:<>")
			code, msg := c.cmd("RCPT TO:<%s>", tc.rcpt)
			checkReply(t, "RCPT", code, msg, tc.want)
			c.must(221, "QUIT")
		})
	}
	t.Run("expired", func(t *testing.T) {
		e.clock.Add(22 * 24 * time.Hour)
		c := e.dial()
		c.must(250, "EHLO client.example")
		c.must(250, "MAIL FROM:<>")
		code, msg := c.cmd("RCPT TO:<%s>", good)
		checkReply(t, "RCPT", code, msg, "550 5.1.1")
		c.must(221, "QUIT")
	})
	if n := e.up.sessions.Load(); n != 0 {
		t.Errorf("smarthost contacted %d times", n)
	}
}

// mustForward is sender rewritten to an SRS address in domain under secret.
func mustForward(t *testing.T, domain, secret, sender string, now time.Time) string {
	t.Helper()
	r, err := srs.New(domain, []string{secret}, srs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := r.Forward(sender, now)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Without SRS an SRS address is just an unknown alias.
func TestSRSOff(t *testing.T) {
	e := newEnv(t, nil)
	addr := mustForward(t, testDomain, "secret", "s@example.org", e.clock.Now())
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<>")
	code, msg := c.cmd("RCPT TO:<%s>", addr)
	checkReply(t, "RCPT", code, msg, "550 5.1.1")
}
