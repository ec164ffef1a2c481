package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/haldir-dev/haldir/proxy"
)

func newMCP(e *env) *cobra.Command {
	var session string
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve Haldir's MCP tools over stdio, for an mcpServers entry (bridged to the server's /mcp)",
		Long: `haldir mcp speaks MCP on standard input and output and relays every request
to the Haldir server's /mcp endpoint with HALDIR_API_KEY, so an MCP client
such as Claude Desktop or Cursor gets Haldir's ten tools and the governed
upstream tools its agent session may call. The session comes from --session
(HALDIR_SESSION) or from each request's _meta "haldir/session".`,
		Example: `  HALDIR_API_KEY=hld_… haldir mcp

  # mcpServers entry:
  {"mcpServers": {"haldir": {"command": "haldir", "args": ["mcp"],
    "env": {"HALDIR_API_KEY": "hld_…", "HALDIR_BASE_URL": "http://localhost:8000"}}}}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.remote()
			if err != nil {
				return err
			}
			if c.Key == "" {
				return fail(ExitAuth, "haldir mcp needs an API key: set HALDIR_API_KEY or run 'haldir login'")
			}
			if session == "" {
				session = os.Getenv("HALDIR_SESSION")
			}
			b := &mcpBridge{endpoint: c.BaseURL + "/mcp", header: http.Header{"Authorization": {"Bearer " + c.Key}, "User-Agent": {"haldir-mcp/" + Version}}}
			defer b.close()
			static := http.Header{}
			if session != "" {
				static.Set(proxy.HeaderSession, session)
			}
			srv := proxy.NewServer(proxy.ServerOptions{Name: "haldir", Version: Version, Tools: b.tools, Handle: b.handle,
				Instructions: "Haldir governs agent tool calls: sessions, spend caps, secrets, approvals and an audit ledger."})
			t := &mcp.IOTransport{Reader: io.NopCloser(e.stdin), Writer: nopWriteCloser{e.stdout}}
			if err := srv.Serve(cmd.Context(), t, static); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
				return fail(ExitCheckFailed, "the MCP session ended: %v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&session, "session", "", "agent session for governed upstream tools (env HALDIR_SESSION)")
	return cmd
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// mcpBridge relays tools/list and tools/call to a Haldir server's /mcp
// with a go-sdk client, connecting on first use and again after a failure.
type mcpBridge struct {
	endpoint string
	header   http.Header

	mu sync.Mutex
	cs *mcp.ClientSession
}

// session returns the connected client session.
func (b *mcpBridge) session(ctx context.Context) (*mcp.ClientSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cs != nil {
		return b.cs, nil
	}
	rt := &headerRoundTripper{header: b.header, next: http.DefaultTransport}
	hc := &http.Client{Transport: rt, Timeout: 5 * time.Minute}
	tr := &mcp.StreamableClientTransport{Endpoint: b.endpoint, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "haldir-mcp", Version: Version}, nil).Connect(ctx, tr, nil)
	if err != nil && rt.refused.Load() {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("Haldir at %s refused the API key (HTTP 401): set HALDIR_API_KEY to a valid key", b.endpoint)}
	}
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("cannot reach Haldir at %s: %v", b.endpoint, err)}
	}
	b.cs = cs
	return cs, nil
}

// reset drops a session that failed, so the next request reconnects.
func (b *mcpBridge) reset(cs *mcp.ClientSession) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cs == cs {
		b.cs.Close()
		b.cs = nil
	}
}

func (b *mcpBridge) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cs != nil {
		b.cs.Close()
	}
}

func meta(r *proxy.Request) mcp.Meta {
	if r.Session == "" {
		return nil
	}
	return mcp.Meta{proxy.MetaKeySession: r.Session}
}

// relayErr passes the server's JSON-RPC errors on as they are, and turns
// anything else (a broken connection) into one the client can read.
func (b *mcpBridge) relayErr(cs *mcp.ClientSession, err error) error {
	var werr *jsonrpc.Error
	if errors.As(err, &werr) {
		return werr
	}
	b.reset(cs)
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("Haldir at %s did not answer: %v", b.endpoint, err)}
}

func (b *mcpBridge) tools(ctx context.Context, r *proxy.Request) ([]proxy.ToolDef, error) {
	cs, err := b.session(ctx)
	if err != nil {
		return nil, err
	}
	res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Meta: meta(r)})
	if err != nil {
		return nil, b.relayErr(cs, err)
	}
	out := make([]proxy.ToolDef, 0, len(res.Tools))
	for _, t := range res.Tools {
		schema, err := json.Marshal(t.InputSchema)
		if err != nil {
			return nil, err
		}
		out = append(out, proxy.ToolDef{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	return out, nil
}

func (b *mcpBridge) handle(ctx context.Context, call *proxy.ToolCall) (*mcp.CallToolResult, error) {
	cs, err := b.session(ctx)
	if err != nil {
		return nil, err
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: call.Name, Arguments: call.Arguments, Meta: meta(&call.Request)})
	if err != nil {
		return nil, b.relayErr(cs, err)
	}
	return res, nil
}

// headerRoundTripper adds fixed headers to every request, and notes
// whether the server refused the key.
type headerRoundTripper struct {
	header  http.Header
	next    http.RoundTripper
	refused atomic.Bool
}

func (h *headerRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header[k] = v
	}
	resp, err := h.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		h.refused.Store(true)
	}
	return resp, err
}
