package smtpd

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// writeCounter counts the writes the server makes on the connections it
// accepts, below clientConn.
type writeCounter struct {
	net.Listener
	writes *atomic.Int64
}

func (l writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countedConn{c, l.writes}, nil
}

type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestRepliesBatched: a multi-line EHLO reply is one write, and the
// replies to a pipelined group of commands (rfc 2920) go out together,
// while a client that waits for each reply still gets each at once.
func TestRepliesBatched(t *testing.T) {
	var writes atomic.Int64
	e := newEnvListener(t, nil, func(ln net.Listener) net.Listener { return writeCounter{ln, &writes} })
	_, live := e.newAlias("t@example.com", 3, 5)
	step := func(name string, want int64) {
		t.Helper()
		if got := writes.Load(); got != want {
			t.Fatalf("after %s: %d writes, want %d", name, got, want)
		}
	}
	c := e.dial()
	step("the banner", 1)
	c.must(250, "EHLO client.example")
	step("EHLO", 2)

	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<zzzzzz@" + testDomain + ">\r\nRCPT TO:<" + live + ">\r\nRSET\r\n")
	for _, code := range []int{250, 550, 250, 250} {
		c.expect(code)
	}
	step("a pipelined MAIL, RCPT, RCPT, RSET", 3)

	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<" + live + ">\r\nDATA\r\n")
	for _, code := range []int{250, 250, 354} {
		c.expect(code)
	}
	step("a pipelined MAIL, RCPT, DATA", 4)
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect(250)
	step("the message", 5)
	c.must(221, "QUIT")
	step("QUIT", 6)
	if !c.closed() {
		t.Fatal("still open after QUIT")
	}
	if n := len(e.up.messages()); n != 1 {
		t.Fatalf("smarthost got %d messages, want 1", n)
	}
}

// A reply blocked on a client that does not read holds the write lock;
// neither sayAndClose (at shutdown) nor Close may wait for it, or Shutdown
// would hang for WriteTimeout per such client.
func TestSayAndCloseDoesNotWaitForStuckWrite(t *testing.T) {
	e := newEnv(t, nil)
	client, server := net.Pipe() // a write blocks until the client reads, and it never does
	defer client.Close()
	cc := &clientConn{Conn: server, srv: e.srv}
	cc.admitOnce.Do(func() {}) // past admission
	if _, err := cc.Write([]byte("250 2.0.0 OK\r\n")); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := cc.Read(make([]byte, 16)) // flushes first: blocks
		readErr <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for cc.wmu.lockWithin(0) { // until the flush holds the lock
		cc.wmu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the flush never started")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	said := make(chan struct{})
	go func() {
		cc.sayAndClose(errShuttingDown)
		close(said)
	}()
	select {
	case <-said:
	case <-time.After(10 * time.Second):
		t.Fatal("sayAndClose waited for a write blocked on the client")
	}
	if err := <-readErr; err == nil {
		t.Fatal("the blocked flush succeeded after the close")
	}
}

// The client's 221 does not wait for the smarthost's: go-smtp writes the
// 221 and then logs the session out, which says QUIT upstream.
func TestQuitNotHeldBySmarthost(t *testing.T) {
	up, _ := scriptedSmarthost(t, scriptedOptions{holdQuit: true})
	e := newEnv(t, func(c *Config) { c.Smarthost.Address = up })
	_, addr := e.newAlias("t@example.com", 3, 5)
	c := e.transaction(addr)
	c.must(354, "DATA")
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect(250) // the upstream connection now waits for reuse
	// The smarthost's QUIT takes quitTimeout (2 s) to give up on; the
	// 221 must come well before.
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	c.must(221, "QUIT")
}

// writeDeadlines counts the writes and the write deadlines set on the
// connections the server accepts, below clientConn.
type writeDeadlines struct {
	net.Listener
	writes, deadlines *atomic.Int64
}

func (l writeDeadlines) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return deadlineCountedConn{c, l.writes, l.deadlines}, nil
}

type deadlineCountedConn struct {
	net.Conn
	writes, deadlines *atomic.Int64
}

func (c deadlineCountedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (c deadlineCountedConn) SetWriteDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

// Every write to the client gets its deadline, one: not one more for
// each reply go-smtp hands over, which only joins the batch.
func TestOneWriteDeadlinePerWrite(t *testing.T) {
	var writes, deadlines atomic.Int64
	e := newEnvListener(t, nil, func(ln net.Listener) net.Listener { return writeDeadlines{ln, &writes, &deadlines} })
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<zzzzzz@" + testDomain + ">\r\nRSET\r\n")
	for _, code := range []int{250, 550, 250} {
		c.expect(code)
	}
	c.must(221, "QUIT")
	if !c.closed() {
		t.Fatal("still open after QUIT")
	}
	if w, d := writes.Load(), deadlines.Load(); w != 4 || d != w {
		t.Errorf("%d writes and %d write deadlines, want 4 of each (banner, EHLO, the group, 221)", w, d)
	}
}
