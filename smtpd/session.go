package smtpd

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/alias"
)

// session is one client connection. go-smtp calls its methods from the
// connection's goroutine, except Data during a BDAT transfer, which runs
// in a goroutine of its own while the connection goroutine may still call
// Reset or Logout. So Data takes the transaction out of the session before
// it starts and settles it itself; whatever the others find is theirs.
type session struct {
	srv    *Server
	conn   *clientConn
	smtp   *smtp.Conn
	remote net.IP
	bad    int // refused recipients on this connection

	mu     sync.Mutex
	tx     *transaction // nil between transactions
	inData bool
	closed bool
	idleUp *upstream              // kept from a delivered transaction for the next
	ups    map[*upstream]struct{} // every open upstream connection, for Shutdown
}

// transaction is the state of one MAIL ... DATA.
type transaction struct {
	id      string
	start   time.Time
	helo    string
	from    string
	size    int64
	aliases []string        // reserved: one use each
	rcpt    string          // the last accepted alias address; named in Received if it is the only one
	targets map[string]bool // already given to the smarthost
	up      *upstream       // with MAIL FROM replayed
	upErr   error           // the smarthost could not be reached; later RCPTs fail the same way
	refused int
	code    int // the last reply code we chose
	bytes   int64
}

// result is how a transaction ends for usage accounting.
type result int

const (
	failed         result = iota // refund every reservation
	delivered                    // the smarthost said 250: commit
	maybeDelivered               // the final dot went out but no reply came back
)

func (s *session) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx == nil && !s.inData
}

// reply is where every session method's error leaves: classify picks the
// reply, and only an *smtp.SMTPError with our own text goes to go-smtp.
// It also carries out what the reply implies (hanging up after a 421).
func (s *session) reply(tx *transaction, err error) error {
	if err == nil {
		if tx != nil {
			tx.code = 250
		}
		return nil
	}
	r, internal := classify(err)
	if internal {
		s.srv.log.Warn("smtp: failure", "remote", s.remote.String(), "code", r.code, "err", err)
	}
	if r.close {
		s.conn.closeAfterReply()
	}
	if tx != nil {
		tx.code = r.code
	}
	return &smtp.SMTPError{Code: r.code, EnhancedCode: r.enh, Message: r.msg}
}

// Mail starts a transaction. Nothing goes upstream yet: most transactions
// at a temporary alias service end in refused recipients.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	return s.reply(nil, s.mail(from, opts))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	// The null sender <> arrives as "" and is fine (rfc 5321:4.5.5).
	if from != "" {
		if _, err := alias.ParseAddress(from); err != nil {
			return errBadSender
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != nil {
		return errNestedMail
	}
	if !s.srv.beginTx() {
		return errShuttingDown
	}
	tx := &transaction{
		id:      newTxID(),
		start:   time.Now(),
		helo:    s.smtp.Hostname(),
		from:    from,
		targets: make(map[string]bool),
	}
	if opts != nil {
		tx.size = opts.Size
	}
	s.tx = tx
	return nil
}

// Rcpt reserves one use of the alias and passes its target to the
// smarthost, dialling it first if this is the first accepted recipient.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return s.reply(nil, errNoMail)
	}
	err := s.rcpt(tx, to)
	var r *refusal
	if errors.As(err, &r) && r.bad {
		tx.refused++
		s.bad++
		if s.bad > s.srv.cfg.MaxBadRecipients {
			err = errTooManyBad
		}
	}
	return s.reply(tx, err)
}

func (s *session) rcpt(tx *transaction, to string) error {
	addr, err := alias.ParseAddress(to)
	if err != nil {
		return errBadRcpt
	}
	if !alias.InDomains(addr.Domain, s.srv.cfg.Domains) {
		return errRelayDenied
	}
	id := strings.ToLower(addr.Local)
	if !alias.ValidID(id) {
		return errNoSuchUser
	}
	if slices.Contains(tx.aliases, id) {
		return nil // named twice, one use (rfc 5321 allows duplicates)
	}
	a, err := s.srv.st.Reserve(id, s.srv.cfg.Now())
	switch {
	case errors.Is(err, alias.ErrNotFound):
		return errNoSuchUser
	case errors.Is(err, alias.ErrExhausted):
		return errAliasBusy
	case err != nil:
		return err
	}
	if err := s.forward(tx, a.Target); err != nil {
		s.refund(id)
		return err
	}
	tx.aliases = append(tx.aliases, id)
	tx.rcpt = id + "@" + addr.Domain
	return nil
}

// forward gives target to the smarthost, once per transaction.
func (s *session) forward(tx *transaction, target string) error {
	// The store only holds checked targets; checking again costs nothing
	// and guarantees no odd string reaches an upstream command line.
	t, err := alias.ParseAddress(target)
	if err != nil {
		return fmt.Errorf("stored target: %w", err)
	}
	target = t.String()
	if err := s.openUpstream(tx); err != nil {
		return err
	}
	if tx.targets[target] {
		return nil
	}
	if err := tx.up.c.Rcpt(target, nil); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code == 421 {
			// The connection is gone; so is the transaction upstream.
			s.drop(tx.up)
			tx.up = nil
			tx.upErr = &upstreamError{"RCPT", err}
		}
		return &upstreamError{"RCPT", err}
	}
	tx.targets[target] = true
	return nil
}

// openUpstream makes sure tx has a smarthost connection with its MAIL FROM
// replayed, reusing the session's idle connection when there is one.
func (s *session) openUpstream(tx *transaction) error {
	if tx.up != nil {
		return nil
	}
	if tx.upErr != nil {
		return tx.upErr
	}
	for {
		s.mu.Lock()
		up := s.idleUp
		s.idleUp = nil
		s.mu.Unlock()
		reused := up != nil
		if !reused {
			var err error
			up, err = s.srv.dial()
			if err != nil {
				tx.upErr = &upstreamError{"connect", err}
				return tx.upErr
			}
			if !s.register(up) {
				up.abort()
				tx.upErr = &upstreamError{"connect", errors.New("session closed")}
				return tx.upErr
			}
		}
		err := up.c.Mail(tx.from, &smtp.MailOptions{Size: tx.size})
		if err == nil {
			tx.up = up
			return nil
		}
		s.drop(up)
		var se *smtp.SMTPError
		if reused && !errors.As(err, &se) {
			continue // the smarthost closed the idle connection; dial afresh
		}
		tx.upErr = &upstreamError{"MAIL", err}
		return tx.upErr
	}
}

// Data relays the message. It owns the transaction from here on.
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	tx := s.tx
	s.tx = nil
	s.inData = tx != nil
	s.mu.Unlock()
	if tx == nil {
		return s.reply(nil, errNoMail)
	}
	res, err := s.relay(tx, r)
	rep := s.reply(tx, err)
	outcome := "delivered"
	switch res {
	case failed:
		outcome = "failed"
	case maybeDelivered:
		outcome = "maybe-delivered"
	}
	s.settle(tx, res, outcome)
	s.mu.Lock()
	s.inData = false
	s.mu.Unlock()
	return rep
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (s *session) relay(tx *transaction, r io.Reader) (result, error) {
	if tx.up == nil {
		if tx.upErr != nil {
			return failed, tx.upErr
		}
		return failed, errNoMail
	}
	s.conn.beginData(time.Now().Add(s.srv.cfg.DataTimeout))
	w, err := tx.up.c.Data()
	if err != nil {
		return failed, &upstreamError{"DATA", err}
	}
	rcpt := ""
	if len(tx.aliases) == 1 {
		rcpt = tx.rcpt
	}
	hdr := receivedHeader(tx.helo, s.remote, s.srv.cfg.Hostname, tx.id, rcpt, s.srv.cfg.Now())
	if _, err := io.WriteString(w, hdr); err != nil {
		return failed, &upstreamError{"DATA", err}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var check bodyCheck
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := check.feed(buf[:n]); err != nil {
				return failed, err
			}
			tx.bytes += int64(n)
			if _, err := w.Write(buf[:n]); err != nil {
				return failed, &upstreamError{"DATA", err}
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
	if s.conn.smuggled.Load() {
		return failed, errBareCR
	}
	// Close sends the final dot and waits for the smarthost's verdict.
	if err := w.Close(); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return failed, &upstreamError{"end of DATA", err}
		}
		// The dot went out but no verdict came back: the smarthost may
		// have the message. Counting the use is the only way to be sure
		// an alias never delivers more than its max-usage; the sender
		// gets a 4xx and may retry, at the cost of that one use.
		return maybeDelivered, &upstreamError{"end of DATA", err}
	}
	return delivered, nil
}

// Reset ends the transaction without delivery: RSET, a new EHLO, or the
// end of DATA (go-smtp resets after every message; Data has settled by
// then and there is nothing left here).
func (s *session) Reset() {
	s.mu.Lock()
	tx := s.tx
	s.tx = nil
	s.mu.Unlock()
	if tx != nil {
		s.settle(tx, failed, "reset")
	}
	if s.srv.isDraining() && s.idle() {
		// The transaction Shutdown let finish is over.
		s.conn.goodbye()
	}
}

// Logout is the end of the connection, however it came about.
func (s *session) Logout() error {
	s.mu.Lock()
	tx := s.tx
	s.tx = nil
	s.closed = true
	up := s.idleUp
	s.idleUp = nil
	s.mu.Unlock()
	if tx != nil {
		s.settle(tx, failed, "disconnected")
	}
	if up != nil {
		up.quit()
		s.unregister(up)
	}
	return nil
}

// settle commits or refunds every reservation of tx, disposes of its
// upstream connection and logs the transaction.
func (s *session) settle(tx *transaction, res result, outcome string) {
	now := s.srv.cfg.Now()
	for _, id := range tx.aliases {
		if res == failed {
			s.refund(id)
			continue
		}
		if err := s.srv.st.Commit(id, now); err != nil {
			// The message is delivered either way. The reservation stays
			// pending, which blocks that use: never over-delivery.
			s.srv.log.Error("smtp: commit failed", "tx", tx.id, "alias", id, "err", err)
		}
	}
	if tx.up != nil {
		if res == delivered {
			s.keep(tx.up)
		} else {
			s.drop(tx.up)
		}
		tx.up = nil
	}
	s.srv.log.Info("smtp transaction",
		"tx", tx.id,
		"remote", s.remote.String(),
		"aliases", tx.aliases,
		"refused", tx.refused,
		"outcome", outcome,
		"code", tx.code,
		"bytes", tx.bytes,
		"duration", time.Since(tx.start))
	s.srv.txs.Done()
}

func (s *session) refund(id string) {
	if err := s.srv.st.Refund(id); err != nil {
		// The use stays reserved: lost, never over-delivered.
		s.srv.log.Error("smtp: refund failed", "alias", id, "err", err)
	}
}

// keep parks a connection whose transaction ended in 250 for the next
// transaction of this session.
func (s *session) keep(u *upstream) {
	draining := s.srv.isDraining()
	s.mu.Lock()
	if !s.closed && s.idleUp == nil && !draining {
		s.idleUp = u
		u = nil
	}
	s.mu.Unlock()
	if u != nil {
		u.quit()
		s.unregister(u)
	}
}

// drop abandons a connection, and with it any transaction open on it.
func (s *session) drop(u *upstream) {
	u.abort()
	s.unregister(u)
}

func (s *session) register(u *upstream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.ups[u] = struct{}{}
	return true
}

func (s *session) unregister(u *upstream) {
	s.mu.Lock()
	delete(s.ups, u)
	s.mu.Unlock()
}

func (s *session) closeUpstreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for u := range s.ups {
		u.abort()
	}
}

func newTxID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
