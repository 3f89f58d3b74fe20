package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The plan keeps every front end's worst case below the open files limit
// and every client's share at most two thirds of its front end's.
func TestPlanConns(t *testing.T) {
	for _, tc := range []struct {
		n                      uint64
		smtp, smtpPer, http, h int
	}{
		{256, 32, 21, 48, 32},
		{1024, 160, 100, 240, 100},
		{4096, 672, 100, 1008, 100},
		{524287, 16384, 1024, 16384, 1024},
		{^uint64(0), 16384, 1024, 16384, 1024},
	} {
		b := planConns(tc.n)
		if b.smtp != tc.smtp || b.smtpPerClient != tc.smtpPer || b.http != tc.http || b.httpPerClient != tc.h {
			t.Errorf("%d open files: smtp %d (%d per client), http %d (%d per client); want %d (%d), %d (%d)",
				tc.n, b.smtp, b.smtpPerClient, b.http, b.httpPerClient, tc.smtp, tc.smtpPer, tc.http, tc.h)
		}
		if worst := uint64(fdReserve + 3*b.smtp + b.http); worst > tc.n {
			t.Errorf("%d open files: worst case %d descriptors", tc.n, worst)
		}
	}
	for n := uint64(8); n < 1<<16; n = n*5/4 + 1 {
		b := planConns(n)
		if b.smtpPerClient > b.smtp*2/3 || b.httpPerClient > b.http*2/3 || b.smtpPerClient < 1 || b.httpPerClient < 1 {
			t.Errorf("%d open files: %+v", n, b)
		}
	}
}

// openFiles reports the soft limit in force, which Go raised at start.
func TestOpenFiles(t *testing.T) {
	n, err := openFiles()
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if n != lim.Cur || lim.Cur+1 < lim.Max {
		t.Errorf("openFiles %d; soft limit %d, hard %d: not raised", n, lim.Cur, lim.Max)
	}
}

// The real binary under a 256 open files limit, with the default limits:
// one address holding more idle SMTP and HTTP connections than there are
// descriptors does not stop another address from being served.
func TestBinaryConnectionLimitsUnderPrlimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prlimit (util-linux) is missing")
		}
		t.Skip("prlimit (util-linux) is not installed")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tempalias.toml")
	if err := os.WriteFile(cfgPath, []byte(testConfig(dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := launchCmd(t, "", exec.Command(prlimit, "--nofile=256", "--", binary, "-config", cfgPath))
	p.waitLog(t, "open_files=256 smtp=32 smtp_per_client=21 http=48 http_per_client=32")
	smtpAddr, httpAddr := p.addrs["smtp"], p.addrs["http"]

	const flood = 150 // of each: 300 connections for 256 descriptors
	greeted := 0
	for range flood {
		c, err := net.Dial("tcp", smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(line, "220 "):
			greeted++ // and then idle
		case strings.HasPrefix(line, "421 "):
		default:
			t.Fatalf("SMTP connection: %q, %v", line, err)
		}
	}
	if greeted != 21 {
		t.Errorf("%d of %d SMTP connections from one address greeted, want its share, 21", greeted, flood)
	}
	served := 0
	for range flood {
		c, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
		if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && res.StatusCode == 200 {
			served++ // and then idle, kept alive
		}
	}
	if served == 0 || served > 32 {
		t.Errorf("%d of %d HTTP connections from one address served, want at most its share, 32", served, flood)
	}

	// Another address is served on both.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "220 ") {
		t.Fatalf("second client's SMTP greeting: %q", line)
	}
	fmt.Fprint(c, "QUIT\r\n")
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "221 ") {
		t.Fatalf("second client's QUIT: %q", line)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 20 * time.Second}
	res, err := hc.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("second client's HTTP request: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("second client's HTTP request: %s", res.Status)
	}
	p.stop(t)
}
