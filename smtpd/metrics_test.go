package smtpd

import (
	"context"
	"maps"
	"strconv"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tempalias/tempalias/metrics"
)

// prometheus/testutil would do, but it pulls in a module go.sum does not
// have; reading a collector is two lines anyway.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// metricsSnapshot is every smtpd metric the tests look at.
type metricsSnapshot struct {
	rcpt     map[string]float64
	messages map[string]float64
	bytes    float64
	dial     uint64
	data     uint64
}

func snapshot(t *testing.T, m *metrics.Metrics) metricsSnapshot {
	t.Helper()
	s := metricsSnapshot{rcpt: map[string]float64{}, messages: map[string]float64{}}
	for _, r := range []string{"accepted", "unknown", "busy", "foreign", "invalid", "upstream", "error"} {
		s.rcpt[r] = counterValue(t, m.Rcpt.WithLabelValues(r))
	}
	for _, r := range []string{"relayed", "temporary", "permanent"} {
		s.messages[r] = counterValue(t, m.Messages.WithLabelValues(r))
	}
	s.bytes = counterValue(t, m.RelayedBytes)
	s.dial = histogramCount(t, m.SmarthostSeconds.WithLabelValues("dial"))
	s.data = histogramCount(t, m.SmarthostSeconds.WithLabelValues("data"))
	return s
}

func (a metricsSnapshot) delta(b metricsSnapshot) metricsSnapshot {
	d := metricsSnapshot{rcpt: map[string]float64{}, messages: map[string]float64{}}
	for k, v := range b.rcpt {
		if v != a.rcpt[k] {
			d.rcpt[k] = v - a.rcpt[k]
		}
	}
	for k, v := range b.messages {
		if v != a.messages[k] {
			d.messages[k] = v - a.messages[k]
		}
	}
	d.bytes = b.bytes - a.bytes
	d.dial = b.dial - a.dial
	d.data = b.data - a.data
	return d
}

// Every RCPT result and every message outcome moves its counter by one,
// and only its own.
func TestMetrics(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBadRecipients = 100 })
	_, live := e.newAlias("t@example.com", 3, 0)
	busyID, busy := e.newAlias("t@example.com", 3, 1)
	busyRes, err := e.st.Store.Reserve(context.Background(), busyID, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busyRes.Refund(context.Background(), e.clock.Now()) })

	rcpts := []struct {
		rcpt   string
		code   int
		result string
	}{
		{live, 250, "accepted"},
		{"zzzzzzzzzz@" + testDomain, 550, "unknown"},
		{busy, 450, "busy"},
		{"someone@example.com", 550, "foreign"},
		{"a%b@" + testDomain, 553, "invalid"},
	}
	for _, tc := range rcpts {
		before := snapshot(t, e.srv.cfg.Metrics)
		c := e.dial()
		c.must(250, "EHLO client.example")
		c.must(250, "MAIL FROM:<s@example.org>")
		c.must(tc.code, "RCPT TO:<%s>", tc.rcpt)
		c.must(221, "QUIT")
		e.settled()
		if d := before.delta(snapshot(t, e.srv.cfg.Metrics)); !maps.Equal(d.rcpt, map[string]float64{tc.result: 1}) || len(d.messages) != 0 {
			t.Errorf("RCPT %s: rcpt %v messages %v, want %s +1 only", tc.rcpt, d.rcpt, d.messages, tc.result)
		}
	}

	t.Run("relayed", func(t *testing.T) {
		before := snapshot(t, e.srv.cfg.Metrics)
		if err := sendMail(e.addr, "s@example.org", []string{live}, "Subject: m\r\n\r\nbody\r\n"); err != nil {
			t.Fatal(err)
		}
		e.settled()
		d := before.delta(snapshot(t, e.srv.cfg.Metrics))
		msgs := e.up.messages()
		if !maps.Equal(d.messages, map[string]float64{"relayed": 1}) || !maps.Equal(d.rcpt, map[string]float64{"accepted": 1}) {
			t.Errorf("messages %v rcpt %v", d.messages, d.rcpt)
		}
		if want := float64(msgs[len(msgs)-1].size); d.bytes != want {
			t.Errorf("relayed bytes +%v, smarthost got %v", d.bytes, want)
		}
		if d.dial != 1 || d.data != 1 {
			t.Errorf("smarthost latency: %d dial, %d data observations, want 1, 1", d.dial, d.data)
		}
	})

	for _, tc := range []struct {
		stage  string
		err    *smtp.SMTPError
		rcpt   map[string]float64
		result map[string]float64
		data   uint64
	}{
		{"END", smtpErr(451, smtp.EnhancedCode{4, 3, 0}), map[string]float64{"accepted": 1}, map[string]float64{"temporary": 1}, 1},
		{"END", smtpErr(554, smtp.EnhancedCode{5, 7, 1}), map[string]float64{"accepted": 1}, map[string]float64{"permanent": 1}, 1},
		{"RCPT", smtpErr(550, smtp.EnhancedCode{5, 1, 1}), map[string]float64{"upstream": 1}, nil, 0},
	} {
		t.Run(tc.stage+" "+strconv.Itoa(tc.err.Code), func(t *testing.T) {
			e.up.fail(tc.stage, tc.err)
			t.Cleanup(func() { e.up.fail(tc.stage, nil) })
			before := snapshot(t, e.srv.cfg.Metrics)
			err := sendMail(e.addr, "s@example.org", []string{live}, "Subject: m\r\n\r\nbody\r\n")
			if replyCode(err) != tc.err.Code {
				t.Fatalf("got %v, want %d", err, tc.err.Code)
			}
			e.settled()
			d := before.delta(snapshot(t, e.srv.cfg.Metrics))
			if !maps.Equal(d.rcpt, tc.rcpt) || !maps.Equal(d.messages, tc.result) || d.bytes != 0 || d.data != tc.data {
				t.Errorf("rcpt %v messages %v bytes %v data %d; want %v %v 0 %d", d.rcpt, d.messages, d.bytes, d.data, tc.rcpt, tc.result, tc.data)
			}
		})
	}
}
