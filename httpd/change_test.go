package httpd

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// created is an alias made through the API: its id and token.
type created struct{ id, token string }

func (ta *testAPI) create(t *testing.T, body string) created {
	t.Helper()
	r := ta.do(t, "POST", "/aliases", jsonType, body)
	if r.status != http.StatusCreated {
		t.Fatalf("create %s: %d %s", body, r.status, r.raw)
	}
	return created{r.body["id"].(string), r.body["token"].(string)}
}

func (ta *testAPI) patch(t *testing.T, c created, body string) response {
	t.Helper()
	return ta.do(t, "PATCH", "/aliases/"+c.id, jsonType, body, "Authorization", "Bearer "+c.token)
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// PATCH through the real router and a real store: every field, every
// bound, and the answer the same view as GET.
func TestChange(t *testing.T) {
	ta := newTestAPI(t, nil)
	later := testNow.Add(5 * time.Hour) // days count from the PATCH, not from creation
	for _, tc := range []struct {
		name   string
		body   string
		status int
		check  func(t *testing.T, r response)
	}{
		{"days", `{"days": 10}`, 200, func(t *testing.T, r response) {
			if want := later.Add(10 * 24 * time.Hour).Format(time.RFC3339); r.body["expires"] != want {
				t.Errorf("expires %v, want %s", r.body["expires"], want)
			}
		}},
		{"days at the maximum", `{"days": 60}`, 200, nil},
		{"days 0", `{"days": 0}`, 400, nil},
		{"days over the maximum", `{"days": 61}`, 400, nil},
		{"days negative", `{"days": -1}`, 400, nil},
		{"days a fraction", `{"days": 1.5}`, 400, nil},
		{"days a string", `{"days": "3"}`, 400, nil},
		{"max-usage", `{"max-usage": 7}`, 200, func(t *testing.T, r response) {
			if r.body["max-usage"] != 7.0 || r.body["remaining"] != 5.0 || r.body["relayed"] != 2.0 {
				t.Errorf("max-usage 7 after 2 relayed: %s", r.raw)
			}
		}},
		{"max-usage at the maximum", `{"max-usage": 100}`, 200, nil},
		{"max-usage over the maximum", `{"max-usage": 101}`, 400, nil},
		{"max-usage 0", `{"max-usage": 0}`, 400, nil},
		{"max-usage below relayed", `{"max-usage": 1}`, 400, func(t *testing.T, r response) {
			if d, _ := r.body["description"].(string); !strings.Contains(d, "at least 2") {
				t.Errorf("description %q does not say the bound", d)
			}
		}},
		{"max-usage equal to relayed", `{"max-usage": 2}`, 200, func(t *testing.T, r response) {
			if r.body["status"] != "used-up" || r.body["remaining"] != 0.0 {
				t.Errorf("max-usage 2 after 2 relayed: %s", r.raw)
			}
		}},
		{"used-up revived", `{"max-usage": 4}`, 200, func(t *testing.T, r response) {
			if r.body["status"] != "active" || r.body["remaining"] != 2.0 {
				t.Errorf("revived: %s", r.raw)
			}
		}},
		{"allow-from", `{"allow-from": ["Shop.Example", "friend@mail.example"]}`, 200, func(t *testing.T, r response) {
			if got := strs(r.body["allow-from"]); !slices.Equal(got, []string{"shop.example", "friend@mail.example"}) {
				t.Errorf("allow-from %q", got)
			}
		}},
		{"allow-from cleared", `{"allow-from": []}`, 200, func(t *testing.T, r response) {
			if got := strs(r.body["allow-from"]); len(got) != 0 {
				t.Errorf("allow-from %q", got)
			}
		}},
		{"allow-from not a list", `{"allow-from": "shop.example"}`, 400, nil},
		{"allow-from malformed entry", `{"allow-from": ["shop.example", "not a domain"]}`, 400, func(t *testing.T, r response) {
			if d, _ := r.body["description"].(string); !strings.Contains(d, `"not a domain"`) {
				t.Errorf("description %q does not name the entry", d)
			}
		}},
		{"allow-from of numbers", `{"allow-from": [1]}`, 400, nil},
		{"allow-from 11 entries", `{"allow-from": [` + entries(11) + `]}`, 400, nil},
		{"allow-from 10 entries", `{"allow-from": [` + entries(10) + `]}`, 200, nil},
		{"all three", `{"days": 2, "max-usage": 9, "allow-from": ["x.example"]}`, 200, func(t *testing.T, r response) {
			if r.body["max-usage"] != 9.0 || !slices.Equal(strs(r.body["allow-from"]), []string{"x.example"}) {
				t.Errorf("all three: %s", r.raw)
			}
		}},
		{"empty object", `{}`, 400, nil},
		{"nulls only", `{"days": null}`, 400, nil},
		{"unknown field", `{"days": 3, "target": "x@example.com"}`, 400, nil},
		{"case-folded field", `{"Days": 3}`, 400, nil},
		{"field twice", `{"days": 3, "days": 4}`, 400, nil},
		{"trailing data", `{"days": 3} {}`, 400, nil},
		{"broken JSON", `{"days": 3`, 400, nil},
		{"an array", `[]`, 400, nil},
		{"empty body", ``, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta.clock.Set(testNow)
			c := ta.create(t, `{"target":"t@example.com","days":3,"max-usage":5}`)
			for range 2 {
				deliver(t, ta.store, c.id, testNow)
			}
			if tc.name == "used-up revived" {
				if r := ta.patch(t, c, `{"max-usage": 2}`); r.body["status"] != "used-up" {
					t.Fatalf("not used up: %s", r.raw)
				}
			}
			ta.clock.Set(later)
			r := ta.patch(t, c, tc.body)
			if r.status != tc.status {
				t.Fatalf("PATCH %s: %d %s, want %d", tc.body, r.status, r.raw, tc.status)
			}
			if tc.status == 400 && r.body["error"] != "invalid-data" {
				t.Errorf("error %v, want invalid-data", r.body["error"])
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if tc.status == 200 {
				// The same view as GET.
				g := ta.do(t, "GET", "/aliases/"+c.id, "", "", "Authorization", "Bearer "+c.token)
				if g.raw != r.raw {
					t.Errorf("PATCH answered\n%s\nGET answers\n%s", r.raw, g.raw)
				}
			}
		})
	}
}

// The lifetime sentence counts from now, as days and max-usage do: after
// a PATCH of days it says that many days, whenever the alias was made, and
// its messages are those still to relay.
func TestChangeLifetime(t *testing.T) {
	ta := newTestAPI(t, nil)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name      string
		create    string
		delivered int
		at        time.Duration // after creation, when the PATCH (or GET) is sent
		patch     string        // "": a GET
		want      string
	}{
		{"new", `{"days": 3}`, 0, 0, "", "It stops working after 3 days."},
		{"days changed later", `{"days": 3}`, 0, 2 * day, `{"days": 3}`, "It stops working after 3 days."},
		{"days changed, with messages", `{"days": 3, "max-usage": 5}`, 2, 2 * day, `{"days": 7}`, "It stops working after 7 days or 3 more messages, whichever comes first."},
		{"messages changed", `{"days": 3, "max-usage": 5}`, 2, day, `{"max-usage": 9}`, "It stops working after 2 days or 7 more messages, whichever comes first."},
		{"none relayed", `{"days": 3, "max-usage": 5}`, 0, day, `{"days": 1}`, "It stops working after 1 day or 5 messages, whichever comes first."},
		{"a day later", `{"days": 3, "max-usage": 5}`, 1, day, "", "It stops working after 2 days or 4 more messages, whichever comes first."},
		{"hours left", `{"days": 1}`, 0, 18 * time.Hour, "", "It stops working after 6 hours."},
		{"used up", `{"days": 3, "max-usage": 2}`, 2, day, `{"days": 5}`, "It has relayed all the messages it was made for."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta.clock.Set(testNow)
			c := ta.create(t, `{"target":"t@example.com",`+tc.create[1:])
			for range tc.delivered {
				deliver(t, ta.store, c.id, testNow)
			}
			ta.clock.Set(testNow.Add(tc.at))
			var r response
			if tc.patch != "" {
				r = ta.patch(t, c, tc.patch)
			} else {
				r = ta.do(t, "GET", "/aliases/"+c.id, "", "", "Authorization", "Bearer "+c.token)
			}
			if r.status != 200 || r.body["lifetime"] != tc.want {
				t.Errorf("%d, lifetime %q; want %q", r.status, r.body["lifetime"], tc.want)
			}
		})
	}
}

func entries(n int) string {
	var e []string
	for i := range n {
		e = append(e, fmt.Sprintf(`"d%d.example"`, i))
	}
	return strings.Join(e, ",")
}

// The revived alias relays again, and counts as live for its target.
func TestChangeRevives(t *testing.T) {
	ta := newTestAPI(t, func(c *Config) { c.AliasesPerTarget = 1 })
	c := ta.create(t, `{"target":"t@example.com","max-usage":1}`)
	deliver(t, ta.store, c.id, testNow)
	// Used up: no longer live, so another alias for the target may be made.
	other := ta.create(t, `{"target":"t@example.com"}`)
	if r := ta.do(t, "DELETE", "/aliases/"+other.id, "", "", "Authorization", "Bearer "+other.token); r.status != 204 {
		t.Fatal(r.raw)
	}
	if _, err := ta.store.Reserve(bg, c.id, testNow); err == nil {
		t.Fatal("a used-up alias reserved a use")
	}
	if r := ta.patch(t, c, `{"max-usage": 2}`); r.status != 200 || r.body["status"] != "active" {
		t.Fatalf("revive: %d %s", r.status, r.raw)
	}
	deliver(t, ta.store, c.id, testNow)
	if n, err := ta.store.LiveForTarget(bg, "t@example.com", testNow); err != nil {
		t.Fatal(err)
	} else if n != 0 {
		t.Fatalf("used up again: %d live", n)
	}
	if r := ta.patch(t, c, `{"max-usage": 3}`); r.status != 200 {
		t.Fatal(r.raw)
	}
	// Live again: the target's one place is taken.
	if r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`); r.status != 429 {
		t.Fatalf("create beside a revived alias with aliases_per_target 1: %d %s", r.status, r.raw)
	}
}

// Wrong token, unknown, expired and revoked all get GET's 404; a bad
// content type is 415 and a large body 413, as for creation.
func TestChangeRefused(t *testing.T) {
	ta := newTestAPI(t, nil)
	c := ta.create(t, `{"target":"t@example.com","days":1}`)
	gone := ta.create(t, `{"target":"t@example.com"}`)
	if r := ta.do(t, "DELETE", "/aliases/"+gone.id, "", "", "Authorization", "Bearer "+gone.token); r.status != 204 {
		t.Fatal(r.raw)
	}
	notFound := []struct {
		name, id, token string
	}{
		{"wrong token", c.id, typoToken(c.token)},
		{"another alias's token", c.id, gone.token},
		{"no token", c.id, ""},
		{"unknown id", "zzzzzzzz", c.token},
		{"revoked", gone.id, gone.token},
	}
	for _, tc := range notFound {
		r := ta.do(t, "PATCH", "/aliases/"+tc.id, jsonType, `{"days": 5}`, "Authorization", "Bearer "+tc.token)
		if r.status != 404 || r.body["error"] != "not-found" || r.body["description"] != errNotFound.Description {
			t.Errorf("%s: %d %s", tc.name, r.status, r.raw)
		}
	}
	if r := ta.do(t, "PATCH", "/aliases/"+c.id, "text/plain", `{"days": 5}`, "Authorization", "Bearer "+c.token); r.status != 415 {
		t.Errorf("text/plain: %d %s", r.status, r.raw)
	}
	big := `{"allow-from": ["` + strings.Repeat("a", MaxBodyBytes) + `.example"]}`
	if r := ta.do(t, "PATCH", "/aliases/"+c.id, jsonType, big, "Authorization", "Bearer "+c.token); r.status != 413 {
		t.Errorf("large body: %d %s", r.status, r.raw)
	}
	ta.clock.Add(25 * time.Hour)
	if r := ta.patch(t, c, `{"days": 5}`); r.status != 404 {
		t.Errorf("expired: %d %s", r.status, r.raw)
	}
}

func typoToken(tok string) string {
	if tok[0] == 'a' {
		return "b" + tok[1:]
	}
	return "a" + tok[1:]
}

// allow-from and lock-sender at creation, shown by the view.
func TestCreateAllowFrom(t *testing.T) {
	ta := newTestAPI(t, nil)
	for _, tc := range []struct {
		body   string
		status int
		allow  []string
		lock   bool
	}{
		{`{"target":"t@example.com","allow-from":["shop.example"]}`, 201, []string{"shop.example"}, false},
		{`{"target":"t@example.com","allow-from":["EU.Shop.Example"]}`, 201, []string{"eu.shop.example"}, false},
		{`{"target":"t@example.com","allow-from":["Friend@Mail.Example"]}`, 201, []string{"friend@mail.example"}, false},
		{`{"target":"t@example.com","allow-from":[]}`, 201, []string{}, false},
		{`{"target":"t@example.com","allow-from":null}`, 201, []string{}, false},
		{`{"target":"t@example.com","lock-sender":true}`, 201, []string{}, true},
		{`{"target":"t@example.com","lock-sender":false}`, 201, []string{}, false},
		{`{"target":"t@example.com","allow-from":[` + entries(10) + `]}`, 201, nil, false},
		{`{"target":"t@example.com","allow-from":[` + entries(11) + `]}`, 400, nil, false},
		{`{"target":"t@example.com","allow-from":"shop.example"}`, 400, nil, false},
		{`{"target":"t@example.com","allow-from":{"a":1}}`, 400, nil, false},
		{`{"target":"t@example.com","allow-from":["shop"]}`, 400, nil, false},
		{`{"target":"t@example.com","allow-from":["x@"]}`, 400, nil, false},
		{`{"target":"t@example.com","allow-from":["a b.example"]}`, 400, nil, false},
		{`{"target":"t@example.com","lock-sender":"yes"}`, 400, nil, false},
		{`{"target":"t@example.com","lock-sender":1}`, 400, nil, false},
		{`{"target":"t@example.com","Allow-From":[]}`, 400, nil, false},
	} {
		r := ta.do(t, "POST", "/aliases", jsonType, tc.body)
		if r.status != tc.status {
			t.Errorf("%s: %d %s", tc.body, r.status, r.raw)
			continue
		}
		if r.status != 201 {
			if r.body["error"] != "invalid-data" {
				t.Errorf("%s: %s", tc.body, r.raw)
			}
			continue
		}
		if tc.allow != nil && !slices.Equal(strs(r.body["allow-from"]), tc.allow) || r.body["lock-sender"] != tc.lock {
			t.Errorf("%s: allow-from %v lock-sender %v", tc.body, r.body["allow-from"], r.body["lock-sender"])
		}
		g := ta.do(t, "GET", "/aliases/"+r.body["id"].(string), "", "", "Authorization", "Bearer "+r.body["token"].(string))
		if !slices.Equal(strs(g.body["allow-from"]), strs(r.body["allow-from"])) || g.body["lock-sender"] != tc.lock {
			t.Errorf("%s: GET shows %s", tc.body, g.raw)
		}
	}
}

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
