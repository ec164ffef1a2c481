package api

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// metrics counts requests per route and status with latency sums, for the
// Prometheus endpoint. It holds no tenant data.
type metrics struct {
	mu     sync.Mutex
	counts map[metricKey]*metricValue
}

type metricKey struct {
	route  string
	status int
}

type metricValue struct {
	count   uint64
	seconds float64
	buckets [len(latencyBuckets)]uint64
}

var latencyBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

func newMetrics() *metrics { return &metrics{counts: map[metricKey]*metricValue{}} }

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := metricKey{route, status}
	v := m.counts[k]
	if v == nil {
		v = &metricValue{}
		m.counts[k] = v
	}
	v.count++
	sec := d.Seconds()
	v.seconds += sec
	for i, b := range latencyBuckets {
		if sec <= b {
			v.buckets[i]++
		}
	}
}

// write renders the Prometheus text exposition format.
func (m *metrics) write(w io.Writer, gauges map[string]float64) {
	m.mu.Lock()
	keys := make([]metricKey, 0, len(m.counts))
	for k := range m.counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].route != keys[j].route {
			return keys[i].route < keys[j].route
		}
		return keys[i].status < keys[j].status
	})
	fmt.Fprintln(w, "# HELP haldir_http_requests_total HTTP requests by route and status.")
	fmt.Fprintln(w, "# TYPE haldir_http_requests_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "haldir_http_requests_total{route=%q,status=\"%d\"} %d\n", k.route, k.status, m.counts[k].count)
	}
	fmt.Fprintln(w, "# HELP haldir_http_request_duration_seconds HTTP request latency by route.")
	fmt.Fprintln(w, "# TYPE haldir_http_request_duration_seconds histogram")
	byRoute := map[string]*metricValue{}
	var routes []string
	for _, k := range keys {
		agg := byRoute[k.route]
		if agg == nil {
			agg = &metricValue{}
			byRoute[k.route] = agg
			routes = append(routes, k.route)
		}
		v := m.counts[k]
		agg.count += v.count
		agg.seconds += v.seconds
		for i := range v.buckets {
			agg.buckets[i] += v.buckets[i]
		}
	}
	m.mu.Unlock()
	for _, r := range routes {
		v := byRoute[r]
		for i, b := range latencyBuckets {
			fmt.Fprintf(w, "haldir_http_request_duration_seconds_bucket{route=%q,le=\"%g\"} %d\n", r, b, v.buckets[i])
		}
		fmt.Fprintf(w, "haldir_http_request_duration_seconds_bucket{route=%q,le=\"+Inf\"} %d\n", r, v.count)
		fmt.Fprintf(w, "haldir_http_request_duration_seconds_sum{route=%q} %g\n", r, v.seconds)
		fmt.Fprintf(w, "haldir_http_request_duration_seconds_count{route=%q} %d\n", r, v.count)
	}
	names := make([]string, 0, len(gauges))
	for n := range gauges {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "# TYPE %s gauge\n%s %g\n", n, n, gauges[n])
	}
}
