package peer

import (
	"net/netip"
	"testing"
)

func TestKey(t *testing.T) {
	for _, c := range []struct {
		addr netip.Addr
		want string
	}{
		{netip.MustParseAddr("192.0.2.7"), "192.0.2.7/32"},
		{netip.MustParseAddr("::ffff:192.0.2.7"), "192.0.2.7/32"},
		{netip.MustParseAddr("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64"},
		{netip.MustParseAddr("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64"},
		{netip.MustParseAddr("fe80::1%eth0"), "fe80::/64"},
		{netip.Addr{}, "invalid Prefix"},
	} {
		if got := Key(c.addr).String(); got != c.want {
			t.Errorf("Key(%v) = %s, want %s", c.addr, got, c.want)
		}
	}
}
