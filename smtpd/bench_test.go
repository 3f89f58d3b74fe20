package smtpd

import (
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tempalias/tempalias/internal/cpuclock"
)

// benchSessions is the number of concurrent client sessions, as in the
// comparison with Postfix.
const benchSessions = 50

func benchEnv(b *testing.B) *env { return benchEnvLogging(b, slog.DiscardHandler) }

// benchEnvLogging is benchEnv with its log lines going to h.
func benchEnvLogging(b *testing.B, h slog.Handler) *env {
	e := newEnv(b, func(c *Config) { c.Logger = slog.New(h) })
	e.up.keepBody = false
	b.SetParallelism((benchSessions + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	return e
}

// session runs one SMTP session of lines, each expecting a reply code.
func benchSession(addr string, steps []benchStep) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return err
	}
	for _, s := range steps {
		if err := tp.PrintfLine("%s", s.line); err != nil {
			return err
		}
		if _, _, err := tp.ReadResponse(s.code); err != nil {
			return fmt.Errorf("%.20q: %w", s.line, err)
		}
	}
	return nil
}

type benchStep struct {
	line string
	code int
}

// BenchmarkRefuse is whole sessions whose one recipient is refused at RCPT
// (the common case at a temporary alias service), 50 at a time.
func BenchmarkRefuse(b *testing.B) { benchRefusals(b, benchEnv(b)) }

// benchRefusals runs refused sessions against e, 50 at a time.
func benchRefusals(b *testing.B, e *env) {
	steps := []benchStep{
		{"EHLO client.example", 250},
		{"MAIL FROM:<s@example.org>", 250},
		{"RCPT TO:<zzzzzzzz@" + testDomain + ">", 550},
		{"QUIT", 221},
	}
	cpu := cpuclock.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := benchSession(e.addr, steps); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
	cpuclock.Report(b, cpu)
}

// BenchmarkRelay4K is whole sessions relaying one 4 KiB message through to
// the fake smarthost, 50 at a time: reserve, dial, relay, commit. The
// alias has no max-usage, so only the commit is a durable write; with
// one (…Limited), the reservation at RCPT is one too.
func BenchmarkRelay4K(b *testing.B)        { benchmarkRelay4K(b, 0) }
func BenchmarkRelay4KLimited(b *testing.B) { benchmarkRelay4K(b, 1<<30) }

func benchmarkRelay4K(b *testing.B, maxUsage int) {
	e := benchEnv(b)
	_, addr := e.newAlias("t@example.com", 3, maxUsage)
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
	body = body[:4096-2] + "\r\n"
	steps := []benchStep{
		{"EHLO client.example", 250},
		{"MAIL FROM:<s@example.org>", 250},
		{"RCPT TO:<" + addr + ">", 250},
		{"DATA", 354},
		{body + ".", 250},
		{"QUIT", 221},
	}
	b.SetBytes(4096)
	cpu := cpuclock.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := benchSession(e.addr, steps); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cpuclock.Report(b, cpu)
	b.StopTimer()
	if got := len(e.up.messages()); got < b.N {
		b.Errorf("smarthost got %d messages for %d sessions", got, b.N)
	}
}
