package dnsbl

import (
	"net/netip"
	"strconv"
	"strings"
)

// queryName returns the labels that name ip under a zone, ending in a dot:
// the octets of an IPv4 address in reverse order (rfc 5782:2.1), or the
// nibbles of an IPv6 address in reverse order (rfc 5782:2.4), as in
// in-addr.arpa and ip6.arpa.
func queryName(ip netip.Addr) string {
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := len(a) - 1; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
		return b.String()
	}
	const hex = "0123456789abcdef"
	a := ip.As16()
	b.Grow(64)
	for i := len(a) - 1; i >= 0; i-- {
		b.WriteByte(hex[a[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[a[i]>>4])
		b.WriteByte('.')
	}
	return b.String()
}
