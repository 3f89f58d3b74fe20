package httpd

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// View is an alias as the API (and the admin commands) show it.
type View struct {
	ID        string `json:"id"`
	Alias     string `json:"alias"`
	Target    string `json:"target"`
	Created   string `json:"created"`
	Expires   string `json:"expires"`
	MaxUsage  *int   `json:"max-usage"`
	Remaining *int   `json:"remaining"`
	Relayed   int    `json:"relayed"`
	Refused   int    `json:"refused"`  // mail refused since it was used up
	Lifetime  string `json:"lifetime"` // when it dies, as one sentence for people
	Status    string `json:"status"`   // active; pending until the target confirms; used-up
	// AllowFrom are the only senders it takes mail from ([]: any);
	// LockSender, whether the first delivered message's domain becomes
	// AllowFrom while that is empty.
	AllowFrom  []string `json:"allow-from"`
	LockSender bool     `json:"lock-sender"`
	Token      string   `json:"token,omitempty"`
}

func (a *API) view(al alias.Alias, token string) View {
	return NewView(al, a.cfg.Domains[0], token, a.cfg.Now())
}

// NewView shows al, an alias in domain, as it is at now (its lifetime
// sentence counts from then); token is shown only when given.
func NewView(al alias.Alias, domain, token string, now time.Time) View {
	v := View{
		ID:       al.ID,
		Alias:    al.ID + "@" + domain,
		Target:   al.Target,
		Created:  al.Created.UTC().Format(time.RFC3339),
		Expires:  al.Expires.UTC().Format(time.RFC3339),
		Relayed:  al.Used,
		Refused:  al.Refused,
		Lifetime: lifetimeSentence(al, now),
		Status:   "active",
		Token:    token,

		AllowFrom:  append([]string{}, al.AllowFrom...),
		LockSender: al.LockSender,
	}
	switch {
	case al.Unverified:
		v.Status = "pending"
	case al.UsedUp():
		v.Status = "used-up"
	}
	if rem, ok := al.Remaining(); ok {
		max := al.MaxUsage
		v.MaxUsage, v.Remaining = &max, &rem
	}
	return v
}

// create is POST /aliases. JSON gets JSON. A form gets the HTML page only
// from a browser (its Accept asks for text/html): curl's --data sends the
// form type too, and a script must get the contract's JSON 415, not a
// page.
func (a *API) create(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && mt == "application/x-www-form-urlencoded" && acceptsHTML(r) {
		a.createForm(w, r) // the web page without JavaScript
		return
	}
	if err != nil || mt != "application/json" {
		writeError(w, errContentType)
		return
	}
	body, apiErr := readBody(w, r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	req, err := decodeCreate(body)
	if err != nil {
		writeError(w, invalid(err.Error()))
		return
	}
	created, token, apiErr := a.createAlias(w, r, req)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	w.Header().Set("Location", "/aliases/"+created.ID)
	writeJSON(w, http.StatusCreated, a.view(created, token))
}

// createAlias checks req, applies the per-client and per-target limits
// and stores the alias, pending if its target must confirm first. The
// per-client limit counts only valid requests, so a typo costs nothing.
func (a *API) createAlias(w http.ResponseWriter, r *http.Request, req alias.Request) (alias.Alias, string, *apiError) {
	now := a.cfg.Now()
	lim := a.limits.Load()
	spec, err := lim.request.Check(req, a.cfg.Domains, now)
	if err != nil {
		var inv *alias.InvalidError
		if errors.As(err, &inv) {
			return alias.Alias{}, "", invalid(fmt.Sprintf("%s %s.", inv.Field, inv.Reason))
		}
		return alias.Alias{}, "", invalid("The request is not valid.")
	}
	spec.MaxLive = a.cfg.AliasesPerTarget
	client, ok := a.clientAddr(r)
	if !ok {
		a.cfg.Logger.Warn("creation refused: a trusted proxy's X-Forwarded-For names no address", "proxy", parseHostAddr(r.RemoteAddr).String())
		return alias.Alias{}, "", errUnknownClient
	}
	// The cheap local limit first, so a flood costs no DNS look-ups.
	if lim.perClient != nil && lim.perClient.OnLimit(w, r, clientKey(client)) {
		return alias.Alias{}, "", errRateLimited
	}
	if a.cfg.Blocklist != nil {
		if zone, listed := a.cfg.Blocklist.Listed(r.Context(), client); listed {
			a.cfg.Logger.Info("creation refused: client listed", "remote", client.String(), "zone", zone)
			return alias.Alias{}, "", errBlocked
		}
	}
	// The per-target limits are the store's: counted in the creating
	// transaction, on every host alike.
	opts := []store.CreateOption{store.CreationsPerDay(a.cfg.CreationsPerTargetPerDay)}
	if a.cfg.Verify != nil {
		verified, err := a.store.TargetVerified(r.Context(), spec.Target, now)
		if err != nil {
			return alias.Alias{}, "", a.storeError(w, "create alias", err)
		}
		if !verified {
			return a.createPending(w, r, spec, now, opts)
		}
	}
	c, err := a.store.Create(r.Context(), spec, now, opts...)
	if apiErr := a.createRefused(w, err, now); apiErr != nil {
		return alias.Alias{}, "", apiErr
	}
	if err != nil {
		return alias.Alias{}, "", a.storeError(w, "create alias", err)
	}
	a.cfg.Metrics.AliasesCreated.Inc()
	return c.Alias, c.Token, nil
}

// storeError answers a store failure as Status maps it: 404 for an
// alias that is not there, 400 for an invalid change, 503 unavailable
// when the store cannot be reached (the client may retry), else 500 with
// a log line.
func (a *API) storeError(w http.ResponseWriter, op string, err error) *apiError {
	switch Status(err) {
	case http.StatusNotFound:
		return errNotFound
	case http.StatusBadRequest:
		var inv *alias.InvalidError
		if errors.As(err, &inv) {
			return invalid(fmt.Sprintf("%s %s.", inv.Field, inv.Reason))
		}
	case http.StatusServiceUnavailable:
		a.cfg.Logger.Warn(op, "err", err)
		w.Header().Set("Retry-After", retryUnavailable)
		return errUnavailable
	}
	a.cfg.Logger.Error(op, "err", err)
	return errServer
}

// createRefused answers a creation the store refused for one of the
// per-target limits it counts, and is nil for any other outcome.
func (a *API) createRefused(w http.ResponseWriter, err error, now time.Time) *apiError {
	switch {
	case errors.Is(err, store.ErrTargetFull):
		w.Header().Set("Retry-After", "3600")
		return &apiError{http.StatusTooManyRequests, "rate-limited",
			fmt.Sprintf("This address already has %d live aliases, the most allowed; revoke one or wait for one to expire.", a.cfg.AliasesPerTarget)}
	case errors.Is(err, store.ErrCreationsPerDay):
		retryTomorrow(w, now)
		return &apiError{http.StatusTooManyRequests, "rate-limited", "Too many aliases were created for this address today; try again tomorrow."}
	case errors.Is(err, store.ErrConfirmationsPerDay):
		retryTomorrow(w, now)
		return &apiError{http.StatusTooManyRequests, "rate-limited",
			"Too many confirmation messages went to this address today; confirm one of them, or try again tomorrow."}
	}
	return nil
}

// retryTomorrow sets Retry-After to the start of the store's next day
// (midnight UTC), when the daily counts start again.
func retryTomorrow(w http.ResponseWriter, now time.Time) {
	secs := (store.NextDay(now).Sub(now) + time.Second - 1) / time.Second // rounded up
	w.Header().Set("Retry-After", strconv.FormatInt(max(int64(secs), 1), 10))
}

// get is GET /aliases/{id}.
func (a *API) get(w http.ResponseWriter, r *http.Request) {
	al, err := a.store.Authorized(r.Context(), chi.URLParam(r, "id"), bearer(r), a.cfg.Now())
	if err != nil {
		a.lookupError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.view(al, ""))
}

// readBody reads a JSON request's body, at most MaxBodyBytes of it.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errTooLarge
		}
		return nil, invalid("The request body could not be read.")
	}
	return body, nil
}

// change is PATCH /aliases/{id}: new days, max-usage or allow-from,
// decoded as strictly as a creation and decided by the store in one
// transaction with the uses it is checked against.
func (a *API) change(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, errContentType)
		return
	}
	body, apiErr := readBody(w, r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	req, err := decodeChange(body)
	if err != nil {
		writeError(w, invalid(err.Error()))
		return
	}
	now := a.cfg.Now()
	c, err := a.limits.Load().request.CheckChange(req, now)
	if err == nil {
		var al alias.Alias
		al, err = a.store.Change(r.Context(), chi.URLParam(r, "id"), bearer(r), c, now)
		if err == nil {
			writeJSON(w, http.StatusOK, a.view(al, ""))
			return
		}
	}
	a.lookupError(w, err)
}

// revoke is DELETE /aliases/{id}.
func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	if err := a.store.Revoke(r.Context(), chi.URLParam(r, "id"), bearer(r), a.cfg.Now()); err != nil {
		a.lookupError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// lookupError answers a failed look-up or change. Unknown, dead and
// wrong-token all arrive here as the store's not-found and leave as the
// same 404.
func (a *API) lookupError(w http.ResponseWriter, err error) {
	writeError(w, a.storeError(w, "alias lookup", err))
}

// acceptsHTML reports whether the request's Accept names text/html with a
// weight above zero, as every browser's navigation does. A bare */* (curl,
// most libraries) does not count: it takes anything, so it gets JSON.
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(part)
			if err != nil || mt != "text/html" {
				continue
			}
			if q, ok := params["q"]; ok {
				if w, err := strconv.ParseFloat(q, 64); err != nil || w <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
