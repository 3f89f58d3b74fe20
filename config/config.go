// Package config reads tempalias's TOML configuration: the defaults
// (tempalias.toml at the top of the repository documents every key with
// its default, and a test holds the two together), the checks that name
// the first bad key, and the secrets given as <key>_file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/logtext"
	"github.com/tempalias/tempalias/srs"
)

// Config is the TOML configuration. Every key is optional.
type Config struct {
	DataFile string   `toml:"data_file"`
	Domains  []string `toml:"domains"`

	HTTP struct {
		Listen         string   `toml:"listen"`
		TLSListen      string   `toml:"tls_listen"`
		TrustedProxies []string `toml:"trusted_proxies"`
		PublicURL      string   `toml:"public_url"`
		DNSBL          []string `toml:"dnsbl"`
		MaxConns       int      `toml:"max_connections"`
		MaxConnsPerIP  int      `toml:"max_connections_per_client"`
	} `toml:"http"`

	SMTP struct {
		Listen           string   `toml:"listen"`
		Hostname         string   `toml:"hostname"`
		MaxMessageBytes  int64    `toml:"max_message_bytes"`
		MaxRecipients    int      `toml:"max_recipients"`
		MaxBadRecipients int      `toml:"max_bad_recipients"`
		ReadTimeout      Duration `toml:"read_timeout"`
		WriteTimeout     Duration `toml:"write_timeout"`
		DataTimeout      Duration `toml:"data_timeout"`
		TxTimeout        Duration `toml:"transaction_timeout"`
		MaxConns         int      `toml:"max_connections"`
		MaxConnsPerIP    int      `toml:"max_connections_per_client"`
		DNSBL            []string `toml:"dnsbl"`
		SRSSecrets       []string `toml:"srs_secrets"`
		SRSSecretsFile   string   `toml:"srs_secrets_file"`
		SRSDomain        string   `toml:"srs_domain"`
		Postmaster       string   `toml:"postmaster"`
	} `toml:"smtp"`

	Smarthost struct {
		Address        string   `toml:"address"`
		TLS            string   `toml:"tls"`
		Username       string   `toml:"username"`
		Password       string   `toml:"password"`
		PasswordFile   string   `toml:"password_file"`
		DialTimeout    Duration `toml:"dial_timeout"`
		CommandTimeout Duration `toml:"command_timeout"`
		MaxIdle        int      `toml:"max_idle"`
		IdleTimeout    Duration `toml:"idle_timeout"`
		RewriteFrom    bool     `toml:"rewrite_from"`
		Maildir        string   `toml:"maildir"`
	} `toml:"smarthost"`

	Limits struct {
		DefaultDays        int     `toml:"default_days"`
		MaxDays            int     `toml:"max_days"`
		MaxUsage           int     `toml:"max_usage"`
		CreatePerMinute    int     `toml:"create_per_minute"`
		IDMinLength        int     `toml:"id_min_length"`
		IDGuessProbability float64 `toml:"id_guess_probability"`

		VerifyTargets                bool     `toml:"verify_targets"`
		VerifyRemember               Duration `toml:"verify_remember"`
		ConfirmationsPerTargetPerDay int      `toml:"confirmations_per_target_per_day"`
		AliasesPerTarget             int      `toml:"aliases_per_target"`
		CreationsPerTargetPerDay     int      `toml:"creations_per_target_per_day"`
		MessagesPerAliasHour         int      `toml:"messages_per_alias_hour"`
		BadRecipientsPerClient       int      `toml:"bad_recipients_per_client"`
		BadRecipientWindow           Duration `toml:"bad_recipient_window"`
	} `toml:"limits"`

	Store struct {
		Engine        string   `toml:"engine"`
		SweepInterval Duration `toml:"sweep_interval"`
		SweepBatch    int      `toml:"sweep_batch"`
		OpenTimeout   Duration `toml:"open_timeout"`
	} `toml:"store"`

	Etcd struct {
		Endpoints      []string `toml:"endpoints"`
		Prefix         string   `toml:"prefix"`
		Username       string   `toml:"username"`
		Password       string   `toml:"password"`
		PasswordFile   string   `toml:"password_file"`
		CAFile         string   `toml:"ca_file"`
		CertFile       string   `toml:"cert_file"`
		KeyFile        string   `toml:"key_file"`
		DialTimeout    Duration `toml:"dial_timeout"`
		RequestTimeout Duration `toml:"request_timeout"`
		LeaseTTL       Duration `toml:"lease_ttl"`
	} `toml:"etcd"`

	TLS struct {
		CertFile string `toml:"cert_file"`
		KeyFile  string `toml:"key_file"`
	} `toml:"tls"`

	Metrics struct {
		Listen string `toml:"listen"`
		Pprof  bool   `toml:"pprof"`
	} `toml:"metrics"`

	Admin struct {
		Socket string `toml:"socket"`
	} `toml:"admin"`

	Log struct {
		Format string `toml:"format"`
		Level  string `toml:"level"`
	} `toml:"log"`

	Shutdown struct {
		Timeout Duration `toml:"timeout"`
	} `toml:"shutdown"`

	// implicitSmarthost: a configuration file that sets neither
	// smarthost.address nor smarthost.maildir, so mail goes to the
	// default address; start-up says so.
	implicitSmarthost bool
}

// DefaultMaildir is where mail goes when there is no configuration file
// at all, so that `go run .` works with nothing else installed. A file
// never falls back to it: it delivers to smarthost.address unless it
// sets smarthost.maildir.
const DefaultMaildir = "tempalias-mail"

// ChangedSections names the parts of the configuration that differ
// between a and b (the certificate files' contents are not compared).
func ChangedSections(a, b *Config) []string {
	var changed []string
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		f := va.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || !f.IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			changed = append(changed, name)
		}
	}
	return changed
}

// Logger makes the logger the configuration asks for, writing to w. The
// text format is logtext's handler: slog.TextHandler's lines, for less
// CPU (a line per SMTP transaction).
func (c *Config) Logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.Log.Level)) // checked by check
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(logtext.New(w, opts))
}

// ImplicitSmarthost reports a configuration file that sets neither
// smarthost.address nor smarthost.maildir, so that mail goes to the
// default address: start-up says so.
func (c *Config) ImplicitSmarthost() bool { return c.implicitSmarthost }

// MailDestination says where accepted mail goes, for people.
func (c *Config) MailDestination() string {
	if c.Smarthost.Maildir != "" {
		return "mail goes into the Maildir " + c.Smarthost.Maildir + " (smarthost.maildir), not to a smarthost"
	}
	if c.implicitSmarthost {
		return "mail goes to the smarthost " + c.Smarthost.Address + " (the default: the file sets no smarthost.address)"
	}
	return "mail goes to the smarthost " + c.Smarthost.Address
}

// SRS is the sender rewriter, or nil when smtp.srs_secrets is empty.
func (c *Config) SRS() (*srs.Rewriter, error) {
	if len(c.SMTP.SRSSecrets) == 0 {
		return nil, nil
	}
	domain := c.SMTP.SRSDomain
	if domain == "" {
		domain = c.Domains[0]
	}
	return srs.New(domain, c.SMTP.SRSSecrets, srs.Options{LocalDomains: c.Domains})
}

// AliasLimits are the bounds on creation requests.
func (c *Config) AliasLimits() alias.Limits {
	return alias.Limits{DefaultDays: c.Limits.DefaultDays, MaxDays: c.Limits.MaxDays, MaxUsage: c.Limits.MaxUsage}
}

// Trusted are http.trusted_proxies as prefixes (a lone address is a
// prefix of its full length).
func (c *Config) Trusted() []netip.Prefix {
	var trusted []netip.Prefix
	for _, p := range c.HTTP.TrustedProxies {
		if pfx, err := parsePrefix(p); err == nil { // checked by check
			trusted = append(trusted, pfx)
		}
	}
	return trusted
}

func parsePrefix(p string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		addr, aerr := netip.ParseAddr(p)
		if aerr != nil {
			return netip.Prefix{}, err
		}
		pfx = netip.PrefixFrom(addr, addr.BitLen())
	}
	return pfx.Masked(), nil
}

// AdminSocket is where the running server listens for admin commands:
// admin.socket, or beside the data file.
func (c *Config) AdminSocket() string {
	if c.Admin.Socket != "" {
		return c.Admin.Socket
	}
	return c.DataFile + ".sock"
}

// Duration is a time.Duration written as a string ("5m") in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like \"30s\" or \"5m\": %q", b)
	}
	d.Duration = v
	return nil
}

// Default is the configuration with no file: the values tempalias.toml
// shows (TestExampleIsDefault holds the two together).
func Default() *Config {
	c := new(Config)
	c.DataFile = "tempalias.db"
	c.Domains = []string{"localhost"}
	c.HTTP.Listen = "127.0.0.1:8080"
	c.HTTP.TrustedProxies = []string{}
	c.HTTP.DNSBL = []string{}
	c.SMTP.Listen = "127.0.0.1:2525"
	c.SMTP.Hostname = "localhost"
	c.SMTP.MaxMessageBytes = 26214400
	c.SMTP.MaxRecipients = 100
	c.SMTP.MaxBadRecipients = 5
	c.SMTP.ReadTimeout = Duration{1 * time.Minute}
	c.SMTP.WriteTimeout = Duration{1 * time.Minute}
	c.SMTP.DataTimeout = Duration{10 * time.Minute}
	c.SMTP.TxTimeout = Duration{10 * time.Minute}
	c.SMTP.DNSBL = []string{}
	c.SMTP.SRSSecrets = []string{}
	c.Smarthost.Address = "127.0.0.1:25"
	c.Smarthost.TLS = "none"
	c.Smarthost.DialTimeout = Duration{30 * time.Second}
	c.Smarthost.CommandTimeout = Duration{5 * time.Minute}
	c.Smarthost.MaxIdle = 50
	c.Smarthost.IdleTimeout = Duration{10 * time.Second}
	c.Limits.DefaultDays = 3
	c.Limits.MaxDays = 60
	c.Limits.MaxUsage = 100
	c.Limits.CreatePerMinute = 10
	c.Limits.IDMinLength = 6
	c.Limits.IDGuessProbability = 1e-06
	c.Limits.VerifyRemember = Duration{2160 * time.Hour}
	c.Limits.ConfirmationsPerTargetPerDay = 3
	c.Limits.BadRecipientWindow = Duration{1 * time.Hour}
	c.Store.Engine = "bolt"
	c.Store.SweepInterval = Duration{1 * time.Minute}
	c.Store.SweepBatch = 100
	c.Store.OpenTimeout = Duration{1 * time.Second}
	c.Etcd.Endpoints = []string{"127.0.0.1:2379"}
	c.Etcd.Prefix = "/tempalias/"
	c.Etcd.DialTimeout = Duration{5 * time.Second}
	c.Etcd.RequestTimeout = Duration{5 * time.Second}
	c.Etcd.LeaseTTL = Duration{10 * time.Second}
	c.Log.Format = "text"
	c.Log.Level = "info"
	c.Shutdown.Timeout = Duration{30 * time.Second}
	return c
}

// Load reads path over the defaults (an empty path means the defaults
// alone, with mail going into DefaultMaildir), checks it and reads the
// secrets given as files.
func Load(path string) (*Config, error) {
	return load(path, (*Config).readSecrets)
}

// LoadForAdmin is Load without reading the <key>_file secrets, for the
// admin commands: they need none but the store's (the
// etcd engine's password), and run by hand, away from the service's unit,
// they could not read its other credentials.
func LoadForAdmin(path string) (*Config, error) {
	return load(path, (*Config).readStoreSecrets)
}

// load reads path over the defaults, checks it and reads the secrets
// that secrets reads.
func load(path string, secrets func(*Config) error) (*Config, error) {
	c, err := readConfig(path)
	if err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", Source(path), err)
	}
	if err := secrets(c); err != nil {
		return nil, fmt.Errorf("config %s: %w", Source(path), err)
	}
	return c, nil
}

func readConfig(path string) (*Config, error) {
	c := Default()
	if path == "" {
		c.Smarthost.Maildir = DefaultMaildir
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	md, err := decode(c, b, path)
	if err != nil {
		return nil, err
	}
	c.normalize()
	if c.Smarthost.Maildir != "" && md.IsDefined("smarthost", "address") {
		return nil, fmt.Errorf("config %s: smarthost.maildir: mail goes either to smarthost.address or into a Maildir; set one of them", path)
	}
	c.implicitSmarthost = c.Smarthost.Maildir == "" && !md.IsDefined("smarthost", "address")
	return c, nil
}

// readSecrets replaces each secret given as <key>_file by the file's
// contents.
func (c *Config) readSecrets() error {
	var err error
	if c.Smarthost.Password, err = secret("smarthost.password", c.Smarthost.Password, c.Smarthost.PasswordFile); err != nil {
		return err
	}
	if err := c.readStoreSecrets(); err != nil {
		return err
	}
	if c.SMTP.SRSSecretsFile != "" {
		if len(c.SMTP.SRSSecrets) > 0 {
			return errors.New("smtp.srs_secrets: set srs_secrets or srs_secrets_file, not both")
		}
		if c.SMTP.SRSSecrets, err = secretLines("smtp.srs_secrets_file", c.SMTP.SRSSecretsFile); err != nil {
			return err
		}
	}
	return nil
}

// readStoreSecrets reads the secrets the store needs: the admin
// commands open it too.
func (c *Config) readStoreSecrets() error {
	if c.Store.Engine != "etcd" {
		return nil
	}
	var err error
	c.Etcd.Password, err = secret("etcd.password", c.Etcd.Password, c.Etcd.PasswordFile)
	return err
}

// secret is the value of the secret key, given either in the file
// itself (value) or as key_file (file, a file holding it on one line):
// not both. The one function for every single-valued secret.
func secret(key, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		_, name, _ := strings.Cut(key, ".")
		return "", fmt.Errorf("%s: set %s or %s_file, not both", key, name, name)
	}
	lines, err := secretLines(key+"_file", file)
	if err != nil {
		return "", err
	}
	if len(lines) != 1 {
		return "", fmt.Errorf("%s_file: %s holds %d lines, want the secret alone on one", key, file, len(lines))
	}
	return lines[0], nil
}

// secretLines reads the secrets in file, one per line (blank lines are
// skipped, a CR before the LF is dropped), for the setting named key. A
// relative path is looked up in $CREDENTIALS_DIRECTORY when that is set,
// where systemd puts the files of LoadCredential=; otherwise it is
// relative to the working directory.
func secretLines(key, file string) ([]string, error) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	relative := !filepath.IsAbs(file)
	if dir != "" && relative {
		file = filepath.Join(dir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The error names the file, never its contents.
		if relative && dir == "" && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (a relative path is looked up in $CREDENTIALS_DIRECTORY when systemd sets it; it is not set)", key, err)
		}
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	var lines []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSuffix(line, "\r"); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s: %s is empty", key, file)
	}
	return lines, nil
}

// Source names the configuration read from path, for messages.
func Source(path string) string {
	if path == "" {
		return "(defaults)"
	}
	return path
}

func decode(c *Config, b []byte, name string) (toml.MetaData, error) {
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				return md, fmt.Errorf("config %s: line %d: %s: %s", name, perr.Position.Line, perr.LastKey, oneLine(perr.Message))
			}
			return md, fmt.Errorf("config %s: line %d: %s", name, perr.Position.Line, oneLine(perr.Message))
		}
		return md, fmt.Errorf("config %s: %s", name, oneLine(err.Error()))
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return md, fmt.Errorf("config %s: unknown key %s", name, strings.Join(keys, ", "))
	}
	return md, nil
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// normalize puts values into the one form the rest of the program
// compares: domain names in lower case.
func (c *Config) normalize() {
	for i, d := range c.Domains {
		c.Domains[i] = strings.ToLower(d)
	}
}

// check validates values and names the key of the first bad one; it
// changes nothing.
func (c *Config) check() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
	}
	if c.DataFile == "" {
		return bad("data_file", "must not be empty")
	}
	if len(c.Domains) == 0 {
		return bad("domains", "needs at least one domain")
	}
	for _, d := range c.Domains {
		if err := alias.CheckDomain(d); err != nil {
			return bad("domains", "%q is not a domain name", d)
		}
	}
	for _, l := range []struct{ key, addr string }{
		{"http.listen", c.HTTP.Listen}, {"smtp.listen", c.SMTP.Listen}, {"smarthost.address", c.Smarthost.Address},
	} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return bad(l.key, "want host:port, got %q", l.addr)
		}
	}
	for _, l := range []struct{ key, addr string }{
		{"metrics.listen", c.Metrics.Listen}, {"http.tls_listen", c.HTTP.TLSListen},
	} {
		if _, _, err := net.SplitHostPort(l.addr); l.addr != "" && err != nil {
			return bad(l.key, "want host:port or empty, got %q", l.addr)
		}
	}
	if c.Metrics.Pprof && c.Metrics.Listen == "" {
		return bad("metrics.pprof", "needs metrics.listen")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("tls.cert_file", "cert_file and key_file go together")
	}
	if c.HTTP.TLSListen != "" && c.TLS.CertFile == "" {
		return bad("http.tls_listen", "needs tls.cert_file and tls.key_file")
	}
	for _, p := range c.HTTP.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			return bad("http.trusted_proxies", "%q is not a CIDR like 10.0.0.0/8", p)
		}
	}
	if c.SMTP.Hostname == "" {
		return bad("smtp.hostname", "must not be empty")
	}
	if err := alias.CheckDomain(c.SMTP.Hostname); err != nil {
		return bad("smtp.hostname", "%q is not a host name", c.SMTP.Hostname)
	}
	positive := []struct {
		key string
		v   int64
	}{
		{"smtp.max_message_bytes", c.SMTP.MaxMessageBytes},
		{"smtp.max_recipients", int64(c.SMTP.MaxRecipients)},
		{"smtp.max_bad_recipients", int64(c.SMTP.MaxBadRecipients)},
		{"limits.default_days", int64(c.Limits.DefaultDays)},
		{"limits.max_days", int64(c.Limits.MaxDays)},
		{"limits.max_usage", int64(c.Limits.MaxUsage)},
		{"limits.id_min_length", int64(c.Limits.IDMinLength)},
		{"store.sweep_batch", int64(c.Store.SweepBatch)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return bad(p.key, "must be a positive whole number, got %d", p.v)
		}
	}
	if c.Smarthost.MaxIdle < 0 {
		return bad("smarthost.max_idle", "must be a whole number, 0 or more, got %d", c.Smarthost.MaxIdle)
	}
	durations := []struct {
		key string
		v   Duration
	}{
		{"smtp.read_timeout", c.SMTP.ReadTimeout},
		{"smtp.write_timeout", c.SMTP.WriteTimeout},
		{"smtp.data_timeout", c.SMTP.DataTimeout},
		{"smtp.transaction_timeout", c.SMTP.TxTimeout},
		{"smarthost.dial_timeout", c.Smarthost.DialTimeout},
		{"smarthost.command_timeout", c.Smarthost.CommandTimeout},
		{"smarthost.idle_timeout", c.Smarthost.IdleTimeout},
		{"store.sweep_interval", c.Store.SweepInterval},
		{"store.open_timeout", c.Store.OpenTimeout},
		{"limits.verify_remember", c.Limits.VerifyRemember},
		{"limits.bad_recipient_window", c.Limits.BadRecipientWindow},
		{"shutdown.timeout", c.Shutdown.Timeout},
	}
	for _, d := range durations {
		if d.v.Duration <= 0 {
			return bad(d.key, "must be a positive duration like \"30s\"")
		}
	}
	if c.Limits.DefaultDays > c.Limits.MaxDays {
		return bad("limits.default_days", "%d is above limits.max_days (%d)", c.Limits.DefaultDays, c.Limits.MaxDays)
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"limits.create_per_minute", c.Limits.CreatePerMinute},
		{"limits.confirmations_per_target_per_day", c.Limits.ConfirmationsPerTargetPerDay},
		{"limits.aliases_per_target", c.Limits.AliasesPerTarget},
		{"limits.creations_per_target_per_day", c.Limits.CreationsPerTargetPerDay},
		{"limits.messages_per_alias_hour", c.Limits.MessagesPerAliasHour},
		{"limits.bad_recipients_per_client", c.Limits.BadRecipientsPerClient},
	} {
		if n.v < 0 {
			return bad(n.key, "must be 0 (no limit) or more, got %d", n.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"smtp.max_connections", c.SMTP.MaxConns},
		{"smtp.max_connections_per_client", c.SMTP.MaxConnsPerIP},
		{"http.max_connections", c.HTTP.MaxConns},
		{"http.max_connections_per_client", c.HTTP.MaxConnsPerIP},
	} {
		if n.v < 0 {
			return bad(n.key, "must be 0 (from the open files limit) or more, got %d", n.v)
		}
	}
	if c.Limits.VerifyTargets {
		u, err := url.Parse(c.HTTP.PublicURL)
		if c.HTTP.PublicURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("http.public_url", "limits.verify_targets needs the page's public address, like \"https://tempalias.example.org\"")
		}
	}
	for _, zones := range []struct {
		key   string
		zones []string
	}{{"http.dnsbl", c.HTTP.DNSBL}, {"smtp.dnsbl", c.SMTP.DNSBL}} {
		for _, z := range zones.zones {
			if err := alias.CheckDomain(strings.TrimSuffix(z, ".")); err != nil {
				return bad(zones.key, "%q is not a DNS zone", z)
			}
		}
	}
	if c.SMTP.SRSDomain != "" {
		if err := alias.CheckDomain(c.SMTP.SRSDomain); err != nil {
			return bad("smtp.srs_domain", "%q is not a domain name", c.SMTP.SRSDomain)
		}
	}
	if _, err := c.SRS(); err != nil {
		return bad("smtp.srs_secrets", "%v", err)
	}
	if pm := c.SMTP.Postmaster; pm != "" {
		a, err := alias.ParseAddress(pm)
		if err != nil {
			return bad("smtp.postmaster", "%q is not an address", pm)
		}
		if alias.InDomains(a.Domain, c.Domains) {
			return bad("smtp.postmaster", "%q is in an alias domain: mail to it would come back here", pm)
		}
	}
	if c.Limits.IDMinLength > alias.MaxIDLength {
		return bad("limits.id_min_length", "must be at most %d", alias.MaxIDLength)
	}
	if p := c.Limits.IDGuessProbability; !(p > 0 && p <= 1) {
		return bad("limits.id_guess_probability", "must be above 0 and at most 1, got %g", p)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Smarthost.TLS {
	case "none", "starttls", "tls":
	default:
		return bad("smarthost.tls", "must be none, starttls or tls, got %q", c.Smarthost.TLS)
	}
	if c.Smarthost.Password != "" && c.Smarthost.PasswordFile != "" {
		return bad("smarthost.password", "set password or password_file, not both")
	}
	if len(c.SMTP.SRSSecrets) > 0 && c.SMTP.SRSSecretsFile != "" {
		return bad("smtp.srs_secrets", "set srs_secrets or srs_secrets_file, not both")
	}
	if (c.Smarthost.Username == "") != (c.Smarthost.Password == "" && c.Smarthost.PasswordFile == "") {
		return bad("smarthost.username", "username and password (or password_file) go together")
	}
	return c.checkStore(bad)
}

// checkStore checks [store] engine and, for etcd, the [etcd] section.
func (c *Config) checkStore(bad func(key, format string, args ...any) error) error {
	switch c.Store.Engine {
	case "bolt":
		return nil
	case "etcd":
	default:
		return bad("store.engine", "must be bolt or etcd, got %q", c.Store.Engine)
	}
	e := &c.Etcd
	if len(e.Endpoints) == 0 {
		return bad("etcd.endpoints", "needs at least one member's address, like \"10.0.0.1:2379\"")
	}
	for _, ep := range e.Endpoints {
		hostport := ep
		if u, err := url.Parse(ep); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			hostport = u.Host
		}
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			return bad("etcd.endpoints", "want host:port or http(s)://host:port, got %q", ep)
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		return bad("etcd.prefix", "must start and end with /, like \"/tempalias/\", got %q", e.Prefix)
	}
	if (e.CAFile == "") != (e.CertFile == "") || (e.CertFile == "") != (e.KeyFile == "") {
		return bad("etcd.ca_file", "ca_file, cert_file and key_file go together: all three or none")
	}
	if e.Password != "" && e.PasswordFile != "" {
		return bad("etcd.password", "set password or password_file, not both")
	}
	if (e.Username == "") != (e.Password == "" && e.PasswordFile == "") {
		return bad("etcd.username", "username and password (or password_file) go together")
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"etcd.dial_timeout", e.DialTimeout},
		{"etcd.request_timeout", e.RequestTimeout},
		{"etcd.lease_ttl", e.LeaseTTL},
	} {
		if d.v.Duration <= 0 {
			return bad(d.key, "must be a positive duration like \"5s\"")
		}
	}
	if e.LeaseTTL.Duration < time.Second {
		return bad("etcd.lease_ttl", "must be at least 1s (etcd counts leases in seconds)")
	}
	return nil
}
