package srs_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/srs"
)

const day = 24 * time.Hour

// t0 is an arbitrary instant in the middle of a day.
var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func newRewriter(t testing.TB, secrets []string, opts srs.Options) *srs.Rewriter {
	t.Helper()
	r, err := srs.New("relay.example", secrets, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func forward(t testing.TB, r *srs.Rewriter, sender string, now time.Time) string {
	t.Helper()
	got, err := r.Forward(sender, now)
	if err != nil {
		t.Fatalf("Forward(%q): %v", sender, err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	for _, sender := range []string{
		"user@example.com",
		"First.Last@Example.COM",
		"me+tag@example.com",
		"a#$&'*+-/=?^_`{|}~z@example.com",
		"bounce-123=foo.example@lists.example.org",
		"x@[192.0.2.1]",
		"jörg@bücher.example",
		"SRS0xyz@example.com", // "SRS0" without a separator is an ordinary local part
	} {
		t.Run(sender, func(t *testing.T) {
			out := forward(t, r, sender, t0)
			if !strings.HasPrefix(out, "SRS0=") || !strings.HasSuffix(out, "@relay.example") {
				t.Fatalf("Forward(%q) = %q, want SRS0=...@relay.example", sender, out)
			}
			back, err := r.Reverse(out, t0)
			if err != nil || back != sender {
				t.Fatalf("Reverse(%q) = %q, %v; want %q", out, back, err, sender)
			}
		})
	}
}

func TestNullSender(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	if got, err := r.Forward("", t0); got != "" || err != nil {
		t.Errorf("Forward(\"\") = %q, %v; want \"\", nil", got, err)
	}
}

func TestLocalSendersUnchanged(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{LocalDomains: []string{"alias.example"}})
	for _, sender := range []string{
		"someone@relay.example",
		"someone@RELAY.Example",
		"SRS0=abcd=AB=example.com=u@relay.example",
		"someone@alias.example",
		"someone@Alias.Example",
	} {
		if got := forward(t, r, sender, t0); got != sender {
			t.Errorf("Forward(%q) = %q, want it unchanged", sender, got)
		}
	}
	// A subdomain is not ours.
	if got := forward(t, r, "x@sub.relay.example", t0); got == "x@sub.relay.example" {
		t.Errorf("Forward(x@sub.relay.example) left it unchanged")
	}
}

func TestHashIgnoresCase(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	out := forward(t, r, "Mixed.Case@Example.COM", t0)
	for _, munged := range []string{strings.ToLower(out), strings.ToUpper(out)} {
		back, err := r.Reverse(munged, t0)
		if err != nil {
			t.Fatalf("Reverse(%q): %v", munged, err)
		}
		// The local part comes back in the case it arrived in.
		if !strings.EqualFold(back, "Mixed.Case@Example.COM") {
			t.Errorf("Reverse(%q) = %q", munged, back)
		}
	}
}

func TestTamperedRefused(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	out := forward(t, r, "user@example.com", t0) // SRS0=HHHH=TT=example.com=user@relay.example
	h := out[5:9]

	var tampered []string
	for i := range 4 {
		c := byte('Q')
		if strings.EqualFold(h[i:i+1], "q") {
			c = 'Z'
		}
		tampered = append(tampered, out[:5+i]+string(c)+out[6+i:])
	}
	tampered = append(tampered,
		strings.Replace(out, "=user@", "=usex@", 1),
		strings.Replace(out, "=example.com=", "=example.org=", 1),
		strings.Replace(out, "=example.com=", "=evil.example=example.com=", 1),
		// A fresher timestamp is refused too: it is covered by the hash.
		strings.Replace(out, "="+out[10:12]+"=", "="+forward(t, r, "a@b.example", t0.Add(5*day))[10:12]+"=", 1),
	)
	for _, addr := range tampered {
		if addr == out {
			t.Fatalf("tampering left %q unchanged", addr)
		}
		if got, err := r.Reverse(addr, t0); !errors.Is(err, srs.ErrBadHash) {
			t.Errorf("Reverse(%q) = %q, %v; want ErrBadHash", addr, got, err)
		}
	}

	// Another secret, same address: refused.
	other := newRewriter(t, []string{"other"}, srs.Options{})
	if _, err := other.Reverse(out, t0); !errors.Is(err, srs.ErrBadHash) {
		t.Errorf("Reverse under another secret: %v, want ErrBadHash", err)
	}
}

func TestHashLength(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	out := forward(t, r, "user@example.com", t0)
	// libsrs2 (srs_hash_check) compares only the first hashlength
	// characters of a longer hash; a shorter one is refused.
	longer := out[:9] + "xyz" + out[9:]
	if got, err := r.Reverse(longer, t0); err != nil || got != "user@example.com" {
		t.Errorf("Reverse(%q) = %q, %v; want user@example.com", longer, got, err)
	}
	shorter := out[:8] + out[9:]
	if _, err := r.Reverse(shorter, t0); !errors.Is(err, srs.ErrBadHash) {
		t.Errorf("Reverse(%q): %v, want ErrBadHash", shorter, err)
	}
}

func TestExpiry(t *testing.T) {
	tests := []struct {
		name   string
		maxAge time.Duration
		made   time.Time
		at     time.Time
		err    error
	}{
		{"same instant", 0, t0, t0, nil},
		{"end of the same day", 0, t0, t0.Truncate(day).Add(day - time.Second), nil},
		{"21 days", 0, t0, t0.Add(21 * day), nil},
		{"last second of day 21", 0, t0.Truncate(day), t0.Truncate(day).Add(22*day - time.Second), nil},
		{"22 days", 0, t0, t0.Add(22 * day), srs.ErrExpired},
		{"first second of day 22", 0, t0.Truncate(day).Add(day - time.Second), t0.Truncate(day).Add(22 * day), srs.ErrExpired},
		{"a year", 0, t0, t0.Add(365 * day), srs.ErrExpired},
		// libsrs2 allows no day in the future: the stamp reads as ~1023
		// days old.
		{"one day ahead", 0, t0, t0.Add(-day), srs.ErrExpired},
		{"one second ahead, previous day", 0, t0.Truncate(day), t0.Truncate(day).Add(-time.Second), srs.ErrExpired},
		{"half a year ahead", 0, t0, t0.Add(-180 * day), srs.ErrExpired},
		// Stamps wrap every 1024 days; ages are counted across the wrap.
		{"across the wrap", 0, time.Unix(1023*86400, 0), time.Unix(1027*86400, 0), nil},
		{"expired across the wrap", 0, time.Unix(1020*86400, 0), time.Unix(1043*86400, 0), srs.ErrExpired},
		// 1024 days later the stamp is indistinguishable from today's, as
		// in every SRS implementation.
		{"a full cycle later", 0, t0, t0.Add(1024 * day), nil},
		{"before 1970", 0, time.Unix(-1, 0), time.Unix(-1, 0), nil},
		{"MaxAge 2 days, 2 days", 2 * day, t0, t0.Add(2 * day), nil},
		{"MaxAge 2 days, 3 days", 2 * day, t0, t0.Add(3 * day), srs.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRewriter(t, []string{"s3cret"}, srs.Options{MaxAge: tt.maxAge})
			out := forward(t, r, "user@example.com", tt.made)
			got, err := r.Reverse(out, tt.at)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Reverse(%q) at %v = %q, %v; want %v", out, tt.at, got, err, tt.err)
				}
				return
			}
			if err != nil || got != "user@example.com" {
				t.Fatalf("Reverse(%q) at %v = %q, %v; want user@example.com", out, tt.at, got, err)
			}
		})
	}
}

func TestTimestampEncoding(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{time.Unix(0, 0), "AA"},
		{time.Unix(86400-1, 0), "AA"},
		{time.Unix(86400, 0), "AB"},
		{time.Unix(31*86400, 0), "A7"},
		{time.Unix(32*86400, 0), "BA"},
		{time.Unix(1023*86400, 0), "77"},
		{time.Unix(1024*86400, 0), "AA"},
		{time.Unix(-1, 0), "77"},
		{postsrsdNow, "2W"},
	} {
		out := forward(t, r, "u@example.com", tt.at)
		if got := out[10:12]; got != tt.want {
			t.Errorf("stamp at %d = %q, want %q (%s)", tt.at.Unix(), got, tt.want, out)
		}
	}
}

func TestRotation(t *testing.T) {
	old := newRewriter(t, []string{"old"}, srs.Options{})
	rotated := newRewriter(t, []string{"new", "old"}, srs.Options{})
	retired := newRewriter(t, []string{"new"}, srs.Options{})

	signedOld := forward(t, old, "user@example.com", t0)
	if got, err := rotated.Reverse(signedOld, t0); err != nil || got != "user@example.com" {
		t.Errorf("rotated.Reverse(old address) = %q, %v", got, err)
	}
	if _, err := retired.Reverse(signedOld, t0); !errors.Is(err, srs.ErrBadHash) {
		t.Errorf("retired.Reverse(old address): %v, want ErrBadHash", err)
	}

	// The first secret signs.
	signedNew := forward(t, rotated, "user@example.com", t0)
	if signedNew == signedOld {
		t.Fatalf("rotated signs with the old secret: %q", signedNew)
	}
	if got := forward(t, retired, "user@example.com", t0); got != signedNew {
		t.Errorf("rotated.Forward = %q, new-only Forward = %q; want equal", signedNew, got)
	}
	if _, err := old.Reverse(signedNew, t0); !errors.Is(err, srs.ErrBadHash) {
		t.Errorf("old.Reverse(new address): %v, want ErrBadHash", err)
	}

	// SRS1 addresses rotate the same way.
	srs1 := forward(t, old, "SRS0=abcd=AB=first.example=u@second.example", t0)
	if got, err := rotated.Reverse(srs1, t0); err != nil || got != "SRS0=abcd=AB=first.example=u@second.example" {
		t.Errorf("rotated.Reverse(old SRS1) = %q, %v", got, err)
	}
}

func TestSRS1(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	tests := []struct {
		name, sender, wantPrefix, wantSuffix, back string
	}{
		{
			name:       "foreign SRS0",
			sender:     "SRS0=HHHH=TT=orig.example=user@first.example",
			wantPrefix: "SRS1=", wantSuffix: "=first.example==HHHH=TT=orig.example=user@relay.example",
			back: "SRS0=HHHH=TT=orig.example=user@first.example",
		},
		{
			name:       "foreign SRS0 with + separator",
			sender:     "SRS0+HHHH=TT=orig.example=user@first.example",
			wantPrefix: "SRS1=", wantSuffix: "=first.example=+HHHH=TT=orig.example=user@relay.example",
			back: "SRS0+HHHH=TT=orig.example=user@first.example",
		},
		{
			// The tag comes back upper case, as libsrs2 writes it.
			name:       "foreign SRS0 in lower case",
			sender:     "srs0=hhhh=tt=orig.example=user@first.example",
			wantPrefix: "SRS1=", wantSuffix: "=first.example==hhhh=tt=orig.example=user@relay.example",
			back: "SRS0=hhhh=tt=orig.example=user@first.example",
		},
		{
			// Bounces skip the second forwarder and go to the first.
			name:       "foreign SRS1",
			sender:     "SRS1=XXXX=first.example==HHHH=TT=orig.example=user@second.example",
			wantPrefix: "SRS1=", wantSuffix: "=first.example==HHHH=TT=orig.example=user@relay.example",
			back: "SRS0=HHHH=TT=orig.example=user@first.example",
		},
		{
			// Not a real SRS1 address (the tail is no SRS0 tail), so it is
			// wrapped whole and reverses to exactly what was sent.
			name:       "SRS1 look-alike",
			sender:     "SRS1=x=y=z@other.example",
			wantPrefix: "SRS0=", wantSuffix: "=other.example=SRS1=x=y=z@relay.example",
			back: "SRS1=x=y=z@other.example",
		},
		{
			name:       "SRS1 with empty host",
			sender:     "SRS1=x===z@other.example",
			wantPrefix: "SRS0=", wantSuffix: "=other.example=SRS1=x===z@relay.example",
			back: "SRS1=x===z@other.example",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := forward(t, r, tt.sender, t0)
			if !strings.HasPrefix(out, tt.wantPrefix) || !strings.HasSuffix(out, tt.wantSuffix) {
				t.Fatalf("Forward(%q) = %q, want %s...%s", tt.sender, out, tt.wantPrefix, tt.wantSuffix)
			}
			back, err := r.Reverse(out, t0)
			if err != nil || back != tt.back {
				t.Fatalf("Reverse(%q) = %q, %v; want %q", out, back, err, tt.back)
			}
			if !strings.HasPrefix(out, "SRS1") {
				return
			}
			// SRS1 addresses carry no timestamp and do not expire.
			if later, err := r.Reverse(out, t0.Add(500*day)); err != nil || later != tt.back {
				t.Errorf("Reverse(%q) 500 days later = %q, %v", out, later, err)
			}
			// The hash is checked.
			bad := out[:5] + "!!!!" + out[9:]
			if _, err := r.Reverse(bad, t0); !errors.Is(err, srs.ErrBadHash) {
				t.Errorf("Reverse(%q): %v, want ErrBadHash", bad, err)
			}
		})
	}
}

func TestSeparator(t *testing.T) {
	plus := newRewriter(t, []string{"s3cret"}, srs.Options{Separator: '+'})
	eq := newRewriter(t, []string{"s3cret"}, srs.Options{})

	out := forward(t, plus, "user@example.com", t0)
	if !strings.HasPrefix(out, "SRS0+") || strings.Count(out, "=") != 3 {
		t.Fatalf("Forward with '+' = %q, want SRS0+HHHH=TT=host=user@...", out)
	}
	// Only the tag separator differs; the hash is the same.
	if want := "SRS0=" + out[5:]; forward(t, eq, "user@example.com", t0) != want {
		t.Errorf("'=' and '+' rewriters disagree beyond the separator: %q vs %q", out, want)
	}
	// Reverse accepts any separator, whatever it writes.
	for _, r := range []*srs.Rewriter{plus, eq} {
		for _, sep := range "=+-" {
			addr := "SRS0" + string(sep) + out[5:]
			if got, err := r.Reverse(addr, t0); err != nil || got != "user@example.com" {
				t.Errorf("Reverse(%q) = %q, %v", addr, got, err)
			}
		}
	}
	srs1 := forward(t, plus, "SRS0=opaque@first.example", t0)
	if !strings.HasPrefix(srs1, "SRS1+") {
		t.Errorf("SRS1 with '+' = %q", srs1)
	}
}

func TestForwardMalformed(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	for _, sender := range []string{
		"foo",
		"@example.com",
		"user@",
		"a@b@example.com",
		`"a@b"@example.com`,
		"user@exa=mple.com",
		`"john doe"@example.com`,
		`"john.doe"@example.com`,
		"user name@example.com",
		"user\r\nRCPT TO:<x@y>@example.com",
		"user@example.com\x00",
		"back\\slash@example.com",
	} {
		if got, err := r.Forward(sender, t0); !errors.Is(err, srs.ErrMalformed) {
			t.Errorf("Forward(%q) = %q, %v; want ErrMalformed", sender, got, err)
		}
	}
}

func TestReverseMalformed(t *testing.T) {
	r := newRewriter(t, []string{"s3cret"}, srs.Options{})
	good := forward(t, r, "user@example.com", t0)
	h, ts := good[5:9], good[10:12]
	tests := []struct {
		in  string
		err error
	}{
		{"", srs.ErrNotSRS},
		{"postmaster", srs.ErrNotSRS},
		{"user@relay.example", srs.ErrNotSRS},
		{"SRS", srs.ErrNotSRS},
		{"SRS0", srs.ErrNotSRS},
		{"SRS0@relay.example", srs.ErrNotSRS},
		{"SRS2=" + h + "=" + ts + "=example.com=user@relay.example", srs.ErrNotSRS},
		{"SRS0x" + h + "=" + ts + "=example.com=user@relay.example", srs.ErrNotSRS},
		{"SRSO=" + h + "=" + ts + "=example.com=user@relay.example", srs.ErrNotSRS},
		{"SRS0=", srs.ErrMalformed},
		{"SRS0=@relay.example", srs.ErrMalformed},
		{"SRS0==" + ts + "=example.com=user@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=" + ts + "@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=" + ts + "=example.com@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=" + ts + "==user@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=" + ts + "=example.com=@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=A=example.com=user@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=AAA=example.com=user@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=A1=example.com=user@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=A!=example.com=user@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=" + ts + "=example.com=us er@relay.example", srs.ErrMalformed},
		{"SRS0=" + h + "=" + ts + "=example.com=us\ner@relay.example", srs.ErrMalformed},
		{"SRS1=", srs.ErrMalformed},
		{"SRS1=" + h + "@relay.example", srs.ErrMalformed},
		{"SRS1=" + h + "=first.example@relay.example", srs.ErrMalformed},
		{"SRS1=" + h + "==tail@relay.example", srs.ErrMalformed},
		{"SRS1=" + h + "=first.example=@relay.example", srs.ErrMalformed},
		{"SRS0=abc=" + ts + "=example.com=user@relay.example", srs.ErrBadHash},
		{"SRS1=abc=first.example==tail@relay.example", srs.ErrBadHash},
	}
	for _, tt := range tests {
		if got, err := r.Reverse(tt.in, t0); !errors.Is(err, tt.err) {
			t.Errorf("Reverse(%q) = %q, %v; want %v", tt.in, got, err, tt.err)
		}
	}
	// The domain part is not consulted, as in libsrs2.
	for _, addr := range []string{strings.Replace(good, "@relay.example", "@elsewhere.example", 1), good[:strings.IndexByte(good, '@')]} {
		if got, err := r.Reverse(addr, t0); err != nil || got != "user@example.com" {
			t.Errorf("Reverse(%q) = %q, %v; want user@example.com", addr, got, err)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		domain  string
		secrets []string
		opts    srs.Options
	}{
		{"empty domain", "", []string{"s"}, srs.Options{}},
		{"domain with @", "a@relay.example", []string{"s"}, srs.Options{}},
		{"domain with =", "relay=example", []string{"s"}, srs.Options{}},
		{"domain with space", "relay example", []string{"s"}, srs.Options{}},
		{"no secrets", "relay.example", nil, srs.Options{}},
		{"empty secret", "relay.example", []string{"s", ""}, srs.Options{}},
		{"bad separator", "relay.example", []string{"s"}, srs.Options{Separator: '_'}},
		{"max age not whole days", "relay.example", []string{"s"}, srs.Options{MaxAge: 36 * time.Hour}},
		{"max age negative", "relay.example", []string{"s"}, srs.Options{MaxAge: -day}},
		{"max age a full cycle", "relay.example", []string{"s"}, srs.Options{MaxAge: 1024 * day}},
	}
	for _, tt := range tests {
		if _, err := srs.New(tt.domain, tt.secrets, tt.opts); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
	r, err := srs.New("relay.example", []string{"s"}, srs.Options{Separator: '-', MaxAge: 1023 * day})
	if err != nil {
		t.Fatal(err)
	}
	if r.Domain() != "relay.example" {
		t.Errorf("Domain() = %q", r.Domain())
	}
}

func TestConcurrentUse(t *testing.T) {
	r := newRewriter(t, []string{"new", "old"}, srs.Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				sender := strings.Repeat("u", i+1) + "@example.com"
				out, err := r.Forward(sender, t0.Add(time.Duration(j)*time.Hour))
				if err != nil {
					t.Error(err)
					return
				}
				if back, err := r.Reverse(out, t0.Add(5*day)); err != nil || back != sender {
					t.Errorf("Reverse(%q) = %q, %v", out, back, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
