package srs

import (
	"strings"
	"time"
)

// Reverse recovers the address a bounce to an SRS address must go to:
//
//   - SRS0=HHHH=TT=host=user@ourdomain gives user@host, if the hash matches
//     under one of the secrets and the timestamp TT is at most MaxAge old at
//     now (and not in the future).
//   - SRS1=HHHH=host=xREST@ourdomain gives SRS0xREST@host, the first
//     forwarder's address, if the hash matches; it has no timestamp.
//
// The hash is compared without regard to case, as some MTAs change the case
// of addresses; the recovered address keeps the case it arrived in. As in
// libsrs2 the domain part of addr is not looked at: the caller decides which
// recipients are ours.
//
// Errors: ErrNotSRS if addr does not start with SRS0 or SRS1 and a separator;
// ErrMalformed if a field is missing, empty or the timestamp is not two
// base32 characters; ErrBadHash; ErrExpired. The hash is checked before the
// timestamp, so ErrExpired is only reported for an address we did make.
func (r *Rewriter) Reverse(addr string, now time.Time) (string, error) {
	local, _, _ := strings.Cut(addr, "@")
	var isSRS1 bool
	switch {
	case hasTag(local, '1'):
		isSRS1 = true
	case hasTag(local, '0'):
	default:
		return "", ErrNotSRS
	}
	if !carriable(local) {
		return "", malformed("address needs quoting")
	}
	if isSRS1 {
		return r.reverse1(local[5:])
	}
	return r.reverse0(local[5:], now)
}

// reverse0 reverses the part of an SRS0 local part after "SRS0=":
// HHHH=TT=host=user.
func (r *Rewriter) reverse0(fields string, now time.Time) (string, error) {
	f, err := split(fields, "SRS0", "hash", "timestamp", "host", "user")
	if err != nil {
		return "", err
	}
	h, ts, host, user := f[0], f[1], f[2], f[3]
	then, ok := parseStamp(ts)
	if !ok {
		return "", malformed("bad timestamp in SRS0 address")
	}
	if !r.verify(h, ts, host, user) {
		return "", ErrBadHash
	}
	if !r.fresh(then, now) {
		return "", ErrExpired
	}
	return user + "@" + host, nil
}

// reverse1 reverses the part of an SRS1 local part after "SRS1=":
// HHHH=host=tail, where tail is the first forwarder's SRS0 local part
// without its tag.
func (r *Rewriter) reverse1(fields string) (string, error) {
	f, err := split(fields, "SRS1", "hash", "host", "user")
	if err != nil {
		return "", err
	}
	h, host, tail := f[0], f[1], f[2]
	if !r.verify(h, host, tail) {
		return "", ErrBadHash
	}
	return "SRS0" + tail + "@" + host, nil
}

// split cuts the fields of an SRS address of kind at "=", one for each of
// names, the last taking the rest; the hash and the last two (host and
// user) must not be empty.
func split(fields, kind string, names ...string) ([]string, error) {
	f := strings.SplitN(fields, "=", len(names))
	if f[0] == "" {
		return nil, malformed("no " + names[0] + " in " + kind + " address")
	}
	if len(f) < len(names) {
		return nil, malformed("no " + names[len(f)] + " in " + kind + " address")
	}
	if f[len(f)-2] == "" || f[len(f)-1] == "" {
		return nil, malformed("empty host or user in " + kind + " address")
	}
	return f, nil
}
