package smtpd

import (
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// send1 is one whole session: EHLO, one message to rcpt, QUIT. With
// pipeline, MAIL, RCPT and DATA go in one write, as a pipelining client
// (Postfix's smtp, say) sends them.
func (e *env) send1(rcpt string, pipeline bool) {
	e.t.Helper()
	c := e.dial()
	c.must(250, "EHLO client.example")
	if pipeline {
		c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n")
		c.expect(250)
		c.expect(250)
		c.expect(354)
	} else {
		c.must(250, "MAIL FROM:<s@example.org>")
		c.must(250, "RCPT TO:<%s>", rcpt)
		c.must(354, "DATA")
	}
	c.must(250, "Subject: x\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")
}

// reads returns the fake's reads that contain what.
func reads(f *fakeSmarthost, what string) []string {
	var out []string
	for _, r := range f.readLog() {
		if strings.Contains(r, what) {
			out = append(out, r)
		}
	}
	return out
}

// With a smarthost that offers PIPELINING, a message from a pipelining
// client costs one write before its body: MAIL, RCPT and DATA on a new
// connection, RSET, MAIL, RCPT and DATA on a pooled one (rfc 2920:3.1).
// A client that waits for each reply still gets MAIL and RCPT together.
func TestPipelinedUpstream(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 3, 0)
	e.send1(addr, true)
	e.send1(addr, true)
	e.send1(addr, false)
	mails := reads(e.up, "MAIL FROM:")
	if len(mails) != 3 {
		t.Fatalf("MAIL arrived in %d reads, want 3: %q", len(mails), e.up.readLog())
	}
	for i, r := range mails {
		if !strings.Contains(r, "MAIL FROM:<s@example.org>") || !strings.Contains(r, "RCPT TO:<t@example.com>\r\n") {
			t.Errorf("message %d: read %q, want MAIL and RCPT together", i+1, r)
		}
		if i == 0 && !strings.HasPrefix(r, "MAIL ") {
			t.Errorf("message 1: read %q, want MAIL first on a new connection", r)
		}
		if i > 0 && !strings.HasPrefix(r, "RSET\r\nMAIL ") {
			t.Errorf("message %d: read %q, want RSET before MAIL", i+1, r)
		}
		pipelinedData := strings.HasSuffix(r, "RCPT TO:<t@example.com>\r\nDATA\r\n")
		if wantData := i < 2; pipelinedData != wantData {
			t.Errorf("message %d: read %q: DATA with RCPT %v, want %v", i+1, r, pipelinedData, wantData)
		}
	}
	if n := len(reads(e.up, "DATA\r\n")); n != 3 {
		t.Errorf("DATA in %d reads, want 3", n)
	}
	if n := len(e.up.messages()); n != 3 {
		t.Errorf("smarthost got %d messages, want 3", n)
	}
	if c, f := e.settled(); c != 3 || f != 0 {
		t.Errorf("%d committed, %d refunded; want 3, 0", c, f)
	}
}

// Under pipelining each recipient's refusal by the smarthost is still
// the reply to that recipient's RCPT, and only that alias's use is given
// back; the message goes to the others. The pipelined DATA that follows
// a refused last recipient still carries the message for those accepted
// before it.
func TestPipelinedRcptRefusals(t *testing.T) {
	refused := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	full := &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	for _, tc := range []struct {
		name    string
		refuse  map[int]error // by recipient index
		replies []int         // to RCPT each, then DATA
		got     []int         // who the smarthost got the message for
	}{
		{"middle refused", map[int]error{1: refused}, []int{250, 550, 250, 354}, []int{0, 2}},
		{"last refused", map[int]error{2: full}, []int{250, 250, 452, 354}, []int{0, 1}},
		{"first refused", map[int]error{0: refused}, []int{550, 250, 250, 354}, []int{1, 2}},
		{"all refused", map[int]error{0: refused, 1: full, 2: refused}, []int{550, 452, 550, 502}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			var ids, addrs, targets []string
			for i := range 3 {
				target := "t" + string(rune('a'+i)) + "@example.com"
				id, addr := e.newAlias(target, 3, 1)
				ids, addrs, targets = append(ids, id), append(addrs, addr), append(targets, target)
				if err := tc.refuse[i]; err != nil {
					e.up.refuseRcpt(target, err)
				}
			}
			// Warm the pool, so that RSET rides along too.
			_, warm := e.newAlias("w@example.com", 3, 0)
			e.send1(warm, true)
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<" + strings.Join(addrs, ">\r\nRCPT TO:<") + ">\r\nDATA\r\n")
			c.expect(250)
			for i, want := range tc.replies {
				if code, msg := c.reply(); code != want {
					t.Fatalf("reply %d: %d %s, want %d", i+1, code, msg, want)
				}
			}
			if tc.got != nil {
				c.must(250, "Subject: x\r\n\r\nbody\r\n.")
			}
			c.must(221, "QUIT")
			msgs := e.up.messages()
			var want []string
			for _, i := range tc.got {
				want = append(want, targets[i])
			}
			if want == nil {
				if len(msgs) != 1 {
					t.Fatalf("smarthost got %d messages, want only the warm-up", len(msgs))
				}
			} else if len(msgs) != 2 || strings.Join(msgs[1].rcpts, " ") != strings.Join(want, " ") {
				t.Fatalf("smarthost got %d messages, the last for %v; want it for %v", len(msgs), msgs[len(msgs)-1].rcpts, want)
			}
			e.settled()
			for i, id := range ids {
				used, pending, alive := e.uses(id)
				if tc.refuse[i] != nil {
					if !alive || used != 0 || pending != 0 {
						t.Errorf("refused alias %d: alive %v used %d pending %d; want its use back", i, alive, used, pending)
					}
				} else if alive {
					t.Errorf("alias %d: still alive after its one message", i)
				}
			}
		})
	}
}

// A smarthost's refusal of MAIL under pipelining is the reply to the
// recipient, as without it, and the next transaction starts afresh.
func TestPipelinedMailRefused(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 1)
	e.up.fail("MAIL", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"})
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<" + addr + ">\r\nDATA\r\n")
	c.expect(250)
	c.expect(451)
	if code, _ := c.reply(); code/100 != 5 {
		t.Errorf("DATA after the only recipient was refused: %d", code)
	}
	e.nothingDelivered(t, id)
	e.up.fail("MAIL", nil)
	c.must(250, "RSET")
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<" + addr + ">\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.must(250, "Subject: x\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")
	if n := len(e.up.messages()); n != 1 {
		t.Errorf("smarthost got %d messages, want 1", n)
	}
}

// Sessions one after another share one smarthost connection, said RSET
// between messages, TLS and AUTH included: a session per message pays no
// dial, handshake or EHLO after the first.
func TestPoolSharedBySessions(t *testing.T) {
	cert, pool := testCert(t)
	for _, tc := range []struct {
		name string
		opts fakeOptions
		mode string
	}{
		{name: "plain"},
		{name: "starttls auth", opts: fakeOptions{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, user: "relay", pass: "s3cret"}, mode: "starttls"},
		{name: "tls auth", opts: fakeOptions{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, implicit: true, user: "relay", pass: "s3cret"}, mode: "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeSmarthostWith(t, tc.opts)
			e := newEnv(t, func(c *Config) {
				c.Smarthost.Address = fake.addr
				if tc.mode != "" {
					c.Smarthost.TLS = tc.mode
					c.Smarthost.TLSConfig = &tls.Config{RootCAs: pool}
					c.Smarthost.Username, c.Smarthost.Password = "relay", "s3cret"
				}
			})
			_, addr := e.newAlias("t@example.com", 3, 0)
			const n = 5
			for i := range n {
				e.send1(addr, i%2 == 0)
			}
			if got := fake.accepted.Load(); got != 1 {
				t.Errorf("smarthost accepted %d connections for %d sessions, want 1", got, n)
			}
			if got := len(fake.messages()); got != n {
				t.Errorf("smarthost got %d messages, want %d", got, n)
			}
			if tc.mode == "" {
				if got := len(reads(fake, "RSET\r\n")); got != n-1 {
					t.Errorf("RSET in %d reads, want %d (before each reuse)", got, n-1)
				}
			}
			if got := e.srv.pool.len(); got != 1 {
				t.Errorf("%d idle connections, want 1", got)
			}
		})
	}
}

// Without PIPELINING at the smarthost the commands go one by one, as
// they always did, and the pool still serves: RSET alone before reuse.
func TestPoolWithoutPipelining(t *testing.T) {
	up, sessions := scriptedSmarthost(t, scriptedOptions{})
	e := newEnv(t, func(c *Config) { c.Smarthost.Address = up })
	_, addr := e.newAlias("t@example.com", 3, 0)
	for i := range 3 {
		e.send1(addr, i == 0)
	}
	if n := sessions.Load(); n != 1 {
		t.Errorf("smarthost accepted %d connections, want 1", n)
	}
	if c, f := e.settled(); c != 3 || f != 0 {
		t.Errorf("%d committed, %d refunded; want 3, 0", c, f)
	}
}

// A pooled connection the smarthost closed meanwhile is replaced by a
// fresh one: the client hears 250, never a 4xx for it.
func TestPoolStaleConnectionReplaced(t *testing.T) {
	for _, pipeline := range []bool{true, false} {
		name := map[bool]string{true: "pipelined", false: "one by one"}[pipeline]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			_, addr := e.newAlias("t@example.com", 3, 0)
			e.send1(addr, pipeline)
			e.up.hangUp()
			waitFor(t, "the fake to see its connection end", func() bool { return e.up.ended.Load() == 1 })
			e.send1(addr, pipeline)
			if n := e.up.accepted.Load(); n != 2 {
				t.Errorf("smarthost accepted %d connections, want 2", n)
			}
			if n := len(e.up.messages()); n != 2 {
				t.Errorf("smarthost got %d messages, want 2", n)
			}
		})
	}
}

// A pooled connection whose RSET is refused is dropped, and the message
// goes through a fresh one.
func TestPoolRSETRefused(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(map[bool]string{true: "pipelining", false: "one by one"}[pipelining], func(t *testing.T) {
			delivered := new(atomic.Int64)
			up, sessions := scriptedSmarthost(t, scriptedOptions{
				pipelining: pipelining,
				replies:    map[string]string{"RSET": "500 5.5.1 not now"},
				delivered:  delivered,
			})
			e := newEnv(t, func(c *Config) { c.Smarthost.Address = up })
			_, addr := e.newAlias("t@example.com", 3, 0)
			for range 3 {
				e.send1(addr, true)
			}
			if n := sessions.Load(); n != 3 {
				t.Errorf("smarthost accepted %d connections, want 3 (each refused RSET costs its connection)", n)
			}
			if n := delivered.Load(); n != 3 {
				t.Errorf("smarthost took %d messages, want 3", n)
			}
		})
	}
}

// An idle connection is closed after the idle time, with QUIT.
func TestPoolIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Smarthost.IdleTimeout = 20 * time.Millisecond })
	_, addr := e.newAlias("t@example.com", 3, 0)
	e.send1(addr, true)
	waitFor(t, "the idle connection to be closed", func() bool { return e.up.ended.Load() == 1 })
	if n := e.srv.pool.len(); n != 0 {
		t.Errorf("%d idle connections after the idle time, want 0", n)
	}
	if n := len(reads(e.up, "QUIT\r\n")); n != 1 {
		t.Errorf("QUIT in %d reads, want 1", n)
	}
	e.send1(addr, true)
	if n := e.up.accepted.Load(); n != 2 {
		t.Errorf("smarthost accepted %d connections, want 2", n)
	}
}

// At most MaxIdle connections wait; the others say QUIT once their
// message is through. MaxIdle < 0 keeps none.
func TestPoolBound(t *testing.T) {
	for _, tc := range []struct{ max, want int }{{2, 2}, {-1, 0}} {
		e := newEnv(t, func(c *Config) { c.Smarthost.MaxIdle = tc.max })
		_, addr := e.newAlias("t@example.com", 3, 0)
		// Four transactions at once: four connections in use.
		var cs []*client
		for range 4 {
			cs = append(cs, e.transaction(addr))
		}
		for _, c := range cs {
			c.must(354, "DATA")
			c.must(250, "Subject: x\r\n\r\nbody\r\n.")
			c.must(221, "QUIT")
		}
		if n := e.up.accepted.Load(); n != 4 {
			t.Fatalf("max %d: smarthost accepted %d connections, want 4", tc.max, n)
		}
		if n := e.srv.pool.len(); n != tc.want {
			t.Errorf("max %d: %d idle connections, want %d", tc.max, n, tc.want)
		}
		waitFor(t, "the connections over the bound to be closed", func() bool { return e.up.ended.Load() == int64(4-tc.want) })
	}
}

// Shutdown closes the idle connections, with QUIT.
func TestPoolShutdown(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 3, 0)
	var cs []*client
	for range 3 {
		cs = append(cs, e.transaction(addr))
	}
	for _, c := range cs {
		c.must(354, "DATA")
		c.must(250, "Subject: x\r\n\r\nbody\r\n.")
		c.must(221, "QUIT")
	}
	if n := e.srv.pool.len(); n != 3 {
		t.Fatalf("%d idle connections, want 3", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.pool.len(); n != 0 {
		t.Errorf("%d idle connections after Shutdown, want 0", n)
	}
	if n := len(reads(e.up, "QUIT\r\n")); n != 3 {
		t.Errorf("QUIT in %d reads, want 3", n)
	}
	waitFor(t, "the fake to see every connection end", func() bool { return e.up.ended.Load() == 3 })
}

// A connection never goes back to the pool after a message the client
// cut short (it is dropped before the end of data can go out) or one the
// smarthost refused: the next message gets a new one.
func TestPoolNotAfterFailure(t *testing.T) {
	t.Run("truncated", func(t *testing.T) {
		e := newEnv(t, nil)
		id, addr := e.newAlias("t@example.com", 3, 0)
		c := e.transaction(addr)
		c.must(354, "DATA")
		c.send("Subject: x\r\n\r\npartial")
		c.conn.Close()
		waitFor(t, "the smarthost to see the message abandoned", func() bool { return e.up.aborted.Load() == 1 })
		e.nothingDelivered(t, id)
		if n := e.srv.pool.len(); n != 0 {
			t.Errorf("%d idle connections after a truncated message, want 0", n)
		}
		e.send1(addr, true)
		if n := e.up.accepted.Load(); n != 2 {
			t.Errorf("smarthost accepted %d connections, want 2", n)
		}
	})
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t, nil)
		_, addr := e.newAlias("t@example.com", 3, 0)
		e.up.fail("END", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "rejected"})
		c := e.transaction(addr)
		c.must(354, "DATA")
		c.must(554, "Subject: x\r\n\r\nbody\r\n.")
		c.must(221, "QUIT")
		if n := e.srv.pool.len(); n != 0 {
			t.Errorf("%d idle connections after a refused message, want 0", n)
		}
		e.up.fail("END", nil)
		e.send1(addr, true)
		if n := e.up.accepted.Load(); n != 2 {
			t.Errorf("smarthost accepted %d connections, want 2", n)
		}
	})
}
