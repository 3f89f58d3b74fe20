package smtpd

import (
	"bytes"
	"net"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
)

// maxReceived is how many Received headers a message may bring; more
// suggests a loop (rfc 5321:6.3).
const maxReceived = 50

var receivedName = []byte("received:")

// bodyCheck inspects a message as it streams past, chunk by chunk, so that
// nothing has to be held in memory. It refuses what must not be relayed:
// CR or LF other than as CRLF (rfc 5321:2.3.8) and loops.
type bodyCheck struct {
	stuffed  bool // the message is dot-stuffed, as a DATA command sends it
	dot      bool // stuffed: the stuffing dot of the first line was seen
	started  bool // some byte of the message was seen
	cr       bool // the previous byte was CR
	body     bool // past the header section
	col      int  // bytes on the current line so far, CRLF excluded
	name     [9]byte
	received int
}

// feed checks the next chunk. It is called before the chunk is written
// upstream, so an offending chunk never leaves.
func (b *bodyCheck) feed(p []byte) error {
	if !b.started && len(p) > 0 {
		first := p
		if b.stuffed && !b.dot && first[0] == '.' {
			// ". x" stands for " x" (rfc 5321:4.5.2); the next byte,
			// maybe in the next chunk, is the first of the message.
			b.dot = true
			first = first[1:]
		}
		if len(first) > 0 {
			b.started = true
			if first[0] == ' ' || first[0] == '\t' {
				// A folded first line would continue our trace
				// fields (rfc 5322:2.2.3): the client's text inside
				// them.
				return errFolded
			}
		}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if b.cr {
			if c != '\n' {
				return errBareCR
			}
			b.cr = false
			if !b.body && b.col == 0 {
				b.body = true // the empty line that ends the header section (rfc 5322:2.1)
			}
			b.col = 0
			continue
		}
		if b.body {
			// Fast path: only CR and LF matter in the body.
			j := indexCRLF(p[i:])
			if j < 0 {
				b.col += len(p) - i
				return nil
			}
			i += j
			c = p[i]
		}
		switch c {
		case '\r':
			b.cr = true
			continue
		case '\n':
			return errBareLF
		}
		if !b.body && b.col < len(b.name) {
			b.name[b.col] = c
			if b.col == len(b.name)-1 && bytes.EqualFold(b.name[:], receivedName) {
				b.received++
				if b.received > maxReceived {
					return errLoop
				}
			}
		}
		b.col++
	}
	return nil
}

// indexCRLF is bytes.IndexAny(p, "\r\n"): the LF first, then a CR
// before it, with bytes.IndexByte's vector search instead of IndexAny's
// look at every byte (most of a message is the middle of lines).
func indexCRLF(p []byte) int {
	j := bytes.IndexByte(p, '\n')
	if j < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if k := bytes.IndexByte(p[:j], '\r'); k >= 0 {
		return k
	}
	return j
}

// end checks the end of the message: go-smtp's dataReader always ends on
// CRLF, a BDAT transfer need not.
func (b *bodyCheck) end() error {
	if b.cr {
		return errBareCR
	}
	return nil
}

// receivedHeader is the trace header of rfc 5321:4.4, folded with CRLF and
// dated with a numeric zone (rfc 5322:3.3). The EHLO name appears only if
// it is a syntactically valid domain or address literal; otherwise the
// client's IP address literal takes its place. Only a single recipient is
// named (rfc 5321:7.2 warns against more).
func receivedHeader(helo string, ip net.IP, host, id, rcpt string, tls bool, t time.Time) string {
	lit := ""
	if ip != nil {
		lit = addressLiteral(ip)
	}
	return string(appendReceived(nil, helo, lit, host, id, rcpt, tls, t))
}

// appendReceived appends receivedHeader to b; lit is the client's
// address literal, "" if it has none.
func appendReceived(b []byte, helo, lit, host, id, rcpt string, tls bool, t time.Time) []byte {
	b = append(b, "Received: from "...)
	switch {
	case validHelo(helo):
		b = append(b, helo...)
	case lit != "":
		b = append(b, lit...)
	default:
		b = append(b, "unknown"...)
	}
	if lit != "" {
		b = append(b, " ("...)
		b = append(b, lit...)
		b = append(b, ')')
	}
	// go-smtp does not say whether the client used EHLO or HELO; nearly
	// every client uses EHLO. ESMTPS is rfc 3848.
	proto := "ESMTP"
	if tls {
		proto = "ESMTPS"
	}
	b = append(b, "\r\n\tby "...)
	b = append(b, host...)
	b = append(b, " (tempalias) with "...)
	b = append(b, proto...)
	b = append(b, " id "...)
	b = append(b, id...)
	if rcpt != "" {
		b = append(b, "\r\n\tfor <"...)
		b = append(b, rcpt...)
		b = append(b, '>')
	}
	b = append(b, "; "...)
	b = t.UTC().AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 -0700")
	return append(b, "\r\n"...)
}

// addressLiteral is rfc 5321:4.1.3.
func addressLiteral(ip net.IP) string {
	if ip4 := ip.To4(); ip4 != nil {
		return "[" + ip4.String() + "]"
	}
	return "[IPv6:" + ip.String() + "]"
}

// validHelo accepts a domain (letters, digits, hyphens, dots) or an
// address literal that parses.
func validHelo(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	if s[0] == '[' {
		if s[len(s)-1] != ']' {
			return false
		}
		inner := s[1 : len(s)-1]
		if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
			ip := net.ParseIP(v6)
			return ip != nil && strings.Contains(v6, ":")
		}
		ip := net.ParseIP(inner)
		return ip != nil && ip.To4() != nil && !strings.Contains(inner, ":")
	}
	return alias.CheckDomain(strings.TrimSuffix(s, ".")) == nil
}
