package main

import (
	"net"
	"strings"
	"testing"
)

// A socket under an unknown name stops the start, and every socket
// handed over is closed with it, the well-named ones too: nothing would
// ever serve them.
func TestCheckNamesClosesAll(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	good, bad := listen(), listen()
	err := checkNames(map[string][]net.Listener{"http": {good}, "tempalias-web": {bad}})
	if err == nil || !strings.Contains(err.Error(), `"tempalias-web"`) {
		t.Fatalf("checkNames = %v, want an error naming the socket", err)
	}
	for name, ln := range map[string]net.Listener{"http": good, "tempalias-web": bad} {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Errorf("the %s socket is still open", name)
		}
	}
	if err := checkNames(map[string][]net.Listener{"http": {listen()}, "smtp": {listen()}, "https": {listen()}}); err != nil {
		t.Errorf("checkNames of http, https and smtp: %v", err)
	}
}
