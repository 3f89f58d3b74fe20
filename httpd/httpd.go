// Package httpd is tempalias's HTTP front end: the JSON API that creates,
// inspects and revokes aliases, with its rate limit, and the mount point for
// the web page. Every error leaves through writeError as the documented
// JSON body with a stable code.
package httpd

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/httprate"
	"github.com/tempalias/tempalias/alias"
)

// Store is what the API needs from the alias store.
type Store interface {
	Create(spec alias.Spec, now time.Time) (alias.Alias, string, error)
	Authorized(id, token string, now time.Time) (alias.Alias, error)
	Revoke(id, token string, now time.Time) error
}

// Config configures the API.
type Config struct {
	Domains         []string // alias domains; new aliases use the first
	Limits          alias.Limits
	CreatePerMinute int            // per client address; 0: no limit
	TrustedProxies  []netip.Prefix // whose X-Forwarded-For is believed
	Static          http.Handler   // serves everything outside /aliases; nil: 404
	Now             func() time.Time
	Logger          *slog.Logger
}

// MaxBodyBytes caps a creation request; a valid one is under 400 bytes.
const MaxBodyBytes = 4 << 10

// API serves the HTTP front end.
type API struct {
	cfg     Config
	store   Store
	limiter *httprate.RateLimiter // nil: no limit
	router  chi.Router
}

// New returns the HTTP front end for st.
func New(cfg Config, st Store) *API {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &API{cfg: cfg, store: st}
	if cfg.CreatePerMinute > 0 {
		a.limiter = httprate.NewRateLimiter(cfg.CreatePerMinute, time.Minute,
			httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
				writeError(w, errRateLimited)
			}))
	}
	r := chi.NewRouter()
	r.Use(a.logRequests, recoverJSON)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errMethodNotAllowed)
	})
	r.Route("/aliases", func(r chi.Router) {
		r.Post("/", a.create)
		r.Get("/{id}", a.get)
		r.Delete("/{id}", a.revoke)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) { writeError(w, errNotFound) })
	})
	if cfg.Static != nil {
		r.Handle("/*", cfg.Static)
	} else {
		r.NotFound(func(w http.ResponseWriter, r *http.Request) { writeError(w, errNotFound) })
	}
	a.router = r
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.router.ServeHTTP(w, r)
}

// NewServer wraps h in an http.Server with timeouts, so that slow or idle
// clients cannot hold connections forever.
func NewServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
