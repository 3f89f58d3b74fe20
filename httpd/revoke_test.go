package httpd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/store"
)

// The revoke link of a message: GET shows the button and changes
// nothing, a same-origin POST revokes, a cross-site one does not; a
// tampered mac, another alias's id with this mac, an unknown id and a
// dead alias all get one "already gone" page.
func TestRevokeLink(t *testing.T) {
	ta := newTestAPI(t, nil)
	c := ta.create(t, `{"target":"t@example.com","max-usage":2}`)
	other := ta.create(t, `{"target":"t@example.com"}`)
	link := RevokeLink("https://tempalias.test/", ta.store.LinkKey(), c.id)
	path := strings.TrimPrefix(link, "https://tempalias.test")
	mac := path[strings.LastIndexByte(path, '/')+1:]
	if path != "/revoke/"+c.id+"/"+mac || !alias.RevokeMACValid(ta.store.LinkKey(), c.id, mac) {
		t.Fatalf("link %q", link)
	}

	page := ta.do(t, "GET", path, "", "")
	if page.status != 200 || !strings.Contains(page.raw, `<form method="post" action="`+path+`">`) || !strings.Contains(page.raw, c.id+"@tempalias.test") {
		t.Fatalf("GET: %d %s", page.status, page.raw)
	}
	for range 3 { // a scanner following the link, more than once
		ta.do(t, "GET", path, "", "")
	}
	if _, err := ta.store.Get(bg, c.id, testNow); err != nil {
		t.Fatalf("GET changed the alias: %v", err)
	}

	gone := ta.do(t, "GET", "/revoke/zzzzzzzz/"+mac, "", "")
	if gone.status != 404 || !strings.Contains(gone.raw, "Already gone") {
		t.Fatalf("unknown id: %d %s", gone.status, gone.raw)
	}
	flipped := []byte(mac)
	flipped[0] ^= 1
	for name, p := range map[string]string{
		"tampered mac":                "/revoke/" + c.id + "/" + string(flipped),
		"cut mac":                     "/revoke/" + c.id + "/" + mac[:len(mac)-1],
		"another alias with this mac": "/revoke/" + other.id + "/" + mac,
		"malformed id":                "/revoke/a.b/" + mac,
	} {
		for _, method := range []string{"GET", "POST"} {
			r := ta.do(t, method, p, "", "", "Sec-Fetch-Site", "same-origin")
			if r.status != gone.status || r.raw != gone.raw {
				t.Errorf("%s %s: %d, not the page of an unknown alias:\n%s", method, name, r.status, r.raw)
			}
		}
	}
	for _, id := range []string{c.id, other.id} {
		if _, err := ta.store.Get(bg, id, testNow); err != nil {
			t.Fatalf("a refused link revoked %s: %v", id, err)
		}
	}

	if x := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "cross-site"); x.status != 403 {
		t.Fatalf("cross-site POST: %d %s", x.status, x.raw)
	}
	if _, err := ta.store.Get(bg, c.id, testNow); err != nil {
		t.Fatalf("a cross-site POST revoked: %v", err)
	}
	done := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "same-origin")
	if done.status != 200 || !strings.Contains(done.raw, "Revoked") {
		t.Fatalf("POST: %d %s", done.status, done.raw)
	}
	if _, err := ta.store.Held(bg, c.id, testNow); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after POST: %v", err)
	}
	if _, err := ta.store.Get(bg, other.id, testNow); err != nil {
		t.Fatalf("the other alias: %v", err)
	}
	// Revoked: both now say it is gone, as for an unknown id.
	for _, method := range []string{"GET", "POST"} {
		r := ta.do(t, method, path, "", "", "Sec-Fetch-Site", "same-origin")
		if r.status != gone.status || r.raw != gone.raw {
			t.Errorf("%s after revoking: %d %s", method, r.status, r.raw)
		}
	}
	// Expired: gone too.
	ta.clock.Add(4 * 24 * time.Hour)
	otherPath := strings.TrimPrefix(RevokeLink("https://tempalias.test", ta.store.LinkKey(), other.id), "https://tempalias.test")
	if r := ta.do(t, "GET", otherPath, "", ""); r.status != gone.status || r.raw != gone.raw {
		t.Errorf("expired: %d %s", r.status, r.raw)
	}
}

// A used-up alias is still held: its link can revoke it.
func TestRevokeLinkUsedUp(t *testing.T) {
	ta := newTestAPI(t, nil)
	c := ta.create(t, `{"target":"t@example.com","max-usage":1}`)
	deliver(t, ta.store, c.id, testNow)
	path := strings.TrimPrefix(RevokeLink("http://x", ta.store.LinkKey(), c.id), "http://x")
	if r := ta.do(t, "GET", path, "", ""); r.status != 200 {
		t.Fatalf("GET: %d %s", r.status, r.raw)
	}
	if r := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "same-origin"); r.status != 200 {
		t.Fatalf("POST: %d %s", r.status, r.raw)
	}
	if _, err := ta.store.Held(bg, c.id, testNow); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after POST: %v", err)
	}
}

// Without a link key every link is refused, even one made with an empty
// key.
func TestRevokeLinkOff(t *testing.T) {
	ta := newTestAPI(t, func(c *Config) { c.LinkKey = nil })
	c := ta.create(t, `{"target":"t@example.com"}`)
	path := "/revoke/" + c.id + "/" + alias.RevokeMAC(nil, c.id)
	if r := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "same-origin"); r.status != 404 || !strings.Contains(r.raw, "Already gone") {
		t.Fatalf("POST: %d %s", r.status, r.raw)
	}
	if _, err := ta.store.Get(bg, c.id, testNow); err != nil {
		t.Fatal(err)
	}
}
