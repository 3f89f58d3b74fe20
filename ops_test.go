package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/tempalias/tempalias/internal/testcert"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial to certFile and keyFile, through a rename as certificate tools
// do, and returns it for a client's pool.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	c := testcert.New(t, serial)
	for file, data := range map[string][]byte{certFile: c.CertPEM, keyFile: c.KeyPEM} {
		if err := os.WriteFile(file+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
	}
	return c.X509
}

func TestTLSReloadHealthAndMetrics(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	cfg := testConfig(dir) + fmt.Sprintf(`[tls]
cert_file = %q
key_file = %q
[metrics]
listen = "127.0.0.1:0"
pprof = true
`, certFile, keyFile)
	cfg = strings.Replace(cfg, "[http]\n", "[http]\ntls_listen = \"127.0.0.1:0\"\n", 1)
	p := start(t, cfg)

	pool := x509.NewCertPool()
	pool.AddCert(first)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	get := func(c *http.Client, url string) (*http.Response, string) {
		t.Helper()
		res, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, body := get(client, "https://"+p.addrs["https"]+"/healthz")
	if res.StatusCode != 200 || body != "ok\n" || res.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Fatalf("https healthz: %d %q", res.StatusCode, body)
	}
	if res.ProtoMajor != 2 {
		t.Errorf("https speaks %s, want HTTP/2", res.Proto)
	}
	if res, _ := get(http.DefaultClient, "http://"+p.addrs["http"]+"/healthz"); res.StatusCode != 200 {
		t.Fatalf("http healthz: %d", res.StatusCode)
	}

	// SMTP offers STARTTLS with the same certificate.
	c, err := smtp.Dial(p.addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT after STARTTLS: %v", err)
	}

	// Swap the certificate and SIGHUP: the open connection keeps working,
	// a new one gets the new certificate.
	second := writeCert(t, certFile, keyFile, 2)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "certificate reloaded")
	if res, _ := get(client, "https://"+p.addrs["https"]+"/healthz"); res.StatusCode != 200 {
		t.Fatalf("kept-alive connection after reload: %d", res.StatusCode)
	}
	pool2 := x509.NewCertPool()
	pool2.AddCert(second)
	client2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}}
	res, _ = get(client2, "https://"+p.addrs["https"]+"/healthz")
	if res.TLS.PeerCertificates[0].SerialNumber.Int64() != 2 {
		t.Fatalf("new connection got certificate %v", res.TLS.PeerCertificates[0].SerialNumber)
	}

	// SIGHUP applies new creation limits and names what needs a restart.
	writeFile(t, p.cfg, []byte(cfg+"[limits]\nmax_days = 1\ndefault_days = 1\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "creation limits applied")
	if status, m := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"t@example.com","days":2}`); status != 400 {
		t.Fatalf("days 2 after max_days = 1: %d %v", status, m)
	}
	// The page states the limits from GET /limits, which follows too.
	if status, m := httpDo(t, "GET", "http://"+p.addrs["http"]+"/limits", ""); status != 200 || m["default-days"] != 1.0 || m["max-days"] != 1.0 || m["max-usage"] != 100.0 {
		t.Fatalf("GET /limits after max_days = 1: %d %v", status, m)
	}
	writeFile(t, p.cfg, []byte(strings.Replace(cfg, "[smtp]\n", "[smtp]\nhostname = \"mx.example\"\n", 1)+"[limits]\nmax_days = 1\ndefault_days = 1\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "sections=smtp")

	// Metrics after some traffic, on their own listener only.
	if status, m := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"t@example.com"}`); status != 201 {
		t.Fatalf("create: %d %v", status, m)
	}
	_, text := get(http.DefaultClient, "http://"+p.addrs["metrics"]+"/metrics")
	for _, want := range []string{
		"tempalias_aliases_created_total 1",
		`tempalias_http_requests_total{code="201",route="/aliases"} 1`,
		"tempalias_aliases_stored 1",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	buildInfo := `(?m)^tempalias_build_info\{commit="[^"]+",goversion="` + regexp.QuoteMeta(runtime.Version()) + `",version="\(devel\)"\} 1$`
	if !regexp.MustCompile(buildInfo).MatchString(text) {
		t.Errorf("metrics lack %s", buildInfo)
	}
	if res, _ := get(http.DefaultClient, "http://"+p.addrs["http"]+"/metrics"); res.StatusCode != 404 {
		t.Errorf("/metrics on the public listener: %d", res.StatusCode)
	}
	if res, body := get(http.DefaultClient, "http://"+p.addrs["metrics"]+"/debug/pprof/"); res.StatusCode != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof on the metrics listener: %d", res.StatusCode)
	}
	if res, _ := get(http.DefaultClient, "http://"+p.addrs["http"]+"/debug/pprof/"); res.StatusCode != 404 {
		t.Errorf("pprof on the public listener: %d", res.StatusCode)
	}
	p.stop(t)
}
