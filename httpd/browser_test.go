package httpd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/httpd"
)

// The browser tests drive Debian's chromium (headless) against the real
// router on loopback. Outside CI they skip when no browser is installed.

var aliasRE = regexp.MustCompile(`^([0-9a-z]+)@tempalias\.test$`)

func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no browser found (chromium, google-chrome, headless-shell); CI must install Debian's chromium")
	}
	t.Skip("browser tests skipped: no chromium or google-chrome in PATH (apt-get install chromium)")
	return ""
}

// newBrowser starts one headless browser for the test; each subtest opens
// its own tab with newTab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := findBrowser(t)
	dir := t.TempDir() // before the cancel below, so that it is removed after the browser ended
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(dir),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.WindowSize(1280, 800),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it must not carry a timeout (that
	// would stop the browser), so bound it from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v", exe, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start within a minute", exe)
	}
	return ctx
}

// newTab opens a tab in the browser, bounded in time.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancelTimeout := context.WithTimeout(browser, 60*time.Second)
	ctx, cancel := chromedp.NewContext(ctx)
	t.Cleanup(func() { cancel(); cancelTimeout() })
	return ctx
}

func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// typeInto types v into the field sel names, as a user does: focus, then
// key events (what chromedp.SendKeys sends for a field that is no file
// input). It stands in for SendKeys, which reads its node's attribute
// list without the node's lock (query.go:1293 in chromedp v0.23.0 and
// v0.23.1, the latest) while chromedp's event loop appends to or
// replaces that list under the lock when the page changes an attribute
// of the node: a data race that -race reports when the page's script
// (the limits it fetches set the fields' max, the change form's
// toggling) happens to touch the field just then.
func typeInto[S chromedp.Selectable](sel S, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Focus(sel, chromedp.NodeVisible), chromedp.KeyEvent(v))
}

// Screen sizes of the screenshots.
var (
	phone   = [2]int64{390, 844}
	desktop = [2]int64{1280, 800}
)

// screenshot writes a full-page PNG at the given size to the directory in
// TEMPALIAS_SCREENSHOTS; without it, it only sets the size.
func screenshot(t *testing.T, ctx context.Context, name string, size [2]int64) {
	t.Helper()
	vp := []chromedp.EmulateViewportOption{}
	if size == phone {
		vp = append(vp, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	run(t, ctx, chromedp.EmulateViewport(size[0], size[1], vp...))
	saveShot(t, ctx, name, chromedp.FullScreenshot(100))
}

// windowShot writes what the window shows, as it is, without scrolling
// or resizing (see screenshot).
func windowShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	saveShot(t, ctx, name, chromedp.CaptureScreenshot())
}

func saveShot(t *testing.T, ctx context.Context, name string, shot chromedp.Action[[]byte]) {
	t.Helper()
	dir := os.Getenv("TEMPALIAS_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := value(t, ctx, shot)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fillForm types the choices into the page's form as a person would.
func fillForm(target, days, max string) chromedp.Action[chromedp.Void] {
	steps := []chromedp.Action[chromedp.Void]{chromedp.WaitVisible(chromedp.ID("target"))}
	for id, v := range map[string]string{"target": target, "days": days, "max-usage": max} {
		steps = append(steps, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).value = ''`, id)))
		if v != "" {
			steps = append(steps, typeInto(chromedp.ID(id), v))
		}
	}
	return chromedp.Steps(steps...)
}

// popupTokenWorks checks that the bookmarklet popup shows the alias's
// management token, the only place it is ever shown: the API accepts it.
func popupTokenWorks(t *testing.T, popup context.Context) {
	t.Helper()
	addr := value(t, popup, chromedp.Text(chromedp.ID("alias")))
	token := value(t, popup, chromedp.Text(chromedp.ID("token")))
	m := aliasRE.FindStringSubmatch(addr)
	if m == nil || token == "" {
		t.Fatalf("the popup shows alias %q, token %q", addr, token)
	}
	base := value(t, popup, chromedp.Evaluate[string](`location.origin`))
	if status, body := apiGet(t, base, m[1], token); status != 200 {
		t.Errorf("the popup's token: %d %v", status, body)
	}
}

// apiGet reads an alias through the JSON API with its token.
func apiGet(t *testing.T, base, id, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/aliases/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestBrowser(t *testing.T) {
	browser := newBrowser(t)

	t.Run("create and revoke", func(t *testing.T) {
		var ahead atomic.Int64 // how far the server's clock is ahead of time.Now
		ws := newWebServer(t, func(c *httpd.Config) {
			c.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
		})
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.EmulateViewport(phone[0], phone[1]), chromedp.Navigate(ws.URL))
		run(t, ctx, fillForm("me@example.com", "2", "5"))
		screenshot(t, ctx, "phone-form", phone)
		start := time.Now()
		run(t, ctx,
			chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("result")),
		)
		addr := value(t, ctx, chromedp.Text(chromedp.ID("alias")))
		m := aliasRE.FindStringSubmatch(addr)
		if m == nil {
			t.Fatalf("shown alias %q", addr)
		}
		if got := value(t, ctx, chromedp.Text(chromedp.ID("lifetime"))); got != "It stops working after 2 days or 5 messages, whichever comes first." {
			t.Errorf("lifetime sentence %q", got)
		}
		token := value(t, ctx, chromedp.Text(chromedp.ID("token")))
		screenshot(t, ctx, "phone-result", phone)
		screenshot(t, ctx, "desktop-result", desktop)

		// The alias exists with the chosen limits, in the store and the API.
		al, err := ws.store.Get(bg, m[1], time.Now())
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		if al.Target != "me@example.com" || al.MaxUsage != 5 {
			t.Errorf("stored %+v", al)
		}
		if d := al.Expires.Sub(start); d < 47*time.Hour || d > 49*time.Hour {
			t.Errorf("expires in %v, want 2 days", d)
		}
		status, body := apiGet(t, ws.URL, m[1], token)
		if status != 200 || body["max-usage"] != 5.0 || body["remaining"] != 5.0 || body["alias"] != addr {
			t.Errorf("API: %d %v", status, body)
		}

		// Status: one message relayed shows up for the token holder.
		deliver(t, ws.store, m[1], time.Now())
		run(t, ctx,
			chromedp.Click(chromedp.ID("status-check")),
			chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent !== ''`),
		)
		if got := value(t, ctx, chromedp.Text(chromedp.ID("status"))); !strings.HasPrefix(got, "Active. Relayed 1 message, 4 left; it expires ") {
			t.Errorf("status: %q", got)
		}

		// Used up: the holder still sees it, with the mail refused since.
		for range 4 {
			deliver(t, ws.store, m[1], time.Now())
		}
		if _, err := ws.store.Reserve(bg, m[1], time.Now()); err == nil {
			t.Fatal("a used-up alias took a reservation")
		}
		run(t, ctx,
			chromedp.Click(chromedp.ID("status-check")),
			chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent.startsWith('Used up')`, chromedp.WithPollingTimeout(10*time.Second)),
		)
		if got := value(t, ctx, chromedp.Text(chromedp.ID("status"))); !strings.HasPrefix(got, "Used up: it refuses all mail now. Relayed 5 messages; 1 message refused since. It is deleted ") {
			t.Errorf("status when used up: %q", got)
		}

		// More messages, from the control beside Check status, revive it.
		run(t, ctx, chromedp.Click(chromedp.ID("change-toggle")), chromedp.WaitVisible(chromedp.CSS("#result .change-max")),
			typeInto(chromedp.CSS("#result .change-max"), "8"), chromedp.Click(chromedp.CSS("#result .change-save")),
			chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent.startsWith('Changed') || document.getElementById('status').textContent.startsWith('Could')`,
				chromedp.WithPollingTimeout(10*time.Second)))
		if got := value(t, ctx, chromedp.Text(chromedp.ID("status"))); !strings.HasPrefix(got, "Changed. Active. Relayed 5 messages, 3 left; it expires ") {
			t.Errorf("status after more messages: %q", got)
		}
		if r, err := ws.store.Reserve(bg, m[1], time.Now()); err != nil {
			t.Errorf("the alias given more messages refuses mail: %v", err)
		} else {
			r.Refund(bg, time.Now())
		}
		// The lifetime sentence follows each change, counted from then:
		// a day later, 5 more days are 5 days, not 6 from its creation.
		if got := value(t, ctx, chromedp.Text(chromedp.ID("lifetime"))); got != "It stops working after 2 days or 3 more messages, whichever comes first." {
			t.Errorf("lifetime sentence after more messages %q", got)
		}
		ahead.Store(int64(24 * time.Hour))
		run(t, ctx, chromedp.Click(chromedp.ID("change-toggle")), chromedp.WaitVisible(chromedp.CSS("#result .change-days")),
			typeInto(chromedp.CSS("#result .change-days"), "5"), chromedp.Click(chromedp.CSS("#result .change-save")),
			chromedp.Poll[chromedp.Void](`document.getElementById('lifetime').textContent.includes('5 days') || document.getElementById('status').textContent.startsWith('Could')`,
				chromedp.WithPollingTimeout(10*time.Second)))
		if got := value(t, ctx, chromedp.Text(chromedp.ID("lifetime"))); got != "It stops working after 5 days or 3 more messages, whichever comes first." {
			t.Errorf("lifetime sentence a day later, after 5 more days: %q", got)
		}
		if got := value(t, ctx, chromedp.Text(chromedp.ID("status"))); !strings.HasPrefix(got, "Changed. Active. Relayed 5 messages, 3 left; it expires ") {
			t.Errorf("status after more days: %q", got)
		}

		// The choices are remembered.
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("bookmarklet")))
		for id, want := range map[string]string{"target": "me@example.com", "days": "2", "max-usage": "5"} {
			if got := value(t, ctx, chromedp.Value(chromedp.ID(id))); got != want {
				t.Errorf("after reload #%s = %q, want %q", id, got, want)
			}
		}
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('result').hidden`)); !v {
			t.Error("the token is shown again after a reload")
		}

		// Revoke now: submit again, then revoke the new one.
		run(t, ctx,
			chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("result")),
		)
		addr2 := value(t, ctx, chromedp.Text(chromedp.ID("alias")))
		m2 := aliasRE.FindStringSubmatch(addr2)
		if m2 == nil || addr2 == addr {
			t.Fatalf("second alias %q", addr2)
		}
		run(t, ctx,
			chromedp.Click(chromedp.ID("status-check")),
			chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent.startsWith('Active')`),
			chromedp.Click(chromedp.ID("revoke")),
			chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent.startsWith('Revoked')`),
		)
		// One status line, the latest news in it: never "Active" below
		// "Revoked", or "gone" above it.
		if got := value(t, ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#result [role=status]')].map(e => e.textContent).filter(t => t).join(' | ')`)); got != "Revoked. Mail to "+addr2+" is refused from now on." {
			t.Errorf("after revoke the card says %q", got)
		}
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('revoke').disabled && document.getElementById('change-toggle').disabled`)); !v {
			t.Error("revoke and change still offered after revoking")
		}
		if _, err := ws.store.Get(bg, m2[1], time.Now()); !errors.Is(err, alias.ErrNotFound) {
			t.Errorf("revoked alias still there: %v", err)
		}
	})

	t.Run("error in words", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.EmulateViewport(phone[0], phone[1]), chromedp.Navigate(ws.URL))
		run(t, ctx,
			fillForm("me@tempalias.test", "3", ""),
			chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("error")),
		)
		got := value(t, ctx, chromedp.Text(chromedp.ID("error")))
		if got != "Could not create the alias: target must not be an address of this service." {
			t.Errorf("error shown: %q", got)
		}
		screenshot(t, ctx, "phone-error", phone)
		run(t, ctx, fillForm("me@example.com", "999", ""), chromedp.Click(chromedp.ID("submit")),
			chromedp.Poll[chromedp.Void](`document.getElementById('error').textContent.includes('days')`, chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(20*time.Second)))
		if got := value(t, ctx, chromedp.Text(chromedp.ID("error"))); got != "Could not create the alias: days must be a whole number from 1 to 60." {
			t.Errorf("error shown: %q", got)
		}
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('result').hidden`)); !v {
			t.Error("a result is shown after an error")
		}
	})

	t.Run("days left empty", func(t *testing.T) {
		// The page sends no days, so the service's own default applies.
		ws := newWebServer(t, func(c *httpd.Config) { c.Limits.DefaultDays = 5 })
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.Navigate(ws.URL), fillForm("me@example.com", "", ""), chromedp.Click(chromedp.ID("submit")),
			chromedp.Poll[chromedp.Void](`document.getElementById('lifetime').textContent !== ''`, chromedp.WithPollingTimeout(10*time.Second)))
		if got := value(t, ctx, chromedp.Text(chromedp.ID("lifetime"))); got != "It stops working after 5 days." {
			t.Errorf("lifetime %q", got)
		}
	})

	t.Run("without JavaScript", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}))
		run(t, ctx, chromedp.EmulateViewport(desktop[0], desktop[1]), chromedp.Navigate(ws.URL))
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('bookmarklet-section').hidden`)); !v {
			t.Error("the bookmarklet section shows without JavaScript")
		}
		run(t, ctx, fillForm("nojs@example.com", "4", "7"))
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("submit")))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 201 {
			t.Errorf("status %d", resp.Status)
		}
		addr := value(t, ctx, chromedp.Text(chromedp.ID("alias")))
		m := aliasRE.FindStringSubmatch(addr)
		if m == nil {
			t.Fatalf("shown alias %q", addr)
		}
		if got := value(t, ctx, chromedp.Text(chromedp.ID("lifetime"))); got != "It stops working after 4 days or 7 messages, whichever comes first." {
			t.Errorf("lifetime %q", got)
		}
		screenshot(t, ctx, "desktop-nojs-result", desktop)
		if got := value(t, ctx, chromedp.Text(chromedp.CSS(".token-box .help"))); !strings.Contains(got, "PATCH /aliases/"+m[1]) || !strings.Contains(got, "DELETE /aliases/"+m[1]) {
			t.Errorf("the page without JavaScript says %q", got)
		}
		al, err := ws.store.Get(bg, m[1], time.Now())
		if err != nil || al.Target != "nojs@example.com" || al.MaxUsage != 7 {
			t.Errorf("store: %+v %v", al, err)
		}

		// The error path without JavaScript: an HTML page, with the status.
		run(t, ctx, chromedp.Navigate(ws.URL), fillForm("x@tempalias.test", "3", ""))
		resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("submit")))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 400 {
			t.Errorf("error status %d", resp.Status)
		}
		if got := value(t, ctx, chromedp.Text(chromedp.ID("description"))); got != "target must not be an address of this service." {
			t.Errorf("error page says %q", got)
		}
		screenshot(t, ctx, "phone-nojs-error", phone)
	})

	t.Run("bookmarklet under a strict CSP", func(t *testing.T) {
		ws := newWebServer(t, nil)
		site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'")
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign up</title></head>
<body><h1>Example shop: sign up</h1><form>
<p><label>Name <input id="name" type="text"></label></p>
<p><label>Email <input id="email" type="email" name="email"></label></p>
<p><button type="button">Sign up</button></p></form></body></html>`)
		}))
		t.Cleanup(site.Close)
		if site.URL == ws.URL {
			t.Fatal("the site must be another origin")
		}

		ctx := newTab(t, browser)
		run(t, ctx, chromedp.EmulateViewport(desktop[0], desktop[1]), chromedp.Navigate(ws.URL),
			fillForm("bm@example.com", "1", "2"))
		href := value(t, ctx, chromedp.AttributeValue(chromedp.ID("bookmarklet"), "href"))
		if !strings.HasPrefix(href.Value, "javascript:") {
			t.Fatalf("bookmarklet href %.80q", href.Value)
		}
		code, err := url.PathUnescape(strings.TrimPrefix(href.Value, "javascript:"))
		if err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "desktop-form-bookmarklet", desktop)
		// A bookmarklet runs as if the user typed it: page CSP does not stop
		// the script itself, only what it tries to load or connect to.
		bookmarklet := chromedp.Evaluate[chromedp.Void](code, func(p *runtime.EvaluateParams) { p.UserGesture = new(true) })

		run(t, ctx, chromedp.Navigate(site.URL), chromedp.WaitVisible(chromedp.ID("email")))
		// The test is only worth something if the site really forbids
		// talking to our origin.
		blocked := value(t, ctx, chromedp.Evaluate[string](
			fmt.Sprintf(`fetch(%q).then(() => 'allowed', () => 'blocked')`, ws.URL+"/aliases"),
			func(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }))
		if blocked != "blocked" {
			t.Fatalf("the test site's CSP let a fetch to %s through", ws.URL)
		}

		filled := func(sel string) string {
			t.Helper()
			v := value(t, ctx, chromedp.Poll[string](
				fmt.Sprintf(`(document.getElementById('tempalias-note') || {}).textContent && document.querySelector(%q).value`, sel),
				chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(30*time.Second)))
			m := aliasRE.FindStringSubmatch(v)
			if m == nil {
				t.Fatalf("%s holds %q", sel, v)
			}
			al, err := ws.store.Get(bg, m[1], time.Now())
			if err != nil {
				t.Fatalf("the API does not know %s: %v", v, err)
			}
			if al.Target != "bm@example.com" || al.MaxUsage != 2 {
				t.Errorf("stored %+v", al)
			}
			return v
		}

		// The popup creates nothing until its visitor says yes there: any
		// site could open it. confirmInPopup clicks that button.
		confirmInPopup := func(trigger ...chromedp.Action[chromedp.Void]) {
			t.Helper()
			ch := chromedp.WaitNewTarget(ctx, func(info *target.Info) bool { return strings.Contains(info.URL, "/bookmarklet.html") })
			run(t, ctx, trigger...)
			var id target.ID
			select {
			case id = <-ch:
			case <-time.After(30 * time.Second):
				t.Fatal("no popup opened")
			}
			popup, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(id))
			defer cancel()
			run(t, popup, chromedp.WaitVisible(chromedp.ID("confirm")))
			if ask := value(t, popup, chromedp.Text(chromedp.ID("ask"))); !strings.Contains(ask, "bm@example.com") || !strings.Contains(ask, site.URL) {
				t.Errorf("the popup asks %q", ask)
			}
			run(t, popup, chromedp.Click(chromedp.ID("confirm")))
			run(t, popup, chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent.startsWith('Filled in') || !document.getElementById('error').hidden`,
				chromedp.WithPollingTimeout(30*time.Second)))
			if e := value(t, popup, chromedp.Evaluate[string](`document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`)); e != "" {
				t.Fatalf("the popup says: %s", e)
			}
			popupTokenWorks(t, popup)
			// The token shows without scrolling in the window the
			// bookmarklet opened, at the size it asks for (headless
			// chromium ignores the size, so it is set here).
			run(t, popup, chromedp.EmulateViewport(460, 360))
			size := value(t, popup, chromedp.Evaluate[[]float64](`[innerWidth, innerHeight, document.getElementById('token').getBoundingClientRect().bottom, scrollY]`))
			if size[0] != 460 || size[1] != 360 {
				t.Fatalf("the popup is %vx%v", size[0], size[1])
			}
			if size[2] > size[1] || size[3] != 0 {
				t.Errorf("the token ends at %vpx (scrolled %v) in a popup %vpx high", size[2], size[3], size[1])
			}
			windowShot(t, popup, "popup-created")
		}

		// The focused field gets the alias.
		run(t, ctx, chromedp.Focus(chromedp.ID("email")))
		confirmInPopup(bookmarklet)
		first := filled("#email")
		note := value(t, ctx, chromedp.Text(chromedp.ID("tempalias-note")))
		if note != "tempalias: "+first+" filled in." {
			t.Errorf("confirmation %q", note)
		}
		if v := value(t, ctx, chromedp.Value(chromedp.ID("name"))); v != "" {
			t.Errorf("another field was filled: %q", v)
		}
		screenshot(t, ctx, "desktop-bookmarklet-filled", desktop)

		// The popup kept it in My aliases, for the page on our origin.
		page := newTab(t, browser)
		run(t, page, chromedp.Navigate(ws.URL), chromedp.WaitVisible(chromedp.ID("mine-section")))
		if got, id := listed(t, page), aliasRE.FindStringSubmatch(first)[1]; len(got) != 1 || got[0] != id {
			t.Errorf("after the bookmarklet, My aliases lists %v, want [%s]", got, id)
		}

		// Nothing focused: the next field clicked gets it.
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("email")))
		confirmInPopup(bookmarklet)
		run(t, ctx, chromedp.Poll[chromedp.Void](`(document.getElementById('tempalias-note') || {}).textContent?.includes('click the email field')`,
			chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(30*time.Second)))
		if v := value(t, ctx, chromedp.Value(chromedp.ID("email"))); v != "" {
			t.Errorf("filled before a click: %q", v)
		}
		run(t, ctx, chromedp.Click(chromedp.ID("email")))
		if second := filled("#email"); second == first {
			t.Errorf("the same alias twice: %s", second)
		}

		// A site that cuts the link to its popups (COOP) leaves the popup
		// without an opener: it creates the alias only on a click and shows it.
		popup := newTab(t, browser)
		run(t, popup, chromedp.EmulateViewport(phone[0], phone[1]),
			chromedp.Navigate(ws.URL+"/bookmarklet.html#target=bm%40example.com&days=1&max-usage=2&origin=x&nonce=y"),
			chromedp.WaitVisible(chromedp.ID("create")),
			chromedp.Click(chromedp.ID("create")),
			chromedp.WaitVisible(chromedp.ID("result")))
		addr := value(t, popup, chromedp.Text(chromedp.ID("alias")))
		if m := aliasRE.FindStringSubmatch(addr); m == nil {
			t.Errorf("popup without opener shows %q", addr)
		} else if _, err := ws.store.Get(bg, m[1], time.Now()); err != nil {
			t.Errorf("popup alias: %v", err)
		}
		popupTokenWorks(t, popup)
		screenshot(t, popup, "phone-popup-no-opener", phone)
	})
}
