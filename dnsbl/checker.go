// Package dnsbl checks client addresses against DNS blocklists (RFC 5782):
// an address is listed by a zone when the A record of its reversed form
// under that zone exists and points into 127.0.0.0/8. A blocklist is advice,
// not a dependency, so every failure — timeout, SERVFAIL, a refused query —
// fails open: the client is treated as not listed and a warning is logged.
package dnsbl

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Resolver looks up A records. *net.Resolver implements it; a
// replacement must report a name that does not exist as a *net.DNSError
// with IsNotFound set, or every unlisted address counts as a failure.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options tune a Checker. The zero value is usable.
type Options struct {
	// Resolver answers the queries (default net.DefaultResolver).
	Resolver Resolver
	// Timeout bounds one Listed call across all zones (default 2s).
	Timeout time.Duration
	// CacheTTL is how long a verdict is remembered per address (default
	// 1m; negative disables the cache).
	CacheTTL time.Duration
	// CacheSize bounds how many addresses are remembered (default 10000).
	CacheSize int
	// CheckLocal also checks loopback, private, link-local and other
	// addresses that are not public unicast; no blocklist lists them, so
	// it is off except in tests.
	CheckLocal bool
	// Logger receives the fail-open warnings (default slog.Default()).
	Logger *slog.Logger
}

// Checker checks addresses against a fixed list of zones. Its methods are
// safe for concurrent use. A nil *Checker lists nothing.
type Checker struct {
	zones      []string
	resolver   Resolver
	timeout    time.Duration
	checkLocal bool
	log        *slog.Logger
	cache      *cache // nil when caching is off
	now        func() time.Time
}

// New returns a Checker for zones such as "zen.spamhaus.org". Blank zones
// are dropped; with none left the Checker never lists and never queries.
func New(zones []string, opts Options) *Checker {
	c := &Checker{
		resolver:   opts.Resolver,
		timeout:    opts.Timeout,
		checkLocal: opts.CheckLocal,
		log:        opts.Logger,
		now:        time.Now,
	}
	for _, z := range zones {
		z = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(z), "."))
		if z != "" {
			c.zones = append(c.zones, z)
		}
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Second
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	ttl, size := opts.CacheTTL, opts.CacheSize
	if ttl == 0 {
		ttl = time.Minute
	}
	if size <= 0 {
		size = 10000
	}
	if ttl > 0 {
		c.cache = newCache(ttl, size)
	}
	return c
}

// verdict is one zone's answer about one address.
type verdict int

const (
	notListed verdict = iota
	listed
	failed // timed out, errored or refused: not listed, but not cacheable
)

// Listed reports whether ip is listed, and by which zone. The zones are
// queried concurrently and the first to list the address wins, so when
// several list it the zone named may differ between calls.
//
// Addresses that are not public unicast are not checked (see
// Options.CheckLocal). An IPv4-mapped IPv6 address is checked as IPv4.
func (c *Checker) Listed(ctx context.Context, ip netip.Addr) (zone string, isListed bool) {
	if c == nil || len(c.zones) == 0 || !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap().WithZone("")
	if !c.checkLocal && (!ip.IsGlobalUnicast() || ip.IsPrivate()) {
		return "", false
	}
	if e, ok := c.cache.get(ip, c.now()); ok {
		return e.zone, e.listed
	}

	// Cancelled on return, which stops the zones still pending once one
	// has listed the address.
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type answer struct {
		zone string
		v    verdict
	}
	answers := make(chan answer, len(c.zones)) // buffered: late answers never block
	name := queryName(ip)
	for _, z := range c.zones {
		go func() { answers <- answer{z, c.query(ctx, ip, name+z+".", z)} }()
	}
	complete := true
	for range c.zones {
		a := <-answers
		switch a.v {
		case listed:
			c.cache.put(ip, entry{zone: a.zone, listed: true}, c.now())
			return a.zone, true
		case failed:
			complete = false
		}
	}
	// A failure is not remembered: the next connection asks again rather
	// than letting an outage whitelist the address for a whole TTL.
	if complete {
		c.cache.put(ip, entry{}, c.now())
	}
	return "", false
}

// query asks one zone about ip, whose query name under that zone is host.
func (c *Checker) query(ctx context.Context, ip netip.Addr, host, zone string) verdict {
	addrs, err := c.resolver.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			return notListed
		case errors.Is(ctx.Err(), context.Canceled):
			// The caller went away or another zone already listed the
			// address: nothing failed.
			return failed
		case ctx.Err() != nil:
			c.warn("dnsbl: lookup timed out; treating as not listed", ip, zone)
		default:
			c.warn("dnsbl: lookup failed; treating as not listed", ip, zone)
		}
		return failed
	}
	refused := false
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case errorCodes.Contains(a):
			refused = true
		case listedCodes.Contains(a):
			return listed
		}
	}
	if refused {
		c.warn("dnsbl: zone refused the query; treating as not listed", ip, zone)
		return failed
	}
	// No answer, or only addresses outside 127.0.0.0/8 such as an ISP
	// resolver that rewrites NXDOMAIN to its own ad server: not listed.
	return notListed
}

var (
	// rfc 5782:2.3: a listing is an A record in 127.0.0.0/8.
	listedCodes = netip.MustParsePrefix("127.0.0.0/8")
	// Spamhaus answers 127.255.255.0/24 for queries it will not serve
	// (252: typo in the zone name, 254: query through a public resolver,
	// 255: rate limited), and other lists copy the convention. These say
	// nothing about the client, so they count as failures, not listings.
	errorCodes = netip.MustParsePrefix("127.255.255.0/24")
)

// warn logs a fail-open lookup once. It names the address and zone and
// nothing more: resolver error text adds server addresses and little else.
func (c *Checker) warn(msg string, ip netip.Addr, zone string) {
	c.log.Warn(msg, "ip", ip.String(), "zone", zone)
}
