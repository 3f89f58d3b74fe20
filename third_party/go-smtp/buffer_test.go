package smtp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// message10K is a message of 10 KiB in lines of 64 bytes, none starting
// with a dot.
var message10K = strings.Repeat(strings.Repeat("x", 62)+"\r\n", 160)

// Server.ReadBufferSize is the size of every read from the connection;
// zero keeps bufio's 4096. The message arrives whole either way.
func TestServerReadBufferSize(t *testing.T) {
	for _, tc := range []struct{ size, want int }{{0, 4096}, {16 << 10, 16 << 10}, {1 << 10, 1 << 10}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rec := &readSizes{Listener: ln}
		got := make(chan string, 1)
		s := NewServer(&dataBackend{got: got})
		s.Domain = "localhost"
		s.ReadBufferSize = tc.size
		go s.Serve(rec)
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		expect := func(code string) {
			t.Helper()
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("size %d: waiting for %s: %v", tc.size, code, err)
				}
				if strings.HasPrefix(l, code+" ") {
					return
				}
				if !strings.HasPrefix(l, code+"-") {
					t.Fatalf("size %d: got %q, want %s", tc.size, l, code)
				}
			}
		}
		expect("220")
		for _, step := range []struct{ line, code string }{
			{"EHLO me\r\n", "250"},
			{"MAIL FROM:<s@example.org>\r\n", "250"},
			{"RCPT TO:<a@example.com>\r\n", "250"},
			{"DATA\r\n", "354"},
			{message10K + ".\r\n", "250"},
		} {
			io.WriteString(conn, step.line)
			expect(step.code)
		}
		if m := <-got; m != message10K {
			t.Errorf("size %d: message of %d bytes, want %d", tc.size, len(m), len(message10K))
		}
		conn.Close()
		s.Close()
		if max := rec.max(); max != tc.want {
			t.Errorf("size %d: reads of up to %d bytes, want %d", tc.size, max, tc.want)
		}
	}
}

// Client.SetWriteBufferSize: a message that fits leaves in one write,
// its end-of-data line with it; with bufio's default it is cut at 4096.
func TestClientWriteBufferSize(t *testing.T) {
	for _, tc := range []struct {
		size   int
		writes int // of the message
	}{{0, 3}, {16 << 10, 1}} {
		var wrote writes
		fake := faker{ReadWriter: struct {
			io.Reader
			io.Writer
		}{strings.NewReader("220 hello\r\n250 hello\r\n250 ok\r\n250 ok\r\n354 go ahead\r\n250 queued\r\n"), &wrote}}
		c := NewClient(fake)
		if tc.size > 0 {
			c.SetWriteBufferSize(tc.size)
		}
		if err := c.Hello("me"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("s@example.org", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("a@example.com", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.DataStuffed()
		if err != nil {
			t.Fatal(err)
		}
		before := len(wrote.w)
		for i := 0; i < len(message10K); i += 1000 {
			end := i + 1000
			if end > len(message10K) {
				end = len(message10K)
			}
			io.WriteString(w, message10K[i:end])
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got := wrote.w[before:]
		if len(got) != tc.writes || strings.Join(got, "") != message10K+".\r\n" {
			t.Errorf("size %d: %d writes of %d bytes, want %d of %d", tc.size, len(got), len(strings.Join(got, "")), tc.writes, len(message10K)+3)
		}
	}
}

// readSizes records the largest read on any connection it accepted.
type readSizes struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *readSizes) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readSizeConn{Conn: c, l: l}, nil
}

func (l *readSizes) max() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

type readSizeConn struct {
	net.Conn
	l *readSizes
}

func (c *readSizeConn) Read(p []byte) (int, error) {
	c.l.mu.Lock()
	if len(p) > c.l.n {
		c.l.n = len(p)
	}
	c.l.mu.Unlock()
	return c.Conn.Read(p)
}

// dataBackend hands each message it receives to got.
type dataBackend struct{ got chan<- string }

func (b *dataBackend) NewSession(*Conn) (Session, error) { return &dataSession{got: b.got}, nil }

type dataSession struct{ got chan<- string }

func (s *dataSession) Mail(string, *MailOptions) error { return nil }
func (s *dataSession) Rcpt(string, *RcptOptions) error { return nil }
func (s *dataSession) Reset()                          {}
func (s *dataSession) Logout() error                   { return nil }
func (s *dataSession) Data(r io.Reader) error {
	var b bytes.Buffer
	_, err := io.Copy(&b, r)
	s.got <- b.String()
	return err
}
