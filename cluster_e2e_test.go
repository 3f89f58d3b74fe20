package main

import (
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/internal/etcdtest"
)

// clusterConfig is a host's configuration on the etcd engine: its own
// listeners and (unused) data file, the shared cluster and prefix.
func clusterConfig(dir, sinkAddr string, c *etcdtest.Cluster, prefix string) string {
	return smarthostConfig(dir, sinkAddr) + fmt.Sprintf(`[limits]
create_per_minute = 0
[store]
engine = "etcd"
sweep_interval = "1s"
[etcd]
endpoints = [%s]
prefix = %q
request_timeout = "3s"
lease_ttl = "5s"
`, `"`+strings.Join(c.Endpoints(), `", "`)+`"`, prefix)
}

// rcptCode opens a session to addr and answers the code of RCPT TO rcpt,
// leaving the session open when keep is set (its reservation held).
func rcptCode(t *testing.T, addr, rcpt string, keep bool) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if keep {
		// Held until the test ends: a client nothing refers to is closed
		// by its connection's finalizer at the next GC, which ends the
		// session and gives its reservation back (seen under load: the
		// doomed host's session 'disconnected' 270 ms after its RCPT).
		t.Cleanup(func() { c.Close() })
	} else {
		defer c.Close()
	}
	if err := c.Mail("sender@example.org"); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(rcpt)
	if err == nil {
		return 250
	}
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Fatalf("RCPT %s: %v", rcpt, err)
	}
	return te.Code
}

// send relays one message to rcpt through addr and answers the error
// (nil for a 250).
func send(addr, rcpt string) error {
	return smtp.SendMail(addr, nil, "sender@example.org", []string{rcpt}, []byte(testMessage))
}

// TestTwoHostsOneCluster runs two real tempalias binaries on one real
// 3-member etcd cluster: what one host does, the other sees at once; the
// race for the last uses is decided by the cluster; and the cluster's
// failures are 4xx and 503, never a refusal, a crash or a false 404.
func TestTwoHostsOneCluster(t *testing.T) {
	cluster := etcdtest.Start(t)
	sk := startSinkWith(t, &sink{msgs: make(chan sunk, 300)})
	prefix := "/e2e/"
	a := start(t, clusterConfig(t.TempDir(), sk.addr, cluster, prefix))
	b := start(t, clusterConfig(t.TempDir(), sk.addr, cluster, prefix))
	hosts := []*proc{a, b}
	create := func(p *proc, body string) (id, addr, token string) {
		t.Helper()
		status, got := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", body)
		if status != 201 {
			t.Fatalf("create: %d %v", status, got)
		}
		return got["id"].(string), got["alias"].(string), got["token"].(string)
	}

	// Made on A: seen and relayed by B at once.
	id, addr, token := create(a, `{"target":"t@example.com","max-usage":5}`)
	if status, got := httpDo(t, "GET", "http://"+b.addrs["http"]+"/aliases/"+id, "", "Authorization", "Bearer "+token); status != 200 || got["remaining"] != 5.0 {
		t.Fatalf("GET on B: %d %v", status, got)
	}
	if err := send(b.addrs["smtp"], addr); err != nil {
		t.Fatalf("relay on B: %v", err)
	}
	sk.next(t)

	// 40 senders split over both hosts race for the last 4 uses. Each
	// tries again after a 4xx, as a sender's MTA does, until it is
	// delivered or refused for good: a use is busy while another session
	// holds it, and on a loaded machine a commit may time out (a 4xx at
	// the dot) and give its use back only after the others had their
	// answers. So 4 are delivered, and never more.
	var wg sync.WaitGroup
	var delivered atomic.Int64
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			for {
				err := send(p.addrs["smtp"], addr)
				var te *textproto.Error
				switch {
				case err == nil:
					delivered.Add(1)
					return
				case errors.As(err, &te) && te.Code == 550:
					return
				case errors.As(err, &te) && te.Code/100 == 4 && time.Now().Before(deadline):
					time.Sleep(20 * time.Millisecond) // a sender's retry interval, shortened: a pause, not a wait for an event
				default:
					t.Errorf("racing session: %v", err)
					return
				}
			}
		}(hosts[i%2])
	}
	wg.Wait()
	if n := delivered.Load(); n != 4 {
		t.Fatalf("%d racing messages delivered, want the 4 uses left", n)
	}
	if n := len(sk.msgs); n != 4 {
		t.Fatalf("the smarthost got %d racing messages, want 4", n)
	}
	for range 4 {
		sk.next(t)
	}

	// 200 concurrent creations over both hosts: 200 distinct ids.
	ids := make(chan string, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			// A creation that a loaded cluster did not commit within
			// request_timeout is a 503 with Retry-After, and a client
			// tries again: the ids must still all differ.
			for attempt := 1; ; attempt++ {
				res, body, err := loadHTTP("POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"many@example.com"}`, "")
				switch {
				case err != nil:
					t.Error(err)
					return
				case res.StatusCode == 201:
					ids <- strings.TrimPrefix(res.Header.Get("Location"), "/aliases/")
					return
				case res.StatusCode == 503 && body["error"] == "unavailable" && res.Header.Get("Retry-After") != "" && attempt < 5:
				default:
					t.Errorf("creation, attempt %d: %d %v", attempt, res.StatusCode, body)
					return
				}
			}
		}(hosts[i%2])
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %s issued twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 200 {
		t.Fatalf("%d distinct ids from 200 creations", len(seen))
	}

	// Revoked on B, refused on A at once.
	id2, addr2, token2 := create(a, `{"target":"t@example.com"}`)
	if code := rcptCode(t, a.addrs["smtp"], addr2, false); code != 250 {
		t.Fatalf("RCPT before revocation: %d", code)
	}
	if status, _ := httpDo(t, "DELETE", "http://"+b.addrs["http"]+"/aliases/"+id2, "", "Authorization", "Bearer "+token2); status != 204 {
		t.Fatalf("revoke on B: %d", status)
	}
	if code := rcptCode(t, a.addrs["smtp"], addr2, false); code != 550 {
		t.Fatalf("RCPT on A after revocation on B: %d, want 550", code)
	}

	// The admin commands of a host with no server running open the
	// cluster themselves: they see what the running hosts made.
	t.Run("admin commands", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "admin.toml")
		writeFile(t, cfg, []byte(clusterConfig(dir, sk.addr, cluster, prefix)), 0o600)
		id3, _, token3 := create(a, `{"target":"admin@example.com","max-usage":3}`)
		admin := func(args ...string) string {
			t.Helper()
			out, err := exec.Command(binary, append([]string{args[0], "-config", cfg}, args[1:]...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("tempalias %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		if out := admin("list"); !strings.Contains(out, id3) || !strings.Contains(out, "admin@example.com") {
			t.Fatalf("list does not show %s:\n%s", id3, out)
		}
		if out := admin("show", id3); !strings.Contains(out, `"admin@example.com"`) {
			t.Fatalf("show %s:\n%s", id3, out)
		}
		admin("change", "-max-usage", "7", id3)
		if status, got := httpDo(t, "GET", "http://"+b.addrs["http"]+"/aliases/"+id3, "", "Authorization", "Bearer "+token3); status != 200 || got["max-usage"] != 7.0 {
			t.Fatalf("after change on the command line, host B shows %d %v", status, got)
		}
		admin("revoke", id3)
		if status, _ := httpDo(t, "GET", "http://"+a.addrs["http"]+"/aliases/"+id3, "", "Authorization", "Bearer "+token3); status != 404 {
			t.Fatalf("after revoke on the command line, host A answers %d", status)
		}
	})
	t.Run("limits across hosts", func(t *testing.T) { testLimitsAcrossHosts(t, cluster) })
	t.Run("cluster failures", func(t *testing.T) { testClusterFailures(t, cluster, sk, a, b, create) })
	t.Run("dead host", func(t *testing.T) { testDeadHost(t, cluster, b, prefix) })
}

// testLimitsAcrossHosts runs two more hosts with the limits the store
// counts: the cluster counts them, so two hosts allow what one does.
func testLimitsAcrossHosts(t *testing.T, cluster *etcdtest.Cluster) {
	sk := startSinkWith(t, &sink{msgs: make(chan sunk, 10)}) // their own, so the other tests count theirs alone
	limits := func() string {
		cfg := clusterConfig(t.TempDir(), sk.addr, cluster, "/e2e-limits/")
		return strings.Replace(cfg, "create_per_minute = 0\n", "create_per_minute = 0\ncreations_per_target_per_day = 3\nmessages_per_alias_hour = 2\n", 1)
	}
	hosts := []*proc{start(t, limits()), start(t, limits())}
	for i := range 5 {
		status, got := httpDo(t, "POST", "http://"+hosts[i%2].addrs["http"]+"/aliases", `{"target":"daily@example.com"}`)
		switch {
		case i < 3 && status != 201:
			t.Fatalf("creation %d of the day: %d %v", i+1, status, got)
		case i >= 3 && (status != 429 || got["error"] != "rate-limited" || !strings.Contains(got["description"].(string), "today")):
			t.Fatalf("creation %d of the day, on host %d: %d %v; want 429 rate-limited", i+1, i%2, status, got)
		}
	}
	// Two messages an hour for one alias, over both hosts together.
	status, got := httpDo(t, "POST", "http://"+hosts[0].addrs["http"]+"/aliases", `{"target":"hourly@example.com"}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, got)
	}
	addr := got["alias"].(string)
	for i := range 4 {
		err := send(hosts[i%2].addrs["smtp"], addr)
		var te *textproto.Error
		switch {
		case i < 2 && err != nil:
			t.Fatalf("message %d of the hour: %v", i+1, err)
		case i >= 2 && !(errors.As(err, &te) && te.Code == 450 && strings.HasPrefix(te.Msg, "4.7.1 ")):
			t.Fatalf("message %d of the hour, on host %d: %v; want 450 4.7.1", i+1, i%2, err)
		}
	}
}

// testDeadHost kills a tempalias host with kill -9 while it holds one
// alias's reservation (RCPT taken, no data) and another alias's
// committed use (the end of data sent, the smarthost's reply pending):
// the first comes back once the host's lease ends, the second stays spent.
func testDeadHost(t *testing.T, cluster *etcdtest.Cluster, b *proc, prefix string) {
	gated := startSinkWith(t, &sink{msgs: make(chan sunk, 10), gate: make(chan struct{})})
	defer close(gated.gate)
	c := start(t, clusterConfig(t.TempDir(), gated.addr, cluster, prefix))
	status, got := httpDo(t, "POST", "http://"+b.addrs["http"]+"/aliases", `{"target":"t@example.com","max-usage":1}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, got)
	}
	reserved := got["alias"].(string)
	status, got = httpDo(t, "POST", "http://"+b.addrs["http"]+"/aliases", `{"target":"t@example.com","max-usage":1}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, got)
	}
	committed, committedURL, committedToken := got["alias"].(string), "http://"+b.addrs["http"]+"/aliases/"+got["id"].(string), got["token"].(string)

	if code := rcptCode(t, c.addrs["smtp"], reserved, true); code != 250 {
		t.Fatalf("RCPT on the doomed host: %d", code)
	}
	sent := make(chan error, 1)
	go func() { sent <- send(c.addrs["smtp"], committed) }()
	// The smarthost holds its verdict; the use was committed before the
	// end of data went out, so the alias is used up on every host. (Asked
	// through the API: an RCPT would reserve the use itself.)
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, got := httpDo(t, "GET", committedURL, "", "Authorization", "Bearer "+committedToken)
		if got["relayed"] == 1.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message never reached the commit point: %v", got)
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster's state
	}
	if code := rcptCode(t, b.addrs["smtp"], reserved, false); code/100 != 4 {
		t.Fatalf("RCPT while the doomed host holds the use: %d, want 4xx", code)
	}
	c.cmd.Process.Kill()
	<-c.done
	<-sent
	// The reservation comes back with the lease (5s: a shorter one can run
	// out on a loaded machine while the host lives); the committed use
	// does not.
	for deadline := time.Now().Add(30 * time.Second); ; {
		code := rcptCode(t, b.addrs["smtp"], reserved, false)
		if code == 250 {
			break
		}
		if code/100 != 4 || time.Now().After(deadline) {
			t.Fatalf("RCPT after the host died: %d", code)
		}
		time.Sleep(100 * time.Millisecond) // the lease runs out in the cluster's time
	}
	if code := rcptCode(t, b.addrs["smtp"], committed, false); code != 550 {
		t.Fatalf("RCPT for the committed use after the host died: %d, want 550", code)
	}
}
