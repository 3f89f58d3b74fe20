package httpd

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempalias/tempalias/alias"
	"github.com/tempalias/tempalias/internal/cpuclock"
	"github.com/tempalias/tempalias/store/boltstore"
)

// BenchmarkCreateHTTP is durable alias creation through the real router and
// store over loopback, 50 clients at a time (the client shares the CPU,
// and its CPU is in cpu-µs/op: the process's).
func BenchmarkCreateHTTP(b *testing.B) {
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "b.db"), boltstore.Options{NoTargetIndex: true}) // as the service opens it without aliases_per_target
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	api := New(Config{Domains: []string{"t.test"}, Limits: alias.Limits{DefaultDays: 3, MaxDays: 60, MaxUsage: 100},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	srv := httptest.NewServer(api)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	c := &http.Client{Transport: tr}
	b.SetParallelism(50)
	cpu := cpuclock.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Post(srv.URL+"/aliases", "application/json", strings.NewReader(`{"target":"t@example.com","days":3,"max-usage":5}`))
			if err != nil {
				b.Error(err) // Fatal must not be called from RunParallel's goroutines
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 201 {
				b.Error(res.StatusCode)
				return
			}
		}
	})
	cpuclock.Report(b, cpu)
}
