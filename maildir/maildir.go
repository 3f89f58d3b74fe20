// Package maildir delivers mail into a Maildir (the directory format of
// qmail, read by mutt, Dovecot and most mail clients) and serves one as
// an SMTP smarthost on loopback, so that tempalias can be tried with no
// mail server installed: mail it relays lands in a directory instead.
package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Dir is the path of a Maildir: a directory holding tmp/, new/ and cur/.
type Dir string

// Init makes the directory and its tmp/, new/ and cur/ if they are
// missing. They are private to their owner: mail is personal.
func (d Dir) Init() error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(string(d), sub), 0o700); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	return nil
}

// seq makes file names unique within the process.
var seq atomic.Uint64

// uniqueName is a file name no other delivery uses: the time, the
// process and a counter, and the host (with / and : escaped), as the
// Maildir specification suggests (https://cr.yp.to/proto/maildir.html).
func uniqueName(now time.Time) string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq.Add(1), host)
}

// Deliver writes the message read from r (CRLF line endings, as SMTP
// carries it) into the Maildir and returns the path of its file. The
// message is streamed (memory does not grow with its size), written with
// LF line endings in tmp/, synced, renamed into new/, and new/ synced:
// when Deliver returns nil, the message survives a crash. On error no
// file is left in new/.
func (d Dir) Deliver(r io.Reader) (path string, err error) {
	name := uniqueName(time.Now())
	tmp := filepath.Join(string(d), "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 32<<10)
	lw := &lfWriter{w: w}
	if _, err := io.Copy(lw, r); err != nil {
		return "", fmt.Errorf("maildir: writing %s: %w", tmp, err)
	}
	if err := lw.flush(); err != nil {
		return "", fmt.Errorf("maildir: writing %s: %w", tmp, err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("maildir: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("maildir: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("maildir: closing %s: %w", tmp, err)
	}
	path = filepath.Join(string(d), "new", name)
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	// The rename is durable only once the directory is.
	if err := syncDir(filepath.Join(string(d), "new")); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("maildir: syncing %s: %w", dir, err)
	}
	return nil
}

// lfWriter turns CRLF into LF on the way through, the line ending of
// files in a Maildir; a lone CR is kept. A CR that ends one write is held
// back until the next shows what follows it.
type lfWriter struct {
	w  io.Writer
	cr bool // a CR is held back
}

// flush writes a CR held back at the very end.
func (l *lfWriter) flush() error {
	if !l.cr {
		return nil
	}
	l.cr = false
	_, err := l.w.Write([]byte{'\r'})
	return err
}

func (l *lfWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.cr {
		l.cr = false
		if len(p) == 0 || p[0] != '\n' {
			if _, err := l.w.Write([]byte{'\r'}); err != nil {
				return 0, err
			}
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			if _, err := l.w.Write(p); err != nil {
				return 0, err
			}
			break
		}
		if _, err := l.w.Write(p[:i]); err != nil {
			return 0, err
		}
		switch {
		case i+1 == len(p):
			l.cr = true
			p = nil
		case p[i+1] == '\n':
			p = p[i+1:] // the LF is written with what follows
		default:
			if _, err := l.w.Write(p[i : i+1]); err != nil {
				return 0, err
			}
			p = p[i+1:]
		}
	}
	return n, nil
}

// errNoRecipients is a transaction that reached DATA without any.
var errNoRecipients = errors.New("maildir: no recipients")

// header is what a delivery agent prepends (rfc 5322:3.6.7, rfc
// 5321:4.4): the envelope sender and, one per field, the envelope
// recipients. Addresses reached us through SMTP, which allows no CR or
// LF in them, so they cannot inject a field.
func header(from string, to []string) ([]byte, error) {
	if len(to) == 0 {
		return nil, errNoRecipients
	}
	var b bytes.Buffer
	b.WriteString("Return-Path: <" + from + ">\r\n")
	for _, t := range to {
		b.WriteString("X-Original-To: " + t + "\r\n")
	}
	return b.Bytes(), nil
}
