package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
)

// BenchmarkGovernedCallOverhead measures what governance adds to a tool
// call: the same go-sdk Streamable HTTP upstream called, interleaved in
// every iteration,
//
//   - direct: by a go-sdk client session;
//   - mcp: by a go-sdk client through Haldir's /mcp, the full pipeline
//     (API key, session and scope, pin, policies with a rate limit,
//     approval rules, the decision appended before forwarding, the outcome
//     appended after);
//   - rest: through POST /v1/proxy/call, the same pipeline.
//
// It reports nearest-rank p50 and p99 of each in microseconds, and the
// added latency of mcp and rest over direct (target: ≤ 1 ms p50, ≤ 5 ms
// p99). Run with:
//
//	go test -run '^$' -bench GovernedCallOverhead -benchtime 2000x ./api/
func BenchmarkGovernedCallOverhead(b *testing.B) {
	for _, backend := range apptest.Backends {
		b.Run(backend, func(b *testing.B) { benchmarkGovernedCall(b, backend) })
	}
	b.Run("postgres-position", func(b *testing.B) {
		benchmarkGovernedCall(b, "postgres", func(c *app.Config) { c.ReadYourWrites = app.ReadYourWritesPosition })
	})
}

func benchmarkGovernedCall(b *testing.B, backend string, opts ...apptest.Option) {
	s := apptest.Start(b, backend, opts...)
	c := s.NewTenant("bench")
	up := newUpstream(b).srv.URL
	if r := c.Do("POST", "/v1/proxy/upstreams", map[string]any{"name": "files", "url": up}); r.Status != 201 {
		b.Fatalf("register: %s", r)
	}
	if r := c.Do("POST", "/v1/proxy/policies", map[string]any{"type": "rate_limit", "max_per_minute": 1_000_000}); r.Status != 201 {
		b.Fatalf("policy: %s", r)
	}
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bench", "scopes": []string{"tool:files"}}).Str("session_id")
	ctx := context.Background()
	connect := func(url string, h http.Header) *mcp.ClientSession {
		tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: headerTransport{h}}, DisableStandaloneSSE: true}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, tr, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cs.Close() })
		return cs
	}
	direct := connect(up, http.Header{})
	governed := connect(s.URL+"/mcp", http.Header{"Authorization": {"Bearer " + c.Key}, "X-Haldir-Session": {ses}})
	args := map[string]any{"message": "benchmark"}
	restBody := []byte(fmt.Sprintf(`{"tool":"files.echo","session_id":%q,"arguments":{"message":"benchmark"}}`, ses))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	calls := []struct {
		name string
		call func() error
	}{
		{"direct", func() error {
			_, err := direct.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
			return err
		}},
		{"mcp", func() error {
			res, err := governed.CallTool(ctx, &mcp.CallToolParams{Name: "files.echo", Arguments: args})
			if err == nil && res.IsError {
				err = fmt.Errorf("refused: %v", res.Content)
			}
			return err
		}},
		{"rest", func() error {
			req, _ := http.NewRequest("POST", s.URL+"/v1/proxy/call", bytes.NewReader(restBody))
			req.Header.Set("Authorization", "Bearer "+c.Key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%d %s", resp.StatusCode, body)
			}
			return nil
		}},
	}
	for range 50 { // warm connections and caches
		for _, c := range calls {
			if err := c.call(); err != nil {
				b.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, len(calls))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range calls {
			k := (i + j) % len(calls) // rotate the order so none always goes first
			start := time.Now()
			if err := calls[k].call(); err != nil {
				b.Fatal(err)
			}
			lat[k] = append(lat[k], time.Since(start))
		}
	}
	b.StopTimer()
	p50, p99 := make([]time.Duration, len(calls)), make([]time.Duration, len(calls))
	for k := range calls {
		slices.Sort(lat[k])
		p50[k], p99[k] = rank(lat[k], 50), rank(lat[k], 99)
		b.ReportMetric(float64(p50[k].Microseconds()), "p50-"+calls[k].name+"-µs")
		b.ReportMetric(float64(p99[k].Microseconds()), "p99-"+calls[k].name+"-µs")
	}
	for k := 1; k < len(calls); k++ {
		b.ReportMetric(float64((p50[k] - p50[0]).Microseconds()), "p50-added-"+calls[k].name+"-µs")
		b.ReportMetric(float64((p99[k] - p99[0]).Microseconds()), "p99-added-"+calls[k].name+"-µs")
	}
	b.ReportMetric(0, "ns/op")
}

// rank is the nearest-rank percentile p of sorted durations.
func rank(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}
