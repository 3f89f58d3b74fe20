package smtpd

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/store"
)

// relay streams a transaction's message from the client to its delivery:
// our trace headers first, then the client's message, checked as it
// passes (bodyCheck, headerFilter), then, once the uses are committed,
// the end of the message.

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bodyBufferSize is the size of the buffers on both sides of the relay:
// go-smtp's read buffer of each client connection and the writer of
// each smarthost connection. A message of up to about this size comes in
// one read and goes out in one write with its end-of-data line; at
// bufio's 4096 a 4 KiB message took two of each, its last bytes alone.
// A client connection holds it for as long as it lasts (idle too), a
// pooled smarthost connection likewise; a bigger message passes in
// pieces of this size, never held whole.
const bodyBufferSize = 16 << 10

func (s *session) relay(tx *transaction, r io.Reader) (result, error) {
	if tx.dlv == nil {
		return failed, errNoMail
	}
	if err := tx.dlv.Ready(); err != nil {
		return failed, err
	}
	ctx := s.srv.dialCtx
	s.conn.beginData(time.Now().Add(s.srv.cfg.DataTimeout))
	// A DATA message passes through as the client sent it, dot-stuffed,
	// in buffer-sized writes: headerFilter and bodyCheck are told, and
	// take a leading dot for the stuffing it is (".From:" is a From
	// field, ". x" a fold, at the top too); only the Received count
	// reads lines as sent, which is enough for loops, where every pass
	// adds a Received of ours that starts with no dot. A dot followed by
	// a bare CR, which un-stuffing would hide, is refused here as any
	// bare CR. A BDAT message is not stuffed and goes through go-smtp's
	// stuffing.
	r, stuffed := smtp.DotStuffed(r)
	w, err := tx.dlv.Body(ctx, stuffed)
	if err != nil {
		return failed, err
	}
	defer func() { tx.upBytes = tx.dlv.Written() }()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	// Our header lines are built in buf, which the message is read into
	// once they are written.
	hdr := s.appendTrace(buf[:0], tx)
	if stuffed && (hdr[0] == '.' || bytes.Contains(hdr, []byte("\n."))) {
		hdr = []byte(dotStuff(string(hdr)))
	}
	if _, err := w.Write(hdr); err != nil {
		return failed, err
	}
	filter := &headerFilter{w: w, loop: s.loopCheck(tx), stuffed: stuffed}
	if s.srv.cfg.RewriteFrom {
		filter.fromAddr = tx.ident
	}
	check := bodyCheck{stuffed: stuffed}
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := check.feed(buf[:n]); err != nil {
				return failed, err
			}
			tx.bytes += int64(n)
			if _, err := filter.Write(buf[:n]); err != nil {
				return failed, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return failed, &clientError{rerr}
		}
	}
	if err := check.end(); err != nil {
		return failed, err
	}
	if err := filter.Close(); err != nil {
		return failed, err
	}
	if s.conn.smuggled.Load() {
		return failed, errBareCR
	}
	// go-smtp ends a BDAT chunk cut short by the client's disconnect as if
	// it were complete; the connection saw the read fail, so the message
	// is not finished upstream.
	if s.conn.readFailed.Load() {
		return failed, &clientError{io.ErrUnexpectedEOF}
	}
	// The uses become durable now, before the end of the message can
	// make the smarthost deliver it: a crash from here on costs them,
	// never delivers past max-usage. If that fails the message is not
	// finished (settle aborts the delivery before the dot).
	if err := s.commit(tx); err != nil {
		return failed, err
	}
	if err := tx.dlv.Commit(ctx); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// Refused: failed gives the committed uses back.
			return failed, err
		}
		// The dot went out but no verdict came back: the smarthost may
		// have the message. Counting the use is the only way to be sure
		// an alias never delivers more than its max-usage; the sender
		// gets a 4xx and may retry, at the cost of that one use.
		return maybeDelivered, err
	}
	return delivered, nil
}

// appendTrace appends to b what relay puts on top of the message: the
// Received header, then one Delivered-To per alias (rfc 9228), which a
// looping message brings back. Delivered-To is left out when the
// transaction goes to more than one target: each would learn the others'
// aliases, which may have been Bcc (the reason rfc 5321:7.2 gives for
// naming a single recipient in Received). A loop comes back in a
// transaction of its own, with one target, and is caught there.
func (s *session) appendTrace(b []byte, tx *transaction) []byte {
	rcpt := ""
	if len(tx.aliases) == 1 && tx.bounces == 0 && !tx.pm {
		rcpt = tx.rcpt
	}
	if s.lit == "" && s.remote != nil {
		s.lit = addressLiteral(s.remote)
	}
	b = appendReceived(b, tx.helo, s.lit, s.srv.cfg.Hostname, tx.id, rcpt, s.tls, s.srv.cfg.Now())
	if len(tx.targets) == 1 {
		for _, a := range tx.addrs {
			b = append(b, "Delivered-To: "...)
			b = append(b, a...)
			b = append(b, "\r\n"...)
		}
	}
	if rcpt != "" {
		b = s.appendState(b, tx.res[0])
	}
	return b
}

// appendState appends the fields that tell the holder of a transaction's only alias, inside the
// message, how long the alias lives, how many messages it relays after
// this one and how to revoke it. They are prepended like the trace
// fields (DKIM signatures stay intact), only when the transaction's one
// recipient is that alias, so no other recipient learns of it, and they
// come from the reservation taken at RCPT: no store access per message.
func (s *session) appendState(b []byte, r *store.Reservation) []byte {
	a := &r.Alias
	b = append(b, "X-Tempalias-Expires: "...)
	b = a.Expires.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, "\r\n"...)
	if rem, ok := a.Remaining(); ok {
		b = append(b, "X-Tempalias-Remaining: "...)
		b = strconv.AppendInt(b, int64(rem), 10)
		b = append(b, "\r\n"...)
	}
	if link := s.srv.cfg.RevokeLink; link != nil {
		b = append(b, "X-Tempalias-Revoke: "...)
		b = append(b, link(a.ID)...)
		b = append(b, "\r\n"...)
	}
	return b
}

// loopCheck reports whether a Delivered-To value names one of the
// transaction's aliases, in any of our domains and in any case.
func (s *session) loopCheck(tx *transaction) func(string) bool {
	if len(tx.aliases) == 0 {
		return nil
	}
	return func(v string) bool {
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">"))
		at := strings.LastIndexByte(v, '@')
		return at > 0 && s.srv.ours(v[at+1:]) && slices.Contains(tx.aliases, strings.ToLower(v[:at]))
	}
}

// dotStuff is rfc 5321:4.5.2 for our own header lines, which go into a
// stuffed stream: none starts with a dot today, and none ever may
// unstuffed.
func dotStuff(s string) string {
	if strings.HasPrefix(s, ".") {
		s = "." + s
	}
	return strings.ReplaceAll(s, "\n.", "\n..")
}
