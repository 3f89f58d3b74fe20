package httpd

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/tempalias/tempalias/internal/peer"
)

// logRequests writes one line per API call. It logs the route pattern, not
// the path, so ids stay out of the log, and never headers (tokens).
func (a *API) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := chi.RouteContext(r.Context()).RoutePattern()
		a.cfg.Metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(ww.Status())).Inc()
		if !strings.HasPrefix(route, "/aliases") {
			return // static files: their own access log, if any, is the proxy's
		}
		a.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "http",
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", ww.Status()),
			slog.String("remote", a.remoteForLog(r)),
			slog.Duration("duration", time.Since(start)))
	})
}

// recoverJSON turns a panic in a handler into the documented 500 instead of
// a dropped connection, and logs it.
func (a *API) recoverJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// The route, not the path: a link's path is its secret
				// (a confirmation token, a revoke link's mac).
				a.cfg.Logger.Error("panic in HTTP handler", "panic", v, "route", chi.RouteContext(r.Context()).RoutePattern())
				writeError(w, errServer)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the address a request is counted against. The socket's
// peer is the client unless it is a trusted proxy; then X-Forwarded-For is
// read from the right, skipping trusted proxies, and the first other
// address is the client. Addresses further left are the client's to forge.
// A hop may carry a port (198.51.100.7:1234, [2001:db8::1]:1234), as some
// proxies write it. ok is false when a hop a trusted proxy wrote is no
// address at all: the client is then unknown, and counting it against the
// proxy would pool every such client in one bucket.
func (a *API) clientAddr(r *http.Request) (addr netip.Addr, ok bool) {
	peer := parseHostAddr(r.RemoteAddr)
	if !a.trusted(peer) {
		return peer, true
	}
	xff := strings.Join(r.Header.Values("X-Forwarded-For"), ",")
	if strings.TrimSpace(xff) == "" {
		return peer, true // the proxy's own request, or one that forwards nothing
	}
	hops := strings.Split(xff, ",")
	for i := len(hops) - 1; i >= 0; i-- {
		addr, ok := parseHop(hops[i])
		if !ok {
			return netip.Addr{}, false
		}
		if !a.trusted(addr) {
			return addr, true
		}
	}
	return parseHop(hops[0]) // every hop is a trusted proxy
}

// parseHop reads one X-Forwarded-For element: an address, bracketed or
// not, with or without a port.
func parseHop(hop string) (netip.Addr, bool) {
	hop = strings.TrimSpace(hop)
	if len(hop) > 2 && hop[0] == '[' && hop[len(hop)-1] == ']' {
		hop = hop[1 : len(hop)-1]
	}
	addr, err := netip.ParseAddr(hop)
	if err != nil {
		ap, perr := netip.ParseAddrPort(hop)
		if perr != nil {
			return netip.Addr{}, false
		}
		addr = ap.Addr()
	}
	return addr.WithZone("").Unmap(), true
}

// remoteForLog is the client's address as the log line shows it.
func (a *API) remoteForLog(r *http.Request) string {
	if addr, ok := a.clientAddr(r); ok {
		return addr.String()
	}
	return "unknown (X-Forwarded-For of " + parseHostAddr(r.RemoteAddr).String() + ")"
}

// clientKey is what a client's creations and connections are counted
// under: peer.Key, as SMTP counts it.
func clientKey(addr netip.Addr) string { return peer.Key(addr).String() }

func (a *API) trusted(addr netip.Addr) bool {
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func parseHostAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return addr.Unmap()
}
