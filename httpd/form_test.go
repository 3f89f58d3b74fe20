package httpd_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/httpd"
)

// browserAccept is what Chromium sends when it submits a form.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"

// postForm posts body as a browser submits a form; hdr may override
// Accept and add headers.
func (ws *webServer) postForm(t *testing.T, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", ws.URL+"/aliases", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", browserAccept)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestFormCreate(t *testing.T) {
	ws := newWebServer(t, nil)
	start := time.Now()
	resp, body := ws.postForm(t, url.Values{"target": {" Me@Example.com "}, "days": {"2"}, "max-usage": {"4"}}.Encode(),
		"Origin", ws.URL, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: the page holds the token", cc)
	}
	checkPageHeaders(t, "form result", resp.Header)
	id := strings.TrimPrefix(resp.Header.Get("Location"), "/aliases/")
	if id == "" {
		t.Fatal("no Location")
	}
	al, err := ws.store.Get(bg, id, time.Now())
	if err != nil {
		t.Fatalf("the store does not know %s: %v", id, err)
	}
	if al.Target != "Me@example.com" || al.MaxUsage != 4 {
		t.Errorf("stored %+v", al)
	}
	if d := al.Expires.Sub(start); d < 47*time.Hour || d > 49*time.Hour {
		t.Errorf("expires in %v, want 2 days", d)
	}
	for _, want := range []string{id + "@tempalias.test", "It stops working after 2 days or 4 messages, whichever comes first.", "Management token", `href="/style.css"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}

	// Empty number fields mean "not given"; a browser sends them so.
	resp, body = ws.postForm(t, "target=you%40example.org&days=&max-usage=")
	if resp.StatusCode != http.StatusCreated || !strings.Contains(body, "It stops working after 3 days.") {
		t.Errorf("defaults: %d\n%s", resp.StatusCode, body)
	}
}

func TestFormErrors(t *testing.T) {
	ws := newWebServer(t, nil)
	for _, tc := range []struct {
		name   string
		body   string
		hdr    []string
		status int
		says   string
	}{
		{"own domain", "target=x%40tempalias.test&days=3", nil, 400, "target must not be an address of this service."},
		{"no target", "days=3", nil, 400, "target is required."},
		{"bad address", "target=not+an+address", nil, 400, "target"},
		{"days words", "target=a%40example.com&days=three", nil, 400, "days must be a whole number, like 3."},
		{"days too many", "target=a%40example.com&days=61", nil, 400, "days must be a whole number from 1 to 60."},
		{"max zero", "target=a%40example.com&max-usage=0", nil, 400, "max-usage must be a whole number from 1 to 100."},
		{"twice", "target=a%40example.com&days=1&days=2", nil, 400, "given twice"},
		{"garbled", "target=%zz", nil, 400, "garbled"},
		{"too large", "target=" + strings.Repeat("a", 5000), nil, 413, "larger than"},
		{"cross-site", "target=a%40example.com", []string{"Sec-Fetch-Site", "cross-site"}, 403, "only be sent from the tempalias page"},
		{"foreign origin", "target=a%40example.com", []string{"Origin", "https://evil.example"}, 403, "only be sent from the tempalias page"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := ws.postForm(t, tc.body, tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			checkPageHeaders(t, tc.name, resp.Header)
			if !strings.Contains(body, "Could not create the alias") || !strings.Contains(body, tc.says) {
				t.Errorf("page does not say %q:\n%s", tc.says, body)
			}
			if resp.Header.Get("Location") != "" {
				t.Error("an error with a Location")
			}
		})
	}
}

func TestFormRateLimit(t *testing.T) {
	ws := newWebServer(t, func(c *httpd.Config) { c.CreatePerMinute = 1 })
	if resp, body := ws.postForm(t, "target=a%40example.com"); resp.StatusCode != 201 {
		t.Fatalf("first: %d %s", resp.StatusCode, body)
	}
	resp, body := ws.postForm(t, "target=a%40example.com")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, "Too many aliases") {
		t.Errorf("page does not explain the limit:\n%s", body)
	}
}

// TestCallerLanguage: POST /aliases answers HTML only to a browser (Accept
// asking for text/html) sending a form; everyone else gets the contract's
// JSON, whatever content type they sent: curl --data sends the form type
// with a JSON body and gets the JSON 415.
func TestCallerLanguage(t *testing.T) {
	const (
		form     = "application/x-www-form-urlencoded"
		jsonType = "application/json"
		formBody = "target=a%40example.com"
		jsonBody = `{"target":"a@example.com"}`
		html     = "text/html; charset=utf-8"
		jsonCT   = "application/json; charset=utf-8"
	)
	for _, tc := range []struct {
		name, ctype, accept, body string
		status                    int
		answer                    string // Content-Type of the answer
		code                      string // the JSON error code, if JSON and an error
	}{
		{"browser form", form, browserAccept, formBody, 201, html, ""},
		{"browser form, invalid", form, browserAccept, "days=3", 400, html, ""},
		{"browser form, text/html only", form, "text/html", formBody, 201, html, ""},
		{"curl --data with JSON", form, "*/*", jsonBody, 415, jsonCT, "invalid-request-type"},
		{"curl --data with a form", form, "*/*", formBody, 415, jsonCT, "invalid-request-type"},
		{"form, no Accept", form, "", formBody, 415, jsonCT, "invalid-request-type"},
		{"form, Accept JSON", form, "application/json", formBody, 415, jsonCT, "invalid-request-type"},
		{"form, HTML refused", form, "text/html;q=0, */*", formBody, 415, jsonCT, "invalid-request-type"},
		{"form, HTML weight garbled", form, "text/html;q=x", formBody, 415, jsonCT, "invalid-request-type"},
		{"JSON from a browser", jsonType, browserAccept, jsonBody, 201, jsonCT, ""},
		{"JSON from a browser, invalid", jsonType, browserAccept, `{"days":3}`, 400, jsonCT, "invalid-data"},
		{"JSON from curl", jsonType, "*/*", jsonBody, 201, jsonCT, ""},
		{"JSON from curl, invalid", jsonType, "*/*", `{"days":3}`, 400, jsonCT, "invalid-data"},
		{"text/plain from a browser", "text/plain", browserAccept, jsonBody, 415, jsonCT, "invalid-request-type"},
		{"multipart from a browser", "multipart/form-data; boundary=x", browserAccept, "--x--", 415, jsonCT, "invalid-request-type"},
		{"no content type from curl", "", "*/*", jsonBody, 415, jsonCT, "invalid-request-type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws := newWebServer(t, nil)
			req, err := http.NewRequest("POST", ws.URL+"/aliases", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.answer {
				t.Fatalf("%d %s, want %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.answer, b)
			}
			if tc.answer != jsonCT {
				return
			}
			var body map[string]any
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("not JSON: %v: %s", err, b)
			}
			if tc.code != "" && (body["error"] != tc.code || body["description"] == "") {
				t.Errorf("error %v, want %s with a description: %s", body["error"], tc.code, b)
			}
			if tc.code == "" && body["id"] == nil {
				t.Errorf("no id in %s", b)
			}
		})
	}
}
