// Package metrics holds tempalias's Prometheus collectors. main makes one
// Metrics and hands it to each front end through its configuration; its
// registry is served only on the [metrics] listener, never on the public
// HTTP port. A front end given none makes its own, which nothing serves,
// so that tests and embedders count into a registry of their own.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is every tempalias collector, on a registry with the Go and
// process ones.
type Metrics struct {
	registry *prometheus.Registry

	// AliasesCreated counts aliases created, through the API or the CLI.
	AliasesCreated prometheus.Counter
	// Rcpt counts RCPT TO commands by result: accepted, unknown (one
	// reason for unknown, expired, used up and revoked), busy (all
	// remaining uses reserved), foreign (not our domain), invalid (bad
	// syntax), upstream (smarthost refused or unreachable), error.
	Rcpt *prometheus.CounterVec
	// Messages counts message transactions by class of the final reply:
	// relayed (2xx), temporary (4xx), permanent (5xx).
	Messages *prometheus.CounterVec
	// RelayedBytes counts message bytes handed to the smarthost and accepted.
	RelayedBytes prometheus.Counter
	// SmarthostSeconds observes smarthost latency by step: dial (connect
	// and greeting to the end of MAIL FROM) and data (end of data to the
	// final reply).
	SmarthostSeconds *prometheus.HistogramVec
	// BuildInfo is 1, with the running binary's version, VCS commit and
	// Go version as labels.
	BuildInfo *prometheus.GaugeVec
	// ConnsRefused counts connections turned away at connect by the
	// connection limits: server smtp or http, reason total (the server's
	// limit) or per-client.
	ConnsRefused *prometheus.CounterVec
	// HTTPRequests counts API and page requests by route and status.
	HTTPRequests *prometheus.CounterVec
}

// New makes the collectors and registers them on a new registry.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		AliasesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempalias_aliases_created_total",
			Help: "Aliases created.",
		}),
		Rcpt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tempalias_smtp_rcpt_total",
			Help: "RCPT TO commands by result.",
		}, []string{"result"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tempalias_smtp_messages_total",
			Help: "Messages by outcome: relayed, temporary (4xx) or permanent (5xx) failure.",
		}, []string{"result"}),
		RelayedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempalias_smtp_relayed_bytes_total",
			Help: "Bytes of messages the smarthost accepted.",
		}),
		SmarthostSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tempalias_smarthost_seconds",
			Help:    "Smarthost latency by step.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"step"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tempalias_build_info",
			Help: "Always 1; the labels say which build of tempalias runs.",
		}, []string{"version", "commit", "goversion"}),
		ConnsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tempalias_connections_refused_total",
			Help: "Connections refused at connect by the connection limits, by server and reason (total or per-client).",
		}, []string{"server", "reason"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tempalias_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
	}
	m.registry.MustRegister(m.AliasesCreated, m.Rcpt, m.Messages, m.RelayedBytes, m.SmarthostSeconds, m.HTTPRequests, m.BuildInfo, m.ConnsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// StoredAliases registers a gauge of aliases in the store (dead ones not
// yet swept included), read from count at each scrape.
func (m *Metrics) StoredAliases(count func() float64) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tempalias_aliases_stored",
		Help: "Aliases in the store, including dead ones not yet swept.",
	}, count))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
