// Command ceiling is the set of ceiling peers tempalias is measured
// against in bench/run.sh: for each workload, the least a Go server on this
// machine must do, driven by the same bench/loadgen modes as tempalias so
// the client's cost is identical. None of them is a mail server; each does
// exactly its workload and nothing else.
//
//	ceiling -mode refuse -listen 127.0.0.1:2525
//	    raw-TCP SMTP refuser: answers every command from memory, RCPT with
//	    550 (loadgen -mode smtp-refuse)
//	ceiling -mode relay -listen 127.0.0.1:2526 -upstream 127.0.0.1:2500
//	    minimal pipelined relay: MAIL and RCPT answered from memory; at DATA
//	    it sends MAIL+RCPT+DATA upstream in one write over a kept connection
//	    (a pool shared by all sessions) and copies the client's dot-stuffed
//	    body through as it comes, scanning only for CRLF.CRLF (loadgen
//	    -mode smtp-relay)
//	ceiling -mode create -listen 127.0.0.1:8091 -file ceiling.db
//	    bbolt group-commit writer: POST /aliases puts one record under a
//	    random id; concurrent requests share one durable bbolt transaction,
//	    which is committed (fsynced) before any of them is answered 201
//	    (loadgen -mode http-create, wrk)
//	ceiling -mode create-local -file ceiling.db -c 100 -d 6s
//	    the same group commit without HTTP: -c goroutines creating for -d,
//	    one JSON line with the rate
//
// Replies of the SMTP modes are batched as a pipelining server's are: they
// leave when the server has read everything the client sent so far.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

func main() {
	mode := flag.String("mode", "", "refuse | relay | create | create-local")
	listen := flag.String("listen", "127.0.0.1:0", "listen `address`")
	upstream := flag.String("upstream", "", "relay: the smarthost `address`")
	file := flag.String("file", "", "create: the bbolt `file`")
	maxBatch := flag.Int("max-batch", 1000, "create: most requests sharing one transaction")
	workers := flag.Int("c", 100, "create-local: concurrent creators")
	dur := flag.Duration("d", 6*time.Second, "create-local: how long")
	flag.Parse()
	var err error
	switch *mode {
	case "refuse":
		err = serveSMTP(*listen, refuseSession)
	case "relay":
		if *upstream == "" {
			log.Fatal("ceiling: -mode relay needs -upstream")
		}
		p := &pool{addr: *upstream, idle: make(chan *upConn, 1024)}
		err = serveSMTP(*listen, func(c net.Conn) { relaySession(c, p) })
	case "create", "create-local":
		if *file == "" {
			log.Fatal("ceiling: -mode create needs -file")
		}
		var w *writer
		if w, err = openWriter(*file, *maxBatch); err != nil {
			break
		}
		if *mode == "create" {
			err = serveCreate(*listen, w)
		} else {
			err = createLocal(w, *workers, *dur)
		}
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		log.Fatal("ceiling: ", err)
	}
}

// --- SMTP -----------------------------------------------------------------

func serveSMTP(addr string, session func(net.Conn)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Printf("ceiling listening on %s", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go session(c)
	}
}

// conn is one client session: lines in, replies out, batched.
type conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newConn(c net.Conn) *conn {
	return &conn{c: c, r: bufio.NewReaderSize(c, 32*1024), w: bufio.NewWriterSize(c, 4096)}
}

// reply queues a reply; it goes out when the client has nothing more
// buffered (rfc 2920: a pipelined group's replies in one write).
func (s *conn) reply(text string) {
	s.w.WriteString(text)
	s.w.WriteString("\r\n")
}

// line flushes the queued replies if the client has sent nothing more, and
// reads the next command line.
func (s *conn) line() (string, error) {
	if s.r.Buffered() == 0 {
		if err := s.w.Flush(); err != nil {
			return "", err
		}
	}
	s.c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	l, err := s.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(l, "\r\n")), nil
}

func verb(l string) string {
	v, _, _ := strings.Cut(l, " ")
	if len(v) > 4 {
		v = v[:4]
	}
	return strings.ToUpper(v)
}

const ehlo = "250-ceiling\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 209715200"

func refuseSession(c net.Conn) {
	defer c.Close()
	s := newConn(c)
	s.reply("220 ceiling ESMTP")
	for {
		l, err := s.line()
		if err != nil {
			return
		}
		switch verb(l) {
		case "EHLO", "HELO":
			s.reply(ehlo)
		case "MAIL", "RSET", "NOOP":
			s.reply("250 ok")
		case "RCPT":
			s.reply("550 5.1.1 no such alias")
		case "QUIT":
			s.reply("221 bye")
			s.w.Flush()
			return
		default:
			s.reply("503 5.5.1 not here")
		}
	}
}

// upConn is a kept connection to the smarthost, EHLO done.
type upConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// pool keeps idle upstream connections for all sessions.
type pool struct {
	addr string
	idle chan *upConn
}

func (p *pool) get() (*upConn, error) {
	select {
	case u := <-p.idle:
		return u, nil
	default:
	}
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		return nil, err
	}
	u := &upConn{c: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 32*1024)}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := u.expect('2'); err != nil {
		c.Close()
		return nil, err
	}
	u.w.WriteString("EHLO ceiling\r\n")
	if err := u.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	if err := u.expect('2'); err != nil {
		c.Close()
		return nil, err
	}
	return u, nil
}

func (p *pool) put(u *upConn) {
	select {
	case p.idle <- u:
	default:
		u.c.Close()
	}
}

// expect reads one (multi-line) reply and wants its first digit.
func (u *upConn) expect(digit byte) error {
	for {
		l, err := u.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(l) < 4 {
			return fmt.Errorf("short reply %q", l)
		}
		if l[3] == '-' {
			continue
		}
		if l[0] != digit {
			return fmt.Errorf("upstream: %q", bytes.TrimRight(l, "\r\n"))
		}
		return nil
	}
}

func relaySession(c net.Conn, p *pool) {
	defer c.Close()
	s := newConn(c)
	s.reply("220 ceiling ESMTP")
	var from string
	var rcpts []string
	for {
		l, err := s.line()
		if err != nil {
			return
		}
		switch verb(l) {
		case "EHLO", "HELO":
			s.reply(ehlo)
		case "MAIL":
			from, rcpts = l, rcpts[:0]
			s.reply("250 ok")
		case "RCPT":
			rcpts = append(rcpts, l)
			s.reply("250 ok")
		case "RSET":
			from, rcpts = "", rcpts[:0]
			s.reply("250 ok")
		case "NOOP":
			s.reply("250 ok")
		case "DATA":
			if from == "" || len(rcpts) == 0 {
				s.reply("503 5.5.1 MAIL and RCPT first")
				continue
			}
			if err := relayData(s, p, from, rcpts); err != nil {
				return
			}
			from, rcpts = "", rcpts[:0]
		case "QUIT":
			s.reply("221 bye")
			s.w.Flush()
			return
		default:
			s.reply("503 5.5.1 not here")
		}
	}
}

// relayData sends MAIL, RCPT and DATA upstream in one write, then copies
// the client's body as it is (still dot-stuffed) in buffer-sized writes up
// to and including CRLF.CRLF, and answers with the upstream's verdict. An
// error ends the session.
func relayData(s *conn, p *pool, from string, rcpts []string) error {
	u, err := p.get()
	if err != nil {
		s.reply("451 4.4.1 upstream unavailable")
		return nil
	}
	u.c.SetDeadline(time.Now().Add(30 * time.Second))
	u.w.WriteString(from)
	u.w.WriteString("\r\n")
	for _, r := range rcpts {
		u.w.WriteString(r)
		u.w.WriteString("\r\n")
	}
	u.w.WriteString("DATA\r\n")
	err = u.w.Flush()
	for i := 0; err == nil && i < 1+len(rcpts); i++ {
		err = u.expect('2')
	}
	if err == nil {
		err = u.expect('3')
	}
	if err != nil {
		u.c.Close()
		s.reply("451 4.4.1 upstream refused")
		return nil
	}
	s.reply("354 go ahead")
	if err := s.w.Flush(); err != nil {
		u.c.Close()
		return err
	}
	if err := copyBody(u.w, s.r); err != nil {
		u.c.Close()
		return err
	}
	if err := u.w.Flush(); err != nil {
		u.c.Close()
		s.reply("451 4.4.1 upstream failed")
		return nil
	}
	if err := u.expect('2'); err != nil {
		u.c.Close()
		s.reply("451 4.4.1 upstream failed")
		return nil
	}
	p.put(u)
	s.reply("250 ok")
	return nil
}

var endOfData = []byte("\r\n.\r\n")

// copyBody copies from r to w whatever r has buffered, up to the end of
// data. The body starts after the DATA line's CRLF, so a last 2-byte
// window is carried to find CRLF.CRLF across reads; a body that is only
// ".\r\n" is found too.
func copyBody(w *bufio.Writer, r *bufio.Reader) error {
	var tail [4]byte
	tl := copy(tail[:], "\r\n") // the CRLF that ended the DATA line
	for {
		if _, err := r.Peek(1); err != nil {
			return err
		}
		buf, _ := r.Peek(r.Buffered())
		// Look for the end across the seam: tail (up to 4 bytes) + buf.
		var seam [8]byte
		n := copy(seam[:], tail[:tl])
		n += copy(seam[n:], buf[:min(len(buf), 4)])
		if i := bytes.Index(seam[:n], endOfData); i >= 0 {
			end := i + len(endOfData) - tl
			w.Write(buf[:end])
			r.Discard(end)
			return nil
		}
		if i := bytes.Index(buf, endOfData); i >= 0 {
			end := i + len(endOfData)
			w.Write(buf[:end])
			r.Discard(end)
			return nil
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		if len(buf) >= 4 {
			tl = copy(tail[:], buf[len(buf)-4:])
		} else {
			// Keep the last 4 bytes of tail+buf.
			var t [8]byte
			k := copy(t[:], tail[:tl])
			k += copy(t[k:], buf)
			tl = copy(tail[:], t[max(0, k-4):k])
		}
		r.Discard(len(buf))
	}
}

// --- durable creations ------------------------------------------------------

var bucket = []byte("aliases")

// writer is a group commit in front of bbolt's single writer: a request
// waits only for the transaction in progress; whatever queued meanwhile
// goes into the next one, so one fsync serves many requests.
type writer struct {
	db  *bolt.DB
	ops chan *put
	max int
}

type put struct {
	key, val []byte
	err      chan error
}

func openWriter(path string, maxBatch int) (*writer, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, err
	}
	w := &writer{db: db, ops: make(chan *put, maxBatch), max: maxBatch}
	go w.run()
	return w, nil
}

func (w *writer) run() {
	batch := make([]*put, 0, w.max)
	for p := range w.ops {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < w.max {
			select {
			case p := <-w.ops:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		err := w.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for _, p := range batch {
				if err := b.Put(p.key, p.val); err != nil {
					return err
				}
			}
			return nil
		})
		for _, p := range batch {
			p.err <- err
		}
	}
}

const idChars = "0123456789abcdefghijklmnopqrstuvwxyz"

// create stores one record for target under a new random 8-character id
// and returns the id once the record is on disk.
func (w *writer) create(target string, days int) (string, error) {
	var raw [8]byte
	rand.Read(raw[:])
	for i, b := range raw {
		raw[i] = idChars[int(b)%len(idChars)]
	}
	val := fmt.Appendf(nil, "%s\x00%d\x00%d", target, time.Now().Unix(), days)
	p := &put{key: raw[:], val: val, err: make(chan error, 1)}
	w.ops <- p
	return string(raw[:]), <-p.err
}

type createReq struct {
	Target string `json:"target"`
	Days   int    `json:"days"`
}

func serveCreate(addr string, w *writer) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /aliases", func(rw http.ResponseWriter, r *http.Request) {
		var req createReq
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || req.Target == "" {
			http.Error(rw, "bad request", http.StatusBadRequest)
			return
		}
		id, err := w.create(req.Target, req.Days)
		if err != nil {
			http.Error(rw, "store failed", http.StatusServiceUnavailable)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusCreated)
		fmt.Fprintf(rw, `{"alias":"%s@bench.test","target":%q}`+"\n", id, req.Target)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Printf("ceiling listening on %s", ln.Addr())
	return http.Serve(ln, mux)
}

func createLocal(w *writer, workers int, d time.Duration) error {
	var n atomic.Int64
	var first atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range max(workers, 1) {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, err := w.create("rcpt@example.net", 3); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	fmt.Printf("{\"mode\":\"create-local\",\"c\":%d,\"count\":%d,\"seconds\":%.3f,\"throughput\":%.1f}\n",
		workers, n.Load(), secs, float64(n.Load())/secs)
	return nil
}
