package httpd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/syncbuf"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
)

var testNow = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

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

// clock is an adjustable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type testAPI struct {
	*httptest.Server
	store *boltstore.Store
	clock *clock
}

func newTestAPI(t *testing.T, mod func(*Config)) *testAPI {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "t.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: testNow}
	cfg := Config{
		Domains: []string{"tempalias.test", "alt.test"},
		Limits:  alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100},
		Now:     clk.Now,
		LinkKey: st.LinkKey(),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv := httptest.NewServer(ValidateOpenAPI(t, New(cfg, st)))
	t.Cleanup(srv.Close)
	return &testAPI{srv, st, clk}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (ta *testAPI) do(t *testing.T, method, path, ctype, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, ta.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := response{status: res.StatusCode, header: res.Header, raw: string(b)}
	if len(b) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: response is not JSON: %v: %q", method, path, err, b)
		}
	}
	return r
}

const jsonType = "application/json"

func TestCreate(t *testing.T) {
	ta := newTestAPI(t, nil)
	r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com","days": 3,"max-usage": 5}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	id, _ := r.body["id"].(string)
	if !alias.ValidID(id) {
		t.Fatalf("bad id %q", id)
	}
	if got := r.header.Get("Location"); got != "/aliases/"+id {
		t.Errorf("Location = %q", got)
	}
	want := map[string]any{
		"alias":     id + "@tempalias.test",
		"target":    "t@example.com",
		"expires":   "2026-11-25T08:00:00Z",
		"max-usage": 5.0,
		"remaining": 5.0,
		"lifetime":  "It stops working after 3 days or 5 messages, whichever comes first.",
	}
	for k, v := range want {
		if r.body[k] != v {
			t.Errorf("%s = %v, want %v", k, r.body[k], v)
		}
	}
	token, _ := r.body["token"].(string)
	if len(token) < 20 {
		t.Fatalf("token %q too short", token)
	}

	// The stored alias matches, and the token is kept only as a hash.
	a, err := ta.store.Get(bg, id, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if a.Target != "t@example.com" || a.MaxUsage != 5 || !a.Expires.Equal(testNow.Add(72*time.Hour)) {
		t.Errorf("stored %+v", a)
	}
	if strings.Contains(string(a.TokenHash), token) || !a.TokenMatches(token) {
		t.Errorf("token not stored as its hash")
	}

	// GET with the token shows it without the token.
	g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token)
	if g.status != 200 || g.body["id"] != id || g.body["remaining"] != 5.0 || g.body["token"] != nil {
		t.Fatalf("GET: %d %s", g.status, g.raw)
	}
	// DELETE revokes; afterwards it is gone for GET, DELETE and the store.
	if d := ta.do(t, "DELETE", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); d.status != 204 {
		t.Fatalf("DELETE: %d %s", d.status, d.raw)
	}
	if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); g.status != 404 {
		t.Errorf("GET after revoke: %d", g.status)
	}
	if d := ta.do(t, "DELETE", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); d.status != 404 {
		t.Errorf("second DELETE: %d", d.status)
	}
	if _, err := ta.store.Reserve(bg, id, testNow); err != alias.ErrNotFound {
		t.Errorf("Reserve after revoke: %v", err)
	}
}

// TestUsedUpForHolder: an alias whose uses are delivered refuses mail, but
// its token holder still sees it until it expires, with the mail refused
// since, and may revoke it; without the token it is a plain 404.
func TestUsedUpForHolder(t *testing.T) {
	ta := newTestAPI(t, nil)
	r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com","days":2,"max-usage":1}`)
	id, token := r.body["id"].(string), r.body["token"].(string)
	deliver(t, ta.store, id, testNow)
	for range 2 {
		if _, err := ta.store.Reserve(bg, id, testNow); err != alias.ErrNotFound {
			t.Fatalf("Reserve of a used-up alias: %v", err)
		}
	}
	g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token)
	if g.status != 200 || g.body["status"] != "used-up" || g.body["relayed"] != 1.0 || g.body["refused"] != 2.0 || g.body["remaining"] != 0.0 {
		t.Fatalf("GET of a used-up alias: %d %s", g.status, g.raw)
	}
	unknown := ta.do(t, "GET", "/aliases/zzzzzz", "", "", "Authorization", "Bearer "+token)
	for _, tok := range []string{"", "wrong"} {
		if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+tok); g.status != 404 || g.raw != unknown.raw {
			t.Errorf("GET with token %q: %d %s, want %s", tok, g.status, g.raw, unknown.raw)
		}
	}
	if d := ta.do(t, "DELETE", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); d.status != 204 {
		t.Fatalf("DELETE of a used-up alias: %d %s", d.status, d.raw)
	}
	if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); g.status != 404 {
		t.Errorf("GET after revoking: %d %s", g.status, g.raw)
	}

	// At expiry it is gone for its holder too, as DESIGN says.
	r = ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com","days":1,"max-usage":1}`)
	id, token = r.body["id"].(string), r.body["token"].(string)
	deliver(t, ta.store, id, testNow)
	ta.clock.Add(24 * time.Hour)
	if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); g.status != 404 || g.raw != unknown.raw {
		t.Errorf("GET of a used-up alias at expiry: %d %s", g.status, g.raw)
	}
}

func TestCreateDefaults(t *testing.T) {
	ta := newTestAPI(t, nil)
	r := ta.do(t, "POST", "/aliases", "application/json; charset=utf-8", `{"target":"T@Example.COM"}`)
	if r.status != 201 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if r.body["expires"] != "2026-11-25T08:00:00Z" {
		t.Errorf("expires = %v, want default 3 days", r.body["expires"])
	}
	if v, ok := r.body["max-usage"]; !ok || v != nil {
		t.Errorf("max-usage = %v (present %v), want null", v, ok)
	}
	if v, ok := r.body["remaining"]; !ok || v != nil {
		t.Errorf("remaining = %v (present %v), want null", v, ok)
	}
	if r.body["target"] != "T@example.com" {
		t.Errorf("target = %v, want domain lower-cased, local part kept", r.body["target"])
	}
}

func TestCreateErrors(t *testing.T) {
	huge := `{"target":"t@example.com","days":3,"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	tests := []struct {
		name, ctype, body string
		status            int
		code              string
	}{
		{"days as string", jsonType, `{"target":"t@example.com","days":"3"}`, 400, "invalid-data"},
		{"days fraction", jsonType, `{"target":"t@example.com","days":0.5}`, 400, "invalid-data"},
		{"days 3.0", jsonType, `{"target":"t@example.com","days":3.0}`, 400, "invalid-data"},
		{"days exponent", jsonType, `{"target":"t@example.com","days":1e1}`, 400, "invalid-data"},
		{"days negative", jsonType, `{"target":"t@example.com","days":-1}`, 400, "invalid-data"},
		{"days zero", jsonType, `{"target":"t@example.com","days":0}`, 400, "invalid-data"},
		{"days over max", jsonType, `{"target":"t@example.com","days":61}`, 400, "invalid-data"},
		{"days huge", jsonType, `{"target":"t@example.com","days":99999999999999999999999}`, 400, "invalid-data"},
		{"days bool", jsonType, `{"target":"t@example.com","days":true}`, 400, "invalid-data"},
		{"max-usage zero", jsonType, `{"target":"t@example.com","max-usage":0}`, 400, "invalid-data"},
		{"max-usage over", jsonType, `{"target":"t@example.com","max-usage":101}`, 400, "invalid-data"},
		{"max-usage array", jsonType, `{"target":"t@example.com","max-usage":[1]}`, 400, "invalid-data"},
		{"unknown field", jsonType, `{"target":"t@example.com","foo":1}`, 400, "invalid-data"},
		{"case-folded field", jsonType, `{"Target":"t@example.com"}`, 400, "invalid-data"},
		{"duplicate field", jsonType, `{"target":"t@example.com","target":"u@example.com"}`, 400, "invalid-data"},
		{"duplicate days", jsonType, `{"target":"t@example.com","days":1,"days":2}`, 400, "invalid-data"},
		{"empty body", jsonType, ``, 400, "invalid-data"},
		{"whitespace body", jsonType, "  \n", 400, "invalid-data"},
		{"broken json", jsonType, `{"target":"t@example.com"`, 400, "invalid-data"},
		{"not an object", jsonType, `["t@example.com"]`, 400, "invalid-data"},
		{"null body", jsonType, `null`, 400, "invalid-data"},
		{"trailing garbage", jsonType, `{"target":"t@example.com"} x`, 400, "invalid-data"},
		{"two objects", jsonType, `{"target":"t@example.com"}{}`, 400, "invalid-data"},
		{"missing target", jsonType, `{"days":3}`, 400, "invalid-data"},
		{"target number", jsonType, `{"target":5}`, 400, "invalid-data"},
		{"target CRLF", jsonType, `{"target":"t@example.com\r\nRCPT TO:<x@evil.test>"}`, 400, "invalid-data"},
		{"target no domain", jsonType, `{"target":"t"}`, 400, "invalid-data"},
		{"target unqualified", jsonType, `{"target":"t@localhost"}`, 400, "invalid-data"},
		{"target display name", jsonType, `{"target":"T <t@example.com>"}`, 400, "invalid-data"},
		{"target own domain", jsonType, `{"target":"abc@tempalias.test"}`, 400, "invalid-data"},
		{"target own domain case", jsonType, `{"target":"abc@ALT.Test"}`, 400, "invalid-data"},
		{"target percent hack", jsonType, `{"target":"u%evil.test@example.com"}`, 400, "invalid-data"},
		{"megabyte body", jsonType, huge, 413, "too-large"},
		{"no content type", "", `{"target":"t@example.com"}`, 415, "invalid-request-type"},
		{"text/plain", "text/plain", `{"target":"t@example.com"}`, 415, "invalid-request-type"},
		{"bad media type", "application/json;;;=", `{"target":"t@example.com"}`, 415, "invalid-request-type"},
	}
	ta := newTestAPI(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ta.do(t, "POST", "/aliases", tt.ctype, tt.body)
			if r.status != tt.status || r.body["error"] != tt.code {
				t.Fatalf("got %d %v, want %d %s: %s", r.status, r.body["error"], tt.status, tt.code, r.raw)
			}
			desc, _ := r.body["description"].(string)
			if desc == "" || strings.Contains(desc, "json:") || strings.Contains(desc, "store") {
				t.Errorf("description %q: want a plain sentence", desc)
			}
		})
	}
	st, err := ta.store.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Aliases != 0 || st.Issued != 0 {
		t.Errorf("refused requests left %d aliases, %d ids behind", st.Aliases, st.Issued)
	}
}

func TestLookupIsNoOracle(t *testing.T) {
	ta := newTestAPI(t, nil)
	r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com","days":1,"max-usage":1}`)
	id, token := r.body["id"].(string), r.body["token"].(string)
	r2 := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com","days":1}`)
	otherToken := r2.body["token"].(string)

	expired := newTestAPI(t, nil)
	e := expired.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com","days":1}`)
	expired.clock.Add(25 * time.Hour)

	cases := []struct {
		name    string
		api     *testAPI
		path    string
		headers []string
	}{
		{"unknown id", ta, "/aliases/zzzzzz", []string{"Authorization", "Bearer " + token}},
		{"junk id", ta, "/aliases/..%2f..", []string{"Authorization", "Bearer " + token}},
		{"wrong token", ta, "/aliases/" + id, []string{"Authorization", "Bearer " + otherToken}},
		{"no token", ta, "/aliases/" + id, nil},
		{"basic auth", ta, "/aliases/" + id, []string{"Authorization", "Basic " + token}},
		{"expired", expired, "/aliases/" + e.body["id"].(string), []string{"Authorization", "Bearer " + e.body["token"].(string)}},
	}
	var first string
	for _, c := range cases {
		for _, method := range []string{"GET", "DELETE"} {
			r := c.api.do(t, method, c.path, "", "", c.headers...)
			if r.status != 404 || r.body["error"] != "not-found" {
				t.Errorf("%s %s: %d %s", method, c.name, r.status, r.raw)
			}
			if first == "" {
				first = r.raw
			} else if r.raw != first {
				t.Errorf("%s %s: body %q differs from %q", method, c.name, r.raw, first)
			}
		}
	}
	// None of the failed attempts revoked anything.
	if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); g.status != 200 {
		t.Errorf("alias damaged by failed attempts: %d", g.status)
	}
}

func TestMethodAndRouteErrors(t *testing.T) {
	ta := newTestAPI(t, nil)
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"PUT", "/aliases", 405, "method-not-allowed", "POST"},
		{"GET", "/aliases", 405, "method-not-allowed", "POST"},
		{"PUT", "/aliases/abc", 405, "method-not-allowed", "GET, PATCH, DELETE"},
		{"POST", "/aliases/abc", 405, "method-not-allowed", "GET, PATCH, DELETE"},
		{"GET", "/aliases/abc/def", 404, "not-found", ""},
		{"GET", "/nothing-here", 404, "not-found", ""},
		{"POST", "/confirm/abc", 404, "not-found", ""}, // verification is off
	} {
		r := ta.do(t, c.method, c.path, jsonType, "{}")
		if r.status != c.status || r.body["error"] != c.code || r.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q %s", c.method, c.path, r.status, r.header.Get("Allow"), r.raw)
		}
	}
}

func TestRateLimit(t *testing.T) {
	ta := newTestAPI(t, func(c *Config) {
		c.CreatePerMinute = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	create := func(xff string) response {
		return ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`, "X-Forwarded-For", xff)
	}
	// Invalid requests do not count.
	for range 5 {
		if r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"bad"}`, "X-Forwarded-For", "192.0.2.1"); r.status != 400 {
			t.Fatalf("invalid request: %d", r.status)
		}
	}
	for i := range 3 {
		if r := create("192.0.2.1"); r.status != 201 {
			t.Fatalf("creation %d: %d %s", i, r.status, r.raw)
		}
	}
	r := create("192.0.2.1")
	if r.status != 429 || r.body["error"] != "rate-limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth creation: %d %v Retry-After=%q", r.status, r.raw, r.header.Get("Retry-After"))
	}
	// A client left of the real one cannot buy a fresh quota by forging.
	if r := create("198.51.100.7, 192.0.2.1"); r.status != 429 {
		t.Errorf("forged leftmost X-Forwarded-For escaped the limit: %d", r.status)
	}
	// Another client has its own quota.
	if r := create("192.0.2.2"); r.status != 201 {
		t.Errorf("other client: %d", r.status)
	}
}

func TestClientAddr(t *testing.T) {
	a := &API{cfg: Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}}}
	for _, c := range []struct{ remote, xff, want string }{
		{"192.0.2.1:5000", "203.0.113.9", "192.0.2.1"},  // untrusted peer: header ignored
		{"192.0.2.1:5000", "garbage", "192.0.2.1"},      // untrusted peer: header ignored
		{"10.1.1.1:5000", "203.0.113.9", "203.0.113.9"}, // trusted proxy
		{"10.1.1.1:5000", "1.1.1.1, 203.0.113.9", "203.0.113.9"},
		{"10.1.1.1:5000", "203.0.113.9, 10.2.2.2", "203.0.113.9"}, // chain of proxies
		{"10.1.1.1:5000", "10.3.3.3, 10.2.2.2", "10.3.3.3"},       // only proxies
		{"10.1.1.1:5000", "", "10.1.1.1"},
		{"10.1.1.1:5000", "203.0.113.9:1234", "203.0.113.9"},
		{"10.1.1.1:5000", "[2001:db8::7]:1234", "2001:db8::7"},
		{"10.1.1.1:5000", "[2001:db8::7]", "2001:db8::7"},
		{"10.1.1.1:5000", "[::ffff:203.0.113.9]:80", "203.0.113.9"},
		{"10.1.1.1:5000", "garbage, 203.0.113.9:1234, 10.2.2.2:443", "203.0.113.9"}, // left of the client: not read
		{"10.1.1.1:5000", "garbage", "unknown"},
		{"10.1.1.1:5000", "203.0.113.9, garbage", "unknown"},
		{"10.1.1.1:5000", "garbage, 10.2.2.2", "unknown"},
		{"10.1.1.1:5000", "203.0.113.9, ", "unknown"},
		{"10.1.1.1:5000", "203.0.113.9:99999", "unknown"},
		{"10.1.1.1:5000", "2001:db8::7]:1234", "unknown"},
		{"[::1]:5000", "2001:db8::1", "2001:db8::1"},
		{"[::ffff:192.0.2.1]:5000", "", "192.0.2.1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		got := "unknown"
		if addr, ok := a.clientAddr(r); ok {
			got = addr.String()
		}
		if got != c.want {
			t.Errorf("remote %s xff %q: got %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

// TestRateLimitForwardedForms: behind a trusted proxy, each client is
// counted under its own address whichever way the proxy writes it, and a
// hop that is no address is refused, never counted against the proxy
// (where every such client would share one quota).
func TestRateLimitForwardedForms(t *testing.T) {
	for _, c := range []struct {
		name        string
		first, same string // same: the first client again, written as the proxy may
		other       string // another client
	}{
		{"v4", "198.51.100.77", "198.51.100.77", "198.51.100.78"},
		{"v4 with port", "198.51.100.77:1234", "198.51.100.77:4321", "198.51.100.78:1234"},
		{"v6 with port", "[2001:db8:1::1]:1234", "[2001:db8:1::2]:99", "[2001:db8:2::1]:1234"},
		{"v6 bracketed", "[2001:db8:1::1]", "2001:db8:1::1", "[2001:db8:2::1]"},
		{"mapped v4 with port", "[::ffff:198.51.100.77]:1234", "198.51.100.77", "198.51.100.78:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ta := newTestAPI(t, func(c *Config) {
				c.CreatePerMinute = 1
				c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			})
			create := func(xff ...string) response {
				return ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`, append([]string{"X-Forwarded-For"}, xff...)...)
			}
			if r := create(c.first); r.status != 201 {
				t.Fatalf("first client %q: %d %s", c.first, r.status, r.raw)
			}
			if r := create(c.same); r.status != 429 {
				t.Errorf("first client again as %q: %d, want 429", c.same, r.status)
			}
			if r := create(c.other); r.status != 201 {
				t.Errorf("other client %q: %d %s: pooled with %q", c.other, r.status, r.raw, c.first)
			}
			if r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`); r.status != 201 {
				t.Errorf("the proxy itself: %d %s: pooled with its clients", r.status, r.raw)
			}
		})
	}
	t.Run("no address", func(t *testing.T) {
		ta := newTestAPI(t, func(c *Config) {
			c.CreatePerMinute = 1
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		for _, xff := range []string{"unknown", "198.51.100.77:1234:5", "_hidden", "198.51.100.77, garbage"} {
			r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`, "X-Forwarded-For", xff)
			if r.status != 400 || r.body["error"] != "invalid-data" || !strings.Contains(r.raw, "X-Forwarded-For") {
				t.Errorf("X-Forwarded-For %q: %d %s, want 400 naming the header", xff, r.status, r.raw)
			}
		}
		// None of them was counted against the proxy.
		if r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`); r.status != 201 {
			t.Errorf("the proxy itself after refused hops: %d %s", r.status, r.raw)
		}
	})
}

func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"target":"t@example.com","days": 3,"max-usage": 5}`,
		`{"target":"t@example.com"}`,
		`{"target":"t@example.com","days":null}`,
		`{"target":"t@example.com","days":"3"}`,
		`{"target":"t@example.com","target":"x"}`,
		`{"days":1e400}`,
		`[]`, `{`, `{"target":"\u0000@example.com"}`, `{} {}`,
	} {
		f.Add([]byte(s))
	}
	limits := alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCreate(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		spec, err := limits.Check(req, []string{"tempalias.test"}, testNow)
		if err != nil {
			return
		}
		if _, err := alias.ParseAddress(spec.Target); err != nil {
			t.Fatalf("accepted target %q: %v", spec.Target, err)
		}
		if spec.MaxUsage < 0 || spec.MaxUsage > 100 || !spec.Expires.After(testNow) || spec.Expires.After(testNow.Add(60*24*time.Hour)) {
			t.Fatalf("accepted out-of-range spec %+v", spec)
		}
	})
}

// Ids are lower case; one typed or copied in upper case still finds its
// alias, as it does over SMTP.
func TestIDCaseInsensitive(t *testing.T) {
	ta := newTestAPI(t, nil)
	r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	id, token := strings.ToUpper(r.body["id"].(string)), r.body["token"].(string)
	if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); g.status != 200 {
		t.Fatalf("GET %s: %d %s", id, g.status, g.raw)
	}
	if d := ta.do(t, "DELETE", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); d.status != 204 {
		t.Fatalf("DELETE %s: %d %s", id, d.status, d.raw)
	}
}

// unreachable is a store that cannot be reached, as an etcd cluster
// without quorum answers.
type unreachable struct{ store.Engine }

var errUnreachable = fmt.Errorf("test: no quorum: %w", store.ErrUnavailable)

func (unreachable) Create(context.Context, alias.Spec, time.Time, ...store.CreateOption) (store.Created, error) {
	return store.Created{}, errUnreachable
}

func (unreachable) Authorized(context.Context, string, string, time.Time) (alias.Alias, error) {
	return alias.Alias{}, errUnreachable
}

func (unreachable) Revoke(context.Context, string, string, time.Time) error { return errUnreachable }

func (unreachable) Held(context.Context, string, time.Time) (alias.Alias, error) {
	return alias.Alias{}, errUnreachable
}

func (unreachable) RevokeID(context.Context, string, time.Time) error { return errUnreachable }

func (unreachable) Change(context.Context, string, string, alias.Change, time.Time) (alias.Alias, error) {
	return alias.Alias{}, errUnreachable
}

// A store that cannot be reached is 503 unavailable with Retry-After for
// every API call that needs it, never a 500 or a 404.
func TestStoreUnavailable(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "t.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(ValidateOpenAPI(t, New(Config{
		Domains: []string{"tempalias.test"},
		Limits:  alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100},
		Now:     func() time.Time { return testNow },
		LinkKey: st.LinkKey(),
	}, unreachable{st})))
	t.Cleanup(srv.Close)
	ta := &testAPI{srv, st, &clock{t: testNow}}
	for _, req := range []struct{ method, path, ctype, body string }{
		{"POST", "/aliases", jsonType, `{"target":"t@example.com"}`},
		{"GET", "/aliases/abcdef", "", ""},
		{"DELETE", "/aliases/abcdef", "", ""},
		{"PATCH", "/aliases/abcdef", jsonType, `{"days": 5}`},
	} {
		r := ta.do(t, req.method, req.path, req.ctype, req.body, "Authorization", "Bearer x")
		if r.status != 503 || r.body["error"] != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: %d %s Retry-After %q; want 503 unavailable with Retry-After", req.method, req.path, r.status, r.raw, r.header.Get("Retry-After"))
		}
	}
	// The revoke link's pages too (with a valid mac, so the store is asked).
	path := RevokeLink("", st.LinkKey(), "abcdef")
	for _, method := range []string{"GET", "POST"} {
		r := ta.do(t, method, path, "", "", "Sec-Fetch-Site", "same-origin")
		if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.raw, "try the link again later") {
			t.Errorf("%s %s: %d %s", method, path, r.status, r.raw)
		}
	}
}

// panicking is a store with a bug: every call that serves a link panics.
type panicking struct{ store.Engine }

func (panicking) Held(context.Context, string, time.Time) (alias.Alias, error) {
	panic("test: store bug")
}

func (panicking) RevokeID(context.Context, string, time.Time) error { panic("test: store bug") }

func (panicking) Confirm(context.Context, string, time.Time, time.Duration) (alias.Alias, error) {
	panic("test: store bug")
}

// A panic in a handler is logged with its route, not its path: the path
// of a revoke link or a confirmation link is the secret that works it.
func TestPanicLogsNoLinkSecret(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "t.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var logs syncbuf.Buffer
	srv := httptest.NewServer(New(Config{
		Domains: []string{"tempalias.test"},
		Limits:  alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100},
		Now:     func() time.Time { return testNow },
		LinkKey: st.LinkKey(),
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Verify:  &Verify{Mailer: &fakeMailer{}, Remember: time.Hour, PublicURL: "https://tempalias.test"},
	}, panicking{st}))
	t.Cleanup(srv.Close)
	ta := &testAPI{srv, st, &clock{t: testNow}}
	link := RevokeLink("", st.LinkKey(), "abcdef")
	mac := link[strings.LastIndexByte(link, '/')+1:]
	const token = "the-confirmation-token"
	for _, req := range []struct{ method, path, secret string }{
		{"GET", link, mac},
		{"POST", link, mac},
		{"POST", "/confirm/" + token, token},
	} {
		r := ta.do(t, req.method, req.path, "", "", "Sec-Fetch-Site", "same-origin")
		if r.status != 500 {
			t.Errorf("%s %s: %d %s, want 500", req.method, req.path, r.status, r.raw)
		}
		if l := logs.String(); !strings.Contains(l, "panic in HTTP handler") || strings.Contains(l, req.secret) {
			t.Errorf("%s %s: log\n%s\nwants the panic without %q", req.method, req.path, l, req.secret)
		}
	}
}
