// Package deploy_test checks the packaging recipes in this directory by
// building them: the Debian package (build-deb.sh, nfpm.yaml) and the
// container image (../Containerfile). Both need tools a developer may
// lack (dpkg-deb, podman): without them the tests skip, except under
// CI=true, where they fail. Building them (a static binary, nfpm, an
// image) takes minutes on a cold machine, so outside CI they run only
// when asked for with TEMPALIAS_PACKAGING_TESTS=1: a newcomer's
// `go test ./...` stays quick, and CI always runs them.
package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// packagingTests skips t unless it runs in CI or was asked for.
func packagingTests(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a package or an image: not in -short")
	}
	if os.Getenv("CI") != "true" && os.Getenv("TEMPALIAS_PACKAGING_TESTS") != "1" {
		t.Skip("skipping: builds a package or an image, minutes on a cold machine; CI runs it, TEMPALIAS_PACKAGING_TESTS=1 runs it here")
	}
}

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
