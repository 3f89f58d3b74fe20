package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/syncbuf"
	"github.com/tempalias/tempalias/store"
	"github.com/tempalias/tempalias/store/boltstore"
)

const testDomain = "tempalias.test"

// fakeSmarthost is a real go-smtp server on loopback that records what it
// receives and can be told to refuse or hang at a stage.
type fakeSmarthost struct {
	addr string

	mu       sync.Mutex
	msgs     []upMsg
	rcpts    []string // every RCPT TO it accepted or refused, in order
	failAt   map[string]error
	hangAt   string
	keepBody bool
	atEnd    func() // called with the whole message in, before the reply to its end

	sessions atomic.Int64 // connections that said EHLO
	aborted  atomic.Int64 // DATA transfers that did not reach the final dot
	release  chan struct{}

	refuse   map[string]error // RCPT TO of these addresses gets the error
	reads    []string         // every read from a connection, in order (guarded by mu)
	accepted atomic.Int64     // connections accepted
	ended    atomic.Int64     // connections whose client closed them (a read found the end)
	connsMu  sync.Mutex
	conns    []net.Conn // the accepted connections, for a test that closes them
}

// upMsg is one message the fake accepted.
type upMsg struct {
	from  string
	rcpts []string
	body  []byte // only if keepBody
	size  int64
	sum   [32]byte
}

// fakeOptions make the fake speak TLS or ask for AUTH PLAIN.
type fakeOptions struct {
	tls        *tls.Config // offered with STARTTLS, or from the first byte if implicit
	implicit   bool
	user, pass string // AUTH PLAIN required when set
}

func newFakeSmarthost(t testing.TB) *fakeSmarthost {
	t.Helper()
	return newFakeSmarthostWith(t, fakeOptions{})
}

func newFakeSmarthostWith(t testing.TB, opts fakeOptions) *fakeSmarthost {
	t.Helper()
	f := &fakeSmarthost{
		failAt:   make(map[string]error),
		refuse:   make(map[string]error),
		keepBody: true,
		release:  make(chan struct{}),
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		f.sessions.Add(1)
		return &fakeSession{f: f, opts: opts}, nil
	}))
	if !opts.implicit {
		srv.TLSConfig = opts.tls
	}
	srv.Domain = "smarthost.test"
	srv.MaxMessageBytes = 1 << 30
	srv.MaxRecipients = 1000
	srv.ErrorLog = errorLog{slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	ln = &recordingListener{Listener: ln, f: f}
	if opts.implicit {
		ln = tls.NewListener(ln, opts.tls)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(f.release)
		srv.Close()
	})
	return f
}

// recordingListener keeps what the fake's connections read, as read:
// one entry per read (up to 1 KiB), so a test sees which commands
// arrived together.
type recordingListener struct {
	net.Listener
	f *fakeSmarthost
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.f.accepted.Add(1)
	l.f.connsMu.Lock()
	l.f.conns = append(l.f.conns, c)
	l.f.connsMu.Unlock()
	return &recordingConn{Conn: c, f: l.f}, nil
}

type recordingConn struct {
	net.Conn
	f     *fakeSmarthost
	ended sync.Once
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && n <= 1024 { // commands, not the bulk of a big message
		c.f.mu.Lock()
		c.f.reads = append(c.f.reads, string(p[:n]))
		c.f.mu.Unlock()
	}
	if err != nil {
		c.ended.Do(func() { c.f.ended.Add(1) })
	}
	return n, err
}

// readLog is every read of the fake's connections so far.
func (f *fakeSmarthost) readLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reads...)
}

// refuseRcpt makes RCPT TO:<addr> get err.
func (f *fakeSmarthost) refuseRcpt(addr string, err error) {
	f.mu.Lock()
	f.refuse[addr] = err
	f.mu.Unlock()
}

// hangUp closes every connection the fake accepted, from its side, as a
// smarthost closing idle clients does.
func (f *fakeSmarthost) hangUp() {
	f.connsMu.Lock()
	defer f.connsMu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

func (f *fakeSmarthost) fail(stage string, err error) {
	f.mu.Lock()
	f.failAt[stage] = err
	f.mu.Unlock()
}

func (f *fakeSmarthost) hang(stage string) {
	f.mu.Lock()
	f.hangAt = stage
	f.mu.Unlock()
}

// stage returns what to do at stage: an error to reply, or a hang.
func (f *fakeSmarthost) stage(name string) error {
	f.mu.Lock()
	err, hang := f.failAt[name], f.hangAt == name
	f.mu.Unlock()
	if hang {
		<-f.release
		return errors.New("released")
	}
	return err
}

func (f *fakeSmarthost) messages() []upMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]upMsg(nil), f.msgs...)
}

type fakeSession struct {
	f      *fakeSmarthost
	opts   fakeOptions
	authed bool
	from   string
	rcpts  []string
}

func (s *fakeSession) AuthMechanisms() []string {
	if s.opts.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != s.opts.user || pass != s.opts.pass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *fakeSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *fakeSession) Logout() error { return nil }

func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.opts.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	if err := s.f.stage("MAIL"); err != nil {
		return err
	}
	s.from = from
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.f.mu.Lock()
	s.f.rcpts = append(s.f.rcpts, to)
	s.f.mu.Unlock()
	if err := s.f.stage("RCPT"); err != nil {
		return err
	}
	s.f.mu.Lock()
	err := s.f.refuse[to]
	s.f.mu.Unlock()
	if err != nil {
		return err
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	h := sha256.New()
	var body bytes.Buffer
	w := io.Writer(h)
	s.f.mu.Lock()
	keep := s.f.keepBody
	s.f.mu.Unlock()
	if keep {
		w = io.MultiWriter(h, &body)
	}
	n, err := io.Copy(w, r)
	if err != nil {
		s.f.aborted.Add(1)
		return err
	}
	s.f.mu.Lock()
	atEnd := s.f.atEnd
	s.f.mu.Unlock()
	if atEnd != nil {
		atEnd()
	}
	if err := s.f.stage("END"); err != nil {
		return err
	}
	m := upMsg{from: s.from, rcpts: s.rcpts, size: n}
	copy(m.sum[:], h.Sum(nil))
	if keep {
		m.body = body.Bytes()
	}
	s.f.mu.Lock()
	s.f.msgs = append(s.f.msgs, m)
	s.f.mu.Unlock()
	return nil
}

// countingStore counts what the server does with uses, on top of the real
// store: each reservation it hands out settles through the real one and
// is counted on the way. A refund after a commit moves the use from
// committed to refunded, so that reserved = committed + refunded once
// every reservation is settled.
type countingStore struct {
	*boltstore.Store
	reserved, committed, refunded atomic.Int64
	failCommit                    atomic.Bool // every Commit fails
	unavailable                   atomic.Bool // every Reserve finds the store unreachable
	// blockReserve, blockCommit: every Reserve or Commit blocks until its
	// context ends, as a call to a cluster that does not answer.
	blockReserve, blockCommit atomic.Bool
}

// blocked waits for ctx to end and fails with its error.
func blocked(ctx context.Context) error {
	<-ctx.Done()
	return fmt.Errorf("test: blocked: %w", ctx.Err())
}

var errCommitFailed = errors.New("test: commit failed")

func (c *countingStore) Reserve(ctx context.Context, id string, now time.Time, opts ...store.ReserveOption) (*store.Reservation, error) {
	if c.unavailable.Load() {
		return nil, fmt.Errorf("test: no quorum: %w", store.ErrUnavailable)
	}
	if c.blockReserve.Load() {
		return nil, blocked(ctx)
	}
	r, err := c.Store.Reserve(ctx, id, now, opts...)
	if err != nil {
		return nil, err
	}
	c.reserved.Add(1)
	return store.NewReservation(r.Alias, r.Key(), countingSettler{c, r}, opts...), nil
}

type countingSettler struct {
	c     *countingStore
	inner *store.Reservation
}

// Commit and Refund count once the store is done, so that a test that
// saw them settled also sees their effect in the store.
func (s countingSettler) Commit(ctx context.Context, _ *store.Reservation, now time.Time) error {
	if s.c.failCommit.Load() {
		return errCommitFailed
	}
	if s.c.blockCommit.Load() {
		return blocked(ctx)
	}
	if err := s.inner.Commit(ctx, now); err != nil {
		return err
	}
	s.c.committed.Add(1)
	return nil
}

func (s countingSettler) Refund(ctx context.Context, _ *store.Reservation, committed bool, _, now time.Time) error {
	err := s.inner.Refund(ctx, now)
	if committed {
		s.c.committed.Add(-1)
	}
	s.c.refunded.Add(1)
	return err
}

// testClock is an injected clock that tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a tempalias SMTP server on loopback with a real bbolt store and a
// fake smarthost.
type env struct {
	t     testing.TB
	st    *countingStore
	srv   *Server
	addr  string
	up    *fakeSmarthost
	clock *testClock
	logs  *syncbuf.Buffer
}

func newEnv(t testing.TB, configure func(*Config)) *env {
	t.Helper()
	return newEnvListener(t, configure, nil)
}

// newEnvListener is newEnv whose server accepts through wrap(listener).
func newEnvListener(t testing.TB, configure func(*Config), wrap func(net.Listener) net.Listener) *env {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "aliases.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t:     t,
		st:    &countingStore{Store: st},
		up:    newFakeSmarthost(t),
		clock: &testClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)},
		logs:  &syncbuf.Buffer{},
	}
	cfg := Config{
		Hostname:    "mx.tempalias.test",
		Domains:     []string{testDomain},
		ReadTimeout: 5 * time.Second,
		DataTimeout: 30 * time.Second,
		Smarthost: Upstream{
			Address:        e.up.addr,
			DialTimeout:    2 * time.Second,
			CommandTimeout: 2 * time.Second,
		},
		Now:    e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if configure != nil {
		configure(&cfg)
	}
	e.srv = New(cfg, e.st)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if r, c, f := e.st.reserved.Load(), e.st.committed.Load(), e.st.refunded.Load(); r != c+f {
			t.Errorf("after shutdown: %d reserved, %d committed, %d refunded", r, c, f)
		}
		st.Close()
	})
	return e
}

// newAlias creates an alias for target and returns its address.
func (e *env) newAlias(target string, days, maxUsage int) (id, addr string) {
	e.t.Helper()
	now := e.clock.Now()
	c, err := e.st.Create(context.Background(), alias.Spec{
		Target:   target,
		Expires:  now.Add(time.Duration(days) * 24 * time.Hour),
		MaxUsage: maxUsage,
	}, now)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Alias.ID, c.Alias.ID + "@" + testDomain
}

// settled waits until every reservation is committed or refunded and
// returns how many were committed and refunded.
func (e *env) settled() (committed, refunded int64) {
	e.t.Helper()
	return e.settledT(e.t)
}

func (e *env) settledT(t testing.TB) (committed, refunded int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, c, f := e.st.reserved.Load(), e.st.committed.Load(), e.st.refunded.Load()
		if r == c+f {
			return c, f
		}
		if time.Now().After(deadline) {
			t.Fatalf("reservations not settled: %d reserved, %d committed, %d refunded", r, c, f)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline, not synchronisation by sleeping
	}
}

// nothingDelivered checks how a failed transaction ends: no commit, one
// refund, no message completed at the smarthost and, when id is given,
// the alias with no use spent or held.
func (e *env) nothingDelivered(t testing.TB, id string) {
	t.Helper()
	if cm, f := e.settledT(t); cm != 0 || f != 1 {
		t.Errorf("%d committed, %d refunded; want 0, 1", cm, f)
	}
	if n := len(e.up.messages()); n != 0 {
		t.Errorf("smarthost completed %d messages", n)
	}
	if id == "" {
		return
	}
	if used, pending, ok := e.uses(id); !ok || used != 0 || pending != 0 {
		t.Errorf("used %d pending %d alive %v; want an untouched alias", used, pending, ok)
	}
}

// uses returns the alias's delivered and pending uses, or ok=false once it
// is dead.
func (e *env) uses(id string) (used, pending int, ok bool) {
	e.t.Helper()
	a, err := e.st.Get(context.Background(), id, e.clock.Now())
	if errors.Is(err, alias.ErrNotFound) {
		return 0, 0, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Used, a.Pending, true
}

// transaction dials, says EHLO and MAIL FROM:<s@example.org> and names
// rcpts, each of which must be accepted.
func (e *env) transaction(rcpts ...string) *client {
	e.t.Helper()
	c := e.dial()
	c.must(250, "EHLO client.example")
	c.must(250, "MAIL FROM:<s@example.org>")
	for _, r := range rcpts {
		c.must(250, "RCPT TO:<%s>", r)
	}
	return c
}

// scriptedOptions shape scriptedSmarthost.
type scriptedOptions struct {
	holdQuit  bool // answer QUIT only when the test ends
	byeAfter1 bool // after each message's 250, say 421 and hang up, as an MTA closing an idle connection does
	// replies replaces the reply at "MAIL", "RCPT", "RSET" or "END" (the
	// final dot) with the line given, CRLF added.
	replies map[string]string
	// delivered, when set, counts the messages whose final dot got a 2xx.
	delivered *atomic.Int64
	// pipelining: offer PIPELINING (rfc 2920); the replies go one by one
	// either way.
	pipelining bool
}

// scriptedSmarthost is a minimal smarthost written by hand, for what
// go-smtp's server cannot be made to do: it takes every message and
// returns its address; sessions is how many connections it accepted.
func scriptedSmarthost(t *testing.T, opts scriptedOptions) (addr string, sessions *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	sessions = new(atomic.Int64)
	serve := func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 scripted.test ESMTP\r\n")
		inData := false
		say := func(stage, def string) {
			line, ok := opts.replies[stage]
			if !ok {
				line = def
			}
			if stage == "END" && line[0] == '2' && opts.delivered != nil {
				opts.delivered.Add(1) // before the reply, which the test may be waiting for
			}
			fmt.Fprint(c, line+"\r\n")
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(line))
			switch {
			case inData:
				if line == ".\r\n" {
					inData = false
					say("END", "250 2.0.0 taken")
					if opts.byeAfter1 {
						fmt.Fprint(c, "421 4.4.2 scripted.test closing idle connection\r\n")
						return
					}
				}
			case strings.HasPrefix(cmd, "EHLO"):
				if opts.pipelining {
					fmt.Fprint(c, "250-scripted.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
				} else {
					fmt.Fprint(c, "250-scripted.test\r\n250 8BITMIME\r\n")
				}
			case cmd == "DATA":
				inData = true
				fmt.Fprint(c, "354 go on\r\n")
			case cmd == "QUIT":
				if opts.holdQuit {
					<-release
				}
				fmt.Fprint(c, "221 bye\r\n")
				return
			case strings.HasPrefix(cmd, "MAIL"):
				say("MAIL", "250 ok")
			case strings.HasPrefix(cmd, "RCPT"):
				say("RCPT", "250 ok")
			case cmd == "RSET":
				say("RSET", "250 ok")
			default:
				fmt.Fprint(c, "250 ok\r\n")
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sessions.Add(1)
			go serve(c)
		}
	}()
	t.Cleanup(func() {
		close(release)
		ln.Close()
	})
	return ln.Addr().String(), sessions
}

// client is a raw SMTP client: it writes exactly what it is given, which
// net/smtp does not (it fixes line endings).
type client struct {
	t    testing.TB
	conn net.Conn
	tp   *textproto.Conn
}

func (e *env) dial() *client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: e.t, conn: conn, tp: textproto.NewConn(conn)}
	e.t.Cleanup(func() { conn.Close() })
	c.expect(220)
	return c
}

// reply reads one reply and returns its code and text.
func (c *client) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			return te.Code, te.Msg
		}
		c.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

func (c *client) expect(code int) string {
	c.t.Helper()
	got, msg := c.reply()
	if got != code {
		c.t.Fatalf("got %d %s, want %d", got, msg, code)
	}
	return msg
}

// cmd sends one command line and returns the reply.
func (c *client) cmd(format string, args ...any) (int, string) {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		c.t.Fatalf("writing command: %v", err)
	}
	return c.reply()
}

func (c *client) must(code int, format string, args ...any) string {
	c.t.Helper()
	got, msg := c.cmd(format, args...)
	if got != code {
		c.t.Fatalf("%s: got %d %s, want %d", fmt.Sprintf(format, args...), got, msg, code)
	}
	return msg
}

// send writes raw bytes.
func (c *client) send(b string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, b); err != nil {
		c.t.Fatalf("writing: %v", err)
	}
}

// closed reports whether the server hung up: reading finds EOF.
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.tp.R.ReadByte()
	return err != nil
}

// stripReceived splits a relayed message into its first header line
// (with folds) and the rest.
func stripReceived(t testing.TB, body []byte) (hdr string, rest []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(body))
	var h strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no header in %q", body)
		}
		h.WriteString(line)
		if b, _ := r.Peek(1); len(b) == 1 && (b[0] == '\t' || b[0] == ' ') {
			continue
		}
		break
	}
	return h.String(), body[h.Len():]
}

// stripTrace splits a relayed message into what tempalias put on top (the
// Received header, one Delivered-To per alias in addrs, which must be
// there, and the alias's X-Tempalias-* state fields, if any) and the rest.
func stripTrace(t testing.TB, body []byte, addrs ...string) (received string, rest []byte) {
	t.Helper()
	received, rest = stripReceived(t, body)
	for _, a := range addrs {
		line := "Delivered-To: " + a + "\r\n"
		if !bytes.HasPrefix(rest, []byte(line)) {
			t.Fatalf("no %q after Received in %q", line, body)
		}
		rest = rest[len(line):]
	}
	return received, stripState(rest)
}

// stripState removes the X-Tempalias-* fields that start rest.
func stripState(rest []byte) []byte {
	for bytes.HasPrefix(rest, []byte("X-Tempalias-")) {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			break
		}
		rest = rest[i+2:]
	}
	return rest
}
