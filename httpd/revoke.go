package httpd

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Every message relayed for one alias carries its revoke link
// (X-Tempalias-Revoke): /revoke/{id}/{mac}, mac being alias.RevokeMAC of
// the id under the store's link key, so a link works for that alias
// only, cannot be forged, and holds after restarts and on every host. Its
// GET shows a page with a button and changes nothing, since mail scanners
// follow links; the button POSTs, same-origin only, as the confirmation
// page does. A dead alias, an unknown id and a wrong mac all get the one
// "already gone" page: the link is no oracle.

// RevokeLink is the revoke link of alias id at publicURL, under key.
func RevokeLink(publicURL string, key []byte, id string) string {
	return strings.TrimSuffix(publicURL, "/") + "/revoke/" + id + "/" + alias.RevokeMAC(key, id)
}

// revokeTarget is the alias a revoke link names, if its mac holds.
func (a *API) revokeTarget(r *http.Request) (id string, ok bool) {
	id = strings.ToLower(chi.URLParam(r, "id"))
	return id, alias.ValidID(id) && alias.RevokeMACValid(a.cfg.LinkKey, id, chi.URLParam(r, "mac"))
}

// revokePage is GET /revoke/{id}/{mac}.
func (a *API) revokePage(w http.ResponseWriter, r *http.Request) {
	id, ok := a.revokeTarget(r)
	if !ok {
		a.formPage(w, http.StatusNotFound, "revoke-gone", nil)
		return
	}
	al, err := a.store.Held(r.Context(), id, a.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		a.formPage(w, http.StatusNotFound, "revoke-gone", nil)
		return
	}
	if err != nil {
		a.revokeFailed(w, err)
		return
	}
	a.formPage(w, http.StatusOK, "revoke", struct{ Action, Alias, Lifetime string }{
		"/revoke/" + id + "/" + chi.URLParam(r, "mac"), al.ID + "@" + a.cfg.Domains[0], lifetimeSentence(al, a.cfg.Now())})
}

// revokeByLink is POST /revoke/{id}/{mac}: the page's button.
func (a *API) revokeByLink(w http.ResponseWriter, r *http.Request) {
	if err := formOrigin.Check(r); err != nil {
		a.formPage(w, http.StatusForbidden, "revoke-failed", "This button only works on its own page; open the link from the message again.")
		return
	}
	id, ok := a.revokeTarget(r)
	if !ok {
		a.formPage(w, http.StatusNotFound, "revoke-gone", nil)
		return
	}
	err := a.store.RevokeID(r.Context(), id, a.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		a.formPage(w, http.StatusNotFound, "revoke-gone", nil)
		return
	}
	if err != nil {
		a.revokeFailed(w, err)
		return
	}
	a.cfg.Logger.Info("alias revoked by its link", "alias", id)
	a.formPage(w, http.StatusOK, "revoked", id+"@"+a.cfg.Domains[0])
}

func (a *API) revokeFailed(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", retryUnavailable)
	}
	a.cfg.Logger.Error("revoke link", "err", err)
	a.formPage(w, status, "revoke-failed", "Something went wrong on our side; nothing was changed. Please try the link again later.")
}

func init() {
	template.Must(formPages.Parse(`
{{define "revoke"}}{{template "head" "Revoke alias"}}<div class="result">
  <h2>Revoke this alias?</h2>
  <p>Mail to <output id="alias" class="alias">{{.Alias}}</output> is forwarded to you. {{.Lifetime}}</p>
  <p>Revoked, it refuses all mail at once. This cannot be undone.</p>
  <form method="post" action="{{.Action}}"><button type="submit" id="revoke">Revoke it now</button></form>
</div>
{{template "foot"}}{{end}}
{{define "revoked"}}{{template "head" "Revoked"}}<div class="result">
  <h2>Revoked</h2>
  <p><output id="alias" class="alias">{{.}}</output> refuses all mail from now on.</p>
</div>
{{template "foot"}}{{end}}
{{define "revoke-gone"}}{{template "head" "Already gone"}}<div class="message" id="gone">
  <h2>Already gone</h2>
  <p id="description">This alias does not exist any more: it expired or was revoked. Nothing to do.</p>
</div>
{{template "foot"}}{{end}}
{{define "revoke-failed"}}{{template "head" "Not revoked"}}<div class="message error" id="error">
  <h2>Not revoked</h2>
  <p id="description">{{.}}</p>
</div>
{{template "foot"}}{{end}}
`))
}
