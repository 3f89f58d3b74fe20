package smtpd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/srs"
	"github.com/tempalias/tempalias/store"
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
	tls    bool   // the client said STARTTLS before this session
	lit    string // remote's address literal, once a Received header needed it
	bad    int    // refused recipients on this connection

	ups upstreams // the smarthost connections in use

	mu     sync.Mutex
	tx     *transaction // nil between transactions
	inData bool
}

// transaction is the state of one MAIL ... DATA.
type transaction struct {
	id      string
	start   time.Time
	helo    string
	from    string
	size    int64
	aliases []string             // reserved: one use each
	res     []*store.Reservation // the use of each of aliases
	addrs   []string             // the alias addresses, as named, for Delivered-To
	rcpt    string               // the last accepted alias address; named in Received if it is the only one
	ident   string               // the first accepted recipient address: the From of RewriteFrom
	bounces int                  // recipients that were SRS addresses
	pm      bool                 // postmaster@ is a recipient (for Config.Postmaster)
	targets []string             // already given to the smarthost, each once
	timer   *time.Timer          // ends a transaction that never reaches DATA
	dlv     *delivery            // the message upstream, from the first recipient given to the smarthost
	refused refusals             // recipients refused, for the log line: the first maxRefusalsLogged
	excess  int                  // recipients refused past those, only counted
	code    int                  // the last reply code we chose
	bytes   int64                // from the client
	upBytes int64                // to the smarthost, added headers included
	// upReply is the smarthost's refusal of the message (its code and
	// text, or the error), for the log line only: the client gets our
	// words (classify).
	upReply string

	// The first arrays of aliases, res, addrs and targets: a message to
	// one alias allocates none of them.
	alias0  [1]string
	res0    [1]*store.Reservation
	addr0   [1]string
	target0 [1]string
}

// result is how a transaction ends for usage accounting. Every
// reservation is committed just before the final dot goes upstream
// (DESIGN "Usage accounting"), so only a failure has anything left to do.
type result int

const (
	failed         result = iota // refund every reservation, committed or not
	delivered                    // the smarthost accepted the message: the uses stay spent
	maybeDelivered               // the final dot went out but no reply came back: the uses stay spent
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
	return r.smtpError()
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
		id:    newTxID(),
		start: time.Now(),
		helo:  s.smtp.Hostname(),
		from:  from,
	}
	if opts != nil {
		tx.size = opts.Size
	}
	// A transaction that idles between commands (NOOP, RSET-free RCPT
	// dribbles) would hold its reservations and its smarthost connection
	// forever: go-smtp's timeouts are per command. Past the limit the
	// client is told so (421) and the connection closed, which refunds
	// through Logout.
	tx.timer = time.AfterFunc(s.srv.cfg.TransactionTimeout, func() {
		s.srv.log.Info("smtp: transaction timed out before DATA", "tx", tx.id, "remote", s.remote.String())
		s.conn.sayAndClose(errTxTimeout)
	})
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
	s.srv.rcpts.inc(rcptResult(err))
	if err == nil {
		return s.reply(tx, nil)
	}
	why := err
	if r, ok := errors.AsType[*refusal](err); ok && r.bad {
		s.bad++
		over := s.srv.badRcpt.hit(s.conn.client, s.srv.cfg.Now())
		if s.bad > s.srv.cfg.MaxBadRecipients || over {
			err = errTooManyBad
		}
	}
	rep := s.reply(tx, err)
	if s.srv.log.Enabled(context.Background(), slog.LevelInfo) {
		// Only the log line reads it. Refusals that are no bad
		// recipient (busy, rate-limited, upstream) never end the
		// connection, so only so many are kept; the rest are counted.
		if len(tx.refused) < maxRefusalsLogged {
			tx.refused = append(tx.refused, refusedRcpt(to, why, tx.code))
		} else {
			tx.excess++
		}
	}
	return rep
}

func (s *session) rcpt(tx *transaction, to string) error {
	cfg := &s.srv.cfg
	if strings.EqualFold(to, "postmaster") && len(cfg.Domains) > 0 {
		// rfc 5321:4.1.1.3 RCPT TO:<Postmaster>, without a domain, is
		// this host's postmaster: the one of the alias domains.
		to += "@" + cfg.Domains[0]
	}
	addr, err := parseAddress(to)
	if err != nil {
		return errBadRcpt
	}
	ours := s.srv.ours(addr.Domain)
	if !ours && !s.srv.srsDomain(addr.Domain) {
		return errRelayDenied
	}
	if ours && cfg.Postmaster != "" && strings.EqualFold(addr.Local, "postmaster") {
		return s.postmaster(tx, addr)
	}
	if cfg.SRS != nil && srs.HasTag(addr.Local) {
		orig, err := cfg.SRS.Reverse(addr.String(), cfg.Now())
		if !errors.Is(err, srs.ErrNotSRS) {
			return s.bounce(tx, addr, orig, err)
		}
	}
	id := strings.ToLower(addr.Local)
	if !ours || !alias.ValidID(id) {
		return errNoSuchUser
	}
	if slices.Contains(tx.aliases, id) {
		return nil // named twice, one use (rfc 5321 allows duplicates)
	}
	now := cfg.Now()
	ctx := s.storeCtx(tx.start.Add(s.srv.cfg.TransactionTimeout))
	// The hourly limit is the store's: decided in the transaction that
	// reserves, on every host alike, and only for a live alias, so that
	// a dead one answers exactly like an unknown one.
	res, err := s.srv.st.Reserve(ctx, id, now, store.From(tx.from), store.PerHour(cfg.MaxMessagesPerAliasHour))
	ctx.stop()
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNoSuchUser
	case errors.Is(err, store.ErrSenderNotAllowed):
		return errSenderNotAllowed
	case errors.Is(err, store.ErrExhausted):
		return errAliasBusy
	case errors.Is(err, store.ErrMessagesPerHour):
		return errAliasRate
	case err != nil:
		return fmt.Errorf("reserve %s: %w", id, err)
	}
	if err := s.forward(tx, res.Alias.Target); err != nil {
		s.refund(tx, res)
		return err
	}
	if tx.aliases == nil {
		tx.aliases, tx.res, tx.addrs = tx.alias0[:0], tx.res0[:0], tx.addr0[:0]
	}
	tx.aliases = append(tx.aliases, id)
	tx.res = append(tx.res, res)
	tx.rcpt = id + "@" + addr.Domain
	tx.addrs = append(tx.addrs, tx.rcpt)
	if tx.ident == "" {
		tx.ident = tx.rcpt
	}
	return nil
}

// bounce handles a recipient that is an SRS address in our domain: a
// bounce (or a reply) to a sender we rewrote. orig and err are what
// srs.Reverse made of it. A genuine one is relayed to the original sender
// and costs no alias anything; anything else gets the reply of an unknown
// alias, so that the server is no oracle for forging SRS addresses.
func (s *session) bounce(tx *transaction, addr alias.Address, orig string, err error) error {
	if err != nil {
		s.srv.log.Debug("smtp: SRS recipient refused", "remote", s.remote.String(), "err", err)
		return errNoSuchUser
	}
	// A bounce comes from the null sender (rfc 5321:4.5.5). Anything else
	// addressed to an SRS address would turn every address we ever
	// rewrote into an open relay to its original sender.
	if tx.from != "" {
		return errNoSuchUser
	}
	// Each original sender is held to the per-alias hourly limit (or 10
	// an hour when that is off): a leaked SRS address cannot be used to
	// flood it. Counted by the sender, not by the SRS address as
	// written: Reverse takes many spellings of one (any separator, more
	// than the hash's four characters, any of the last MaxAge days).
	key := strings.ToLower(orig)
	if !s.srv.srsRate.take(key, s.srv.cfg.Now()) {
		return errAliasRate
	}
	s.srv.srsRate.settle(key, true)
	t, err := parseAddress(orig)
	if err != nil || s.srv.ours(t.Domain) || s.srv.srsDomain(t.Domain) {
		// Never relay to ourselves: that is a loop.
		return errNoSuchUser
	}
	if err := s.forward(tx, t.String()); err != nil {
		return err
	}
	tx.bounces++
	if tx.ident == "" {
		tx.ident = addr.String()
	}
	return nil
}

// postmasterKey is the one key of Server.pmRate: every alias domain's
// postmaster is the same mailbox.
const postmasterKey = "postmaster"

// postmaster handles postmaster@ an alias domain: relayed to
// Config.Postmaster, from any sender, costing no alias anything, within
// the hourly bound of SRS bounces so that the operator's mailbox cannot
// be flooded through us.
func (s *session) postmaster(tx *transaction, addr alias.Address) error {
	if tx.pm {
		return nil // another domain's postmaster: the same mailbox, once
	}
	if !s.srv.pmRate.take(postmasterKey, s.srv.cfg.Now()) {
		return errAliasRate
	}
	if err := s.forward(tx, s.srv.cfg.Postmaster); err != nil {
		s.srv.pmRate.settle(postmasterKey, false)
		return err
	}
	tx.pm = true
	if tx.ident == "" {
		tx.ident = addr.String()
	}
	return nil
}

// srsForward is the envelope sender to replay upstream.
func (s *session) srsForward(from string) string {
	r := s.srv.cfg.SRS
	if r == nil || from == "" {
		return from
	}
	f, err := r.Forward(from, s.srv.cfg.Now())
	if err != nil {
		// ParseAddress let it through, but it cannot be rewritten (a
		// quoted local part, say); relaying it as it is beats refusing.
		s.srv.log.Debug("smtp: sender not rewritten", "remote", s.remote.String(), "err", err)
		return from
	}
	return f
}

// forward gives target to the smarthost, once per transaction.
func (s *session) forward(tx *transaction, target string) error {
	// The store only holds checked targets; checking again costs nothing
	// and guarantees no odd string reaches an upstream command line.
	t, err := parseAddress(target)
	if err != nil {
		return fmt.Errorf("stored target: %w", err)
	}
	target = t.String()
	if s.srv.cfg.RewriteFrom && len(tx.targets) > 0 && !slices.Contains(tx.targets, target) {
		return errOneTarget
	}
	if tx.dlv == nil {
		// The sender as replayed upstream, SRS-rewritten if configured:
		// computed here, as most transactions never get this far.
		tx.dlv = newDelivery(&s.ups, s.srsForward(tx.from), tx.size)
	}
	if err := tx.dlv.AddRcpt(s.srv.dialCtx, target, s.dataNext()); err != nil {
		return err
	}
	if !slices.Contains(tx.targets, target) {
		if tx.targets == nil {
			tx.targets = tx.target0[:0]
		}
		tx.targets = append(tx.targets, target)
	}
	return nil
}

// dataNext reports whether the client's next command, already sent and
// buffered, is DATA: a pipelining client (rfc 2920) sends its MAIL, RCPTs
// and DATA at once, and then DATA may go upstream with the last RCPT.
func (s *session) dataNext() bool {
	line, ok := s.smtp.BufferedLine()
	return ok && strings.EqualFold(strings.TrimSpace(line), "DATA")
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
	tx.timer.Stop() // from here DataTimeout and the smarthost's timeouts apply
	res, err := s.relay(tx, r)
	s.conn.endData()
	if ue, ok := errors.AsType[*upstreamError](err); ok {
		tx.upReply = upstreamText(ue)
	}
	rep := s.reply(tx, err)
	if rep == nil {
		// go-smtp's own 250 says "queued", which we do not; ours names
		// the transaction, as the Received header and the log line do,
		// so that the sender's record, the message and the log join up.
		rep = &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: relayed as " + tx.id}
	}
	s.srv.messages.inc(messageResult(tx.code))
	if res == delivered {
		s.srv.cfg.Metrics.RelayedBytes.Add(float64(tx.upBytes))
	}
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
		s.conn.sayAndClose(errShuttingDown)
	}
}

// Logout is the end of the connection, however it came about.
func (s *session) Logout() error {
	// go-smtp calls Logout after writing its last reply (221, 421) and
	// before closing: that reply goes out now, not after the smarthost's
	// QUIT and the refunds below.
	s.conn.flush()
	s.mu.Lock()
	tx := s.tx
	s.tx = nil
	s.mu.Unlock()
	if tx != nil {
		s.settle(tx, failed, "disconnected")
	}
	s.ups.close()
	return nil
}

// commit makes every reservation of tx durable, just before the end of
// the message goes upstream.
func (s *session) commit(tx *transaction) error {
	now := s.srv.cfg.Now()
	for _, r := range tx.res {
		ctx := s.storeCtx(time.Time{})
		err := r.Commit(ctx, now)
		ctx.stop()
		if err != nil {
			if errors.Is(err, store.ErrSenderNotAllowed) {
				// Another message, committed first, locked the alias to
				// its sender's domain (lock-sender), or allow-from changed
				// since RCPT: refused as at RCPT.
				return errSenderNotAllowed
			}
			if errors.Is(err, store.ErrExhausted) {
				// Reserved while the alias had no max-usage, which a
				// change set since, and no use is left: as busy at RCPT.
				return errAliasBusy
			}
			return fmt.Errorf("commit %s: %w", r.Alias.ID, err)
		}
	}
	return nil
}

// settle refunds every reservation of a failed transaction (committed
// ones too: the smarthost refused the message, or the end never went
// out), disposes of its upstream connection and logs the transaction.
func (s *session) settle(tx *transaction, res result, outcome string) {
	tx.timer.Stop()
	if tx.pm {
		s.srv.pmRate.settle(postmasterKey, res != failed)
	}
	if res == failed {
		for _, r := range tx.res {
			s.refund(tx, r)
		}
	}
	if tx.dlv != nil {
		tx.dlv.Abort() // a no-op once Commit has run
	}
	s.logTx(tx, outcome)
	s.srv.txs.Done()
}

// logTx writes the transaction's one log line. It is a good part of the
// cost of a refused transaction, so nothing is built unless it is written,
// the attributes go to the handler as they are (no []any to convert), and
// the record goes to the handler without the caller's PC (Logger.LogAttrs
// asks runtime.Callers for it, a sixth of the line's CPU; no handler here
// writes the source).
func (s *session) logTx(tx *transaction, outcome string) {
	log := s.srv.log
	ctx := context.Background()
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var buf [13]slog.Attr
	attrs := append(buf[:0],
		slog.String("tx", tx.id),
		slog.String("remote", s.remote.String()),
		slog.Any("aliases", tx.aliases),
		slog.Int("bounces", tx.bounces),
		slog.Bool("postmaster", tx.pm),
		slog.Any("refused", tx.refused),
	)
	if tx.excess > 0 {
		attrs = append(attrs, slog.Int("refused_more", tx.excess))
	}
	attrs = append(attrs,
		slog.Bool("tls", s.tls),
		slog.String("outcome", outcome),
		slog.Int("code", tx.code),
	)
	if tx.upReply != "" {
		attrs = append(attrs, slog.String("upstream", tx.upReply))
	}
	attrs = append(attrs, slog.Int64("bytes", tx.bytes), slog.Duration("duration", time.Since(tx.start)))
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "smtp transaction", 0)
	r.AddAttrs(attrs...)
	log.Handler().Handle(ctx, r)
}

// storeCtx bounds one store call: StoreTimeout from now, and never past
// until (when set), the end of what the call is for. A call cut off
// fails, and the client gets a 4xx (classify). Its stop is the call's
// CancelFunc.
func (s *session) storeCtx(until time.Time) *callCtx {
	d := time.Now().Add(s.srv.cfg.StoreTimeout)
	if !until.IsZero() && until.Before(d) {
		d = until
	}
	return newCallCtx(s.srv.dialCtx, d)
}

func (s *session) refund(tx *transaction, r *store.Reservation) {
	ctx := s.storeCtx(time.Time{})
	defer ctx.stop()
	if err := r.Refund(ctx, s.srv.cfg.Now()); err != nil {
		// The use stays reserved or spent: lost, never over-delivered.
		s.srv.log.Error("smtp: refund failed", "tx", tx.id, "alias", r.Alias.ID, "err", err)
	}
}

// maxSRSLocal bounds the local part of an SRS address. SRS carries a
// whole address in the local part, so it often exceeds rfc 5321's 64
// octets, which rfc 5321:4.5.3.1 itself says to be liberal about; the
// path as a whole stays within 256 octets.
const maxSRSLocal = 200

// parseAddress is alias.ParseAddress, except that a local part starting
// with an SRS tag may be longer than 64 octets, as long as it is a plain
// dot-atom.
func parseAddress(s string) (alias.Address, error) {
	a, err := alias.ParseAddress(s)
	if err == nil {
		return a, nil
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 || !srs.HasTag(s[:at]) || at > maxSRSLocal || len(s) > 254 {
		return a, err
	}
	local, domain := s[:at], s[at+1:]
	if alias.CheckDotString(local) != nil || alias.CheckDomain(domain) != nil {
		return a, err
	}
	return alias.Address{Local: local, Domain: strings.ToLower(domain)}, nil
}

func newTxID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
