// Package gateway governs agent tool calls through Haldir's MCP proxy: it
// keeps each tenant's upstream connections (package proxy), and runs every
// call, from POST /v1/proxy/call or MCP tools/call alike, through one
// pipeline:
//
//  1. the agent session is valid and holds tool:<upstream>:<tool>;
//  2. the tool's definition matches its pin (a changed definition is
//     quarantined until an admin approves it);
//  3. policies: deny lists, blocked tools, per-call spend limits, time
//     windows, allow lists (deny by default once one exists) and per-agent
//     rate limits; the first deny wins and names its policy;
//  4. approval rules;
//  5. the call's cost is reserved on the session;
//  6. {{secret:NAME}} placeholders are filled from the vault;
//  7. the decision is appended to the ledger (durably), and only then is
//     the call forwarded, with a timeout (fail closed); the decision's
//     projection is awaited alongside the call, for read-your-writes;
//  8. a failed call releases its reservation, injected secrets are
//     redacted from the result, and the outcome (result hash, latency) is
//     appended durably before the result is returned; its projection is
//     not awaited.
//
// Every refusal is appended too, and none is ever forwarded.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/internal/outbound"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/proxy"
	"github.com/haldir-dev/haldir/ratelimit"
	"github.com/haldir-dev/haldir/vault"
)

// Options configure a Gateway.
type Options struct {
	Commands *commands.Service
	Queries  *projections.Queries
	Limiter  ratelimit.Limiter
	// Guard checks upstream URLs and every connection to them.
	Guard outbound.Guard
	// CallTimeout bounds one forwarded call (default 30 s).
	CallTimeout time.Duration
	Log         *slog.Logger
	Now         func() time.Time
	Version     string
}

// Gateway is the governed proxy. It is safe for concurrent use.
type Gateway struct {
	opts  Options
	cmd   *commands.Service
	q     *projections.Queries
	log   *slog.Logger
	now   func() time.Time
	httpc *http.Client

	mu    sync.Mutex
	pools map[string]*tenantPool
}

// tenantPool is one tenant's upstream connections in this process.
type tenantPool struct {
	pool  *proxy.Pool
	mu    sync.Mutex
	added map[string]bool
	// broken holds registrations that could not be configured (a secret
	// their headers name is missing, say), retried after retryBroken.
	broken map[string]proxy.Status
}

// retryBroken is how long an upstream that could not be configured waits
// before the next attempt, so that calls do not retry it (and record a
// refused secret read) every time.
const retryBroken = 30 * time.Second

// New returns a Gateway.
func New(opts Options) *Gateway {
	if opts.CallTimeout == 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tr := &http.Transport{DialContext: opts.Guard.DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 60 * time.Second}
	return &Gateway{opts: opts, cmd: opts.Commands, q: opts.Queries, log: opts.Log, now: func() time.Time { return opts.Now().UTC() },
		httpc: &http.Client{Transport: tr, CheckRedirect: opts.Guard.CheckRedirect},
		pools: map[string]*tenantPool{}}
}

// Close disconnects every upstream and stops stdio children.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	for _, tp := range g.pools {
		err = errors.Join(err, tp.pool.Close())
	}
	g.pools = map[string]*tenantPool{}
	return err
}

// poolFor returns the tenant's pool, creating it.
func (g *Gateway) poolFor(tenant string) *tenantPool {
	g.mu.Lock()
	defer g.mu.Unlock()
	tp := g.pools[tenant]
	if tp == nil {
		tp = &tenantPool{added: map[string]bool{}, broken: map[string]proxy.Status{}}
		tp.pool = proxy.NewPool(proxy.PoolOptions{
			HTTPClient: g.httpc, ClientName: "haldir-proxy", ClientVersion: g.opts.Version, Logger: g.log,
			OnDiscovery: func(d proxy.Discovery) { g.observe(tenant, d) },
		})
		g.pools[tenant] = tp
	}
	return tp
}

// observe pins newly seen tools and quarantines changed ones, before the
// discovered definitions become callable.
func (g *Gateway) observe(tenant string, d proxy.Discovery) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range d.Tools {
		if _, err := g.cmd.ObserveTool(ctx, tenant, t.Name, t.DefinitionHash); err != nil {
			g.log.Error("could not record a discovered tool", "tenant", tenant, "tool", t.Name, "err", err)
		}
	}
}

// sync connects the tenant's registered upstreams not yet in this
// process's pool (registered here or by another replica).
func (g *Gateway) sync(ctx context.Context, tenant string) (*tenantPool, error) {
	tp := g.poolFor(tenant)
	regs, err := g.q.Upstreams(ctx, tenant)
	if err != nil {
		return tp, err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, reg := range regs {
		if tp.added[reg.Name] {
			continue
		}
		if b, ok := tp.broken[reg.Name]; ok && g.now().Sub(b.LastErrorAt) < retryBroken {
			continue
		}
		up, err := g.upstream(ctx, tenant, reg)
		if err != nil {
			g.log.Error("cannot configure upstream", "tenant", tenant, "upstream", reg.Name, "err", err)
			reason := "its configuration could not be opened"
			var de *domain.Error
			if errors.As(err, &de) {
				reason = de.Message
			}
			tp.broken[reg.Name] = proxy.Status{Name: reg.Name, Transport: reg.Transport, URL: reg.URL, LastError: reason, LastErrorAt: g.now()}
			continue
		}
		delete(tp.broken, reg.Name)
		// A first connection that fails still registers the upstream,
		// which keeps reconnecting.
		if _, err := tp.pool.Add(ctx, up); err != nil && !errors.Is(err, proxy.ErrUnavailable) {
			g.log.Error("cannot add upstream", "tenant", tenant, "upstream", reg.Name, "err", err)
			continue
		}
		tp.added[reg.Name] = true
	}
	return tp, nil
}

// upstream builds a proxy.Upstream from a registration, opening its sealed
// configuration and filling {{secret:NAME}} in its headers and environment.
func (g *Gateway) upstream(ctx context.Context, tenant string, reg domain.UpstreamRegistered) (proxy.Upstream, error) {
	cfg, err := g.cmd.OpenUpstreamConfig(ctx, tenant, reg)
	if err != nil {
		return proxy.Upstream{}, err
	}
	fill := func(m map[string]string) (map[string]string, error) {
		out := map[string]string{}
		for k, v := range m {
			filled, _, err := vault.Resolve(v, func(name string) (string, error) {
				return g.cmd.ReadSecretForUpstream(ctx, tenant, reg.Name, name)
			})
			if err != nil {
				return nil, err
			}
			out[k] = filled.(string)
		}
		return out, nil
	}
	env, err := fill(cfg.Env)
	if err != nil {
		return proxy.Upstream{}, err
	}
	headers, err := fill(cfg.Headers)
	if err != nil {
		return proxy.Upstream{}, err
	}
	return proxy.Upstream{Name: reg.Name, Transport: reg.Transport, URL: reg.URL, Command: reg.Command, Env: env, Headers: headers}, nil
}

// UpstreamSpec is a registration request.
type UpstreamSpec struct {
	Name, URL, Transport string
	Command              []string
	Env, Headers         map[string]string
}

// Registered is the outcome of RegisterUpstream.
type Registered struct {
	Name, URL, Transport string
	Healthy              bool
	Tools                []string
	Error                string
}

// RegisterUpstream records an upstream and connects to it now.
func (g *Gateway) RegisterUpstream(ctx context.Context, a commands.Actor, spec UpstreamSpec) (Registered, error) {
	if err := proxy.ValidateName(spec.Name); err != nil {
		return Registered{}, domain.Invalid("name", "name must be 1-64 characters of a-z, 0-9, '_' and '-'")
	}
	if spec.Transport == "" {
		spec.Transport = proxy.TransportStreamable
		if len(spec.Command) > 0 {
			spec.Transport = proxy.TransportStdio
		}
	}
	up := proxy.Upstream{Name: spec.Name, Transport: spec.Transport, URL: spec.URL, Command: spec.Command, Env: spec.Env, Headers: spec.Headers}
	if err := up.Validate(); err != nil {
		return Registered{}, domain.Invalid("", "%v", err)
	}
	if spec.Transport != proxy.TransportStdio {
		if err := g.opts.Guard.CheckURL(ctx, spec.URL); err != nil {
			return Registered{}, domain.Invalid("url", "url is refused: %v (private, loopback and link-local addresses are not allowed unless HALDIR_ALLOW_PRIVATE_NETWORKS=true)", errors.Unwrap(err))
		}
	}
	reg := domain.UpstreamRegistered{Name: spec.Name, Transport: spec.Transport, URL: spec.URL, Command: spec.Command}
	if err := g.cmd.RegisterUpstream(ctx, a, reg, commands.UpstreamConfig{Env: spec.Env, Headers: spec.Headers}); err != nil {
		return Registered{}, err
	}
	tp, err := g.sync(ctx, a.Tenant)
	if err != nil {
		return Registered{}, err
	}
	out := Registered{Name: spec.Name, URL: spec.URL, Transport: spec.Transport}
	if st, err := tp.pool.Status(spec.Name); err == nil {
		out.Healthy, out.Error = st.Connected, st.LastError
	} else if st, ok := tp.broken[spec.Name]; ok {
		out.Error = st.LastError
	}
	for _, t := range tp.pool.Tools() {
		if up, _, _ := proxy.Split(t.Name); up == spec.Name {
			out.Tools = append(out.Tools, t.Name)
		}
	}
	return out, nil
}

// Statuses returns the health and stats of the tenant's upstreams.
func (g *Gateway) Statuses(ctx context.Context, tenant string) ([]proxy.Status, error) {
	tp, err := g.sync(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := tp.pool.Statuses()
	tp.mu.Lock()
	for _, st := range tp.broken {
		out = append(out, st)
	}
	tp.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Tool is a proxied tool as listed.
type Tool struct {
	proxy.ToolDef
	Quarantined bool
}

// Tools lists the tenant's proxied tools with their pin status.
func (g *Gateway) Tools(ctx context.Context, tenant string) ([]Tool, error) {
	tp, err := g.sync(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []Tool
	for _, def := range tp.pool.Tools() {
		pin, found, err := g.q.Pin(ctx, tenant, def.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, Tool{ToolDef: def, Quarantined: !found || pin.Quarantined || pin.Hash != def.DefinitionHash})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ApproveTool accepts a tool's current definition, lifting its quarantine.
func (g *Gateway) ApproveTool(ctx context.Context, a commands.Actor, name string) (string, error) {
	tp, err := g.sync(ctx, a.Tenant)
	if err != nil {
		return "", err
	}
	def, ok := tp.pool.Tool(name)
	if !ok {
		return "", domain.Errorf(domain.CodeNotFound, "no tool %q is offered by this tenant's upstreams", name)
	}
	return def.DefinitionHash, g.cmd.ApproveTool(ctx, a, name, def.DefinitionHash)
}

// Call is one governed tool call.
type Call struct {
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

// Result turns a refusal into the MCP result an agent sees.
func (r *Refusal) Result() *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "blocked by Haldir: " + r.Reason}}}
}

// ErrNotRecorded means the ledger could not record a call's decision, so
// the call was not made.
var ErrNotRecorded = domain.Errorf(domain.CodeUnavailable, "the call was not made: its decision could not be recorded in the ledger")

// Call runs c through the pipeline for actor a. It returns the upstream's
// result, or a refusal; an error means the call could not be governed (an
// unknown tool, a failure to record) and was not forwarded.
func (g *Gateway) Call(ctx context.Context, a commands.Actor, c Call) (*mcp.CallToolResult, *Refusal, error) {
	upName, toolName, err := proxy.Split(c.Tool)
	if err != nil {
		return nil, nil, domain.Invalid("tool", "tool must be \"<upstream>.<tool>\"")
	}
	args := c.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	argsHash := domain.ArgsHash(args)
	now := g.now()
	var ses domain.Session
	found := false
	if domain.ValidID("ses", c.SessionID) {
		if ses, found, err = g.q.Session(ctx, a.Tenant, c.SessionID); err != nil {
			return nil, nil, err
		}
	}
	refuse := func(r *Refusal) (*mcp.CallToolResult, *Refusal, error) {
		d := domain.ToolCallDenied{Tool: c.Tool, ArgsHash: argsHash, Cost: c.Cost, Code: r.Code, Reason: r.Reason, PolicyID: r.PolicyID, RequestID: r.RequestID}
		if found {
			d.SessionID, d.AgentID = ses.ID, ses.AgentID
		}
		if err := g.cmd.DenyCall(ctx, a, d); err != nil {
			return nil, nil, err
		}
		return nil, r, nil
	}
	// 1. Session and scope.
	switch {
	case !found:
		return refuse(&Refusal{Code: domain.CodeSessionInvalid, Reason: "a governed call needs a valid agent session (session_id)"})
	case !ses.Valid(now):
		return refuse(&Refusal{Code: domain.CodeSessionInvalid, Reason: "the session is revoked or expired"})
	case !domain.Grants(ses.Scopes, domain.ToolScope(upName, toolName)):
		return refuse(&Refusal{Code: domain.CodeInsufficientScope, Reason: fmt.Sprintf("the session does not hold %q", domain.ToolScope(upName, toolName))})
	}
	// 2. The tool, and its pin. The registrations are read again only for
	// a tool this process does not know (registered since, perhaps by
	// another replica), not on every call.
	tp := g.poolFor(a.Tenant)
	def, ok := tp.pool.Tool(c.Tool)
	if !ok {
		if tp, err = g.sync(ctx, a.Tenant); err != nil {
			return nil, nil, err
		}
		def, ok = tp.pool.Tool(c.Tool)
	}
	if !ok {
		return refuse(&Refusal{Code: domain.CodeNotFound, Reason: fmt.Sprintf("no upstream offers %s", c.Tool)})
	}
	pin, pinned, err := g.q.Pin(ctx, a.Tenant, c.Tool)
	if err != nil {
		return nil, nil, err
	}
	if !pinned || pin.Quarantined || pin.Hash != def.DefinitionHash {
		return refuse(&Refusal{Code: domain.CodePolicyDenied, PolicyID: "definition_pin",
			Reason: c.Tool + " is quarantined: its definition changed since it was pinned; an admin must approve the new definition"})
	}
	// 3. Policies.
	policies, err := g.q.Policies(ctx, a.Tenant)
	if err != nil {
		return nil, nil, err
	}
	if d := domain.EvaluateStatic(policies, c.Tool, c.Cost, now); d != nil {
		return refuse(&Refusal{Code: d.Code, Reason: d.Reason, PolicyID: d.PolicyID})
	}
	for _, p := range policies {
		if p.Type != domain.PolicyRateLimit || g.opts.Limiter == nil {
			continue
		}
		res, err := g.opts.Limiter.Allow(ctx, "proxy:"+a.Tenant+":"+p.PolicyID+":"+ses.AgentID, p.MaxPerMinute, time.Minute, now)
		if err != nil {
			return nil, nil, err
		}
		if !res.Allowed {
			return refuse(&Refusal{Code: domain.CodeRateLimited, PolicyID: p.PolicyID, RetryAfter: res.RetryAfter(now),
				Reason: fmt.Sprintf("agent %s may make %d calls a minute", ses.AgentID, p.MaxPerMinute)})
		}
	}
	// 4. Approval rules.
	if err := g.cmd.Gate(ctx, a, domain.Call{SessionID: ses.ID, AgentID: ses.AgentID, Tool: c.Tool, Action: "call", ArgsHash: argsHash, Amount: c.Cost}); err != nil {
		var de *domain.Error
		if errors.As(err, &de) && de.Code == domain.CodeApprovalRequired {
			id, _ := de.Extra["request_id"].(string)
			return refuse(&Refusal{Code: domain.CodeApprovalRequired, RequestID: id, Reason: "this call needs a person's approval (request " + id + ")"})
		}
		return nil, nil, err
	}
	// 5. Reserve the cost.
	var authID string
	release := func(reason string) {
		if authID != "" {
			if err := g.cmd.ReleaseSpend(context.WithoutCancel(ctx), a, ses.ID, authID, c.Cost, reason); err != nil {
				g.log.Error("could not release a reservation", "authorization", authID, "err", err)
			}
		}
	}
	if c.Cost > 0 {
		res, err := g.cmd.ReserveSpend(ctx, a, ses.ID, c.Cost, "proxied call "+c.Tool)
		if err != nil {
			return nil, nil, err
		}
		if res.Denied != nil {
			return refuse(&Refusal{Code: res.Denied.Code, Reason: res.Denied.Reason})
		}
		authID = res.Authorized.AuthorizationID
	}
	// 6. Inject secrets.
	inj, err := g.cmd.InjectSecrets(ctx, a, ses.ID, args)
	if err != nil {
		release("secret injection refused")
		var de *domain.Error
		if errors.As(err, &de) {
			return refuse(&Refusal{Code: de.Code, Reason: "secret injection refused: " + de.Message})
		}
		return nil, nil, err
	}
	// 7. Record the decision, then forward.
	callID, pos, err := g.cmd.AllowCall(ctx, a, domain.ToolCallAllowed{Tool: c.Tool, SessionID: ses.ID, AgentID: ses.AgentID,
		ArgsHash: argsHash, Cost: c.Cost, AuthorizationID: authID, SecretsInjected: inj.Names, DefinitionHash: def.DefinitionHash})
	if err != nil {
		release("the decision could not be recorded")
		g.log.Error("could not record a call's decision; not forwarding it", "tool", c.Tool, "err", err)
		return nil, nil, ErrNotRecorded
	}
	// The decision's projection (read-your-writes) runs alongside the call.
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		g.cmd.Settle(ctx, pos)
	}()
	defer func() { <-settled }()
	result, stats, callErr := tp.pool.Call(ctx, c.Tool, inj.Arguments, g.opts.CallTimeout)
	done := domain.ToolCallCompleted{CallID: callID, Tool: c.Tool, LatencyMS: float64(stats.Latency.Microseconds()) / 1000}
	if callErr != nil {
		release("the upstream call failed")
		done.Refunded = authID != ""
		done.Error = upstreamError(callErr)
	} else {
		result = redact(result, inj.Values)
		done.IsError = result.IsError
		done.ResultHash, _ = proxy.ResultHash(result)
	}
	if err := g.cmd.CompleteCall(context.WithoutCancel(ctx), a, done); err != nil {
		g.log.Error("could not record a call's outcome", "call", callID, "err", err)
	}
	if callErr != nil {
		return nil, nil, domain.Errorf(domain.CodeUnavailable, "the upstream did not answer: %s", done.Error)
	}
	return result, nil, nil
}

// upstreamError describes a failed call without the upstream's own words,
// which could be anything.
func upstreamError(err error) string {
	switch {
	case errors.Is(err, proxy.ErrTimeout):
		return "timeout"
	case errors.Is(err, proxy.ErrUnavailable):
		return "upstream unavailable"
	case errors.Is(err, proxy.ErrNotFound):
		return "unknown tool"
	case errors.Is(err, proxy.ErrUpstream):
		return "the upstream answered with an error"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	return "call failed"
}

// redact removes injected secret values from a result, in every encoding
// vault.Redact knows, so that neither the agent nor the ledger's result
// hash ever holds them.
func redact(r *mcp.CallToolResult, secrets []string) *mcp.CallToolResult {
	if len(secrets) == 0 || r == nil {
		return r
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "the upstream's result could not be checked for secrets"}}}
	}
	clean := vault.Redact(string(raw), secrets)
	if clean == string(raw) {
		return r
	}
	var out mcp.CallToolResult
	if err := json.Unmarshal([]byte(clean), &out); err != nil {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: strings.ReplaceAll(clean, "\"", "'")}}}
	}
	return &out
}
