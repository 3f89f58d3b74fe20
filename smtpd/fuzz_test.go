package smtpd

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary bytes to a live session. Whatever arrives,
// the server must not crash, must settle every reservation, and may only
// complete a message upstream that is exactly what the client sent between
// DATA and <CRLF>.<CRLF>, clean of bare CR and LF, with our one Received
// header on top. "ALIAS" in an input stands for a live alias's address.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<ALIAS>\r\nRCPT TO:<ALIAS>\r\nDATA\r\n.leading\r\n..two\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nDATA\r\nhello\n.\nMAIL FROM:<e@vil.example>\r\nRCPT TO:<t@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nDATA\r\nhello\r\n.\rMAIL FROM:<e@vil.example>\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nDATA\r\nbare\rcr\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@tempalias.test>\r\nRCPT TO:<x@example.com>\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nDATA\r\ntruncated",
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ALIAS>\r\nBDAT 9 LAST\r\nhi\r\n\r\nx\r\nQUIT\r\n",
		"\x00\xff\r\n\n\r.\r\nEHLO \x00\r\nMAIL FROM:<\"a\x00\"@b>\r\n",
	} {
		f.Add([]byte(seed))
	}
	e := newEnv(f, func(c *Config) {
		c.ReadTimeout = time.Second
		c.DataTimeout = 2 * time.Second
		c.MaxMessageBytes = 64 << 10
		c.MaxBadRecipients = 3
	})
	_, addr := e.newAlias("t@example.com", 3, 0)

	f.Fuzz(func(t *testing.T, in []byte) {
		in = bytes.ReplaceAll(in, []byte("ALIAS"), []byte(addr))
		before := len(e.up.messages())
		committedBefore := e.st.committed.Load()

		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		read := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, conn)
			read <- err
		}()
		conn.Write(in)
		conn.(*net.TCPConn).CloseWrite()
		// The server hangs up once it has read everything: at EOF, or
		// earlier if it gave up on the client.
		if err := <-read; err != nil && !isReset(err) {
			t.Fatalf("reading replies: %v", err)
		}
		e.settledT(t)

		msgs := e.up.messages()[before:]
		if got := e.st.committed.Load() - committedBefore; got != int64(len(msgs)) {
			t.Fatalf("%d uses committed for %d messages relayed", got, len(msgs))
		}
		for _, m := range msgs {
			if strings.Join(m.rcpts, ",") != "t@example.com" {
				t.Fatalf("relayed to %q", m.rcpts)
			}
			hdr, rest := stripTrace(t, m.body, addr)
			if !strings.HasPrefix(hdr, "Received: from ") || !strings.HasSuffix(hdr, "+0000\r\n") {
				t.Fatalf("first header %q", hdr)
			}
			var check bodyCheck
			if err := check.feed(rest); err != nil {
				t.Fatalf("relayed a message with %v: %q", err, rest)
			}
			if err := check.end(); err != nil {
				t.Fatalf("relayed a message with %v: %q", err, rest)
			}
			if bytes.Contains(bytes.ToUpper(in), []byte("BDAT")) {
				continue // chunks are sent raw, not dot-stuffed
			}
			if !sentAsMessage(in, rest) {
				t.Fatalf("relayed %q, which the client never sent as one message", rest)
			}
		}
	})
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// sentAsMessage reports whether the client sent rest as the data of one
// message: some stretch of in that ends with <CRLF>.<CRLF> and reads as
// rest once the leading dot of each line is removed (rfc 5321:4.5.2).
func sentAsMessage(in, rest []byte) bool {
	if len(rest) == 0 { // an empty message: the end of data right after DATA
		return bytes.Contains(in, []byte("\n.\r\n"))
	}
	if !bytes.HasSuffix(rest, []byte("\r\n")) {
		return false
	}
	lines := bytes.SplitAfter(rest, []byte("\r\n"))
	lines = lines[:len(lines)-1] // SplitAfter leaves an empty last element
	for from := 0; ; {
		k := bytes.Index(in[from:], []byte("\r\n.\r\n"))
		if k < 0 {
			return false
		}
		if matchLinesBack(in[:from+k+2], lines) {
			return true
		}
		from += k + 1
	}
}

// matchLinesBack matches lines against the end of in, last line first,
// each either as sent or with one dot before it.
func matchLinesBack(in []byte, lines [][]byte) bool {
	pos := len(in)
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if !bytes.HasSuffix(in[:pos], l) {
			return false
		}
		pos -= len(l)
		stuffed := pos > 0 && in[pos-1] == '.' && (pos == 1 || in[pos-2] == '\n')
		switch {
		case stuffed && string(l) != "\r\n": // ".<CRLF>" would have ended the data
			pos--
		case l[0] == '.':
			return false // the receiver would have removed this dot
		}
		if pos == 0 || in[pos-1] != '\n' {
			return false
		}
	}
	return true
}
