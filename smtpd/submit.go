package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/alias"
)

// Submit sends a message of tempalias's own (a confirmation mail, say)
// through the smarthost, in a connection of its own, with the same
// timeouts, TLS and AUTH as relayed mail. from may be "" for the null
// sender; the addresses are checked as strictly as those of relayed mail.
// msg is the whole message, header section first; LF line endings become
// CRLF. No header is added and the sender is not SRS-rewritten: from
// should be an address in our domain.
//
// Submit returns once the smarthost has taken the message. An error
// wraps the smarthost's *smtp.SMTPError if it refused (5xx permanent,
// 4xx worth a retry) and ctx's error if ctx ended first. Cancelling ctx
// drops the connection, and with it any message not yet accepted. After
// Shutdown, Submit fails.
func (s *Server) Submit(ctx context.Context, from string, to []string, msg io.Reader) error {
	if from != "" {
		if _, err := alias.ParseAddress(from); err != nil {
			return fmt.Errorf("smtpd: submit: sender: %w", err)
		}
	}
	if len(to) == 0 {
		return errors.New("smtpd: submit: no recipients")
	}
	rcpts := make([]string, len(to))
	for i, t := range to {
		a, err := alias.ParseAddress(t)
		if err != nil {
			return fmt.Errorf("smtpd: submit: recipient: %w", err)
		}
		rcpts[i] = a.String()
	}
	// Whichever ends first, the caller's ctx or the server.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.dialCtx, cancel)()

	err := s.submit(ctx, from, rcpts, msg)
	if err != nil && ctx.Err() != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
	}
	return err
}

func (s *Server) submit(ctx context.Context, from string, to []string, msg io.Reader) error {
	start := time.Now()
	up, err := s.dial(ctx)
	if err != nil {
		return fmt.Errorf("smtpd: submit: smarthost connect: %w", err)
	}
	// The deadlines bound every step; this makes ctx bound them too.
	defer context.AfterFunc(ctx, up.abort)()
	ok := false
	defer func() {
		if !ok {
			up.abort() // a message not yet accepted must not be completed
		}
	}()
	stage := func(name string, err error) error {
		return fmt.Errorf("smtpd: submit: smarthost %s: %w", name, err)
	}
	if err := positive(up.c.Mail(from, nil)); err != nil {
		return stage("MAIL", err)
	}
	s.cfg.Metrics.SmarthostSeconds.WithLabelValues("dial").Observe(time.Since(start).Seconds())
	for _, t := range to {
		if err := positive(up.c.Rcpt(t, nil)); err != nil {
			return stage("RCPT", err)
		}
	}
	w, err := up.c.Data()
	if err != nil {
		return stage("DATA", err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		return fmt.Errorf("smtpd: submit: sending message: %w", err)
	}
	start = time.Now()
	err = positive(w.Close())
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		s.cfg.Metrics.SmarthostSeconds.WithLabelValues("data").Observe(time.Since(start).Seconds())
	}
	if err != nil {
		return stage("end of DATA", err)
	}
	ok = true
	up.quit()
	return nil
}
