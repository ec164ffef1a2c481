package api_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/telemetry"
)

// BenchmarkGovernedCallTraced is BenchmarkGovernedCallOverhead on SQLite
// with tracing on, exporting over OTLP/HTTP to a local receiver that
// discards every batch: what spans, propagation and export add.
//
//	go test -run '^$' -bench 'GovernedCall(Overhead/sqlite|Traced)' -benchtime 2000x ./api/
func BenchmarkGovernedCallTraced(b *testing.B) {
	discard := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(discard.Close)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", discard.URL)
	benchmarkGovernedCall(b, "sqlite", func(c *app.Config) {
		c.Tracing = telemetry.TracingFromEnv(os.Getenv)
		if !c.Tracing.Enabled {
			b.Fatal("tracing is off")
		}
	})
}
