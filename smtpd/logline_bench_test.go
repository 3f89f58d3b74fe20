package smtpd

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempalias/tempalias/internal/cpuclock"
	"github.com/tempalias/tempalias/internal/logtext"
)

// lineHandlers are the handlers a transaction's line is measured with:
// slog's text handler, the one config builds for log.format text, and
// slog's JSON handler.
var lineHandlers = []struct {
	name string
	new  func(io.Writer) slog.Handler
}{
	{"slog-text", func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) }},
	{"logtext", func(w io.Writer) slog.Handler { return logtext.New(w, nil) }},
	{"slog-json", func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }},
}

// BenchmarkLogTx is a refused transaction's log line alone, written to
// io.Discard: its formatting.
func BenchmarkLogTx(b *testing.B) {
	for _, h := range lineHandlers {
		b.Run(h.name, func(b *testing.B) {
			s := &session{srv: &Server{log: slog.New(h.new(io.Discard))}, remote: net.IPv4(192, 0, 2, 1)}
			tx := &transaction{id: "k3x9q2abcdef", start: time.Now(), code: 550}
			tx.refused = append(tx.refused, refusedRcpt("zzzzzzzz@"+testDomain, errNoSuchUser, 550))
			b.ReportAllocs()
			cpu := cpuclock.Now()
			for b.Loop() {
				s.logTx(tx, "refused")
			}
			cpuclock.Report(b, cpu)
		})
	}
}

// BenchmarkRefuseLogged is BenchmarkRefuse with the transaction's line
// written, as the binary writes it, to a file.
func BenchmarkRefuseLogged(b *testing.B) {
	for _, h := range lineHandlers {
		b.Run(h.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			benchRefusals(b, benchEnvLogging(b, h.new(f)))
		})
	}
}
