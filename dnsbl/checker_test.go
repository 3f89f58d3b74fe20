package dnsbl

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// reply is how the test server answers one query name.
type reply int

const (
	nxdomain reply = iota // the default
	listing               // 127.0.0.2
	silence               // no answer at all
	servfail              // SERVFAIL
	refusal               // 127.255.255.254, Spamhaus's "public resolver" code
	foreign               // 198.51.100.1, as from a resolver that rewrites NXDOMAIN
)

// dnsServer is a real DNS server on loopback UDP that answers A queries
// from a table and counts the queries per name.
type dnsServer struct {
	addr    string
	replies map[string]reply // by lower-case FQDN

	mu      sync.Mutex
	queries map[string]int
}

func startDNS(t *testing.T, replies map[string]reply) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String(), replies: replies, queries: make(map[string]int)}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("dns server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("dns server did not start")
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("dns server shutdown: %v", err)
		}
	})
	return s
}

func (s *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name]++
	s.mu.Unlock()

	m := new(dns.Msg)
	m.SetReply(req)
	a := func(ip string) {
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(ip),
			})
		}
	}
	switch s.replies[name] {
	case nxdomain:
		m.Rcode = dns.RcodeNameError
	case listing:
		a("127.0.0.2")
	case silence:
		return
	case servfail:
		m.Rcode = dns.RcodeServerFailure
	case refusal:
		a("127.255.255.254")
	case foreign:
		a("198.51.100.1")
	}
	w.WriteMsg(m)
}

func (s *dnsServer) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[name]
}

func (s *dnsServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

// resolver sends every query to s, whatever /etc/resolv.conf says.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "udp", s.addr)
		},
	}
}

// logRecorder keeps every log record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

func (h *logRecorder) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.records...)
}

// testTimeout is the timeout of the cases that wait on a silent server.
// Every other case gets answerTimeout: its answer comes from loopback at
// once, and a short bound there failed under load (two cores shared by
// several race-enabled test runs), not for any fault of the checker.
const (
	testTimeout   = 200 * time.Millisecond
	answerTimeout = 10 * time.Second
)

func newChecker(t *testing.T, s *dnsServer, zones []string, opts Options) (*Checker, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	opts.Resolver = s.resolver()
	opts.Logger = slog.New(rec)
	if opts.Timeout == 0 {
		opts.Timeout = answerTimeout
	}
	return New(zones, opts), rec
}

func TestListed(t *testing.T) {
	s := startDNS(t, map[string]reply{
		"1.2.0.192.bl.test.": listing,
		"2.2.0.192.bl.test.": nxdomain,
		"3.2.0.192.bl.test.": silence,
		"4.2.0.192.bl.test.": servfail,
		"5.2.0.192.bl.test.": refusal,
		"6.2.0.192.bl.test.": foreign,
		// 2001:db8::1, nibble by nibble from the end.
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test.": listing,
		"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test.": silence,
	})
	tests := []struct {
		name   string
		ip     string
		listed bool
		warn   string // the fail-open warning logged, if any
	}{
		{"listed", "192.0.2.1", true, ""},
		{"nxdomain", "192.0.2.2", false, ""},
		{"timeout", "192.0.2.3", false, "timed out"},
		{"servfail", "192.0.2.4", false, "lookup failed"},
		{"refused", "192.0.2.5", false, "refused"},
		{"outside 127/8", "192.0.2.6", false, ""},
		{"ipv6 listed", "2001:db8::1", true, ""},
		{"ipv6 timeout", "2001:db8::2", false, "timed out"},
		{"ipv4-mapped", "::ffff:192.0.2.1", true, ""},
		{"ipv6 zone dropped", "2001:db8::1%eth0", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := answerTimeout
			if tt.warn == "timed out" {
				timeout = testTimeout
			}
			c, rec := newChecker(t, s, []string{"bl.test"}, Options{CacheTTL: -1, Timeout: timeout})
			start := time.Now()
			zone, listed := c.Listed(t.Context(), netip.MustParseAddr(tt.ip))
			// Fail open within the timeout, with slack for -race.
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("Listed took %v with timeout %v", d, timeout)
			}
			if listed != tt.listed {
				t.Errorf("Listed(%s) = %v, want %v", tt.ip, listed, tt.listed)
			}
			if want := map[bool]string{true: "bl.test"}[tt.listed]; zone != want {
				t.Errorf("Listed(%s) zone = %q, want %q", tt.ip, zone, want)
			}
			checkWarning(t, rec, tt.warn, netip.MustParseAddr(tt.ip).Unmap().WithZone(""), "bl.test")
		})
	}
}

// checkWarning asserts that rec holds exactly one warning containing want,
// naming ip and zone and nothing else, or no record at all if want is "".
func checkWarning(t *testing.T, rec *logRecorder, want string, ip netip.Addr, zone string) {
	t.Helper()
	records := rec.all()
	if want == "" {
		for _, r := range records {
			t.Errorf("unexpected log: %s", r.Message)
		}
		return
	}
	if len(records) != 1 {
		t.Fatalf("got %d log records, want 1", len(records))
	}
	r := records[0]
	if r.Level != slog.LevelWarn || !strings.Contains(r.Message, want) {
		t.Errorf("log = %v %q, want a warning containing %q", r.Level, r.Message, want)
	}
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	if len(attrs) != 2 || attrs["ip"] != ip.String() || attrs["zone"] != zone {
		t.Errorf("log attrs = %v, want only ip=%s zone=%s", attrs, ip, zone)
	}
}

func TestListedZones(t *testing.T) {
	s := startDNS(t, map[string]reply{
		"1.2.0.192.a.test.": nxdomain,
		"1.2.0.192.b.test.": listing,
		"1.2.0.192.c.test.": silence,
		"2.2.0.192.a.test.": nxdomain,
		"2.2.0.192.b.test.": servfail,
	})
	t.Run("one of several lists", func(t *testing.T) {
		// A long timeout: the listing must not wait for the silent zone.
		c, rec := newChecker(t, s, []string{"a.test", "B.test.", " ", "c.test"}, Options{Timeout: 10 * time.Second})
		start := time.Now()
		zone, listed := c.Listed(t.Context(), netip.MustParseAddr("192.0.2.1"))
		if !listed || zone != "b.test" {
			t.Errorf("Listed = %q, %v; want b.test, true", zone, listed)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Listed waited %v for the silent zone", d)
		}
		if n := s.count("1.2.0.192.b.test."); n != 1 {
			t.Errorf("%d queries for b.test, want 1", n)
		}
		// The silent zone was abandoned, not failed: no warning.
		checkWarning(t, rec, "", netip.Addr{}, "")
	})
	t.Run("one fails, none lists", func(t *testing.T) {
		c, rec := newChecker(t, s, []string{"a.test", "b.test"}, Options{})
		if zone, listed := c.Listed(t.Context(), netip.MustParseAddr("192.0.2.2")); listed {
			t.Errorf("Listed = %q, true; want not listed", zone)
		}
		checkWarning(t, rec, "lookup failed", netip.MustParseAddr("192.0.2.2"), "b.test")
	})
}

func TestListedCache(t *testing.T) {
	s := startDNS(t, map[string]reply{
		"1.2.0.192.bl.test.": listing,
		"2.2.0.192.bl.test.": nxdomain,
		"3.2.0.192.bl.test.": servfail,
	})
	ip1, ip2, ip3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	q1, q2, q3 := "1.2.0.192.bl.test.", "2.2.0.192.bl.test.", "3.2.0.192.bl.test."

	c, _ := newChecker(t, s, []string{"bl.test"}, Options{CacheTTL: time.Minute, CacheSize: 2})
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now }
	listed := func(ip netip.Addr, want bool) {
		t.Helper()
		if _, got := c.Listed(t.Context(), ip); got != want {
			t.Fatalf("Listed(%s) = %v, want %v", ip, got, want)
		}
	}
	queries := func(name string, want int) {
		t.Helper()
		if n := s.count(name); n != want {
			t.Fatalf("%d queries for %s, want %d", n, name, want)
		}
	}

	// Listed and unlisted verdicts are remembered; the mapped form of an
	// address shares its entry.
	listed(ip1, true)
	listed(ip1, true)
	listed(netip.AddrFrom16(ip1.As16()), true)
	queries(q1, 1)
	listed(ip2, false)
	listed(ip2, false)
	queries(q2, 1)

	// A failure is not remembered.
	listed(ip3, false)
	n := s.count(q3)
	listed(ip3, false)
	if s.count(q3) <= n {
		t.Fatalf("failed lookup of %s was cached", ip3)
	}

	// Entries expire after the TTL.
	now = now.Add(time.Minute)
	listed(ip1, true)
	queries(q1, 2)

	// At most CacheSize addresses are kept, the oldest dropped first.
	now = now.Add(time.Second)
	listed(ip2, false) // expired: asks again; the cache holds ip1, ip2
	queries(q2, 2)
	listed(netip.MustParseAddr("192.0.2.4"), false) // pushes ip1 out
	listed(ip2, false)
	queries(q2, 2)
	listed(ip1, true)
	queries(q1, 3)
}

func TestListedNotChecked(t *testing.T) {
	s := startDNS(t, map[string]reply{"2.0.0.127.bl.test.": listing})
	t.Run("local addresses", func(t *testing.T) {
		c, _ := newChecker(t, s, []string{"bl.test"}, Options{})
		for _, ip := range []string{"127.0.0.2", "10.1.2.3", "192.168.1.1", "169.254.1.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.2"} {
			if _, listed := c.Listed(t.Context(), netip.MustParseAddr(ip)); listed {
				t.Errorf("Listed(%s) = true", ip)
			}
		}
		if _, listed := c.Listed(t.Context(), netip.Addr{}); listed {
			t.Error("Listed(zero Addr) = true")
		}
		if n := s.total(); n != 0 {
			t.Errorf("%d queries for local addresses, want 0", n)
		}
	})
	t.Run("CheckLocal", func(t *testing.T) {
		c, _ := newChecker(t, s, []string{"bl.test"}, Options{CheckLocal: true})
		if zone, listed := c.Listed(t.Context(), netip.MustParseAddr("127.0.0.2")); !listed || zone != "bl.test" {
			t.Errorf("Listed(127.0.0.2) = %q, %v; want bl.test, true", zone, listed)
		}
	})
	t.Run("no zones", func(t *testing.T) {
		before := s.total()
		for _, zones := range [][]string{nil, {"", " ."}} {
			c, _ := newChecker(t, s, zones, Options{CheckLocal: true})
			if _, listed := c.Listed(t.Context(), netip.MustParseAddr("127.0.0.2")); listed {
				t.Errorf("Listed with zones %q = true", zones)
			}
		}
		var nilChecker *Checker
		if _, listed := nilChecker.Listed(t.Context(), netip.MustParseAddr("127.0.0.2")); listed {
			t.Error("nil Checker listed")
		}
		if n := s.total() - before; n != 0 {
			t.Errorf("%d queries with no zones, want 0", n)
		}
	})
}

// A caller that gives up is not a DNS failure: not listed, nothing
// logged, nothing cached.
func TestListedCallerCancels(t *testing.T) {
	s := startDNS(t, map[string]reply{"1.2.0.192.bl.test.": silence})
	c, rec := newChecker(t, s, []string{"bl.test"}, Options{Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan bool)
	go func() {
		_, listed := c.Listed(ctx, netip.MustParseAddr("192.0.2.1"))
		done <- listed
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.count("1.2.0.192.bl.test.") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no query reached the server")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case listed := <-done:
		if listed {
			t.Error("listed after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listed ignored the cancelled context")
	}
	checkWarning(t, rec, "", netip.Addr{}, "")
	if _, ok := c.cache.get(netip.MustParseAddr("192.0.2.1"), time.Now()); ok {
		t.Error("abandoned lookup was cached")
	}
}

func TestListedConcurrent(t *testing.T) {
	s := startDNS(t, map[string]reply{"1.2.0.192.bl.test.": listing})
	c, _ := newChecker(t, s, []string{"bl.test", "other.test"}, Options{CacheSize: 3})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%5)})
			if _, listed := c.Listed(t.Context(), ip); listed != (i%5 == 0) {
				t.Errorf("Listed(%s) = %v", ip, listed)
			}
		})
	}
	wg.Wait()
}
