package maildir

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink is an SMTP server on a loopback port that delivers every message
// it is given into a Maildir. It takes the place of a smarthost: it
// answers 250 to the end of the data only once the message is durable in
// new/, and 451 when it could not write it, so the client keeps the
// message. It relays nothing anywhere, and asks nothing of its clients:
// anyone who can reach the loopback port can write into the Maildir,
// which is fine for trying tempalias out and why it is no smarthost for
// a shared host.
type Sink struct {
	dir Dir
	log *slog.Logger
	srv *smtp.Server
	ln  net.Listener
}

// Listen makes the Maildir if needed and starts a Sink for it on
// 127.0.0.1, on a port of the system's choosing (see Addr).
func Listen(dir Dir, log *slog.Logger) (*Sink, error) {
	if err := dir.Init(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{dir: dir, log: log, ln: ln}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{sink: s}, nil
	}))
	s.srv.Domain = "maildir.localhost"
	s.srv.ReadTimeout = 10 * time.Minute
	s.srv.WriteTimeout = time.Minute
	go s.srv.Serve(ln)
	return s, nil
}

// Addr is the sink's host:port.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting connections and waits for those open to end,
// until ctx does; then it closes them.
func (s *Sink) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil // already stopped
	}
	if err != nil && ctx.Err() != nil {
		s.srv.Close()
	}
	return err
}

// errWrite is the reply when a message could not be written: a
// temporary failure, so the sender keeps the message and retries.
var errWrite = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Could not store the message, try again later"}

type session struct {
	sink *Sink
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.to = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	h, err := header(ss.from, ss.to)
	if err != nil {
		io.Copy(io.Discard, r)
		return errWrite
	}
	path, err := ss.sink.dir.Deliver(io.MultiReader(bytes.NewReader(h), r))
	if err != nil {
		io.Copy(io.Discard, r)
		ss.sink.log.Error("maildir: message not stored", "err", err)
		return errWrite
	}
	ss.sink.log.Info("maildir: message stored", "file", path)
	return nil
}
