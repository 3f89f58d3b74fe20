package smtpd

import (
	"testing"
	"time"
)

// The use is committed just before the final dot goes upstream (DESIGN
// "Usage accounting"): the smarthost, holding the whole message, sees it
// spent already. A 2xx keeps it spent; a 4xx or 5xx to the end gives it
// back.
func TestCommitBeforeEndOfData(t *testing.T) {
	for _, tc := range []struct {
		name     string
		end      error // the smarthost's reply to the final dot; nil: 250
		data     string
		usedThen int
	}{
		{"accepted", nil, "250", 1},
		{"deferred", smtpErr(451, [3]int{4, 7, 1}), "451 4.7.1", 0},
		{"refused", smtpErr(554, [3]int{5, 7, 1}), "554 5.7.1", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			id, addr := e.newAlias("t@example.com", 3, 2)
			type uses struct{ used, pending int }
			atEnd := make(chan uses, 1)
			e.up.mu.Lock()
			e.up.atEnd = func() {
				used, pending, _ := e.uses(id)
				atEnd <- uses{used, pending}
			}
			e.up.mu.Unlock()
			if tc.end != nil {
				e.up.fail("END", tc.end)
			}
			c := e.transaction(addr)
			c.must(354, "DATA")
			code, msg := c.cmd("Subject: x\r\n\r\nbody\r\n.")
			checkReply(t, "DATA", code, msg, tc.data)
			c.must(221, "QUIT")
			if got := <-atEnd; got != (uses{1, 0}) {
				t.Errorf("at the end of data the store holds used %d pending %d; want the use committed (1, 0)", got.used, got.pending)
			}
			e.settled()
			if used, pending, ok := e.uses(id); !ok || used != tc.usedThen || pending != 0 {
				t.Errorf("afterwards used %d pending %d alive %v; want used %d", used, pending, ok, tc.usedThen)
			}
		})
	}
}

// A commit that fails leaves the message unfinished: the smarthost never
// gets the final dot, the client gets a 4xx and the use comes back.
func TestCommitFails(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 1)
	e.st.failCommit.Store(true)
	c := e.transaction(addr)
	c.must(354, "DATA")
	code, msg := c.cmd("Subject: x\r\n\r\nbody\r\n.")
	checkReply(t, "DATA", code, msg, "451 4.3.0")
	c.must(221, "QUIT")
	waitFor(t, "smarthost sees the aborted transfer", func() bool { return e.up.aborted.Load() == 1 })
	e.nothingDelivered(t, id)
}

// A store that cannot be reached refuses nothing: the recipient gets a
// 4xx, so the sender retries.
func TestStoreUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 3, 1)
	e.st.unavailable.Store(true)
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	code, msg := c.cmd("RCPT TO:<%s>", addr)
	checkReply(t, "RCPT", code, msg, "451 4.4.3")
	c.must(221, "QUIT")
	if len(e.up.messages()) != 0 || e.up.sessions.Load() != 0 {
		t.Error("the smarthost was contacted")
	}
}

// A store call that blocks (a cluster that does not answer, an engine
// that ignores its own timeout) is cut off by the session's deadline
// (StoreTimeout): the client gets a 4xx, not a reply that never comes,
// and the message is not finished upstream.
func TestStoreCallDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block func(*countingStore)
	}{
		{"reserve", func(st *countingStore) { st.blockReserve.Store(true) }},
		{"commit", func(st *countingStore) { st.blockCommit.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.StoreTimeout = 200 * time.Millisecond })
			id, addr := e.newAlias("t@example.com", 3, 1)
			tc.block(e.st)
			c := e.dial()
			c.must(250, "EHLO client.example")
			c.must(250, "MAIL FROM:<s@example.org>")
			code, msg := c.cmd("RCPT TO:<%s>", addr)
			if tc.name == "commit" {
				checkReply(t, "RCPT", code, msg, "250")
				c.must(354, "DATA")
				code, msg = c.cmd("Subject: x\r\n\r\nbody\r\n.")
				waitFor(t, "smarthost sees the aborted transfer", func() bool { return e.up.aborted.Load() == 1 })
			}
			checkReply(t, tc.name, code, msg, "451 4.4.3")
			c.must(221, "QUIT")
			if tc.name == "commit" {
				e.nothingDelivered(t, id)
			} else if used, pending, ok := e.uses(id); !ok || used != 0 || pending != 0 || e.up.sessions.Load() != 0 {
				t.Errorf("used %d pending %d alive %v, smarthost sessions %d; want an untouched alias and no smarthost", used, pending, ok, e.up.sessions.Load())
			}
		})
	}
}
