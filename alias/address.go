package alias

import (
	"errors"
	"fmt"
	"strings"
)

// Address is a mailbox as it may appear in an SMTP command: local@domain.
// The domain is kept in lower case; the local part as given.
type Address struct {
	Local  string
	Domain string
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// Limits from rfc 5321:4.5.3.1.
const (
	maxLocalLength  = 64
	maxDomainLength = 255
	maxLabelLength  = 63
	maxPathLength   = 254 // 256 octets of path minus the angle brackets
)

// ErrAddress is wrapped by every error ParseAddress returns.
var ErrAddress = errors.New("invalid address")

func addrErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrAddress, fmt.Sprintf(format, args...))
}

// ParseAddress parses a bare mailbox (no display name, no angle brackets)
// the way tempalias accepts it on both front ends. It is deliberately
// narrower than rfc 5321: anything that could be misread by a later MTA is
// refused rather than passed on — source routes, '%' and '!' routing,
// quoted local parts holding spaces, angle brackets or escapes, address
// literals, control characters and non-ASCII (no SMTPUTF8).
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, addrErr("empty")
	}
	if len(s) > maxPathLength {
		return Address{}, addrErr("longer than %d characters", maxPathLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return Address{}, addrErr("contains a space, control or non-ASCII character")
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, addrErr("no @domain")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return Address{}, err
	}
	if err := checkDomain(domain); err != nil {
		return Address{}, err
	}
	return Address{Local: local, Domain: strings.ToLower(domain)}, nil
}

func checkLocal(l string) error {
	if l == "" {
		return addrErr("empty local part")
	}
	if len(l) > maxLocalLength {
		return addrErr("local part longer than %d characters", maxLocalLength)
	}
	if l[0] == '"' {
		// rfc 5321:4.1.2 Quoted-string, without quoted-pairs and without
		// characters that confuse command parsers downstream, nor the
		// routing characters refused below ("u%h"@relay, "@a:u"@relay).
		if len(l) < 3 || l[len(l)-1] != '"' {
			return addrErr("unterminated quoted local part")
		}
		for i := 1; i < len(l)-1; i++ {
			switch l[i] {
			case '"', '\\', '<', '>', '@', '%', '!':
				return addrErr("quoted local part with %q", l[i])
			}
		}
		return nil
	}
	return CheckDotString(l)
}

// CheckDotString checks l as rfc 5321:4.1.2 Dot-string over the characters
// ParseAddress accepts, whatever its length (an SRS local part may be
// longer than 64 octets).
func CheckDotString(l string) error {
	if l == "" {
		return addrErr("empty local part")
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return addrErr("misplaced dot in local part")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c == '.' || isAtext(c) {
			continue
		}
		return addrErr("local part with %q", c)
	}
	return nil
}

// isAtext is rfc 5322:3.2.3 atext without '%' and '!', which old relays
// still treat as routing (user%host@relay, host!user).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("#$&'*+-/=?^_`{|}~", c) >= 0
}

// CheckDomain checks d as a domain name the way ParseAddress checks the
// domain of an address: letters, digits and hyphens in labels of at most
// 63 octets, 255 in all, no address literals.
func CheckDomain(d string) error { return checkDomain(d) }

func checkDomain(d string) error {
	if d == "" {
		return addrErr("empty domain")
	}
	if len(d) > maxDomainLength {
		return addrErr("domain longer than %d characters", maxDomainLength)
	}
	if d[0] == '[' {
		return addrErr("address literals are not accepted")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return addrErr("empty label in domain")
		}
		if len(label) > maxLabelLength {
			return addrErr("domain label longer than %d characters", maxLabelLength)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return addrErr("domain label starting or ending with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return addrErr("domain with %q", c)
			}
		}
	}
	return nil
}

// InDomains reports whether domain is one of domains, ignoring case.
func InDomains(domain string, domains []string) bool {
	for _, d := range domains {
		if strings.EqualFold(domain, d) {
			return true
		}
	}
	return false
}
