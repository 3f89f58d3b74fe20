package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/httpd"
)

// submitter hands a message of our own to the smarthost.
type submitter interface {
	Submit(ctx context.Context, from string, to []string, msg io.Reader) error
}

// confirmMailer writes the target-verification message and submits it
// through the smarthost.
type confirmMailer struct {
	smtp     submitter
	from     string // envelope and From: address
	hostname string // for the Message-ID
	now      func() time.Time
}

func (m confirmMailer) SendConfirmation(ctx context.Context, c httpd.Confirmation) error {
	// Everything interpolated into headers is checked syntax (addresses,
	// ids), so nothing here can inject a header.
	if _, err := alias.ParseAddress(c.Target); err != nil {
		return fmt.Errorf("confirmation: target: %w", err)
	}
	now := m.now().UTC()
	var b strings.Builder
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("Date", now.Format(time.RFC1123Z))
	header("From", "tempalias <"+m.from+">")
	header("To", "<"+c.Target+">")
	header("Subject", "Confirm mail forwarding from "+c.Alias)
	header("Message-ID", fmt.Sprintf("<%s.%s@%s>", now.Format("20060102150405"), alias.NewID(12), m.hostname))
	header("Auto-Submitted", "auto-generated")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	b.WriteString("\r\n")
	for _, line := range []string{
		"Someone asked for a temporary email alias that forwards to this address:",
		"",
		"    " + c.Alias,
		"",
		"If that was you, open this link and press the button to confirm:",
		"",
		"    " + c.Link,
		"",
		"If it was not you, ignore this message: nothing will be forwarded, and",
		"the alias expires on its own on " + c.Expires.UTC().Format("2 January 2006 at 15:04 UTC") + ".",
	} {
		b.WriteString(line + "\r\n")
	}
	return m.smtp.Submit(ctx, m.from, []string{c.Target}, strings.NewReader(b.String()))
}
