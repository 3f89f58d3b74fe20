// Command tempalias hands out self-destructing email aliases: an HTTP API
// and web page create them, an SMTP server relays mail for them through a
// smarthost until they run out of days or uses.
//
// Usage:
//
//	tempalias [-config FILE]                 run the service
//	tempalias check-config [-config FILE]    check the configuration
//	tempalias create [-config FILE] -target ADDR [-days N] [-max-usage N]
//	tempalias list [-config FILE]            live aliases
//	tempalias show [-config FILE] ID
//	tempalias change [-config FILE] [-days N] [-max-usage N] ID
//	tempalias revoke [-config FILE] ID
//	tempalias backup [-config FILE] FILE     consistent copy of the data file
//	tempalias export [-config FILE] [FILE|-] the store as an engine-neutral stream
//	tempalias import [-config FILE] FILE|-   an export into a new, stopped store
//	tempalias version                        version, commit, build date
//	tempalias help [COMMAND]                 the commands, or one's flags
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/tempalias/tempalias/admin"
	"github.com/tempalias/tempalias/config"
	"github.com/tempalias/tempalias/dnsbl"
	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/maildir"
	"github.com/tempalias/tempalias/metrics"
	"github.com/tempalias/tempalias/smtpd"
	"github.com/tempalias/tempalias/static"
	"github.com/tempalias/tempalias/store"
)

func main() {
	// The live heap is small (aliases live in bbolt's mmap, messages are
	// streamed through fixed buffers), so collecting less often costs
	// little memory; it made durable creations ~25% cheaper in
	// BenchmarkCreateHTTP. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		// The message and the usage are already out, as flag's are.
		stop()
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tempalias:", err)
		stop()
		os.Exit(1)
	}
}

// usageError is a command line that does not parse: exit status 2, the
// message and the usage already written.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// command is a subcommand: its name, its arguments after the flags, and
// what it does in one line.
type command struct{ name, args, summary string }

var commands = []command{
	{"serve", "", "run the service (the default when no command is given)"},
	{"check-config", "", "check the configuration and its secret files; names the first bad key"},
	{"create", "", "create an alias"},
	{"list", "", "list live aliases with their remaining uses and expiry"},
	{"show", "ID", "show one alias, live or used up (with its refusals)"},
	{"change", "ID", "change an alias: valid -days from now, -max-usage in all"},
	{"revoke", "ID", "revoke an alias now"},
	{"backup", "FILE", "write a consistent copy of the data file, also while the service runs (bolt engine)"},
	{"export", "[FILE|-]", "write every alias, swept id and verified target as JSON lines (default: to standard output), also while the service runs"},
	{"import", "FILE|-", "read an export into a new store (another host, or the etcd engine) while no server runs on it"},
	{"version", "", "print the version, commit, build date and Go version"},
	{"help", "[COMMAND]", "list the commands, or show one command's flags"},
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usage lists every command, one line each.
func usage(w io.Writer) {
	fmt.Fprint(w, `tempalias hands out self-destructing email aliases: an HTTP API and web
page create them, an SMTP server relays mail to them until they run out.

Usage: tempalias [COMMAND] [-config FILE] [ARGUMENTS]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Without -config the built-in defaults apply (they are tempalias.toml):
HTTP on 127.0.0.1:8080, SMTP on 127.0.0.1:2525, and mail goes into the
Maildir ./tempalias-mail instead of a smarthost.

"tempalias help COMMAND" or "tempalias COMMAND -h" shows a command's flags.
`)
}

// run is the whole program, minus process exit, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			usage(stdout)
			return nil
		case "-version", "--version":
			args = append([]string{"version"}, args[1:]...)
		}
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		if len(args) == 0 {
			usage(stdout)
			return nil
		}
		if len(args) > 1 {
			fmt.Fprintf(stderr, "tempalias help: one command at a time, got %q\n", args)
			return usageError{}
		}
		if args[0] == "help" || strings.HasPrefix(args[0], "-") {
			usage(stdout)
			return nil
		}
		name, args = args[0], []string{"-h"}
	}
	cmd, ok := lookup(name)
	if !ok {
		fmt.Fprintf(stderr, "tempalias: unknown command %q\n\n", name)
		usage(stderr)
		return usageError{}
	}
	fs := flag.NewFlagSet("tempalias "+name, flag.ContinueOnError)
	// flag writes to out: the help asked for goes to stdout, a mistake's
	// message and usage to stderr.
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.Usage = func() {
		fmt.Fprintf(&out, "tempalias %s: %s\n\nUsage: tempalias %s", name, cmd.summary, name)
		if hasFlags := name != "version"; hasFlags {
			fmt.Fprint(&out, " [FLAGS]")
		}
		if cmd.args != "" {
			fmt.Fprint(&out, " "+cmd.args)
		}
		fmt.Fprintln(&out)
		if name != "version" {
			fmt.Fprintln(&out, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	var configPath *string
	if name != "version" {
		configPath = fs.String("config", "", "TOML configuration `file` (default: the built-in defaults, see tempalias.toml)")
	}
	var target string
	var days, maxUsage int
	if name == "create" {
		fs.StringVar(&target, "target", "", "the `address` mail is forwarded to (required)")
		fs.IntVar(&days, "days", 0, "lifetime in days (default limits.default_days)")
		fs.IntVar(&maxUsage, "max-usage", 0, "most messages relayed (default: no limit by count)")
	}
	if name == "change" {
		fs.IntVar(&days, "days", 0, "valid for this many days from now (1 to limits.max_days)")
		fs.IntVar(&maxUsage, "max-usage", 0, "the new total of messages relayed, at least those relayed and under way (1 to limits.max_usage)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, err := stdout.Write(out.Bytes())
			return err
		}
		stderr.Write(out.Bytes())
		return usageError{msg: err.Error()}
	}
	wantArgs := 0
	if cmd.args != "" {
		wantArgs = 1
	}
	optional := strings.HasPrefix(cmd.args, "[")
	if fs.NArg() > wantArgs || fs.NArg() < wantArgs && !optional {
		if fs.NArg() > wantArgs {
			fmt.Fprintf(stderr, "tempalias %s: unexpected argument %q\n\n", name, fs.Arg(wantArgs))
		} else {
			fmt.Fprintf(stderr, "tempalias %s: missing %s\n\n", name, cmd.args)
		}
		fs.Usage()
		stderr.Write(out.Bytes())
		return usageError{}
	}
	if name == "version" {
		_, err := io.WriteString(stdout, buildVersion().String())
		return err
	}
	load := config.LoadForAdmin // admin commands need no secrets
	if name == "serve" || name == "check-config" {
		load = config.Load
	}
	cfg, err := load(*configPath)
	if err != nil {
		return err
	}
	switch name {
	case "serve":
		return serve(ctx, cfg, *configPath, cfg.Logger(stderr))
	case "check-config":
		if cfg.TLS.CertFile != "" {
			if _, err := loadCerts(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "configuration %s is valid; %s\n", config.Source(*configPath), cfg.MailDestination())
		return nil
	}
	cmdLine := admin.Command{Name: name, Args: fs.Args()}
	fs.Visit(func(f *flag.Flag) {
		switch {
		case name == "create" && f.Name == "days":
			cmdLine.Create.Days = &days
		case name == "create" && f.Name == "max-usage":
			cmdLine.Create.MaxUsage = &maxUsage
		case name == "change" && f.Name == "days":
			cmdLine.Change.Days = &days
		case name == "change" && f.Name == "max-usage":
			cmdLine.Change.MaxUsage = &maxUsage
		}
	})
	cmdLine.Create.Target = target
	return admin.Run(admin.Config{
		Socket:  cfg.AdminSocket(),
		Domains: cfg.Domains,
		Engine:  cfg.Store.Engine,
		Limits:  cfg.AliasLimits(),
		Open: func() (admin.Opened, error) {
			return openStore(cfg, cfg.Logger(os.Stderr))
		},
	}, cmdLine, stdout)
}

// revokeLink makes the X-Tempalias-Revoke links of relayed mail, which
// need the page's public address: without http.public_url, none.
func revokeLink(publicURL string, key []byte) func(id string) string {
	if publicURL == "" {
		return nil
	}
	return func(id string) string { return httpd.RevokeLink(publicURL, key, id) }
}

// listeners are the sockets handed over by systemd, by name.
func activated() (map[string][]net.Listener, error) {
	lns, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("systemd socket activation: %w", err)
	}
	for name, l := range lns {
		if name != "http" && name != "https" && name != "smtp" {
			// Left alone it would be held open and never served, while
			// tempalias listened elsewhere: systemd names a socket after
			// its unit unless FileDescriptorName= says otherwise.
			for _, ln := range l {
				ln.Close()
			}
			return nil, fmt.Errorf("systemd socket activation: a socket named %q was handed over; name sockets http, https or smtp with FileDescriptorName=", name)
		}
	}
	return lns, nil
}

// listen returns the socket systemd handed over under name, or listens on
// addr when there is none.
func listen(handed map[string][]net.Listener, name, key, addr string) (net.Listener, error) {
	if lns := handed[name]; len(lns) > 0 {
		for _, extra := range lns[1:] {
			extra.Close()
		}
		return lns[0], nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return ln, nil
}

func serve(ctx context.Context, cfg *config.Config, configPath string, log *slog.Logger) error {
	var tlsCerts *certs
	if cfg.TLS.CertFile != "" {
		var err error
		if tlsCerts, err = loadCerts(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return err
		}
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()

	handed, err := activated()
	if err != nil {
		return err
	}
	// Every listener opened is closed on the way out, whatever the path;
	// closing one already closed by its server's Shutdown is harmless.
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	open := func(name, key, addr string) (net.Listener, error) {
		ln, err := listen(handed, name, key, addr)
		if err == nil {
			listeners = append(listeners, ln)
		}
		return ln, err
	}
	// servers are the HTTP servers to run and stop together.
	type server struct {
		name string
		srv  *http.Server
		ln   net.Listener
	}
	var servers []server
	httpLn, err := open("http", "http.listen", cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	rewriter, err := cfg.SRS()
	if err != nil {
		return err
	}
	var smtpTLS *tls.Config
	if tlsCerts != nil {
		smtpTLS = tlsCerts.config()
	}
	smtpLn, err := open("smtp", "smtp.listen", cfg.SMTP.Listen)
	if err != nil {
		return err
	}
	smarthost := smtpd.Upstream{
		Address:        cfg.Smarthost.Address,
		TLS:            cfg.Smarthost.TLS,
		Username:       cfg.Smarthost.Username,
		Password:       cfg.Smarthost.Password,
		DialTimeout:    cfg.Smarthost.DialTimeout.Duration,
		CommandTimeout: cfg.Smarthost.CommandTimeout.Duration,
	}
	mailTo := []any{"smarthost", cfg.Smarthost.Address}
	if cfg.Smarthost.Maildir != "" {
		// The smarthost is a sink of our own on loopback, so that mail
		// takes the very path it takes to a real one, usage accounting
		// included: a message counts once its file is durable in new/.
		sink, err := maildir.Listen(maildir.Dir(cfg.Smarthost.Maildir), log)
		if err != nil {
			return fmt.Errorf("smarthost.maildir: %w", err)
		}
		defer func() {
			// By now every session is over and with it every connection
			// to the sink; the bound is for safety's sake.
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout.Duration)
			defer cancel()
			sink.Shutdown(ctx)
		}()
		smarthost = smtpd.Upstream{
			Address:        sink.Addr(),
			TLS:            "none",
			DialTimeout:    cfg.Smarthost.DialTimeout.Duration,
			CommandTimeout: cfg.Smarthost.CommandTimeout.Duration,
		}
		dir, err := filepath.Abs(cfg.Smarthost.Maildir)
		if err != nil {
			dir = cfg.Smarthost.Maildir
		}
		mailTo = []any{"maildir", dir}
	} else if cfg.ImplicitSmarthost() {
		log.Warn("the configuration file sets no smarthost.address: mail goes to the default smarthost", "smarthost", cfg.Smarthost.Address, "config", configPath)
	}
	budget, err := connLimits(cfg, log)
	if err != nil {
		return err
	}
	mta := smtpd.New(smtpd.Config{
		Hostname:                  cfg.SMTP.Hostname,
		Domains:                   cfg.Domains,
		MaxMessageBytes:           cfg.SMTP.MaxMessageBytes,
		MaxRecipients:             cfg.SMTP.MaxRecipients,
		MaxBadRecipients:          cfg.SMTP.MaxBadRecipients,
		ReadTimeout:               cfg.SMTP.ReadTimeout.Duration,
		WriteTimeout:              cfg.SMTP.WriteTimeout.Duration,
		DataTimeout:               cfg.SMTP.DataTimeout.Duration,
		TransactionTimeout:        cfg.SMTP.TxTimeout.Duration,
		TLS:                       smtpTLS,
		DNSBL:                     blocklist(cfg.SMTP.DNSBL, log),
		SRS:                       rewriter,
		RewriteFrom:               cfg.Smarthost.RewriteFrom,
		MaxMessagesPerAliasHour:   cfg.Limits.MessagesPerAliasHour,
		MaxBadRecipientsPerClient: cfg.Limits.BadRecipientsPerClient,
		BadRecipientWindow:        cfg.Limits.BadRecipientWindow.Duration,
		MaxConnsPerClient:         budget.smtpPerClient,
		MaxConns:                  budget.smtp,
		Postmaster:                cfg.SMTP.Postmaster,
		RevokeLink:                revokeLink(cfg.HTTP.PublicURL, st.LinkKey()),
		Smarthost:                 smarthost,
		Logger:                    log,
	}, st)

	var verify *httpd.Verify
	if cfg.Limits.VerifyTargets {
		verify = &httpd.Verify{
			Mailer:               confirmMailer{smtp: mta, from: "noreply@" + cfg.Domains[0], hostname: cfg.SMTP.Hostname, now: time.Now},
			Remember:             cfg.Limits.VerifyRemember.Duration,
			PublicURL:            cfg.HTTP.PublicURL,
			MailsPerTargetPerDay: cfg.Limits.ConfirmationsPerTargetPerDay,
		}
	}
	api := httpd.New(httpd.Config{
		Domains:                  cfg.Domains,
		Limits:                   cfg.AliasLimits(),
		CreatePerMinute:          cfg.Limits.CreatePerMinute,
		TrustedProxies:           cfg.Trusted(),
		Static:                   httpd.Static(static.FS),
		Logger:                   log,
		AliasesPerTarget:         cfg.Limits.AliasesPerTarget,
		LinkKey:                  st.LinkKey(),
		CreationsPerTargetPerDay: cfg.Limits.CreationsPerTargetPerDay,
		Blocklist:                blocklist(cfg.HTTP.DNSBL, log),
		Verify:                   verify,
	}, st)
	public := http.NewServeMux()
	public.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := st.Ping(r.Context()); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	public.Handle("/", api)
	// http and https share one budget; the trusted proxies have no
	// per-client share.
	conns := httpd.NewConns(httpd.ConnLimits{Max: budget.http, PerClient: budget.httpPerClient, Exempt: cfg.Trusted()}, log)
	servers = append(servers, server{"http", conns.Manage(httpd.NewServer(public, log)), httpLn})
	if cfg.HTTP.TLSListen != "" || len(handed["https"]) > 0 {
		if tlsCerts == nil {
			return errors.New("http.tls_listen: an https socket needs tls.cert_file and tls.key_file")
		}
		ln, err := open("https", "http.tls_listen", cfg.HTTP.TLSListen)
		if err != nil {
			return err
		}
		srv := conns.Manage(httpd.NewServer(public, log))
		srv.TLSConfig = tlsCerts.config()
		servers = append(servers, server{"https", srv, ln})
	}
	adminLn, err := admin.Listen(cfg.AdminSocket())
	if err != nil {
		return err
	}
	listeners = append(listeners, adminLn)
	// No os.Remove of the socket on the way out: closing the listener
	// unlinks it while we still hold the data file's lock; removing it
	// later could remove the socket of a successor that took the lock.
	servers = append(servers, server{"admin", &http.Server{
		Handler:           admin.Handler(admin.Local{Store: st, Domains: cfg.Domains, Limits: api.Limits, Now: time.Now}, log),
		ReadHeaderTimeout: 10 * time.Second,
	}, adminLn})
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		listeners = append(listeners, ln)
		b := buildVersion()
		metrics.BuildInfo.WithLabelValues(b.Version, cmp.Or(b.Commit, "unknown"), b.Go).Set(1)
		metrics.StoredAliases(func() float64 {
			stats, err := st.Stats(context.Background())
			if err != nil {
				return -1
			}
			return float64(stats.Aliases)
		})
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler())
		if cfg.Metrics.Pprof {
			// Profiles for whoever can reach the metrics listener, which
			// is the operator's own address: see tempalias.toml.
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		}
		servers = append(servers, server{"metrics", &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln})
	}

	var wg sync.WaitGroup
	errc := make(chan error, len(servers)+1) // and the SMTP server
	wg.Go(func() {
		if err := mta.Serve(smtpLn); err != nil {
			errc <- fmt.Errorf("smtp: %w", err)
		}
	})
	for _, s := range servers {
		wg.Go(func() {
			serve := s.srv.Serve
			if s.srv.TLSConfig != nil {
				// ServeTLS, not Serve over a TLS listener: it offers HTTP/2.
				serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
			}
			if err := serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", s.name, err)
			}
		})
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	wg.Go(func() { sweep(sweepCtx, st, cfg, log) })
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	addrs := []any{"version", buildVersion().Version, "url", pageURL(cfg, httpLn), "smtp", smtpLn.Addr().String()}
	for _, s := range servers {
		addrs = append(addrs, s.name, s.ln.Addr().String())
	}
	addrs = append(addrs, mailTo...)
	if cfg.Store.Engine == "etcd" {
		addrs = append(addrs, "store", "etcd", "etcd_endpoints", cfg.Etcd.Endpoints, "etcd_prefix", cfg.Etcd.Prefix)
	} else {
		addrs = append(addrs, "store", "bolt", "data_file", cfg.DataFile)
	}
	log.Info("tempalias started", append(addrs, "domain", cfg.Domains[0])...)
	daemon.SdNotify(false, daemon.SdNotifyReady)

	var runErr error
	applied := cfg
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "timeout", cfg.Shutdown.Timeout.Duration)
			break wait
		case runErr = <-errc:
			log.Error("server failed, shutting down", "err", runErr)
			break wait
		case <-hup:
			daemon.SdNotify(false, daemon.SdNotifyReloading)
			applied = reload(applied, configPath, tlsCerts, api, log)
			daemon.SdNotify(false, daemon.SdNotifyReady)
		}
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout.Duration)
	defer cancel()
	var sd sync.WaitGroup
	sd.Go(func() {
		if err := mta.Shutdown(shutdownCtx); err != nil {
			log.Warn("shutdown: SMTP sessions cut off", "err", err)
		}
	})
	for _, s := range servers {
		sd.Go(func() {
			if err := s.srv.Shutdown(shutdownCtx); err != nil {
				log.Warn("shutdown: closing connections still open", "server", s.name, "err", err)
				s.srv.Close()
			}
		})
	}
	sd.Wait()
	stopSweep()
	wg.Wait()
	if err := st.Close(); err != nil {
		return err
	}
	log.Info("stopped")
	return runErr
}

// blocklist checks clients against zones; nil when there are none.
func blocklist(zones []string, log *slog.Logger) httpd.Blocklist {
	if len(zones) == 0 {
		return nil
	}
	return dnsbl.New(zones, dnsbl.Options{Logger: log})
}

// reload is SIGHUP: the certificate files are read again, and the
// creation limits (limits.default_days, max_days, max_usage,
// create_per_minute) are applied from the configuration file. Any other
// change is reported as needing a restart. It returns the configuration
// now in force.
func reload(cur *config.Config, configPath string, tlsCerts *certs, api *httpd.API, log *slog.Logger) *config.Config {
	if tlsCerts != nil {
		if err := tlsCerts.reload(); err != nil {
			log.Error("reload: keeping the old certificate", "err", err)
		} else {
			log.Info("reload: certificate reloaded", "cert_file", cur.TLS.CertFile)
		}
	}
	next, err := config.Load(configPath)
	if err != nil {
		log.Error("reload: configuration not valid, nothing else changed", "err", err)
		return cur
	}
	applied := *cur
	l, nl := &applied.Limits, next.Limits
	if l.DefaultDays != nl.DefaultDays || l.MaxDays != nl.MaxDays || l.MaxUsage != nl.MaxUsage || l.CreatePerMinute != nl.CreatePerMinute {
		l.DefaultDays, l.MaxDays, l.MaxUsage, l.CreatePerMinute = nl.DefaultDays, nl.MaxDays, nl.MaxUsage, nl.CreatePerMinute
		api.SetLimits(applied.AliasLimits(), l.CreatePerMinute)
		log.Info("reload: creation limits applied", "default_days", l.DefaultDays, "max_days", l.MaxDays,
			"max_usage", l.MaxUsage, "create_per_minute", l.CreatePerMinute)
	}
	if changed := config.ChangedSections(&applied, next); len(changed) > 0 {
		log.Warn("reload: configuration changed; restart tempalias to apply", "sections", strings.Join(changed, ","))
	}
	return &applied
}

// sweep deletes dead aliases every sweep_interval until ctx ends.
func sweep(ctx context.Context, st store.Engine, cfg *config.Config, log *slog.Logger) {
	t := time.NewTicker(cfg.Store.SweepInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := st.Sweep(ctx, now, cfg.Store.SweepBatch)
			if err != nil {
				log.Error("sweep", "err", err)
			} else if n > 0 {
				log.Info("swept dead aliases", "count", n)
			}
		}
	}
}
