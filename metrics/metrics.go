// Package metrics holds tempalias's Prometheus collectors. They live on a
// registry of their own, served only on the [metrics] listener, never on
// the public HTTP port.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every tempalias collector plus the Go and process ones.
var Registry = prometheus.NewRegistry()

var (
	// AliasesCreated counts aliases created, through the API or the CLI.
	AliasesCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tempalias_aliases_created_total",
		Help: "Aliases created.",
	})
	// Rcpt counts RCPT TO commands by result: accepted, unknown (one
	// reason for unknown, expired, used up and revoked), busy (all
	// remaining uses reserved), foreign (not our domain), invalid (bad
	// syntax), upstream (smarthost refused or unreachable), error.
	Rcpt = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tempalias_smtp_rcpt_total",
		Help: "RCPT TO commands by result.",
	}, []string{"result"})
	// Messages counts message transactions by class of the final reply:
	// relayed (2xx), temporary (4xx), permanent (5xx).
	Messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tempalias_smtp_messages_total",
		Help: "Messages by outcome: relayed, temporary (4xx) or permanent (5xx) failure.",
	}, []string{"result"})
	// RelayedBytes counts message bytes handed to the smarthost and accepted.
	RelayedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tempalias_smtp_relayed_bytes_total",
		Help: "Bytes of messages the smarthost accepted.",
	})
	// SmarthostSeconds observes smarthost latency by step: dial (connect
	// and greeting to the end of MAIL FROM) and data (end of data to the
	// final reply).
	SmarthostSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tempalias_smarthost_seconds",
		Help:    "Smarthost latency by step.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	}, []string{"step"})
	// BuildInfo is 1, with the running binary's version, VCS commit and
	// Go version as labels.
	BuildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tempalias_build_info",
		Help: "Always 1; the labels say which build of tempalias runs.",
	}, []string{"version", "commit", "goversion"})
	// ConnsRefused counts connections turned away at connect by the
	// connection limits: server smtp or http, reason total (the server's
	// limit) or per-client.
	ConnsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tempalias_connections_refused_total",
		Help: "Connections refused at connect by the connection limits, by server and reason (total or per-client).",
	}, []string{"server", "reason"})
	// HTTPRequests counts API and page requests by route and status.
	HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tempalias_http_requests_total",
		Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
)

func init() {
	Registry.MustRegister(AliasesCreated, Rcpt, Messages, RelayedBytes, SmarthostSeconds, HTTPRequests, BuildInfo, ConnsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// StoredAliases registers a gauge of aliases in the store (dead ones not
// yet swept included), read from count at each scrape.
func StoredAliases(count func() float64) {
	Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tempalias_aliases_stored",
		Help: "Aliases in the store, including dead ones not yet swept.",
	}, count))
}

// Handler serves the registry in the Prometheus text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{})
}
