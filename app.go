package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

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
	"golang.org/x/sync/errgroup"
)

// app is the service: the store, the SMTP and HTTP front ends, the admin
// socket, the metrics listener and the sweeper, made from one
// configuration. openApp acquires all of it (and releases what it had
// when a step fails); run serves until its context ends or a server
// fails, applying SIGHUP with reload, and then shuts the front ends down;
// close releases the listeners and the store.
type app struct {
	cfg        *config.Config // in force; reload may apply new creation limits
	configPath string
	log        *slog.Logger
	metrics    *metrics.Metrics // every front end's counters, served on metrics.listen

	st        store.Engine // the one interface main holds the engine by
	certs     *certs       // nil without tls.cert_file
	api       *httpd.API
	mta       *smtpd.Server
	smtpLn    net.Listener
	servers   []server       // the HTTP servers: http, https, admin, metrics
	listeners []net.Listener // every one opened, closed by close
	sink      *maildir.Sink  // the Maildir sink standing in for a smarthost, or nil
	started   []any          // the attributes of the "tempalias started" line
}

// server is an HTTP server to run and stop with the others.
type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

// serve runs the service until ctx ends (SIGINT, SIGTERM) or a server
// fails.
func serve(ctx context.Context, cfg *config.Config, configPath string, log *slog.Logger) error {
	a, err := openApp(cfg, configPath, log)
	if err != nil {
		return err
	}
	runErr := a.run(ctx)
	if err := a.close(); err != nil {
		return cmp.Or(runErr, err)
	}
	log.Info("stopped")
	return runErr
}

// openApp opens the store and every listener and makes the front ends;
// nothing is served yet.
func openApp(cfg *config.Config, configPath string, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, configPath: configPath, log: log, metrics: metrics.New()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if cfg.TLS.CertFile != "" {
		if a.certs, err = loadCerts(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, err
		}
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	a.st = st

	handed, err := activated()
	if err != nil {
		return nil, err
	}
	open := func(name, key, addr string) (net.Listener, error) {
		ln, err := listen(handed, name, key, addr)
		if err == nil {
			a.listeners = append(a.listeners, ln)
		}
		return ln, err
	}
	httpLn, err := open("http", "http.listen", cfg.HTTP.Listen)
	if err != nil {
		return nil, err
	}
	rewriter, err := cfg.SRS()
	if err != nil {
		return nil, err
	}
	var smtpTLS *tls.Config
	if a.certs != nil {
		smtpTLS = a.certs.config()
	}
	if a.smtpLn, err = open("smtp", "smtp.listen", cfg.SMTP.Listen); err != nil {
		return nil, err
	}
	smarthost := smtpd.Upstream{
		Address:        cfg.Smarthost.Address,
		TLS:            cfg.Smarthost.TLS,
		Username:       cfg.Smarthost.Username,
		Password:       cfg.Smarthost.Password,
		DialTimeout:    cfg.Smarthost.DialTimeout.Duration,
		CommandTimeout: cfg.Smarthost.CommandTimeout.Duration,
		MaxIdle:        maxIdle(cfg.Smarthost.MaxIdle),
		IdleTimeout:    cfg.Smarthost.IdleTimeout.Duration,
	}
	mailTo := []any{"smarthost", cfg.Smarthost.Address}
	if cfg.Smarthost.Maildir != "" {
		// The smarthost is a sink of our own on loopback, so that mail
		// takes the very path it takes to a real one, usage accounting
		// included: a message counts once its file is durable in new/.
		if a.sink, err = maildir.Listen(maildir.Dir(cfg.Smarthost.Maildir), log); err != nil {
			return nil, fmt.Errorf("smarthost.maildir: %w", err)
		}
		smarthost = smtpd.Upstream{
			Address:        a.sink.Addr(),
			TLS:            "none",
			DialTimeout:    cfg.Smarthost.DialTimeout.Duration,
			CommandTimeout: cfg.Smarthost.CommandTimeout.Duration,
			MaxIdle:        maxIdle(cfg.Smarthost.MaxIdle),
			IdleTimeout:    cfg.Smarthost.IdleTimeout.Duration,
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
		return nil, err
	}
	a.mta = smtpd.New(smtpd.Config{
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
		DNSBL:                     newBlocklist(cfg.SMTP.DNSBL, log),
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
		Metrics:                   a.metrics,
	}, st)

	var verify *httpd.Verify
	if cfg.Limits.VerifyTargets {
		verify = &httpd.Verify{
			Mailer:               confirmMailer{smtp: a.mta, from: "noreply@" + cfg.Domains[0], hostname: cfg.SMTP.Hostname, now: time.Now},
			Remember:             cfg.Limits.VerifyRemember.Duration,
			PublicURL:            cfg.HTTP.PublicURL,
			MailsPerTargetPerDay: cfg.Limits.ConfirmationsPerTargetPerDay,
		}
	}
	trusted := cfg.Trusted()
	a.api = httpd.New(httpd.Config{
		Domains:                  cfg.Domains,
		Limits:                   cfg.AliasLimits(),
		CreatePerMinute:          cfg.Limits.CreatePerMinute,
		TrustedProxies:           trusted,
		Static:                   httpd.Static(static.FS),
		Logger:                   log,
		AliasesPerTarget:         cfg.Limits.AliasesPerTarget,
		LinkKey:                  st.LinkKey(),
		CreationsPerTargetPerDay: cfg.Limits.CreationsPerTargetPerDay,
		Blocklist:                newBlocklist(cfg.HTTP.DNSBL, log),
		Verify:                   verify,
		Metrics:                  a.metrics,
	}, st)
	public := http.NewServeMux()
	public.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := st.Ping(r.Context()); err != nil {
			// The probe only sees the status; the reason goes to the log.
			log.Warn("healthz: store unavailable", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	public.Handle("/", a.api)
	// http and https share one budget; the trusted proxies have no
	// per-client share.
	conns := httpd.NewConns(httpd.ConnLimits{Max: budget.http, PerClient: budget.httpPerClient, Exempt: trusted, Metrics: a.metrics}, log)
	a.servers = append(a.servers, server{"http", conns.Manage(httpd.NewServer(public, log)), httpLn})
	if cfg.HTTP.TLSListen != "" || len(handed["https"]) > 0 {
		if a.certs == nil {
			return nil, errors.New("http.tls_listen: an https socket needs tls.cert_file and tls.key_file")
		}
		ln, err := open("https", "http.tls_listen", cfg.HTTP.TLSListen)
		if err != nil {
			return nil, err
		}
		srv := conns.Manage(httpd.NewServer(public, log))
		srv.TLSConfig = a.certs.config()
		a.servers = append(a.servers, server{"https", srv, ln})
	}
	adminLn, err := admin.Listen(cfg.AdminSocket())
	if err != nil {
		return nil, err
	}
	a.listeners = append(a.listeners, adminLn)
	// No os.Remove of the socket on the way out: closing the listener
	// unlinks it while we still hold the data file's lock; removing it
	// later could remove the socket of a successor that took the lock.
	a.servers = append(a.servers, server{"admin", &http.Server{
		Handler:           admin.Handler(admin.Local{Store: st, Domains: cfg.Domains, Limits: a.api.Limits, Now: time.Now, Metrics: a.metrics}, log),
		ReadHeaderTimeout: 10 * time.Second,
	}, adminLn})
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		a.listeners = append(a.listeners, ln)
		b := buildVersion()
		a.metrics.BuildInfo.WithLabelValues(b.Version, cmp.Or(b.Commit, "unknown"), b.Go).Set(1)
		a.metrics.StoredAliases(func() float64 {
			stats, err := st.Stats(context.Background())
			if err != nil {
				return -1
			}
			return float64(stats.Aliases)
		})
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler())
		if cfg.Metrics.Pprof {
			// Profiles for whoever can reach the metrics listener, which
			// is the operator's own address: see tempalias.toml.
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		}
		a.servers = append(a.servers, server{"metrics", &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln})
	}

	a.started = []any{"version", buildVersion().Version, "url", pageURL(cfg, httpLn), "smtp", a.smtpLn.Addr().String()}
	for _, s := range a.servers {
		a.started = append(a.started, s.name, s.ln.Addr().String())
	}
	a.started = append(a.started, mailTo...)
	if cfg.Store.Engine == "etcd" {
		a.started = append(a.started, "store", "etcd", "etcd_endpoints", cfg.Etcd.Endpoints, "etcd_prefix", cfg.Etcd.Prefix)
	} else {
		a.started = append(a.started, "store", "bolt", "data_file", cfg.DataFile)
	}
	a.started = append(a.started, "domain", cfg.Domains[0])
	return a, nil
}

// run serves until ctx ends or a server fails, then shuts the front ends
// down. Its goroutines (each server, the sweeper, the control loop) are
// one errgroup: the first to fail cancels the group's context, which
// starts the shutdown, and run returns that failure.
func (a *app) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.mta.Serve(a.smtpLn); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		return nil
	})
	for _, s := range a.servers {
		g.Go(func() error {
			serve := s.srv.Serve
			if s.srv.TLSConfig != nil {
				// ServeTLS, not Serve over a TLS listener: it offers HTTP/2.
				serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
			}
			if err := serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			return nil
		})
	}
	interval, batch := a.cfg.Store.SweepInterval.Duration, a.cfg.Store.SweepBatch
	g.Go(func() error {
		sweep(gctx, a.st, interval, batch, a.log)
		return nil
	})
	g.Go(func() error {
		a.control(ctx, gctx)
		return nil
	})
	return g.Wait()
}

// control announces the service, applies SIGHUP, and shuts the front
// ends down once gctx ends: ctx ended (a signal) or a server failed.
func (a *app) control(ctx, gctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a.log.Info("tempalias started", a.started...)
	daemon.SdNotify(false, daemon.SdNotifyReady)
	for {
		select {
		case <-gctx.Done():
			if ctx.Err() != nil {
				a.log.Info("shutting down", "timeout", a.cfg.Shutdown.Timeout.Duration)
			} else {
				a.log.Error("server failed, shutting down", "err", context.Cause(gctx))
			}
			a.shutdown()
			return
		case <-hup:
			daemon.SdNotify(false, daemon.SdNotifyReloading)
			a.reload()
			daemon.SdNotify(false, daemon.SdNotifyReady)
		}
	}
}

// shutdown stops the front ends within shutdown.timeout: SMTP sessions
// may finish their transaction, HTTP requests their reply; past the
// timeout, connections are cut.
func (a *app) shutdown() {
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Shutdown.Timeout.Duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.mta.Shutdown(ctx); err != nil {
			a.log.Warn("shutdown: SMTP sessions cut off", "err", err)
		}
	})
	for _, s := range a.servers {
		wg.Go(func() {
			if err := s.srv.Shutdown(ctx); err != nil {
				a.log.Warn("shutdown: closing connections still open", "server", s.name, "err", err)
				s.srv.Close()
			}
		})
	}
	wg.Wait()
}

// close releases what openApp acquired: the Maildir sink, every
// listener (closing one its server already closed is harmless) and the
// store, whose error it returns.
func (a *app) close() error {
	if a.sink != nil {
		// By now every session is over and with it every connection to
		// the sink; the bound is for safety's sake.
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Shutdown.Timeout.Duration)
		a.sink.Shutdown(ctx)
		cancel()
	}
	for _, ln := range a.listeners {
		ln.Close()
	}
	if a.st == nil {
		return nil
	}
	return a.st.Close()
}

// reload is SIGHUP: the certificate files are read again, and the
// creation limits (limits.default_days, max_days, max_usage,
// create_per_minute) are applied from the configuration file. Any other
// change is reported as needing a restart.
func (a *app) reload() {
	cur, log := a.cfg, a.log
	if a.certs != nil {
		if err := a.certs.reload(); err != nil {
			log.Error("reload: keeping the old certificate", "err", err)
		} else {
			log.Info("reload: certificate reloaded", "cert_file", cur.TLS.CertFile)
		}
	}
	next, err := config.Load(a.configPath)
	if err != nil {
		log.Error("reload: configuration not valid, nothing else changed", "err", err)
		return
	}
	applied := *cur
	l, nl := &applied.Limits, next.Limits
	if l.DefaultDays != nl.DefaultDays || l.MaxDays != nl.MaxDays || l.MaxUsage != nl.MaxUsage || l.CreatePerMinute != nl.CreatePerMinute {
		l.DefaultDays, l.MaxDays, l.MaxUsage, l.CreatePerMinute = nl.DefaultDays, nl.MaxDays, nl.MaxUsage, nl.CreatePerMinute
		a.api.SetLimits(applied.AliasLimits(), l.CreatePerMinute)
		log.Info("reload: creation limits applied", "default_days", l.DefaultDays, "max_days", l.MaxDays,
			"max_usage", l.MaxUsage, "create_per_minute", l.CreatePerMinute)
	}
	if changed := config.ChangedSections(&applied, next); len(changed) > 0 {
		log.Warn("reload: configuration changed; restart tempalias to apply", "sections", strings.Join(changed, ","))
	}
	a.cfg = &applied
}

// sweep deletes dead aliases every interval, batch per write, until ctx
// ends.
func sweep(ctx context.Context, st store.Engine, interval time.Duration, batch int, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := st.Sweep(ctx, now, batch)
			switch {
			case err != nil && ctx.Err() != nil:
				return // shutting down
			case err != nil:
				log.Error("sweep", "err", err)
			case n > 0:
				log.Info("swept dead aliases", "count", n)
			}
		}
	}
}

// blocklist is a DNSBL as both front ends use it. Declared here, by its
// user, so that neither front end is typed by the other's interface: it
// fits smtpd.Blocklist and httpd.Blocklist alike.
type blocklist interface {
	Listed(ctx context.Context, ip netip.Addr) (zone string, listed bool)
}

// newBlocklist checks clients against zones; nil when there are none.
func newBlocklist(zones []string, log *slog.Logger) blocklist {
	if len(zones) == 0 {
		return nil
	}
	return dnsbl.New(zones, dnsbl.Options{Logger: log})
}

// maxIdle is smarthost.max_idle as smtpd.Upstream.MaxIdle has it: there
// 0 is the default and none kept is negative.
func maxIdle(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
