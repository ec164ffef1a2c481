package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/haldir-dev/haldir/app/apptest"
)

// scrape is one parsed GET /metrics.
type scrape struct {
	raw      string
	families map[string]*dto.MetricFamily
}

func scrapeMetrics(t *testing.T, s *apptest.Server) scrape {
	t.Helper()
	r := s.Anonymous().Do("GET", "/metrics", nil, "Authorization", "Bearer "+apptest.AdminToken).Expect(t, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Raw))
	if err != nil {
		t.Fatalf("expfmt cannot parse /metrics: %v\n%s", err, r.Raw)
	}
	return scrape{raw: string(r.Raw), families: fams}
}

// value returns the counter or gauge value, or the histogram's sample
// count, of the series of name with exactly labels (name=value pairs);
// ok is false when the series is absent.
func (s scrape) value(t *testing.T, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	f := s.families[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if w, ok := want[l.GetName()]; !ok || w != l.GetValue() {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func (s scrape) sum(t *testing.T, name string) float64 {
	t.Helper()
	f := s.families[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("%s is not one histogram series", name)
	}
	return f.GetMetric()[0].GetHistogram().GetSampleSum()
}

// TestMetricsMoveWithTraffic scrapes a real server's /metrics before and
// after known traffic and checks, series by series, that each moved by
// what the traffic did: requests by route template and status, governed
// calls by decision, upstream outcomes, ledger commits, projection lag,
// upstream health and webhook deliveries. It also runs promtool's linter
// on the output and checks that no raw path, session id or key appears.
func TestMetricsMoveWithTraffic(t *testing.T) {
	s := apptest.Start(t, "sqlite", withFastRetry)
	a := s.NewTenant("metrics")
	up := newUpstream(t)
	registerFiles(t, a, up)
	hook := newReceiver(t)
	register(t, a, hook, "session.revoked")
	ses := agentSession(t, a, "bot", 0, "read", "tool:files:echo")

	before := scrapeMetrics(t, s)
	for _, name := range []string{"haldir_http_requests_total", "haldir_http_request_duration_seconds", "haldir_ledger_append_duration_seconds",
		"haldir_ledger_append_batch_events", "haldir_ledger_position", "haldir_projection_lag_events", "haldir_upstreams", "go_goroutines"} {
		if before.families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	get := func(sc scrape, name string, labels ...string) float64 {
		v, _ := sc.value(t, name, labels...)
		return v
	}
	route := []string{"method", "GET", "route", "/v1/sessions/{id}"}

	for range 3 {
		a.Do("GET", "/v1/sessions/"+ses, nil).Expect(t, 200)
	}
	a.Do("GET", "/v1/sessions/ses_aaaaaaaaaaaaaaaaaaaaaaaa", nil).Expect(t, 404)
	proxyCall(a, ses, "files.echo", map[string]any{"message": "one"}, 0).Expect(t, 200)
	proxyCall(a, ses, "files.echo", map[string]any{"message": "two"}, 0).Expect(t, 200)
	proxyCall(a, ses, "files.delete", map[string]any{"path": "/etc"}, 0).Expect(t, 403, "insufficient_scope")
	a.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
	hook.waitFor("the revocation's delivery", func() bool { return hook.types()["session.revoked"] == 1 })

	// Deliveries and projections are asynchronous: poll for them, then
	// take the scrape the exact checks read.
	var after scrape
	settled := eventually(30*time.Second, func() bool {
		after = scrapeMetrics(t, s)
		return get(after, "haldir_webhook_deliveries_total", "outcome", "delivered") >= 1 &&
			get(after, "haldir_projection_lag_events", "group", "core") == 0
	})
	if !settled {
		t.Errorf("no delivered webhook or a core projection lag of %v in the last scrape:\n%s",
			get(after, "haldir_projection_lag_events", "group", "core"), after.raw)
	}

	moved := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"haldir_http_requests_total", append(route[:4:4], "status", "200"), 3},
		{"haldir_http_requests_total", append(route[:4:4], "status", "404"), 1},
		{"haldir_http_request_duration_seconds", route, 4},
		{"haldir_http_requests_total", []string{"method", "POST", "route", "/v1/proxy/call", "status", "200"}, 2},
		{"haldir_http_requests_total", []string{"method", "POST", "route", "/v1/proxy/call", "status", "403"}, 1},
		{"haldir_governed_calls_total", []string{"decision", "allowed", "code", ""}, 2},
		{"haldir_governed_calls_total", []string{"decision", "denied", "code", "insufficient_scope"}, 1},
		{"haldir_upstream_calls_total", []string{"outcome", "ok"}, 2},
	}
	for _, m := range moved {
		got := get(after, m.name, m.labels...) - get(before, m.name, m.labels...)
		if got != m.want {
			t.Errorf("%s%v moved by %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	// Two allowed calls append a decision and an outcome each, the denial
	// one event, the revocation one: at least 6 events in more commits.
	if n := after.sum(t, "haldir_ledger_append_batch_events") - before.sum(t, "haldir_ledger_append_batch_events"); n < 6 {
		t.Errorf("ledger commits wrote %v more events, want at least 6", n)
	}
	commits := get(after, "haldir_ledger_append_batch_events") - get(before, "haldir_ledger_append_batch_events")
	if timed := get(after, "haldir_ledger_append_duration_seconds") - get(before, "haldir_ledger_append_duration_seconds"); commits < 1 || timed != commits {
		t.Errorf("%v more commits counted, %v more timed", commits, timed)
	}
	if head := get(after, "haldir_ledger_position"); head < get(before, "haldir_ledger_position")+6 {
		t.Errorf("haldir_ledger_position %v did not move by the events appended", head)
	}
	if got := get(after, "haldir_upstreams", "state", "connected"); got != 1 {
		t.Errorf("haldir_upstreams{state=connected} = %v, want 1", got)
	}
	if v, ok := after.value(t, "haldir_ledger_up"); !ok || v != 1 {
		t.Errorf("haldir_ledger_up = %v (present %v)", v, ok)
	}

	// Bounded cardinality, nothing that identifies a caller.
	for _, leak := range []string{ses, a.Key, a.Tenant, "ses_aaaaaaaaaaaaaaaaaaaaaaaa"} {
		if strings.Contains(after.raw, leak) {
			t.Errorf("/metrics holds %q", leak)
		}
	}
	if !strings.Contains(after.raw, `route="/v1/sessions/{id}"`) {
		t.Error("positive control: the route template is not in /metrics")
	}

	// The Grafana dashboard queries only series the server exports.
	dash, err := os.ReadFile("../deploy/grafana/haldir.json")
	if err != nil {
		t.Fatal(err)
	}
	var queried int
	for _, name := range regexp.MustCompile(`\b(?:haldir|go|process)_[a-z_]+`).FindAllString(string(dash), -1) {
		queried++
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if after.families[base] == nil && after.families[name] == nil {
			t.Errorf("deploy/grafana/haldir.json queries %s, which /metrics does not export", name)
		}
	}
	if queried < 10 {
		t.Errorf("the dashboard names only %d series", queried)
	}

	// What promtool check metrics runs.
	problems, err := promlint.New(strings.NewReader(after.raw)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if t.Failed() {
		fmt.Println(after.raw)
	}
}
