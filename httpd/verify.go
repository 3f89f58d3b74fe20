package httpd

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// Target verification keeps a public instance from being used to mail-bomb
// someone through aliases they never asked for. An alias for a target that
// has not confirmed yet is created pending: it refuses mail like an
// unknown alias, and one message goes to the target with a link. The link
// opens a page whose button POSTs the confirmation, so mail scanners that
// follow links confirm nothing. A confirmed target is remembered (as a
// keyed hash) for Verify.Remember; its later aliases are active at once.

// Verify configures target verification.
type Verify struct {
	Mailer               Mailer
	Remember             time.Duration // how long a confirmed target stays confirmed
	PublicURL            string        // where the confirmation link points, e.g. https://tempalias.example
	MailsPerTargetPerDay int           // confirmation mails per target a day; 0: no limit
}

// Mailer sends the confirmation message.
type Mailer interface {
	SendConfirmation(ctx context.Context, c Confirmation) error
}

// Confirmation is what the confirmation message says.
type Confirmation struct {
	Target  string
	Alias   string // the pending alias's address
	Link    string // the page that confirms
	Expires time.Time
}

// createPending stores a pending alias, with opts, and mails its target
// the link. If the mail cannot be sent the alias is withdrawn again:
// nobody could ever confirm it.
func (a *API) createPending(w http.ResponseWriter, r *http.Request, spec alias.Spec, now time.Time, opts []store.CreateOption) (alias.Alias, string, *apiError) {
	v := a.cfg.Verify
	opts = append(opts, store.Pending(), store.ConfirmationsPerDay(v.MailsPerTargetPerDay))
	c, err := a.store.Create(r.Context(), spec, now, opts...)
	if apiErr := a.createRefused(w, err, now); apiErr != nil {
		return alias.Alias{}, "", apiErr
	}
	if err != nil {
		return alias.Alias{}, "", a.storeError(w, "create pending alias", err)
	}
	created, token, confirm := c.Alias, c.Token, c.Confirm
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	err = v.Mailer.SendConfirmation(ctx, Confirmation{
		Target:  created.Target,
		Alias:   created.ID + "@" + a.cfg.Domains[0],
		Link:    strings.TrimSuffix(v.PublicURL, "/") + "/confirm/" + confirm,
		Expires: created.Expires,
	})
	if err != nil {
		a.cfg.Logger.Error("send confirmation", "alias", created.ID, "err", err)
		// Nothing was sent, so nothing was made: withdrawn with the
		// token just made (the holder's own right, used before the
		// holder ever saw it), which gives the target's day back the
		// creation and the confirmation mail it counted.
		if err := a.store.Withdraw(context.WithoutCancel(r.Context()), created.ID, token, now); err != nil {
			a.cfg.Logger.Error("withdraw unconfirmable alias", "alias", created.ID, "err", err)
		}
		return alias.Alias{}, "", &apiError{http.StatusInternalServerError, "server-error",
			"The confirmation message could not be sent, so no alias was made; please try again later."}
	}
	a.cfg.Metrics.AliasesCreated.Inc()
	return created, token, nil
}

// confirmPage is GET /confirm/{token}: a page with the button, changing
// nothing, so that link-following scanners are harmless.
func (a *API) confirmPage(w http.ResponseWriter, r *http.Request) {
	a.formPage(w, http.StatusOK, "confirm", struct{ Action string }{"/confirm/" + chi.URLParam(r, "token")})
}

// confirm is POST /confirm/{token}.
func (a *API) confirm(w http.ResponseWriter, r *http.Request) {
	if err := formOrigin.Check(r); err != nil {
		a.formPage(w, http.StatusForbidden, "confirm-failed", "This confirmation can only be sent from its own page.")
		return
	}
	al, err := a.store.Confirm(r.Context(), chi.URLParam(r, "token"), a.cfg.Now(), a.cfg.Verify.Remember)
	if errors.Is(err, store.ErrNotFound) {
		a.formPage(w, http.StatusNotFound, "confirm-failed", "This link is not valid any more: it was used already, or its alias expired.")
		return
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, store.ErrUnavailable) {
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", retryUnavailable)
		}
		a.cfg.Logger.Error("confirm", "err", err)
		a.formPage(w, status, "confirm-failed", "Something went wrong on our side; please try the link again later.")
		return
	}
	a.cfg.Logger.Info("target confirmed", "alias", al.ID)
	a.formPage(w, http.StatusOK, "confirmed", struct{ Alias, Lifetime string }{al.ID + "@" + a.cfg.Domains[0], lifetimeSentence(al, a.cfg.Now())})
}

func init() {
	template.Must(formPages.Parse(`
{{define "confirm"}}{{template "head" "Confirm forwarding"}}<div class="result">
  <h2>Forward mail to you?</h2>
  <p>Someone asked tempalias to forward mail for a temporary alias to your address. If that was you, confirm below; if not, close this page and nothing will be forwarded.</p>
  <form method="post" action="{{.Action}}"><button type="submit" id="confirm">Yes, forward mail to me</button></form>
</div>
{{template "foot"}}{{end}}
{{define "confirmed"}}{{template "head" "Confirmed"}}<div class="result">
  <h2>Confirmed</h2>
  <p>Mail to <output id="alias" class="alias">{{.Alias}}</output> now reaches you.</p>
  <p class="lifetime">{{.Lifetime}}</p>
</div>
{{template "foot"}}{{end}}
{{define "confirm-failed"}}{{template "head" "Not confirmed"}}<div class="message error" id="error">
  <h2>Not confirmed</h2>
  <p id="description">{{.}}</p>
</div>
{{template "foot"}}{{end}}
`))
}
