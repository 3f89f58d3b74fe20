package main

import (
	"bytes"
	"io"
	"net/http"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
)

// get fetches url and returns its status and body.
func get(t *testing.T, method, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
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
	return res.StatusCode, string(b)
}

var revokeRE = regexp.MustCompile(`(?m)^X-Tempalias-Revoke: (https://tempalias\.test/revoke/([0-9a-z]+)/([A-Za-z0-9_-]+))\r$`)

// The revoke link in relayed mail, end to end with the real binary: the
// message carries the alias's state; the link's GET changes nothing, even
// after a restart; a tampered link and another alias's id with this
// link's mac fail alike; a same-origin POST revokes, and the alias then
// refuses mail.
func TestBinaryRevokeLink(t *testing.T) {
	sk := startSink(t)
	dir := t.TempDir()
	cfg := strings.Replace(smarthostConfig(dir, sk.addr), "[http]\n", "[http]\npublic_url = \"https://tempalias.test\"\n", 1)
	p := start(t, cfg)
	api := "http://" + p.addrs["http"]
	status, a := httpDo(t, "POST", api+"/aliases", `{"target":"a@example.com","max-usage":3}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, a)
	}
	_, b := httpDo(t, "POST", api+"/aliases", `{"target":"b@example.com"}`)
	aAddr, bID := a["alias"].(string), b["id"].(string)
	if err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{aAddr}, []byte(testMessage)); err != nil {
		t.Fatal(err)
	}
	mail := sk.next(t)
	m := revokeRE.FindSubmatch(mail.data)
	if m == nil || string(m[2]) != a["id"] {
		t.Fatalf("no revoke link for %s in:\n%s", a["id"], mail.data)
	}
	for _, want := range []string{"X-Tempalias-Expires: " + a["expires"].(string) + "\r\n", "X-Tempalias-Remaining: 2\r\n"} {
		if !bytes.Contains(mail.data, []byte(want)) {
			t.Errorf("no %q in:\n%s", want, mail.data)
		}
	}
	if !bytes.HasSuffix(mail.data, []byte(testMessage)) {
		t.Errorf("the message is not intact after the added fields:\n%s", mail.data)
	}
	path := strings.TrimPrefix(string(m[1]), "https://tempalias.test")
	mac := string(m[3])

	// GET shows the button and changes nothing, also after a restart
	// (the key is in the data file).
	p.stop(t)
	p = start(t, cfg)
	api = "http://" + p.addrs["http"]
	for range 2 {
		if code, page := get(t, "GET", api+path); code != 200 || !strings.Contains(page, `action="`+path+`"`) {
			t.Fatalf("GET %s: %d\n%s", path, code, page)
		}
	}
	token := a["token"].(string)
	if code, v := httpDo(t, "GET", api+"/aliases/"+a["id"].(string), "", "Authorization", "Bearer "+token); code != 200 || v["remaining"] != 2.0 {
		t.Fatalf("after GET of the link: %d %v", code, v)
	}

	// A tampered link and another alias's id with this mac: the page of
	// an unknown alias, nothing revoked.
	goneCode, gonePage := get(t, "GET", api+"/revoke/zzzzzzzz/"+mac)
	if goneCode != 404 || !strings.Contains(gonePage, "Already gone") {
		t.Fatalf("unknown: %d\n%s", goneCode, gonePage)
	}
	tampered := []byte(mac)
	tampered[len(tampered)/2] ^= 1
	for _, bad := range []string{"/revoke/" + a["id"].(string) + "/" + string(tampered), "/revoke/" + bID + "/" + mac} {
		for _, method := range []string{"GET", "POST"} {
			if code, page := get(t, method, api+bad, "Sec-Fetch-Site", "same-origin"); code != goneCode || page != gonePage {
				t.Errorf("%s %s: %d\n%s", method, bad, code, page)
			}
		}
	}
	for _, who := range []map[string]any{a, b} {
		if code, _ := httpDo(t, "GET", api+"/aliases/"+who["id"].(string), "", "Authorization", "Bearer "+who["token"].(string)); code != 200 {
			t.Fatalf("%s after the bad links: %d", who["id"], code)
		}
	}
	// A cross-site POST is refused.
	if code, _ := get(t, "POST", api+path, "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Fatalf("cross-site POST: %d", code)
	}

	// The page's POST revokes.
	if code, page := get(t, "POST", api+path, "Sec-Fetch-Site", "same-origin"); code != 200 || !strings.Contains(page, "Revoked") {
		t.Fatalf("POST: %d\n%s", code, page)
	}
	if code, _ := httpDo(t, "GET", api+"/aliases/"+a["id"].(string), "", "Authorization", "Bearer "+token); code != 404 {
		t.Fatalf("after POST: %d", code)
	}
	err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{aAddr}, []byte(testMessage))
	if err == nil || !strings.Contains(err.Error(), "5.1.1") {
		t.Fatalf("mail after revoking: %v", err)
	}
	if code, page := get(t, "GET", api+path); code != goneCode || page != gonePage {
		t.Errorf("the link after revoking: %d\n%s", code, page)
	}
	if code, _ := httpDo(t, "GET", api+"/aliases/"+bID, "", "Authorization", "Bearer "+b["token"].(string)); code != 200 {
		t.Fatalf("the other alias: %d", code)
	}
	p.stop(t)
}
