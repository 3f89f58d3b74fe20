// Command tempalias hands out self-destructing email aliases: an HTTP API
// and web page create them, an SMTP server relays mail for them through a
// smarthost until they run out of days or uses.
//
// Usage:
//
//	tempalias [-config tempalias.toml]
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
	"sync"
	"syscall"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tempalias:", err)
		os.Exit(1)
	}
}

// run is the whole program, minus process exit, so tests can drive it.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tempalias", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "TOML configuration `file` (default: built-in defaults, see tempalias.toml)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return serve(ctx, cfg, log)
}

func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if cfg.Metrics.Listen != "" {
		return errors.New("metrics.listen: metrics are not available in this version; leave it empty")
	}
	st, err := store.Open(cfg.DataFile, store.Options{
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		OpenTimeout:      cfg.Store.OpenTimeout.Duration,
	})
	if err != nil {
		return err
	}
	defer st.Close()

	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	api := httpd.New(httpd.Config{
		Domains: cfg.Domains,
		Limits: alias.Limits{
			DefaultDays: cfg.Limits.DefaultDays,
			MaxDays:     cfg.Limits.MaxDays,
			MaxUsage:    cfg.Limits.MaxUsage,
		},
		CreatePerMinute: cfg.Limits.CreatePerMinute,
		TrustedProxies:  cfg.trusted,
		Logger:          log,
	}, st)
	httpSrv := httpd.NewServer(api, log)

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	})
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	wg.Go(func() { sweep(sweepCtx, st, cfg, log) })

	log.Info("tempalias started", "http", httpLn.Addr().String(), "data_file", cfg.DataFile, "domain", cfg.Domains[0])

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.Shutdown.Timeout.Duration)
	case runErr = <-errc:
		log.Error("server failed, shutting down", "err", runErr)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout.Duration)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown: closing connections still open", "err", err)
		httpSrv.Close()
	}
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
