package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
)

// adminCmd runs an admin command of the real binary and returns its stdout.
func adminCmd(t *testing.T, cfgPath string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{args[0], "-config", cfgPath}, args[1:]...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func TestAdminCommands(t *testing.T) {
	for _, running := range []bool{true, false} {
		name := map[bool]string{true: "server running", false: "server stopped"}[running]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfgText := testConfig(dir)
			cfgPath := filepath.Join(dir, "tempalias.toml")
			writeFile(t, cfgPath, []byte(cfgText), 0o600)
			if running {
				p := start(t, cfgText)
				t.Cleanup(func() { p.stop(t) })
			}
			begin := time.Now()

			out, err := adminCmd(t, cfgPath, "create", "-target", "Someone@Example.com", "-days", "2", "-max-usage", "4", "-allow-from", "Shop.example", "-lock-sender")
			if err != nil {
				t.Fatalf("create: %v: %s", err, out)
			}
			var created httpd.View
			if err := json.Unmarshal([]byte(out), &created); err != nil {
				t.Fatalf("create output %q: %v", out, err)
			}
			if created.Token == "" || *created.Remaining != 4 || created.Alias != created.ID+"@tempalias.test" ||
				!slices.Equal(created.AllowFrom, []string{"shop.example"}) || !created.LockSender {
				t.Fatalf("created %+v", created)
			}
			if out, err := adminCmd(t, cfgPath, "create", "-target", "nobody"); err == nil || !strings.Contains(out, "target") {
				t.Errorf("bad create: %v %q", err, out)
			}
			out2, err := adminCmd(t, cfgPath, "create", "-target", "other@example.com")
			if err != nil {
				t.Fatalf("create: %v: %s", err, out2)
			}
			var other httpd.View
			if err := json.Unmarshal([]byte(out2), &other); err != nil || other.ID == "" {
				t.Fatalf("create output %q: %v", out2, err)
			}

			out, err = adminCmd(t, cfgPath, "list")
			if err != nil || !strings.Contains(out, created.ID) || !strings.Contains(out, "4/4") || !strings.Contains(out, other.ID) {
				t.Fatalf("list: %v\n%s", err, out)
			}
			out, err = adminCmd(t, cfgPath, "show", strings.ToUpper(created.ID))
			if err != nil || !strings.Contains(out, `"target": "Someone@example.com"`) || strings.Contains(out, "token") {
				t.Fatalf("show: %v\n%s", err, out)
			}
			out, err = adminCmd(t, cfgPath, "change", "-days", "5", "-max-usage", "6", created.ID)
			var changed httpd.View
			if err != nil || json.Unmarshal([]byte(out), &changed) != nil || *changed.MaxUsage != 6 || *changed.Remaining != 6 {
				t.Fatalf("change: %v\n%s", err, out)
			}
			if exp, _ := time.Parse(time.RFC3339, changed.Expires); exp.Before(begin.Add(5*24*time.Hour-time.Second)) || exp.After(time.Now().Add(5*24*time.Hour)) {
				t.Errorf("change -days 5: expires %s", changed.Expires)
			}
			for _, tc := range []struct {
				value string
				want  []string
			}{
				{"Other.example, a@B.example", []string{"other.example", "a@b.example"}},
				{"", []string{}}, // -allow-from= clears it
			} {
				out, err := adminCmd(t, cfgPath, "change", "-allow-from="+tc.value, created.ID)
				var changed httpd.View
				if err != nil || json.Unmarshal([]byte(out), &changed) != nil || !slices.Equal(changed.AllowFrom, tc.want) || *changed.MaxUsage != 6 {
					t.Fatalf("change -allow-from=%q: %v\n%s", tc.value, err, out)
				}
				out, err = adminCmd(t, cfgPath, "show", created.ID)
				var shown httpd.View
				if err != nil || json.Unmarshal([]byte(out), &shown) != nil || !slices.Equal(shown.AllowFrom, tc.want) {
					t.Errorf("show after change -allow-from=%q: %v %s", tc.value, err, out)
				}
			}
			for _, bad := range []string{"not a domain", "a.example,", "localhost"} {
				if out, err := adminCmd(t, cfgPath, "change", "-allow-from", bad, created.ID); err == nil || !strings.Contains(out, "allow-from") {
					t.Errorf("change -allow-from %q: %v %s", bad, err, out)
				}
			}
			if out, err := adminCmd(t, cfgPath, "change", "-max-usage", "0", created.ID); err == nil || !strings.Contains(out, "max-usage") {
				t.Errorf("change -max-usage 0: %v %s", err, out)
			}
			if out, err := adminCmd(t, cfgPath, "change", created.ID); err == nil || !strings.Contains(out, "change") {
				t.Errorf("change without flags: %v %s", err, out)
			}
			if out, err := adminCmd(t, cfgPath, "change", "-days", "2", "nosuchid"); err == nil || !strings.Contains(out, "not found") {
				t.Errorf("change unknown: %v %s", err, out)
			}
			if out, err := adminCmd(t, cfgPath, "show", created.ID); err != nil || !strings.Contains(out, `"max-usage": 6`) {
				t.Errorf("show after change: %v %s", err, out)
			}
			if out, err := adminCmd(t, cfgPath, "revoke", other.ID); err != nil {
				t.Fatalf("revoke: %v %s", err, out)
			}
			if out, err := adminCmd(t, cfgPath, "show", other.ID); err == nil {
				t.Errorf("show after revoke succeeded: %s", out)
			}
			if out, err := adminCmd(t, cfgPath, "revoke", "nosuchid"); err == nil || !strings.Contains(out, "not found") {
				t.Errorf("revoke unknown: %v %s", err, out)
			}

			backup := filepath.Join(dir, "backup.db")
			if out, err := adminCmd(t, cfgPath, "backup", backup); err != nil {
				t.Fatalf("backup: %v %s", err, out)
			}
			st, err := boltstore.Open(backup, boltstore.Options{OpenTimeout: time.Second})
			if err != nil {
				t.Fatalf("backup does not open: %v", err)
			}
			defer st.Close()
			a, err := st.Get(context.Background(), created.ID, time.Now())
			if err != nil || a.Target != "Someone@example.com" || a.MaxUsage != 6 { // as changed
				t.Fatalf("backup holds %+v, %v", a, err)
			}
			if _, err := st.Get(context.Background(), other.ID, time.Now()); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("revoked alias in backup: %v", err)
			}
			if d := time.Since(begin); d > 60*time.Second {
				t.Errorf("admin commands took %v", d)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	out, err := exec.Command(binary, "check-config", "-config", "tempalias.toml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid") {
		t.Errorf("check-config on the example: %v %s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	writeFile(t, bad, []byte("[smtp]\nmax_recipients = 0\n"), 0o600)
	out, err = exec.Command(binary, "check-config", "-config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "smtp.max_recipients") {
		t.Errorf("check-config on a bad file: %v %s", err, out)
	}
	writeFile(t, bad, []byte("[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n"), 0o600)
	out, err = exec.Command(binary, "check-config", "-config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "tls.cert_file") {
		t.Errorf("check-config with a missing certificate: %v %s", err, out)
	}
	// Secret files are read and checked.
	writeFile(t, bad, []byte("[smarthost]\nusername = \"u\"\npassword_file = \"/nonexistent/password\"\n"), 0o600)
	out, err = exec.Command(binary, "check-config", "-config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "smarthost.password_file: open /nonexistent/password") {
		t.Errorf("check-config with a missing password file: %v %s", err, out)
	}
	pw := filepath.Join(t.TempDir(), "password")
	writeFile(t, pw, []byte("s3cret\n"), 0o600)
	writeFile(t, bad, []byte("[smarthost]\nusername = \"u\"\npassword_file = \"password\"\n"), 0o600)
	cmd := exec.Command(binary, "check-config", "-config", bad)
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+filepath.Dir(pw))
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid; mail goes to the smarthost 127.0.0.1:25 (the default") || strings.Contains(string(out), "s3cret") {
		t.Errorf("check-config with a password in $CREDENTIALS_DIRECTORY: %v %s", err, out)
	}
	out, err = exec.Command(binary, "frobnicate").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown command") {
		t.Errorf("unknown command: %v %s", err, out)
	}
}
