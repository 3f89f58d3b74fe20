package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the tempalias executable built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tempalias-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tempalias")
	// The binary gets the race detector only when these tests have it
	// (go test -race): a race build of everything from a cold cache takes
	// minutes, a plain one shares what go test has just compiled.
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "main_test: building the tempalias binary for the end-to-end tests: go %s .\n", strings.Join(args, " "))
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building tempalias: %v\n%s", err, out)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "main_test: built in %.1fs\n", time.Since(start).Seconds())
	if raceEnabled {
		// A race-enabled binary sleeps a second at exit by default (to
		// flush reports); the tests run it dozens of times.
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running tempalias binary.
type proc struct {
	cmd     *exec.Cmd
	lines   chan string // stderr, line by line
	addrs   map[string]string
	started string // the start-up line from "tempalias started" on
	done    chan error
	cfg     string // the configuration file's path

	mu  sync.Mutex
	log strings.Builder
}

// logText is everything the process logged so far.
func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog polls the log until it contains s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.logText(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within 30s", s)
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by the deadline
	}
}

var startedRE = regexp.MustCompile(`msg="tempalias started".*`)

// start runs the binary with config text and waits for its start-up line.
func start(t *testing.T, configText string) *proc {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "tempalias.toml")
	if err := os.WriteFile(cfgPath, []byte(configText), 0o600); err != nil {
		t.Fatal(err)
	}
	p := launch(t, "", "-config", cfgPath)
	p.cfg = cfgPath
	return p
}

// launch runs the binary with args in dir (the tests' own working
// directory when "") and waits for its start-up line.
func launch(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	return launchCmd(t, dir, exec.Command(binary, args...))
}

// launchCmd is launch for a command of the caller's making (the binary
// under prlimit, say).
func launchCmd(t *testing.T, dir string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	p.cmd.Dir = dir
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is waiting for lines any more
			}
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		close(p.lines)
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("tempalias log:\n%s", p.logText())
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("tempalias exited before starting: %v", <-p.done)
			}
			if m := startedRE.FindString(line); m != "" {
				p.addrs, p.started = map[string]string{}, m
				for _, kv := range regexp.MustCompile(`(\w+)=(\S+)`).FindAllStringSubmatch(m, -1) {
					p.addrs[kv[1]] = kv[2]
				}
				return p
			}
		case <-deadline:
			t.Fatal("tempalias did not start within 30s")
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	for range p.lines {
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("tempalias exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tempalias did not stop within 30s of SIGTERM")
	}
	if !strings.Contains(p.logText(), `msg=stopped`) {
		t.Errorf("no clean stop in log")
	}
}

func testConfig(dir string) string {
	return fmt.Sprintf(`data_file = %q
domains = ["tempalias.test"]
[http]
listen = "127.0.0.1:0"
[smtp]
listen = "127.0.0.1:0"
`, filepath.Join(dir, "aliases.db"))
}

func httpDo(t *testing.T, method, url, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(b) > 0 { // a 204 has no body
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %q", method, url, res.StatusCode, b)
		}
	}
	return res.StatusCode, m
}

func TestBinaryRestartKeepsAliases(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	p := start(t, cfg)
	status, created := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"t@example.com","days": 3,"max-usage": 5}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, created)
	}
	id, token := created["id"].(string), created["token"].(string)

	// A second instance on the same data file refuses to start, promptly.
	second := exec.Command(binary, "-config", filepath.Join(dir, "second.toml"))
	writeFile(t, filepath.Join(dir, "second.toml"), []byte(cfg), 0o600)
	startedAt := time.Now()
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked by another process") {
		t.Errorf("second instance: err %v, output %q", err, out)
	}
	if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); lines != 0 {
		t.Errorf("second instance error is %d lines, want one: %q", lines+1, out)
	}
	if d := time.Since(startedAt); d > 20*time.Second {
		t.Errorf("second instance took %v to give up", d)
	}

	p.stop(t)
	if strings.Contains(p.logText(), token) {
		t.Error("the token appears in the log")
	}

	p = start(t, cfg)
	url := "http://" + p.addrs["http"] + "/aliases/" + id
	status, got := httpDo(t, "GET", url, "", "Authorization", "Bearer "+token)
	if status != 200 || got["target"] != "t@example.com" || got["remaining"] != 5.0 {
		t.Fatalf("after restart: %d %v", status, got)
	}
	if status, _ := httpDo(t, "DELETE", url, "", "Authorization", "Bearer "+token); status != 204 {
		t.Fatalf("revoke after restart: %d", status)
	}
	p.stop(t)
}

func TestBinaryBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	writeFile(t, path, []byte("[limits]\nmax_dayz = 3\n"), 0o600)
	out, err := exec.Command(binary, "-config", path).CombinedOutput()
	if err == nil {
		t.Fatal("started with a bad config")
	}
	if !strings.Contains(string(out), "limits.max_dayz") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("error output %q should be one line naming limits.max_dayz", out)
	}
}
