// Package etcdtest starts a real etcd cluster for tests: three members of
// Debian's etcd-server (3.4) on loopback ports, in a temporary directory,
// each one killable and restartable so that tests can take the leader
// away or lose quorum.
//
// A test that needs it calls Start; without an etcd binary on PATH the test
// is skipped with a message, except under CI=true, where it fails: CI must
// never pass by skipping.
package etcdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Size is the number of members Start runs.
const Size = 3

// startTimeout bounds how long a member or the cluster may take to become
// healthy (forming a cluster takes a few seconds on a busy 2-core machine).
const startTimeout = 60 * time.Second

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	token   string
	members []*member
	tls     *TLSFiles
	ports   []int // the sockets that hold the members' ports (reservePorts)
}

// TLSFiles are the PEM files of a cluster started WithTLS: its CA, and a
// client certificate it accepts.
type TLSFiles struct {
	CA, ClientCert, ClientKey string
	serverCert, serverKey     string
}

// Option changes how Start runs the cluster.
type Option func(*Cluster)

// WithTLS serves clients over TLS only, with certificates made for the
// test, and requires a client certificate signed by the test's CA.
func WithTLS() Option {
	return func(c *Cluster) { c.tls = &TLSFiles{} }
}

// TLS is the cluster's certificate files, or nil without WithTLS.
func (c *Cluster) TLS() *TLSFiles { return c.tls }

type member struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Binary returns the path of etcd, or skips t (fails it under CI=true)
// when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("etcd not found on PATH (CI=true: install Debian's etcd-server): %v", err)
	}
	t.Skipf("skipping: etcd not found on PATH (apt-get install etcd-server): %v", err)
	return ""
}

// Start runs a new Size-member cluster and waits until every member is
// healthy. The cluster is stopped when the test ends.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	bin := Binary(t)
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), token: fmt.Sprintf("tempalias-test-%d", time.Now().UnixNano())}
	for _, o := range opts {
		o(c)
	}
	scheme := "http"
	if c.tls != nil {
		makeCerts(t, c.dir, c.tls)
		scheme = "https"
	}
	t.Cleanup(c.stopAll)
	ports := c.reservePorts(2 * Size)
	var initial []string
	for i := 0; i < Size; i++ {
		m := &member{
			name:      fmt.Sprintf("m%d", i),
			clientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(c.dir, m.name)
		m.logPath = m.dataDir + ".log"
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	for i := range c.members {
		c.launch(i, strings.Join(initial, ","), "new")
	}
	c.WaitHealthy(Size)
	return c
}

// Endpoints are the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// Endpoint is the client URL of member i.
func (c *Cluster) Endpoint(i int) string { return c.members[i].clientURL }

func (c *Cluster) launch(i int, initialCluster, state string) {
	c.t.Helper()
	m := c.members[i]
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
	args := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster-token", c.token,
		"--initial-cluster-state", state,
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
		// Slower than etcd's defaults (100 ms, 1 s): on a loaded 2-core
		// machine a starved member otherwise misses heartbeats and the
		// cluster elects a new leader now and then, failing requests.
		"--heartbeat-interval", "250",
		"--election-timeout", "2500",
		// The flags docs/deploy.md prescribes for production as well.
		"--auto-compaction-mode", "revision",
		"--auto-compaction-retention", "1000",
		"--experimental-enable-lease-checkpoint",
	}
	if initialCluster != "" {
		args = append(args, "--initial-cluster", initialCluster)
	}
	if c.tls != nil {
		args = append(args,
			"--cert-file", c.tls.serverCert, "--key-file", c.tls.serverKey,
			"--trusted-ca-file", c.tls.CA, "--client-cert-auth")
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("etcdtest: start %s: %v", m.name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func(exited chan struct{}) {
		cmd.Wait()
		logf.Close()
		close(exited)
	}(m.exited)
}

// Kill stops member i with SIGKILL and waits until it is gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.members[i]
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// Restart starts member i again on its data directory and ports (after
// Kill); WaitHealthy waits until it serves.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.members[i].cmd != nil {
		c.t.Fatalf("etcdtest: %s is running", c.members[i].name)
	}
	// An existing data directory carries the membership; no initial
	// cluster is needed, but etcd wants one consistent with it.
	var initial []string
	for _, m := range c.members {
		initial = append(initial, m.name+"="+m.peerURL)
	}
	c.launch(i, strings.Join(initial, ","), "existing")
}

// Leader returns the index of the member that is leader now, as the
// members running now see it, or -1 if none agrees on one.
func (c *Cluster) Leader() int {
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		st, err := c.status(m.clientURL)
		if err != nil {
			continue
		}
		for j, o := range c.members {
			if o.cmd == nil {
				continue
			}
			ost, err := c.status(o.clientURL)
			if err == nil && ost.Header.MemberID == st.Leader {
				return j
			}
		}
	}
	return -1
}

// WaitHealthy waits until n running members report themselves healthy
// (a member is healthy when the cluster has a leader and quorum).
func (c *Cluster) WaitHealthy(n int) {
	c.t.Helper()
	if err := c.waitHealthy(n); err != nil {
		c.t.Fatalf("etcdtest: %v\n%s", err, c.logs())
	}
}

func (c *Cluster) waitHealthy(n int) error {
	deadline := time.Now().Add(startTimeout)
	for {
		healthy := 0
		for _, m := range c.members {
			if m.cmd != nil && c.health(m.clientURL) {
				healthy++
			}
		}
		if healthy >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d members healthy after %s", healthy, n, startTimeout)
		}
		for _, m := range c.members {
			if m.cmd == nil {
				continue
			}
			select {
			case <-m.exited:
				return fmt.Errorf("%s exited", m.name)
			default:
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a process that gives no signal
	}
}

func (c *Cluster) stopAll() {
	for i := range c.members {
		c.Kill(i)
	}
	for _, fd := range c.ports {
		syscall.Close(fd)
	}
	c.ports = nil
	if c.t.Failed() {
		c.t.Logf("etcd logs:\n%s", c.logs())
	}
}

// logs is the tail of every member's log, for a failure message.
func (c *Cluster) logs() string {
	var b strings.Builder
	for _, m := range c.members {
		data, _ := os.ReadFile(m.logPath)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", m.name, data)
	}
	return b.String()
}

// client is what the harness itself asks the members with.
func (c *Cluster) client() *http.Client {
	hc := &http.Client{Timeout: 2 * time.Second}
	if c.tls != nil {
		hc.Transport = &http.Transport{TLSClientConfig: c.tls.Config(c.t)}
	}
	return hc
}

// health asks a member's /health: true only with a leader and quorum.
func (c *Cluster) health(url string) bool {
	resp, err := c.client().Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

type statusResponse struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader string `json:"leader"`
}

// status reads a member's view of the cluster through etcd's JSON
// gateway.
func (c *Cluster) status(url string) (statusResponse, error) {
	var st statusResponse
	resp, err := c.client().Post(url+"/v3/maintenance/status", "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// reservePorts takes n distinct loopback ports for the cluster's
// lifetime. Each is held by a socket that is bound, with SO_REUSEADDR, but
// never listens: the kernel then hands the port to no one else's bind to
// port 0 nor to an outgoing connection, while etcd, whose listeners set
// SO_REUSEADDR as every Go listener does, can still bind it by number,
// and bind it again after a restart. A port chosen by listening and
// closing was free only for a moment: another test's listener or a
// connection could take it before etcd bound it (a member that cannot
// start) or while a killed member was down (one that cannot come back,
// on ports that its peers know and that cannot change), and a member of
// another cluster that took a port would have answered this cluster's
// health checks.
func (c *Cluster) reservePorts(n int) []int {
	c.t.Helper()
	var ports []int
	for range n {
		// Close-on-exec under ForkLock, as package syscall wants: the
		// members started meanwhile must not inherit the socket.
		syscall.ForkLock.RLock()
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err == nil {
			syscall.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
		if err != nil {
			c.t.Fatalf("etcdtest: socket: %v", err)
		}
		c.ports = append(c.ports, fd)
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			c.t.Fatalf("etcdtest: SO_REUSEADDR: %v", err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			c.t.Fatalf("etcdtest: bind: %v", err)
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			c.t.Fatalf("etcdtest: getsockname: %v", err)
		}
		ports = append(ports, sa.(*syscall.SockaddrInet4).Port)
	}
	return ports
}
