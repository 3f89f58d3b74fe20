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
//	tempalias revoke [-config FILE] ID
//	tempalias backup [-config FILE] FILE     consistent copy of the data file
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tempalias:", err)
		}
		os.Exit(1)
	}
}

var commands = map[string]string{
	"serve":        "run the service (the default)",
	"check-config": "load the configuration and report the first problem",
	"create":       "create an alias: -target ADDR [-days N] [-max-usage N]",
	"list":         "list live aliases",
	"show":         "show one alias: ID",
	"revoke":       "revoke an alias now: ID",
	"backup":       "write a consistent copy of the data file: FILE",
}

// run is the whole program, minus process exit, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if _, ok := commands[name]; !ok {
		return fmt.Errorf("unknown command %q (commands: serve, check-config, create, list, show, revoke, backup)", name)
	}
	fs := flag.NewFlagSet("tempalias "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "tempalias %s: %s\n", name, commands[name])
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "TOML configuration `file` (default: built-in defaults, see tempalias.toml)")
	var req alias.Request
	var target string
	var days, maxUsage int
	if name == "create" {
		fs.StringVar(&target, "target", "", "the `address` mail is forwarded to")
		fs.IntVar(&days, "days", 0, "lifetime in days (default limits.default_days)")
		fs.IntVar(&maxUsage, "max-usage", 0, "most messages relayed (default: no limit by count)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	switch name {
	case "serve":
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		return serve(ctx, cfg, slog.New(slog.NewTextHandler(stderr, nil)))
	case "check-config":
		fmt.Fprintf(stdout, "configuration %s is valid\n", orDefault(*configPath))
		return nil
	case "create":
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		req.Target = target
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "days":
				req.Days = &days
			case "max-usage":
				req.MaxUsage = &maxUsage
			}
		})
		return runAdmin(cfg, name, nil, req, stdout)
	}
	return runAdmin(cfg, name, fs.Args(), req, stdout)
}

// listeners are the sockets handed over by systemd, by name.
func activated() (map[string][]net.Listener, error) {
	lns, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("systemd socket activation: %w", err)
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

func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if cfg.Metrics.Listen != "" {
		return errors.New("metrics.listen: metrics are not available in this version; leave it empty")
	}
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	handed, err := activated()
	if err != nil {
		return err
	}
	httpLn, err := listen(handed, "http", "http.listen", cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	adminLn, err := listenAdmin(cfg.adminSocketPath())
	if err != nil {
		httpLn.Close()
		return err
	}
	defer os.Remove(cfg.adminSocketPath())

	api := httpd.New(httpd.Config{
		Domains:         cfg.Domains,
		Limits:          cfg.limits(),
		CreatePerMinute: cfg.Limits.CreatePerMinute,
		TrustedProxies:  cfg.trusted,
		Logger:          log,
	}, st)
	public := http.NewServeMux()
	public.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := st.Ping(); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	public.Handle("/", api)
	httpSrv := httpd.NewServer(public, log)
	adminSrv := &http.Server{
		Handler:           adminHandler(localOps{st: st, cfg: cfg, now: time.Now}, log),
		ReadHeaderTimeout: 10 * time.Second,
	}

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	serveHTTP := func(name string, srv *http.Server, ln net.Listener) {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s: %w", name, err)
		}
	}
	wg.Go(func() { serveHTTP("http", httpSrv, httpLn) })
	wg.Go(func() { serveHTTP("admin", adminSrv, adminLn) })
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	wg.Go(func() { sweep(sweepCtx, st, cfg, log) })

	log.Info("tempalias started", "http", httpLn.Addr().String(), "admin", cfg.adminSocketPath(),
		"data_file", cfg.DataFile, "domain", cfg.Domains[0])
	daemon.SdNotify(false, daemon.SdNotifyReady)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.Shutdown.Timeout.Duration)
	case runErr = <-errc:
		log.Error("server failed, shutting down", "err", runErr)
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout.Duration)
	defer cancel()
	var sd sync.WaitGroup
	for name, srv := range map[string]*http.Server{"http": httpSrv, "admin": adminSrv} {
		sd.Go(func() {
			if err := srv.Shutdown(shutdownCtx); err != nil {
				log.Warn("shutdown: closing connections still open", "server", name, "err", err)
				srv.Close()
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

// sweep deletes dead aliases every sweep_interval until ctx ends.
func sweep(ctx context.Context, st *store.Store, cfg *Config, log *slog.Logger) {
	t := time.NewTicker(cfg.Store.SweepInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := st.Sweep(now, cfg.Store.SweepBatch)
			if err != nil {
				log.Error("sweep", "err", err)
			} else if n > 0 {
				log.Info("swept dead aliases", "count", n)
			}
		}
	}
}
