package smtpd

import (
	"net"
	"net/textproto"
	"testing"
	"time"
)

// dialFrom is rawDial from a loopback source address of the test's
// choosing (127.0.0.2 is loopback too): a second client.
func (e *env) dialFrom(src string) (*client, int, string) {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	e.t.Cleanup(func() { conn.Close() })
	c := &client{t: e.t, conn: conn, tp: textproto.NewConn(conn)}
	code, msg := c.reply()
	return c, code, msg
}

// One client holding its share of idle connections gets 421 and a
// hang-up for the next one, while another client is still served.
func TestClientShare(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxConnsPerClient = 3
		c.MaxConns = 8
	})
	for range 3 {
		if _, code, msg := e.dialFrom("127.0.0.1"); code != 220 {
			t.Fatalf("connection within the share: %d %s", code, msg)
		}
	}
	refused := counterValue(t, e.srv.cfg.Metrics.ConnsRefused.WithLabelValues("smtp", "per-client"))
	over, code, msg := e.dialFrom("127.0.0.1")
	if code != 421 {
		t.Fatalf("connection over the share: %d %s, want 421", code, msg)
	}
	if n := counterValue(t, e.srv.cfg.Metrics.ConnsRefused.WithLabelValues("smtp", "per-client")) - refused; n != 1 {
		t.Errorf("%v per-client refusals counted, want 1", n)
	}
	if !over.closed() {
		t.Error("connection over the share still open")
	}
	other, code, msg := e.dialFrom("127.0.0.2")
	if code != 220 {
		t.Fatalf("second client: %d %s, want 220", code, msg)
	}
	other.must(250, "EHLO other.example")
	other.must(221, "QUIT")
}
