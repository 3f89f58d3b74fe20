package smtpd

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func smtpErr(code int, enh smtp.EnhancedCode) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "secret upstream text t@example.com"}
}

// Each failure gives the client the right reply at the right command and
// refunds the use; the smarthost never completes a message.
func TestFailureMatrix(t *testing.T) {
	deadAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	// silentAddr accepts connections and never says a word.
	silentAddr := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		return ln.Addr().String()
	}

	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, e *env)
		upstream func(t *testing.T) string // smarthost address instead of the fake
		rcpt     string                    // expected RCPT reply: "250" or a code and enhanced code
		data     string                    // expected reply after the body, if RCPT was accepted
	}{
		{name: "smarthost down", upstream: deadAddr, rcpt: "451 4.4.1"},
		{name: "smarthost silent", upstream: silentAddr, rcpt: "451 4.4.1"},
		{name: "MAIL 4xx", setup: func(t *testing.T, e *env) { e.up.fail("MAIL", smtpErr(451, smtp.EnhancedCode{4, 3, 0})) }, rcpt: "451 4.3.0"},
		{name: "MAIL 5xx", setup: func(t *testing.T, e *env) { e.up.fail("MAIL", smtpErr(550, smtp.EnhancedCode{5, 7, 1})) }, rcpt: "550 5.7.1"},
		{name: "MAIL 421", setup: func(t *testing.T, e *env) { e.up.fail("MAIL", smtpErr(421, smtp.EnhancedCode{4, 3, 2})) }, rcpt: "451 4.3.2"},
		{name: "MAIL hangs", setup: func(t *testing.T, e *env) { e.up.hang("MAIL") }, rcpt: "451 4.4.2"},
		{name: "RCPT 4xx", setup: func(t *testing.T, e *env) { e.up.fail("RCPT", smtpErr(452, smtp.EnhancedCode{4, 2, 2})) }, rcpt: "452 4.2.2"},
		{name: "RCPT 5xx", setup: func(t *testing.T, e *env) { e.up.fail("RCPT", smtpErr(550, smtp.EnhancedCode{5, 1, 1})) }, rcpt: "550 5.1.1"},
		{name: "RCPT hangs", setup: func(t *testing.T, e *env) { e.up.hang("RCPT") }, rcpt: "451 4.4.2"},
		{name: "end of DATA 4xx", setup: func(t *testing.T, e *env) { e.up.fail("END", smtpErr(451, smtp.EnhancedCode{4, 7, 1})) }, rcpt: "250", data: "451 4.7.1"},
		{name: "end of DATA 5xx", setup: func(t *testing.T, e *env) { e.up.fail("END", smtpErr(554, smtp.EnhancedCode{5, 7, 1})) }, rcpt: "250", data: "554 5.7.1"},
		{name: "end of DATA 5xx without enhanced code", setup: func(t *testing.T, e *env) { e.up.fail("END", smtpErr(554, smtp.EnhancedCode{2, 0, 0})) }, rcpt: "250", data: "554 5.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				c.Smarthost.CommandTimeout = 300 * time.Millisecond
				if tc.upstream != nil {
					c.Smarthost.Address = tc.upstream(t)
				}
			})
			if tc.setup != nil {
				tc.setup(t, e)
			}
			id, addr := e.newAlias("t@example.com", 3, 1)
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.must(250, "MAIL FROM:<s@example.org>")
			code, msg := c.cmd("RCPT TO:<%s>", addr)
			checkReply(t, "RCPT", code, msg, tc.rcpt)
			if code == 250 {
				c.must(354, "DATA")
				code, msg = c.cmd("Subject: x\r\n\r\nbody\r\n.")
				checkReply(t, "DATA", code, msg, tc.data)
			}
			c.must(221, "QUIT")
			if n := len(e.up.messages()); n != 0 {
				t.Errorf("smarthost completed %d messages", n)
			}
			if c, f := e.settled(); c != 0 || f != 1 {
				t.Errorf("%d committed, %d refunded; want 0, 1", c, f)
			}
			if used, pending, ok := e.uses(id); !ok || used != 0 || pending != 0 {
				t.Errorf("alias alive %v used %d pending %d, want the use back", ok, used, pending)
			}
		})
	}
}

func checkReply(t *testing.T, cmd string, code int, msg, want string) {
	t.Helper()
	got := strings.TrimSpace(strings.Join([]string{strconv.Itoa(code), strings.SplitN(msg, " ", 2)[0]}, " "))
	if code == 250 {
		got = "250"
	}
	if got != want {
		t.Errorf("%s: got %d %s, want %s", cmd, code, msg, want)
	}
	if strings.Contains(msg, "secret") || strings.Contains(msg, "example.com") || strings.Contains(msg, "127.0.0.1") {
		t.Errorf("%s: reply leaks internals: %q", cmd, msg)
	}
}

// After the final dot a lost reply leaves the message possibly delivered:
// the client gets a 4xx, and the use is spent rather than refunded, so the
// alias can never deliver more than its max-usage.
func TestHangAfterFinalDot(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Smarthost.CommandTimeout = 300 * time.Millisecond })
	e.up.hang("END")
	id, addr := e.newAlias("t@example.com", 3, 2)
	c := e.transaction(addr)
	c.must(354, "DATA")
	code, msg := c.cmd("Subject: x\r\n\r\nbody\r\n.")
	checkReply(t, "DATA", code, msg, "451 4.4.2")
	c.must(221, "QUIT")
	if cm, f := e.settled(); cm != 1 || f != 0 {
		t.Errorf("%d committed, %d refunded; want 1, 0", cm, f)
	}
	if used, pending, ok := e.uses(id); !ok || used != 1 || pending != 0 {
		t.Errorf("used %d pending %d alive %v, want 1 0", used, pending, ok)
	}
}

// A client that vanishes mid-DATA: the smarthost gets a truncated stream
// and no final dot, so nothing is delivered; the use comes back.
func TestClientDisconnectMidData(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 1)
	c := e.transaction(addr)
	c.must(354, "DATA")
	// Enough to make tempalias write to the smarthost before the drop.
	c.send("Subject: x\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 4096))
	c.conn.Close()
	waitFor(t, "smarthost sees the aborted transfer", func() bool { return e.up.aborted.Load() == 1 })
	e.nothingDelivered(t, id)
}

// A client that stalls mid-DATA is dropped after ReadTimeout; one that
// trickles is dropped at DataTimeout.
func TestDataTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trickle bool
	}{{"stall", false}, {"trickle", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if tc.trickle {
					c.ReadTimeout = 2 * time.Second
					c.DataTimeout = 300 * time.Millisecond
				} else {
					c.ReadTimeout = 300 * time.Millisecond
				}
			})
			_, addr := e.newAlias("t@example.com", 3, 1)
			c := e.transaction(addr)
			c.must(354, "DATA")
			c.send("Subject: x\r\n\r\nsome")
			start := time.Now()
			if tc.trickle {
				// One byte every 20ms keeps every read well inside
				// ReadTimeout; only the DATA phase bound can stop it.
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				stop := time.After(5 * time.Second)
			loop:
				for {
					select {
					case <-tick.C:
						if _, err := c.conn.Write([]byte("x")); err != nil {
							break loop
						}
					case <-stop:
						t.Fatal("trickling client never dropped")
					}
				}
			}
			code, msg := c.reply()
			if code != 421 || !strings.HasPrefix(msg, "4.4.2") {
				t.Errorf("got %d %s, want 421 4.4.2", code, msg)
			}
			if !c.closed() {
				t.Error("connection still open")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("dropped after %v", d)
			}
			e.nothingDelivered(t, "")
		})
	}
}

func TestOversize(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageBytes = 10 << 10 })
	id, addr := e.newAlias("t@example.com", 3, 1)
	c := e.dial()
	if msg := c.must(250, "EHLO client.example"); !strings.Contains(msg, "SIZE 10240") {
		t.Errorf("EHLO does not advertise SIZE 10240: %q", msg)
	}
	// Declared too big: refused at MAIL.
	c.must(552, "MAIL FROM:<s@example.org> SIZE=20000")
	// Undeclared: refused after the data, which is never completed upstream.
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(250, "RCPT TO:<%s>", addr)
	c.must(354, "DATA")
	code, msg := c.cmd("%s", "Subject: x\r\n\r\n"+strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 400)+".")
	if code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Errorf("got %d %s, want 552 5.3.4", code, msg)
	}
	// The session goes on.
	c.must(250, "NOOP")
	c.must(221, "QUIT")
	e.nothingDelivered(t, id)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
