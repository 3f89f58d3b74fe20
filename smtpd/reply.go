package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/store"
)

// refusal is a reply this package decided on. Every error a session
// method returns passes through classify, the one place where errors
// become replies: go-smtp sends the text of any error that is not an
// *smtp.SMTPError to the client, and that text may hold file paths,
// addresses of the smarthost or Go error chains.
type refusal struct {
	code  int
	enh   smtp.EnhancedCode
	msg   string
	bad   bool // a refused recipient: counts towards MaxBadRecipients
	close bool // the connection cannot usefully go on: hang up after the reply
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.code, r.enh[0], r.enh[1], r.enh[2], r.msg)
}

// line is r as a reply go-smtp does not send (at connect, at shutdown),
// naming this host as a greeting does (rfc 5321:4.2).
func (r *refusal) line(host string) string {
	return fmt.Sprintf("%d %d.%d.%d %s %s\r\n", r.code, r.enh[0], r.enh[1], r.enh[2], host, r.msg)
}

var (
	errBadSender = &refusal{code: 553, enh: smtp.EnhancedCode{5, 1, 7}, msg: "Sender address not accepted"}
	// rfc 5321:3.6.2: never an open relay.
	errRelayDenied = &refusal{code: 550, enh: smtp.EnhancedCode{5, 7, 1}, msg: "Relaying denied", bad: true}
	errBadRcpt     = &refusal{code: 553, enh: smtp.EnhancedCode{5, 1, 3}, msg: "Recipient address not accepted", bad: true}
	// One reply for unknown, expired, used-up and revoked aliases, so that
	// the server is no oracle for which ids exist or existed.
	errNoSuchUser = &refusal{code: 550, enh: smtp.EnhancedCode{5, 1, 1}, msg: "No such recipient", bad: true}
	// An alias whose allow-from does not take the envelope sender gets
	// the very same reply (it wraps errNoSuchUser); only the log line
	// tells them apart.
	errSenderNotAllowed = fmt.Errorf("%w (sender not allowed)", errNoSuchUser)
	// The alias is alive but every remaining use is reserved by
	// transactions still under way. Those may yet fail and be refunded,
	// so a 5xx would bounce mail that could well be delivered a minute
	// later; 450 makes the sender retry, and if the other transactions did
	// deliver, the retry gets the 550 5.1.1 of a used-up alias.
	errAliasBusy  = &refusal{code: 450, enh: smtp.EnhancedCode{4, 2, 1}, msg: "Recipient busy, try again later"}
	errTooManyBad = &refusal{code: 421, enh: smtp.EnhancedCode{4, 7, 0}, msg: "Too many refused recipients, closing connection", close: true}
	// The alias relayed MaxMessagesPerAliasHour within the hour; rfc
	// 3463:3.8 X.7.1 "delivery not authorized" is as close as it gets.
	errAliasRate = &refusal{code: 450, enh: smtp.EnhancedCode{4, 7, 1}, msg: "Recipient receives too much mail, try again later"}
	// With RewriteFrom every upstream transaction has one target, so that
	// no target sees another one's alias; rfc 5321:4.5.3.1.10 has the
	// client send the remaining recipients in a new transaction.
	errOneTarget = &refusal{code: 452, enh: smtp.EnhancedCode{4, 5, 3}, msg: "Too many recipients, send the rest in a new transaction"}
	// Refused instead of the banner (rfc 5321:3.1, 421 and close).
	errTooManyConns       = &refusal{code: 421, enh: smtp.EnhancedCode{4, 7, 0}, msg: "Too many connections, try again later", close: true}
	errTooManyConnsClient = &refusal{code: 421, enh: smtp.EnhancedCode{4, 7, 0}, msg: "Too many connections from your address, try again later", close: true}
	errClientBlocked      = &refusal{code: 421, enh: smtp.EnhancedCode{4, 7, 0}, msg: "Too many refused recipients from your address, try again later", close: true}
	// rfc 9228:4: a Delivered-To for one of our aliases means the message
	// went round to us again.
	errDeliveredTo = &refusal{code: 554, enh: smtp.EnhancedCode{5, 4, 6}, msg: "Message already delivered to this recipient, mail loop"}
	// With RewriteFrom the From field must be seen whole; a header line
	// (rfc 5322:2.1.1 allows 998 octets) or From field past our bounds
	// cannot be.
	errHeaderTooLong = &refusal{code: 554, enh: smtp.EnhancedCode{5, 6, 0}, msg: "Header field too long"}

	errNestedMail = &refusal{code: 503, enh: smtp.EnhancedCode{5, 5, 1}, msg: "Nested MAIL command"}
	errNoMail     = &refusal{code: 503, enh: smtp.EnhancedCode{5, 5, 1}, msg: "MAIL first"}
	// rfc 5321:3.8
	errShuttingDown = &refusal{code: 421, enh: smtp.EnhancedCode{4, 3, 2}, msg: "Service shutting down", close: true}
	// rfc 5321:2.3.8: CR and LF only ever as CRLF. A client that sends
	// them bare may also disagree with us about where the message ends
	// (SMTP smuggling), so the connection is not trusted further.
	errBareLF = &refusal{code: 554, enh: smtp.EnhancedCode{5, 6, 0}, msg: "Bare LF in message, see RFC 5321 2.3.8", close: true}
	errBareCR = &refusal{code: 554, enh: smtp.EnhancedCode{5, 6, 0}, msg: "Bare CR in message, see RFC 5321 2.3.8", close: true}
	errFolded = &refusal{code: 554, enh: smtp.EnhancedCode{5, 6, 0}, msg: "Message starts with a folded header line"}
	// rfc 5321:6.3 loop detection.
	errLoop = &refusal{code: 554, enh: smtp.EnhancedCode{5, 4, 6}, msg: "Too many Received headers, mail loop"}
	// rfc 5321:4.5.3.1.6; go-smtp stops reading the connection at an
	// over-long line, so it cannot go on.
	errLongLine  = &refusal{code: 554, enh: smtp.EnhancedCode{5, 6, 0}, msg: "Line too long", close: true}
	errTxTimeout = &refusal{code: 421, enh: smtp.EnhancedCode{4, 4, 2}, msg: "Transaction took too long, closing connection", close: true}
	errTimeout   = &refusal{code: 421, enh: smtp.EnhancedCode{4, 4, 2}, msg: "Timeout, closing connection", close: true}
	errBroken    = &refusal{code: 421, enh: smtp.EnhancedCode{4, 4, 2}, msg: "Connection error, closing connection", close: true}
	errTooBig    = &refusal{code: 552, enh: smtp.EnhancedCode{5, 3, 4}, msg: "Message too big"} // rfc 1870
	errLocal     = &refusal{code: 451, enh: smtp.EnhancedCode{4, 3, 0}, msg: "Local error, try again later"}
	// The alias store cannot be reached (an etcd cluster without quorum):
	// nothing is refused for it, the sender retries. rfc 3463:3.5 X.4.3 is
	// a directory server failure.
	errStoreUnavailable = &refusal{code: 451, enh: smtp.EnhancedCode{4, 4, 3}, msg: "Alias directory unavailable, try again later"}

	errUnreachable     = &refusal{code: 451, enh: smtp.EnhancedCode{4, 4, 1}, msg: "Next hop unreachable, try again later"}
	errUpstreamTimeout = &refusal{code: 451, enh: smtp.EnhancedCode{4, 4, 2}, msg: "Next hop timed out, try again later"}
	errUpstreamBroken  = &refusal{code: 451, enh: smtp.EnhancedCode{4, 4, 2}, msg: "Next hop connection failed, try again later"}
)

// blockedBy is the greeting for a client a blocklist lists, naming the
// zone so that a legitimate sender knows whom to ask.
func blockedBy(ip netip.Addr, zone string) *refusal {
	zone = strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return r
		}
		return -1
	}, zone)
	return &refusal{code: 554, enh: smtp.EnhancedCode{5, 7, 1}, msg: "Service unavailable; client [" + ip.String() + "] blocked using " + zone, close: true}
}

// rcptResult is the result label of metrics.Rcpt for what Rcpt decided.
func rcptResult(err error) string {
	switch {
	case err == nil:
		return "accepted"
	case errors.Is(err, errNoSuchUser):
		return "unknown"
	case errors.Is(err, errAliasBusy), errors.Is(err, errAliasRate), errors.Is(err, errOneTarget):
		return "busy"
	case errors.Is(err, errRelayDenied):
		return "foreign"
	case errors.Is(err, errBadRcpt):
		return "invalid"
	}
	if _, ok := errors.AsType[*upstreamError](err); ok {
		return "upstream"
	}
	return "error"
}

// messageResult is the result label of metrics.Messages for a reply code.
func messageResult(code int) string {
	switch code / 100 {
	case 2:
		return "relayed"
	case 4:
		return "temporary"
	}
	return "permanent"
}

// upstreamError is a failure talking to the smarthost at stage.
type upstreamError struct {
	stage string // "connect", "MAIL", "RCPT", "DATA", "end of DATA"
	err   error
}

func (e *upstreamError) Error() string { return "smarthost " + e.stage + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// clientError is a failure reading the message from the client.
type clientError struct{ err error }

func (e *clientError) Error() string { return "reading message: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// What clientConn.Read returns for a failed read while a message is
// relayed: errTimeout, errBroken and errBareCR as go-smtp sends them,
// compared by identity in classify.
var (
	errReadTimeout = errTimeout.smtpError()
	errReadBroken  = errBroken.smtpError()
	errReadBareCR  = errBareCR.smtpError()
)

// smtpError is r as go-smtp sends it.
func (r *refusal) smtpError() *smtp.SMTPError {
	return &smtp.SMTPError{Code: r.code, EnhancedCode: r.enh, Message: r.msg}
}

// classify maps any error to the reply the client gets; internal is true
// when the error is not a decision of ours and deserves a log line.
// Upstream replies keep their class and codes, never their text: the
// smarthost may name the alias's target, which is not the sender's
// business. Anything unforeseen is a 4xx, so the sender keeps the message.
func classify(err error) (r *refusal, internal bool) {
	if ref, ok := errors.AsType[*refusal](err); ok {
		return ref, false
	}
	if _, ok := errors.AsType[*clientError](err); ok {
		se, isSMTP := errors.AsType[*smtp.SMTPError](err)
		switch {
		case isSMTP && se.Code == smtp.ErrDataTooLarge.Code:
			return errTooBig, false
		case errors.Is(err, smtp.ErrTooLongLine):
			return errLongLine, false
		case errors.Is(err, errReadBareCR):
			return errBareCR, false
		case errors.Is(err, errReadTimeout), isTimeout(err):
			return errTimeout, false
		}
		return errBroken, false
	}
	if ue, ok := errors.AsType[*upstreamError](err); ok {
		se, isSMTP := errors.AsType[*smtp.SMTPError](err)
		switch {
		case ue.stage == "connect":
			return errUnreachable, true
		case isSMTP && se.Code >= 500 && se.Code <= 599:
			enh := se.EnhancedCode
			if enh[0] != 5 {
				enh = smtp.EnhancedCode{5, 0, 0}
			}
			return &refusal{code: se.Code, enh: enh, msg: "Refused by the next hop"}, false
		case isSMTP && se.Code >= 400 && se.Code <= 499:
			code, enh := se.Code, se.EnhancedCode
			if code == 421 { // the smarthost hangs up, we do not
				code = 451
			}
			if enh[0] != 4 {
				enh = smtp.EnhancedCode{4, 0, 0}
			}
			return &refusal{code: code, enh: enh, msg: "Deferred by the next hop, try again later"}, false
		case isTimeout(err):
			return errUpstreamTimeout, true
		}
		return errUpstreamBroken, true
	}
	// A store call cut off by its deadline (storeCtx) is an unavailable
	// store too, whichever engine.
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return errStoreUnavailable, true
	}
	return errLocal, true
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
