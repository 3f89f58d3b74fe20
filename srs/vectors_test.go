package srs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/srs"
)

// The vectors below are postsrsd's, all with secret "tops3cr3t", SRS domain
// example.com and the clock at 1577836860 (2020-01-01 00:01:00 UTC), taken
// from github.com/roehling/postsrsd:
//
//	tests/unit/test_srs2.c     (commit 07b4190532b8d60cbbc23e535cb8b0ed781d28d9)
//	tests/blackbox/socketmap.py (commit 037ca88d98c4e7c5b22a55d79455351bbf0614f8)
//	tests/blackbox/milter.py    (commit 037ca88d98c4e7c5b22a55d79455351bbf0614f8)
//
// The "@1" addresses are postsrsd's database aliases: postsrsd passes
// DCJG...@1 through libsrs2's srs_forward like any sender, so they are plain
// SRS0 vectors here (postsrsd then looks the local part up in its database,
// which we do not have).
var (
	postsrsdNow    = time.Unix(1577836860, 0)
	postsrsdSecret = "tops3cr3t"
	postsrsdDomain = "example.com"
)

func postsrsd(t *testing.T) *srs.Rewriter {
	t.Helper()
	r, err := srs.New(postsrsdDomain, []string{postsrsdSecret}, srs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPostsrsdForward(t *testing.T) {
	r := postsrsd(t)
	tests := []struct {
		name, in, want string
	}{
		{"local domain", "test@example.com", "test@example.com"},
		{"regular", "test@otherdomain.com", "SRS0=vmyz=2W=otherdomain.com=test@example.com"},
		{"hash with plus", "sender@otherdomain.com", "SRS0=9KJ+=2W=otherdomain.com=sender@example.com"},
		{"SRS0 in local domain", "SRS0=XjO9=2V=otherdomain.com=test@example.com", "SRS0=XjO9=2V=otherdomain.com=test@example.com"},
		{"foreign SRS0 to SRS1", "SRS0=opaque+string@otherdomain.com", "SRS1=chaI=otherdomain.com==opaque+string@example.com"},
		{"foreign SRS1 rehashed", "SRS1=X=thirddomain.com==opaque+string@otherdomain.com", "SRS1=JIBX=thirddomain.com==opaque+string@example.com"},
		{"database alias", "DCJGDE6N24LCRT41A4T0G1UIF0DTKKQJ@1", "SRS0=bxzH=2W=1=DCJGDE6N24LCRT41A4T0G1UIF0DTKKQJ@example.com"},
		{"long (socketmap)", "test@" + strings.Repeat("a", 512-9) + ".net", "SRS0=G7tR=2W=" + strings.Repeat("a", 512-9) + ".net=test@example.com"},
		{"long (milter)", "test@" + strings.Repeat("a", 508-9) + ".net", "SRS0=ckoK=2W=" + strings.Repeat("a", 508-9) + ".net=test@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Forward(tt.in, postsrsdNow)
			if err != nil {
				t.Fatalf("Forward(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Forward(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}

	// "forward foo" is refused by postsrsd (no domain) and libsrs2
	// (SRS_ENOSENDERATSIGN).
	if _, err := r.Forward("foo", postsrsdNow); !errors.Is(err, srs.ErrMalformed) {
		t.Errorf("Forward(foo) = %v, want ErrMalformed", err)
	}
}

func TestPostsrsdReverse(t *testing.T) {
	r := postsrsd(t)
	tests := []struct {
		name, in, want string
		err            error
	}{
		{name: "not SRS", in: "test@example.com", err: srs.ErrNotSRS},
		{name: "today", in: "SRS0=vmyz=2W=otherdomain.com=test@example.com", want: "test@otherdomain.com"},
		{name: "hash with plus", in: "SRS0=9KJ+=2W=otherdomain.com=sender@example.com", want: "sender@otherdomain.com"},
		{name: "yesterday", in: "SRS0=XjO9=2V=otherdomain.com=test@example.com", want: "test@otherdomain.com"},
		{name: "SRS1", in: "SRS1=JIBX=thirddomain.com==opaque+string@example.com", want: "SRS0=opaque+string@thirddomain.com"},
		{name: "six months old", in: "SRS0=te87=T7=otherdomain.com=test@example.com", err: srs.ErrExpired},
		{name: "six months ahead", in: "SRS0=VcIb=7N=otherdomain.com=test@example.com", err: srs.ErrExpired},
		{name: "fake hash", in: "SRS0=FAKE=2V=otherdomain.com=test@example.com", err: srs.ErrBadHash},
		{name: "all lower case", in: "srs0=xjo9=2v=otherdomain.com=test@example.com", want: "test@otherdomain.com"},
		{name: "all upper case", in: "SRS0=XJO9=2V=OTHERDOMAIN.COM=TEST@EXAMPLE.COM", want: "TEST@OTHERDOMAIN.COM"},
		{name: "no hash", in: "SRS0=@example.com", err: srs.ErrMalformed},
		{name: "no timestamp", in: "SRS0=XjO9@example.com", err: srs.ErrMalformed},
		{name: "no host", in: "SRS0=XjO9=2V@example.com", err: srs.ErrMalformed},
		{name: "no user", in: "SRS0=XjO9=2V=otherdomain.com@example.com", err: srs.ErrMalformed},
		{name: "database alias", in: "SRS0=bxzH=2W=1=DCJGDE6N24LCRT41A4T0G1UIF0DTKKQJ@example.com", want: "DCJGDE6N24LCRT41A4T0G1UIF0DTKKQJ@1"},
		{name: "database alias lower case", in: "SRS0=bxzH=2W=1=dcjgde6n24lcrt41a4t0g1uif0dtkkqj@example.com", want: "dcjgde6n24lcrt41a4t0g1uif0dtkkqj@1"},
		{name: "unknown database alias", in: "SRS0=hdxW=2W=1=VVVVVVUNVVVVVVS1VVVVVVUIVVVTKKQJ@example.com", want: "VVVVVVUNVVVVVVS1VVVVVVUIVVVTKKQJ@1"},
		{name: "long (socketmap)", in: "SRS0=iCvJ=2W=" + strings.Repeat("a", 512-34) + ".net=test@example.com", want: "test@" + strings.Repeat("a", 512-34) + ".net"},
		{name: "long (milter)", in: "SRS0=845K=2W=" + strings.Repeat("a", 508-34) + ".net=test@example.com", want: "test@" + strings.Repeat("a", 508-34) + ".net"},
		// postsrsd's fuzz seeds (fuzz/seeds/srs/, commit 6c392ade89a989ac1356d136c6debbabc21997ea).
		{name: "fuzz seed malformed1", in: "SRS0=", err: srs.ErrMalformed},
		{name: "fuzz seed malformed2", in: "SRS0=AAAA=", err: srs.ErrMalformed},
		{name: "fuzz seed malformed3", in: "SRS0=AAAA=AA=", err: srs.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Reverse(tt.in, postsrsdNow)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Reverse(%q) = %q, %v; want %v", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Reverse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("Reverse(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}
