package main

// Admin commands (create, list, show, change, revoke, backup, export) work whether or not
// the server runs. bbolt lets one process hold the data file, so a running
// server answers them on a unix socket beside the data file (mode 0600, so
// only the service's user and root may use it); when no server runs, the
// command opens the file itself. A command never waits on the file lock
// longer than store.open_timeout.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/config"
	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/metrics"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
	"github.com/tempalias/tempalias/store/etcdstore"
)

// adminAlias is an alias as admin commands show it: as the API does.
type adminAlias = httpd.View

// adminOps is what admin commands do, either on an open store (local) or
// through a running server's admin socket (remote).
type adminOps interface {
	Create(req alias.Request) (adminAlias, error)
	List() ([]adminAlias, error)
	Show(id string) (adminAlias, error)
	Change(id string, req alias.ChangeRequest) (adminAlias, error)
	Revoke(id string) error
	Backup(w io.Writer) error
	Export(w io.Writer) error
}

// adminStore is what the admin commands need from the store; every
// store.Engine satisfies it.
type adminStore interface {
	Create(ctx context.Context, spec alias.Spec, now time.Time, opts ...store.CreateOption) (store.Created, error)
	Live(ctx context.Context, now time.Time, fn func(alias.Alias) bool) error
	Held(ctx context.Context, id string, now time.Time) (alias.Alias, error)
	ChangeID(ctx context.Context, id string, c alias.Change, now time.Time) (alias.Alias, error)
	RevokeID(ctx context.Context, id string, now time.Time) error
	Backup(ctx context.Context, w io.Writer) (int64, error)
	Export(ctx context.Context, w io.Writer) error
}

// localOps runs admin operations on a store this process holds.
type localOps struct {
	st     adminStore
	cfg    *config.Config
	limits func() alias.Limits // the creation limits in force (SIGHUP may change them)
	now    func() time.Time
}

func (o localOps) view(a alias.Alias, token string) adminAlias {
	return httpd.NewView(a, o.cfg.Domains[0], token)
}

func (o localOps) Create(req alias.Request) (adminAlias, error) {
	now := o.now()
	spec, err := o.limits().Check(req, o.cfg.Domains, now)
	if err != nil {
		return adminAlias{}, err
	}
	c, err := o.st.Create(context.Background(), spec, now)
	if err != nil {
		return adminAlias{}, err
	}
	metrics.AliasesCreated.Inc()
	return o.view(c.Alias, c.Token), nil
}

func (o localOps) List() ([]adminAlias, error) {
	list := []adminAlias{}
	err := o.st.Live(context.Background(), o.now(), func(a alias.Alias) bool {
		list = append(list, o.view(a, ""))
		return true
	})
	return list, err
}

func (o localOps) Show(id string) (adminAlias, error) {
	a, err := o.st.Held(context.Background(), id, o.now())
	if err != nil {
		return adminAlias{}, err
	}
	return o.view(a, ""), nil
}

func (o localOps) Change(id string, req alias.ChangeRequest) (adminAlias, error) {
	now := o.now()
	c, err := o.limits().CheckChange(req, now)
	if err != nil {
		return adminAlias{}, err
	}
	a, err := o.st.ChangeID(context.Background(), id, c, now)
	if err != nil {
		return adminAlias{}, err
	}
	return o.view(a, ""), nil
}

func (o localOps) Revoke(id string) error { return o.st.RevokeID(context.Background(), id, o.now()) }

func (o localOps) Backup(w io.Writer) error {
	_, err := o.st.Backup(context.Background(), w)
	return err
}

func (o localOps) Export(w io.Writer) error { return o.st.Export(context.Background(), w) }

// listenAdmin opens the admin socket. The caller holds the data file's
// lock, so any socket file already there is a leftover of a crash.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin.socket: %w", err)
	}
	return ln, nil
}

// adminHandler serves localOps over HTTP on the admin socket.
func adminHandler(ops localOps, log *slog.Logger) http.Handler {
	r := chi.NewRouter()
	fail := func(w http.ResponseWriter, err error) {
		status := http.StatusInternalServerError
		var inv *alias.InvalidError
		switch {
		case errors.Is(err, alias.ErrNotFound):
			status = http.StatusNotFound
		case errors.As(err, &inv):
			status = http.StatusBadRequest
		default:
			log.Error("admin", "err", err)
		}
		http.Error(w, err.Error(), status)
	}
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	r.Get("/aliases", func(w http.ResponseWriter, r *http.Request) {
		list, err := ops.List()
		reply(w, list, err)
	})
	r.Post("/aliases", func(w http.ResponseWriter, r *http.Request) {
		var req alias.Request
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a, err := ops.Create(req)
		reply(w, a, err)
	})
	r.Get("/aliases/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, err := ops.Show(chi.URLParam(r, "id"))
		reply(w, a, err)
	})
	r.Patch("/aliases/{id}", func(w http.ResponseWriter, r *http.Request) {
		var req alias.ChangeRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a, err := ops.Change(chi.URLParam(r, "id"), req)
		reply(w, a, err)
	})
	r.Delete("/aliases/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := ops.Revoke(chi.URLParam(r, "id")); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	r.Get("/backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := ops.Backup(w); err != nil {
			log.Error("admin backup", "err", err)
			panic(http.ErrAbortHandler) // the client sees a cut stream, not a short backup
		}
	})
	r.Get("/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		if err := ops.Export(w); err != nil {
			log.Error("admin export", "err", err)
			panic(http.ErrAbortHandler) // the client sees a cut stream (and import refuses one without its end line)
		}
	})
	return r
}

// remoteOps sends admin operations to a running server's socket.
type remoteOps struct{ c *http.Client }

func newRemoteOps(socket string) remoteOps {
	return remoteOps{&http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (o remoteOps) call(method, path string, body io.Reader, out any) error {
	req, _ := http.NewRequest(method, "http://admin"+path, body)
	res, err := o.c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return alias.ErrNotFound
	}
	if res.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return errors.New(strings.TrimSpace(string(msg)))
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, res.Body)
		return err
	}
	if out != nil {
		return json.NewDecoder(res.Body).Decode(out)
	}
	return nil
}

func (o remoteOps) Create(req alias.Request) (a adminAlias, err error) {
	b, _ := json.Marshal(req)
	err = o.call("POST", "/aliases", strings.NewReader(string(b)), &a)
	return a, err
}

func (o remoteOps) List() (list []adminAlias, err error) {
	err = o.call("GET", "/aliases", nil, &list)
	return list, err
}

func (o remoteOps) Show(id string) (a adminAlias, err error) {
	err = o.call("GET", "/aliases/"+url.PathEscape(id), nil, &a)
	return a, err
}

func (o remoteOps) Change(id string, req alias.ChangeRequest) (a adminAlias, err error) {
	b, _ := json.Marshal(req)
	err = o.call("PATCH", "/aliases/"+url.PathEscape(id), strings.NewReader(string(b)), &a)
	return a, err
}

func (o remoteOps) Revoke(id string) error {
	return o.call("DELETE", "/aliases/"+url.PathEscape(id), nil, nil)
}

func (o remoteOps) Backup(w io.Writer) error { return o.call("GET", "/backup", nil, w) }

func (o remoteOps) Export(w io.Writer) error { return o.call("GET", "/export", nil, w) }

// openAdmin reaches the aliases: through the running server if one answers
// on the admin socket, else by opening the data file. close must be called.
func openAdmin(cfg *config.Config) (ops adminOps, close func(), err error) {
	socket := cfg.AdminSocket()
	if conn, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		conn.Close()
		return newRemoteOps(socket), func() {}, nil
	}
	st, err := openStore(cfg, cfg.Logger(os.Stderr))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (and no server answers on %s)", err, socket)
	}
	return localOps{st: st, cfg: cfg, limits: cfg.AliasLimits, now: time.Now}, func() { st.Close() }, nil
}

// openStore opens the engine store.engine names.
func openStore(cfg *config.Config, log *slog.Logger) (store.Engine, error) {
	if cfg.Store.Engine == "etcd" {
		return openEtcd(cfg, log)
	}
	return boltstore.Open(cfg.DataFile, boltstore.Options{
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		OpenTimeout:      cfg.Store.OpenTimeout.Duration,
	})
}

func openEtcd(cfg *config.Config, log *slog.Logger) (store.Engine, error) {
	e := cfg.Etcd
	opts := etcdstore.Options{
		Endpoints:        e.Endpoints,
		Prefix:           e.Prefix,
		Username:         e.Username,
		Password:         e.Password,
		DialTimeout:      e.DialTimeout.Duration,
		RequestTimeout:   e.RequestTimeout.Duration,
		LeaseTTL:         e.LeaseTTL.Duration,
		IDMinLength:      cfg.Limits.IDMinLength,
		GuessProbability: cfg.Limits.IDGuessProbability,
		Logger:           log,
	}
	if e.CAFile != "" {
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd.cert_file: %w", err)
		}
		ca, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("etcd.ca_file: %s holds no PEM certificate", e.CAFile)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return etcdstore.Open(context.Background(), opts)
}

// runAdmin runs admin command name with its arguments.
func runAdmin(cfg *config.Config, name string, args []string, req alias.Request, chg alias.ChangeRequest, stdout io.Writer) error {
	if name == "import" {
		return runImport(cfg, args[0], stdout)
	}
	ops, closeOps, err := openAdmin(cfg)
	if err != nil {
		return err
	}
	defer closeOps()
	switch name {
	case "create":
		a, err := ops.Create(req)
		if err != nil {
			return err
		}
		return printJSON(stdout, a)
	case "list":
		list, err := ops.List()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tTARGET\tEXPIRES\tREMAINING")
		for _, a := range list {
			rem := "-"
			if a.Remaining != nil {
				rem = fmt.Sprintf("%d/%d", *a.Remaining, *a.MaxUsage)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Status, a.Target, a.Expires, rem)
		}
		return tw.Flush()
	case "show", "revoke":
		if len(args) != 1 {
			return fmt.Errorf("usage: tempalias %s [-config FILE] ID", name)
		}
		if name == "revoke" {
			if err := ops.Revoke(args[0]); err != nil {
				return fmt.Errorf("revoke %s: %w", args[0], err)
			}
			fmt.Fprintf(stdout, "revoked %s\n", args[0])
			return nil
		}
		a, err := ops.Show(args[0])
		if err != nil {
			return fmt.Errorf("show %s: %w", args[0], err)
		}
		return printJSON(stdout, a)
	case "change":
		if len(args) != 1 {
			return errors.New("usage: tempalias change [-config FILE] [-days N] [-max-usage N] ID")
		}
		a, err := ops.Change(args[0], chg)
		if err != nil {
			return fmt.Errorf("change %s: %w", args[0], err)
		}
		return printJSON(stdout, a)
	case "backup":
		if len(args) != 1 {
			return errors.New("usage: tempalias backup [-config FILE] FILE")
		}
		if cfg.Store.Engine == "etcd" {
			return errors.New("backup: the etcd engine's store is the cluster: back it up with `etcdctl snapshot save FILE` (or move its aliases with `tempalias export`)")
		}
		return backupTo(ops, args[0], stdout)
	case "export":
		if len(args) == 0 || args[0] == "-" {
			return ops.Export(stdout)
		}
		return writeAtomically(args[0], "export", ops.Export, stdout)
	}
	return fmt.Errorf("unknown command %q", name)
}

// backupTo writes a backup to path through a temporary file, so that a
// failed backup never leaves a truncated file under the final name.
func backupTo(ops adminOps, path string, stdout io.Writer) error {
	return writeAtomically(path, "backup", ops.Backup, stdout)
}

// writeAtomically writes what write produces to path through a temporary
// file, renamed only once it is whole and synced.
func writeAtomically(path, what string, write func(io.Writer) error, stdout io.Writer) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tempalias-"+what+"-*")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	fmt.Fprintf(stdout, "%s written to %s\n", what, path)
	return nil
}

// runImport reads an export (path, or "-" for standard input) into the
// store the configuration names, which must be new and not in use: a
// running server holds its keys in memory, so a server answering on the
// admin socket is refused (for etcd, no host may run on the cluster; the
// command cannot see the other hosts).
func runImport(cfg *config.Config, path string, stdout io.Writer) error {
	socket := cfg.AdminSocket()
	if conn, err := net.DialTimeout("unix", socket, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("import: a server is running on this store (it answers on %s): stop it, import, then start it", socket)
	}
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		in = f
	}
	st, err := openStore(cfg, cfg.Logger(os.Stderr))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Import(context.Background(), bufio.NewReaderSize(in, 64<<10)); err != nil {
		if errors.Is(err, store.ErrImportNotEmpty) {
			return fmt.Errorf("%w (store.engine %q)", err, cmp.Or(cfg.Store.Engine, "bolt"))
		}
		return err
	}
	stats, err := st.Stats(context.Background())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d aliases, %d ids issued in all\n", stats.Aliases, stats.Issued)
	return st.Close()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
