package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// The example file must name every key, so that it documents all of them.
func TestExampleConfigIsComplete(t *testing.T) {
	var c Config
	md, err := toml.Decode(string(exampleConfig), &c)
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
	if _, err := loadConfig(""); err != nil {
		t.Fatalf("defaults do not load: %v", err)
	}
	if _, err := loadConfig("tempalias.toml"); err != nil {
		t.Fatalf("example does not load: %v", err)
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
	} {
		path := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(path, []byte(c.toml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadConfig(path)
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
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxUsage != 7 || c.Limits.MaxDays != 60 || c.Domains[0] != "a.example" || len(c.trusted) != 2 {
		t.Errorf("got %+v", c)
	}
}

func TestLoggerFormat(t *testing.T) {
	c, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	c.Log.Format, c.Log.Level = "json", "warn"
	var buf strings.Builder
	log := c.logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "alias", "abc")
	var m map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &m); err != nil || m["msg"] != "shown" || m["alias"] != "abc" {
		t.Fatalf("json log %q: %v", buf.String(), err)
	}
}
