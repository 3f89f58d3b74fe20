// Package httpd is tempalias's HTTP front end: the JSON API that creates,
// inspects and revokes aliases, with its rate limit, the limits in force
// (/limits, which the page states), and the mount point for the web page.
// Every error leaves through writeError as the documented JSON body with a
// stable code.
package httpd

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/httprate"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/metrics"
	"github.com/tempalias/tempalias/store"
)

// Store is what the API needs from the alias store; every store.Engine
// satisfies it. A pending alias is made by Create with store.Pending().
type Store interface {
	Create(ctx context.Context, spec alias.Spec, now time.Time, opts ...store.CreateOption) (store.Created, error)
	Authorized(ctx context.Context, id, token string, now time.Time) (alias.Alias, error)
	Revoke(ctx context.Context, id, token string, now time.Time) error
	// Withdraw revokes a pending alias whose confirmation mail could not
	// be sent, giving its target's day its counts back.
	Withdraw(ctx context.Context, id, token string, now time.Time) error
	// Held and RevokeID serve revoke links, whose mac stands for the token.
	Held(ctx context.Context, id string, now time.Time) (alias.Alias, error)
	RevokeID(ctx context.Context, id string, now time.Time) error
	Change(ctx context.Context, id, token string, c alias.Change, now time.Time) (alias.Alias, error)
	TargetVerified(ctx context.Context, target string, now time.Time) (bool, error)
	Confirm(ctx context.Context, token string, now time.Time, remember time.Duration) (alias.Alias, error)
}

// Blocklist tells whether a client address is listed (a DNSBL).
type Blocklist interface {
	Listed(ctx context.Context, ip netip.Addr) (zone string, listed bool)
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
	Metrics         *metrics.Metrics // requests and creations counted; nil: a registry of its own, which nothing serves

	// AliasesPerTarget bounds the live aliases forwarding to one address;
	// CreationsPerTargetPerDay bounds how many are made for it a day (a
	// UTC day, store.Day). The store counts both, in the creating
	// transaction, so they hold across restarts and hosts. 0: no limit.
	AliasesPerTarget         int
	CreationsPerTargetPerDay int
	// Blocklist refuses creations from listed clients (403 blocked); nil:
	// no check.
	Blocklist Blocklist
	// LinkKey is the store's key for revoke links (store.Engine.LinkKey);
	// nil: every link is refused.
	LinkKey []byte
	// Verify, when set, makes aliases for targets that have not confirmed
	// yet start pending: see verify.go.
	Verify *Verify
}

// MaxBodyBytes caps a creation request; a valid one is under 400 bytes.
const MaxBodyBytes = 4 << 10

// API serves the HTTP front end.
type API struct {
	cfg    Config
	store  Store
	limits atomic.Pointer[limits] // swapped whole by SetLimits
	router chi.Router
}

// New returns the HTTP front end for st.
func New(cfg Config, st Store) *API {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	a := &API{cfg: cfg, store: st}
	a.SetLimits(cfg.Limits, cfg.CreatePerMinute)
	r := chi.NewRouter()
	r.Use(a.logRequests, a.recoverJSON)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		// rfc 9110:15.5.6: a 405 names the methods that would work.
		allow := "GET, PATCH, DELETE"
		if strings.TrimSuffix(r.URL.Path, "/") == "/aliases" {
			allow = "POST"
		}
		w.Header().Set("Allow", allow)
		writeError(w, errMethodNotAllowed)
	})
	r.Route("/aliases", func(r chi.Router) {
		r.Post("/", a.create)
		r.Get("/{id}", a.get)
		r.Patch("/{id}", a.change)
		r.Delete("/{id}", a.revoke)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) { writeError(w, errNotFound) })
	})
	r.Get("/openapi.json", serveOpenAPI)
	r.Get("/limits", a.serveLimits)
	if cfg.Verify != nil {
		r.Get("/confirm/{token}", a.confirmPage)
		r.Post("/confirm/{token}", a.confirm)
	}
	r.Get("/revoke/{id}/{mac}", a.revokePage)
	r.Post("/revoke/{id}/{mac}", a.revokeByLink)
	if cfg.Static != nil {
		r.Handle("/*", cfg.Static)
	} else {
		r.NotFound(func(w http.ResponseWriter, r *http.Request) { writeError(w, errNotFound) })
	}
	a.router = r
	return a
}

// limits are the bounds that SetLimits can change while serving.
type limits struct {
	request   alias.Limits
	perClient *httprate.RateLimiter // nil: no limit
}

// SetLimits replaces the request bounds and the per-client creation limit
// (a new limit starts with fresh counts). Requests in flight keep the
// limits they started with.
func (a *API) SetLimits(l alias.Limits, createPerMinute int) {
	next := &limits{request: l}
	if createPerMinute > 0 {
		next.perClient = httprate.NewRateLimiter(createPerMinute, time.Minute,
			httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
				writeError(w, errRateLimited)
			}))
	}
	a.limits.Store(next)
}

// Limits are the request bounds in force.
func (a *API) Limits() alias.Limits { return a.limits.Load().request }

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
