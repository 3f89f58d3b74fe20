// Package srs rewrites envelope senders with the Sender Rewriting Scheme,
// so that mail tempalias relays for a foreign sender still passes SPF at the
// receiver, and so that the bounces that come back can be routed to the
// original sender.
//
// Forward turns user@example.com into
//
//	SRS0=HHHH=TT=example.com=user@ourdomain
//
// an address in our own domain, where TT is the day it was made and HHHH an
// HMAC over the rest, so that nobody else can make our server relay mail by
// inventing such addresses. Reverse checks the HMAC and the age of such an
// address and gives back user@example.com. Senders that are already SRS0
// addresses of another forwarder become SRS1 addresses, which point back at
// that first forwarder rather than nesting.
//
// The format, hash and timestamp are those of libsrs2 as shipped (and fixed)
// in postsrsd, so that addresses made here and there interoperate; the
// postsrsd test vectors are in vectors_test.go. Where libsrs2 accepts input
// that yields an address nobody could parse back (no local part, '=' in the
// domain, quoting, spaces), this package refuses it with ErrMalformed
// instead.
//
// Time is always passed in: nothing here reads the clock.
package srs

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by Forward and Reverse, possibly wrapped with detail; test
// with errors.Is. Callers map them to SMTP replies.
var (
	// ErrNotSRS: the address is not an SRS address at all, so it should be
	// treated as an ordinary recipient.
	ErrNotSRS = errors.New("srs: not an SRS address")
	// ErrMalformed: the address is not one Forward can rewrite, or looks
	// like an SRS address but lacks a field or has a bad timestamp.
	ErrMalformed = errors.New("srs: malformed address")
	// ErrBadHash: the hash does not match under any of the secrets; the
	// address was not made by us (or was altered).
	ErrBadHash = errors.New("srs: hash invalid")
	// ErrExpired: the hash is genuine but the timestamp is older than
	// MaxAge, or from the future.
	ErrExpired = errors.New("srs: timestamp out of date")
)

const (
	defaultMaxAgeDays = 21   // libsrs2 srs_init
	timeSlots         = 1024 // two base32 characters of days
)

// Options tunes a Rewriter; the zero value gives libsrs2's defaults.
type Options struct {
	// Separator is the character after the SRS0/SRS1 tag: '=' (the
	// default), '+' or '-'. The separators between the other fields are
	// always '=', as in libsrs2. Reverse accepts all three regardless.
	Separator byte
	// MaxAge is how long an SRS0 address stays reversible. SRS timestamps
	// count whole days, so it must be a whole number of days between 1 and
	// 1023; zero means 21 days. An address made on day D reverses up to and
	// including day D+MaxAge.
	MaxAge time.Duration
	// LocalDomains are further domains of ours (besides the SRS domain)
	// whose senders need no rewriting and are passed through unchanged.
	LocalDomains []string
}

// Rewriter rewrites and reverses SRS addresses in one domain. It is
// immutable and safe for concurrent use.
type Rewriter struct {
	domain     string
	local      []string // domains left unchanged by Forward, domain first
	keys       [][]byte // keys[0] signs; every key verifies
	sep        byte
	maxAgeDays int
}

// New returns a Rewriter that makes addresses in domain, signed with
// secrets[0]. Every secret is accepted by Reverse, so a secret can be rotated
// by putting the new one first and keeping the old one until the addresses it
// signed have expired.
func New(domain string, secrets []string, opts Options) (*Rewriter, error) {
	if domain == "" || !carriable(domain) || strings.ContainsAny(domain, "@=") {
		return nil, fmt.Errorf("srs: invalid domain %q", domain)
	}
	if len(secrets) == 0 {
		return nil, errors.New("srs: no secrets")
	}
	r := &Rewriter{
		domain:     domain,
		local:      append([]string{domain}, opts.LocalDomains...),
		sep:        opts.Separator,
		maxAgeDays: defaultMaxAgeDays,
	}
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("srs: secret %d is empty", i)
		}
		r.keys = append(r.keys, []byte(s))
	}
	if r.sep == 0 {
		r.sep = '='
	}
	if !isSep(r.sep) {
		return nil, fmt.Errorf("srs: separator %q is not one of = + -", r.sep)
	}
	if opts.MaxAge != 0 {
		const day = 24 * time.Hour
		if opts.MaxAge%day != 0 || opts.MaxAge < day || opts.MaxAge >= timeSlots*day {
			return nil, fmt.Errorf("srs: max age %v is not a whole number of days from 1 to %d", opts.MaxAge, timeSlots-1)
		}
		r.maxAgeDays = int(opts.MaxAge / day)
	}
	return r, nil
}

// Domain is the domain the rewritten addresses are in.
func (r *Rewriter) Domain() string { return r.domain }

func (r *Rewriter) isLocal(host string) bool {
	for _, d := range r.local {
		if strings.EqualFold(host, d) {
			return true
		}
	}
	return false
}

// isSep reports whether c may follow the SRS0/SRS1 tag (libsrs2's
// srs_separators).
func isSep(c byte) bool { return c == '=' || c == '+' || c == '-' }

// hasTag reports whether local starts with SRS0 or SRS1 (digit '0' or '1'),
// in any case, followed by a separator, which is how libsrs2 recognises an
// SRS address.
func hasTag(local string, digit byte) bool {
	return len(local) >= 5 && strings.EqualFold(local[:3], "SRS") && local[3] == digit && isSep(local[4])
}

// HasTag reports whether local starts like an SRS address: SRS0 or SRS1,
// in any case, and a separator.
func HasTag(local string) bool { return hasTag(local, '0') || hasTag(local, '1') }

// carriable reports whether s can be carried inside the local part of an SRS
// address and come back out unchanged: no spaces, controls, quotes or
// backslashes, which would need quoting that libsrs2 does not do.
func carriable(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ', c == 0x7f, c == '"', c == '\\':
			return false
		}
	}
	return true
}

func malformed(detail string) error { return fmt.Errorf("%w: %s", ErrMalformed, detail) }
