package smtpd

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-smtp"
)

// delivery is one transaction's message on its way to the smarthost, and
// all the session knows of the smarthost (maddy's shape): recipients are
// added as the client names them, so that the smarthost's refusal of one
// surfaces at its RCPT; then comes the body, then Commit, which sends the
// end of the message and waits for the verdict. Abort drops the
// connection: a message is abandoned upstream by closing, never by
// sending the end (rfc 5321:3.3 and 4.1.1.4: only the dot ends the data).
//
// With a smarthost that offers PIPELINING (rfc 2920) the commands of one
// recipient go in one write: RSET (a pooled connection's health check),
// MAIL and the first RCPT together, and DATA with the RCPT the client
// sent DATA right after (the client pipelined them): a one-recipient
// message from a pipelining client costs one write and one read before
// the body, as a minimal relay's. Recipients are never held back to
// share a write: each client RCPT must be answered with the smarthost's
// verdict on that recipient, and go-smtp asks for that answer before it
// reads the next command.
//
// Errors from the smarthost are *upstreamError, naming the stage.
type delivery struct {
	conns *upstreams
	from  string // the envelope sender as replayed upstream
	size  int64  // the client's SIZE, passed on

	up    *upstream      // with MAIL FROM replayed; nil before the first recipient and once given back
	err   error          // the smarthost could not be reached; later recipients fail the same way
	given []string       // the recipients the smarthost accepted, each once
	one   [1]string      // given's first array: most messages have one
	w     io.WriteCloser // go-smtp's DATA writer, from Body (or a pipelined DATA) to Commit
	dataE error          // a pipelined DATA's refusal, for Body
	n     int64          // bytes written to the smarthost after DATA
}

func newDelivery(conns *upstreams, from string, size int64) *delivery {
	d := &delivery{conns: conns, from: from, size: size}
	d.given = d.one[:0]
	return d
}

// AddRcpt gives the smarthost one recipient, once, opening the
// connection and replaying MAIL FROM first if this is the first. data
// says the client's next command is DATA (it pipelined it): with a
// pipelining smarthost DATA then goes in the same write, and Body finds
// it answered.
func (d *delivery) AddRcpt(ctx context.Context, target string, data bool) error {
	if d.up == nil {
		if d.err != nil {
			return d.err
		}
		if slices.Contains(d.given, target) {
			return nil
		}
		return d.open(ctx, target, data)
	}
	if slices.Contains(d.given, target) {
		return nil
	}
	if d.w != nil {
		// A pipelined DATA is open upstream, yet the client names
		// another recipient (its DATA was refused here): nothing more
		// can go on this connection.
		d.conns.drop(d.up)
		d.up, d.w = nil, nil
		d.err = errors.New("recipient after a pipelined DATA")
		return d.err
	}
	if !d.up.pipelining {
		return d.rcptReply(target, positive(d.up.c.Rcpt(target, nil)))
	}
	p := d.up.c.Pipeline()
	if err := p.Rcpt(target, nil); err != nil {
		return &upstreamError{"RCPT", err}
	}
	if data {
		p.DataStuffed()
	}
	replies, err := p.Send()
	if err != nil {
		return d.rcptReply(target, err)
	}
	rerr := d.rcptReply(target, positive(replies[0]))
	if data {
		d.dataReply(p, replies[1])
	}
	return rerr
}

// rcptReply takes the smarthost's reply to target's RCPT.
func (d *delivery) rcptReply(target string, err error) error {
	if err != nil {
		ue := &upstreamError{"RCPT", err}
		if connGone(err) {
			// The connection is gone; so is the transaction upstream,
			// and every later stage reports this same failure.
			d.conns.drop(d.up)
			d.up = nil
			d.err = ue
		}
		return ue
	}
	d.given = append(d.given, target)
	return nil
}

// dataReply takes the smarthost's reply to a pipelined DATA. Refused
// with recipients given, the message cannot go (Body says why); refused
// with none (this one was refused too), the client's DATA is refused
// here as well, and a later recipient starts afresh on a new connection.
func (d *delivery) dataReply(p *smtp.Pipeline, err error) {
	switch {
	case d.up == nil:
	case len(d.given) == 0:
		// Whatever the smarthost made of DATA, nothing may follow it on
		// this connection.
		d.conns.drop(d.up)
		d.up = nil
	case err == nil:
		d.w = p.DataCommand()
	default:
		d.dataE = err
	}
}

// open replays MAIL FROM on a connection, reused from the pool when there
// is one, and gives it the first recipient. A pooled connection is said
// RSET first; one the smarthost closed while it waited (no reply, or
// 421, rfc 5321:3.8) is dropped and a fresh one dialled, before the
// client hears anything.
func (d *delivery) open(ctx context.Context, target string, data bool) error {
	for {
		start := time.Now()
		up, reused, err := d.conns.get(ctx)
		if err != nil {
			d.err = &upstreamError{"connect", err}
			return d.err
		}
		var mail, rcpt error
		stale := false // a pooled connection failed RSET
		var p *smtp.Pipeline
		if up.pipelining {
			p = up.c.Pipeline()
			if reused {
				p.Reset()
			}
			if err := p.Mail(d.from, &smtp.MailOptions{Size: d.size}); err != nil {
				d.conns.drop(up)
				d.err = &upstreamError{"MAIL", err}
				return d.err
			}
			if err := p.Rcpt(target, nil); err != nil {
				d.conns.drop(up)
				return &upstreamError{"RCPT", err}
			}
			if data {
				p.DataStuffed()
			}
			replies, err := p.Send()
			if reused && len(replies) > 0 {
				if replies[0] != nil {
					stale, err = true, replies[0]
				}
				replies = replies[1:]
			}
			switch {
			case err != nil:
				mail = err
			case len(replies) > 0:
				mail = positive(replies[0])
				rcpt = positive(replies[1])
			}
			if mail == nil {
				if !reused {
					d.conns.srv.cfg.Metrics.SmarthostSeconds.WithLabelValues("dial").Observe(time.Since(start).Seconds())
				}
				d.up = up
				rerr := d.rcptReply(target, rcpt)
				if data {
					d.dataReply(p, replies[2])
				}
				return rerr
			}
		} else {
			if reused {
				mail = rset(up.c)
				stale = mail != nil
			}
			if mail == nil {
				mail = positive(up.c.Mail(d.from, &smtp.MailOptions{Size: d.size}))
			}
			if mail == nil {
				if !reused {
					d.conns.srv.cfg.Metrics.SmarthostSeconds.WithLabelValues("dial").Observe(time.Since(start).Seconds())
				}
				d.up = up
				return d.rcptReply(target, positive(up.c.Rcpt(target, nil)))
			}
		}
		d.conns.drop(up)
		if reused && (stale || connGone(mail)) {
			continue // the smarthost closed the idle connection (maybe saying 421) or refused RSET; dial afresh
		}
		d.err = &upstreamError{"MAIL", mail}
		return d.err
	}
}

// rset says RSET, alone. go-smtp's Client.Reset would make the next
// command say EHLO again first.
func rset(c *smtp.Client) error {
	p := c.Pipeline()
	p.Reset()
	replies, err := p.Send()
	if err != nil {
		return err
	}
	return replies[0]
}

// Ready reports why there is no message to send, if there is none: the
// smarthost could not be reached or refused every recipient's connection.
func (d *delivery) Ready() error {
	if d.up != nil {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	return errors.New("no recipient given to the smarthost")
}

// Body starts the message (DATA) and returns where it goes: the message
// dot-stuffed (rfc 5321:4.5.2) if stuffed, as a DATA message comes from
// the client, and written as it is; otherwise un-stuffed, and go-smtp
// stuffs it on the way. Either way Commit adds the end-of-data line. ctx
// is for symmetry with the other stages: the connection's deadlines bound
// every write.
func (d *delivery) Body(_ context.Context, stuffed bool) (io.Writer, error) {
	if err := d.Ready(); err != nil {
		return nil, err
	}
	if d.dataE != nil {
		return nil, &upstreamError{"DATA", d.dataE}
	}
	if d.w != nil {
		// DATA went with the last RCPT and got its 354: only a DATA
		// command, whose message is stuffed, follows a pipelined DATA.
		if !stuffed {
			return nil, errors.New("pipelined DATA for a message that is not dot-stuffed")
		}
		return bodyWriter{d}, nil
	}
	var w *smtp.DataCommand
	var err error
	if stuffed {
		w, err = d.up.c.DataStuffed()
	} else {
		w, err = d.up.c.Data()
	}
	if err != nil {
		return nil, &upstreamError{"DATA", err}
	}
	d.w = w
	return bodyWriter{d}, nil
}

// Written is how many bytes of the message went to the smarthost.
func (d *delivery) Written() int64 { return d.n }

// bodyWriter counts what goes to the smarthost and marks its errors as
// the smarthost's.
type bodyWriter struct{ d *delivery }

func (b bodyWriter) Write(p []byte) (int, error) {
	n, err := b.d.w.Write(p)
	b.d.n += int64(n)
	if err != nil {
		return n, &upstreamError{"DATA", err}
	}
	return n, nil
}

// Commit sends the end of the message and waits for the smarthost's
// verdict: nil for any 2xx (DESIGN "Usage accounting"), an *upstreamError
// wrapping its *smtp.SMTPError if it refused, or one wrapping a
// connection error if no verdict came back (the smarthost may have the
// message). Accepted, the connection goes back to the pool for the next
// transaction, any session's; otherwise it is dropped.
func (d *delivery) Commit(_ context.Context) error {
	start := time.Now()
	err := positive(d.w.Close())
	if _, reply := errors.AsType[*smtp.SMTPError](err); err == nil || reply {
		d.conns.srv.cfg.Metrics.SmarthostSeconds.WithLabelValues("data").Observe(time.Since(start).Seconds())
	}
	up := d.up
	d.up, d.w = nil, nil
	if err != nil {
		d.conns.drop(up)
		return &upstreamError{"end of DATA", err}
	}
	d.conns.put(up)
	return nil
}

// Abort abandons the message, if it is still open: the connection is
// dropped before the end can go out.
func (d *delivery) Abort() {
	if d.up != nil {
		d.conns.drop(d.up)
		d.up, d.w = nil, nil
	}
}

// connGone reports whether err from the smarthost means its connection
// is over: no SMTP reply at all, or a 421 (rfc 5321:3.8, as an MTA says
// when it closes an idle connection).
func connGone(err error) bool {
	se, ok := errors.AsType[*smtp.SMTPError](err)
	return !ok || se.Code == 421
}
