package httpd

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// connsServer serves "ok" on a real listener on 127.0.0.1 under lim.
func connsServer(t *testing.T, lim ConnLimits) (addr string, c *Conns) {
	t.Helper()
	c = NewConns(lim, slog.New(slog.DiscardHandler))
	srv := c.Manage(NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), slog.New(slog.DiscardHandler)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), c
}

// httpConn is one client connection, from a loopback source address of
// the test's choosing (127.0.0.2 is loopback too).
type httpConn struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialFrom(t *testing.T, src, addr string) *httpConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &httpConn{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// get sends a GET and returns the response, or nil if the connection is
// closed instead.
func (c *httpConn) get() *http.Response {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil
	}
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

func (c *httpConn) mustGet() *http.Response {
	c.t.Helper()
	res := c.get()
	if res == nil || res.StatusCode != 200 {
		c.t.Fatalf("GET from %s: %v, want 200", c.nc.LocalAddr(), res)
	}
	return res
}

// closedByServer reports whether the server hung up: reading finds EOF
// or a reset, not a timeout.
func (c *httpConn) closedByServer() bool {
	_, err := c.r.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// waitOpen polls until ok(the connections counted) holds.
func waitOpen(t *testing.T, c *Conns, what string, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(c.Open()) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted, want %s", c.Open(), what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline, not synchronisation by sleeping
	}
}

// One client's idle keep-alive connections beyond its share are closed
// while another client is served; a trusted proxy has no share.
func TestConnsPerClient(t *testing.T) {
	addr, conns := connsServer(t, ConnLimits{Max: 40, PerClient: 3, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}})
	var mine []*httpConn
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		c.mustGet() // and then idle, kept alive
		mine = append(mine, c)
	}
	refused := counterValue(t, conns.lim.Metrics.ConnsRefused.WithLabelValues("http", "per-client"))
	over := dialFrom(t, "127.0.0.1", addr)
	if res := over.get(); res != nil {
		t.Fatalf("fourth connection from one client got %s, want it closed", res.Status)
	}
	if n := counterValue(t, conns.lim.Metrics.ConnsRefused.WithLabelValues("http", "per-client")) - refused; n != 1 {
		t.Errorf("%v per-client refusals counted, want 1", n)
	}
	dialFrom(t, "127.0.0.2", addr).mustGet()
	for range 5 {
		dialFrom(t, "127.0.0.3", addr).mustGet()
	}
	// The share frees up as the client's connections end.
	mine[0].nc.Close()
	waitOpen(t, conns, "8", func(n int) bool { return n == 3+1+5-1 })
	dialFrom(t, "127.0.0.1", addr).mustGet()
}

// Past Max every new connection is closed, whoever it comes from.
func TestConnsMax(t *testing.T) {
	addr, conns := connsServer(t, ConnLimits{Max: 4})
	for range 4 {
		// Silent: a new connection is not closed as idle for its first
		// seconds, so these hold their places.
		dialFrom(t, "127.0.0.1", addr)
	}
	waitOpen(t, conns, "4", func(n int) bool { return n == 4 })
	if res := dialFrom(t, "127.0.0.2", addr).get(); res != nil {
		t.Fatalf("fifth connection got %s, want it closed", res.Status)
	}
}

// From three quarters of Max, idle keep-alive connections are closed, until
// the count is back under half.
func TestConnsPressureClosesIdle(t *testing.T) {
	addr, _ := connsServer(t, ConnLimits{Max: 8})
	closed := make(chan bool, 3)
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		if res := c.mustGet(); res.Close {
			t.Fatal("keep-alive off with 3 of 8 connections open")
		}
		go func() { closed <- c.closedByServer() }() // by the server, or not within the conn's deadline
	}
	for range 3 {
		dialFrom(t, "127.0.0.2", addr) // silent: not idle, new
	}
	// 6 of 8 open: idle connections are closed until 4 are left, so at
	// least two of the three (IdleTimeout alone would wait minutes).
	n := 0
	for range 3 {
		if <-closed {
			if n++; n == 2 {
				return
			}
		}
	}
	t.Fatalf("%d idle connections closed under pressure, want at least 2", n)
}

// Under pressure every response ends its connection; once the count is
// back under half, keep-alive is back.
func TestConnsPressureNoKeepAlive(t *testing.T) {
	addr, conns := connsServer(t, ConnLimits{Max: 8})
	var silent []*httpConn
	for range 6 {
		silent = append(silent, dialFrom(t, "127.0.0.2", addr))
	}
	waitOpen(t, conns, "6", func(n int) bool { return n == 6 })
	if res := dialFrom(t, "127.0.0.1", addr).mustGet(); !res.Close {
		t.Error("keep-alive still on with 7 of 8 connections open")
	}
	for _, c := range silent {
		c.nc.Close()
	}
	waitOpen(t, conns, "0", func(n int) bool { return n == 0 })
	if res := dialFrom(t, "127.0.0.1", addr).mustGet(); res.Close {
		t.Error("keep-alive still off with every connection gone")
	}
}
