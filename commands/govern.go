package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/internal/canonical"
	"github.com/haldir-dev/haldir/vault"
)

// Governed tool calls.
//
// GovernCall runs every call, from POST /v1/proxy/call or MCP tools/call
// alike, through one pipeline, one function per step:
//
//  1. checkSession: the agent session is valid and holds
//     tool:<upstream>:<tool>;
//  2. checkPin: the tool's definition matches its pin (a changed definition
//     is quarantined until an admin approves it);
//  3. checkPolicies: deny lists, blocked tools, per-call spend limits, time
//     windows, allow lists (deny by default once one exists) and per-agent
//     rate limits; the first deny wins and names its policy;
//  4. checkApproval: approval rules;
//  5. reserve: the call's cost is reserved on the session;
//  6. inject: {{secret:NAME}} placeholders are filled from the vault;
//  7. forward: the decision is appended to the ledger (durably), and only
//     then is the call forwarded, with a timeout (fail closed); the
//     decision's projection is awaited alongside the call;
//  8. complete: a failed call releases its reservation, injected secrets are
//     redacted from the result, and the outcome (result hash, latency) is
//     handed to the ledger writer, where it may wait up to
//     events.DeferLimit to share the next commit; the result is returned
//     without waiting, and the tenant's next read on this process waits
//     for the outcome (Service.AwaitTenant).
//
// Steps 2–4 decide with projected reads (the pin, the policies, the
// approval rules) that are started together with step 1 (prefetch).
//
// Every refusal is appended too, and none is ever forwarded.

// Upstreams is what a governed call needs of the MCP proxy (proxy.Tenants).
type Upstreams interface {
	// DefinitionHash returns the definition hash of the tenant's tool
	// name as currently offered by its upstream.
	DefinitionHash(ctx context.Context, tenant, name string) (hash string, found bool, err error)
	// Call forwards a call and returns the upstream's MCP CallToolResult
	// as JSON. A failed call's error text is safe to record and show: it
	// never holds the upstream's own words.
	Call(ctx context.Context, tenant, name string, arguments json.RawMessage, timeout time.Duration) (result json.RawMessage, latency time.Duration, err error)
}

// Limiter counts events in fixed windows (ratelimit.Limiter, adapted).
type Limiter interface {
	// Allow counts one event under key and reports whether it is within
	// limit per window, and if not, how long until the window ends.
	Allow(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (allowed bool, retryAfter time.Duration, err error)
}

// ProxyReads are the projected reads a governed call decides with.
type ProxyReads interface {
	Pin(ctx context.Context, tenant, tool string) (domain.ToolPin, bool, error)
	Policies(ctx context.Context, tenant string) ([]domain.Policy, error)
}

// Governor runs governed calls. It is safe for concurrent use.
type Governor struct {
	cmd       *Service
	upstreams Upstreams
	reads     ProxyReads
	limiter   Limiter
	timeout   time.Duration
	observe   func(Decision)
	tracer    trace.Tracer // nil: no spans
}

// Decision is what became of one governed call, as Observe reports it.
type Decision struct {
	// Verdict is "allowed" (the decision was recorded and the call
	// forwarded), "denied" (refused and recorded) or "error" (it could not
	// be governed, and was not forwarded).
	Verdict string
	// Code is the refusal's or the error's code; empty when allowed.
	Code domain.Code
	// PolicyID names the deciding policy of a refusal, when one decided.
	PolicyID string
	// Upstream is, for an allowed call, what the upstream did: "ok",
	// "tool_error" (a result marked isError) or "failed" (no result).
	Upstream string
	// SessionID and AgentID are the call's session and agent, when the
	// session was found; CallID is the allowed call's id.
	SessionID, AgentID, CallID string
}

// Observe has fn called once for every governed call, when GovernCall
// returns (for metrics). Call it before the Governor is used.
func (g *Governor) Observe(fn func(Decision)) { g.observe = fn }

// Trace has every governed call traced with tp, following the
// OpenTelemetry GenAI conventions: a span "execute_tool <tool>" with the
// tool, session, agent, decision and deciding policy, and children for the
// decision's append, the upstream call and the outcome's append. No span
// holds an argument, a secret, a hash of either, or a result. Call it
// before the Governor is used; nil turns tracing off.
func (g *Governor) Trace(tp trace.TracerProvider) {
	g.tracer = nil
	if tp != nil {
		g.tracer = tp.Tracer("github.com/haldir-dev/haldir/commands")
	}
}

// startSpan starts a child span of ctx, or does nothing with tracing off.
func (g *Governor) startSpan(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if g.tracer == nil {
		return ctx, nil
	}
	return g.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// endSpan ends span (nil with tracing off), marking an error by its code
// only: an error's text is never recorded.
func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if span == nil {
		return
	}
	span.SetAttributes(attrs...)
	if err != nil {
		code := string(domain.CodeInternal)
		var de *domain.Error
		if errors.As(err, &de) {
			code = string(de.Code)
		}
		span.SetAttributes(attribute.String("error.type", code))
		span.SetStatus(codes.Error, code)
	}
	span.End()
}

// appendSpan starts the span of one ledger append of eventType.
func (g *Governor) appendSpan(ctx context.Context, eventType string) (context.Context, trace.Span) {
	return g.startSpan(ctx, "ledger.append "+eventType, trace.SpanKindInternal, attribute.String("haldir.event.type", eventType))
}

// NewGovernor returns a Governor over upstreams. callTimeout bounds one
// forwarded call (0: 30 s); limiter nil disables rate_limit policies.
func (s *Service) NewGovernor(upstreams Upstreams, reads ProxyReads, limiter Limiter, callTimeout time.Duration) *Governor {
	if callTimeout == 0 {
		callTimeout = 30 * time.Second
	}
	return &Governor{cmd: s, upstreams: upstreams, reads: reads, limiter: limiter, timeout: callTimeout}
}

// Call is one governed tool call.
type Call struct {
	// Tool is the namespaced "<upstream>.<tool>".
	Tool      string
	Arguments json.RawMessage
	SessionID string
	// Cost is what the caller declares the call costs, in dollars.
	Cost domain.Money
}

// Refusal is a call the pipeline refused. It was recorded, and never
// forwarded.
type Refusal struct {
	Code      domain.Code
	Reason    string
	PolicyID  string
	RequestID string // the approval request, for approval_required
	// RetryAfter is set for rate limits.
	RetryAfter time.Duration
}

// ErrNotRecorded means the ledger could not record a call's decision, so
// the call was not made.
var ErrNotRecorded = domain.Errorf(domain.CodeUnavailable, "the call was not made: its decision could not be recorded in the ledger")

// governed is one call on its way through the pipeline.
type governed struct {
	Call
	a                 Actor
	upstream, tool    string
	argsHash          string
	now               time.Time
	session           domain.Session
	found             bool
	definitionHash    string
	authorizationID   string
	injected          Injected
	upstreamArguments json.RawMessage
	// reads are the projected reads the checks use, started together.
	reads *prefetched
}

// prefetched holds the projected reads a call's checks decide with: its
// tool's pin, the tenant's policies and approval rules. They are read
// together, as the pipeline starts, alongside the session check, so that
// their round trips overlap (on Postgres four reads cost about one); the
// first check that needs them waits for all three. They are reads only, so one the pipeline never reaches
// costs nothing but the read.
type prefetched struct {
	wg       sync.WaitGroup
	pin      domain.ToolPin
	pinned   bool
	pinErr   error
	policies []domain.Policy
	polErr   error
	rules    []domain.ApprovalRule
	rulesErr error
}

// prefetch starts the reads for tenant and tool.
func (g *Governor) prefetch(ctx context.Context, tenant, tool string) *prefetched {
	p := &prefetched{}
	p.wg.Add(3)
	go func() {
		defer p.wg.Done()
		p.pin, p.pinned, p.pinErr = g.reads.Pin(ctx, tenant, tool)
	}()
	go func() {
		defer p.wg.Done()
		p.policies, p.polErr = g.reads.Policies(ctx, tenant)
	}()
	go func() {
		defer p.wg.Done()
		p.rules, p.rulesErr = g.cmd.reads.ApprovalRules(ctx, tenant)
	}()
	return p
}

// step is one check of the pipeline: a refusal stops the call (and is
// recorded); an error means it could not be governed.
type step func(ctx context.Context, c *governed) (*Refusal, error)

// GovernCall runs c through the pipeline for actor a. It returns the
// upstream's result as JSON, or a refusal; an error means the call could
// not be governed (a failure to record, an unreachable upstream) and the
// upstream did not act on it.
func (g *Governor) GovernCall(ctx context.Context, a Actor, c Call) (json.RawMessage, *Refusal, error) {
	var d Decision
	ctx, span := g.startSpan(ctx, "execute_tool "+c.Tool, trace.SpanKindInternal,
		attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", c.Tool))
	result, refusal, err := g.govern(ctx, a, c, &d)
	switch {
	case refusal != nil:
		d.Verdict, d.Code, d.PolicyID = "denied", refusal.Code, refusal.PolicyID
	case d.Verdict == "allowed":
	default:
		d.Verdict, d.Code = "error", domain.CodeInternal
		var de *domain.Error
		if errors.As(err, &de) {
			d.Code = de.Code
		}
	}
	if g.observe != nil {
		g.observe(d)
	}
	if span != nil {
		attrs := []attribute.KeyValue{attribute.String("haldir.decision", d.Verdict)}
		if d.Code != "" {
			attrs = append(attrs, attribute.String("haldir.decision.code", string(d.Code)))
		}
		if d.PolicyID != "" {
			attrs = append(attrs, attribute.String("haldir.policy.id", d.PolicyID))
		}
		if d.SessionID != "" {
			attrs = append(attrs, attribute.String("haldir.session.id", d.SessionID), attribute.String("gen_ai.agent.id", d.AgentID))
		}
		if d.CallID != "" {
			attrs = append(attrs, attribute.String("gen_ai.tool.call.id", d.CallID))
		}
		endSpan(span, err, attrs...)
	}
	return result, refusal, err
}

// govern is GovernCall; it fills d.Verdict and d.Upstream for a call it
// forwards.
func (g *Governor) govern(ctx context.Context, a Actor, c Call, d *Decision) (json.RawMessage, *Refusal, error) {
	upName, toolName, ok := domain.SplitTool(c.Tool)
	if !ok {
		return nil, nil, domain.Invalid("tool", "tool must be \"<upstream>.<tool>\"")
	}
	if len(c.Arguments) == 0 {
		c.Arguments = json.RawMessage("{}")
	}
	if err := domain.CheckCost("cost_usd", c.Cost); err != nil {
		return nil, nil, err
	}
	gc := &governed{Call: c, a: a, upstream: upName, tool: toolName, argsHash: domain.ArgsHash(c.Arguments), now: g.cmd.now()}
	gc.reads = g.prefetch(ctx, a.Tenant, c.Tool)
	defer func() {
		if gc.found {
			d.SessionID, d.AgentID = gc.session.ID, gc.session.AgentID
		}
	}()
	for _, check := range []step{g.checkSession, g.checkPin, g.checkPolicies, g.checkApproval, g.reserve, g.inject} {
		refusal, err := check(ctx, gc)
		if err == nil && refusal == nil {
			continue
		}
		g.release(ctx, gc, "the call was refused before it was made")
		if err != nil {
			return nil, nil, err
		}
		actx, span := g.appendSpan(ctx, domain.TypeToolCallDenied)
		err = g.refuse(actx, gc, refusal)
		endSpan(span, err)
		return nil, refusal, err
	}
	return g.forward(ctx, gc, d)
}

// refuse records a refused call.
func (g *Governor) refuse(ctx context.Context, c *governed, r *Refusal) error {
	d := domain.ToolCallDenied{Tool: c.Tool, ArgsHash: c.argsHash, Cost: c.Cost, Code: r.Code, Reason: r.Reason, PolicyID: r.PolicyID, RequestID: r.RequestID}
	if c.found {
		d.SessionID, d.AgentID = c.session.ID, c.session.AgentID
	}
	return g.cmd.DenyCall(ctx, c.a, d)
}

// checkSession: the session is valid and holds the tool's scope. It reads
// the projected session, not a cached aggregate, so that a revocation on
// any replica counts at once.
func (g *Governor) checkSession(ctx context.Context, c *governed) (*Refusal, error) {
	if domain.ValidID("ses", c.SessionID) {
		var err error
		if c.session, c.found, err = g.cmd.session(ctx, c.a.Tenant, c.SessionID); err != nil {
			return nil, err
		}
	}
	scope := domain.ToolScope(c.upstream, c.tool)
	switch {
	case !c.found:
		return &Refusal{Code: domain.CodeSessionInvalid, Reason: "a governed call needs a valid agent session (session_id)"}, nil
	case !c.session.Valid(c.now):
		return &Refusal{Code: domain.CodeSessionInvalid, Reason: "the session is revoked or expired"}, nil
	case !domain.Grants(c.session.Scopes, scope):
		return &Refusal{Code: domain.CodeInsufficientScope, Reason: fmt.Sprintf("the session does not hold %q", scope)}, nil
	}
	return g.checkAlive(ctx, c, cachedKills)
}

// checkAlive: no kill switch stops the agent. Checked again once the
// decision is durable (before, its position) and before the call is
// forwarded, against every kill committed before the decision, so that no
// call decided after a kill's position reaches the upstream.
func (g *Governor) checkAlive(ctx context.Context, c *governed, before int64) (*Refusal, error) {
	err := g.cmd.alive(ctx, c.a.Tenant, c.session.AgentID, before)
	var de *domain.Error
	if errors.As(err, &de) {
		return &Refusal{Code: de.Code, Reason: de.Message}, nil
	}
	return nil, err
}

// checkPin: the tool exists and its definition is the pinned one.
func (g *Governor) checkPin(ctx context.Context, c *governed) (*Refusal, error) {
	hash, ok, err := g.upstreams.DefinitionHash(ctx, c.a.Tenant, c.Tool)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &Refusal{Code: domain.CodeNotFound, Reason: fmt.Sprintf("no upstream offers %s", c.Tool)}, nil
	}
	c.definitionHash = hash
	c.reads.wg.Wait()
	pin, pinned, err := c.reads.pin, c.reads.pinned, c.reads.pinErr
	if err != nil {
		return nil, err
	}
	if !pinned || !pin.Callable(hash) {
		return &Refusal{Code: domain.CodePolicyDenied, PolicyID: "definition_pin",
			Reason: c.Tool + " is quarantined: its definition changed since it was pinned; an admin must approve the new definition"}, nil
	}
	return nil, nil
}

// checkPolicies: the static policies, then the rate limits.
func (g *Governor) checkPolicies(ctx context.Context, c *governed) (*Refusal, error) {
	c.reads.wg.Wait()
	policies, err := c.reads.policies, c.reads.polErr
	if err != nil {
		return nil, err
	}
	if d := domain.EvaluateStatic(policies, c.Tool, c.Cost, c.now); d != nil {
		return &Refusal{Code: d.Code, Reason: d.Reason, PolicyID: d.PolicyID}, nil
	}
	for _, p := range policies {
		if p.Type != domain.PolicyRateLimit || g.limiter == nil {
			continue
		}
		allowed, retry, err := g.limiter.Allow(ctx, "proxy:"+c.a.Tenant+":"+p.PolicyID+":"+c.session.AgentID, p.MaxPerMinute, time.Minute, c.now)
		if err != nil {
			return nil, err
		}
		if !allowed {
			return &Refusal{Code: domain.CodeRateLimited, PolicyID: p.PolicyID, RetryAfter: retry,
				Reason: fmt.Sprintf("agent %s may make %d calls a minute", c.session.AgentID, p.MaxPerMinute)}, nil
		}
	}
	return nil, nil
}

// checkApproval: the tenant's approval rules.
func (g *Governor) checkApproval(ctx context.Context, c *governed) (*Refusal, error) {
	c.reads.wg.Wait()
	if c.reads.rulesErr != nil {
		return nil, c.reads.rulesErr
	}
	err := g.cmd.gateWith(ctx, c.a, domain.Call{SessionID: c.session.ID, AgentID: c.session.AgentID, Tool: c.Tool, Action: "call", ArgsHash: c.argsHash, Amount: c.Cost},
		c.reads.rules)
	var de *domain.Error
	if errors.As(err, &de) && de.Code == domain.CodeApprovalRequired {
		id, _ := de.Extra["request_id"].(string)
		return &Refusal{Code: domain.CodeApprovalRequired, RequestID: id, Reason: "this call needs a person's approval (request " + id + ")"}, nil
	}
	return nil, err
}

// reserve: the call's cost, on the session's stream.
func (g *Governor) reserve(ctx context.Context, c *governed) (*Refusal, error) {
	if c.Cost == 0 {
		return nil, nil
	}
	res, err := g.cmd.ReserveSpend(ctx, c.a, c.session.ID, c.Cost, "proxied call "+c.Tool)
	if err != nil {
		return nil, err
	}
	if res.Denied != nil {
		return &Refusal{Code: res.Denied.Code, Reason: res.Denied.Reason}, nil
	}
	c.authorizationID = res.Authorized.AuthorizationID
	return nil, nil
}

// inject: {{secret:NAME}} placeholders, each read recorded.
func (g *Governor) inject(ctx context.Context, c *governed) (*Refusal, error) {
	inj, err := g.cmd.InjectSecrets(ctx, c.a, c.session.ID, c.Arguments)
	var de *domain.Error
	if errors.As(err, &de) {
		return &Refusal{Code: de.Code, Reason: "secret injection refused: " + de.Message}, nil
	}
	if err != nil {
		return nil, err
	}
	c.injected, c.upstreamArguments = inj, inj.Arguments
	return nil, nil
}

// release returns a reservation, on every path where the upstream did not
// act on the call.
func (g *Governor) release(ctx context.Context, c *governed, reason string) {
	if c.authorizationID == "" {
		return
	}
	if err := g.cmd.ReleaseSpend(context.WithoutCancel(ctx), c.a, c.session.ID, c.authorizationID, c.Cost, reason); err != nil {
		g.cmd.log.Error("could not release a reservation", "authorization", c.authorizationID, "err", err)
	}
	c.authorizationID = ""
}

// forward records the decision durably, then makes the call, then records
// its outcome.
func (g *Governor) forward(ctx context.Context, c *governed, d *Decision) (json.RawMessage, *Refusal, error) {
	actx, span := g.appendSpan(ctx, domain.TypeToolCallAllowed)
	callID, pos, err := g.cmd.AllowCall(actx, c.a, domain.ToolCallAllowed{Tool: c.Tool, SessionID: c.session.ID, AgentID: c.session.AgentID,
		ArgsHash: c.argsHash, Cost: c.Cost, AuthorizationID: c.authorizationID, SecretsInjected: c.injected.Names, DefinitionHash: c.definitionHash})
	endSpan(span, err)
	if err != nil {
		g.release(ctx, c, "the decision could not be recorded")
		g.cmd.log.Error("could not record a call's decision; not forwarding it", "tool", c.Tool, "err", err)
		return nil, nil, ErrNotRecorded
	}
	if refusal, err := g.checkAlive(ctx, c, pos); refusal != nil || err != nil {
		refunded := c.authorizationID != ""
		g.release(ctx, c, "stopped before it was forwarded")
		reason := "not forwarded: the kill switch could not be checked"
		if refusal != nil {
			reason = "not forwarded: " + refusal.Reason
		}
		if cerr := g.cmd.CompleteCall(context.WithoutCancel(ctx), c.a, domain.ToolCallCompleted{CallID: callID, Tool: c.Tool, Refunded: refunded, Error: reason}); cerr != nil {
			g.cmd.log.Error("could not record a call stopped before forwarding", "call", callID, "err", cerr)
		}
		d.Verdict, d.CallID = "stopped", callID
		return nil, refusal, err
	}
	d.Verdict, d.CallID = "allowed", callID
	// The decision's projection (read-your-writes) runs alongside the call.
	defer g.cmd.SettleLater(ctx, pos)()
	// The upstream call's span is the parent of its HTTP requests, which
	// carry it as their traceparent.
	uctx, span := g.startSpan(ctx, "tools/call "+c.Tool, trace.SpanKindClient, attribute.String("mcp.method.name", "tools/call"),
		attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", c.Tool), attribute.String("gen_ai.tool.call.id", callID))
	result, latency, callErr := g.upstreams.Call(uctx, c.a.Tenant, c.Tool, c.upstreamArguments, g.timeout)
	endSpan(span, callErr)
	done := domain.ToolCallCompleted{CallID: callID, Tool: c.Tool, LatencyMS: float64(latency.Microseconds()) / 1000}
	if callErr != nil {
		done.Refunded = c.authorizationID != ""
		g.release(ctx, c, "the upstream call failed")
		done.Error = callErr.Error()
		d.Upstream = "failed"
	} else {
		result = redact(result, c.injected.Values)
		done.IsError = isError(result)
		done.ResultHash = resultHash(result)
		d.Upstream = "ok"
		if done.IsError {
			d.Upstream = "tool_error"
		}
	}
	octx, span := g.appendSpan(context.WithoutCancel(ctx), domain.TypeToolCallCompleted)
	err = g.cmd.CompleteCall(octx, c.a, done)
	endSpan(span, err)
	if err != nil {
		g.cmd.log.Error("could not record a call's outcome", "call", callID, "err", err)
	}
	if callErr != nil {
		return nil, nil, domain.Errorf(domain.CodeUnavailable, "the upstream did not answer: %s", done.Error)
	}
	return result, nil, nil
}

// redact removes injected secret values from a result, in every encoding
// vault.Redact knows, so that neither the agent nor the ledger's result
// hash ever holds them. A result that no longer parses after redaction is
// replaced by an error result holding the redacted text.
func redact(result json.RawMessage, secrets []string) json.RawMessage {
	if len(secrets) == 0 {
		return result
	}
	clean := vault.Redact(string(result), secrets)
	if clean == string(result) {
		return result
	}
	if json.Valid([]byte(clean)) {
		return json.RawMessage(clean)
	}
	out, _ := json.Marshal(map[string]any{"isError": true, "content": []map[string]string{{"type": "text", "text": strings.ReplaceAll(clean, "\"", "'")}}})
	return out
}

// isError reports whether a CallToolResult is marked isError.
func isError(result json.RawMessage) bool {
	var r struct {
		IsError bool `json:"isError"`
	}
	return json.Unmarshal(result, &r) == nil && r.IsError
}

// resultHash is the lowercase hex SHA-256 of the result's canonical JSON.
func resultHash(result json.RawMessage) string {
	canon, err := canonical.JSON(result)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}
