// Command loadgen drives load against tempalias and its peers (Postfix,
// smtp-sink, a hello-world Go handler, a bare http.FileServer) and reports
// count, errors, throughput and latency percentiles: one JSON line on
// stdout for scripts, a human summary on stderr.
//
// Modes:
//
//	smtp-refuse  one session per operation: EHLO, MAIL, RCPT to a random
//	             unknown alias (expects 550), QUIT
//	smtp-relay   one message per operation: MAIL, RCPT to an alias from
//	             -rcpt-file (or -rcpt), DATA of -size bytes (expects 250);
//	             connections are reused with RSET between messages unless
//	             -per-session (EHLO..QUIT for every message)
//	http-create  POST /aliases with JSON over keep-alive (expects 201);
//	             -out writes "alias target" lines of what was created
//	http-get     GET -paths round robin with Accept-Encoding: gzip
//	             (expects 200)
//	ports        print -n free loopback TCP ports, one a line
//	cpu          print the CPU time the -watch processes used so far (JSON)
//	quiet        wait (at most -d) for a second in which the machine is
//	             less than -max-busy cores busy
//
// Every run is bounded: it stops after -n measured operations (0: no count
// limit) or after -d, whichever comes first; -warmup runs before the
// measurement and is not counted. Operations in flight when -d ends are
// finished (bounded by -timeout) and counted.
//
// The latency of every operation goes into a log-linear histogram (1%
// resolution); in SMTP modes the RCPT command's own latency is kept too,
// with the number of RCPT replies slower than -slow.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	mode        string
	addr        string
	label       string
	c           int
	n           int64
	d           time.Duration
	warmup      time.Duration
	timeout     time.Duration
	size        int
	rcpt        string
	rcptFile    string
	rcptCol     int
	rcptDomain  string
	idLen       int
	from        string
	ehlo        string
	perSession  bool
	pipeline    bool
	msgsPerConn int
	rset        bool
	target      string
	days        int
	maxUsage    int
	out         string
	paths       []string
	gzip        bool
	slow        time.Duration
	stopFile    string
	stopPattern string
	watch       []watched
	maxBusy     float64
	rate        float64
}

func main() {
	var cfg config
	var paths string
	flag.StringVar(&cfg.mode, "mode", "", "smtp-refuse | smtp-relay | http-create | http-get | ports | cpu | quiet")
	flag.StringVar(&cfg.addr, "addr", "", "server `host:port` (http modes also take a URL base); several, comma-separated, are used round robin (one server on several hosts)")
	flag.StringVar(&cfg.label, "label", "", "free text copied into the JSON line")
	flag.IntVar(&cfg.c, "c", 50, "concurrent connections (workers)")
	flag.Int64Var(&cfg.n, "n", 0, "measured operations; 0: only -d limits the run (ports: how many ports)")
	flag.DurationVar(&cfg.d, "d", 10*time.Second, "longest measurement (must be > 0)")
	flag.DurationVar(&cfg.warmup, "warmup", 0, "unmeasured load before the measurement")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "I/O deadline of one operation")
	flag.IntVar(&cfg.size, "size", 4096, "smtp-relay: message size in bytes, headers included")
	flag.StringVar(&cfg.rcpt, "rcpt", "", "smtp-relay: the one recipient of every message")
	flag.StringVar(&cfg.rcptFile, "rcpt-file", "", "smtp-relay: file of recipients, one a line, whitespace-separated columns")
	flag.IntVar(&cfg.rcptCol, "rcpt-col", 1, "smtp-relay: which column of -rcpt-file is the recipient")
	flag.StringVar(&cfg.rcptDomain, "rcpt-domain", "bench.test", "smtp-refuse: domain of the random unknown recipients")
	flag.IntVar(&cfg.idLen, "id-len", 8, "smtp-refuse: length of the random [0-9a-z] local parts")
	flag.StringVar(&cfg.from, "from", "sender@client.example", "MAIL FROM address")
	flag.StringVar(&cfg.ehlo, "ehlo", "loadgen.example", "EHLO name")
	flag.BoolVar(&cfg.pipeline, "pipeline", false, "smtp modes: send MAIL, RCPT and DATA (refuse: QUIT) as one group, as a sending MTA does when PIPELINING is offered (rfc 2920)")
	flag.BoolVar(&cfg.perSession, "per-session", false, "smtp-relay: a new session (connect, EHLO, QUIT) for every message")
	flag.IntVar(&cfg.msgsPerConn, "msgs-per-conn", 0, "smtp-relay: messages per connection before QUIT; 0: unlimited")
	flag.BoolVar(&cfg.rset, "rset", true, "smtp-relay: send RSET between messages on a reused connection")
	flag.StringVar(&cfg.target, "target", "rcpt@example.net", "http-create: target of the new aliases")
	flag.IntVar(&cfg.days, "days", 60, "http-create: days")
	flag.IntVar(&cfg.maxUsage, "max-usage", 0, "http-create: max-usage; 0: omitted")
	flag.StringVar(&cfg.out, "out", "", "http-create: write \"alias target\" lines of the created aliases here")
	flag.StringVar(&paths, "paths", "/", "http-get: comma-separated paths, requested round robin")
	flag.BoolVar(&cfg.gzip, "gzip", true, "http-get: send Accept-Encoding: gzip")
	flag.Float64Var(&cfg.rate, "rate", 0, "operations a second over all workers, each worker paced at rate/c; 0: every worker as fast as it can (a closed loop)")
	flag.DurationVar(&cfg.slow, "slow", 50*time.Millisecond, "smtp modes: count RCPT replies slower than this")
	traceOut := flag.String("trace", "", "write a runtime/trace of this process here, from -trace-at after the start for -trace-for")
	traceAt := flag.Duration("trace-at", 0, "see -trace")
	traceFor := flag.Duration("trace-for", 5*time.Second, "see -trace")
	slowLogPath := flag.String("slow-log", "", "smtp modes: append a line \"start-unix-ns duration-ns\" here for every measured RCPT reply slower than -slow (to line stalls up with other timelines)")
	flag.StringVar(&cfg.stopFile, "stop-file", "", "stop early once this file contains -stop-pattern")
	flag.StringVar(&cfg.stopPattern, "stop-pattern", "", "see -stop-file")
	flag.Float64Var(&cfg.maxBusy, "max-busy", 0.3, "quiet: busy cores (over one second) below which the machine counts as quiet")
	watch := flag.String("watch", "", "name=PID[+],...: report the CPU these processes used during the measurement (+: with their children)")
	flag.Parse()
	var err error
	if cfg.watch, err = parseWatch(*watch); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	cfg.paths = strings.Split(paths, ",")
	if *slowLogPath != "" {
		f, err := os.OpenFile(*slowLogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		defer f.Close()
		slowLog.f = f
	}
	if cfg.perSession {
		cfg.msgsPerConn = 1
	}
	if *traceOut != "" {
		f, err := os.Create(*traceOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		defer f.Close()
		// Stopped after -trace-for or when the run ends, whichever is first.
		var mu sync.Mutex
		over := false
		stop := func() {
			mu.Lock()
			defer mu.Unlock()
			if !over {
				over = true
				trace.Stop() // a no-op if it never started
			}
		}
		defer stop()
		go func() {
			time.Sleep(*traceAt)
			mu.Lock()
			if !over {
				if err := trace.Start(f); err != nil {
					fmt.Fprintln(os.Stderr, "loadgen:", err)
				}
			}
			mu.Unlock()
			time.Sleep(*traceFor)
			stop()
		}()
	}
	if err := run(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(cfg *config) error {
	switch cfg.mode {
	case "ports":
		return freePorts(int(cfg.n))
	case "quiet":
		return waitQuiet(cfg.d, cfg.maxBusy)
	case "cpu":
		// The cumulative CPU of the -watch processes, for scripts that
		// add up work done outside a measurement (a queue draining).
		out := map[string]float64{}
		for _, w := range cfg.watch {
			out[w.name+"_ms"] = ms(w.cpu())
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
		return nil
	}
	if cfg.addr == "" {
		return errors.New("-addr is required")
	}
	if cfg.c < 1 || cfg.d <= 0 || cfg.n < 0 || !(cfg.rate >= 0) {
		return errors.New("-c must be >= 1, -d > 0, -n >= 0, -rate >= 0")
	}
	var newWorker func(id int) (worker, error)
	switch cfg.mode {
	case "smtp-refuse":
		newWorker = func(id int) (worker, error) { return newRefuser(cfg, id), nil }
	case "smtp-relay":
		rcpts, err := recipients(cfg)
		if err != nil {
			return err
		}
		msg := newMessage(cfg.from, cfg.size)
		newWorker = func(id int) (worker, error) { return newRelayer(cfg, id, rcpts, msg), nil }
	case "http-create", "http-get":
		hc, err := newHTTPClient(cfg)
		if err != nil {
			return err
		}
		defer hc.close()
		newWorker = func(id int) (worker, error) { return shared{hc}, nil }
	default:
		return fmt.Errorf("unknown -mode %q", cfg.mode)
	}
	res := drive(cfg, newWorker)
	res.print(cfg)
	return nil
}

// waitQuiet returns once the machine was less than maxBusy cores busy for
// one second, or after d; it prints the last reading on stderr. Run between
// measurements, when everything of ours is idle, it waits out neighbours'
// bursts (a shared machine's test runs) instead of measuring them.
func waitQuiet(d time.Duration, maxBusy float64) error {
	deadline := time.Now().Add(d)
	prev, t0 := machineBusy(), time.Now()
	for {
		time.Sleep(time.Second)
		cur, t1 := machineBusy(), time.Now()
		busy := float64(cur-prev) / float64(t1.Sub(t0))
		if busy < maxBusy {
			return nil
		}
		if t1.After(deadline) {
			fmt.Fprintf(os.Stderr, "loadgen: machine still %.2f cores busy after waiting %v; measuring anyway\n", busy, d)
			return nil
		}
		prev, t0 = cur, t1
	}
}

// freePorts prints n loopback ports that were free a moment ago.
func freePorts(n int) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range max(n, 1) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// worker performs operations; one per goroutine (the HTTP client is shared
// and safe for concurrent use).
type worker interface {
	// op performs one operation and reports its own RCPT latency (0 if
	// none) and the bytes it moved.
	op(ctx context.Context, st *stats) error
	close()
}

// --- statistics -----------------------------------------------------------

// hist is a log-linear latency histogram: bucket i holds durations d with
// floor(log(d in ns)/log(1.01)) == i, so percentiles are within 1%.
type hist struct {
	b   []uint64
	n   uint64
	max time.Duration
	sum time.Duration
}

const histGrowth = 1.01

var histLog = math.Log(histGrowth)

func newHist() *hist { return &hist{b: make([]uint64, 2700)} } // 1.01^2700 ns ≈ 4.5e11 s

func (h *hist) add(d time.Duration) {
	if d < 1 {
		d = 1
	}
	i := int(math.Log(float64(d)) / histLog)
	if i >= len(h.b) {
		i = len(h.b) - 1
	}
	h.b[i]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, v := range o.b {
		h.b[i] += v
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket holding quantile q,
// capped at the largest value seen.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, v := range h.b {
		seen += v
		if seen >= rank {
			return min(time.Duration(math.Pow(histGrowth, float64(i+1))), h.max)
		}
	}
	return h.max
}

// stats is one worker's tally; merged at the end.
type stats struct {
	lat    *hist
	rcpt   *hist
	slow   uint64 // RCPT replies slower than -slow
	t0     time.Time
	bySec  []time.Duration // slowest RCPT reply per second of the run, by when it ended
	slowBy []uint64        // RCPT replies slower than -slow per second of the run
	errs   map[string]uint64
	nerr   uint64
	bytes  int64
	record bool // false during warm-up
}

func newStats() *stats { return &stats{lat: newHist(), rcpt: newHist(), errs: map[string]uint64{}} }

// slowLog is -slow-log's file; nil f: none.
var slowLog struct {
	mu     sync.Mutex
	f      *os.File
	failed bool // a write failed (reported once)
}

func (s *stats) addRcpt(d time.Duration, slow time.Duration) {
	if !s.record {
		return
	}
	s.rcpt.add(d)
	if d > slow {
		s.slow++
		if slowLog.f != nil {
			start := time.Now().Add(-d)
			slowLog.mu.Lock()
			if _, err := fmt.Fprintf(slowLog.f, "%d %d\n", start.UnixNano(), int64(d)); err != nil && !slowLog.failed {
				// The run goes on; the file is then incomplete, and says so.
				slowLog.failed = true
				fmt.Fprintln(os.Stderr, "loadgen: -slow-log:", err)
			}
			slowLog.mu.Unlock()
		}
	}
	if sec := int(time.Since(s.t0) / time.Second); sec >= 0 && sec < maxTimeline {
		for len(s.bySec) <= sec {
			s.bySec = append(s.bySec, 0)
			s.slowBy = append(s.slowBy, 0)
		}
		s.bySec[sec] = max(s.bySec[sec], d)
		if d > slow {
			s.slowBy[sec]++
		}
	}
}

// maxTimeline bounds the per-second RCPT timeline.
const maxTimeline = 3600

func (s *stats) merge(o *stats) {
	s.lat.merge(o.lat)
	s.rcpt.merge(o.rcpt)
	s.slow += o.slow
	s.nerr += o.nerr
	s.bytes += o.bytes
	for i, v := range o.bySec {
		for len(s.bySec) <= i {
			s.bySec = append(s.bySec, 0)
			s.slowBy = append(s.slowBy, 0)
		}
		s.bySec[i] = max(s.bySec[i], v)
		s.slowBy[i] += o.slowBy[i]
	}
	for k, v := range o.errs {
		s.errs[k] += v
	}
}

// --- the driver -----------------------------------------------------------

type result struct {
	stats   *stats
	start   time.Time // of the measurement
	elapsed time.Duration
	stopped string // why the run ended
	cpu     map[string]time.Duration
}

func drive(cfg *config, newWorker func(int) (worker, error)) *result {
	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	deadline := measureFrom.Add(cfg.d)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	var stopReason atomic.Value
	stopReason.Store("duration")
	if cfg.stopFile != "" && cfg.stopPattern != "" {
		go watchFile(ctx, cfg.stopFile, cfg.stopPattern, func() {
			stopReason.Store("stop-pattern")
			cancel()
		})
	}

	// In-flight operations are not cut short when the run ends: they get
	// their own context, bounded by -timeout past the deadline.
	opCtx, opCancel := context.WithDeadline(context.Background(), deadline.Add(cfg.timeout))
	defer opCancel()

	// CPU snapshots at the start and the end of the measurement.
	var cpu0 cpuSnap
	var cpuMu sync.Mutex
	snap0 := time.AfterFunc(cfg.warmup, func() {
		cpuMu.Lock()
		cpu0 = takeSnap(cfg.watch)
		cpuMu.Unlock()
	})

	var tickets atomic.Int64
	var measuring atomic.Bool
	all := make([]*stats, cfg.c)
	var wg sync.WaitGroup
	for i := range cfg.c {
		st := newStats()
		st.t0 = measureFrom
		all[i] = st
		wg.Go(func() {
			w, err := newWorker(i)
			if err != nil {
				st.nerr++
				st.errs[err.Error()]++
				return
			}
			defer w.close()
			// With -rate, the worker starts an operation every `every`,
			// the workers spread over one interval; one that falls behind
			// does not burst to catch up.
			var every time.Duration
			if cfg.rate > 0 {
				every = time.Duration(float64(cfg.c) / cfg.rate * float64(time.Second))
			}
			next := time.Now().Add(every * time.Duration(i) / time.Duration(cfg.c))
			for ctx.Err() == nil {
				if every > 0 {
					if d := time.Until(next); d > 0 {
						t := time.NewTimer(d)
						select {
						case <-ctx.Done():
						case <-t.C:
						}
						t.Stop()
						continue
					}
					next = next.Add(every)
					if now := time.Now(); now.Sub(next) > every {
						next = now
					}
				}
				if !measuring.Load() {
					if time.Now().After(measureFrom) {
						measuring.Store(true)
					}
				}
				st.record = measuring.Load()
				if st.record && cfg.n > 0 && tickets.Add(1) > cfg.n {
					stopReason.Store("count")
					return
				}
				t0 := time.Now()
				err := w.op(opCtx, st)
				d := time.Since(t0)
				if !st.record {
					continue
				}
				if err != nil {
					st.nerr++
					if len(st.errs) < 20 {
						st.errs[errText(err)]++
					}
					// An error usually costs the connection; do not spin.
					time.Sleep(time.Millisecond)
					continue
				}
				st.lat.add(d)
			}
		})
	}
	wg.Wait()
	end := time.Now()
	if snap0.Stop() { // the run ended before the warm-up did
		cpu0 = takeSnap(cfg.watch)
	}
	cpuMu.Lock()
	cpuUsed := takeSnap(cfg.watch).since(cpu0)
	cpuMu.Unlock()
	total := newStats()
	for _, st := range all {
		total.merge(st)
	}
	from := measureFrom
	if end.Before(from) {
		from = end
	}
	return &result{stats: total, start: measureFrom, elapsed: end.Sub(from), stopped: stopReason.Load().(string), cpu: cpuUsed}
}

func errText(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func watchFile(ctx context.Context, path, pattern string, fire func()) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(pattern)) {
				fire()
				return
			}
		}
	}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func (r *result) print(cfg *config) {
	st := r.stats
	secs := r.elapsed.Seconds()
	tput := 0.0
	if secs > 0 {
		tput = float64(st.lat.n) / secs
	}
	type kv struct {
		K string
		V uint64
	}
	var samples []kv
	for k, v := range st.errs {
		samples = append(samples, kv{k, v})
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].V > samples[j].V })
	errSamples := map[string]uint64{}
	for i, s := range samples {
		if i == 5 {
			break
		}
		errSamples[s.K] = s.V
	}
	out := map[string]any{
		"label":      cfg.label,
		"mode":       cfg.mode,
		"addr":       cfg.addr,
		"c":          cfg.c,
		"count":      st.lat.n,
		"errors":     st.nerr,
		"seconds":    math.Round(secs*1000) / 1000,
		"throughput": math.Round(tput*10) / 10,
		"p50_ms":     ms(st.lat.quantile(0.50)),
		"p90_ms":     ms(st.lat.quantile(0.90)),
		"p99_ms":     ms(st.lat.quantile(0.99)),
		"p999_ms":    ms(st.lat.quantile(0.999)),
		"max_ms":     ms(st.lat.max),
		"bytes":      st.bytes,
		"stopped":    r.stopped,
	}
	if cfg.mode == "smtp-relay" {
		out["size"] = cfg.size
		out["msgs_per_conn"] = cfg.msgsPerConn
	}
	if strings.HasPrefix(cfg.mode, "smtp") {
		out["rcpt_count"] = st.rcpt.n
		out["rcpt_p50_ms"] = ms(st.rcpt.quantile(0.50))
		out["rcpt_p99_ms"] = ms(st.rcpt.quantile(0.99))
		out["rcpt_max_ms"] = ms(st.rcpt.max)
		out["rcpt_slow"] = st.slow
		out["slow_ms"] = ms(cfg.slow)
		// The slowest RCPT reply in each second of the run, so that a
		// stall can be placed in time (start_unix is second 0).
		tl := make([]float64, len(st.bySec))
		for i, d := range st.bySec {
			tl[i] = ms(d)
		}
		out["rcpt_max_by_sec"] = tl
		out["rcpt_slow_by_sec"] = st.slowBy
		out["start_unix"] = float64(r.start.UnixNano()) / 1e9
	}
	if len(errSamples) > 0 {
		out["error_samples"] = errSamples
	}
	if r.cpu != nil {
		// CPU time in ms per process over the measured window, and per
		// successful operation in µs: unlike throughput, this hardly
		// depends on what else the machine runs meanwhile. "others" is
		// every CPU second of the machine not accounted for by the
		// watched processes and this client: neighbours' noise.
		cpu := map[string]float64{}
		for k, v := range r.cpu {
			cpu[k+"_ms"] = ms(v)
			if st.lat.n > 0 && k != "machine" && k != "others" {
				cpu[k+"_us_per_op"] = math.Round(float64(v)/float64(time.Microsecond)/float64(st.lat.n)*10) / 10
			}
		}
		if secs > 0 {
			cpu["others_cores"] = math.Round(float64(r.cpu["others"])/float64(time.Second)/secs*100) / 100
		}
		out["cpu"] = cpu
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(la)); len(f) > 0 {
			out["loadavg1"], _ = strconv.ParseFloat(f[0], 64)
		}
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))

	name := cfg.mode
	if cfg.label != "" {
		name = cfg.label + " (" + cfg.mode + ")"
	}
	fmt.Fprintf(os.Stderr, "%s against %s, %d workers: %d ok, %d errors in %.2fs = %.1f/s; latency p50 %.3fms p99 %.3fms max %.3fms",
		name, cfg.addr, cfg.c, st.lat.n, st.nerr, secs, tput,
		ms(st.lat.quantile(0.5)), ms(st.lat.quantile(0.99)), ms(st.lat.max))
	if strings.HasPrefix(cfg.mode, "smtp") && st.rcpt.n > 0 {
		fmt.Fprintf(os.Stderr, "; RCPT p99 %.3fms max %.3fms, %d over %v",
			ms(st.rcpt.quantile(0.99)), ms(st.rcpt.max), st.slow, cfg.slow)
	}
	fmt.Fprintln(os.Stderr)
	if r.cpu != nil {
		fmt.Fprintf(os.Stderr, "  CPU:")
		for _, w := range cfg.watch {
			fmt.Fprintf(os.Stderr, " %s %.0fms", w.name, ms(r.cpu[w.name]))
			if st.lat.n > 0 {
				fmt.Fprintf(os.Stderr, " (%.1fµs/op)", float64(r.cpu[w.name])/1e3/float64(st.lat.n))
			}
		}
		fmt.Fprintf(os.Stderr, ", client %.0fms, machine %.0fms, others %.0fms\n",
			ms(r.cpu["client"]), ms(r.cpu["machine"]), ms(r.cpu["others"]))
	}
	for _, s := range samples {
		fmt.Fprintf(os.Stderr, "  error x%d: %s\n", s.V, s.K)
	}
}

// --- SMTP -----------------------------------------------------------------

// smtpConn is a minimal SMTP client: one command, one reply, or with
// -pipeline one group of commands, then their replies.
type smtpConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialSMTP(ctx context.Context, cfg *config, st *stats) (*smtpConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", pickAddr(cfg.addr))
	if err != nil {
		return nil, err
	}
	sc := &smtpConn{c: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 32*1024)}
	c.SetDeadline(time.Now().Add(cfg.timeout))
	if err := sc.expect(220, "greeting"); err != nil {
		c.Close()
		return nil, err
	}
	if err := sc.cmd(250, "EHLO", "EHLO "+cfg.ehlo); err != nil {
		c.Close()
		return nil, err
	}
	return sc, nil
}

// reply reads one (possibly multi-line) reply and returns its code and
// last line.
func (sc *smtpConn) reply() (int, string, error) {
	for {
		line, err := sc.r.ReadString('\n')
		if err != nil {
			return 0, line, err
		}
		if len(line) < 4 {
			return 0, line, fmt.Errorf("short reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, line, fmt.Errorf("bad reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		return code, strings.TrimRight(line, "\r\n"), nil
	}
}

func (sc *smtpConn) expect(code int, what string) error {
	got, line, err := sc.reply()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got != code {
		return fmt.Errorf("%s: want %d, got %q", what, code, truncate(line))
	}
	return nil
}

func truncate(s string) string {
	// Keep error texts short and free of per-message details so that they
	// group in the summary.
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func (sc *smtpConn) cmd(code int, what, line string) error {
	sc.w.WriteString(line)
	sc.w.WriteString("\r\n")
	if err := sc.w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return sc.expect(code, what)
}

func (sc *smtpConn) timedCmd(code int, what, line string, cfg *config, st *stats) error {
	t0 := time.Now()
	err := sc.cmd(code, what, line)
	if err == nil {
		st.addRcpt(time.Since(t0), cfg.slow)
	}
	return err
}

func (sc *smtpConn) quit() {
	sc.c.SetDeadline(time.Now().Add(2 * time.Second))
	sc.cmd(221, "QUIT", "QUIT")
	sc.c.Close()
}

type refuser struct {
	cfg *config
	rng *rand.Rand
}

func newRefuser(cfg *config, id int) *refuser {
	return &refuser{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id)))}
}

const idChars = "0123456789abcdefghijklmnopqrstuvwxyz"

func (r *refuser) unknown() string {
	b := make([]byte, r.cfg.idLen)
	for i := range b {
		b[i] = idChars[r.rng.IntN(len(idChars))]
	}
	return string(b) + "@" + r.cfg.rcptDomain
}

// group writes lines as one pipelined group (rfc 2920).
func (sc *smtpConn) group(lines ...string) error {
	for _, l := range lines {
		sc.w.WriteString(l)
		sc.w.WriteString("\r\n")
	}
	if err := sc.w.Flush(); err != nil {
		return fmt.Errorf("pipelined group: %w", err)
	}
	return nil
}

func (r *refuser) op(ctx context.Context, st *stats) error {
	sc, err := dialSMTP(ctx, r.cfg, st)
	if err != nil {
		return err
	}
	defer sc.c.Close()
	if r.cfg.pipeline {
		t0 := time.Now()
		if err := sc.group("MAIL FROM:<"+r.cfg.from+">", "RCPT TO:<"+r.unknown()+">", "QUIT"); err != nil {
			return err
		}
		if err := sc.expect(250, "MAIL"); err != nil {
			return err
		}
		if err := sc.expect(550, "RCPT"); err != nil {
			return err
		}
		st.addRcpt(time.Since(t0), r.cfg.slow)
		return sc.expect(221, "QUIT")
	}
	if err := sc.cmd(250, "MAIL", "MAIL FROM:<"+r.cfg.from+">"); err != nil {
		return err
	}
	if err := sc.timedCmd(550, "RCPT", "RCPT TO:<"+r.unknown()+">", r.cfg, st); err != nil {
		return err
	}
	if err := sc.cmd(221, "QUIT", "QUIT"); err != nil {
		return err
	}
	return nil
}

func (r *refuser) close() {}

func recipients(cfg *config) ([]string, error) {
	if cfg.rcpt != "" {
		return []string{cfg.rcpt}, nil
	}
	if cfg.rcptFile == "" {
		return nil, errors.New("smtp-relay needs -rcpt or -rcpt-file")
	}
	b, err := os.ReadFile(cfg.rcptFile)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= cfg.rcptCol && cfg.rcptCol >= 1 && !strings.HasPrefix(f[0], "#") {
			out = append(out, f[cfg.rcptCol-1])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no recipients in column %d", cfg.rcptFile, cfg.rcptCol)
	}
	return out, nil
}

// message is a test message of an exact size: a few headers and 78-byte
// lines (76 characters and CRLF), none starting with a dot. Messages up to
// 1 MiB are kept whole; larger ones are streamed from one 64 KiB chunk.
type message struct {
	head  []byte // headers, blank line and, when small, the whole body
	chunk []byte // repeated for large messages
	n     int    // how many chunks follow head
	tail  []byte // the rest, then the final dot
	size  int
}

func newMessage(from string, size int) *message {
	var h bytes.Buffer
	fmt.Fprintf(&h, "From: <%s>\r\nTo: <bench@bench.test>\r\nSubject: tempalias benchmark\r\n"+
		"Date: %s\r\nMessage-ID: <bench.%d@client.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
		from, time.Now().UTC().Format(time.RFC1123Z), time.Now().UnixNano())
	line := []byte(strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd", 1)[:76] + "\r\n")
	rest := max(size-h.Len(), 0)
	m := &message{size: size}
	const chunkLines = 840 // 65,520 bytes
	if rest > 1<<20 {
		m.chunk = bytes.Repeat(line, chunkLines)
		m.n = rest / len(m.chunk)
		rest -= m.n * len(m.chunk)
	}
	var tail bytes.Buffer
	for rest >= len(line) {
		tail.Write(line)
		rest -= len(line)
	}
	switch {
	case rest >= 3:
		tail.Write(line[:rest-2])
		tail.WriteString("\r\n")
	case rest > 0:
		tail.WriteString("x\r\n") // one or two bytes over
	}
	tail.WriteString(".\r\n")
	if m.chunk == nil {
		h.Write(tail.Bytes())
		m.head = h.Bytes()
	} else {
		m.head = h.Bytes()
		m.tail = tail.Bytes()
	}
	return m
}

func (m *message) writeTo(w *bufio.Writer) (int64, error) {
	var n int64
	k, err := w.Write(m.head)
	n += int64(k)
	if err != nil {
		return n, err
	}
	for range m.n {
		k, err = w.Write(m.chunk)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	k, err = w.Write(m.tail)
	n += int64(k)
	if err != nil {
		return n, err
	}
	return n, w.Flush()
}

type relayer struct {
	cfg   *config
	rcpts []string
	next  int
	msg   *message
	sc    *smtpConn
	sent  int // messages on this connection
}

func newRelayer(cfg *config, id int, rcpts []string, msg *message) *relayer {
	// Workers start at different places in the list so that they rarely
	// name the same alias at the same moment.
	return &relayer{cfg: cfg, rcpts: rcpts, next: id * 7919 % len(rcpts), msg: msg}
}

func (r *relayer) drop() {
	if r.sc != nil {
		r.sc.c.Close()
		r.sc = nil
	}
}

func (r *relayer) op(ctx context.Context, st *stats) error {
	err := r.send(ctx, st)
	if err != nil {
		r.drop()
	}
	return err
}

func (r *relayer) send(ctx context.Context, st *stats) error {
	if r.sc == nil {
		sc, err := dialSMTP(ctx, r.cfg, st)
		if err != nil {
			return err
		}
		r.sc, r.sent = sc, 0
	}
	sc := r.sc
	sc.c.SetDeadline(time.Now().Add(r.cfg.timeout))
	rcpt := r.rcpts[r.next]
	r.next = (r.next + 1) % len(r.rcpts)
	mail := fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", r.cfg.from, r.msg.size)
	if r.cfg.pipeline {
		t0 := time.Now()
		if err := sc.group(mail, "RCPT TO:<"+rcpt+">", "DATA"); err != nil {
			return err
		}
		if err := sc.expect(250, "MAIL"); err != nil {
			return err
		}
		if err := sc.expect(250, "RCPT"); err != nil {
			return err
		}
		st.addRcpt(time.Since(t0), r.cfg.slow)
		if err := sc.expect(354, "DATA"); err != nil {
			return err
		}
	} else {
		if err := sc.cmd(250, "MAIL", mail); err != nil {
			return err
		}
		if err := sc.timedCmd(250, "RCPT", "RCPT TO:<"+rcpt+">", r.cfg, st); err != nil {
			return err
		}
		if err := sc.cmd(354, "DATA", "DATA"); err != nil {
			return err
		}
	}
	n, err := r.msg.writeTo(sc.w)
	if st.record {
		st.bytes += n
	}
	if err != nil {
		return fmt.Errorf("DATA body: %w", err)
	}
	if err := sc.expect(250, "end of DATA"); err != nil {
		return err
	}
	r.sent++
	if r.cfg.msgsPerConn > 0 && r.sent >= r.cfg.msgsPerConn {
		err := sc.cmd(221, "QUIT", "QUIT")
		r.drop()
		return err
	}
	if r.cfg.rset {
		return sc.cmd(250, "RSET", "RSET")
	}
	return nil
}

func (r *relayer) close() {
	if r.sc != nil {
		r.sc.quit()
		r.sc = nil
	}
}

// --- HTTP -----------------------------------------------------------------

// addrTurn spreads connections over the servers of a comma-separated
// -addr.
var addrTurn atomic.Uint64

// pickAddr is the next of the comma-separated addresses in list.
func pickAddr(list string) string {
	if !strings.Contains(list, ",") {
		return list
	}
	all := strings.Split(list, ",")
	return all[(addrTurn.Add(1)-1)%uint64(len(all))]
}

type httpClient struct {
	cfg  *config
	base string // one of them, or a comma-separated list
	c    *http.Client
	body []byte
	next atomic.Uint64
	mu   sync.Mutex
	out  *bufio.Writer
	outf *os.File
}

func newHTTPClient(cfg *config) (*httpClient, error) {
	var bases []string
	for b := range strings.SplitSeq(cfg.addr, ",") {
		if !strings.Contains(b, "://") {
			b = "http://" + b
		}
		bases = append(bases, strings.TrimRight(b, "/"))
	}
	base := strings.Join(bases, ",")
	tr := &http.Transport{
		MaxIdleConns:        cfg.c,
		MaxIdleConnsPerHost: cfg.c,
		MaxConnsPerHost:     cfg.c, // per server: each of several gets as many
		DisableCompression:  true,  // we send Accept-Encoding ourselves and count raw bytes
		IdleConnTimeout:     time.Minute,
	}
	h := &httpClient{cfg: cfg, base: base, c: &http.Client{Transport: tr, Timeout: cfg.timeout}}
	req := map[string]any{"target": cfg.target, "days": cfg.days}
	if cfg.maxUsage > 0 {
		req["max-usage"] = cfg.maxUsage
	}
	h.body, _ = json.Marshal(req)
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err != nil {
			return nil, err
		}
		h.outf, h.out = f, bufio.NewWriter(f)
	}
	return h, nil
}

func (h *httpClient) op(ctx context.Context, st *stats) error {
	if h.cfg.mode == "http-create" {
		return h.create(ctx, st)
	}
	return h.get(ctx, st)
}

func (h *httpClient) create(ctx context.Context, st *stats) error {
	req, err := http.NewRequestWithContext(ctx, "POST", pickAddr(h.base)+"/aliases", bytes.NewReader(h.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if st.record {
		st.bytes += int64(len(b))
	}
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /aliases: status %d: %s", resp.StatusCode, truncate(string(b)))
	}
	if h.out != nil {
		var got struct {
			Alias  string `json:"alias"`
			Target string `json:"target"`
		}
		if err := json.Unmarshal(b, &got); err != nil || got.Alias == "" {
			return fmt.Errorf("POST /aliases: no alias in %q", truncate(string(b)))
		}
		h.mu.Lock()
		fmt.Fprintf(h.out, "%s %s\n", got.Alias, got.Target)
		h.mu.Unlock()
	}
	return nil
}

func (h *httpClient) get(ctx context.Context, st *stats) error {
	p := h.cfg.paths[h.next.Add(1)%uint64(len(h.cfg.paths))]
	req, err := http.NewRequestWithContext(ctx, "GET", pickAddr(h.base)+p, nil)
	if err != nil {
		return err
	}
	if h.cfg.gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if st.record {
		st.bytes += n
	}
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", p, resp.StatusCode)
	}
	return nil
}

// shared is the one HTTP client as seen by each worker: closing a worker
// must not close the client (run does that once at the end).
type shared struct{ *httpClient }

func (shared) close() {}

func (h *httpClient) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.out != nil {
		h.out.Flush()
		h.outf.Close()
		h.out = nil
	}
}

// --- CPU accounting ---------------------------------------------------------

// watched is a process whose CPU time a run reports.
type watched struct {
	name     string
	pid      int
	children bool // add its children's time, live and reaped (Postfix's master)
}

func parseWatch(spec string) ([]watched, error) {
	var out []watched
	if spec == "" {
		return nil, nil
	}
	for item := range strings.SplitSeq(spec, ",") {
		name, pid, ok := strings.Cut(item, "=")
		w := watched{name: name}
		w.children = strings.HasSuffix(pid, "+")
		n, err := strconv.Atoi(strings.TrimSuffix(pid, "+"))
		if !ok || err != nil || n <= 0 || name == "" || name == "client" || name == "machine" || name == "others" {
			return nil, fmt.Errorf("bad -watch item %q (want name=PID or name=PID+)", item)
		}
		w.pid = n
		out = append(out, w)
	}
	return out, nil
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 10 * time.Millisecond

// statFields returns the fields of /proc/PID/stat after the command name:
// [0] is the state, [1] the parent pid, [11] utime, [12] stime, [13]
// cutime, [14] cstime.
func statFields(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func ticks(f []string, idx ...int) time.Duration {
	var t time.Duration
	for _, i := range idx {
		if i < len(f) {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			t += time.Duration(n) * clockTick
		}
	}
	return t
}

// cpu is the CPU time the process has used so far; with children, also
// what its reaped children used (cutime, cstime) and what its live
// children used, so that a difference of two readings is exact even when
// children come and go in between.
func (w watched) cpu() time.Duration {
	f := statFields(fmt.Sprintf("/proc/%d/stat", w.pid))
	if f == nil {
		return 0
	}
	if !w.children {
		return ticks(f, 11, 12)
	}
	t := ticks(f, 11, 12, 13, 14)
	dirs, _ := os.ReadDir("/proc")
	ppid := strconv.Itoa(w.pid)
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		if cf := statFields("/proc/" + d.Name() + "/stat"); len(cf) > 12 && cf[1] == ppid {
			t += ticks(cf, 11, 12)
		}
	}
	return t
}

// machineBusy is the CPU time all CPUs spent neither idle nor waiting.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy time.Duration
	for i := 1; i < len(f) && i <= 8; i++ {
		if i == 4 || i == 5 {
			continue
		}
		n, _ := strconv.ParseInt(f[i], 10, 64)
		busy += time.Duration(n) * clockTick
	}
	return busy
}

type cpuSnap map[string]time.Duration

func takeSnap(ws []watched) cpuSnap {
	if ws == nil {
		return nil
	}
	s := cpuSnap{}
	for _, w := range ws {
		s[w.name] = w.cpu()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s["client"] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s["machine"] = machineBusy()
	return s
}

func (s cpuSnap) since(s0 cpuSnap) map[string]time.Duration {
	if s == nil {
		return nil
	}
	out := map[string]time.Duration{}
	var ours time.Duration
	for k, v := range s {
		out[k] = max(v-s0[k], 0)
		if k != "machine" {
			ours += out[k]
		}
	}
	out["others"] = max(out["machine"]-ours, 0)
	return out
}
