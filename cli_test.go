package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// runBinary runs the binary with args and returns its exit code, stdout
// and stderr.
func runBinary(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("%s %q: %v", bin, args, err)
	return 0, "", ""
}

func TestCLIHelp(t *testing.T) {
	// Every command is listed, each on a line of its own with its summary.
	var listing []string
	for _, c := range commands {
		listing = append(listing, `(?m)^  `+regexp.QuoteMeta(c.name)+` +`+regexp.QuoteMeta(c.summary)+`$`)
	}
	for _, c := range []struct {
		args       []string
		code       int
		stdout     []string // patterns
		stderr     []string
		quietOther bool // nothing on the other stream
	}{
		{args: []string{"-h"}, stdout: listing},
		{args: []string{"--help"}, stdout: listing},
		{args: []string{"-help"}, stdout: listing},
		{args: []string{"help"}, stdout: listing},
		{args: []string{"help", "help"}, stdout: listing},
		{args: []string{"help", "create"}, stdout: []string{`(?m)^tempalias create: create an alias$`, `-target address`, `-days int`, `-max-usage int`, `-config file`}},
		{args: []string{"create", "-h"}, stdout: []string{`-target address`, `-max-usage int`}},
		{args: []string{"create", "-h"}, stdout: []string{`-allow-from senders`, `-lock-sender`}},
		{args: []string{"help", "change"}, stdout: []string{`-days int`, `-max-usage int`, `-allow-from senders`}},
		{args: []string{"serve", "--help"}, stdout: []string{`tempalias serve: run the service`, `-config file`}},
		{args: []string{"help", "show"}, stdout: []string{`Usage: tempalias show \[FLAGS\] ID`}},
		{args: []string{"backup", "-h"}, stdout: []string{`Usage: tempalias backup \[FLAGS\] FILE`}},
		{args: []string{"help", "version"}, stdout: []string{`Usage: tempalias version\n`}},
		{args: []string{"frobnicate"}, code: 2, stderr: append([]string{`unknown command "frobnicate"`}, listing...)},
		{args: []string{"help", "frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{args: []string{"-bogus"}, code: 2, stderr: []string{`flag provided but not defined: -bogus`, `-config file`}},
		{args: []string{"list", "extra"}, code: 2, stderr: []string{`unexpected argument "extra"`, `Usage: tempalias list`}},
		{args: []string{"show"}, code: 2, stderr: []string{`missing ID`}},
		{args: []string{"create", "-days", "x"}, code: 2, stderr: []string{`invalid value "x" for flag -days`}},
	} {
		code, stdout, stderr := runBinary(t, binary, c.args...)
		if code != c.code {
			t.Errorf("tempalias %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(c.args, " "), code, c.code, stdout, stderr)
			continue
		}
		for _, stream := range []struct {
			name, text string
			want       []string
		}{{"stdout", stdout, c.stdout}, {"stderr", stderr, c.stderr}} {
			if len(stream.want) == 0 && stream.text != "" {
				t.Errorf("tempalias %s: unexpected %s:\n%s", strings.Join(c.args, " "), stream.name, stream.text)
			}
			for _, w := range stream.want {
				if !regexp.MustCompile(w).MatchString(stream.text) {
					t.Errorf("tempalias %s: %s lacks %s:\n%s", strings.Join(c.args, " "), stream.name, w, stream.text)
				}
			}
		}
	}
}

// version and -version print what the binary knows of its build; a
// release build's version comes from -ldflags, the commit from Go's VCS
// stamp (when there is one: a checkout and git), as `go version -m` says.
func TestCLIVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tempalias")
	// -buildvcs=auto: stamp the commit when git can tell it (GOFLAGS may
	// say otherwise). -race as TestMain's build, so that only the main
	// package is compiled again.
	args := []string{"build", "-buildvcs=auto", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	modinfo, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	setting := func(key string) string {
		m := regexp.MustCompile(`(?m)^\s+build\s+` + regexp.QuoteMeta(key) + `=(\S+)$`).FindSubmatch(modinfo)
		if m == nil {
			return ""
		}
		return string(m[1])
	}
	wantCommit, wantDate := "unknown", "unknown"
	if rev := setting("vcs.revision"); rev != "" {
		wantCommit, wantDate = rev, setting("vcs.time")
		if setting("vcs.modified") == "true" {
			wantCommit += " (with uncommitted changes)"
		}
		t.Logf("built from commit %s", rev)
	} else {
		t.Logf("go build stamped no commit (no git checkout here, or git missing)")
	}
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		code, stdout, stderr := runBinary(t, bin, args...)
		if code != 0 || stderr != "" {
			t.Errorf("tempalias %s: exit %d, stderr %q", args[0], code, stderr)
		}
		lines := strings.Split(stdout, "\n")
		if len(lines) < 4 || lines[0] != "tempalias v9.8.7-test" ||
			!strings.HasPrefix(lines[1], "commit: "+wantCommit) ||
			lines[2] != "date:   "+wantDate ||
			!strings.HasPrefix(lines[3], "go:     "+runtime.Version()+" ") {
			t.Errorf("tempalias %s printed:\n%s\nwant the version, commit %s, date %s, %s", args[0], stdout, wantCommit, wantDate, runtime.Version())
		}
	}
}

func TestBuildString(t *testing.T) {
	b := build{Version: "v1.0.0", Commit: "abc123", Date: "2026-12-01T10:00:00Z", Modified: true, Go: "go1.26.8"}
	got := b.String()
	for _, want := range []string{"tempalias v1.0.0\n", "commit: abc123 (with uncommitted changes)\n", "date:   2026-12-01T10:00:00Z\n", "go:     go1.26.8 "} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := (build{Version: "(devel)", Go: "go1.26.8"}).String(); !strings.Contains(got, "commit: unknown") || !strings.Contains(got, "date:   unknown") {
		t.Errorf("without VCS information: %q", got)
	}
}
