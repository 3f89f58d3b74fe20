package httpd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tempalias/tempalias/alias"
)

// The browser tests of "My aliases on this device", the limits the page
// states and the page's error handling.

// createAlias submits the page's form and returns the new alias's id and
// token, as the result card shows them.
func createAlias(t *testing.T, ctx context.Context, target, days, max string) (id, token string) {
	t.Helper()
	before := value(t, ctx, chromedp.Evaluate[string](`document.getElementById('alias').textContent`))
	run(t, ctx, fillForm(target, days, max), chromedp.Click(chromedp.ID("submit")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`!document.getElementById('result').hidden && document.getElementById('alias').textContent !== %q`, before),
			chromedp.WithPollingTimeout(20*time.Second)))
	addr := value(t, ctx, chromedp.Text(chromedp.ID("alias")))
	m := aliasRE.FindStringSubmatch(addr)
	if m == nil {
		t.Fatalf("shown alias %q", addr)
	}
	return m[1], value(t, ctx, chromedp.Text(chromedp.ID("token")))
}

// item is the JavaScript expression for the listed alias id's element.
func item(id string) string { return fmt.Sprintf(`document.querySelector('#mine li[data-id=%q]')`, id) }

// itemStatus waits until the listed alias id's status line passes the
// JavaScript test on s (a string) and returns it.
func itemStatus(t *testing.T, ctx context.Context, id, test string) string {
	t.Helper()
	return value(t, ctx, chromedp.Poll[string](
		fmt.Sprintf(`(() => { const e = %s; const s = e && e.querySelector('.status').textContent; return s && (%s) && s; })()`, item(id), test),
		chromedp.WithPollingTimeout(20*time.Second)))
}

func click(id, class string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`%s.querySelector('.%s').click()`, item(id), class))
}

func listed(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return value(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#mine li')].map(e => e.dataset.id)`))
}

func TestBrowserMyAliases(t *testing.T) {
	browser := newBrowser(t)

	t.Run("listed, changed, revoked, forgotten", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.EmulateViewport(desktop[0], desktop[1]), chromedp.Navigate(ws.URL), chromedp.WaitVisible(chromedp.ID("remember")))
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('remember').checked && document.getElementById('mine-section').hidden`)); !v {
			t.Fatal("remembering is not on by default, or an empty list shows")
		}
		first, firstToken := createAlias(t, ctx, "one@example.com", "2", "5")
		second, secondToken := createAlias(t, ctx, "two@example.com", "", "")
		deliver(t, ws.store, first, time.Now())
		deliver(t, ws.store, first, time.Now())

		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("mine-section")))
		if got := listed(t, ctx); len(got) != 2 || got[0] != second || got[1] != first {
			t.Fatalf("listed %v, want [%s %s]", got, second, first)
		}
		if got := itemStatus(t, ctx, first, `s !== 'Checking…'`); !strings.HasPrefix(got, "Active. Relayed 2 messages, 3 left; it expires ") {
			t.Errorf("first alias's live status %q", got)
		}
		if got := itemStatus(t, ctx, second, `s !== 'Checking…'`); !strings.HasPrefix(got, "Active. Relayed 0 messages; it expires ") {
			t.Errorf("second alias's live status %q", got)
		}
		text := value(t, ctx, chromedp.Evaluate[string](item(first)+`.textContent`))
		if !strings.Contains(text, first+"@tempalias.test") || !strings.Contains(text, "Forwards to one@example.com") {
			t.Errorf("first alias's entry: %q", text)
		}
		screenshot(t, ctx, "desktop-my-aliases", desktop)
		screenshot(t, ctx, "phone-my-aliases", phone)
		run(t, ctx, chromedp.EmulateViewport(desktop[0], desktop[1]))

		// More time: 10 days from now, for the first.
		start := time.Now()
		run(t, ctx, click(first, "change-toggle"),
			chromedp.WaitVisible(chromedp.CSS(`#mine li[data-id="`+first+`"] .change-days`)),
			typeInto(chromedp.CSS(`#mine li[data-id="`+first+`"] .change-days`), "10"))
		screenshot(t, ctx, "desktop-change", desktop)
		run(t, ctx, click(first, "change-save"))
		if got := itemStatus(t, ctx, first, `s.startsWith('Changed') || s.startsWith('Could not')`); !strings.HasPrefix(got, "Changed. Active. Relayed 2 messages, 3 left; it expires ") {
			t.Errorf("after the change: %q", got)
		}
		al, err := ws.store.Get(bg, first, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if d := al.Expires.Sub(start); d < 10*24*time.Hour-time.Minute || d > 10*24*time.Hour+time.Minute {
			t.Errorf("expires in %v after asking for 10 days", d)
		}

		// Only from some senders, then from any again.
		sel := `#mine li[data-id="` + first + `"] `
		run(t, ctx, click(first, "change-toggle"), chromedp.WaitVisible(chromedp.CSS(sel+".change-allow")),
			typeInto(chromedp.CSS(sel+".change-allow"), "Shop.Example, news@letters.example"), click(first, "change-save"))
		if got := itemStatus(t, ctx, first, `s.includes('Only from') || s.startsWith('Could not')`); !strings.HasSuffix(got, "Only from shop.example, news@letters.example.") {
			t.Errorf("after allow-from: %q", got)
		}
		if al, err := ws.store.Get(bg, first, time.Now()); err != nil || len(al.AllowFrom) != 2 {
			t.Errorf("stored allow-from %v (%v)", al.AllowFrom, err)
		}
		run(t, ctx, click(first, "change-toggle"), chromedp.WaitVisible(chromedp.CSS(sel+".change-allow")))
		if got := value(t, ctx, chromedp.Value(chromedp.CSS(sel+".change-allow"))); got != "shop.example, news@letters.example" {
			t.Errorf("the change form offers allow-from %q", got)
		}
		run(t, ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('`+sel+`.change-allow').value = ''`), click(first, "change-save"))
		if got := itemStatus(t, ctx, first, `!s.includes('Only from')`); !strings.HasPrefix(got, "Changed. Active.") {
			t.Errorf("after clearing allow-from: %q", got)
		}
		if al, err := ws.store.Get(bg, first, time.Now()); err != nil || len(al.AllowFrom) != 0 {
			t.Errorf("stored allow-from after clearing %v (%v)", al.AllowFrom, err)
		}

		// Fewer messages than it relayed: the API's sentence, as it said it.
		run(t, ctx, click(first, "change-toggle"),
			typeInto(chromedp.CSS(`#mine li[data-id="`+first+`"] .change-max`), "1"),
			click(first, "change-save"))
		if got := itemStatus(t, ctx, first, `s.startsWith('Could not')`); got != "Could not change it: max-usage must be at least 2, the messages relayed or under way." {
			t.Errorf("refused change shown as %q", got)
		}

		// Revoke the second from the list.
		run(t, ctx, click(second, "revoke"))
		if got := itemStatus(t, ctx, second, `s.startsWith('Revoked')`); got != "Revoked. Mail to "+second+"@tempalias.test is refused from now on." {
			t.Errorf("after revoke: %q", got)
		}
		if _, err := ws.store.Get(bg, second, time.Now()); err == nil {
			t.Error("the revoked alias still lives")
		}
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("mine-section")))
		if got := itemStatus(t, ctx, second, `s !== 'Checking…'`); got != "Gone: it expired or was revoked." {
			t.Errorf("a revoked alias is listed as %q", got)
		}

		// Forget it: gone from the list and from storage, after a reload too.
		run(t, ctx, click(second, "forget"))
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("mine-section")))
		if got := listed(t, ctx); len(got) != 1 || got[0] != first {
			t.Errorf("after forgetting %s: %v", second, got)
		}

		// The tokens went to our own API only, in the Authorization header.
		authorized := 0
		for _, r := range ws.seen() {
			for _, tok := range []string{firstToken, secondToken} {
				if strings.Contains(r.URL.String(), tok) || strings.Contains(r.Referer(), tok) {
					t.Errorf("a token in %s %s (Referer %q)", r.Method, r.URL, r.Referer())
				}
				if r.Header.Get("Authorization") == "Bearer "+tok {
					authorized++
					if !strings.HasPrefix(r.URL.Path, "/aliases/") {
						t.Errorf("a token sent to %s", r.URL.Path)
					}
				}
			}
		}
		if authorized < 5 {
			t.Errorf("%d requests carried a token, want the status checks, the changes and the revoke", authorized)
		}
	})

	t.Run("not remembered, and a damaged list", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.Navigate(ws.URL), chromedp.WaitVisible(chromedp.ID("remember")),
			chromedp.Click(chromedp.ID("remember")))
		id, _ := createAlias(t, ctx, "nobody@example.com", "", "")
		run(t, ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("remember")))
		if v := value(t, ctx, chromedp.Evaluate[bool](`!document.getElementById('remember').checked && document.getElementById('mine-section').hidden`)); !v {
			t.Errorf("alias %s remembered though the box was unticked, or the box forgot", id)
		}

		good, goodToken := createAlias(t, ctx, "kept@example.com", "", "") // box still unticked: not kept
		for _, stored := range []string{
			`{"x":`,
			`{"id":"abc"}`,
			`[1, null, "x", {"id":"../x","alias":"a","target":"b","token":"tokentoken"}, {"id":"abc","alias":"a","target":"b","token":"has space in it"},
			  {"id":"` + good + `","alias":"` + good + `@tempalias.test","target":"kept@example.com","token":"` + goodToken + `"}]`,
		} {
			run(t, ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem('tempalias.aliases', %q)`, stored)),
				chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("bookmarklet")))
			want := []string{}
			if strings.Contains(stored, goodToken) {
				want = []string{good}
			}
			if got := listed(t, ctx); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("storage %.40q: listed %v, want %v", stored, got, want)
			}
		}
		if got := itemStatus(t, ctx, good, `s !== 'Checking…'`); !strings.HasPrefix(got, "Active.") {
			t.Errorf("the one good entry: %q", got)
		}
		// The page still works: a new alias is made (and now kept).
		run(t, ctx, chromedp.Click(chromedp.ID("remember")))
		id, _ = createAlias(t, ctx, "after@example.com", "", "")
		if got := listed(t, ctx); len(got) != 2 || got[0] != id {
			t.Errorf("after a damaged list, listed %v", got)
		}
	})

	t.Run("an error hides the last result", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.Navigate(ws.URL))
		createAlias(t, ctx, "me@example.com", "", "")
		run(t, ctx, fillForm("me@example.com", "61", ""), chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("error")))
		if got := value(t, ctx, chromedp.Text(chromedp.ID("error"))); got != "Could not create the alias: days must be a whole number from 1 to 60." {
			t.Errorf("error %q", got)
		}
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('result').hidden`)); !v {
			t.Error("the previous alias is still shown after a failed request")
		}
		screenshot(t, ctx, "phone-error-after-result", phone)
		createAlias(t, ctx, "me@example.com", "3", "")
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('error').hidden`)); !v {
			t.Error("the old error is still shown after a new alias was made")
		}
	})

	t.Run("limits stated and followed", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		help := func() string {
			t.Helper()
			return value(t, ctx, chromedp.Poll[string](
				`document.getElementById('days-help').textContent.includes('At most') && document.getElementById('days-help').textContent + ' ' + document.getElementById('max-help').textContent`,
				chromedp.WithPollingTimeout(20*time.Second)))
		}
		run(t, ctx, chromedp.Navigate(ws.URL))
		if got := help(); got != "Leave empty for this service's default, 3 days. At most 60 days. Leave empty for no limit by count. At most 100 messages." {
			t.Errorf("limits stated: %q", got)
		}
		ws.api.SetLimits(alias.Limits{DefaultDays: 1, MaxDays: 7, MaxUsage: 9}, 0) // what SIGHUP does
		// Remembered choices the limits no longer allow, and garbage, are
		// not restored; a good one is.
		run(t, ctx, chromedp.Evaluate[chromedp.Void](`localStorage.setItem('tempalias.choices', JSON.stringify({target: 'not an address', days: '8', 'max-usage': '9'}))`),
			chromedp.Reload())
		if got := help(); got != "Leave empty for this service's default, 1 day. At most 7 days. Leave empty for no limit by count. At most 9 messages." {
			t.Errorf("limits after SetLimits: %q", got)
		}
		for id, want := range map[string]string{"target": "", "days": "", "max-usage": "9"} {
			if got := value(t, ctx, chromedp.Value(chromedp.ID(id))); got != want {
				t.Errorf("restored #%s = %q, want %q", id, got, want)
			}
		}
		run(t, ctx, chromedp.Evaluate[chromedp.Void](`localStorage.setItem('tempalias.choices', '{"target": 5, "days": "1.5", "max-usage": "-1"')`),
			chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("bookmarklet")))
		for _, id := range []string{"target", "days", "max-usage"} {
			if got := value(t, ctx, chromedp.Value(chromedp.ID(id))); got != "" {
				t.Errorf("garbled choices restored #%s = %q", id, got)
			}
		}
		run(t, ctx, chromedp.Evaluate[chromedp.Void](`localStorage.setItem('tempalias.choices', '{"target": "x@example.com", "days": "1.5", "max-usage": "-1"}')`),
			chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("bookmarklet")))
		for id, want := range map[string]string{"target": "x@example.com", "days": "", "max-usage": ""} {
			if got := value(t, ctx, chromedp.Value(chromedp.ID(id))); got != want {
				t.Errorf("restored #%s = %q, want %q", id, got, want)
			}
		}
		screenshot(t, ctx, "phone-limits", phone)
		screenshot(t, ctx, "desktop-limits", desktop)
	})

	t.Run("touch devices", func(t *testing.T) {
		ws := newWebServer(t, nil)
		ctx := newTab(t, browser)
		run(t, ctx, chromedp.EmulateViewport(phone[0], phone[1], chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2)),
			chromedp.Navigate(ws.URL), chromedp.WaitVisible(chromedp.ID("bookmarklet-section")))
		if got := value(t, ctx, chromedp.Text(chromedp.ID("bm-text"))); !strings.HasPrefix(got, "On a phone or tablet there is no bookmarks bar") {
			t.Errorf("on a touch screen the bookmarklet section says %q", got)
		}
		if v := value(t, ctx, chromedp.Evaluate[bool](`document.getElementById('bookmarklet').offsetParent === null`)); !v {
			t.Error("the bookmarklet link to drag shows on a touch screen")
		}
		screenshot(t, ctx, "phone-touch-bookmarklet", phone)

		desk := newTab(t, browser)
		run(t, desk, chromedp.EmulateViewport(desktop[0], desktop[1]), chromedp.Navigate(ws.URL), chromedp.WaitVisible(chromedp.ID("bookmarklet")))
		if got := value(t, desk, chromedp.Text(chromedp.ID("bm-text"))); !strings.HasPrefix(got, "Drag this link") {
			t.Errorf("with a mouse the bookmarklet section says %q", got)
		}
	})
}
