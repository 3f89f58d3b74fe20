package smtpd

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// message10K is a message of about 10 KiB: under bodyBufferSize, over
// bufio's 4096 twice.
var message10K = "Subject: ten\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 160)

// readCounter counts the reads that returned data on the connections the
// server accepts, below clientConn.
type readCounter struct {
	net.Listener
	reads *atomic.Int64
}

func (l readCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countedReads{c, l.reads}, nil
}

type countedReads struct {
	net.Conn
	reads *atomic.Int64
}

func (c countedReads) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// A message the client sends in one write comes off the connection in
// one read (bodyBufferSize); through go-smtp's default 4 KiB buffer a
// 10 KiB message took three. Two are allowed, for a split on the way.
func TestMessageReadWhole(t *testing.T) {
	var reads atomic.Int64
	e := newEnvListener(t, nil, func(ln net.Listener) net.Listener { return readCounter{ln, &reads} })
	_, addr := e.newAlias("t@example.com", 3, 5)
	c := e.transaction(addr)
	c.must(354, "DATA")
	before := reads.Load()
	c.send(message10K + ".\r\n")
	c.expect(250)
	if n := reads.Load() - before; n > 2 {
		t.Errorf("the message came in %d reads, want 1", n)
	}
	if msgs := e.up.messages(); len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	} else if _, rest := stripTrace(t, msgs[0].body, addr); string(rest) != message10K {
		t.Errorf("relayed %q…", rest[:min(len(rest), 40)])
	}
}

// The smarthost connection's writer holds a message of up to
// bodyBufferSize: written in pieces, as relay writes it, it goes out in
// one write with its end-of-data line; at bufio's 4096 it took three.
// The smarthost side is a net.Pipe, where each write is one read.
func TestUpstreamMessageOneWrite(t *testing.T) {
	e := newEnv(t, nil)
	here, there := net.Pipe()
	defer here.Close()
	defer there.Close()
	var writes []string // what the smarthost read after the 354, one entry per write
	done := make(chan error, 1)
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		io.WriteString(there, "220 smarthost.test\r\n")
		inData := false
		for {
			n, err := there.Read(buf)
			if err != nil {
				return
			}
			got := string(buf[:n])
			reply := ""
			switch {
			case inData:
				writes = append(writes, got)
				if strings.HasSuffix(got, "\r\n.\r\n") {
					reply, inData = "250 queued", false
				}
			case strings.HasPrefix(got, "EHLO"):
				reply = "250-smarthost.test\r\n250 PIPELINING"
			case got == "DATA\r\n":
				reply, inData = "354 go ahead", true
			case strings.HasPrefix(got, "QUIT"):
				io.WriteString(there, "221 bye\r\n")
				return
			default:
				reply = "250 ok"
			}
			if reply != "" {
				io.WriteString(there, reply+"\r\n")
			}
		}
	}()
	c, err := e.srv.handshake(here)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("s@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("t@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.DataStuffed()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Received: from x\r\n")
	for i := 0; i < len(message10K); i += 1000 {
		io.WriteString(w, message10K[i:min(i+1000, len(message10K))])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	<-done
	if len(writes) != 1 || writes[0] != "Received: from x\r\n"+message10K+".\r\n" {
		t.Errorf("the message went in %d writes, want 1", len(writes))
	}
}
