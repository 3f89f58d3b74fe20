package smtp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// A pipelined group goes out in one write and each reply is matched to
// its command: a refused recipient is told apart from the accepted
// ones, and a DATA that got its 354 hands out the message's writer.
func TestPipeline(t *testing.T) {
	server := strings.Join([]string{
		"220 hello",
		"250-hello",
		"250-PIPELINING",
		"250 8BITMIME",
		"250 reset",
		"250 sender ok",
		"550 5.1.1 no such user",
		"250 recipient ok",
		"354 go ahead",
		"250 queued",
		"",
	}, "\r\n")
	var wrote writes
	fake := faker{ReadWriter: struct {
		io.Reader
		io.Writer
	}{strings.NewReader(server), &wrote}}
	c := NewClient(fake)
	if err := c.Hello("me"); err != nil {
		t.Fatal(err)
	}
	before := len(wrote.w)
	p := c.Pipeline()
	p.Reset()
	if err := p.Mail("s@example.org", nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"a@example.com", "b@example.com"} {
		if err := p.Rcpt(to, nil); err != nil {
			t.Fatal(err)
		}
	}
	p.DataStuffed()
	replies, err := p.Send()
	if err != nil {
		t.Fatal(err)
	}
	if got := wrote.w[before:]; len(got) != 1 || got[0] != "RSET\r\nMAIL FROM:<s@example.org> BODY=8BITMIME\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" {
		t.Fatalf("wrote %q, want the group in one write", got)
	}
	var se *SMTPError
	if len(replies) != 5 || replies[0] != nil || replies[1] != nil || !errors.As(replies[2], &se) || se.Code != 550 || replies[3] != nil || replies[4] != nil {
		t.Fatalf("replies %v", replies)
	}
	if strings.Join(c.rcpts, " ") != "b@example.com" {
		t.Errorf("recipients %q, want the accepted one", c.rcpts)
	}
	w := p.DataCommand()
	if w == nil {
		t.Fatal("no writer after DATA's 354")
	}
	io.WriteString(w, "Subject: x\r\n\r\n..dot\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := wrote.w[len(wrote.w)-1]; got != "Subject: x\r\n\r\n..dot\r\n.\r\n" {
		t.Errorf("message %q", got)
	}
}

// A group needs PIPELINING, DATA must end it, and an argument the
// server could not take is refused before anything is sent.
func TestPipelineRefused(t *testing.T) {
	for _, tc := range []struct {
		name, ehlo string
		build      func(p *Pipeline)
	}{
		{"no PIPELINING", "250 hello\r\n", func(p *Pipeline) { p.Mail("s@example.org", nil); p.Rcpt("a@example.com", nil) }},
		{"DATA not last", "250-hello\r\n250 PIPELINING\r\n", func(p *Pipeline) { p.Data(); p.Rcpt("a@example.com", nil) }},
		{"bad address", "250-hello\r\n250 PIPELINING\r\n", func(p *Pipeline) { p.Mail("s@example.org", nil); p.Rcpt("a@example.com\r\nQUIT", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wrote writes
			fake := faker{ReadWriter: struct {
				io.Reader
				io.Writer
			}{strings.NewReader("220 hello\r\n" + tc.ehlo), &wrote}}
			c := NewClient(fake)
			if err := c.Hello("me"); err != nil {
				t.Fatal(err)
			}
			before := len(wrote.w)
			p := c.Pipeline()
			tc.build(p)
			if _, err := p.Send(); err == nil {
				t.Fatal("Send succeeded")
			}
			if len(wrote.w) != before {
				t.Errorf("wrote %q", wrote.w[before:])
			}
		})
	}
}

// A connection that ends in the middle of the replies is an error, with
// the replies read before it.
func TestPipelineConnectionLost(t *testing.T) {
	fake := faker{ReadWriter: struct {
		io.Reader
		io.Writer
	}{strings.NewReader("220 hello\r\n250-hello\r\n250 PIPELINING\r\n250 ok\r\n"), io.Discard}}
	c := NewClient(fake)
	p := c.Pipeline()
	p.Mail("s@example.org", nil)
	p.Rcpt("a@example.com", nil)
	replies, err := p.Send()
	if err == nil || len(replies) != 1 || replies[0] != nil {
		t.Fatalf("replies %v, err %v; want one reply and an error", replies, err)
	}
}

// writes records each write separately.
type writes struct{ w []string }

func (w *writes) Write(p []byte) (int, error) {
	w.w = append(w.w, string(p))
	return len(p), nil
}

// BufferedLine shows the next command a pipelining client already sent,
// and nothing of a line not yet complete.
func TestBufferedLine(t *testing.T) {
	type seen struct {
		line string
		ok   bool
	}
	got := make(chan seen, 4)
	be := &lookaheadBackend{seen: func(c *Conn) {
		line, ok := c.BufferedLine()
		got <- seen{line, ok}
	}}
	s := NewServer(be)
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	io.WriteString(conn, "EHLO me\r\n")
	for {
		l, _ := r.ReadString('\n')
		if strings.HasPrefix(l, "250 ") {
			break
		}
	}
	io.WriteString(conn, "MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")
	if s := <-got; s != (seen{"RCPT TO:<a@example.com>", true}) {
		t.Errorf("at MAIL: %+v", s)
	}
	if s := <-got; s != (seen{"DATA", true}) {
		t.Errorf("at RCPT: %+v", s)
	}
	for i := 0; i < 3; i++ {
		r.ReadString('\n')
	}
	// A line not yet whole is not offered, nor is anything when nothing
	// is buffered.
	io.WriteString(conn, "x\r\n.\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<b@exa")
	if s := <-got; s.ok {
		t.Errorf("at MAIL before a partial line: %+v", s)
	}
	r.ReadString('\n') // the reply to the message
	r.ReadString('\n') // to MAIL
	io.WriteString(conn, "mple.com>\r\n")
	if s := <-got; s.ok {
		t.Errorf("at RCPT with nothing after it: %+v", s)
	}
}

type lookaheadBackend struct{ seen func(*Conn) }

func (b *lookaheadBackend) NewSession(c *Conn) (Session, error) {
	return &lookaheadSession{c: c, seen: b.seen}, nil
}

type lookaheadSession struct {
	c    *Conn
	seen func(*Conn)
}

func (s *lookaheadSession) Mail(string, *MailOptions) error { s.seen(s.c); return nil }
func (s *lookaheadSession) Rcpt(string, *RcptOptions) error { s.seen(s.c); return nil }
func (s *lookaheadSession) Data(r io.Reader) error          { _, err := io.Copy(io.Discard, r); return err }
func (s *lookaheadSession) Reset()                          {}
func (s *lookaheadSession) Logout() error                   { return nil }
