package httpd

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempalias/tempalias/alias"
)

type fakeMailer struct {
	mu   sync.Mutex
	sent []Confirmation
	fail bool
}

func (m *fakeMailer) SendConfirmation(_ context.Context, c Confirmation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("smarthost down")
	}
	m.sent = append(m.sent, c)
	return nil
}

func (m *fakeMailer) last(t *testing.T) Confirmation {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sent) == 0 {
		t.Fatal("no confirmation sent")
	}
	return m.sent[len(m.sent)-1]
}

func (m *fakeMailer) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sent)
}

func TestVerifiedTargets(t *testing.T) {
	mailer := &fakeMailer{}
	ta := newTestAPI(t, func(c *Config) {
		c.Verify = &Verify{Mailer: mailer, Remember: 30 * 24 * time.Hour, PublicURL: "https://tempalias.test/", MailsPerTargetPerDay: 5}
	})
	r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"new@example.com","max-usage":2}`)
	if r.status != 201 || r.body["status"] != "pending" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	id, token := r.body["id"].(string), r.body["token"].(string)
	c := mailer.last(t)
	if c.Target != "new@example.com" || c.Alias != id+"@tempalias.test" || !strings.HasPrefix(c.Link, "https://tempalias.test/confirm/") {
		t.Fatalf("confirmation %+v", c)
	}
	if _, err := ta.store.Reserve(bg, id, testNow); err != alias.ErrNotFound {
		t.Fatalf("pending alias takes mail: %v", err)
	}
	if g := ta.do(t, "GET", "/aliases/"+id, "", "", "Authorization", "Bearer "+token); g.body["status"] != "pending" {
		t.Fatalf("GET pending: %s", g.raw)
	}

	path := strings.TrimPrefix(c.Link, "https://tempalias.test")
	// Following the link (as a mail scanner does) confirms nothing.
	page := ta.do(t, "GET", path, "", "")
	if page.status != 200 || !strings.Contains(page.raw, `method="post"`) {
		t.Fatalf("confirm page: %d %s", page.status, page.raw)
	}
	if _, err := ta.store.Reserve(bg, id, testNow); err != alias.ErrNotFound {
		t.Fatalf("GET confirmed the alias: %v", err)
	}
	// A cross-site POST is refused.
	if x := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "cross-site"); x.status != 403 {
		t.Fatalf("cross-site confirm: %d", x.status)
	}
	done := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "same-origin")
	if done.status != 200 || !strings.Contains(done.raw, id+"@tempalias.test") {
		t.Fatalf("confirm: %d %s", done.status, done.raw)
	}
	if again := ta.do(t, "POST", path, "", "", "Sec-Fetch-Site", "same-origin"); again.status != 404 {
		t.Fatalf("second confirm: %d", again.status)
	}
	if _, err := ta.store.Reserve(bg, id, testNow); err != nil {
		t.Fatalf("confirmed alias refuses mail: %v", err)
	}
	// The target is remembered: the next alias is active at once, no mail.
	before := mailer.count()
	r = ta.do(t, "POST", "/aliases", jsonType, `{"target":"NEW@example.com"}`)
	if r.status != 201 || r.body["status"] != "active" || mailer.count() != before {
		t.Fatalf("second alias: %d %s, %d mails", r.status, r.raw, mailer.count()-before)
	}
	// ...until the memory runs out.
	ta.clock.Add(31 * 24 * time.Hour)
	r = ta.do(t, "POST", "/aliases", jsonType, `{"target":"new@example.com"}`)
	if r.body["status"] != "pending" || mailer.count() != before+1 {
		t.Fatalf("after 31 days: %s", r.raw)
	}
}

func TestVerifyMailFailure(t *testing.T) {
	mailer := &fakeMailer{fail: true}
	ta := newTestAPI(t, func(c *Config) {
		c.CreationsPerTargetPerDay = 2
		c.Verify = &Verify{Mailer: mailer, Remember: time.Hour, PublicURL: "http://x", MailsPerTargetPerDay: 2}
	})
	// Failures use up neither the day's confirmation mails nor its
	// creations for the target: once the mailer is back, both still work.
	for range 3 {
		r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"new@example.com"}`)
		if r.status != 500 || r.body["error"] != "server-error" || strings.Contains(r.raw, "smarthost") {
			t.Fatalf("create with the mailer down: %d %s", r.status, r.raw)
		}
	}
	mailer.mu.Lock()
	mailer.fail = false
	mailer.mu.Unlock()
	if r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"new@example.com"}`); r.status != 201 {
		t.Fatalf("after the mailer recovered: %d %s", r.status, r.raw)
	}
	// Only the alias whose mail went out lives.
	if n, err := ta.store.LiveForTarget(bg, "new@example.com", testNow); n != 1 || err != nil {
		t.Fatalf("%d aliases alive, want 1 (%v)", n, err)
	}
}

func TestPerTargetLimits(t *testing.T) {
	mailer := &fakeMailer{}
	ta := newTestAPI(t, func(c *Config) {
		c.AliasesPerTarget = 2
		c.CreationsPerTargetPerDay = 3
		c.Verify = &Verify{Mailer: mailer, Remember: time.Hour, PublicURL: "http://x", MailsPerTargetPerDay: 2}
	})
	create := func(target string) response {
		return ta.do(t, "POST", "/aliases", jsonType, `{"target":"`+target+`"}`)
	}
	// Confirmation mails per target per day.
	for i := range 2 {
		if r := create("a@example.com"); r.status != 201 {
			t.Fatalf("pending %d: %d %s", i, r.status, r.raw)
		}
	}
	if r := create("a@example.com"); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("third confirmation mail: %d %s", r.status, r.raw)
	}
	if mailer.count() != 2 {
		t.Fatalf("%d mails sent, want 2", mailer.count())
	}

	// Live aliases per target, and creations per target per day.
	ta = newTestAPI(t, func(c *Config) {
		c.AliasesPerTarget = 2
		c.CreationsPerTargetPerDay = 3
	})
	first := create("b@example.com")
	if r := create("b@example.com"); r.status != 201 {
		t.Fatalf("second: %d %s", r.status, r.raw)
	}
	if r := create("b@example.com"); r.status != 429 || !strings.Contains(r.raw, "live aliases") {
		t.Fatalf("third live alias: %d %s", r.status, r.raw)
	}
	if d := ta.do(t, "DELETE", "/aliases/"+first.body["id"].(string), "", "", "Authorization", "Bearer "+first.body["token"].(string)); d.status != 204 {
		t.Fatal(d.raw)
	}
	// One revoked: room for one more, which is the day's third creation.
	third := create("b@example.com")
	if third.status != 201 {
		t.Fatalf("after a revoke: %d %s", third.status, third.raw)
	}
	// Creations per target per day: the fourth attempt of the day is refused
	// whatever the live count.
	ta.clock.Add(time.Hour)
	// With one more revoked there is room for a live alias: only the
	// daily limit refuses.
	if d := ta.do(t, "DELETE", "/aliases/"+third.body["id"].(string), "", "", "Authorization", "Bearer "+third.body["token"].(string)); d.status != 204 {
		t.Fatal(d.raw)
	}
	// Refused until the store's day ends, at midnight UTC: testNow is
	// 08:00, an hour has passed.
	if r := create("b@example.com"); r.status != 429 || !strings.Contains(r.raw, "today") || r.header.Get("Retry-After") != "54000" {
		t.Fatalf("fourth creation of the day: %d %s, Retry-After %q", r.status, r.raw, r.header.Get("Retry-After"))
	}
}

type listAll struct{}

func (listAll) Listed(context.Context, netip.Addr) (string, bool) { return "bl.test", true }

func TestBlocklistedClient(t *testing.T) {
	ta := newTestAPI(t, func(c *Config) { c.Blocklist = listAll{} })
	r := ta.do(t, "POST", "/aliases", jsonType, `{"target":"t@example.com"}`)
	if r.status != 403 || r.body["error"] != "blocked" {
		t.Fatalf("listed client: %d %s", r.status, r.raw)
	}
}
