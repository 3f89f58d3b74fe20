package srs

import (
	"strings"
	"time"
)

// Forward rewrites the envelope sender of a message we relay into an address
// in our domain, made on the day of now:
//
//   - "" (the null sender, rfc 5321:4.5.5) stays "": a bounce must not cause
//     another bounce, so there is nowhere to send one.
//   - A sender in our domain or one of the LocalDomains is returned
//     unchanged; SPF already passes for it.
//   - An SRS0 address of another forwarder, SRS0xREST@host (x a separator),
//     becomes SRS1=HHHH=host=xREST@ourdomain, and an SRS1 address
//     SRS1=X=orighost=xREST@host becomes SRS1=HHHH=orighost=xREST@ourdomain:
//     bounces then skip us and the intermediate forwarders and go straight to
//     the first one, which alone can check its own hash. SRS1 addresses carry
//     no timestamp.
//   - Any other user@host becomes SRS0=HHHH=TT=host=user@ourdomain.
//
// The address is given without angle brackets. A sender with no '@', an
// empty local part or domain, more than one '@', '=' in the domain, or
// characters an SRS local part cannot carry unquoted (spaces, controls,
// quotes, backslashes) gives ErrMalformed.
func (r *Rewriter) Forward(sender string, now time.Time) (string, error) {
	if sender == "" {
		return "", nil
	}
	at := strings.IndexByte(sender, '@')
	if at < 0 {
		return "", malformed("no @ in sender")
	}
	user, host := sender[:at], sender[at+1:]
	switch {
	case user == "":
		return "", malformed("empty local part")
	case host == "":
		return "", malformed("empty domain")
	case strings.IndexByte(host, '@') >= 0:
		return "", malformed("more than one @ in sender")
	case strings.IndexByte(host, '=') >= 0:
		// The domain is a '='-separated field; it could not be parsed back.
		return "", malformed("'=' in domain")
	case !carriable(sender):
		return "", malformed("sender needs quoting")
	}
	if r.isLocal(host) {
		return sender, nil
	}

	if hasTag(user, '1') {
		// Only the first forwarder's host and its SRS0 tail are kept; the
		// previous forwarder's hash and domain are dropped.
		_, rest, _ := strings.Cut(user[5:], "=")
		origHost, tail, ok := strings.Cut(rest, "=")
		// libsrs2 also takes an empty host or a tail that is not an SRS0
		// tail, which would reverse into nonsense. Such a sender is not a
		// real SRS1 address; it falls through to be wrapped whole in SRS0,
		// which at least reverses to exactly what was sent.
		if ok && origHost != "" && tail != "" && isSep(tail[0]) {
			return r.srs1(origHost, tail), nil
		}
	} else if hasTag(user, '0') {
		return r.srs1(host, user[4:]), nil
	}

	ts := stamp(now)
	return "SRS0" + string(r.sep) + hash(r.keys[0], ts, host, user) + "=" + ts + "=" + host + "=" + user + "@" + r.domain, nil
}

// srs1 makes SRS1=HHHH=host=tail@ourdomain, where tail is an SRS0 address's
// local part without its "SRS0" tag (so it starts with a separator).
func (r *Rewriter) srs1(host, tail string) string {
	return "SRS1" + string(r.sep) + hash(r.keys[0], host, tail) + "=" + host + "=" + tail + "@" + r.domain
}
