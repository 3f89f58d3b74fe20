package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const confirmation = "From: tempalias <noreply@tempalias.test>\nTo: t@example.com\nSubject: Confirm\n\nClick\n.\n"

func TestSubmit(t *testing.T) {
	e := newEnv(t, nil)
	before := snapshot(t, e.srv.cfg.Metrics)
	err := e.srv.Submit(t.Context(), "noreply@"+testDomain, []string{"t@example.com", "u@example.net"}, strings.NewReader(confirmation))
	if err != nil {
		t.Fatal(err)
	}
	msgs := e.up.messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	m := msgs[0]
	if m.from != "noreply@"+testDomain || strings.Join(m.rcpts, ",") != "t@example.com,u@example.net" {
		t.Errorf("envelope %q -> %q", m.from, m.rcpts)
	}
	// LF becomes CRLF, a lone dot is stuffed and unstuffed, nothing added.
	if want := strings.ReplaceAll(confirmation, "\n", "\r\n"); string(m.body) != want {
		t.Errorf("body %q, want %q", m.body, want)
	}
	if d := before.delta(snapshot(t, e.srv.cfg.Metrics)); d.dial != 1 || d.data != 1 || len(d.messages) != 0 {
		t.Errorf("metrics: %d dial, %d data, messages %v", d.dial, d.data, d.messages)
	}
	if n := e.up.sessions.Load(); n != 1 {
		t.Errorf("%d smarthost sessions", n)
	}
}

// Submit goes through the smarthost with the configured TLS and AUTH.
func TestSubmitTLSAndAuth(t *testing.T) {
	cert, pool := testCert(t)
	fake := newFakeSmarthostWith(t, fakeOptions{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, user: "relay", pass: "s3cret"})
	e := newEnv(t, func(c *Config) {
		c.Smarthost.Address = fake.addr
		c.Smarthost.TLS = "starttls"
		c.Smarthost.TLSConfig = &tls.Config{RootCAs: pool}
		c.Smarthost.Username, c.Smarthost.Password = "relay", "s3cret"
	})
	if err := e.srv.Submit(t.Context(), "", []string{"t@example.com"}, strings.NewReader(confirmation)); err != nil {
		t.Fatal(err)
	}
	if msgs := fake.messages(); len(msgs) != 1 || msgs[0].from != "" {
		t.Fatalf("smarthost got %+v", msgs)
	}
}

func TestSubmitFailures(t *testing.T) {
	t.Run("bad addresses never reach the smarthost", func(t *testing.T) {
		e := newEnv(t, nil)
		for _, tc := range []struct {
			from string
			to   []string
		}{
			{"noreply@" + testDomain, nil},
			{"no reply@" + testDomain, []string{"t@example.com"}},
			{"noreply@" + testDomain, []string{"t@example.com>\r\nRCPT TO:<x@example.com"}},
			{"noreply@" + testDomain, []string{"t%x@example.com"}},
		} {
			if err := e.srv.Submit(t.Context(), tc.from, tc.to, strings.NewReader(confirmation)); err == nil {
				t.Errorf("Submit(%q, %q) succeeded", tc.from, tc.to)
			}
		}
		if n := e.up.sessions.Load(); n != 0 {
			t.Errorf("smarthost contacted %d times", n)
		}
	})
	t.Run("refusals keep their code", func(t *testing.T) {
		for _, tc := range []struct {
			stage string
			code  int
		}{{"MAIL", 451}, {"RCPT", 550}, {"END", 554}} {
			e := newEnv(t, nil)
			e.up.fail(tc.stage, smtpErr(tc.code, smtp.EnhancedCode{tc.code / 100, 0, 0}))
			err := e.srv.Submit(t.Context(), "noreply@"+testDomain, []string{"t@example.com"}, strings.NewReader(confirmation))
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Errorf("%s: got %v, want an *smtp.SMTPError %d", tc.stage, err, tc.code)
			}
			if n := len(e.up.messages()); n != 0 {
				t.Errorf("%s: smarthost completed %d messages", tc.stage, n)
			}
		}
	})
	t.Run("smarthost down", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Smarthost.Address = "127.0.0.1:1" })
		if err := e.srv.Submit(t.Context(), "", []string{"t@example.com"}, strings.NewReader(confirmation)); err == nil {
			t.Fatal("Submit succeeded with the smarthost down")
		}
	})
	t.Run("cancelled while the smarthost hangs", func(t *testing.T) {
		e := newEnv(t, nil) // CommandTimeout 2s
		e.up.hang("END")
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := e.srv.Submit(ctx, "", []string{"t@example.com"}, strings.NewReader(confirmation))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want the context's error", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Submit returned after %v, want about 200ms", d)
		}
	})
	t.Run("a message that cannot be read is not completed", func(t *testing.T) {
		e := newEnv(t, nil)
		r := &failingReader{data: "Subject: x\r\n\r\npartial"}
		if err := e.srv.Submit(t.Context(), "", []string{"t@example.com"}, r); err == nil {
			t.Fatal("Submit succeeded")
		}
		waitFor(t, "smarthost sees the aborted transfer", func() bool { return e.up.aborted.Load() == 1 })
		if n := len(e.up.messages()); n != 0 {
			t.Errorf("smarthost completed %d messages", n)
		}
	})
	t.Run("after shutdown", func(t *testing.T) {
		e := newEnv(t, nil)
		if err := e.srv.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Submit(t.Context(), "", []string{"t@example.com"}, strings.NewReader(confirmation)); err == nil {
			t.Fatal("Submit succeeded after Shutdown")
		}
	})
}

type failingReader struct {
	data string
	done bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, errors.New("disk on fire")
	}
	r.done = true
	return copy(p, r.data), nil
}

// Submit takes any 2xx as the smarthost's acceptance, as relaying does:
// a confirmation mail answered 251 is sent, not failed (and sent again).
func TestSubmitAny2xx(t *testing.T) {
	delivered := new(atomic.Int64)
	up, _ := scriptedSmarthost(t, scriptedOptions{
		replies:   map[string]string{"MAIL": "251 2.1.0 ok", "RCPT": "200 ok", "END": "252 2.0.0 taken"},
		delivered: delivered,
	})
	e := newEnv(t, func(c *Config) { c.Smarthost.Address = up })
	if err := e.srv.Submit(t.Context(), "noreply@"+testDomain, []string{"t@example.com"}, strings.NewReader(confirmation)); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if n := delivered.Load(); n != 1 {
		t.Errorf("smarthost took %d messages, want 1", n)
	}
}
