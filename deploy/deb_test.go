package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDebianPackage builds the package as docs/deploy.md says, then checks
// its control fields, its files and their modes, the conffile and the
// maintainer scripts, and runs the packaged binary.
func TestDebianPackage(t *testing.T) {
	packagingTests(t)
	dpkgDeb := requireTool(t, "dpkg-deb", "dpkg")
	const version = "9.8.7~test"
	out := t.TempDir()
	t.Log("building the package with deploy/build-deb.sh (compiles nfpm on first use)")
	run(t, 8*time.Minute, "sh", "deploy/build-deb.sh", version, out)
	deb := filepath.Join(out, "tempalias_"+version+"_amd64.deb")
	if _, err := os.Stat(deb); err != nil {
		entries, _ := os.ReadDir(out)
		t.Fatalf("no %s (made: %v)", filepath.Base(deb), entries)
	}

	fields := run(t, time.Minute, dpkgDeb, "-f", deb, "Package", "Version", "Architecture", "Section", "Maintainer")
	for _, want := range []string{"Package: tempalias\n", "Version: " + version + "\n", "Architecture: amd64\n", "Section: mail\n", "Maintainer: "} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}
	if depends := run(t, time.Minute, dpkgDeb, "-f", deb, "Depends"); strings.TrimSpace(depends) != "" {
		t.Errorf("a static binary depends on nothing; Depends: %s", depends)
	}

	// dpkg-deb -c lines: mode owner/group size date time ./path
	listing := run(t, time.Minute, dpkgDeb, "-c", deb)
	modes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("unexpected dpkg-deb -c line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s owned by %s, want root/root", f[5], f[1])
		}
		modes[strings.TrimPrefix(f[5], ".")] = f[0]
	}
	for path, mode := range map[string]string{
		"/usr/bin/tempalias":                              "-rwxr-xr-x",
		"/usr/lib/systemd/system/tempalias.service":       "-rw-r--r--",
		"/usr/lib/systemd/system/tempalias-http.socket":   "-rw-r--r--",
		"/usr/lib/systemd/system/tempalias-smtp.socket":   "-rw-r--r--",
		"/etc/tempalias/tempalias.toml":                   "-rw-r--r--",
		"/usr/share/doc/tempalias/README.md":              "-rw-r--r--",
		"/usr/share/doc/tempalias/deploy.md":              "-rw-r--r--",
		"/usr/share/doc/tempalias/design.md":              "-rw-r--r--",
		"/usr/share/doc/tempalias/tempalias.toml.example": "-rw-r--r--",
	} {
		if got, ok := modes[path]; !ok {
			t.Errorf("the package lacks %s:\n%s", path, listing)
		} else if got != mode {
			t.Errorf("%s has mode %s, want %s", path, got, mode)
		}
	}

	control := filepath.Join(t.TempDir(), "DEBIAN")
	run(t, time.Minute, dpkgDeb, "-e", deb, control)
	conffiles, err := os.ReadFile(filepath.Join(control, "conffiles"))
	if err != nil || string(conffiles) != "/etc/tempalias/tempalias.toml\n" {
		t.Errorf("conffiles: %q, %v; want the config alone", conffiles, err)
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join(control, script)
		fi, err := os.Stat(path)
		if err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("maintainer script %s: %v, mode %v", script, err, fi.Mode())
			continue
		}
		run(t, time.Minute, "sh", "-n", path)
	}

	root := filepath.Join(t.TempDir(), "root")
	run(t, time.Minute, dpkgDeb, "-x", deb, root)
	for packaged, src := range map[string]string{
		"usr/lib/systemd/system/tempalias.service":     "tempalias.service",
		"usr/lib/systemd/system/tempalias-http.socket": "tempalias-http.socket",
		"usr/lib/systemd/system/tempalias-smtp.socket": "tempalias-smtp.socket",
		"etc/tempalias/tempalias.toml":                 "tempalias.toml",
	} {
		got, err := os.ReadFile(filepath.Join(root, packaged))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("/%s differs from deploy/%s", packaged, src)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/tempalias.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^ExecStart=/usr/bin/tempalias `).Match(unit) {
		t.Errorf("the unit does not start the packaged /usr/bin/tempalias:\n%s", unit)
	}

	bin := filepath.Join(root, "usr/bin/tempalias")
	if v := run(t, time.Minute, bin, "version"); !strings.HasPrefix(v, "tempalias "+version+"\n") {
		t.Errorf("packaged tempalias version says %q, want tempalias %s", v, version)
	}
	if out := run(t, time.Minute, bin, "check-config", "-config", filepath.Join(root, "etc/tempalias/tempalias.toml")); !strings.Contains(out, "is valid") {
		t.Errorf("check-config of the packaged config: %s", out)
	}
}
