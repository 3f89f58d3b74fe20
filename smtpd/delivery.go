package smtpd

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/metrics"
)

// delivery is one transaction's message on its way to the smarthost, and
// all the session knows of the smarthost (maddy's shape): recipients are
// added as the client names them, so that the smarthost's refusal of one
// surfaces at its RCPT; then comes the body, then Commit, which sends the
// end of the message and waits for the verdict. Abort drops the
// connection: a message is abandoned upstream by closing, never by
// sending the end (rfc 5321:3.3 and 4.1.1.4: only the dot ends the data).
//
// Errors from the smarthost are *upstreamError, naming the stage.
type delivery struct {
	conns *upstreams
	from  string // the envelope sender as replayed upstream
	size  int64  // the client's SIZE, passed on

	up    *upstream // with MAIL FROM replayed; nil before the first recipient and once given back
	err   error     // the smarthost could not be reached; later recipients fail the same way
	given map[string]bool
	w     io.WriteCloser // go-smtp's DATA writer, from Body to Commit
	n     int64          // bytes written to the smarthost after DATA
}

func newDelivery(conns *upstreams, from string, size int64) *delivery {
	return &delivery{conns: conns, from: from, size: size, given: make(map[string]bool)}
}

// AddRcpt gives the smarthost one recipient, once, opening the
// connection and replaying MAIL FROM first if this is the first.
func (d *delivery) AddRcpt(ctx context.Context, target string) error {
	if err := d.open(ctx); err != nil {
		return err
	}
	if d.given[target] {
		return nil
	}
	if err := positive(d.up.c.Rcpt(target, nil)); err != nil {
		if connGone(err) {
			// The connection is gone; so is the transaction upstream.
			d.conns.drop(d.up)
			d.up = nil
			d.err = &upstreamError{"RCPT", err}
		}
		return &upstreamError{"RCPT", err}
	}
	d.given[target] = true
	return nil
}

// open makes sure there is a connection with MAIL FROM replayed, reusing
// the session's idle one when there is one.
func (d *delivery) open(ctx context.Context) error {
	if d.up != nil {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	for {
		start := time.Now()
		up, reused, err := d.conns.get(ctx)
		if err != nil {
			d.err = &upstreamError{"connect", err}
			return d.err
		}
		err = positive(up.c.Mail(d.from, &smtp.MailOptions{Size: d.size}))
		if err == nil {
			if !reused {
				metrics.SmarthostSeconds.WithLabelValues("dial").Observe(time.Since(start).Seconds())
			}
			d.up = up
			return nil
		}
		d.conns.drop(up)
		if reused && connGone(err) {
			continue // the smarthost closed the idle connection (maybe saying 421); dial afresh
		}
		d.err = &upstreamError{"MAIL", err}
		return d.err
	}
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
// message). Accepted, the connection is given back for the session's
// next transaction; otherwise it is dropped.
func (d *delivery) Commit(_ context.Context) error {
	start := time.Now()
	err := positive(d.w.Close())
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		metrics.SmarthostSeconds.WithLabelValues("data").Observe(time.Since(start).Seconds())
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
	var se *smtp.SMTPError
	return !errors.As(err, &se) || se.Code == 421
}
