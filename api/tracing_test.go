package api_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/telemetry"
)

// otlpReceiver is an in-process OTLP/HTTP trace collector: it decodes the
// protobuf export requests otlptracehttp sends and keeps their spans and
// raw bytes.
type otlpReceiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	raw      [][]byte
	spans    []*tracepb.Span
	services []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
			return
		}
		var export coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.raw = append(r.raw, body)
		for _, rs := range export.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					r.services = append(r.services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *otlpReceiver) snapshot() ([]*tracepb.Span, [][]byte, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), append([][]byte(nil), r.raw...), append([]string(nil), r.services...)
}

func attrs(s *tracepb.Span) map[string]string {
	out := map[string]string{}
	for _, kv := range s.GetAttributes() {
		out[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return out
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	default:
		return v.String()
	}
}

// TestTracingGovernedCall runs one allowed and one denied governed call
// through a server exporting to a real OTLP/HTTP receiver, configured by
// the standard OTEL_* variables, and checks the span tree, the GenAI
// attributes, the agent's traceparent continued, the traceparent that
// reached a real upstream MCP server, and that neither the injected secret
// nor an argument value is in anything exported (with a positive control:
// the upstream received both, and the scan finds what is meant to be
// there).
func TestTracingGovernedCall(t *testing.T) {
	recv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.srv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "haldir-under-test")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_SDK_DISABLED", "")
	s := apptest.Start(t, "sqlite", func(c *app.Config) { c.Tracing = telemetry.TracingFromEnv(os.Getenv) })
	if s.App.Tracing == nil {
		t.Fatal("tracing is off although OTEL_EXPORTER_OTLP_ENDPOINT is set")
	}

	// A real go-sdk upstream, behind a handler that keeps each request's
	// traceparent.
	up := newUpstream(t)
	var mu sync.Mutex
	var parents []string
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up.server }, nil)
	traced := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp := r.Header.Get("traceparent"); tp != "" {
			mu.Lock()
			parents = append(parents, tp)
			mu.Unlock()
		}
		mcpHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		traced.CloseClientConnections()
		traced.Close()
	})

	a := s.NewTenant("traces")
	a.Do("POST", "/v1/proxy/upstreams", map[string]any{"name": "files", "url": traced.URL}).Expect(t, 201)
	secret := randomToken("sk-live-")
	a.Do("POST", "/v1/secrets", map[string]any{"name": "upstream_token", "value": secret}).Expect(t, 201)
	policy := a.Do("POST", "/v1/proxy/policies", map[string]any{"type": "block_tool", "tool": "files.delete"}).Expect(t, 201).Str("policy_id")
	ses := agentSession(t, a, "trace-bot", 0, "read", "tool:files")
	argument := randomToken("argument-value-")

	const traceID, agentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	a.Do("POST", "/v1/proxy/call", map[string]any{"tool": "files.echo", "session_id": ses,
		"arguments": map[string]any{"message": argument + " {{secret:upstream_token}}"}},
		"traceparent", "00-"+traceID+"-"+agentSpan+"-01").Expect(t, 200)
	if !up.received(argument + " " + secret) {
		t.Fatal("positive control: the upstream did not receive the argument with the secret injected")
	}
	a.Do("POST", "/v1/proxy/call", map[string]any{"tool": "files.delete", "session_id": ses, "arguments": map[string]any{"path": argument}}).
		Expect(t, 403, "policy_denied")
	// The same call over /mcp, in a trace of its own.
	const mcpTrace = "5bf92f3577b34da6a3ce929d0e0e4737"
	cs := mcpClient(t, s, "Authorization", "Bearer "+a.Key, "X-Haldir-Session", ses, "traceparent", "00-"+mcpTrace+"-10f067aa0ba902b8-01")
	if out, isErr := callText(t, cs, "files.echo", map[string]any{"message": argument}, nil); isErr || !strings.Contains(out, argument) {
		t.Fatalf("the MCP call: %q (error %v)", out, isErr)
	}

	if err := s.App.Tracing.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans, raw, services := recv.snapshot()
	if len(services) == 0 || services[0] != "haldir-under-test" {
		t.Errorf("service.name = %v, want OTEL_SERVICE_NAME's haldir-under-test", services)
	}
	byName := map[string][]*tracepb.Span{}
	for _, sp := range spans {
		byName[sp.GetName()] = append(byName[sp.GetName()], sp)
	}
	// one returns the only span named name in the trace (any trace when
	// trace is "").
	one := func(name, trace string) *tracepb.Span {
		t.Helper()
		var found []*tracepb.Span
		for _, sp := range byName[name] {
			if trace == "" || hex.EncodeToString(sp.GetTraceId()) == trace {
				found = append(found, sp)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d spans named %q in trace %q; spans: %v", len(found), name, trace, names(spans))
		}
		return found[0]
	}
	childOf := func(child, parent *tracepb.Span) {
		t.Helper()
		if !bytes.Equal(child.GetParentSpanId(), parent.GetSpanId()) || !bytes.Equal(child.GetTraceId(), parent.GetTraceId()) {
			t.Errorf("%q is not a child of %q", child.GetName(), parent.GetName())
		}
	}

	// The allowed call: agent span → server span → execute_tool → the
	// decision's append, the upstream call, the outcome's append.
	server := one("POST /v1/proxy/call", traceID)
	if hex.EncodeToString(server.GetParentSpanId()) != agentSpan || server.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span: parent %x kind %v, want the agent's %s, SERVER", server.GetParentSpanId(), server.GetKind(), agentSpan)
	}
	if got := attrs(server); got["http.route"] != "/v1/proxy/call" || got["http.request.method"] != "POST" || got["http.response.status_code"] != "200" {
		t.Errorf("server span attributes = %v", got)
	}
	tool := one("execute_tool files.echo", traceID)
	childOf(tool, server)
	allowed := one("ledger.append proxy.call_allowed", traceID)
	call := one("tools/call files.echo", traceID)
	completed := one("ledger.append proxy.call_completed", traceID)
	for _, c := range []*tracepb.Span{allowed, call, completed} {
		childOf(c, tool)
	}
	if call.GetKind() != tracepb.Span_SPAN_KIND_CLIENT || allowed.GetEndTimeUnixNano() > call.GetStartTimeUnixNano() {
		t.Errorf("the upstream call (kind %v) did not start after the decision was appended", call.GetKind())
	}
	want := map[string]string{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "files.echo", "gen_ai.agent.id": "trace-bot",
		"haldir.session.id": ses, "haldir.decision": "allowed"}
	got := attrs(tool)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("execute_tool %s = %q, want %q", k, got[k], v)
		}
	}
	if got["gen_ai.tool.call.id"] == "" {
		t.Errorf("execute_tool has no gen_ai.tool.call.id: %v", got)
	}

	// The upstream heard the upstream call's span as its parent.
	wantParent := "00-" + traceID + "-" + hex.EncodeToString(call.GetSpanId()) + "-01"
	mu.Lock()
	heard := strings.Join(parents, "\n")
	mu.Unlock()
	if !strings.Contains(heard, wantParent) {
		t.Errorf("the upstream never received traceparent %s; it received:\n%s", wantParent, heard)
	}

	// The denied call names its deciding policy and is never forwarded.
	denied := one("execute_tool files.delete", "")
	if got := attrs(denied); got["haldir.decision"] != "denied" || got["haldir.decision.code"] != "policy_denied" || got["haldir.policy.id"] != policy {
		t.Errorf("denied call attributes = %v, want decision denied by %s", got, policy)
	}
	childOf(one("ledger.append proxy.call_denied", ""), denied)
	if len(byName["tools/call files.delete"]) != 0 {
		t.Error("a denied call has an upstream call span")
	}

	// Over /mcp: the agent's trace continues into the same pipeline.
	var mcpServer *tracepb.Span
	for _, sp := range byName["POST /mcp"] {
		if hex.EncodeToString(sp.GetTraceId()) == mcpTrace && len(byName["execute_tool files.echo"]) > 0 {
			mt := one("execute_tool files.echo", mcpTrace)
			if bytes.Equal(mt.GetParentSpanId(), sp.GetSpanId()) {
				mcpServer = sp
			}
		}
	}
	if mcpServer == nil {
		t.Errorf("no execute_tool span under a POST /mcp server span in the agent's trace %s; spans: %v", mcpTrace, names(spans))
	} else {
		childOf(one("tools/call files.echo", mcpTrace), one("execute_tool files.echo", mcpTrace))
	}

	// Nothing exported holds the secret or an argument value; the same
	// scan finds what is meant to be there.
	all := bytes.Join(raw, nil)
	for _, leak := range []string{secret, argument, a.Key, "upstream_token}}"} {
		if bytes.Contains(all, []byte(leak)) {
			t.Errorf("an exported span holds %q", leak)
		}
	}
	for _, control := range []string{ses, "files.echo", policy} {
		if !bytes.Contains(all, []byte(control)) {
			t.Errorf("positive control: %q not found in the exported bytes", control)
		}
	}
}

func names(spans []*tracepb.Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.GetName()
	}
	return out
}
