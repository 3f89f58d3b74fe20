package httpd_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/httpd"
	"github.com/tempalias/tempalias/static"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
)

var bg = context.Background()

// deliver spends one use of alias id, as a relayed message does.
func deliver(t testing.TB, st store.Engine, id string, now time.Time) {
	t.Helper()
	r, err := st.Reserve(bg, id, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(bg, now); err != nil {
		t.Fatal(err)
	}
}

// webServer is the real router with the real page and a real store, on a
// loopback listener.
type webServer struct {
	*httptest.Server
	store *boltstore.Store
	api   *httpd.API

	mu       sync.Mutex
	requests []*http.Request // every request the browser sent, to check what it sent where
}

// seen returns the requests so far.
func (ws *webServer) seen() []*http.Request {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return slices.Clone(ws.requests)
}

func newWebServer(t testing.TB, mod func(*httpd.Config)) *webServer {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "web.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := httpd.Config{
		Domains: []string{"tempalias.test"},
		Limits:  alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100},
		Static:  httpd.Static(static.FS),
		Logger:  slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	ws := &webServer{store: st, api: httpd.New(cfg, st)}
	validated := httpd.ValidateOpenAPI(t, ws.api)
	ws.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.mu.Lock()
		ws.requests = append(ws.requests, r.Clone(context.Background()))
		ws.mu.Unlock()
		validated.ServeHTTP(w, r)
	}))
	t.Cleanup(ws.Close)
	return ws
}

// get sends a request without the transport's transparent gzip, so the
// test sees exactly what the server sent.
func (ws *webServer) get(t testing.TB, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, ws.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestStaticContentTypes(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<form id="create" action="/aliases" method="post">`},
		{"/index.html", "text/html; charset=utf-8", "<title>tempalias"},
		{"/bookmarklet.html", "text/html; charset=utf-8", "popup.js"},
		{"/app.js", "text/javascript; charset=utf-8", "function bookmarklet("},
		{"/popup.js", "text/javascript; charset=utf-8", "tempalias-ready"},
		{"/style.css", "text/css; charset=utf-8", ":root"},
		{"/favicon.svg", "image/svg+xml; charset=utf-8", "<svg"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := ws.get(t, "GET", tc.path)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if !bytes.Contains(body, []byte(tc.contains)) {
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}
}

func TestStaticETag(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, enc := range []string{"", "gzip"} {
		for _, path := range []string{"/", "/app.js", "/style.css"} {
			resp, _ := ws.get(t, "GET", path, "Accept-Encoding", enc)
			etag := resp.Header.Get("ETag")
			if !regexp.MustCompile(`^"[A-Za-z0-9_-]{16,}(-gz)?"$`).MatchString(etag) {
				t.Fatalf("%s: ETag %q is not a strong content hash", path, etag)
			}
			for _, tc := range []struct {
				inm    string
				status int
			}{
				{etag, 304},
				{"W/" + etag, 304},
				{`"other", ` + etag, 304},
				{"*", 304},
				{`"other"`, 200},
			} {
				resp, body := ws.get(t, "GET", path, "Accept-Encoding", enc, "If-None-Match", tc.inm)
				if resp.StatusCode != tc.status {
					t.Errorf("%s %q If-None-Match %s: status %d, want %d", path, enc, tc.inm, resp.StatusCode, tc.status)
				}
				if tc.status == 304 {
					if len(body) != 0 {
						t.Errorf("%s: 304 with a body", path)
					}
					if resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") == "" {
						t.Errorf("%s: 304 without ETag or Cache-Control: %v", path, resp.Header)
					}
				}
			}
		}
	}
	// The same content hash for the same file, whichever server: the ETag
	// survives restarts and replicas.
	a, _ := newWebServer(t, nil).get(t, "GET", "/style.css")
	b, _ := ws.get(t, "GET", "/style.css")
	if a.Header.Get("ETag") != b.Header.Get("ETag") {
		t.Error("ETag differs between two servers of the same files")
	}
}

func TestStaticGzip(t *testing.T) {
	ws := newWebServer(t, nil)
	_, plain := ws.get(t, "GET", "/app.js")
	for _, tc := range []struct {
		accept string
		gzip   bool
	}{
		{"", false},
		{"gzip", true},
		{"gzip, deflate, br, zstd", true},
		{"GZIP", true},
		{"x-gzip", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0, identity", false},
		{"deflate, gzip;q=0.5", true},
		{"br", false},
		{"identity", false},
		{"*", true},
		{"*;q=0", false},
		{"gzip;q=0, *", false},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			resp, body := ws.get(t, "GET", "/app.js", "Accept-Encoding", tc.accept)
			if v := resp.Header.Get("Vary"); v != "Accept-Encoding" {
				t.Errorf("Vary %q", v)
			}
			enc := resp.Header.Get("Content-Encoding")
			if (enc == "gzip") != tc.gzip {
				t.Fatalf("Content-Encoding %q, want gzip: %v", enc, tc.gzip)
			}
			if !tc.gzip {
				if !bytes.Equal(body, plain) {
					t.Error("identity body differs")
				}
				return
			}
			if len(body) >= len(plain) {
				t.Errorf("gzip body %d bytes, plain %d", len(body), len(plain))
			}
			if resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %q for %d bytes", resp.Header.Get("Content-Length"), len(body))
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			unz, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(unz, plain) {
				t.Errorf("gzip body does not decompress to the file (err %v)", err)
			}
		})
	}
	g, _ := ws.get(t, "GET", "/app.js", "Accept-Encoding", "gzip")
	p, _ := ws.get(t, "GET", "/app.js")
	if g.Header.Get("ETag") == p.Header.Get("ETag") {
		t.Error("gzip and identity representations share an ETag")
	}
}

func TestStaticCacheControl(t *testing.T) {
	ws := newWebServer(t, nil)
	_, page := ws.get(t, "GET", "/")
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]+\?v=[^"]+)"`).FindAllSubmatch(page, -1)
	if len(refs) < 3 { // favicon, style, script
		t.Fatalf("index.html names %d fingerprinted assets, want 3:\n%s", len(refs), page)
	}
	for _, tc := range []struct{ path, cache string }{
		{"/", "no-cache"},
		{"/bookmarklet.html", "no-cache"},
		{"/app.js", "no-cache"},           // no version: may change
		{"/app.js?v=stale", "no-cache"},   // an old page asking: current file, revalidated
		{"/nothing-here", "no-cache"},     // the 404 page
		{string(refs[0][1]), "immutable"}, // the versions the page names
		{string(refs[1][1]), "immutable"},
		{string(refs[2][1]), "immutable"},
	} {
		resp, _ := ws.get(t, "GET", tc.path)
		cc := resp.Header.Get("Cache-Control")
		switch tc.cache {
		case "no-cache":
			if cc != "no-cache" {
				t.Errorf("%s: Cache-Control %q, want no-cache", tc.path, cc)
			}
		case "immutable":
			if !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
				t.Errorf("%s: Cache-Control %q, want a long-lived immutable one", tc.path, cc)
			}
		}
	}
}

func TestStaticHead(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, enc := range []string{"", "gzip"} {
		get, getBody := ws.get(t, "GET", "/", "Accept-Encoding", enc)
		head, headBody := ws.get(t, "HEAD", "/", "Accept-Encoding", enc)
		if head.StatusCode != 200 || len(headBody) != 0 {
			t.Errorf("HEAD: status %d, %d body bytes", head.StatusCode, len(headBody))
		}
		for _, k := range []string{"Content-Type", "Content-Length", "ETag", "Content-Encoding", "Cache-Control"} {
			if head.Header.Get(k) != get.Header.Get(k) {
				t.Errorf("%q HEAD %s %q, GET %q", enc, k, head.Header.Get(k), get.Header.Get(k))
			}
		}
		if get.Header.Get("Content-Length") != strconv.Itoa(len(getBody)) {
			t.Errorf("GET Content-Length %q for %d bytes", get.Header.Get("Content-Length"), len(getBody))
		}
	}
	head, _ := ws.get(t, "HEAD", "/missing")
	if head.StatusCode != 404 {
		t.Errorf("HEAD /missing: %d", head.StatusCode)
	}
}

func TestStaticNotFound(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, path := range []string{"/missing", "/a/b/c.js", "/404.html", "/static.go", "/..%2f..%2fetc/passwd", "/app.js/"} {
		resp, body := ws.get(t, "GET", path)
		if resp.StatusCode != 404 {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if !bytes.Contains(body, []byte("Nothing here")) {
			t.Errorf("%s: not the 404 page: %.200s", path, body)
		}
	}
	// The API keeps its JSON errors under /aliases.
	resp, body := ws.get(t, "GET", "/aliases/abc/def")
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("/aliases/abc/def: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestStaticMethods(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		resp, _ := ws.get(t, m, "/app.js")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /app.js: %d, Allow %q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

func TestStaticSecurityHeaders(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, path := range []string{"/", "/app.js", "/bookmarklet.html", "/missing"} {
		resp, _ := ws.get(t, "GET", path)
		checkPageHeaders(t, path, resp.Header)
	}
}

func checkPageHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") {
		t.Errorf("%s: CSP %q allows unsafe sources", what, csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, h.Get("X-Content-Type-Options"))
	}
	if h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("%s: Referrer-Policy %q", what, h.Get("Referrer-Policy"))
	}
	if h.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("%s: CORS with credentials", what)
	}
}

// The benchmarks compare the prepared handler, through the whole router,
// with a bare http.FileServer of the same files, on real loopback
// connections from 100 concurrent clients that accept gzip (which the
// FileServer ignores). Compare the req/s metrics.
func BenchmarkStatic(b *testing.B) {
	ws := newWebServer(b, nil)
	benchmarkServer(b, ws.URL)
}

func BenchmarkFileServer(b *testing.B) {
	srv := httptest.NewServer(http.FileServer(http.FS(static.FS)))
	b.Cleanup(srv.Close)
	benchmarkServer(b, srv.URL)
}

func benchmarkServer(b *testing.B, base string) {
	paths := []string{"/", "/app.js", "/style.css", "/popup.js"}
	tr := &http.Transport{MaxIdleConns: 200, MaxIdleConnsPerHost: 200, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	b.SetParallelism((100 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req, _ := http.NewRequest("GET", base+paths[i%len(paths)], nil)
			req.Header.Set("Accept-Encoding", "gzip, deflate, br")
			i++
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
