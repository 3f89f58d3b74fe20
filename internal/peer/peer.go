// Package peer names the unit that per-client limits count in, one for
// HTTP and SMTP alike: the creations per minute, the connections per
// client and the refused recipients per client are each host's own, in
// memory, and all count a client by its Key.
package peer

import "net/netip"

// Key is what a client is counted under: its IPv4 address (also when it
// comes mapped into IPv6, as on a dual-stack listener), or its IPv6 /64,
// the subnet one subscriber usually holds whole and can pick addresses
// from at will (rfc 4291:2.5.4 gives every subnet a 64-bit interface
// identifier). An invalid address is the zero Prefix.
func Key(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}
