package proxy

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkCallOverhead measures what the proxy adds to a tool call against
// the same go-sdk Streamable HTTP upstream, interleaving in every iteration:
//
//   - direct: a go-sdk client session calling the upstream;
//   - pool: Pool.Call to the same upstream;
//   - haldir: a go-sdk client calling Haldir's /mcp handler, whose Handle
//     is Pool.Call (the full agent → Haldir → upstream path, without
//     governance).
//
// It reports nearest-rank p50 and p99 of each in microseconds, and the
// differences pool−direct and haldir−direct (the added latency; the target
// is ≤ 1 ms p50 and ≤ 5 ms p99). Run with:
//
//	go test -run '^$' -bench CallOverhead -benchtime 2000x ./proxy/
func BenchmarkCallOverhead(b *testing.B) {
	up := newTestUpstream("Echoes.")
	uts := startHTTP(b, "", up.streamableHandler())
	ctx := context.Background()

	direct := connectGo(b, uts.URL, nil)
	p := newTestPool(b, PoolOptions{})
	if _, err := p.Add(ctx, Upstream{Name: "up", URL: uts.URL}); err != nil {
		b.Fatal(err)
	}
	s := NewServer(ServerOptions{
		Tools: func(context.Context, *Request) ([]ToolDef, error) { return p.Tools(), nil },
		Handle: func(ctx context.Context, c *ToolCall) (*mcp.CallToolResult, error) {
			res, _, err := p.Call(ctx, c.Name, c.Arguments, 10*time.Second)
			return res, err
		},
	})
	hts := startHTTP(b, "", s.HTTPHandler())
	viaHaldir := connectGo(b, hts.URL, nil)

	args := map[string]any{"message": "benchmark"}
	rawArgs := json.RawMessage(`{"message":"benchmark"}`)
	calls := []struct {
		name string
		call func() error
	}{
		{"direct", func() error {
			_, err := direct.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
			return err
		}},
		{"pool", func() error {
			_, _, err := p.Call(ctx, "up.echo", rawArgs, 10*time.Second)
			return err
		}},
		{"haldir", func() error {
			_, err := viaHaldir.CallTool(ctx, &mcp.CallToolParams{Name: "up.echo", Arguments: args})
			return err
		}},
	}
	// Warm up connections and caches outside the measurement.
	for range 50 {
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
			c := calls[(i+j)%len(calls)] // rotate the order so none always goes first
			start := time.Now()
			if err := c.call(); err != nil {
				b.Fatal(err)
			}
			k := (i + j) % len(calls)
			lat[k] = append(lat[k], time.Since(start))
		}
	}
	b.StopTimer()
	p50 := make([]time.Duration, len(calls))
	p99 := make([]time.Duration, len(calls))
	for k := range calls {
		slices.Sort(lat[k])
		p50[k], p99[k] = nearestRank(lat[k], 50), nearestRank(lat[k], 99)
		b.ReportMetric(float64(p50[k].Microseconds()), "p50-"+calls[k].name+"-µs")
		b.ReportMetric(float64(p99[k].Microseconds()), "p99-"+calls[k].name+"-µs")
	}
	for _, k := range []int{1, 2} {
		b.ReportMetric(float64((p50[k] - p50[0]).Microseconds()), "p50-added-"+calls[k].name+"-µs")
		b.ReportMetric(float64((p99[k] - p99[0]).Microseconds()), "p99-added-"+calls[k].name+"-µs")
	}
}
