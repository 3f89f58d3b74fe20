package smtpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// refusal reasons in the transaction's log line. An unknown alias and a
// dead one (expired, used up, revoked, pending) are one reason, as they
// are one reply: the log is no record of which ids ever existed.
// "sender-not-allowed" is an alias whose allow-from does not take the
// sender: the operator may see it, the client's reply does not say it.
const (
	reasonUnknown    = "unknown-or-dead"
	reasonSender     = "sender-not-allowed"
	reasonForeign    = "foreign-domain"
	reasonBadAddress = "bad-address"
	reasonBusy       = "busy"
	reasonRate       = "rate-limited"
	reasonOneTarget  = "one-target"
	reasonUpstream   = "upstream"
	reasonShutdown   = "shutting-down"
	reasonLocal      = "local-error"
)

// refusalReason names why Rcpt refused a recipient with err.
func refusalReason(err error) string {
	var ue *upstreamError
	switch {
	case errors.Is(err, errSenderNotAllowed):
		return reasonSender
	case errors.Is(err, errNoSuchUser):
		return reasonUnknown
	case errors.Is(err, errRelayDenied):
		return reasonForeign
	case errors.Is(err, errBadRcpt):
		return reasonBadAddress
	case errors.Is(err, errAliasBusy):
		return reasonBusy
	case errors.Is(err, errAliasRate):
		return reasonRate
	case errors.Is(err, errOneTarget):
		return reasonOneTarget
	case errors.As(err, &ue):
		return reasonUpstream
	case errors.Is(err, errShuttingDown):
		return reasonShutdown
	}
	return reasonLocal
}

// maxLogged bounds each client- or smarthost-supplied string in a log
// line.
const maxLogged = 256

// maxRefusalsLogged bounds the refused recipients a transaction's log
// line names; it counts the others (refused_more). A client may name a
// busy alias for as long as the transaction lasts.
const maxRefusalsLogged = 32

// rcptRefusal is one refused recipient as the operator sees it: the
// address the client named, split at its last @ (whatever it was, even
// unparseable), why, the code the client got, and for an upstream refusal
// what the smarthost said, which the client never sees.
type rcptRefusal struct {
	Local    string `json:"local"`
	Domain   string `json:"domain"`
	Reason   string `json:"reason"`
	Code     int    `json:"code"`
	Upstream string `json:"upstream,omitempty"`
}

func refusedRcpt(to string, err error, code int) rcptRefusal {
	r := rcptRefusal{Local: to, Reason: refusalReason(err), Code: code}
	if at := strings.LastIndexByte(to, '@'); at >= 0 {
		r.Local, r.Domain = to[:at], to[at+1:]
	}
	r.Local, r.Domain = clip(r.Local), clip(r.Domain)
	var ue *upstreamError
	if errors.As(err, &ue) {
		r.Upstream = upstreamText(ue)
	}
	return r
}

// upstreamText is what the smarthost said at a stage (code, enhanced code
// and text), or how talking to it failed.
func upstreamText(ue *upstreamError) string {
	var se *smtp.SMTPError
	if !errors.As(ue.err, &se) {
		return clip(ue.stage + ": " + ue.err.Error())
	}
	msg := fmt.Sprintf("%s: %d", ue.stage, se.Code)
	if e := se.EnhancedCode; e[0] > 0 {
		msg += fmt.Sprintf(" %d.%d.%d", e[0], e[1], e[2])
	}
	return clip(msg + " " + se.Message)
}

func clip(s string) string {
	if len(s) <= maxLogged {
		return s
	}
	n := maxLogged
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// refusals are a transaction's refused recipients. They log as a list of
// objects with the JSON handler and as one line of text with the text
// handler: "local@domain reason code (upstream)" for each, comma-separated.
type refusals []rcptRefusal

func (rs refusals) MarshalJSON() ([]byte, error) {
	if rs == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]rcptRefusal(rs))
}

func (rs refusals) MarshalText() ([]byte, error) {
	n := 0
	for _, r := range rs {
		n += len(r.Local) + len(r.Domain) + len(r.Reason) + len(r.Upstream) + len("@  550, ()")
	}
	b := make([]byte, 0, n)
	for i, r := range rs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, r.Local...)
		b = append(b, '@')
		b = append(b, r.Domain...)
		b = append(b, ' ')
		b = append(b, r.Reason...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(r.Code), 10)
		if r.Upstream != "" {
			b = append(b, " ("...)
			b = append(b, r.Upstream...)
			b = append(b, ')')
		}
	}
	return b, nil
}
