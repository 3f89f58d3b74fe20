package main

import (
	"bytes"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeLine is the first line of README.md that starts with prefix.
func readmeLine(t *testing.T, prefix string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `.*$`).Find(b)
	if m == nil {
		t.Fatalf("README.md has no line starting %q", prefix)
	}
	return string(m)
}

// waitMessages polls dir until it holds n files and returns their
// contents.
func waitMessages(t *testing.T, dir string, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(files) >= n {
			var msgs [][]byte
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, b)
			}
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages after 30s, want %d", dir, len(files), n)
		}
		time.Sleep(20 * time.Millisecond) // polling the Maildir
	}
}

// The newcomer's loop, as the README tells it: `go run .` with no
// configuration, create an alias, send to it, read the message in the
// Maildir the start-up line names. It uses the default ports.
func TestDefaultsDeliverIntoMaildir(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:2525"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the default address %s is taken: %v", addr, err)
			}
			t.Skipf("the default address %s is taken (another tempalias running?): %v", addr, err)
		}
		ln.Close()
	}
	dir := t.TempDir()
	p := launch(t, dir) // no arguments at all
	maildir := filepath.Join(dir, "tempalias-mail")
	for key, want := range map[string]string{
		"url": "http://127.0.0.1:8080/", "http": "127.0.0.1:8080", "smtp": "127.0.0.1:2525",
		"maildir": maildir, "version": "(devel)",
	} {
		if got := p.addrs[key]; got != want {
			t.Errorf("start-up line: %s=%s, want %s", key, got, want)
		}
	}
	if _, ok := p.addrs["smarthost"]; ok {
		t.Errorf("start-up line names a smarthost: %s", p.addrs["smarthost"])
	}
	// The README shows the start-up line: the same keys, in the same order.
	var shown, logged []string
	for _, kv := range regexp.MustCompile(`(\w+)=\S+`).FindAllStringSubmatch(startedRE.FindString(readmeLine(t, `level=INFO msg="tempalias started"`)), -1) {
		shown = append(shown, kv[1])
	}
	for _, kv := range regexp.MustCompile(`(\w+)=\S+`).FindAllStringSubmatch(p.started, -1) {
		logged = append(logged, kv[1])
	}
	if !slices.Equal(shown, logged) {
		t.Errorf("README's start-up line has the keys %v, the binary logs %v", shown, logged)
	}
	// The README: the admin socket beside the data file, mode 0700.
	if fi, err := os.Stat(filepath.Join(dir, "tempalias.db.sock")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("admin socket: %v, %v; the README says mode 0700", fi, err)
	}

	// The README's creation request.
	status, created := httpDo(t, "POST", "http://127.0.0.1:8080/aliases", `{"target":"t@example.com","days": 3,"max-usage": 5}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, created)
	}
	addr, id, token := created["alias"].(string), created["id"].(string), created["token"].(string)
	if !strings.HasSuffix(addr, "@localhost") {
		t.Fatalf("alias %q is not in the default domain", addr)
	}
	if err := smtp.SendMail("127.0.0.1:2525", nil, "sender@example.org", []string{addr}, []byte(testMessage)); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := waitMessages(t, filepath.Join(maildir, "new"), 1)
	want := strings.ReplaceAll(testMessage, "\r\n", "\n")
	if m := msgs[0]; !bytes.HasPrefix(m, []byte("Return-Path: <sender@example.org>\nX-Original-To: t@example.com\nReceived: from ")) ||
		!bytes.Contains(m, []byte("Delivered-To: "+addr+"\n")) || !bytes.HasSuffix(m, []byte(want)) {
		t.Errorf("stored message:\n%s", m)
	}
	if left, _ := filepath.Glob(filepath.Join(maildir, "tmp", "*")); len(left) != 0 {
		t.Errorf("tmp/ still holds %v", left)
	}
	// The Maildir counts as the smarthost: the message used one use.
	status, got := httpDo(t, "GET", "http://127.0.0.1:8080/aliases/"+id, "", "Authorization", "Bearer "+token)
	if status != 200 || got["relayed"] != 1.0 || got["remaining"] != 4.0 {
		t.Errorf("after one message: %d %v", status, got)
	}

	// The README's swaks line, as written but for the alias.
	t.Run("swaks", func(t *testing.T) {
		swaks := requireTool(t, "swaks", "swaks")
		line := strings.Fields(readmeLine(t, "swaks "))
		args := line[1:]
		for i := 1; i < len(args); i++ {
			if args[i-1] == "--to" {
				args[i] = addr
			}
		}
		out, err := exec.Command(swaks, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(line, " "), err, out)
		}
		found := false
		for _, m := range waitMessages(t, filepath.Join(maildir, "new"), 2) {
			found = found || bytes.Contains(m, []byte("This is a test mailing"))
		}
		if !found {
			t.Errorf("no message from swaks in the Maildir; swaks said:\n%s", out)
		}
	})
	p.stop(t)
}

// A configuration file never falls back to the Maildir: one that names
// no smarthost delivers to the default one and says so at start-up.
func TestConfigFileWithoutSmarthostSaysSo(t *testing.T) {
	dir := t.TempDir()
	p := start(t, testConfig(dir))
	if p.addrs["smarthost"] != "127.0.0.1:25" {
		t.Errorf("start-up line: smarthost=%q, want the default 127.0.0.1:25", p.addrs["smarthost"])
	}
	if _, ok := p.addrs["maildir"]; ok {
		t.Errorf("a configuration file fell back to the Maildir %s", p.addrs["maildir"])
	}
	if !strings.Contains(p.logText(), "sets no smarthost.address") {
		t.Errorf("no warning that the file sets no smarthost:\n%s", p.logText())
	}
	p.stop(t)

	// A file may ask for the Maildir itself.
	md := filepath.Join(dir, "mail")
	p = start(t, testConfig(dir)+"[smarthost]\nmaildir = \""+md+"\"\n")
	if p.addrs["maildir"] != md || strings.Contains(p.logText(), "sets no smarthost") {
		t.Errorf("start-up with smarthost.maildir:\n%s", p.logText())
	}
	p.stop(t)
}
