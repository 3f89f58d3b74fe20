package deploy_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestContainerImage builds the image with deploy/build-image.sh and
// checks it from outside: its configuration (non-root user, volume,
// ports, entrypoint), who owns /data, and the binary and config inside,
// copied out with podman cp and run here. The image itself is not run:
// in the sandboxes this project's CI uses, crun cannot set the
// container's rlimits ("setrlimit RLIMIT_NOFILE: Operation not
// permitted"), so no container starts.
func TestContainerImage(t *testing.T) {
	packagingTests(t)
	podman := requireTool(t, "podman", "podman")
	const version = "9.8.7-test"
	tag := "localhost/tempalias-test:" + strings.ToLower(strings.ReplaceAll(filepath.Base(t.TempDir()), "_", "-"))
	t.Log("building the image with deploy/build-image.sh")
	run(t, 5*time.Minute, "sh", "deploy/build-image.sh", version, tag)
	t.Cleanup(func() { exec.Command(podman, "rmi", "--force", tag).Run() })

	var images []struct {
		Config struct {
			User         string
			Volumes      map[string]struct{}
			ExposedPorts map[string]struct{}
			Entrypoint   []string
			Cmd          []string
			WorkingDir   string
			Labels       map[string]string
		}
	}
	if err := json.Unmarshal([]byte(run(t, time.Minute, podman, "image", "inspect", tag)), &images); err != nil || len(images) != 1 {
		t.Fatalf("podman image inspect: %v, %d images", err, len(images))
	}
	cfg := images[0].Config
	if cfg.User != "65532:65532" {
		t.Errorf("User %q, want 65532:65532 (not root)", cfg.User)
	}
	if _, ok := cfg.Volumes["/data"]; !ok || cfg.WorkingDir != "/data" {
		t.Errorf("Volumes %v, WorkingDir %q: want the /data volume", cfg.Volumes, cfg.WorkingDir)
	}
	for _, port := range []string{"8080/tcp", "2525/tcp"} {
		if _, ok := cfg.ExposedPorts[port]; !ok {
			t.Errorf("ExposedPorts %v lack %s", cfg.ExposedPorts, port)
		}
	}
	if cmd := append(cfg.Entrypoint, cfg.Cmd...); !slices.Equal(cmd, []string{"/usr/bin/tempalias", "-config", "/etc/tempalias/tempalias.toml"}) {
		t.Errorf("the image runs %q", cmd)
	}
	if v := cfg.Labels["org.opencontainers.image.version"]; v != version {
		t.Errorf("version label %q, want %s", v, version)
	}

	ctr := strings.TrimSpace(run(t, time.Minute, podman, "create", tag))
	t.Cleanup(func() { exec.Command(podman, "rm", "--force", ctr).Run() })

	// The files, from the container's file system as a tar stream: only
	// these, and /data writable by the user the image runs as.
	files := exportedFiles(t, podman, ctr)
	want := map[string]string{
		"data/":                        "65532:65532 drwx",
		"usr/bin/tempalias":            "0:0 -rwx",
		"etc/tempalias/tempalias.toml": "0:0 -rw-",
	}
	for name, w := range want {
		if got, ok := files[name]; !ok || !strings.HasPrefix(got, w) {
			t.Errorf("%s: %q, want %s...", name, got, w)
		}
	}
	for name := range files {
		if _, ok := want[name]; !ok && !strings.HasSuffix(name, "/") {
			t.Errorf("unexpected file %s in the image", name)
		}
	}

	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "tempalias"), filepath.Join(dir, "tempalias.toml")
	run(t, time.Minute, podman, "cp", ctr+":/usr/bin/tempalias", bin)
	run(t, time.Minute, podman, "cp", ctr+":/etc/tempalias/tempalias.toml", conf)
	if v := run(t, time.Minute, bin, "version"); !strings.HasPrefix(v, "tempalias "+version+"\n") {
		t.Errorf("the image's tempalias version says %q, want tempalias %s", v, version)
	}
	out := run(t, time.Minute, bin, "check-config", "-config", conf)
	if !strings.Contains(out, "is valid") || !strings.Contains(out, "/data/mail") {
		t.Errorf("check-config of the image's config: %s", out)
	}
	// Listening on every interface, so that published ports reach it.
	out = run(t, time.Minute, "sh", "-c", `grep -E '^listen = ' "$1"`, "sh", conf)
	if out != "listen = \":8080\"\nlisten = \":2525\"\n" {
		t.Errorf("the image's config listens on:\n%s", out)
	}
}

// exportedFiles lists a container's file system as "uid:gid mode" by path.
func exportedFiles(t *testing.T, podman, ctr string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, podman, "export", ctr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("podman export: %v", err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = fmt.Sprintf("%d:%d %s", h.Uid, h.Gid, h.FileInfo().Mode())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("podman export: %v", err)
	}
	return files
}
