package smtpd

import "github.com/prometheus/client_golang/prometheus"

// The result labels of metrics.Rcpt (rcptResult) and metrics.Messages
// (messageResult): every one of them is a series from the start, at 0
// until it happens.
var (
	rcptResults    = []string{"accepted", "unknown", "busy", "foreign", "invalid", "upstream", "error"}
	messageResults = []string{"relayed", "temporary", "permanent"}
)

// resultCounters are the counters of a vector by its one label, looked
// up once: WithLabelValues hashes the label, takes the vector's lock and
// allocates on every call, which was once per RCPT and per message.
type resultCounters struct {
	vec    *prometheus.CounterVec
	labels []string
	counts []prometheus.Counter
}

func newResultCounters(vec *prometheus.CounterVec, labels ...string) resultCounters {
	rc := resultCounters{vec: vec, labels: labels}
	for _, l := range labels {
		rc.counts = append(rc.counts, vec.WithLabelValues(l))
	}
	return rc
}

// inc counts one for label; a label not known in advance is looked up.
func (rc *resultCounters) inc(label string) {
	for i, l := range rc.labels {
		if l == label {
			rc.counts[i].Inc()
			return
		}
	}
	rc.vec.WithLabelValues(label).Inc()
}
