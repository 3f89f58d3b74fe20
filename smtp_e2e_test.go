package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// sink is a fake smarthost: a real go-smtp server on loopback that
// records every message it accepts.
type sink struct {
	addr string
	msgs chan sunk
	// gate, when set, holds the reply to the end of each message until
	// something arrives on it (or it is closed).
	gate chan struct{}
}

type sunk struct {
	from string
	to   []string
	data []byte
}

type sinkSession struct {
	s   *sink
	cur sunk
}

func (ss *sinkSession) Reset()        { ss.cur = sunk{} }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.cur.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.cur.to = append(ss.cur.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.data = b
	if ss.s.gate != nil {
		<-ss.s.gate
	}
	ss.s.msgs <- ss.cur
	return nil
}

func startSink(t *testing.T) *sink {
	t.Helper()
	return startSinkWith(t, &sink{msgs: make(chan sunk, 10)})
}

// startSinkWith serves s, whose msgs the caller made.
func startSinkWith(t *testing.T, s *sink) *sink {
	t.Helper()
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &sinkSession{s: s}, nil
	}))
	srv.Domain = "sink.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) next(t *testing.T) sunk {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("the smarthost received nothing within 30s")
	}
	return sunk{}
}

func smarthostConfig(dir, sinkAddr string) string {
	return testConfig(dir) + fmt.Sprintf("[smarthost]\naddress = %q\n", sinkAddr)
}

const testMessage = "From: sender@example.org\r\nTo: someone\r\nSubject: hello\r\n\r\nbody line\r\n.leading dot\r\n"

func TestBinaryRelaysThroughSmarthost(t *testing.T) {
	sk := startSink(t)
	p := start(t, smarthostConfig(t.TempDir(), sk.addr))
	status, created := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"t@example.com","max-usage":1}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, created)
	}
	rcpt := strings.ToUpper(created["alias"].(string)) // local parts match case-insensitively
	if err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{rcpt}, []byte(testMessage)); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := sk.next(t)
	if got.from != "sender@example.org" || len(got.to) != 1 || got.to[0] != "t@example.com" {
		t.Errorf("smarthost got from %q to %q", got.from, got.to)
	}
	if !bytes.HasPrefix(got.data, []byte("Received: ")) || !bytes.HasSuffix(got.data, []byte(testMessage)) {
		t.Errorf("relayed message:\n%s", got.data)
	}
	// The one use is spent: the next message is refused at RCPT.
	err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{rcpt}, []byte(testMessage))
	if err == nil || !strings.HasPrefix(err.Error(), "550") || !strings.Contains(err.Error(), "5.1.1") {
		t.Fatalf("second message: %v, want 550 5.1.1", err)
	}
	p.stop(t)
	if log := p.logText(); strings.Contains(log, "body line") {
		t.Error("the message body appears in the log")
	}
}

func TestSwaksThroughTempaliasIntoSmtpSink(t *testing.T) {
	swaks := requireTool(t, "swaks", "swaks")
	smtpSink := requireTool(t, "smtp-sink", "postfix")
	// smtp-sink drops to nobody before writing, and t.TempDir's parent is
	// private to root: make a world-writable directory of our own.
	dumpDir, err := os.MkdirTemp("", "tempalias-sink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dumpDir) })
	os.Chmod(dumpDir, 0o777)
	sinkAddr := freePort(t)
	args := []string{"-d", filepath.Join(dumpDir, "msg.")}
	if os.Getuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	sinkCmd := exec.Command(smtpSink, append(args, sinkAddr, "10")...)
	var out []byte
	if err := sinkCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sinkCmd.Process.Kill(); sinkCmd.Wait() })

	p := start(t, smarthostConfig(t.TempDir(), sinkAddr))
	status, created := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"t@example.com","max-usage":2}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, created)
	}
	host, port, _ := net.SplitHostPort(p.addrs["smtp"])
	out, err = exec.Command(swaks, "--pipeline", "--server", host, "--port", port,
		"--from", "sender@example.org", "--to", created["alias"].(string),
		"--header", "Subject: swaks interop", "--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PIPELINING") {
		t.Errorf("tempalias did not advertise PIPELINING:\n%s", out)
	}
	// smtp-sink writes the message to a file once it has answered the dot.
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dumpDir, "msg.*"))
		if len(files) > 0 {
			b, _ := os.ReadFile(files[0])
			if bytes.Contains(b, []byte("hello from swaks")) && bytes.Contains(b, []byte("Received: from ")) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink stored no complete message; swaks said:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond) // polling smtp-sink's dump directory
	}
	// Unknown aliases are refused by tempalias itself.
	out, err = exec.Command(swaks, "--pipeline", "--server", host, "--port", port,
		"--from", "sender@example.org", "--to", "nosuchalias@tempalias.test").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "550 5.1.1") {
		t.Errorf("unknown alias: %v\n%s", err, out)
	}
	p.stop(t)
}

func TestBinaryVerifiesTargets(t *testing.T) {
	sk := startSink(t)
	dir := t.TempDir()
	cfg := strings.Replace(smarthostConfig(dir, sk.addr), "[http]\n", "[http]\npublic_url = \"https://tempalias.test\"\n", 1) +
		"[limits]\nverify_targets = true\n"
	p := start(t, cfg)
	status, created := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"new@example.com"}`)
	if status != 201 || created["status"] != "pending" {
		t.Fatalf("create: %d %v", status, created)
	}
	mail := sk.next(t)
	if len(mail.to) != 1 || mail.to[0] != "new@example.com" || !bytes.Contains(mail.data, []byte(created["alias"].(string))) {
		t.Fatalf("confirmation mail to %v:\n%s", mail.to, mail.data)
	}
	i := bytes.Index(mail.data, []byte("https://tempalias.test/confirm/"))
	if i < 0 {
		t.Fatalf("no link in:\n%s", mail.data)
	}
	link := string(bytes.Fields(mail.data[i:])[0])
	path := strings.TrimPrefix(link, "https://tempalias.test")

	// Pending: refused like an unknown alias.
	err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{created["alias"].(string)}, []byte(testMessage))
	if err == nil || !strings.Contains(err.Error(), "5.1.1") {
		t.Fatalf("mail to a pending alias: %v", err)
	}
	res, err := http.Post("http://"+p.addrs["http"]+path, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("confirm: %d", res.StatusCode)
	}
	res.Body.Close()
	if err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{created["alias"].(string)}, []byte(testMessage)); err != nil {
		t.Fatalf("mail after confirming: %v", err)
	}
	if got := sk.next(t); got.to[0] != "new@example.com" {
		t.Fatalf("relayed to %v", got.to)
	}
	p.stop(t)
}
