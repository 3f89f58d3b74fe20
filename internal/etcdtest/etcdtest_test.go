package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

// TestCluster checks the harness itself: a cluster forms, survives the
// loss of its leader, loses quorum with two members gone and recovers
// when they are back.
func TestCluster(t *testing.T) {
	c := Start(t)
	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no leader in a healthy cluster")
	}
	c.Kill(lead)
	c.WaitHealthy(Size - 1)
	next := c.Leader()
	if next < 0 || next == lead {
		t.Fatalf("leader after killing %d: %d", lead, next)
	}
	c.Kill(next)
	for i := range c.members {
		if c.members[i].cmd != nil && c.health(c.Endpoint(i)) {
			t.Fatalf("member %d healthy without quorum", i)
		}
	}
	c.Restart(lead)
	c.Restart(next)
	c.WaitHealthy(Size)
	if c.Leader() < 0 {
		t.Fatal("no leader after recovery")
	}
}

// ipLocalPortRange is Linux's IP_LOCAL_PORT_RANGE (6.3 and later): the
// range a socket's bind to port 0 picks from.
const ipLocalPortRange = 51

// bindAny binds a new socket, with SO_REUSEADDR as Go's listeners have
// it, to port 0 of 127.0.0.1 with the kernel's choice narrowed to port
// alone: it reports whether the kernel would hand that port to another
// test's listener.
func bindAny(t *testing.T, port int) bool {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipLocalPortRange, port|port<<16); err != nil {
		t.Skipf("skipping: no IP_LOCAL_PORT_RANGE (Linux 6.3 or later) to aim a bind at one port: %v", err)
	}
	err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatal(err)
	}
	return err == nil
}

// A member's ports stay the cluster's, whether a member listens on them
// or not: the kernel hands them to nobody else's bind to port 0, while a
// member can bind them, again after a restart. Closed, a port is free
// for the next comer at once.
func TestReservedPorts(t *testing.T) {
	c := &Cluster{t: t}
	port := c.reservePorts(1)[0]
	if bindAny(t, port) {
		t.Fatalf("port %d reserved, but bind to port 0 got it", port)
	}
	for range 2 { // a member's start, and its restart after a kill
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("a member cannot listen on its reserved port: %v", err)
		}
		ln.Close()
		if bindAny(t, port) {
			t.Fatalf("port %d reserved, but bind to port 0 got it after a member's listener closed", port)
		}
	}
	c.stopAll()
	if !bindAny(t, port) {
		t.Fatalf("port %d still taken after the cluster stopped", port)
	}
}
