package httpd

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/tempalias/tempalias/metrics"
)

// ConnLimits bound the connections of the public HTTP servers, together,
// so that one client cannot take every file descriptor of the process.
type ConnLimits struct {
	// Max bounds open connections in total; past it a new connection is
	// closed at once (0 means no limit). From three quarters of it on,
	// keep-alive is off and idle connections are closed, until the count
	// is back under half.
	Max int
	// PerClient bounds the open connections of one client address (an
	// IPv4 address or an IPv6 /64); more are closed at once (0 means no
	// limit).
	PerClient int
	// Exempt are never held to PerClient: the trusted proxies, each of
	// which is one address for all its users.
	Exempt []netip.Prefix
	// Metrics counts the connections refused (default: a registry of its
	// own, which nothing serves).
	Metrics *metrics.Metrics
}

// Conns keeps the connections of one or more http.Servers within
// ConnLimits. It counts through each server's ConnState hook, so it works
// whatever the listener (plain, TLS, systemd's socket): a connection is
// judged when the server first sees it, before any byte is read.
type Conns struct {
	lim ConnLimits
	log *slog.Logger

	mu        sync.Mutex
	servers   []*http.Server
	open      int
	perClient map[string]int      // by clientKey
	counted   map[net.Conn]string // clientKey, or "" for an exempt client
	pressure  bool                // keep-alive is off
	stop      chan struct{}       // ends the sweep of a pressure episode

	toggle sync.Mutex // orders the SetKeepAlivesEnabled calls
}

// NewConns returns a counter for lim; Manage puts servers under it.
func NewConns(lim ConnLimits, logger *slog.Logger) *Conns {
	if logger == nil {
		logger = slog.Default()
	}
	if lim.Metrics == nil {
		lim.Metrics = metrics.New()
	}
	return &Conns{lim: lim, log: logger, perClient: make(map[string]int), counted: make(map[net.Conn]string)}
}

// Manage makes srv's connections count against c and returns srv. Call it
// before srv serves.
func (c *Conns) Manage(srv *http.Server) *http.Server {
	c.mu.Lock()
	c.servers = append(c.servers, srv)
	c.mu.Unlock()
	prev := srv.ConnState
	srv.ConnState = func(nc net.Conn, st http.ConnState) {
		c.state(nc, st)
		if prev != nil {
			prev(nc, st)
		}
	}
	return srv
}

// Open is how many connections are counted now.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

func (c *Conns) state(nc net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		c.admit(nc)
	case http.StateClosed, http.StateHijacked:
		c.release(nc)
	}
}

// admit counts nc in or closes it. net/http then finds it closed at its
// first read and ends it quietly.
func (c *Conns) admit(nc net.Conn) {
	addr := parseHostAddr(nc.RemoteAddr().String())
	key := clientKey(addr)
	exempt := c.exempt(addr)
	c.mu.Lock()
	refuse := ""
	switch {
	case c.lim.Max > 0 && c.open >= c.lim.Max:
		refuse = "total"
	case c.lim.PerClient > 0 && !exempt && c.perClient[key] >= c.lim.PerClient:
		refuse = "per-client"
	}
	if refuse != "" {
		c.mu.Unlock()
		// Counted, not logged above debug: a flood would flood the log.
		c.lim.Metrics.ConnsRefused.WithLabelValues("http", refuse).Inc()
		c.log.Debug("http: connection refused", "remote", addr.String(), "limit", refuse)
		nc.Close()
		return
	}
	c.open++
	if exempt {
		key = ""
	} else {
		c.perClient[key]++
	}
	c.counted[nc] = key
	var stop chan struct{}
	if c.lim.Max > 0 && !c.pressure && c.open >= c.lim.Max*3/4 {
		c.pressure = true
		stop = make(chan struct{})
		c.stop = stop
	}
	open := c.open
	c.mu.Unlock()
	if stop != nil {
		c.log.Warn("http: connections near the limit: keep-alive off, idle connections closed", "open", open, "max", c.lim.Max)
		c.keepAliveOff(stop) // before this connection's first response
		go c.sweep(stop)
	}
}

// keepAliveOff turns keep-alive off unless stop is closed.
// SetKeepAlivesEnabled(false) closes the idle connections, and those that
// have sent nothing for five seconds, and makes every response end its
// connection.
func (c *Conns) keepAliveOff(stop <-chan struct{}) {
	c.toggle.Lock()
	defer c.toggle.Unlock()
	select {
	case <-stop:
		return
	default:
	}
	for _, s := range c.serverList() {
		s.SetKeepAlivesEnabled(false)
	}
}

// sweep turns keep-alive off again every second until stop is closed:
// net/http spares a connection idle for less than a second (its next
// request may be on its way), and this catches it at the next round.
func (c *Conns) sweep(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.keepAliveOff(stop)
		}
	}
}

func (c *Conns) serverList() []*http.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers
}

func (c *Conns) release(nc net.Conn) {
	c.mu.Lock()
	key, ok := c.counted[nc]
	if !ok {
		c.mu.Unlock()
		return // refused at admit, or released already
	}
	delete(c.counted, nc)
	c.open--
	if key != "" {
		if c.perClient[key]--; c.perClient[key] <= 0 {
			delete(c.perClient, key)
		}
	}
	recovered := c.pressure && c.open <= c.lim.Max/2
	if recovered {
		c.pressure = false
		close(c.stop)
		c.stop = nil
	}
	servers := c.servers
	c.mu.Unlock()
	if recovered {
		c.log.Info("http: connections back under half the limit: keep-alive on", "max", c.lim.Max)
		c.toggle.Lock()
		for _, s := range servers {
			s.SetKeepAlivesEnabled(true)
		}
		c.toggle.Unlock()
	}
}

func (c *Conns) exempt(addr netip.Addr) bool {
	for _, p := range c.lim.Exempt {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
