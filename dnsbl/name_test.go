package dnsbl

import (
	"net/netip"
	"testing"
)

func TestQueryName(t *testing.T) {
	tests := []struct{ ip, want string }{
		// rfc 5782:2.1 and 2.4.
		{"192.0.2.99", "99.2.0.192."},
		{"2001:db8:1:2:3:4:567:89ab", "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2."},
		{"0.0.0.0", "0.0.0.0."},
		{"255.255.255.255", "255.255.255.255."},
		{"::", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."},
		{"ffff::f0", "0.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.f.f.f.f."},
	}
	for _, tt := range tests {
		if got := queryName(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("queryName(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}
