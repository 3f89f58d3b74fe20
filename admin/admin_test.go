package admin

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

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
)

// unreachable is a real store whose look-ups fail as an etcd cluster
// without quorum does.
type unreachable struct{ Store }

func (unreachable) Held(ctx context.Context, id string, now time.Time) (alias.Alias, error) {
	return alias.Alias{}, fmt.Errorf("held %s: %w", id, store.ErrUnavailable)
}

// serve runs Handler over st on a real unix socket and returns a Remote
// client of it.
func serve(t *testing.T, st Store) Remote {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	limits := alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100}
	srv := &http.Server{Handler: Handler(Local{
		Store:   st,
		Domains: []string{"tempalias.test"},
		Limits:  func() alias.Limits { return limits },
		Now:     time.Now,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return NewRemote(sock)
}

func openBolt(t *testing.T) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "tempalias.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The admin socket answers errors with the API's statuses
// (httpd.Status), and the client turns them back into what the command
// prints.
func TestSocketErrors(t *testing.T) {
	st := openBolt(t)
	remote := serve(t, st)
	created, err := remote.Create(alias.Request{Target: "someone@example.com"})
	if err != nil || created.Token == "" || !strings.HasSuffix(created.Alias, "@tempalias.test") {
		t.Fatalf("create: %+v, %v", created, err)
	}
	if got, err := remote.Show(created.ID); err != nil || got.ID != created.ID || got.Token != "" {
		t.Errorf("show: %+v, %v", got, err)
	}
	if _, err := remote.Show("nosuchid"); !errors.Is(err, alias.ErrNotFound) {
		t.Errorf("show of an unknown id: %v, want not found", err)
	}
	if err := remote.Revoke("nosuchid"); !errors.Is(err, alias.ErrNotFound) {
		t.Errorf("revoke of an unknown id: %v, want not found", err)
	}
	if _, err := remote.Create(alias.Request{Target: "nobody"}); err == nil || !strings.Contains(err.Error(), "target") {
		t.Errorf("create with a bad target: %v, want the reason naming target", err)
	}

	for _, c := range []struct {
		method, path, body string
		st                 Store
		want               int
	}{
		{"GET", "/aliases/nosuchid", "", st, http.StatusNotFound},
		{"POST", "/aliases", `{"target":"nobody"}`, st, http.StatusBadRequest},
		{"PATCH", "/aliases/" + created.ID, `{"max-usage":1000}`, st, http.StatusBadRequest},
		{"GET", "/aliases/" + created.ID, "", unreachable{st}, http.StatusServiceUnavailable},
		{"GET", "/aliases/" + created.ID, "", st, http.StatusOK},
	} {
		r := serve(t, c.st)
		req, _ := http.NewRequest(c.method, "http://admin"+c.path, strings.NewReader(c.body))
		res, err := r.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, res.StatusCode, c.want)
		}
	}
}
