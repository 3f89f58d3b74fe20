package main

import (
	"net/smtp"
	"os/exec"
	"strings"
	"testing"
)

// kill -9 of the real binary with a transaction in flight (its use
// reserved at RCPT, the end of data never reached) leaves no alias busy:
// the next start releases the reservation, the holder sees the use back,
// and the alias relays.
func TestBinaryKillReleasesReservation(t *testing.T) {
	sk := startSink(t)
	dir := t.TempDir()
	p := start(t, smarthostConfig(dir, sk.addr))
	status, created := httpDo(t, "POST", "http://"+p.addrs["http"]+"/aliases", `{"target":"t@example.com","max-usage":1}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, created)
	}
	id, token, rcpt := created["id"].(string), created["token"].(string), created["alias"].(string)
	c, err := smtp.Dial(p.addrs["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("sender@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		t.Fatal(err)
	}
	if status, got := httpDo(t, "GET", "http://"+p.addrs["http"]+"/aliases/"+id, "", "Authorization", "Bearer "+token); status != 200 || got["remaining"] != 0.0 {
		t.Fatalf("with the use reserved: %d %v, want remaining 0", status, got)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err == nil {
		t.Fatal("tempalias exited cleanly after kill -9")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.Success() {
		t.Fatalf("tempalias after kill -9: %v", err)
	}

	p = start(t, smarthostConfig(dir, sk.addr))
	if status, got := httpDo(t, "GET", "http://"+p.addrs["http"]+"/aliases/"+id, "", "Authorization", "Bearer "+token); status != 200 || got["remaining"] != 1.0 || got["relayed"] != 0.0 {
		t.Fatalf("after the restart: %d %v, want remaining 1, relayed 0", status, got)
	}
	if err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{rcpt}, []byte(testMessage)); err != nil {
		t.Fatalf("send after the restart: %v", err)
	}
	if got := sk.next(t); len(got.to) != 1 || got.to[0] != "t@example.com" {
		t.Errorf("smarthost got %v", got.to)
	}
	if err := smtp.SendMail(p.addrs["smtp"], nil, "sender@example.org", []string{rcpt}, []byte(testMessage)); err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Errorf("second message after the restart: %v, want 550 (used up)", err)
	}
	p.stop(t)
}
