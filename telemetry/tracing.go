package telemetry

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracingConfig says whether traces are exported. The exporter itself
// reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers,
// timeout, certificates), and the resource OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, as every OpenTelemetry SDK does.
type TracingConfig struct {
	// Enabled turns tracing on; TracingFromEnv sets it when an OTLP
	// endpoint is configured.
	Enabled bool
	// Version is reported as service.version.
	Version string
}

// TracingFromEnv returns the configuration getenv describes: on when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// unless OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is "none".
func TracingFromEnv(getenv func(string) string) TracingConfig {
	configured := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	disabled := strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none")
	return TracingConfig{Enabled: configured && !disabled}
}

// Propagator is the W3C Trace Context propagator: traceparent and
// tracestate, accepted from agents and sent to upstreams. Baggage is not
// propagated: it would carry what an agent sent on to upstreams.
var Propagator = propagation.TraceContext{}

// PropagatingTransport returns base (http.DefaultTransport when nil)
// sending the W3C traceparent of each request's context.
func PropagatingTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return propagating{base}
}

type propagating struct{ base http.RoundTripper }

func (p propagating) RoundTrip(r *http.Request) (*http.Response, error) {
	if !trace.SpanContextFromContext(r.Context()).IsValid() {
		return p.base.RoundTrip(r)
	}
	r = r.Clone(r.Context()) // a RoundTripper must not modify its request
	Propagator.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	return p.base.RoundTrip(r)
}
