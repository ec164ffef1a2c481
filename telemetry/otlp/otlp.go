// Package otlp runs Haldir's trace pipeline: the OpenTelemetry SDK's
// tracer provider exporting over OTLP/HTTP. It is apart from package
// telemetry because the SDK depends on database/sql/driver (through
// github.com/google/uuid), which package api, importing telemetry, must
// not; only package app imports this one.
package otlp

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/haldir-dev/haldir/telemetry"
)

// Tracing is a running trace pipeline: a tracer provider batching spans to
// an OTLP/HTTP exporter.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// Start starts the pipeline cfg describes, or returns nil, nil when
// tracing is off. Nothing is dialled until the first batch is exported.
func Start(ctx context.Context, cfg telemetry.TracingConfig) (*Tracing, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, errors.Join(errors.New("otlp: OTLP trace exporter"), err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "haldir"), attribute.String("service.version", cfg.Version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults
	)
	if err != nil && res == nil {
		return nil, errors.Join(errors.New("otlp: trace resource"), err)
	}
	return &Tracing{provider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// Provider returns the tracer provider; nil when t is nil (tracing off).
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.provider
}

// Flush exports the spans ended so far.
func (t *Tracing) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// Shutdown flushes and stops the pipeline.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
