package main

import (
	"os/exec"
	"testing"
)

// TestForkTests runs the tests of the go-smtp fork that tempalias builds
// with (third_party/go-smtp, a module of its own that `go test ./...`
// here does not reach): the patch's own tests (the stuffed reader against
// the released one, the pipelining, the buffers, the cut-short BDAT, a
// Serve after Shutdown) and upstream's. With -race here, with -race there.
func TestForkTests(t *testing.T) {
	args := []string{"test", "-count=1"}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./...")...)
	cmd.Dir = "third_party/go-smtp"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %v in %s: %v\n%s", args, cmd.Dir, err, out)
	}
}
