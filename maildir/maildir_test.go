package maildir

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/smtp"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLFWriter(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"a\r\nb\r\n", "a\nb\n"},
		{"no newline", "no newline"},
		{"lone\rcr\r\n", "lone\rcr\n"},
		{"\r\r\n\r", "\r\n\r"},
		{"ends in CR\r", "ends in CR\r"},
		{"lf only\n", "lf only\n"},
	} {
		for _, oneByte := range []bool{false, true} {
			var out bytes.Buffer
			var r io.Reader = strings.NewReader(c.in)
			if oneByte {
				r = iotest.OneByteReader(r) // every CR ends a write
			}
			lw := &lfWriter{w: &out}
			if _, err := io.Copy(lw, r); err != nil {
				t.Fatal(err)
			}
			if err := lw.flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != c.want {
				t.Errorf("%q (one byte at a time: %v): got %q, want %q", c.in, oneByte, out.String(), c.want)
			}
		}
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDeliver(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "mail"))
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	path, err := d.Deliver(strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != filepath.Join(string(d), "new") {
		t.Errorf("delivered to %s, not into new/", path)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "Subject: hi\n\nbody\n" {
		t.Errorf("file holds %q (%v)", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if left := files(t, filepath.Join(string(d), "tmp")); len(left) != 0 {
		t.Errorf("tmp/ still holds %v", left)
	}
	// Two deliveries in the same instant get different names; a last CR
	// held back to see what follows is written all the same.
	second, err := d.Deliver(strings.NewReader("x\r"))
	if err != nil || second == path {
		t.Errorf("second delivery: %s, %v", second, err)
	}
	if b, err := os.ReadFile(second); err != nil || string(b) != "x\r" {
		t.Errorf("second file holds %q (%v)", b, err)
	}
}

func TestDeliverFailureLeavesNothing(t *testing.T) {
	d := Dir(t.TempDir())
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	broken := io.MultiReader(strings.NewReader("Subject: cut\r\n"), iotest.ErrReader(errors.New("client went away")))
	if _, err := d.Deliver(broken); err == nil {
		t.Fatal("a message cut short was delivered")
	}
	for _, sub := range []string{"new", "tmp"} {
		if left := files(t, filepath.Join(string(d), sub)); len(left) != 0 {
			t.Errorf("%s/ holds %v after a failed delivery", sub, left)
		}
	}
}

func startSink(t *testing.T) (*Sink, Dir) {
	t.Helper()
	d := Dir(filepath.Join(t.TempDir(), "mail"))
	s, err := Listen(d, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(t.Context()) })
	return s, d
}

func TestSinkStoresWhatItAccepts(t *testing.T) {
	s, d := startSink(t)
	msg := "Received: from x\r\nSubject: hello\r\n\r\nline one\r\n.dot line\r\n"
	if err := smtp.SendMail(s.Addr(), nil, "sender@example.org", []string{"a@example.com", "b@example.com"}, []byte(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	names := files(t, filepath.Join(string(d), "new"))
	if len(names) != 1 {
		t.Fatalf("new/ holds %v, want one message", names)
	}
	b, err := os.ReadFile(filepath.Join(string(d), "new", names[0]))
	if err != nil {
		t.Fatal(err)
	}
	want := "Return-Path: <sender@example.org>\nX-Original-To: a@example.com\nX-Original-To: b@example.com\n" +
		"Received: from x\nSubject: hello\n\nline one\n.dot line\n"
	if string(b) != want {
		t.Errorf("stored:\n%q\nwant:\n%q", b, want)
	}
}

// A message that cannot be written is refused with a 4xx, so the sender
// keeps it: the sink never says 250 for mail it does not have.
func TestSinkRefusesWhatItCannotStore(t *testing.T) {
	s, d := startSink(t)
	if err := os.RemoveAll(filepath.Join(string(d), "tmp")); err != nil {
		t.Fatal(err)
	}
	err := smtp.SendMail(s.Addr(), nil, "sender@example.org", []string{"a@example.com"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "451 ") {
		t.Fatalf("send into a broken Maildir: %v, want 451", err)
	}
	if left := files(t, filepath.Join(string(d), "new")); len(left) != 0 {
		t.Errorf("new/ holds %v", left)
	}
}

// repeat is an endless message body, line after line.
type repeat struct{ line []byte }

func (r repeat) Read(p []byte) (int, error) {
	n := 0
	for n+len(r.line) <= len(p) {
		n += copy(p[n:], r.line)
	}
	if n == 0 {
		n = copy(p, r.line)
	}
	return n, nil
}

// Memory does not grow with the message: a 54 MiB message costs a few
// buffers, not its size.
func TestDeliverStreams(t *testing.T) {
	d := Dir(t.TempDir())
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	const size = 27 << 21 // whole lines of 27 bytes
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	path, err := d.Deliver(io.LimitReader(repeat{[]byte("a line of a large message\r\n")}, size))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("delivering %d MiB allocated %d KiB", size>>20, alloc>>10)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 26<<21 {
		t.Errorf("file size %d, want %d (LF line endings)", fi.Size(), 26<<21)
	}
}
