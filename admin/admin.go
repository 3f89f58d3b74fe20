// Package admin is the operator's side of tempalias: the admin commands
// (create, list, show, change, revoke, backup, export, import) and the
// unix socket on which a running server answers them.
//
// The commands work whether or not the server runs. bbolt lets one
// process hold the data file, so a running server answers them on a unix
// socket beside the data file (mode 0600, so only the service's user and
// root may use it); when no server runs, the command opens the store
// itself. A command never waits on the file lock longer than
// store.open_timeout.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/metrics"
	"github.com/tempalias/tempalias/store"
)

// View is an alias as admin commands show it: as the API does.
type View = httpd.View

// Ops is what admin commands do, either on an open store (Local) or
// through a running server's admin socket (Remote).
type Ops interface {
	Create(req alias.Request) (View, error)
	List() ([]View, error)
	Show(id string) (View, error)
	Change(id string, req alias.ChangeRequest) (View, error)
	Revoke(id string) error
	Backup(w io.Writer) error
	Export(w io.Writer) error
}

// Store is what the admin operations need from the store; every
// store.Engine satisfies it.
type Store interface {
	Create(ctx context.Context, spec alias.Spec, now time.Time, opts ...store.CreateOption) (store.Created, error)
	Live(ctx context.Context, now time.Time, fn func(alias.Alias) bool) error
	Held(ctx context.Context, id string, now time.Time) (alias.Alias, error)
	ChangeID(ctx context.Context, id string, c alias.Change, now time.Time) (alias.Alias, error)
	RevokeID(ctx context.Context, id string, now time.Time) error
	Backup(ctx context.Context, w io.Writer) (int64, error)
	Export(ctx context.Context, w io.Writer) error
}

// Local runs admin operations on a store this process holds.
type Local struct {
	Store   Store
	Domains []string            // alias domains; new aliases use the first
	Limits  func() alias.Limits // the creation limits in force (SIGHUP may change them)
	Now     func() time.Time
	Metrics *metrics.Metrics // the running server's, which counts creations; nil: not counted
}

func (o Local) view(a alias.Alias, token string) View {
	return httpd.NewView(a, o.Domains[0], token, o.Now())
}

func (o Local) Create(req alias.Request) (View, error) {
	now := o.Now()
	spec, err := o.Limits().Check(req, o.Domains, now)
	if err != nil {
		return View{}, err
	}
	c, err := o.Store.Create(context.Background(), spec, now)
	if err != nil {
		return View{}, err
	}
	if o.Metrics != nil {
		o.Metrics.AliasesCreated.Inc()
	}
	return o.view(c.Alias, c.Token), nil
}

func (o Local) List() ([]View, error) {
	list := []View{}
	err := o.Store.Live(context.Background(), o.Now(), func(a alias.Alias) bool {
		list = append(list, o.view(a, ""))
		return true
	})
	return list, err
}

func (o Local) Show(id string) (View, error) {
	a, err := o.Store.Held(context.Background(), id, o.Now())
	if err != nil {
		return View{}, err
	}
	return o.view(a, ""), nil
}

func (o Local) Change(id string, req alias.ChangeRequest) (View, error) {
	now := o.Now()
	c, err := o.Limits().CheckChange(req, now)
	if err != nil {
		return View{}, err
	}
	a, err := o.Store.ChangeID(context.Background(), id, c, now)
	if err != nil {
		return View{}, err
	}
	return o.view(a, ""), nil
}

func (o Local) Revoke(id string) error { return o.Store.RevokeID(context.Background(), id, o.Now()) }

func (o Local) Backup(w io.Writer) error {
	_, err := o.Store.Backup(context.Background(), w)
	return err
}

func (o Local) Export(w io.Writer) error { return o.Store.Export(context.Background(), w) }

// Listen opens the admin socket at path. The caller holds the store (for
// bbolt, the data file's lock), so any socket file already there is a
// leftover of a crash.
func Listen(path string) (net.Listener, error) {
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

// Handler serves ops over HTTP on the admin socket. An error's status is
// the API's (httpd.Status), its body the error's own text, which the
// command prints.
func Handler(ops Local, log *slog.Logger) http.Handler {
	r := chi.NewRouter()
	fail := func(w http.ResponseWriter, err error) {
		status := httpd.Status(err)
		if status >= 500 {
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

// Remote sends admin operations to a running server's socket.
type Remote struct{ c *http.Client }

// NewRemote is a client of the admin socket at path.
func NewRemote(socket string) Remote {
	return Remote{&http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (o Remote) call(method, path string, body io.Reader, out any) error {
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

func (o Remote) Create(req alias.Request) (a View, err error) {
	b, _ := json.Marshal(req)
	err = o.call("POST", "/aliases", strings.NewReader(string(b)), &a)
	return a, err
}

func (o Remote) List() (list []View, err error) {
	err = o.call("GET", "/aliases", nil, &list)
	return list, err
}

func (o Remote) Show(id string) (a View, err error) {
	err = o.call("GET", "/aliases/"+url.PathEscape(id), nil, &a)
	return a, err
}

func (o Remote) Change(id string, req alias.ChangeRequest) (a View, err error) {
	b, _ := json.Marshal(req)
	err = o.call("PATCH", "/aliases/"+url.PathEscape(id), strings.NewReader(string(b)), &a)
	return a, err
}

func (o Remote) Revoke(id string) error {
	return o.call("DELETE", "/aliases/"+url.PathEscape(id), nil, nil)
}

func (o Remote) Backup(w io.Writer) error { return o.call("GET", "/backup", nil, w) }

func (o Remote) Export(w io.Writer) error { return o.call("GET", "/export", nil, w) }
