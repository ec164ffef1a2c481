package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/proxy"
)

// Principal is the authenticated caller of an MCP request.
type Principal struct {
	Tenant, KeyPrefix, RequestID string
	Scopes                       domain.KeyScopes
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the authenticated caller; the API sets
// it before handing /mcp requests to the MCP server.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

func (p Principal) actor() commands.Actor {
	return commands.Actor{Tenant: p.Tenant, KeyPrefix: p.KeyPrefix, RequestID: p.RequestID, Route: "mcp"}
}

// ownTool is one of Haldir's own MCP tools.
type ownTool struct {
	name, description string
	need              domain.Need
	schema            string
	run               func(ctx context.Context, g *Gateway, p Principal, args map[string]any) (any, error)
}

func schema(props string, required ...string) string {
	req, _ := json.Marshal(required)
	if len(required) == 0 {
		req = []byte("[]")
	}
	return `{"type":"object","properties":{` + props + `},"required":` + string(req) + `}`
}

func str(args map[string]any, k string) string { s, _ := args[k].(string); return s }

func money(args map[string]any, k string) (domain.Money, error) {
	v, ok := args[k]
	if !ok || v == nil {
		return 0, nil
	}
	m, valid := domain.ParseMoney(fmt.Sprint(v))
	if !valid {
		return 0, domain.Invalid(k, "%s must be an amount of dollars", k)
	}
	return m, nil
}

// OwnTools are Haldir's own tools, in the order the product lists them.
var ownTools = []ownTool{
	{"createSession", "Create a governed agent session with scopes, a TTL and a spend cap.", domain.Need{Resource: domain.Sessions, Access: domain.Write},
		schema(`"agent_id":{"type":"string"},"scopes":{"type":"array","items":{"type":"string"}},"ttl":{"type":"integer"},"spend_limit":{"type":"number"}`, "agent_id"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			req := domain.NewSession{AgentID: str(a, "agent_id")}
			if list, ok := a["scopes"].([]any); ok {
				for _, s := range list {
					req.Scopes = append(req.Scopes, fmt.Sprint(s))
				}
			}
			if ttl, ok := a["ttl"].(float64); ok {
				req.TTL = secondsDuration(ttl)
			}
			if _, ok := a["spend_limit"]; ok {
				m, err := money(a, "spend_limit")
				if err != nil {
					return nil, err
				}
				req.SpendLimit = &m
			}
			return g.cmd.CreateSession(ctx, p.actor(), req)
		}},
	{"getSession", "Get a session: scopes, spend, remaining budget and validity.", domain.Need{Resource: domain.Sessions, Access: domain.Read},
		schema(`"session_id":{"type":"string"}`, "session_id"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			s, found, err := g.q.Session(ctx, p.Tenant, str(a, "session_id"))
			if err != nil || !found {
				return nil, errors.Join(err, domain.Errorf(domain.CodeNotFound, "no such session"))
			}
			return map[string]any{"session_id": s.ID, "agent_id": s.AgentID, "scopes": s.Scopes, "spend_limit": s.SpendLimit, "spent": s.Spent,
				"remaining_budget": s.Remaining(), "is_valid": s.Valid(g.now()), "expires_at": s.ExpiresAt}, nil
		}},
	{"revokeSession", "Revoke a session at once.", domain.Need{Resource: domain.Sessions, Access: domain.Write},
		schema(`"session_id":{"type":"string"}`, "session_id"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			return map[string]any{"revoked": true, "session_id": str(a, "session_id")}, g.cmd.RevokeSession(ctx, p.actor(), str(a, "session_id"))
		}},
	{"checkPermission", "Check whether a session grants a scope.", domain.Need{Resource: domain.Sessions, Access: domain.Read},
		schema(`"session_id":{"type":"string"},"scope":{"type":"string"}`, "session_id", "scope"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			s, found, err := g.q.Session(ctx, p.Tenant, str(a, "session_id"))
			if err != nil {
				return nil, err
			}
			return map[string]any{"allowed": found && s.Check(str(a, "scope"), g.now()), "session_id": str(a, "session_id"), "scope": str(a, "scope")}, nil
		}},
	{"storeSecret", "Store a secret in the vault; agents never see values unless a session holding its scope reads it.", domain.Need{Resource: domain.Vault, Access: domain.Write},
		schema(`"name":{"type":"string"},"value":{"type":"string"},"scope_required":{"type":"string"}`, "name", "value"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			s, err := g.cmd.StoreSecret(ctx, p.actor(), str(a, "name"), []byte(str(a, "value")), str(a, "scope_required"))
			if err != nil {
				return nil, err
			}
			return map[string]any{"stored": true, "name": s.Name, "version": s.Version}, nil
		}},
	{"getSecret", "Read a secret with a session holding its scope (every read is recorded).", domain.Need{Resource: domain.Vault, Access: domain.Read},
		schema(`"name":{"type":"string"},"session_id":{"type":"string"}`, "name", "session_id"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			v, err := g.cmd.ReadSecret(ctx, p.actor(), str(a, "name"), str(a, "session_id"), "mcp")
			if err != nil {
				return nil, err
			}
			return map[string]any{"name": str(a, "name"), "value": string(v)}, nil
		}},
	{"authorizePayment", "Authorize spend against a session's cap.", domain.Need{Resource: domain.Payments, Access: domain.Write},
		schema(`"session_id":{"type":"string"},"amount":{"type":"number"},"description":{"type":"string"}`, "session_id", "amount"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			amount, err := money(a, "amount")
			if err != nil {
				return nil, err
			}
			r, err := g.cmd.AuthorizePayment(ctx, p.actor(), str(a, "session_id"), amount, "USD", str(a, "description"))
			if err != nil {
				return nil, err
			}
			if r.Denied != nil {
				return nil, &domain.Error{Code: r.Denied.Code, Message: r.Denied.Reason}
			}
			return r.Authorized, nil
		}},
	{"logAction", "Append an agent action to the audit trail.", domain.Need{Resource: domain.Audit, Access: domain.Write},
		schema(`"session_id":{"type":"string"},"tool":{"type":"string"},"action":{"type":"string"},"cost_usd":{"type":"number"},"details":{"type":"object"}`, "session_id", "action"),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			cost, err := money(a, "cost_usd")
			if err != nil {
				return nil, err
			}
			var details json.RawMessage
			if d, ok := a["details"].(map[string]any); ok {
				details, _ = json.Marshal(d)
			}
			r, err := g.cmd.LogAction(ctx, p.actor(), str(a, "session_id"), domain.Action{Tool: str(a, "tool"), Action: str(a, "action"), Details: details, Cost: cost})
			if err != nil {
				return nil, err
			}
			return map[string]any{"logged": true, "entry_id": r.EntryID, "flagged": r.Entry.Flagged, "flag_reason": r.Entry.FlagReason}, nil
		}},
	{"getAuditTrail", "Query the audit trail, newest first.", domain.Need{Resource: domain.Audit, Access: domain.Read},
		schema(`"session_id":{"type":"string"},"agent_id":{"type":"string"},"limit":{"type":"integer"}`),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			limit := 50
			if l, ok := a["limit"].(float64); ok && l >= 1 && l <= 1000 {
				limit = int(l)
			}
			rows, _, err := g.q.Audit(ctx, p.Tenant, projections.AuditFilter{SessionID: str(a, "session_id"), AgentID: str(a, "agent_id"), Limit: limit})
			if err != nil {
				return nil, err
			}
			out := make([]map[string]any, len(rows))
			for i, r := range rows {
				out[i] = map[string]any{"entry_id": r.EntryID, "seq": r.Seq, "type": r.Type, "tool": r.Tool, "action": r.Action, "agent_id": r.AgentID,
					"cost_usd": r.Cost, "flagged": r.Flagged, "timestamp": r.RecordedAt}
			}
			return map[string]any{"count": len(out), "entries": out}, nil
		}},
	{"getSpend", "Spend summary, by tool.", domain.Need{Resource: domain.Audit, Access: domain.Read},
		schema(`"session_id":{"type":"string"},"agent_id":{"type":"string"}`),
		func(ctx context.Context, g *Gateway, p Principal, a map[string]any) (any, error) {
			s, err := g.q.Spend(ctx, p.Tenant, projections.AuditFilter{SessionID: str(a, "session_id"), AgentID: str(a, "agent_id")})
			if err != nil {
				return nil, err
			}
			return map[string]any{"total_usd": s.Total, "action_count": s.ActionCount, "by_tool": s.ByTool}, nil
		}},
}

// OwnToolNames lists Haldir's own MCP tools.
func OwnToolNames() []string {
	out := make([]string, len(ownTools))
	for i, t := range ownTools {
		out[i] = t.name
	}
	return out
}

func (g *Gateway) principal(ctx context.Context) (Principal, error) {
	p, ok := principalFrom(ctx)
	if !ok || p.Tenant == "" {
		return p, &proxyError{"unauthenticated: send an API key (Authorization: Bearer hld_… or X-API-Key)"}
	}
	return p, nil
}

// proxyError is a JSON-RPC-visible refusal before any tool runs.
type proxyError struct{ msg string }

func (e *proxyError) Error() string { return e.msg }

// tools answers tools/list: Haldir's own tools the key may use, and the
// upstream tools the request's session may call.
func (g *Gateway) tools(ctx context.Context, req *proxy.Request) ([]proxy.ToolDef, error) {
	p, err := g.principal(ctx)
	if err != nil {
		return nil, err
	}
	var out []proxy.ToolDef
	for _, t := range ownTools {
		if p.Scopes.Allows(t.need) {
			out = append(out, proxy.ToolDef{Name: t.name, Description: t.description, InputSchema: json.RawMessage(t.schema)})
		}
	}
	if req.Session == "" || !p.Scopes.Allows(domain.Need{Resource: domain.Proxy, Access: domain.Write}) {
		return out, nil
	}
	ses, found, err := g.q.Session(ctx, p.Tenant, req.Session)
	if err != nil || !found || !ses.Valid(g.now()) {
		return out, err
	}
	list, err := g.Tools(ctx, p.Tenant)
	if err != nil {
		return nil, err
	}
	policies, err := g.q.Policies(ctx, p.Tenant)
	if err != nil {
		return nil, err
	}
	for _, t := range list {
		up, tool, _ := proxy.Split(t.Name)
		if t.Quarantined || !domain.Grants(ses.Scopes, domain.ToolScope(up, tool)) {
			continue
		}
		if d := domain.EvaluateStatic(policies, t.Name, 0, g.now()); d != nil && d.Type != domain.PolicyTimeWindow {
			continue // never callable; a time window only closes for a while
		}
		out = append(out, t.ToolDef)
	}
	return out, nil
}

// handle answers tools/call.
func (g *Gateway) handle(ctx context.Context, call *proxy.ToolCall) (*mcp.CallToolResult, error) {
	p, err := g.principal(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range ownTools {
		if t.name != call.Name {
			continue
		}
		if !p.Scopes.Allows(t.need) {
			return errResult(fmt.Sprintf("insufficient_scope: this key lacks %s", t.need)), nil
		}
		var args map[string]any
		if err := json.Unmarshal(call.Arguments, &args); err != nil {
			return nil, proxy.ErrInvalid
		}
		if _, ok := args["session_id"]; !ok && call.Session != "" {
			args["session_id"] = call.Session
		}
		v, err := t.run(ctx, g, p, args)
		if err != nil {
			var de *domain.Error
			if errors.As(err, &de) {
				return errResult(string(de.Code) + ": " + de.Message), nil
			}
			return nil, err
		}
		b, _ := json.Marshal(v)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}, StructuredContent: json.RawMessage(b)}, nil
	}
	if !p.Scopes.Allows(domain.Need{Resource: domain.Proxy, Access: domain.Write}) {
		return errResult("insufficient_scope: this key lacks proxy:write"), nil
	}
	cost := domain.Money(0)
	if v, ok := call.Meta["haldir/cost_usd"]; ok {
		m, valid := domain.ParseMoney(fmt.Sprint(v))
		if !valid || m < 0 {
			return nil, proxy.ErrInvalid
		}
		cost = m
	}
	result, refusal, err := g.Call(ctx, p.actor(), Call{Tool: call.Name, Arguments: call.Arguments, SessionID: call.Session, Cost: cost})
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return errResult(string(de.Code) + ": " + de.Message), nil
		}
		return nil, err
	}
	if refusal != nil {
		return refusal.Result(), nil
	}
	return result, nil
}

func errResult(msg string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}
}

// MCPServer returns Haldir's MCP server over this gateway: the handler of
// POST /mcp, and of `haldir mcp` over stdio.
func (g *Gateway) MCPServer() *proxy.Server {
	return proxy.NewServer(proxy.ServerOptions{Name: "haldir", Version: g.opts.Version,
		Instructions: "Haldir governs agent tool calls: sessions, spend caps, secrets, approvals and an audit ledger. Pass the agent session in _meta[\"haldir/session\"] or the X-Haldir-Session header.",
		Tools:        g.tools, Handle: g.handle, Logger: g.log, DisableLocalhostProtection: true})
}

// ServerCard describes the MCP server for /.well-known/mcp/server-card.json.
func ServerCard(base *url.URL, version string) map[string]any {
	tools := make([]map[string]any, len(ownTools))
	for i, t := range ownTools {
		tools[i] = map[string]any{"name": t.name, "description": t.description, "requiredScope": t.need.String(), "inputSchema": json.RawMessage(t.schema)}
	}
	endpoint := *base
	endpoint.Path = "/mcp"
	return map[string]any{
		"name": "haldir", "version": version,
		"description": "Governance for AI agents: scoped sessions, spend caps, a vault, human approvals and governed upstream MCP tools.",
		"transport":   map[string]any{"type": "streamable-http", "url": endpoint.String()},
		"authentication": map[string]any{"type": "bearer", "header": "Authorization",
			"description": "An API key (hld_…); key scopes apply per tool. X-API-Key is also accepted."},
		"session":       map[string]any{"meta": proxy.MetaKeySession, "header": "X-Haldir-Session"},
		"tools":         tools,
		"upstreamTools": "tools of registered upstreams, named <upstream>.<tool>, listed per agent session",
	}
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
