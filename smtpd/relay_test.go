package smtpd

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// sendMail sends msg with net/smtp in a session of its own and returns the
// first failing reply, or nil.
func sendMail(addr, from string, to []string, msg string) error {
	c, err := netsmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

var receivedRE = regexp.MustCompile(`^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n` +
	`\tby mx\.tempalias\.test \(tempalias\) with ESMTP id [0-9a-f]{12}\r\n` +
	`\tfor <[0-9a-z]+@tempalias\.test>; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000\r\n$`)

// The seed's scenario: max-usage 3 relays three messages, byte-identical
// after the one added header, and refuses the fourth at RCPT without
// contacting the smarthost.
func TestSeedScenario(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 3)
	msg := "From: sender@example.org\r\nTo: " + addr + "\r\nSubject: hi\r\n\r\n" +
		"line one\r\n.leading dot\r\n..two dots\r\n\r\nlast line\r\n"
	for i := range 3 {
		if err := sendMail(e.addr, "sender@example.org", []string{addr}, msg); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	err := sendMail(e.addr, "sender@example.org", []string{strings.ToUpper(id) + "@" + testDomain}, msg)
	if code := replyCode(err); code != 550 || !strings.HasPrefix(err.(*textproto.Error).Msg, "5.1.1 ") {
		t.Fatalf("fourth message: %v, want 550 5.1.1", err)
	}
	msgs := e.up.messages()
	if len(msgs) != 3 {
		t.Fatalf("smarthost got %d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if m.from != "sender@example.org" || len(m.rcpts) != 1 || m.rcpts[0] != "t@example.com" {
			t.Errorf("message %d: envelope %q -> %q", i, m.from, m.rcpts)
		}
		hdr, rest := stripTrace(t, m.body, addr)
		if !receivedRE.MatchString(hdr) {
			t.Errorf("message %d: Received header %q", i, hdr)
		}
		if string(rest) != msg {
			t.Errorf("message %d: body %q, want %q", i, rest, msg)
		}
	}
	if n := e.up.sessions.Load(); n != 1 {
		t.Errorf("smarthost saw %d sessions, want 1 (one connection, pooled between the client's sessions)", n)
	}
	e.up.mu.Lock()
	rcpts := len(e.up.rcpts)
	e.up.mu.Unlock()
	if rcpts != 3 {
		t.Errorf("smarthost saw %d RCPTs, want 3 (none for the refused fourth)", rcpts)
	}
	if c, f := e.settled(); c != 3 || f != 0 {
		t.Errorf("%d committed, %d refunded; want 3, 0", c, f)
	}
	if _, _, alive := e.uses(id); alive {
		t.Error("alias still alive after 3 of 3 uses")
	}
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 1, 0)
	msg := "Subject: x\r\n\r\nbody\r\n"
	e.clock.Add(24*time.Hour - time.Second)
	if err := sendMail(e.addr, "s@example.org", []string{addr}, msg); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	e.clock.Add(time.Second)
	if err := sendMail(e.addr, "s@example.org", []string{addr}, msg); replyCode(err) != 550 {
		t.Fatalf("at expiry: %v, want 550", err)
	}
	if n := len(e.up.messages()); n != 1 {
		t.Fatalf("smarthost got %d messages, want 1", n)
	}
}

// Several aliases and duplicates in one transaction: one upstream
// transaction, each target named once, each alias charged once.
func TestRecipients(t *testing.T) {
	e := newEnv(t, nil)
	a1, addr1 := e.newAlias("t@example.com", 3, 5)
	a2, addr2 := e.newAlias("t@example.com", 3, 5)
	a3, addr3 := e.newAlias("u@example.net", 3, 5)
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<>")
	for _, rcpt := range []string{addr1, strings.ToUpper(addr1), addr2, addr3, addr3} {
		c.must(250, "RCPT TO:<%s>", rcpt)
	}
	c.must(354, "DATA")
	c.must(250, "Subject: x\r\n\r\nbody\r\n.")
	// A second message on the same connection reuses the upstream one.
	c.must(250, "MAIL FROM:<s@example.org> SIZE=100")
	c.must(250, "RCPT TO:<%s>", addr1)
	c.must(354, "DATA")
	c.must(250, "Subject: y\r\n\r\nbody\r\n.")
	c.must(221, "QUIT")

	msgs := e.up.messages()
	if len(msgs) != 2 {
		t.Fatalf("smarthost got %d messages, want 2", len(msgs))
	}
	if got := strings.Join(msgs[0].rcpts, ","); msgs[0].from != "" || got != "t@example.com,u@example.net" {
		t.Errorf("first envelope %q -> %s", msgs[0].from, got)
	}
	if hdr, _ := stripReceived(t, msgs[0].body); strings.Contains(hdr, "for <") {
		t.Errorf("Received names a recipient of several: %q", hdr)
	}
	if n := e.up.sessions.Load(); n != 1 {
		t.Errorf("smarthost saw %d sessions, want 1", n)
	}
	e.settled()
	for id, want := range map[string]int{a1: 2, a2: 1, a3: 1} {
		if used, pending, ok := e.uses(id); !ok || used != want || pending != 0 {
			t.Errorf("alias %s: used %d pending %d alive %v, want %d 0", id, used, pending, ok, want)
		}
	}
}

// 100 sessions race for 5 uses: exactly 5 messages reach the smarthost.
func TestConcurrentMaxUsage(t *testing.T) {
	e := newEnv(t, nil)
	e.up.keepBody = false
	id, addr := e.newAlias("t@example.com", 3, 5)
	const n = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: race\r\n\r\nbody\r\n")
			code := 250
			if err != nil {
				code = replyCode(err)
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got := len(e.up.messages()); got != 5 {
		t.Fatalf("smarthost got %d messages, want 5 (replies %v)", got, codes)
	}
	if codes[250] != 5 || codes[250]+codes[550]+codes[450] != n {
		t.Errorf("replies %v, want 5×250 and the rest 550 or 450", codes)
	}
	if c, _ := e.settled(); c != 5 {
		t.Errorf("%d committed, want 5", c)
	}
	if _, _, alive := e.uses(id); alive {
		t.Error("alias alive after 5 of 5 uses")
	}
}

func TestReceivedHeader(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		helo, ip, want string
	}{
		{"mail.example.org", "192.0.2.1", "Received: from mail.example.org ([192.0.2.1])\r\n\tby mx (tempalias) with ESMTP id 1; Sat, 01 Mar 2025 11:00:00 +0000\r\n"},
		{"[192.0.2.1]", "192.0.2.1", "Received: from [192.0.2.1] ([192.0.2.1])\r\n\tby mx (tempalias) with ESMTP id 1; Sat, 01 Mar 2025 11:00:00 +0000\r\n"},
		{"evil\r\nX-Injected: 1", "2001:db8::1", "Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n\tby mx (tempalias) with ESMTP id 1; Sat, 01 Mar 2025 11:00:00 +0000\r\n"},
		{"a(b)", "192.0.2.1", "Received: from [192.0.2.1] ([192.0.2.1])\r\n\tby mx (tempalias) with ESMTP id 1; Sat, 01 Mar 2025 11:00:00 +0000\r\n"},
	} {
		got := receivedHeader(tc.helo, net.ParseIP(tc.ip), "mx", "1", "", false, at)
		if got != tc.want {
			t.Errorf("helo %q: got %q, want %q", tc.helo, got, tc.want)
		}
	}
}

func TestBodyCheck(t *testing.T) {
	hdrs := func(n int) string { return strings.Repeat("Received: from x\r\n\tby y; date\r\n", n) }
	for _, tc := range []struct {
		name, body string
		want       error
		stuffed    bool // the body as a DATA command sends it (rfc 5321:4.5.2)
	}{
		{"plain", "A: b\r\n\r\nbody\r\n", nil, false},
		{"bare LF in header", "A: b\n\r\nbody\r\n", errBareLF, false},
		{"bare LF in body", "A: b\r\n\r\nbo\ndy\r\n", errBareLF, false},
		{"bare CR in body", "A: b\r\n\r\nbo\rdy\r\n", errBareCR, false},
		{"CR at end", "A: b\r\n\r\nbody\r", errBareCR, false},
		{"CRCRLF", "A: b\r\n\r\nbody\r\r\n", errBareCR, false},
		{"50 Received", hdrs(50) + "\r\nbody\r\n", nil, false},
		{"51 Received", hdrs(51) + "\r\nbody\r\n", errLoop, false},
		{"51 Received, case", strings.ToUpper(hdrs(51)) + "\r\nbody\r\n", errLoop, false},
		{"Received in body", "A: b\r\n\r\n" + hdrs(60), nil, false},
		{"folded first line", " A: b\r\n\r\nbody\r\n", errFolded, false},
		{"tab-folded first line", "\tA: b\r\n\r\nbody\r\n", errFolded, false},
		{"empty header section", "\r\nbody\r\n", nil, false},
		{"stuffed folded first line", ". A: b\r\n\r\nbody\r\n", errFolded, true},
		{"stuffed tab-folded first line", ".\tA: b\r\n\r\nbody\r\n", errFolded, true},
		{"stuffed dot first", "..A: b\r\n\r\nbody\r\n", nil, true},
		{"stuffed plain", "A: b\r\n\r\nbody\r\n", nil, true},
		{"a dot and a space, unstuffed", ". A: b\r\n\r\nbody\r\n", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every split point: chunk boundaries must not matter.
			for i := 0; i <= len(tc.body); i++ {
				b := bodyCheck{stuffed: tc.stuffed}
				err := b.feed([]byte(tc.body[:i]))
				if err == nil {
					err = b.feed([]byte(tc.body[i:]))
				}
				if err == nil {
					err = b.end()
				}
				if err != tc.want {
					t.Fatalf("split at %d: %v, want %v", i, err, tc.want)
				}
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		e := newEnv(t, nil)
		_, addr := e.newAlias("t@example.com", 3, 0)
		idle := e.dial()
		idle.must(250, "EHLO client.example")
		busy := e.transaction(addr)

		done := make(chan error, 1)
		go func() { done <- e.srv.Shutdown(t.Context()) }()
		idle.expect(421)
		if !idle.closed() {
			t.Error("idle connection still open")
		}
		// The transaction under way may finish, then its connection closes.
		busy.must(354, "DATA")
		busy.must(250, "Subject: x\r\n\r\nbody\r\n.")
		busy.expect(421)
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if c, f := e.settled(); c != 1 || f != 0 {
			t.Errorf("%d committed, %d refunded; want 1, 0", c, f)
		}
	})
	t.Run("forced", func(t *testing.T) {
		e := newEnv(t, nil)
		id, addr := e.newAlias("t@example.com", 3, 2)
		busy := e.transaction(addr)
		busy.must(354, "DATA")
		busy.send("Subject: x\r\n\r\npartial")
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err == nil {
			t.Fatal("Shutdown cut a transaction short but returned nil")
		}
		if !busy.closed() {
			t.Error("busy connection still open")
		}
		e.nothingDelivered(t, id)
	})
}

func TestLogLine(t *testing.T) {
	e := newEnv(t, nil)
	_, addr := e.newAlias("t@example.com", 3, 0)
	if err := sendMail(e.addr, "s@example.org", []string{addr}, "Subject: secret-subject\r\n\r\nsecret-body\r\n"); err != nil {
		t.Fatal(err)
	}
	e.settled()
	logs := e.logs.String()
	for _, want := range []string{"smtp transaction", "outcome=delivered", "code=250", "remote=127.0.0.1", "bytes="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "secret") || strings.Contains(logs, "t@example.com") {
		t.Errorf("log leaks message or target:\n%s", logs)
	}
	if n := strings.Count(logs, "smtp transaction"); n != 1 {
		t.Errorf("%d transaction lines, want 1", n)
	}
}

// go-smtp always offers CHUNKING; BDAT transfers run Data in a goroutine
// of their own and must relay and settle like DATA.
func TestBDAT(t *testing.T) {
	e := newEnv(t, nil)
	id, addr := e.newAlias("t@example.com", 3, 0)
	c := e.transaction(addr)
	c.send("BDAT 14\r\nSubject: x\r\n\r\n")
	c.expect(250)
	c.send("BDAT 12 LAST\r\n.dot\r\nbody\r\n")
	c.expect(250)
	// A chunked message with a bare LF is refused like any other.
	c.must(250, "MAIL FROM:<s@example.org>")
	c.must(250, "RCPT TO:<%s>", addr)
	c.send("BDAT 17 LAST\r\nSubject: x\n\r\nbody")
	c.expect(554)
	if !c.closed() {
		t.Error("connection open after bare LF")
	}
	msgs := e.up.messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages, want 1", len(msgs))
	}
	if _, rest := stripTrace(t, msgs[0].body, addr); string(rest) != "Subject: x\r\n\r\n.dot\r\nbody\r\n" {
		t.Errorf("body %q", rest)
	}
	if c, f := e.settled(); c != 1 || f != 1 {
		t.Errorf("%d committed, %d refunded; want 1, 1", c, f)
	}
	if used, pending, ok := e.uses(id); !ok || used != 1 || pending != 0 {
		t.Errorf("used %d pending %d alive %v", used, pending, ok)
	}
}

// indexCRLF finds what bytes.IndexAny(p, "\r\n") finds, over random
// strings of CR, LF, a dot and a letter.
func TestIndexCRLF(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("\r\n.x")
	for i := 0; i < 20000; i++ {
		p := make([]byte, rng.Intn(100))
		for j := range p {
			p[j] = alphabet[rng.Intn(len(alphabet))]
			if rng.Intn(2) == 0 {
				p[j] = 'x'
			}
		}
		if got, want := indexCRLF(p), bytes.IndexAny(p, "\r\n"); got != want {
			t.Fatalf("indexCRLF(%q) = %d, want %d", p, got, want)
		}
	}
}

// BenchmarkIndexCRLF: the lines of a 4 KiB body, as bodyCheck walks
// them, with bytes.IndexAny and with indexCRLF.
func BenchmarkIndexCRLF(b *testing.B) {
	body := bytes.Repeat([]byte(strings.Repeat("x", 62)+"\r\n"), 64)
	for _, f := range []struct {
		name  string
		index func([]byte) int
	}{
		{"IndexAny", func(p []byte) int { return bytes.IndexAny(p, "\r\n") }},
		{"indexCRLF", indexCRLF},
	} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i++ {
				for p := body; len(p) > 0; {
					j := f.index(p)
					if j < 0 {
						break
					}
					p = p[j+1:]
				}
			}
		})
	}
}
