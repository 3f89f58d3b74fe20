package main

import (
	"errors"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/config"
)

// requireTool returns the path of an external tool. Outside CI a missing
// tool skips the test with a message; under CI=true it fails, so that CI
// never passes by skipping.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (install the Debian package %s; .ci/run does)", name, pkg)
	}
	t.Skipf("%s not found: install the Debian package %s to run this test", name, pkg)
	return ""
}

// writeFile writes a test's file or fails the test: a missing config
// would otherwise show up later as a confusing timeout.
func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// freePort returns a loopback address that was free a moment ago, for
// tools that cannot be told to pick their own port.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestSystemdUnitsVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	for _, name := range []string{"tempalias.service", "tempalias-http.socket", "tempalias-smtp.socket"} {
		b, err := os.ReadFile(filepath.Join("deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify wants the ExecStart binary to exist; the commented-out
		// LoadCredential= examples are verified as if in use.
		text := strings.ReplaceAll(string(b), "/usr/bin/tempalias", binary)
		text = strings.ReplaceAll(text, "\n#LoadCredential=", "\nLoadCredential=")
		writeFile(t, filepath.Join(dir, name), []byte(text), 0o644)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", "tempalias.service", "tempalias-http.socket", "tempalias-smtp.socket")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if _, err := config.Load("deploy/tempalias.toml"); err != nil {
		t.Errorf("deploy/tempalias.toml: %v", err)
	}
}

func TestSocketActivation(t *testing.T) {
	activate := requireTool(t, "systemd-socket-activate", "systemd")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tempalias.toml")
	// The configured listen addresses are unusable: only the handed-over
	// sockets can work.
	sk := startSink(t)
	cfg := strings.ReplaceAll(smarthostConfig(dir, sk.addr), `"127.0.0.1:0"`, `"192.0.2.1:1"`)
	writeFile(t, cfgPath, []byte(cfg), 0o600)
	httpAddr, smtpAddr := freePort(t), freePort(t)
	cmd := exec.Command(activate, "-l", httpAddr, "-l", smtpAddr, "--fdname=http:smtp", binary, "-config", cfgPath)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited // the log is written by the process's copier until Wait returns
		if t.Failed() {
			t.Logf("log:\n%s", log.String())
		}
	})

	// systemd-socket-activate starts tempalias on the first connection;
	// the request waits in the listen queue until then.
	var status int
	var created map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", httpAddr, time.Second)
		if err == nil {
			conn.Close()
			status, created = httpDo(t, "POST", "http://"+httpAddr+"/aliases", `{"target":"t@example.com","max-usage":1}`)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handed-over HTTP socket never answered: %v", err)
		}
		select {
		case err := <-done:
			t.Fatalf("socket activator exited: %v", err)
		case <-time.After(50 * time.Millisecond): // polling for the activator to bind
		}
	}
	if status != 201 {
		t.Fatalf("create over the handed-over socket: %d %v", status, created)
	}
	testActivatedSMTP(t, smtpAddr, sk, created)

	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGINT")
	}
}

// testActivatedSMTP relays a message over the SMTP socket systemd handed
// over; the smarthost is the one testConfig names.
func testActivatedSMTP(t *testing.T, smtpAddr string, sk *sink, created map[string]any) {
	t.Helper()
	if err := smtp.SendMail(smtpAddr, nil, "sender@example.org", []string{created["alias"].(string)}, []byte(testMessage)); err != nil {
		t.Fatalf("send over the handed-over SMTP socket: %v", err)
	}
	if got := sk.next(t); got.to[0] != "t@example.com" {
		t.Errorf("relayed to %v", got.to)
	}
}

// A socket handed over under a name tempalias does not know (systemd
// names it after its unit unless FileDescriptorName= is set) stops the
// start with a message, rather than being held open and never served.
func TestSocketActivationUnknownName(t *testing.T) {
	activate := requireTool(t, "systemd-socket-activate", "systemd")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tempalias.toml")
	writeFile(t, cfgPath, []byte(testConfig(dir)), 0o600)
	addr := freePort(t)
	cmd := exec.Command(activate, "-l", addr, "--fdname=tempalias-web", binary, "-config", cfgPath)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The activator starts tempalias at the first connection.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the activator never listened")
		}
		time.Sleep(50 * time.Millisecond) // polling for the activator to bind
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want status 1; log:\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running with an unknown socket; log:\n%s", log.String())
	}
	if !strings.Contains(log.String(), `a socket named "tempalias-web" was handed over`) {
		t.Errorf("log does not say why:\n%s", log.String())
	}
}
