package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/proxy"
)

// MCP is a second transport for the same API. Haldir's own MCP tools are
// each one REST route of the route table: a tools/call becomes a request to
// that route, run through the same pipeline (authentication, the route's
// key scope, decoding, idempotency, error mapping), and the route's answer
// becomes the tool's result. The two transports cannot disagree on a rule
// because there is only one implementation of each. Upstream tools go
// through commands.Governor, as POST /v1/proxy/call does.

// ownTool is one of Haldir's MCP tools over one route.
type ownTool struct {
	name, description, schema string
	// method and path name the route; {var} segments are filled from the
	// argument named in vars.
	method, path string
	vars         map[string]string
}

func toolSchema(props string, required ...string) string {
	req, _ := json.Marshal(required)
	if len(required) == 0 {
		req = []byte("[]")
	}
	return `{"type":"object","properties":{` + props + `},"required":` + string(req) + `}`
}

// ownTools are Haldir's own tools, in the order the product lists them.
var ownTools = []ownTool{
	{"createSession", "Create a governed agent session with scopes, a TTL and a spend cap.",
		toolSchema(`"agent_id":{"type":"string"},"scopes":{"type":"array","items":{"type":"string"}},"ttl":{"type":"integer"},"spend_limit":{"type":"number"}`, "agent_id"),
		http.MethodPost, "/v1/sessions", nil},
	{"getSession", "Get a session: scopes, spend, remaining budget and validity.",
		toolSchema(`"session_id":{"type":"string"}`, "session_id"),
		http.MethodGet, "/v1/sessions/{id}", map[string]string{"id": "session_id"}},
	{"revokeSession", "Revoke a session at once.",
		toolSchema(`"session_id":{"type":"string"}`, "session_id"),
		http.MethodDelete, "/v1/sessions/{id}", map[string]string{"id": "session_id"}},
	{"checkPermission", "Check whether a session grants a scope.",
		toolSchema(`"session_id":{"type":"string"},"scope":{"type":"string"}`, "session_id", "scope"),
		http.MethodPost, "/v1/sessions/{id}/check", map[string]string{"id": "session_id"}},
	{"storeSecret", "Store a secret in the vault; agents never see values unless a session holding its scope reads it.",
		toolSchema(`"name":{"type":"string"},"value":{"type":"string"},"scope_required":{"type":"string"}`, "name", "value"),
		http.MethodPost, "/v1/secrets", nil},
	{"getSecret", "Read a secret with a session holding its scope (every read is recorded).",
		toolSchema(`"name":{"type":"string"},"session_id":{"type":"string"}`, "name", "session_id"),
		http.MethodGet, "/v1/secrets/{name}", map[string]string{"name": "name"}},
	{"authorizePayment", "Authorize spend against a session's cap.",
		toolSchema(`"session_id":{"type":"string"},"amount":{"type":"number"},"description":{"type":"string"}`, "session_id", "amount"),
		http.MethodPost, "/v1/payments/authorize", nil},
	{"logAction", "Append an agent action to the audit trail.",
		toolSchema(`"session_id":{"type":"string"},"tool":{"type":"string"},"action":{"type":"string"},"cost_usd":{"type":"number"},"details":{"type":"object"}`, "session_id", "action"),
		http.MethodPost, "/v1/audit", nil},
	{"getAuditTrail", "Query the audit trail, newest first.",
		toolSchema(`"session_id":{"type":"string"},"agent_id":{"type":"string"},"limit":{"type":"integer"}`),
		http.MethodGet, "/v1/audit", nil},
	{"getSpend", "Spend summary, by tool.",
		toolSchema(`"session_id":{"type":"string"},"agent_id":{"type":"string"}`),
		http.MethodGet, "/v1/audit/spend", nil},
}

// OwnToolNames lists Haldir's own MCP tools.
func OwnToolNames() []string {
	out := make([]string, len(ownTools))
	for i, t := range ownTools {
		out[i] = t.name
	}
	return out
}

// need returns the key scope of the tool's route.
func (s *Server) need(t ownTool) domain.Need {
	for _, rt := range s.routes {
		if rt.method == t.method && rt.path == t.path {
			return rt.need
		}
	}
	panic("api: MCP tool " + t.name + " names no route") // a programmer error, caught by every test
}

// principal is the authenticated caller of an MCP request.
type principal struct {
	tenant, keyPrefix, requestID string
	scopes                       domain.KeyScopes
}

type principalKey struct{}

// innerKey marks a request the MCP transport dispatches to a route: it is
// not counted against the key's rate limit a second time.
type innerKey struct{}

func principalFrom(ctx context.Context) (principal, error) {
	p, ok := ctx.Value(principalKey{}).(principal)
	if !ok || p.tenant == "" {
		return p, errors.New("unauthenticated: send an API key (Authorization: Bearer hld_… or X-API-Key)")
	}
	return p, nil
}

func (p principal) actor() commands.Actor {
	return commands.Actor{Tenant: p.tenant, KeyPrefix: p.keyPrefix, RequestID: p.requestID, Route: "mcp"}
}

// mcpServer builds Haldir's MCP server over this API.
func (s *Server) mcpServer() *proxy.Server {
	return proxy.NewServer(proxy.ServerOptions{Name: "haldir", Version: s.opts.Version,
		Instructions: "Haldir governs agent tool calls: sessions, spend caps, secrets, approvals and an audit ledger. Pass the agent session in _meta[\"haldir/session\"] or the X-Haldir-Session header.",
		Tools:        s.mcpTools, Handle: s.mcpCall, Logger: s.log, DisableLocalhostProtection: true})
}

// mcp hands an authenticated JSON-RPC request to the MCP server, with the
// caller's tenant and key scopes in its context (tool-level scopes apply
// inside).
func (s *Server) mcp(c *call) error {
	p := principal{tenant: c.tenant, keyPrefix: c.key.Prefix, requestID: c.requestID, scopes: c.key.Scopes}
	r := c.r.Clone(context.WithValue(c.ctx, principalKey{}, p))
	r.Body = io.NopCloser(bytes.NewReader(c.body))
	r.ContentLength = int64(len(c.body))
	w := &mcpErrors{ResponseWriter: c.w, c: c}
	s.mcpHandler.ServeHTTP(w, r)
	return nil
}

// mcpErrors answers the MCP transport's own refusals (a missing Accept, a
// body that is not JSON-RPC, a wrong method), which the go-sdk writes as
// text/plain with parser internals, in JSON without internals: a JSON-RPC
// parse error where the body is not JSON, as the protocol calls for, and
// the API's error envelope otherwise. Successful answers, streamed or
// not, pass through untouched.
type mcpErrors struct {
	http.ResponseWriter
	c        *call
	replaced bool
}

func (w *mcpErrors) WriteHeader(status int) {
	h := w.Header()
	if status < 400 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	w.replaced = true
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	var body any
	switch {
	case status == http.StatusBadRequest && !json.Valid(w.c.body):
		body = map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{"code": -32700, "message": "Parse error: the body is not a JSON-RPC message"}}
	default:
		code, msg := domain.CodeInvalid, "the MCP request was refused by the transport ("+http.StatusText(status)+"); send JSON-RPC 2.0 over Streamable HTTP with Accept: application/json, text/event-stream"
		switch status {
		case http.StatusNotFound:
			code = domain.CodeNotFound
		case http.StatusUnsupportedMediaType:
			code = domain.CodeUnsupportedMedia
		case http.StatusRequestEntityTooLarge:
			code = domain.CodeTooLarge
		}
		body = map[string]any{"error": msg, "code": code, "request_id": w.c.requestID}
	}
	b, _ := json.Marshal(body)
	w.ResponseWriter.WriteHeader(status)
	w.ResponseWriter.Write(append(b, '\n'))
}

func (w *mcpErrors) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil // the transport's own text, never shown
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes streamed answers (SSE) on as they come.
func (w *mcpErrors) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.replaced {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *mcpErrors) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// mcpTools answers tools/list: Haldir's own tools the key may use, and the
// upstream tools the request's session may call.
func (s *Server) mcpTools(ctx context.Context, req *proxy.Request) ([]proxy.ToolDef, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	var out []proxy.ToolDef
	for _, t := range ownTools {
		if p.scopes.Allows(s.need(t)) {
			out = append(out, proxy.ToolDef{Name: t.name, Description: t.description, InputSchema: json.RawMessage(t.schema)})
		}
	}
	if req.Session == "" || s.deps.Upstreams == nil || !p.scopes.Allows(domain.Need{Resource: domain.Proxy, Access: domain.Write}) {
		return out, nil
	}
	ses, found, err := s.deps.Commands.Session(ctx, p.tenant, req.Session)
	if err != nil || !found || !ses.Valid(s.now()) {
		return out, err
	}
	tools, err := s.proxyTools(ctx, p.tenant)
	if err != nil {
		return nil, err
	}
	policies, err := s.deps.Queries.Policies(ctx, p.tenant)
	if err != nil {
		return nil, err
	}
	for _, t := range tools {
		up, tool, _ := domain.SplitTool(t.Name)
		if t.quarantined || !domain.Grants(ses.Scopes, domain.ToolScope(up, tool)) {
			continue
		}
		if d := domain.EvaluateStatic(policies, t.Name, 0, s.now()); d != nil && d.Type != domain.PolicyTimeWindow {
			continue // never callable; a time window only closes for a while
		}
		out = append(out, t.ToolDef)
	}
	return out, nil
}

// mcpCall answers tools/call.
func (s *Server) mcpCall(ctx context.Context, call *proxy.ToolCall) (*mcp.CallToolResult, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range ownTools {
		if t.name == call.Name {
			return s.ownToolCall(ctx, t, call)
		}
	}
	if !p.scopes.Allows(domain.Need{Resource: domain.Proxy, Access: domain.Write}) {
		return errResult(domain.CodeInsufficientScope, "this key lacks proxy:write"), nil
	}
	if s.deps.Governor == nil {
		return errResult(errNoProxy.Code, errNoProxy.Message), nil
	}
	cost := domain.Money(0)
	if v, ok := call.Meta["haldir/cost_usd"]; ok {
		m, valid := domain.ParseMoney(fmt.Sprint(v))
		if !valid || m < 0 {
			return nil, proxy.ErrInvalid
		}
		cost = m
	}
	result, refusal, err := s.deps.Governor.GovernCall(ctx, p.actor(), commands.Call{Tool: call.Name, Arguments: call.Arguments, SessionID: call.Session, Cost: cost})
	var de *domain.Error
	switch {
	case errors.As(err, &de):
		return errResult(de.Code, de.Message), nil
	case err != nil:
		return nil, err
	case refusal != nil:
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "blocked by Haldir: " + refusal.Reason}}}, nil
	}
	var out mcp.CallToolResult
	if err := json.Unmarshal(result, &out); err != nil {
		return nil, fmt.Errorf("api: an upstream result does not decode: %w", err)
	}
	return &out, nil
}

// ownToolCall runs one of Haldir's tools as a request to its route.
func (s *Server) ownToolCall(ctx context.Context, t ownTool, call *proxy.ToolCall) (*mcp.CallToolResult, error) {
	var args map[string]json.RawMessage
	if err := json.Unmarshal(call.Arguments, &args); err != nil {
		return nil, proxy.ErrInvalid
	}
	if args == nil {
		args = map[string]json.RawMessage{}
	}
	if _, ok := args["session_id"]; !ok && call.Session != "" {
		args["session_id"], _ = json.Marshal(call.Session)
	}
	req, err := s.routeRequest(ctx, t, args, call.Header)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return errResult(de.Code, de.Message), nil
		}
		return nil, err
	}
	rec := &recorder{header: http.Header{}}
	s.router.ServeHTTP(rec, req)
	body := bytes.TrimSpace(rec.body.Bytes())
	if rec.status < 300 {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(body)}}, StructuredContent: json.RawMessage(body)}, nil
	}
	var e struct {
		Code  domain.Code `json:"code"`
		Error string      `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Code == "" {
		return nil, fmt.Errorf("api: %s %s answered %d without an error envelope", t.method, t.path, rec.status)
	}
	return errResult(e.Code, e.Error), nil
}

// routeRequest builds the request to t's route: path variables from their
// arguments, the other arguments as the JSON body (POST) or the query
// (GET, DELETE), and the caller's credentials and request id.
func (s *Server) routeRequest(ctx context.Context, t ownTool, args map[string]json.RawMessage, header http.Header) (*http.Request, error) {
	path := t.path
	for v, arg := range t.vars {
		var val string
		if raw, ok := args[arg]; !ok || json.Unmarshal(raw, &val) != nil || val == "" {
			return nil, domain.Invalid(arg, "%s is required and must be a string", arg)
		}
		path = strings.Replace(path, "{"+v+"}", url.PathEscape(val), 1)
		delete(args, arg)
	}
	var body io.Reader
	if t.method == http.MethodPost {
		b, _ := json.Marshal(args)
		body = bytes.NewReader(b)
	} else if len(args) > 0 {
		q := url.Values{}
		for k, raw := range args {
			var str string
			if json.Unmarshal(raw, &str) != nil {
				str = string(raw) // numbers and booleans as their literals
			}
			q.Set(k, str)
		}
		path += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, innerKey{}, true), t.method, path, body)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"Authorization", "X-API-Key"} {
		if v := header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	if p, err := principalFrom(ctx); err == nil {
		req.Header.Set("X-Request-ID", p.requestID)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// recorder keeps a route's response for the MCP transport.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// errResult is a refusal as an agent sees it: "<code>: <message>".
func errResult(code domain.Code, msg string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: string(code) + ": " + msg}}}
}

// serverCard describes the MCP server for /.well-known/mcp/server-card.json.
func (s *Server) serverCard(c *call) (int, any, error) {
	base := &url.URL{Scheme: "http", Host: c.r.Host}
	if c.r.TLS != nil || c.r.Header.Get("X-Forwarded-Proto") == "https" {
		base.Scheme = "https"
	}
	tools := make([]map[string]any, len(ownTools))
	for i, t := range ownTools {
		tools[i] = map[string]any{"name": t.name, "description": t.description, "requiredScope": s.need(t).String(), "inputSchema": json.RawMessage(t.schema)}
	}
	endpoint := *base
	endpoint.Path = "/mcp"
	return http.StatusOK, map[string]any{
		"name": "haldir", "version": s.opts.Version,
		"description": "Governance for AI agents: scoped sessions, spend caps, a vault, human approvals and governed upstream MCP tools.",
		"transport":   map[string]any{"type": "streamable-http", "url": endpoint.String()},
		"authentication": map[string]any{"type": "bearer", "header": "Authorization",
			"description": "An API key (hld_…); key scopes apply per tool. X-API-Key is also accepted."},
		"session":       map[string]any{"meta": proxy.MetaKeySession, "header": "X-Haldir-Session"},
		"tools":         tools,
		"upstreamTools": "tools of registered upstreams, named <upstream>.<tool>, listed per agent session",
	}, nil
}
