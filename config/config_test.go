package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/tempalias/tempalias/internal/logtext"
)

// example is tempalias.toml at the top of the repository, the documented
// example configuration.
const example = "../tempalias.toml"

func writeFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
}

// The example file must name every key, so that it documents all of them.
func TestExampleConfigIsComplete(t *testing.T) {
	var c Config
	md, err := toml.DecodeFile(example, &c)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(typ reflect.Type, prefix []string)
	walk = func(typ reflect.Type, prefix []string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "" {
				continue
			}
			key := append(append([]string{}, prefix...), name)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
				walk(f.Type, key)
				continue
			}
			if !md.IsDefined(key...) {
				t.Errorf("tempalias.toml does not set %s", strings.Join(key, "."))
			}
		}
	}
	walk(reflect.TypeOf(c), nil)
	if _, err := Load(""); err != nil {
		t.Fatalf("defaults do not load: %v", err)
	}
	if _, err := Load(example); err != nil {
		t.Fatalf("example does not load: %v", err)
	}
}

// The example file shows the defaults: what it sets is what Default
// holds, key by key.
func TestExampleIsDefault(t *testing.T) {
	var fromFile Config
	if _, err := toml.DecodeFile(example, &fromFile); err != nil {
		t.Fatal(err)
	}
	var walk func(a, b reflect.Value, key string)
	walk = func(a, b reflect.Value, key string) {
		for i := range a.NumField() {
			f := a.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "" {
				continue
			}
			k := strings.TrimPrefix(key+"."+name, ".")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration{}) {
				walk(a.Field(i), b.Field(i), k)
				continue
			}
			if got, want := a.Field(i).Interface(), b.Field(i).Interface(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: tempalias.toml sets %v, Default() holds %v", k, got, want)
			}
		}
	}
	walk(reflect.ValueOf(fromFile), reflect.ValueOf(*Default()), "")
	// Default hands out a fresh value each time: a caller changing its
	// slices must not change the next one's.
	a := Default()
	a.Domains[0] = "changed.example"
	if Default().Domains[0] == "changed.example" {
		t.Error("Default shares its slices between calls")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ toml, want string }{
		{`datafile = "x"`, "unknown key datafile"},
		{"[smtp]\nlisten_addr = \"x\"", "unknown key smtp.listen_addr"},
		{"[limits]\nmax_days = \"ten\"", "max_days"},
		{"[limits]\nmax_days = 0", "limits.max_days"},
		{"[limits]\ndefault_days = 90", "limits.default_days"},
		{"[limits]\ncreate_per_minute = -1", "limits.create_per_minute"},
		{"[limits]\nid_guess_probability = 2.0", "limits.id_guess_probability"},
		{"[smtp]\nread_timeout = 5", "read_timeout"},
		{"[smtp]\nread_timeout = \"5 minutes\"", "read_timeout"},
		{"[smtp]\nmax_message_bytes = -5", "smtp.max_message_bytes"},
		{"[smtp]\nhostname = \"bad host\"", "smtp.hostname"},
		{"[http]\nlisten = \"8080\"", "http.listen"},
		{"[http]\ntrusted_proxies = [\"10.0.0.0/33\"]", "http.trusted_proxies"},
		{"[smarthost]\ntls = \"yes\"", "smarthost.tls"},
		{"[smarthost]\nusername = \"u\"", "smarthost.username"},
		{"[smarthost]\nmax_idle = -1", "smarthost.max_idle"},
		{"[smarthost]\nidle_timeout = \"0s\"", "smarthost.idle_timeout"},
		{`domains = []`, "domains"},
		{"[log]\nformat = \"xml\"", "log.format"},
		{"[metrics]\npprof = true", "metrics.pprof"},
		{"[limits]\nverify_targets = true", "http.public_url"},
		{"[limits]\naliases_per_target = -1", "limits.aliases_per_target"},
		{"[smtp]\nsrs_secrets = [\"\"]", "smtp.srs_secrets"},
		{"[smtp]\nsrs_domain = \"not a domain\"", "smtp.srs_domain"},
		{"[smtp]\ndnsbl = [\"zen spamhaus\"]", "smtp.dnsbl"},
		{"[smtp]\npostmaster = \"root\"", "smtp.postmaster"},
		{"[smtp]\npostmaster = \"root@LOCALHOST\"", "smtp.postmaster"},
		{"[log]\nlevel = \"loud\"", "log.level"},
		{`domains = ["bad domain"]`, "domains"},
		{`domains = "x.test"`, "domains"},
		{"data_file = \"x\"\n[[", "line"},
		{"[store]\nengine = \"sqlite\"", "store.engine"},
		{"[store]\nengine = \"etcd\"\n[etcd]\nprefix = \"tempalias\"", "etcd.prefix"},
	} {
		path := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(path, []byte(c.toml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil {
			t.Errorf("%q: loaded without error", c.toml)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%q: error %q does not name %q on one line", c.toml, msg, c.want)
		}
	}
}

func TestConfigOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	writeFile(t, path, []byte("domains = [\"A.example\", \"b.example\"]\n[limits]\nmax_usage = 7\n[http]\ntrusted_proxies = [\"10.0.0.1\", \"192.168.0.0/16\"]\n"), 0o600)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxUsage != 7 || c.Limits.MaxDays != 60 || c.Domains[0] != "a.example" || len(c.Trusted()) != 2 {
		t.Errorf("got %+v", c)
	}
}

func TestLoggerFormat(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	c.Log.Format, c.Log.Level = "json", "warn"
	var buf strings.Builder
	log := c.Logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "alias", "abc")
	var m map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &m); err != nil || m["msg"] != "shown" || m["alias"] != "abc" {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
	c.Log.Format = "text"
	buf.Reset()
	log = c.Logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "alias", "abc")
	if _, ok := log.Handler().(*logtext.Handler); !ok {
		t.Errorf("text handler %T, want *logtext.Handler", log.Handler())
	}
	if got, want := buf.String(), " level=WARN msg=shown alias=abc\n"; !strings.HasSuffix(got, want) || strings.Count(got, "\n") != 1 {
		t.Errorf("text log %q, want one line ending %q", got, want)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "password"), []byte("s3cret\n"), 0o600)
	writeFile(t, filepath.Join(creds, "smarthost-password"), []byte("from-credentials\r\n"), 0o600)
	writeFile(t, filepath.Join(dir, "srs"), []byte("new-secret\n\nold-secret\n"), 0o600)
	writeFile(t, filepath.Join(creds, "srs"), []byte("credential-srs\n"), 0o600)
	writeFile(t, filepath.Join(dir, "two-lines"), []byte("a\nb\n"), 0o600)
	writeFile(t, filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	abs := func(name string) string { return filepath.Join(dir, name) }
	for _, c := range []struct {
		name     string
		toml     string
		credsDir string // $CREDENTIALS_DIRECTORY
		password string
		srs      []string
		err      string // part of the error; "" for none
	}{
		{name: "password in the file", toml: "[smarthost]\nusername = \"u\"\npassword = \"inline\"", password: "inline"},
		{name: "password_file", toml: fmt.Sprintf("[smarthost]\nusername = \"u\"\npassword_file = %q", abs("password")), password: "s3cret"},
		{name: "relative path in $CREDENTIALS_DIRECTORY", toml: "[smarthost]\nusername = \"u\"\npassword_file = \"smarthost-password\"", credsDir: creds, password: "from-credentials"},
		{name: "absolute path ignores $CREDENTIALS_DIRECTORY", toml: fmt.Sprintf("[smarthost]\nusername = \"u\"\npassword_file = %q", abs("password")), credsDir: creds, password: "s3cret"},
		{name: "relative path without $CREDENTIALS_DIRECTORY", toml: "[smarthost]\nusername = \"u\"\npassword_file = \"smarthost-password\"", err: "smarthost.password_file: open smarthost-password"},
		{name: "both password and password_file", toml: fmt.Sprintf("[smarthost]\nusername = \"u\"\npassword = \"x\"\npassword_file = %q", abs("password")), err: "smarthost.password: set password or password_file, not both"},
		{name: "missing password_file", toml: "[smarthost]\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"", err: "smarthost.password_file: open /nonexistent/pw"},
		{name: "unreadable password_file (a directory)", toml: fmt.Sprintf("[smarthost]\nusername = \"u\"\npassword_file = %q", creds), err: "smarthost.password_file: read " + creds},
		{name: "password_file of two lines", toml: fmt.Sprintf("[smarthost]\nusername = \"u\"\npassword_file = %q", abs("two-lines")), err: "smarthost.password_file: " + abs("two-lines") + " holds 2 lines"},
		{name: "empty password_file", toml: fmt.Sprintf("[smarthost]\nusername = \"u\"\npassword_file = %q", abs("empty")), err: "smarthost.password_file: " + abs("empty") + " is empty"},
		{name: "password_file without username", toml: fmt.Sprintf("[smarthost]\npassword_file = %q", abs("password")), err: "smarthost.username"},
		{name: "srs_secrets_file", toml: fmt.Sprintf("[smtp]\nsrs_secrets_file = %q", abs("srs")), srs: []string{"new-secret", "old-secret"}},
		{name: "srs_secrets_file in $CREDENTIALS_DIRECTORY", toml: "[smtp]\nsrs_secrets_file = \"srs\"", credsDir: creds, srs: []string{"credential-srs"}},
		{name: "both srs_secrets and srs_secrets_file", toml: fmt.Sprintf("[smtp]\nsrs_secrets = [\"x\"]\nsrs_secrets_file = %q", abs("srs")), err: "smtp.srs_secrets: set srs_secrets or srs_secrets_file, not both"},
		{name: "missing srs_secrets_file", toml: "[smtp]\nsrs_secrets_file = \"/nonexistent/srs\"", err: "smtp.srs_secrets_file: open /nonexistent/srs"},
		{name: "empty srs_secrets_file", toml: fmt.Sprintf("[smtp]\nsrs_secrets_file = %q", abs("empty")), err: "smtp.srs_secrets_file: " + abs("empty") + " is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("CREDENTIALS_DIRECTORY", c.credsDir)
			path := filepath.Join(t.TempDir(), "c.toml")
			writeFile(t, path, []byte(c.toml+"\n"), 0o600)
			cfg, err := Load(path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line with %q", err, c.err)
				}
				for _, secret := range []string{"s3cret", "from-credentials", "new-secret", "credential-srs"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error shows a secret: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Smarthost.Password != c.password || !slices.Equal(cfg.SMTP.SRSSecrets, c.srs) {
				t.Errorf("password %q, srs_secrets %q; want %q, %q", cfg.Smarthost.Password, cfg.SMTP.SRSSecrets, c.password, c.srs)
			}
		})
	}
	// Admin commands read no secrets: run by hand, they could not.
	path := filepath.Join(t.TempDir(), "c.toml")
	writeFile(t, path, []byte("[smarthost]\nusername = \"u\"\npassword_file = \"/nonexistent/pw\"\n"), 0o600)
	if _, err := LoadForAdmin(path); err != nil {
		t.Errorf("admin configuration: %v", err)
	}
}

func TestMaildirDefault(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Smarthost.Maildir != "tempalias-mail" || cfg.implicitSmarthost {
		t.Errorf("no file: maildir %q, implicit smarthost %v", cfg.Smarthost.Maildir, cfg.implicitSmarthost)
	}
	for _, c := range []struct {
		toml     string
		maildir  string
		implicit bool
		err      string
	}{
		{toml: "", implicit: true},
		{toml: "[smarthost]\ntls = \"starttls\"", implicit: true},
		{toml: "[smarthost]\naddress = \"127.0.0.1:25\""},
		{toml: "[smarthost]\nmaildir = \"mail\"", maildir: "mail"},
		{toml: "[smarthost]\nmaildir = \"mail\"\naddress = \"mx.example:25\"", err: "smarthost.maildir"},
	} {
		path := filepath.Join(t.TempDir(), "c.toml")
		writeFile(t, path, []byte(c.toml+"\n"), 0o600)
		cfg, err := Load(path)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one naming %s", c.toml, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.toml, err)
			continue
		}
		if cfg.Smarthost.Maildir != c.maildir || cfg.implicitSmarthost != c.implicit {
			t.Errorf("%q: maildir %q, implicit smarthost %v; want %q, %v", c.toml, cfg.Smarthost.Maildir, cfg.implicitSmarthost, c.maildir, c.implicit)
		}
	}
}
