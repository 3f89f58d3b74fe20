package alias

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAddressValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Address
	}{
		{"plain", "t@example.com", Address{"t", "example.com"}},
		{"plus tag", "me+tag@example.com", Address{"me+tag", "example.com"}},
		{"dots", "first.middle.last@mail.example.co.uk", Address{"first.middle.last", "mail.example.co.uk"}},
		{"atext specials", "a#$&'*+-/=?^_`{|}~z@example.com", Address{"a#$&'*+-/=?^_`{|}~z", "example.com"}},
		{"quoted local", `"john.doe"@example.com`, Address{`"john.doe"`, "example.com"}},
		{"quoted local with dots in odd places", `".a..b."@example.com`, Address{`".a..b."`, "example.com"}},
		{"single-label domain", "root@localhost", Address{"root", "localhost"}},
		{"domain lower-cased, local kept", "Mixed.Case@EXAMPLE.Com", Address{"Mixed.Case", "example.com"}},
		{"hyphen inside label", "a@my-host.example", Address{"a", "my-host.example"}},
		{"digits-only labels", "a@1.2.3.4", Address{"a", "1.2.3.4"}},
		{"local of 64", strings.Repeat("l", 64) + "@example.com", Address{strings.Repeat("l", 64), "example.com"}},
		{"label of 63", "a@" + strings.Repeat("d", 63) + ".example", Address{"a", strings.Repeat("d", 63) + ".example"}},
		{"whole of 254", strings.Repeat("l", 64) + "@" + longDomain(254-65), Address{strings.Repeat("l", 64), longDomain(254 - 65)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddress(tt.in)
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseAddress(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			if s := got.String(); !strings.EqualFold(s, tt.in) {
				t.Errorf("String() = %q, want %q up to case", s, tt.in)
			}
		})
	}
}

func TestParseAddressInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"no at", "example.com"},
		{"only at", "@"},
		{"empty local", "@example.com"},
		{"empty domain", "t@"},
		{"two at", "a@b@example.com"},
		{"source route", "@a,@b:u@c.example"},
		{"percent routing", "u%h@relay.example"},
		{"bang routing", "h!u@relay.example"},
		{"quoted with space", `"a b"@example.com`},
		{"quoted with >", `"a>b"@example.com`},
		{"quoted with <", `"a<b"@example.com`},
		{"quoted with backslash", `"a\b"@example.com`},
		{"quoted with escaped quote", `"a\"b"@example.com`},
		{"quoted with inner quote", `"a"b"@example.com`},
		{"quoted with percent", `"u%h"@relay.example`},
		{"quoted with bang", `"h!u"@relay.example`},
		{"quoted source route", `"@a:u"@relay.example`},
		{"quoted empty", `""@example.com`},
		{"quote unterminated", `"abc@example.com`},
		{"lone quote", `"@example.com`},
		{"quote only at end", `abc"@example.com`},
		{"CR", "a\r@example.com"},
		{"LF", "a@example.com\nRCPT TO:<x@y.example>"},
		{"CRLF at end", "a@example.com\r\n"},
		{"NUL", "a\x00@example.com"},
		{"tab", "a\t@example.com"},
		{"space", "a b@example.com"},
		{"DEL", "a\x7f@example.com"},
		{"non-ASCII local", "jörg@example.com"},
		{"non-ASCII domain", "a@bücher.example"},
		{"angle brackets", "<a@example.com>"},
		{"display name", "A <a@example.com>"},
		{"leading dot", ".a@example.com"},
		{"trailing dot", "a.@example.com"},
		{"double dot", "a..b@example.com"},
		{"comma in local", "a,b@example.com"},
		{"colon in local", "a:b@example.com"},
		{"local of 65", strings.Repeat("l", 65) + "@example.com"},
		{"label of 64", "a@" + strings.Repeat("d", 64) + ".example"},
		{"whole of 255", strings.Repeat("l", 64) + "@" + longDomain(255-65)},
		{"address literal", "a@[1.2.3.4]"},
		{"IPv6 literal", "a@[IPv6:::1]"},
		{"label starting with -", "a@-host.example"},
		{"label ending with -", "a@host-.example"},
		{"domain leading dot", "a@.example.com"},
		{"domain trailing dot", "a@example.com."},
		{"domain double dot", "a@example..com"},
		{"underscore in domain", "a@my_host.example"},
		{"slash in domain", "a@host/x.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddress(tt.in)
			if err == nil {
				t.Fatalf("ParseAddress(%q) = %#v, want an error", tt.in, got)
			}
			if !errors.Is(err, ErrAddress) {
				t.Errorf("error %v does not wrap ErrAddress", err)
			}
			if got != (Address{}) {
				t.Errorf("ParseAddress(%q) returned %#v along with its error", tt.in, got)
			}
		})
	}
}

// longDomain returns a valid domain of exactly n characters (n >= 1):
// labels of at most 63 characters joined by dots.
func longDomain(n int) string {
	var labels []string
	for rest := n; rest > 0; {
		l := min(maxLabelLength, rest)
		if rest-l == 1 { // a lone dot cannot follow; leave room for ".d"
			l--
		}
		labels = append(labels, strings.Repeat("d", l))
		rest -= l
		if rest > 0 {
			rest-- // the dot
		}
	}
	return strings.Join(labels, ".")
}

func TestLongDomain(t *testing.T) {
	for _, n := range []int{3, 62, 63, 64, 65, 127, 128, 189, 190, 252} {
		d := longDomain(n)
		if len(d) != n {
			t.Errorf("longDomain(%d) has length %d", n, len(d))
		}
		if err := checkDomain(d); err != nil {
			t.Errorf("longDomain(%d) = %q: %v", n, d, err)
		}
	}
}

// An address already in lower case parses without allocating: the SMTP
// front end parses every MAIL FROM and RCPT TO, most of them refused.
func TestParseAddressAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { ParseAddress("someone.else@mail.example.org") }); n != 0 {
		t.Errorf("ParseAddress: %v allocations, want 0", n)
	}
}

func TestInDomains(t *testing.T) {
	domains := []string{"tempalias.example", "Other.Example"}
	tests := []struct {
		domain string
		want   bool
	}{
		{"tempalias.example", true},
		{"TempAlias.EXAMPLE", true},
		{"other.example", true},
		{"sub.tempalias.example", false},
		{"tempalias.example.org", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := InDomains(tt.domain, domains); got != tt.want {
			t.Errorf("InDomains(%q) = %v, want %v", tt.domain, got, tt.want)
		}
	}
	if InDomains("tempalias.example", nil) {
		t.Error("InDomains with no domains = true")
	}
}

func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"t@example.com",
		"me+tag@Example.COM",
		"first.last@mail.example.co.uk",
		`"quoted"@example.com`,
		`"a b"@example.com`,
		`"a\"b"@example.com`,
		`""@example.com`,
		"root@localhost",
		"a@b@example.com",
		"@a,@b:u@c.example",
		"u%h@relay.example",
		"h!u@relay.example",
		"a\r\n@example.com",
		"a\x00@example.com",
		"jörg@example.com",
		".a@example.com",
		"a..b@example.com",
		"a@[1.2.3.4]",
		"a@-x.example",
		"a@example.com.",
		strings.Repeat("l", 64) + "@" + longDomain(189),
		strings.Repeat("l", 65) + "@example.com",
		"",
		"@",
		`"@"@x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			if !errors.Is(err, ErrAddress) {
				t.Fatalf("ParseAddress(%q): error %v does not wrap ErrAddress", s, err)
			}
			if a != (Address{}) {
				t.Fatalf("ParseAddress(%q) returned %#v with an error", s, a)
			}
			return
		}
		out := a.String()
		for i := 0; i < len(out); i++ {
			if c := out[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("ParseAddress(%q) = %q holds byte %#x", s, out, c)
			}
		}
		if a.Domain != strings.ToLower(a.Domain) {
			t.Fatalf("ParseAddress(%q): domain %q is not lower case", s, a.Domain)
		}
		if a.Local == "" || a.Domain == "" {
			t.Fatalf("ParseAddress(%q) = %#v: empty part", s, a)
		}
		if len(a.Local) > maxLocalLength || len(out) > maxPathLength {
			t.Fatalf("ParseAddress(%q) = %q: over length", s, out)
		}
		if strings.Count(a.Domain, "@") != 0 || strings.ContainsAny(a.Domain, "[]") {
			t.Fatalf("ParseAddress(%q): domain %q", s, a.Domain)
		}
		if !strings.EqualFold(out, s) {
			t.Fatalf("ParseAddress(%q).String() = %q changed more than case", s, out)
		}
		again, err := ParseAddress(out)
		if err != nil {
			t.Fatalf("ParseAddress(%q) = %q, which does not parse again: %v", s, out, err)
		}
		if again != a {
			t.Fatalf("ParseAddress(%q) = %#v, but its String() %q parses as %#v", s, a, out, again)
		}
	})
}
