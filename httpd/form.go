package httpd

import (
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// The web page's form posts here without JavaScript, as
// application/x-www-form-urlencoded, and gets an HTML page back. The
// checks and the rate limit are the JSON API's (createAlias); only the
// decoding and the answer differ.

// formOrigin refuses cross-site form posts: unlike JSON, a urlencoded POST
// needs no CORS preflight, so any site could otherwise make its visitors
// create aliases.
var formOrigin = http.NewCrossOriginProtection()

// createForm is POST /aliases with a urlencoded body.
func (a *API) createForm(w http.ResponseWriter, r *http.Request) {
	if err := formOrigin.Check(r); err != nil {
		a.formError(w, &apiError{http.StatusForbidden, "forbidden", "This form can only be sent from the tempalias page itself."})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.formError(w, errTooLarge)
			return
		}
		a.formError(w, invalid("The form could not be read."))
		return
	}
	req, err := decodeForm(string(body))
	if err != nil {
		a.formError(w, invalid(err.Error()))
		return
	}
	created, token, apiErr := a.createAlias(w, r, req)
	if apiErr != nil {
		a.formError(w, apiErr)
		return
	}
	v := a.view(created, token)
	w.Header().Set("Location", "/aliases/"+created.ID)
	a.formPage(w, http.StatusCreated, "created", formResult{
		Alias:    v.Alias,
		ID:       v.ID,
		Token:    token,
		Lifetime: v.Lifetime,
		Pending:  created.Unverified,
	})
}

// decodeForm reads target, days and max-usage; an empty number field is
// absent. Other fields are ignored: browsers send what the page holds.
func decodeForm(body string) (alias.Request, error) {
	vals, err := url.ParseQuery(body)
	if err != nil {
		return alias.Request{}, sentence("The form data is garbled.")
	}
	var req alias.Request
	for key, vs := range vals {
		if key != "target" && key != "days" && key != "max-usage" {
			continue
		}
		if len(vs) > 1 {
			return alias.Request{}, problem("The field %q is given twice.", key)
		}
		v := strings.TrimSpace(vs[0])
		switch key {
		case "target":
			req.Target = v
		case "days", "max-usage":
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return alias.Request{}, problem("%s must be a whole number, like 3.", key)
			}
			if key == "days" {
				req.Days = &n
			} else {
				req.MaxUsage = &n
			}
		}
	}
	return req, nil
}

// lifetimeSentence is the sentence saying when al dies, counted from
// now: a change of days makes it valid for that many days from now (not
// from its creation), and the messages are those it still relays.
func lifetimeSentence(al alias.Alias, now time.Time) string {
	s := "It stops working after "
	if left := al.Expires.Sub(now); left < 24*time.Hour {
		s += countOf(max(int((left+time.Hour-1)/time.Hour), 1), "hour", "hours")
	} else {
		s += countOf(int((left+12*time.Hour)/(24*time.Hour)), "day", "days")
	}
	if rem, ok := al.Remaining(); ok {
		switch {
		case al.UsedUp():
			return "It has relayed all the messages it was made for."
		case al.Used+al.Pending == 0:
			s += " or " + countOf(rem, "message", "messages") + ", whichever comes first"
		case rem > 0:
			s += " or " + countOf(rem, "more message", "more messages") + ", whichever comes first"
		}
	}
	return s + "."
}

func countOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

type formResult struct {
	Alias, ID, Token, Lifetime string
	Pending                    bool
}

// formError is the one place form errors become responses: the same
// status and sentence as the JSON API, as a page.
func (a *API) formError(w http.ResponseWriter, e *apiError) {
	a.formPage(w, e.status, "error", e)
}

func (a *API) formPage(w http.ResponseWriter, status int, name string, data any) {
	h := w.Header()
	setPageHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // the page holds the token
	w.WriteHeader(status)
	if err := formPages.ExecuteTemplate(w, name, data); err != nil {
		a.cfg.Logger.Error("form page", "err", err)
	}
}

var formPages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}} — tempalias</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header class="top"><h1><a href="/">tempalias</a></h1></header>
<main>
{{end}}
{{define "foot"}}</main>
</body>
</html>
{{end}}
{{define "created"}}{{template "head" "Your new alias"}}<div class="result">
  <h2>Your new alias</h2>
  <p class="alias-line"><output id="alias" class="alias">{{.Alias}}</output></p>
  <p id="lifetime" class="lifetime">{{.Lifetime}}</p>
  {{if .Pending}}<p id="pending" class="message">Check your inbox: we sent a confirmation link to your address. The alias refuses mail until you confirm.</p>{{end}}
  <div class="token-box">
    <p><strong>Management token</strong> — shown only this once. Keep it if you may want to end the alias early.</p>
    <p><code id="token" class="token">{{.Token}}</code></p>
    <p class="help">To give it more time or more messages, send <code>PATCH /aliases/{{.ID}}</code> with JSON such as <code>{"days": 7, "max-usage": 20}</code>; to revoke it, <code>DELETE /aliases/{{.ID}}</code>; both with the header <code>Authorization: Bearer {{.Token}}</code>. Or use this page with JavaScript on: it can do both, and remember the alias in this browser.</p>
  </div>
</div>
<p><a href="/">Make another alias</a></p>
{{template "foot"}}{{end}}
{{define "error"}}{{template "head" "Could not create the alias"}}<div class="message error" id="error">
  <h2>Could not create the alias</h2>
  <p id="description">{{.Description}}</p>
</div>
<p>Use your browser’s Back button to correct the form, or <a href="/">start again</a>.</p>
{{template "foot"}}{{end}}
`))
