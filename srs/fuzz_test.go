package srs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/srs"
)

// FuzzReverse feeds arbitrary strings to Reverse, and also uses them as
// senders for Forward. It checks that:
//
//   - neither panics, and every error is one of the package's sentinels;
//   - whatever Forward rewrites, Reverse turns back into the sender (or, for
//     another forwarder's SRS0/SRS1 address, into the address of the first
//     forwarder);
//   - whatever Reverse accepts is, up to case, separator and hash length,
//     what Forward makes from the result with one of the secrets on some day
//     in the validity window: nothing reverses that we did not make.
func FuzzReverse(f *testing.F) {
	seeds := []string{
		"",
		"user@example.com",
		"SRS0=vmyz=2W=otherdomain.com=test@example.com",
		"srs0=xjo9=2v=otherdomain.com=test@example.com",
		"SRS0+9KJ+=2W=otherdomain.com=sender@example.com",
		"SRS1=JIBX=thirddomain.com==opaque+string@example.com",
		"SRS0=opaque+string@otherdomain.com",
		"SRS1=X=thirddomain.com==opaque+string@otherdomain.com",
		"SRS1=x=y=z@other.example",
		"SRS0=", "SRS0=AAAA=", "SRS0=AAAA=AA=", "SRS1=", "SRS1=AAAA=h",
		"SRS0=FAKE=2V=otherdomain.com=test@example.com",
		"a@b@c", "@x", "x@", "x@a=b",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	// Sign with the first secret at postsrsdNow, verify with both, so the
	// postsrsd vectors among the seeds reverse.
	r, err := srs.New(postsrsdDomain, []string{"n3wer", postsrsdSecret}, srs.Options{})
	if err != nil {
		f.Fatal(err)
	}
	signers := []*srs.Rewriter{r}
	old, err := srs.New(postsrsdDomain, []string{postsrsdSecret}, srs.Options{})
	if err != nil {
		f.Fatal(err)
	}
	signers = append(signers, old)

	known := func(err error) bool {
		return errors.Is(err, srs.ErrNotSRS) || errors.Is(err, srs.ErrMalformed) ||
			errors.Is(err, srs.ErrBadHash) || errors.Is(err, srs.ErrExpired)
	}

	f.Fuzz(func(t *testing.T, s string) {
		now := postsrsdNow

		// s as an address to reverse.
		back, err := r.Reverse(s, now)
		if err != nil {
			if !known(err) {
				t.Fatalf("Reverse(%q): unexpected error %v", s, err)
			}
		} else {
			// Whatever reversed must be what one of the signers makes from
			// back on one of the last 22 days.
			want := normalLocal(s)
			found := false
			for _, signer := range signers {
				for d := range 22 {
					fw, err := signer.Forward(back, now.Add(-day*time.Duration(d)))
					if err == nil && strings.EqualFold(normalLocal(fw), want) {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("Reverse(%q) = %q, which no signer forwards back to it", s, back)
			}
		}

		// s as a sender to forward.
		out, err := r.Forward(s, now)
		if err != nil {
			if !errors.Is(err, srs.ErrMalformed) {
				t.Fatalf("Forward(%q): unexpected error %v", s, err)
			}
			return
		}
		if out == s {
			return // null sender or ours
		}
		got, err := r.Reverse(out, now)
		if err != nil {
			t.Fatalf("Reverse(Forward(%q) = %q): %v", s, out, err)
		}
		if want := expectedBounce(s, out); got != want {
			t.Fatalf("Reverse(Forward(%q) = %q) = %q, want %q", s, out, got, want)
		}
	})
}

// normalLocal is the local part of an SRS address with the things Reverse
// ignores taken out: the separator after the tag is '=' and the hash is cut
// to four characters.
func normalLocal(addr string) string {
	local, _, _ := strings.Cut(addr, "@")
	if len(local) < 5 {
		return local
	}
	h, rest, _ := strings.Cut(local[5:], "=")
	if len(h) > 4 {
		h = h[:4]
	}
	return local[:4] + "=" + h + "=" + rest
}

// expectedBounce is where a bounce to out, made by Forward from sender,
// should go.
func expectedBounce(sender, out string) string {
	if !strings.HasPrefix(out, "SRS1") {
		return sender // SRS0: the sender itself
	}
	user, host, _ := strings.Cut(sender, "@")
	if strings.EqualFold(user[:4], "SRS0") {
		return "SRS0" + user[4:] + "@" + host
	}
	// SRS1=X=orighost=tail@host: the first forwarder's SRS0 address.
	_, rest, _ := strings.Cut(user[5:], "=")
	origHost, tail, _ := strings.Cut(rest, "=")
	return "SRS0" + tail + "@" + origHost
}
