package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Each Metrics is a registry of its own: what one counts, another does
// not see, and two can live in one process (no globals, no init).
func TestMetricsAreIndependent(t *testing.T) {
	a, b := New(), New()
	a.AliasesCreated.Add(3)
	a.Rcpt.WithLabelValues("accepted").Inc()
	b.StoredAliases(func() float64 { return 7 })
	a.StoredAliases(func() float64 { return 2 })
	outA, outB := scrape(t, a), scrape(t, b)
	for _, want := range []string{"tempalias_aliases_created_total 3", `tempalias_smtp_rcpt_total{result="accepted"} 1`, "tempalias_aliases_stored 2", "go_goroutines", "process_"} {
		if !strings.Contains(outA, want) {
			t.Errorf("first registry lacks %q", want)
		}
	}
	for _, want := range []string{"tempalias_aliases_created_total 0", "tempalias_aliases_stored 7"} {
		if !strings.Contains(outB, want) {
			t.Errorf("second registry lacks %q", want)
		}
	}
	if strings.Contains(outB, "tempalias_smtp_rcpt_total{") {
		t.Error("the second registry shows the first one's RCPT count")
	}
}
