// Package deploy_test checks the packaging recipes in this directory by
// building them: the Debian package (build-deb.sh, nfpm.yaml) and the
// container image (../Containerfile). Both need tools a developer may
// lack (dpkg-deb, podman): without them the tests skip, except under
// CI=true, where they fail.
package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireTool returns the path of an external tool, skipping the test
// without it outside CI and failing it under CI=true.
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

// run runs a command from the repository's top with a deadline, failing
// the test with its output if it fails.
func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
