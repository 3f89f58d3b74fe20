package smtpd

import (
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/tempalias/tempalias/metrics"
)

// Every result of RCPT and of a message is a series from the start (its
// counter is looked up once, in New), at 0 until it happens.
func TestResultSeriesFromStart(t *testing.T) {
	m := metrics.New()
	New(Config{Metrics: m, Logger: slog.New(slog.DiscardHandler)}, nil)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`tempalias_smtp_rcpt_total{result="unknown"} 0`,
		`tempalias_smtp_rcpt_total{result="accepted"} 0`,
		`tempalias_smtp_rcpt_total{result="error"} 0`,
		`tempalias_smtp_messages_total{result="relayed"} 0`,
		`tempalias_smtp_messages_total{result="permanent"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("a new server's metrics lack %s", want)
		}
	}
}

// The labels looked up in advance are every label rcptResult and
// messageResult give, so that no RCPT or message looks one up.
func TestResultLabelsResolved(t *testing.T) {
	for _, err := range []error{
		nil, errNoSuchUser, errSenderNotAllowed, errAliasBusy, errAliasRate, errOneTarget,
		errRelayDenied, errBadRcpt, &upstreamError{stage: "RCPT", err: smtpErr(550, [3]int{5, 1, 1})},
		errStoreUnavailable, errors.New("anything else"),
	} {
		if l := rcptResult(err); !slices.Contains(rcptResults, l) {
			t.Errorf("rcptResult(%v) = %q, not in rcptResults %q", err, l, rcptResults)
		}
	}
	for _, code := range []int{250, 251, 421, 451, 550, 554} {
		if l := messageResult(code); !slices.Contains(messageResults, l) {
			t.Errorf("messageResult(%d) = %q, not in messageResults %q", code, l, messageResults)
		}
	}
}
