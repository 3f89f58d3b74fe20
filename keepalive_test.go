package main

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tempalias/tempalias/config"
)

// keepAlive is SO_KEEPALIVE of the connection a listener accepted.
func keepAlive(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// The SMTP listener's connections have no TCP keep-alive (its
// setsockopt calls were most of a refusal's); HTTP's keep Go's default.
func TestListenKeepAlive(t *testing.T) {
	for _, c := range []struct {
		name string
		want int
	}{{"smtp", 0}, {"http", 1}} {
		ln, err := listen(nil, c.name, c.name+".listen", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := keepAlive(t, conn); got != c.want {
			t.Errorf("%s: SO_KEEPALIVE = %d on an accepted connection, want %d", c.name, got, c.want)
		}
		conn.Close()
		client.Close()
		ln.Close()
	}
}

// Without keep-alive an idle SMTP client is still dropped: by
// smtp.read_timeout, with 421, both before EHLO and between commands.
func TestSMTPIdleTimeout(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tempalias.toml")
	writeFile(t, path, []byte(testConfig(dir)+"read_timeout = \"300ms\"\n[admin]\nsocket = \""+filepath.Join(dir, "admin.sock")+"\"\n"), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, stop := startApp(t, cfg)
	t.Cleanup(func() { stop() })
	for _, greet := range []bool{false, true} {
		c, err := net.Dial("tcp", a.smtpLn.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// Far beyond the timeout: a server that never hangs up fails
		// the read instead of the test hanging.
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
			t.Fatalf("banner %q, %v", line, err)
		}
		if greet {
			io.WriteString(c, "EHLO client.example\r\n")
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("EHLO reply: %v", err)
				}
				if strings.HasPrefix(line, "250 ") {
					break
				}
			}
		}
		start := time.Now()
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "421 ") {
			t.Fatalf("greeted %v: idle client got %q, %v; want a 421", greet, line, err)
		}
		if _, err := r.ReadString('\n'); err != io.EOF {
			t.Errorf("greeted %v: after the 421 the connection is still open: %v", greet, err)
		}
		t.Logf("greeted %v: %q after %v", greet, strings.TrimSpace(line), time.Since(start))
		c.Close()
	}
}
