package smtpd

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
)

// Bounds on what headerFilter holds in memory. rfc 5322:2.1.1 limits a
// line to 998 octets, and go-smtp's DATA reader to 2000; BDAT chunks have
// no line limit at all.
const (
	maxHeaderLine  = 8 << 10  // one physical header line
	maxHeldField   = 16 << 10 // one field with its continuation lines
	fromNameSuffix = " via tempalias"
)

// headerFilter passes a message to the smarthost and, in its header
// section (rfc 5322:2.1), looks at the fields that matter here, a line at
// a time, holding back at most one field:
//
//   - Delivered-To naming one of the transaction's aliases is a loop
//     (rfc 9228:4): errDeliveredTo, before the final dot ever goes out.
//   - With fromAddr set (RewriteFrom), From is replaced by the alias
//     with the original display name, and unless the message has a
//     Reply-To, one with the original From is added at the end of the
//     header section.
//
// Everything else, and the whole body, passes byte for byte. It expects
// what bodyCheck lets through: CR and LF only as CRLF.
//
// A stuffed stream (a DATA message, rfc 5321:4.5.2) is looked at as the
// message it stands for: a line sent as ".From: x" is a From field and
// ". x" a continuation line, though they pass (and are held) as sent.
type headerFilter struct {
	w        io.Writer
	loop     func(addr string) bool // one of the transaction's aliases; nil: no check
	fromAddr string                 // the From address, "" to leave From alone
	stuffed  bool                   // w and Write's input are dot-stuffed

	body     bool   // past the header section: pass everything
	line     []byte // the physical line so far
	held     []byte // a field of interest, with its continuation lines
	heldKind int
	replyTo  []byte // the first From's field body, for Reply-To
	sawFrom  bool
	sawReply bool
}

const (
	fieldOther = iota
	fieldDeliveredTo
	fieldFrom
)

func (f *headerFilter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && !f.body {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		if len(f.line)+len(chunk) > maxHeaderLine {
			if err := f.overlong(append(f.line, chunk...)); err != nil {
				return 0, err
			}
			f.line = f.line[:0]
			continue
		}
		f.line = append(f.line, chunk...)
		if i >= 0 {
			if err := f.endLine(f.line); err != nil {
				return 0, err
			}
			f.line = f.line[:0]
		}
	}
	if len(p) > 0 {
		if _, err := f.w.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// overlong handles a header line past maxHeaderLine: nothing after it can
// be looked at in bounded memory, so it and the rest of the message pass
// unexamined, unless From must be rewritten.
func (f *headerFilter) overlong(partial []byte) error {
	if f.fromAddr != "" {
		return errHeaderTooLong
	}
	if err := f.flushHeld(); err != nil {
		return err
	}
	f.body = true
	_, err := f.w.Write(partial)
	return err
}

// endLine takes one complete physical line of the header section.
func (f *headerFilter) endLine(line []byte) error {
	u := line // the line as the message has it
	if f.stuffed && len(u) > 1 && u[0] == '.' {
		u = u[1:]
	}
	switch {
	case string(line) == "\r\n":
		// The empty line ends the header section.
		if err := f.endHeader(); err != nil {
			return err
		}
		f.body = true
		_, err := f.w.Write(line)
		return err
	case u[0] == ' ' || u[0] == '\t':
		if f.heldKind == fieldOther {
			_, err := f.w.Write(line)
			return err
		}
		if len(f.held)+len(line) > maxHeldField {
			if f.heldKind == fieldFrom {
				return errHeaderTooLong
			}
			// A Delivered-To this long is no address of ours.
			f.heldKind = fieldOther
			return f.flushHeld(line)
		}
		f.held = append(f.held, line...)
		return nil
	}
	if err := f.flushHeld(); err != nil {
		return err
	}
	name, _, _ := bytes.Cut(u, []byte(":"))
	name = bytes.TrimRight(name, " \t") // obs-optional, rfc 5322:4.5
	switch {
	case f.loop != nil && bytes.EqualFold(name, []byte("Delivered-To")):
		f.heldKind = fieldDeliveredTo
	case f.fromAddr != "" && bytes.EqualFold(name, []byte("From")):
		f.heldKind = fieldFrom
	default:
		if bytes.EqualFold(name, []byte("Reply-To")) {
			f.sawReply = true
		}
		_, err := f.w.Write(line)
		return err
	}
	f.held = append(f.held[:0], line...)
	return nil
}

// flushHeld decides on the held field, writes it out (or its
// replacement), then writes more.
func (f *headerFilter) flushHeld(more ...[]byte) error {
	kind := f.heldKind
	f.heldKind = fieldOther
	if len(f.held) > 0 {
		out := f.held
		switch kind {
		case fieldDeliveredTo:
			if f.loop(fieldValue(f.held, f.stuffed)) {
				return errDeliveredTo
			}
		case fieldFrom:
			out = f.rewriteFrom(f.held)
		}
		if _, err := f.w.Write(out); err != nil {
			return err
		}
		f.held = f.held[:0]
	}
	for _, m := range more {
		if _, err := f.w.Write(m); err != nil {
			return err
		}
	}
	return nil
}

// rewriteFrom returns the From field to send instead of field, and keeps
// the first original's field body for Reply-To (as sent: it goes into
// the same stream).
func (f *headerFilter) rewriteFrom(field []byte) []byte {
	_, raw, _ := bytes.Cut(field, []byte(":"))
	if !f.sawFrom {
		f.sawFrom = true
		f.replyTo = append([]byte(nil), raw...)
	}
	name := ""
	if list, err := mail.ParseAddressList(fieldValue(field, f.stuffed)); err == nil && len(list) > 0 {
		name = list[0].Name
		if name == "" {
			// An address as a display name looks like a forgery; this
			// is how several forwarders write it.
			name = strings.Replace(list[0].Address, "@", " at ", 1)
		}
	}
	name = strings.TrimSpace(name + fromNameSuffix)
	// mail.Address quotes or encodes (rfc 2047) the name as needed.
	return []byte("From: " + (&mail.Address{Name: name, Address: f.fromAddr}).String() + "\r\n")
}

// endHeader is the end of the header section, with or without the empty
// line: the held field goes out, then what must be added.
func (f *headerFilter) endHeader() error {
	if err := f.flushHeld(); err != nil {
		return err
	}
	if f.fromAddr == "" {
		return nil
	}
	var add []byte
	switch {
	case !f.sawFrom:
		// rfc 5322:3.6 requires a From; a verified one is the point.
		add = []byte("From: <" + f.fromAddr + ">\r\n")
	case !f.sawReply && len(f.replyTo) > 0:
		add = append([]byte("Reply-To:"), f.replyTo...)
	}
	_, err := f.w.Write(add)
	return err
}

// Close ends a message that ended inside its header section.
func (f *headerFilter) Close() error {
	if f.body {
		return nil
	}
	if len(f.line) > 0 {
		// A last line without CRLF (possible with BDAT). The upstream
		// writer would end it with one anyway; it is needed here so that
		// nothing added runs into it.
		f.line = append(f.line, "\r\n"...)
		if err := f.endLine(f.line); err != nil {
			return err
		}
		f.line = f.line[:0]
		if f.body {
			return nil
		}
	}
	f.body = true
	return f.endHeader()
}

// fieldValue is a field's body unfolded (rfc 5322:2.2.3) and trimmed;
// stuffed: field is dot-stuffed, as a DATA message sends it.
func fieldValue(field []byte, stuffed bool) string {
	s := string(field)
	if stuffed {
		s = strings.TrimPrefix(s, ".")
		s = strings.ReplaceAll(s, "\n.", "\n")
	}
	_, v, _ := strings.Cut(s, ":")
	return strings.TrimSpace(strings.ReplaceAll(v, "\r\n", ""))
}
