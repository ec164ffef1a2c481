package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Where a Request's agent session id may come from, in order of
// precedence (see Request.Session).
const (
	// MetaKeySession is the preferred _meta key for the Haldir session id.
	MetaKeySession = "haldir/session"
	// MetaKeySessionID is the _meta key older Haldir clients send.
	MetaKeySessionID = "session_id"
	// HeaderSession is the HTTP header carrying the Haldir session id.
	HeaderSession = "X-Haldir-Session"
)

// DefaultMaxRequestBytes is the default ServerOptions.MaxRequestBytes: 1 MiB,
// as for every Haldir endpoint.
const DefaultMaxRequestBytes = 1 << 20

// The values of Request.Transport.
const (
	// ServerTransportHTTP marks requests that came through HTTPHandler.
	ServerTransportHTTP = "http"
	// ServerTransportStdio marks requests that came through ServeStdio or
	// Serve.
	ServerTransportStdio = "stdio"
)

// ServerOptions configures a Server. Tools and Handle are required.
type ServerOptions struct {
	// Name and Version identify the server in the MCP handshake
	// ("haldir", "dev").
	Name, Version string
	// Instructions, if set, are sent to clients in the handshake.
	Instructions string
	// Tools returns the tools to list for one tools/list request; it is
	// called for every request, so the list may depend on the API key, the
	// agent session or anything else in req. An error is answered as
	// described for Handle.
	Tools func(ctx context.Context, req *Request) ([]ToolDef, error)
	// Handle answers every tools/call. It receives the tool name exactly
	// as the client sent it, whether or not Tools listed it, so it must
	// authorise the call itself. A result with IsError set is how a
	// refusal reaches the agent. An error becomes a JSON-RPC error answer:
	// a *jsonrpc.Error in its chain is sent as is; ErrNotFound becomes
	// "unknown tool" and ErrInvalid "invalid params" (code -32602); any
	// other error is logged and answered "internal error" (code -32603),
	// so its text never reaches the client.
	Handle func(ctx context.Context, call *ToolCall) (*mcp.CallToolResult, error)
	// MaxRequestBytes caps an HTTP request body; larger bodies are answered
	// 413 (DefaultMaxRequestBytes).
	MaxRequestBytes int64
	// DisableLocalhostProtection turns off the go-sdk's DNS-rebinding
	// guard, which answers 403 to a request that reaches a loopback address
	// under a non-loopback Host header. Set it only when a reverse proxy on
	// the same host forwards to Haldir over loopback.
	DisableLocalhostProtection bool
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
}

// Request is what a Tools or Handle callback learns about the MCP request
// it serves.
type Request struct {
	// Transport is ServerTransportHTTP or ServerTransportStdio.
	Transport string
	// Header holds the HTTP request's headers, or for stdio the header
	// given to ServeStdio. It is a copy and never nil.
	Header http.Header
	// Meta is the request's params._meta, nil when absent. Under MCP
	// 2026-07-28 it also carries the client's protocol version and
	// capabilities.
	Meta map[string]any
	// Session is the agent session id: the string _meta["haldir/session"],
	// else the string _meta["session_id"], else the X-Haldir-Session
	// header, else "". A non-string value under either _meta key is
	// answered "invalid params" before any callback runs.
	Session string
}

// APIKey returns the API key the request presents: the token of an
// "Authorization: Bearer <token>" header (scheme matched case-insensitively),
// else the X-API-Key header, else "".
func (r *Request) APIKey() string {
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if token = strings.TrimSpace(token); token != "" {
			return token
		}
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// ToolCall is one tools/call request.
type ToolCall struct {
	Request
	// Name is the tool name as the client sent it; for an upstream tool,
	// the namespaced "<upstream>.<tool>".
	Name string
	// Arguments is params.arguments as received: JSON, "{}" when absent.
	Arguments json.RawMessage
}

// Server is Haldir's own MCP server: tools/list and tools/call answered by
// the ServerOptions callbacks, served over Streamable HTTP (HTTPHandler) or
// stdio (ServeStdio). It is safe for concurrent use.
type Server struct {
	opts ServerOptions
	http http.Handler
}

// NewServer returns a Server for opts; it panics when opts.Tools or
// opts.Handle is nil, a programmer error.
func NewServer(opts ServerOptions) *Server {
	if opts.Tools == nil || opts.Handle == nil {
		panic("proxy: NewServer needs both Tools and Handle")
	}
	if opts.Name == "" {
		opts.Name = "haldir"
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	srv := s.mcpServer(ServerTransportHTTP, nil)
	s.http = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless:                    true,
		JSONResponse:                 true,
		MaxRequestBodyBytes:          opts.MaxRequestBytes,
		Logger:                       opts.Logger,
		PropagateRequestCancellation: true,
		DisableLocalhostProtection:   opts.DisableLocalhostProtection,
	})
	return s
}

// HTTPHandler returns the Streamable HTTP handler for /mcp. It is
// stateless: it issues no Mcp-Session-Id, answers every POST on its own
// with a JSON body (never an SSE stream), answers GET and DELETE 405, and
// calls Tools and Handle with that POST's headers. Handler contexts carry
// the values of the HTTP request's context, and under MCP 2026-07-28 end
// when the client goes away. It refuses requests that reach a loopback
// address under a non-loopback Host (DNS rebinding; see
// ServerOptions.DisableLocalhostProtection) with 403, and bodies over
// MaxRequestBytes with 413. Authentication is the caller's: wrap the
// handler, or check Request.APIKey in the callbacks.
func (s *Server) HTTPHandler() http.Handler { return s.http }

// ServeStdio serves one MCP session over the process's stdin and stdout
// until ctx ends or stdin closes, presenting header (for example an
// Authorization header built from HALDIR_API_KEY) as every request's
// Header. It returns ctx's error or the session's.
func (s *Server) ServeStdio(ctx context.Context, header http.Header) error {
	return s.Serve(ctx, &mcp.StdioTransport{}, header)
}

// Serve is ServeStdio over any go-sdk transport, such as an
// mcp.IOTransport over pipes. Handler contexts carry ctx's values.
func (s *Server) Serve(ctx context.Context, t mcp.Transport, header http.Header) error {
	return s.mcpServer(ServerTransportStdio, header.Clone()).Run(ctx, t)
}

// mcpServer returns a go-sdk server whose tools/list and tools/call are
// answered by the callbacks. The go-sdk keeps one static tool set per
// mcp.Server; instead of registering tools, a receiving middleware answers
// both methods itself, per request, so one server serves every tenant,
// key and session. static, if not nil, stands in for HTTP headers.
func (s *Server) mcpServer(transport string, static http.Header) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: s.opts.Name, Version: s.opts.Version}, &mcp.ServerOptions{
		Instructions: s.opts.Instructions,
		Logger:       s.opts.Logger,
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
	})
	srv.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch r := req.(type) {
			case *mcp.ListToolsRequest:
				var meta map[string]any
				if r.Params != nil { // absent params are allowed
					meta = r.Params.Meta
				}
				return s.listTools(ctx, s.request(transport, static, r.Extra, meta))
			case *mcp.CallToolRequest:
				if r.Params == nil {
					return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "missing params"}
				}
				return s.callTool(ctx, s.request(transport, static, r.Extra, r.Params.Meta), r.Params)
			}
			return next(ctx, method, req)
		}
	})
	return srv
}

// request builds the callbacks' Request; the session is resolved later.
func (s *Server) request(transport string, static http.Header, extra *mcp.RequestExtra, meta map[string]any) *Request {
	r := &Request{Transport: transport, Header: static.Clone(), Meta: meta}
	if extra != nil && extra.Header != nil {
		r.Header = extra.Header.Clone()
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	return r
}

// resolveSession sets r.Session (see Request.Session).
func resolveSession(r *Request) error {
	for _, key := range [...]string{MetaKeySession, MetaKeySessionID} {
		v, ok := r.Meta[key]
		if !ok {
			continue
		}
		id, ok := v.(string)
		if !ok {
			return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("_meta %q must be a string", key)}
		}
		r.Session = id
		return nil
	}
	r.Session = r.Header.Get(HeaderSession)
	return nil
}

// listTools answers tools/list.
func (s *Server) listTools(ctx context.Context, r *Request) (*mcp.ListToolsResult, error) {
	if err := resolveSession(r); err != nil {
		return nil, err
	}
	defs, err := s.opts.Tools(ctx, r)
	if err != nil {
		return nil, s.rpcError("tools/list", "", err)
	}
	res := &mcp.ListToolsResult{Tools: make([]*mcp.Tool, 0, len(defs))}
	// The list depends on who asks: nobody may cache it for anyone else.
	res.Cacheable = mcp.Cacheable{TTLMs: 0, CacheScope: "private"}
	for _, d := range defs {
		schema := d.InputSchema
		if len(schema) == 0 {
			schema = json.RawMessage(defaultInputSchema)
		}
		res.Tools = append(res.Tools, &mcp.Tool{Name: d.Name, Description: d.Description, InputSchema: schema})
	}
	return res, nil
}

// callTool answers tools/call.
func (s *Server) callTool(ctx context.Context, r *Request, p *mcp.CallToolParamsRaw) (*mcp.CallToolResult, error) {
	if err := resolveSession(r); err != nil {
		return nil, err
	}
	call := &ToolCall{Request: *r, Name: p.Name, Arguments: p.Arguments}
	if len(call.Arguments) == 0 {
		call.Arguments = json.RawMessage("{}")
	}
	res, err := s.opts.Handle(ctx, call)
	if err == nil && res == nil {
		err = errors.New("Handle returned no result and no error")
	}
	if err != nil {
		return nil, s.rpcError("tools/call", p.Name, err)
	}
	if res.Content == nil {
		copied := *res
		copied.Content = []mcp.Content{} // never "content": null
		res = &copied
	}
	return res, nil
}

// rpcError turns a callback's error into the JSON-RPC error sent to the
// client (see ServerOptions.Handle).
func (s *Server) rpcError(method, tool string, err error) error {
	var werr *jsonrpc.Error
	switch {
	case errors.As(err, &werr):
		return werr
	case errors.Is(err, ErrNotFound) && tool != "":
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", tool)}
	case errors.Is(err, ErrInvalid):
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "invalid params"}
	}
	s.opts.Logger.Error("proxy: MCP callback failed", "method", method, "tool", tool, "error", err)
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
}
