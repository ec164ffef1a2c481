// Package telemetry holds Haldir's Prometheus metrics and its OpenTelemetry
// tracing setup. The packages it observes stay free of both: the ledger,
// the webhook worker and the governed-call pipeline report through small
// hooks they declare, and package app connects those hooks here.
//
// Every label has a bounded set of values: route templates (never raw
// paths), status codes, decisions and error codes, outcomes, projection
// group names. No label carries a tenant, a key, a session or an argument.
package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are one process's Prometheus metrics, on a registry of their own
// (no global state). Create them with NewMetrics; the methods are safe for
// concurrent use.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	governed      *prometheus.CounterVec
	appendSeconds prometheus.Histogram
	appendEvents  prometheus.Histogram
	appendFailed  prometheus.Counter
	webhooks      *prometheus.CounterVec
	upstreamCalls *prometheus.CounterVec
}

// Sources are what the gauges read at each scrape. A nil field leaves its
// gauges out.
type Sources struct {
	// LedgerHead returns the ledger's last position (it may query the
	// store; it is given a 2 s deadline).
	LedgerHead func(ctx context.Context) (int64, error)
	// Groups names the projection groups; GroupPosition returns the
	// position a group has committed.
	Groups        []string
	GroupPosition func(group string) int64
	// Upstreams counts the MCP upstreams this process holds, connected
	// and not.
	Upstreams func() (connected, down int)
	// Started is when the process started serving.
	Started time.Time
}

// NewMetrics returns the metrics, with the Go runtime and process
// collectors and the gauges read from src.
func NewMetrics(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haldir_http_requests_total", Help: "HTTP requests answered, by method, route template and status code.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "haldir_http_request_duration_seconds", Help: "Time to answer an HTTP request, by method and route template.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		governed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haldir_governed_calls_total",
			Help: "Governed tool calls by decision (allowed, denied, error) and, for a denial or an error, its code.",
		}, []string{"decision", "code"}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haldir_ledger_append_duration_seconds", Help: "Time of one ledger group commit, from begin to durable commit.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		appendEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "haldir_ledger_append_batch_events", Help: "Events written by one ledger group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1024, the batch limit
		}),
		appendFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haldir_ledger_append_failures_total", Help: "Ledger group commits that failed (nothing of them was acknowledged).",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haldir_webhook_deliveries_total", Help: "Webhook delivery attempts by outcome (delivered, retrying, failed, gone, abandoned).",
		}, []string{"outcome"}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haldir_upstream_calls_total", Help: "Allowed governed calls forwarded to an upstream, by outcome (ok, tool_error, failed).",
		}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.governed, m.appendSeconds, m.appendEvents, m.appendFailed, m.webhooks, m.upstreamCalls,
		// Not package collectors' constructors: that package imports
		// database/sql (for its DB stats collector), which api, serving
		// these metrics, must not depend on.
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}), &gauges{src})
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: nil, Registry: m.reg})
}

// Registry is the registry the metrics are on, for tests and extra
// collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Request counts one HTTP request; route is the route's template.
func (m *Metrics) Request(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

// GovernedCall counts one governed call: decision is "allowed", "denied"
// or "error", code the refusal's or error's code ("" when allowed), and
// upstream, for an allowed call, the upstream's outcome.
func (m *Metrics) GovernedCall(decision, code, upstream string) {
	m.governed.WithLabelValues(decision, code).Inc()
	if upstream != "" {
		m.upstreamCalls.WithLabelValues(upstream).Inc()
	}
}

// LedgerCommit records one group commit of events events.
func (m *Metrics) LedgerCommit(events int, d time.Duration, failed bool) {
	if failed {
		m.appendFailed.Inc()
		return
	}
	m.appendSeconds.Observe(d.Seconds())
	m.appendEvents.Observe(float64(events))
}

// WebhookDelivery counts one delivery attempt's outcome.
func (m *Metrics) WebhookDelivery(outcome string) {
	m.webhooks.WithLabelValues(outcome).Inc()
}

// gauges reads Sources at each scrape.
type gauges struct{ src Sources }

var (
	ledgerUpDesc  = prometheus.NewDesc("haldir_ledger_up", "1 when the ledger answered this scrape's read of its head, else 0.", nil, nil)
	ledgerPosDesc = prometheus.NewDesc("haldir_ledger_position", "The ledger's last position.", nil, nil)
	projPosDesc   = prometheus.NewDesc("haldir_projection_position", "The ledger position a projection group has committed.", []string{"group"}, nil)
	projLagDesc   = prometheus.NewDesc("haldir_projection_lag_events", "Events in the ledger a projection group has not committed yet.", []string{"group"}, nil)
	upstreamsDesc = prometheus.NewDesc("haldir_upstreams", "MCP upstreams this process holds, by state (connected, down).", []string{"state"}, nil)
	uptimeDesc    = prometheus.NewDesc("haldir_uptime_seconds", "Seconds since the server started.", nil, nil)
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{ledgerUpDesc, ledgerPosDesc, projPosDesc, projLagDesc, upstreamsDesc, uptimeDesc} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	s := g.src
	if !s.Started.IsZero() {
		ch <- prometheus.MustNewConstMetric(uptimeDesc, prometheus.GaugeValue, time.Since(s.Started).Seconds())
	}
	if s.LedgerHead != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		head, err := s.LedgerHead(ctx)
		cancel()
		up := 1.0
		if err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(ledgerUpDesc, prometheus.GaugeValue, up)
		if err == nil {
			ch <- prometheus.MustNewConstMetric(ledgerPosDesc, prometheus.GaugeValue, float64(head))
		}
		if s.GroupPosition != nil {
			for _, group := range s.Groups {
				pos := s.GroupPosition(group)
				ch <- prometheus.MustNewConstMetric(projPosDesc, prometheus.GaugeValue, float64(pos), group)
				if err == nil {
					ch <- prometheus.MustNewConstMetric(projLagDesc, prometheus.GaugeValue, float64(max(head-pos, 0)), group)
				}
			}
		}
	}
	if s.Upstreams != nil {
		connected, down := s.Upstreams()
		ch <- prometheus.MustNewConstMetric(upstreamsDesc, prometheus.GaugeValue, float64(connected), "connected")
		ch <- prometheus.MustNewConstMetric(upstreamsDesc, prometheus.GaugeValue, float64(down), "down")
	}
}
