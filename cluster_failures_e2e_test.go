package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempalias/tempalias/internal/etcdtest"
)

// The steps of testClusterFailures. An operation is counted under the
// step it started and ended in; one that spans a change of step is only
// checked for its reply.
const (
	stepHealthy    = iota // all three members
	stepLeaderDead        // the leader killed mid-load
	stepNoQuorum          // a second member killed: no quorum
	stepRestarting        // both started again, not yet healthy
	stepBack              // all three healthy again
	steps
)

var stepNames = [steps]string{"healthy", "leader dead", "no quorum", "restarting", "back"}

// loadMaxOps bounds the operations of one load, whatever the timing.
const loadMaxOps = 4000

// clusterLoad is concurrent mail and API traffic over both hosts that
// runs while testClusterFailures breaks and mends the cluster. Every
// reply is checked as it comes; counts per step and host say what each
// step saw.
type clusterLoad struct {
	hosts   []*proc
	limited []loadAlias // with a max-usage
	live    []loadAlias // without: live throughout
	step    atomic.Int32
	ops     atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	counts     [steps][2]map[string]int // step, host, reply kind
	accepted   map[string]int           // 250s per target, at the client
	delivered  map[string]int           // messages per target, at the smarthost
	violations []string
}

type loadAlias struct {
	id, addr, token, target string
	max                     int // 0 without a max-usage
}

func (l *clusterLoad) count(start int32, host int, kind string) {
	if end := l.step.Load(); end != start {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts[start][host][kind]++
}

func (l *clusterLoad) got(start int32, host int, kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[start][host][kind]
}

func (l *clusterLoad) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) < 20 {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

func (l *clusterLoad) bad() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.violations...)
}

// run starts n workers of each kind until stop.
func (l *clusterLoad) run(smtpWorkers, apiWorkers int) {
	for w := range smtpWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; l.more(); i++ {
				l.mail(i%2, l.pick(i))
			}
		}()
	}
	for w := range apiWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; l.more(); i++ {
				if i%2 == 0 {
					l.create(i / 2 % 2)
				} else {
					l.get(i/2%2, l.pick(i/2))
				}
			}
		}()
	}
}

func (l *clusterLoad) pick(i int) loadAlias {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := append(append([]loadAlias(nil), l.limited...), l.live...)
	return all[i%len(all)]
}

// add puts a limited alias into the traffic.
func (l *clusterLoad) add(a loadAlias) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limited = append(l.limited, a)
}

func (l *clusterLoad) more() bool {
	select {
	case <-l.stop:
		return false
	default:
		return l.ops.Add(1) <= loadMaxOps
	}
}

// mail sends one message to a through host h: a live alias gets 250 or a
// 4xx, a limited one also 550 at RCPT once used up; nothing else.
func (l *clusterLoad) mail(h int, a loadAlias) {
	start := l.step.Load()
	stage, err := mailOnce(l.hosts[h].addrs["smtp"], a.addr)
	var te *textproto.Error
	switch {
	case err == nil:
		l.mu.Lock()
		l.accepted[a.target]++
		l.mu.Unlock()
		if start == stepNoQuorum && l.step.Load() == stepNoQuorum {
			l.violate("host %d: 250 for %s without quorum", h, a.addr)
		}
		l.count(start, h, "250")
	case errors.As(err, &te) && te.Code/100 == 4:
		l.count(start, h, "4xx")
	case errors.As(err, &te) && te.Code == 550 && stage == "RCPT" && a.max > 0:
		l.count(start, h, "550")
	default:
		l.violate("host %d, step %s: %s to %s: %v", h, stepNames[start], stage, a.addr, err)
	}
}

// create asks host h for an alias: 201, or 503 unavailable with
// Retry-After.
func (l *clusterLoad) create(h int) {
	start := l.step.Load()
	res, body, err := loadHTTP("POST", "http://"+l.hosts[h].addrs["http"]+"/aliases", `{"target":"load@example.com"}`, "")
	switch {
	case err != nil:
		l.violate("host %d: POST: %v", h, err)
	case res.StatusCode == 201:
		if start == stepNoQuorum && l.step.Load() == stepNoQuorum {
			l.violate("host %d: 201 without quorum", h)
		}
		l.count(start, h, "201")
	case res.StatusCode == 503 && body["error"] == "unavailable" && res.Header.Get("Retry-After") != "":
		l.count(start, h, "503")
	default:
		l.violate("host %d, step %s: POST: %d %v Retry-After %q", h, stepNames[start], res.StatusCode, body, res.Header.Get("Retry-After"))
	}
}

// get asks host h for a's status: 200 or 503 unavailable, never a false
// 404 (a used-up alias stays visible to its token holder).
func (l *clusterLoad) get(h int, a loadAlias) {
	start := l.step.Load()
	res, body, err := loadHTTP("GET", "http://"+l.hosts[h].addrs["http"]+"/aliases/"+a.id, "", a.token)
	switch {
	case err != nil:
		l.violate("host %d: GET: %v", h, err)
	case res.StatusCode == 200:
		l.count(start, h, "get 200")
	case res.StatusCode == 503 && body["error"] == "unavailable" && res.Header.Get("Retry-After") != "":
		l.count(start, h, "get 503")
	default:
		l.violate("host %d, step %s: GET %s: %d %v", h, stepNames[start], a.id, res.StatusCode, body)
	}
}

// mailOnce relays one message to rcpt through addr, in one session with a
// deadline, and answers the stage that failed and its error.
func mailOnce(addr, rcpt string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "dial", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return "greeting", err
	}
	if err := c.Mail("sender@example.org"); err != nil {
		return "MAIL", err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return "RCPT", err
	}
	w, err := c.Data()
	if err != nil {
		return "DATA", err
	}
	if _, err := w.Write([]byte(testMessage)); err != nil {
		return "body", err
	}
	if err := w.Close(); err != nil {
		return "end of data", err
	}
	c.Quit()
	return "", nil
}

var loadClient = &http.Client{Timeout: 60 * time.Second}

// loadHTTP is httpDo for the load's goroutines: errors are returned, not
// fatal.
func loadHTTP(method, url, body, token string) (*http.Response, map[string]any, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := loadClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %d, body not JSON: %w", method, url, res.StatusCode, err)
	}
	return res, m, nil
}

// testClusterFailures kills the etcd leader with kill -9 while mail and
// API traffic runs over both hosts, then a second member (no quorum),
// then brings both back, checking every reply and what each step saw:
// no alias delivers more than its max-usage, live aliases get 250 or 4xx
// only, writes 201 or 503 with Retry-After, GETs never a false 404,
// /healthz fails without quorum and recovers, no host exits, and the
// traffic flows again on both hosts once the members are back.
func testClusterFailures(t *testing.T, cluster *etcdtest.Cluster, sk *sink, a, b *proc, create func(*proc, string) (string, string, string)) {
	l := &clusterLoad{
		hosts:     []*proc{a, b},
		stop:      make(chan struct{}),
		accepted:  map[string]int{},
		delivered: map[string]int{},
	}
	for s := range l.counts {
		l.counts[s] = [2]map[string]int{{}, {}}
	}
	for i, max := range []int{10, 25, 50} {
		target := fmt.Sprintf("limited%d@example.com", i)
		id, addr, token := create(l.hosts[i%2], fmt.Sprintf(`{"target":%q,"max-usage":%d}`, target, max))
		l.limited = append(l.limited, loadAlias{id, addr, token, target, max})
	}
	// Two more with few uses, made now and put into the traffic only
	// after the leader died and after the members came back, so that
	// sessions race for their last uses in those steps.
	var later []loadAlias
	for i := range 2 {
		target := fmt.Sprintf("later%d@example.com", i)
		id, addr, token := create(l.hosts[i%2], fmt.Sprintf(`{"target":%q,"max-usage":3}`, target))
		later = append(later, loadAlias{id, addr, token, target, 3})
	}
	for i := range 2 {
		target := fmt.Sprintf("live%d@example.com", i)
		id, addr, token := create(l.hosts[i%2], fmt.Sprintf(`{"target":%q}`, target))
		l.live = append(l.live, loadAlias{id, addr, token, target, 0})
	}
	// The smarthost's messages, counted per target while the load runs.
	// The sink queues a message before it answers the end of data, so
	// once the load has stopped every 250 a client saw has its message
	// queued: what is still queued at the stop is counted too (select
	// picks at random between a message and the stop).
	drained := make(chan struct{})
	stopDrain := make(chan struct{})
	deliver := func(m sunk) {
		l.mu.Lock()
		for _, to := range m.to {
			l.delivered[to]++
		}
		l.mu.Unlock()
	}
	go func() {
		defer close(drained)
		for {
			select {
			case m := <-sk.msgs:
				deliver(m)
			case <-stopDrain:
				for {
					select {
					case m := <-sk.msgs:
						deliver(m)
					default:
						return
					}
				}
			}
		}
	}()
	l.run(4, 2)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(l.stop)
			l.wg.Wait()
			close(stopDrain)
			<-drained
		}
	}
	defer stopLoad()

	// waitFor polls until every host has seen at least n replies of each
	// kind in step s.
	waitFor := func(s int32, n int, kinds ...string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			short := ""
			for h := range l.hosts {
				for _, k := range kinds {
					if got := l.got(s, h, k); got < n {
						short = fmt.Sprintf("host %d has %d %q replies, want %d", h, got, k, n)
					}
				}
			}
			if short == "" {
				return
			}
			if time.Now().After(deadline) || l.ops.Load() > loadMaxOps {
				t.Fatalf("step %s: %s (%d operations so far); bad replies: %q", stepNames[s], short, l.ops.Load(), l.bad())
			}
			time.Sleep(50 * time.Millisecond) // polling the load's counts
		}
	}
	alive := func() {
		t.Helper()
		for i, p := range l.hosts {
			select {
			case err := <-p.done:
				t.Fatalf("host %d exited: %v", i, err)
			default:
			}
		}
	}
	healthz := func(want int) {
		t.Helper()
		for _, p := range l.hosts {
			for deadline := time.Now().Add(60 * time.Second); ; {
				res, err := http.Get("http://" + p.addrs["http"] + "/healthz")
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/healthz: %d, want %d", res.StatusCode, want)
				}
				time.Sleep(50 * time.Millisecond) // polling the host's view of the cluster
			}
		}
	}

	waitFor(stepHealthy, 5, "250", "201", "get 200")
	lead := cluster.Leader()
	if lead < 0 {
		t.Fatal("the cluster has no leader")
	}
	// Mid-load: sessions and creations are in flight on both hosts.
	l.step.Store(stepLeaderDead)
	cluster.Kill(lead)
	l.add(later[0])
	waitFor(stepLeaderDead, 5, "250", "201", "get 200")
	waitFor(stepLeaderDead, 1, "550")
	alive()

	other := (lead + 1) % etcdtest.Size
	cluster.Kill(other)
	l.step.Store(stepNoQuorum)
	healthz(503)
	for _, p := range l.hosts {
		// The reason for the failed probe is in the log, at warn.
		p.waitLog(t, `level=WARN msg="healthz: store unavailable"`)
	}
	waitFor(stepNoQuorum, 1, "4xx", "503", "get 503")
	alive()

	l.step.Store(stepRestarting)
	cluster.Restart(lead)
	cluster.Restart(other)
	cluster.WaitHealthy(etcdtest.Size)
	l.step.Store(stepBack)
	l.add(later[1])
	healthz(200)
	waitFor(stepBack, 5, "250", "201", "get 200")
	alive()
	stopLoad()

	if len(l.violations) > 0 {
		t.Errorf("%d bad replies (first %d):\n%s", len(l.violations), len(l.violations), strings.Join(l.violations, "\n"))
	}
	for _, al := range append(l.limited, l.live...) {
		acc, del := l.accepted[al.target], l.delivered[al.target]
		if acc > del {
			t.Errorf("%s: %d 250s at the client, %d messages at the smarthost: a 250 without delivery", al.addr, acc, del)
		}
		if al.max == 0 {
			continue
		}
		if del > al.max {
			t.Errorf("%s: max-usage %d, the smarthost got %d", al.addr, al.max, del)
		}
		status, got := httpDo(t, "GET", "http://"+b.addrs["http"]+"/aliases/"+al.id, "", "Authorization", "Bearer "+al.token)
		if status != 200 {
			t.Fatalf("GET %s after the load: %d %v", al.id, status, got)
		}
		if relayed := int(got["relayed"].(float64)); relayed > al.max || del > relayed {
			t.Errorf("%s: max-usage %d, relayed %d, the smarthost got %d", al.addr, al.max, relayed, del)
		}
	}
	for s := range l.counts {
		t.Logf("step %s: host A %v, host B %v", stepNames[s], l.counts[s][0], l.counts[s][1])
	}
	t.Logf("per target: 250s %v, delivered %v, %d operations", l.accepted, l.delivered, l.ops.Load())
}
