package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/config"
	"github.com/tempalias/tempalias/internal/syncbuf"
	"github.com/tempalias/tempalias/store/boltstore"
)

// appConfig is a configuration for an app in this process: loopback
// ports, a data file and a Maildir in dir, and the admin socket at socket.
func appConfig(t *testing.T, dir, socket string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "tempalias.toml")
	writeFile(t, path, fmt.Appendf(nil, "%s[smarthost]\nmaildir = %q\n[admin]\nsocket = %q\n",
		testConfig(dir), filepath.Join(dir, "mail"), socket), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitHealthy polls the app's /healthz until it answers 200.
func waitHealthy(t *testing.T, a *app) {
	t.Helper()
	url := "http://" + a.servers[0].ln.Addr().String() + "/healthz"
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 10s: %v", url, err)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// A failed open gives back what it had taken: the data file's lock and
// every listener, so that the next try (or an admin command) can have
// them.
func TestOpenAppReleasesOnFailure(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := appConfig(t, dir, filepath.Join(dir, "no-such-dir", "admin.sock"))
	if _, err := openApp(cfg, "", log); err == nil || !strings.Contains(err.Error(), "admin.socket") {
		t.Fatalf("open with the admin socket in a missing directory: %v, want an admin.socket error", err)
	}
	st, err := boltstore.Open(cfg.DataFile, boltstore.Options{OpenTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("the data file is still held after the failed open: %v", err)
	}
	st.Close()
	a, err := openApp(appConfig(t, dir, filepath.Join(dir, "admin.sock")), "", log)
	if err != nil {
		t.Fatalf("open after the failed one: %v", err)
	}
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
}

// run serves until its context ends and then shuts down cleanly; a
// server that fails stops the others, and run returns its error.
func TestAppRun(t *testing.T) {
	for _, c := range []struct {
		name string
		stop func(cancel context.CancelFunc, a *app)
		want string // part of run's error, "" for none
		log  string // part of the log
	}{
		{"context ends", func(cancel context.CancelFunc, a *app) { cancel() }, "", "shutting down"},
		{"a server fails", func(_ context.CancelFunc, a *app) {
			for _, s := range a.servers {
				if s.name == "admin" {
					s.ln.Close() // its Serve fails: not a shutdown
				}
			}
		}, "admin:", "server failed, shutting down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var logBuf syncbuf.Buffer
			a, err := openApp(appConfig(t, dir, filepath.Join(dir, "admin.sock")), "", slog.New(slog.NewTextHandler(&logBuf, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.run(ctx) }()
			waitHealthy(t, a)
			c.stop(cancel, a)
			select {
			case err := <-done:
				if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
					t.Errorf("run: %v, want an error with %q", err, c.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("run did not return within 30s")
			}
			if err := a.close(); err != nil {
				t.Error(err)
			}
			if !strings.Contains(logBuf.String(), c.log) {
				t.Errorf("log without %q:\n%s", c.log, logBuf.String())
			}
			// Every front end is down: the HTTP port refuses.
			if res, err := http.Get("http://" + a.servers[0].ln.Addr().String() + "/healthz"); err == nil {
				res.Body.Close()
				t.Error("HTTP still answers after run returned")
			}
		})
	}
}

// The store keeps its per-target index only for limits.aliases_per_target
// (boltstore.Options.NoTargetIndex otherwise): with the limit set, the
// service counts a target's live aliases, including those made by a run
// without it, whose creations filed none.
func TestAliasesPerTargetWiring(t *testing.T) {
	dir := t.TempDir()
	create := func(a *app) int {
		t.Helper()
		res, err := http.Post("http://"+a.servers[0].ln.Addr().String()+"/aliases", "application/json",
			strings.NewReader(`{"target":"t@example.com"}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	serve := func(perTarget int, want ...int) {
		t.Helper()
		cfg := appConfig(t, dir, filepath.Join(dir, "admin.sock"))
		cfg.Limits.AliasesPerTarget = perTarget
		a, stop := startApp(t, cfg)
		for i, w := range want {
			if got := create(a); got != w {
				t.Errorf("aliases_per_target %d, creation %d: %d, want %d", perTarget, i+1, got, w)
			}
		}
		if err := stop(); err != nil {
			t.Error(err)
		}
	}
	serve(0, 201, 201)
	serve(3, 201, 429)
}

// startApp opens cfg's app, runs it and waits until it is healthy; stop
// ends the run and closes the app, returning what either failed with.
func startApp(t *testing.T, cfg *config.Config) (a *app, stop func() error) {
	t.Helper()
	a, err := openApp(cfg, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	waitHealthy(t, a)
	return a, func() error {
		cancel()
		return errors.Join(<-done, a.close())
	}
}
