package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/proxy"
)

var errNoProxy = domain.Errorf(domain.CodeUnavailable, "the MCP proxy is not configured on this server")

func (s *Server) registerUpstream(c *call) (int, any, error) {
	if s.deps.Upstreams == nil {
		return 0, nil, errNoProxy
	}
	up := proxy.Upstream{Name: c.obj.str("name", true, 64), URL: c.obj.str("url", false, domain.MaxWebhookURLLen),
		Transport: c.obj.str("transport", false, 16)}
	up.Command, _ = c.obj.strList("command", 64, 4096)
	for _, f := range []struct {
		name string
		into *map[string]string
	}{{"env", &up.Env}, {"headers", &up.Headers}} {
		if raw, ok := c.obj.lookup(f.name, false); ok {
			if err := json.Unmarshal(raw, f.into); err != nil {
				c.obj.fail(f.name, "%s must be an object of strings", f.name)
			}
		}
	}
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	if (up.URL == "") == (len(up.Command) == 0) {
		return 0, nil, domain.Invalid("url", "give either url (Streamable HTTP or SSE) or command (a local stdio server)")
	}
	if len(up.Command) > 0 && !c.key.Scopes.Allows(domain.Need{Resource: domain.Admin, Access: domain.Write}) {
		return 0, nil, &domain.Error{Code: domain.CodeInsufficientScope, Message: "registering a local stdio command needs admin:write",
			Extra: map[string]any{"required": "admin:write", "granted": []string(c.key.Scopes)}}
	}
	if err := proxy.ValidateName(up.Name); err != nil {
		return 0, nil, domain.Invalid("name", "name must be 1-64 characters of a-z, 0-9, '_' and '-'")
	}
	if up.Transport == "" {
		up.Transport = proxy.TransportStreamable
		if len(up.Command) > 0 {
			up.Transport = proxy.TransportStdio
		}
	}
	if err := up.Validate(); err != nil {
		return 0, nil, domain.Invalid("", "%v", err)
	}
	reg := domain.UpstreamRegistered{Name: up.Name, Transport: up.Transport, URL: up.URL, Command: up.Command}
	if err := s.deps.Commands.RegisterUpstream(c.ctx, c.actor, reg, commands.UpstreamConfig{Env: up.Env, Headers: up.Headers}); err != nil {
		return 0, nil, err
	}
	st, tools, err := s.deps.Upstreams.Status(c.ctx, c.tenant, up.Name)
	if err != nil && !errors.Is(err, proxy.ErrNotFound) {
		return 0, nil, err
	}
	if tools == nil {
		tools = []string{}
	}
	return http.StatusCreated, map[string]any{"registered": true, "name": up.Name, "url": up.URL, "transport": up.Transport, "healthy": st.Connected,
		"tools_discovered": len(tools), "tool_names": tools, "error": st.LastError}, nil
}

func (s *Server) listUpstreams(c *call) (int, any, error) {
	if s.deps.Upstreams == nil {
		return 0, nil, errNoProxy
	}
	st, err := s.deps.Upstreams.Statuses(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(st))
	for _, u := range st {
		out = append(out, map[string]any{"name": u.Name, "transport": u.Transport, "url": u.URL, "healthy": u.Connected,
			"connected_since": optionalTime(u.ConnectedSince), "last_ok": optionalTime(u.LastOK), "last_error": u.LastError,
			"reconnects": u.Reconnects, "tools": u.Tools, "calls": u.Calls, "failures": u.Failures, "tool_errors": u.ToolErrors,
			"latency_p50_ms": float64(u.LatencyP50.Microseconds()) / 1000, "latency_p99_ms": float64(u.LatencyP99.Microseconds()) / 1000})
	}
	return http.StatusOK, map[string]any{"upstreams": out, "count": len(out)}, nil
}

// proxyTool is an upstream tool with its pin status.
type proxyTool struct {
	proxy.ToolDef
	quarantined bool
}

// proxyTools lists the tenant's upstream tools; a tool is quarantined
// unless its definition is the pinned one.
func (s *Server) proxyTools(ctx context.Context, tenant string) ([]proxyTool, error) {
	defs, err := s.deps.Upstreams.Tools(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]proxyTool, 0, len(defs))
	for _, def := range defs {
		pin, found, err := s.deps.Queries.Pin(ctx, tenant, def.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, proxyTool{ToolDef: def, quarantined: !found || !pin.Callable(def.DefinitionHash)})
	}
	return out, nil
}

func (s *Server) listProxyTools(c *call) (int, any, error) {
	if s.deps.Upstreams == nil {
		return 0, nil, errNoProxy
	}
	tools, err := s.proxyTools(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(tools))
	for _, t := range tools {
		out = append(out, map[string]any{"name": t.Name, "description": t.Description, "upstream": t.Upstream,
			"input_schema": t.InputSchema, "definition_hash": t.DefinitionHash, "quarantined": t.quarantined})
	}
	return http.StatusOK, map[string]any{"tools": out, "count": len(out)}, nil
}

func (s *Server) approveProxyTool(c *call) (int, any, error) {
	if s.deps.Upstreams == nil {
		return 0, nil, errNoProxy
	}
	name, err := url.PathUnescape(c.vars("name"))
	if err != nil {
		return 0, nil, domain.Invalid("name", "bad tool name")
	}
	def, ok, err := s.deps.Upstreams.Tool(c.ctx, c.tenant, name)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		return 0, nil, domain.Errorf(domain.CodeNotFound, "no tool %q is offered by this tenant's upstreams", truncate(name, 64))
	}
	if err := s.deps.Commands.ApproveTool(c.ctx, c.actor, name, def.DefinitionHash); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"approved": true, "tool": name, "definition_hash": def.DefinitionHash}, nil
}

func (s *Server) proxyCall(c *call) (int, any, error) {
	if s.deps.Governor == nil {
		return 0, nil, errNoProxy
	}
	tool := c.obj.str("tool", true, 256)
	session := c.obj.str("session_id", false, 64)
	cost, _ := c.obj.money("cost_usd", false, 0, domain.MaxPayment)
	args, _ := c.obj.lookup("arguments", false)
	if args != nil {
		var m map[string]any
		if json.Unmarshal(args, &m) != nil || m == nil {
			c.obj.fail("arguments", "arguments must be a JSON object")
		}
	}
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	if session == "" {
		session = c.r.Header.Get("X-Haldir-Session")
	}
	result, refusal, err := s.deps.Governor.GovernCall(c.ctx, c.actor, commands.Call{Tool: tool, Arguments: args, SessionID: session, Cost: cost})
	if err != nil {
		return 0, nil, err
	}
	if refusal != nil {
		status := http.StatusForbidden
		switch refusal.Code {
		case domain.CodeNotFound:
			status = http.StatusNotFound
		case domain.CodeRateLimited:
			status = http.StatusTooManyRequests
			c.w.Header().Set("Retry-After", strconv.Itoa(max(1, int(refusal.RetryAfter.Seconds()+0.999))))
		}
		body := map[string]any{"isError": true, "content": []map[string]any{{"type": "text", "text": "blocked by Haldir: " + refusal.Reason}},
			"code": refusal.Code, "error": refusal.Reason, "blocked_by": "haldir", "policy_id": refusal.PolicyID, "request_id": c.requestID}
		if refusal.RequestID != "" {
			body["request_id"], body["approval_request_id"] = refusal.RequestID, refusal.RequestID
		}
		return status, body, nil
	}
	return http.StatusOK, result, nil
}

func (s *Server) addPolicy(c *call) (int, any, error) {
	p := domain.Policy{Type: c.obj.str("type", true, 32), Tool: c.obj.str("tool", false, 256), Timezone: c.obj.str("timezone", false, 64)}
	p.Tools, _ = c.obj.strList("tools", 500, 256)
	p.Max, _ = c.obj.money("max", false, 0, domain.MaxPayment)
	n, _ := c.obj.integer("max_per_minute", 0, 1_000_000)
	start, _ := c.obj.integer("start_hour", 0, 23)
	end, _ := c.obj.integer("end_hour", 0, 24)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	p.MaxPerMinute, p.StartHour, p.EndHour = int(n), int(start), int(end)
	if p.Type == domain.PolicySpendLimit {
		if _, ok := c.obj.fields["max"]; !ok {
			return 0, nil, domain.Invalid("max", "spend_limit needs max (dollars per call)")
		}
	}
	if p.Type == domain.PolicyTimeWindow {
		for _, f := range []string{"start_hour", "end_hour"} {
			if _, ok := c.obj.fields[f]; !ok {
				return 0, nil, domain.Invalid(f, "time_window needs start_hour and end_hour")
			}
		}
	}
	added, err := s.deps.Commands.AddPolicy(c.ctx, c.actor, p)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"policy_id": added.PolicyID, "type": added.Type}, nil
}

func (s *Server) listPolicies(c *call) (int, any, error) {
	ps, err := s.deps.Queries.Policies(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	if ps == nil {
		ps = []domain.Policy{}
	}
	return http.StatusOK, map[string]any{"policies": ps, "count": len(ps)}, nil
}
