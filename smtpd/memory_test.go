package smtpd

import (
	"io"
	netsmtp "net/smtp"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// lineSource yields n bytes of mail body: 78-octet lines ending in CRLF.
type lineSource struct {
	n    int64
	line []byte
	off  int
}

func (s *lineSource) Read(p []byte) (int, error) {
	if s.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.n {
		p = p[:s.n]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], s.line[s.off:])
		n += c
		s.off = (s.off + c) % len(s.line)
	}
	s.n -= int64(n)
	return n, nil
}

// Relaying a 100 MiB message must not grow the heap with the message:
// the body is streamed through a fixed buffer.
func TestMemory100MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("relays 100 MiB")
	}
	size := int64(100 << 20)
	if raceEnabled {
		// 100 MiB takes about a minute under the race detector. 20 MiB
		// is still more than the bound, so a relay that buffered the
		// message would still fail.
		size = 20 << 20
	}
	e := newEnv(t, func(c *Config) {
		c.MaxMessageBytes = 128 << 20
		c.DataTimeout = 5 * time.Minute
	})
	e.up.keepBody = false
	_, addr := e.newAlias("t@example.com", 3, 0)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	}()

	start := time.Now()
	c, err := netsmtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("s@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(addr); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	header := "Subject: big\r\n\r\n"
	io.WriteString(w, header)
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n")
	if _, err := io.Copy(w, &lineSource{n: size - int64(len(header)), line: line}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	c.Quit()

	msgs := e.up.messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	if extra := msgs[0].size - size; extra < 100 || extra > 400 {
		t.Errorf("smarthost got %d bytes, want %d plus one Received header", msgs[0].size, size)
	}
	growth := int64(peak.Load()) - int64(before.HeapAlloc)
	t.Logf("relayed %d MiB in %v; heap %d KiB before, peak growth %d KiB", size>>20, elapsed.Round(time.Millisecond), before.HeapAlloc>>10, growth>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB relaying %d MiB, want < 16 MiB", growth>>20, size>>20)
	}
}

// An idle session holds its buffers (bodyBufferSize to read, go-smtp's
// 4 KiB to write), its goroutine's stack and its state: bounded, and
// measured here as the heap and stack growth per session with 200 of
// them open after EHLO, in the test's own process: the test's client
// connections are included (textproto's two 4 KiB buffers each).
func TestMemoryIdleSession(t *testing.T) {
	const n = 200
	e := newEnv(t, nil)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		c := e.dial()
		c.must(250, "EHLO client.example")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc+after.StackInuse) - int64(before.HeapAlloc+before.StackInuse)) / n
	t.Logf("%d idle sessions: %d KiB each (heap and stacks)", n, per>>10)
	if per > 64<<10 {
		t.Errorf("an idle session holds %d KiB, want < 64 KiB", per>>10)
	}
}
