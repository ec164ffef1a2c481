package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// waitFor polls cond every few milliseconds until it returns true, failing
// the test with what when the deadline passes first.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C // polling interval, not a wait for the condition
	}
}

// inCI reports whether the tests run under CI=true, where optional
// dependencies (npm packages) must be present.
func inCI() bool { return os.Getenv("CI") == "true" }

// requireOrSkip skips the test when ok is false, or fails it under CI.
func requireOrSkip(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (required when CI=true)", msg)
	}
	t.Skip(msg)
}

type echoIn struct {
	Message string `json:"message" jsonschema:"text to echo"`
}

type addIn struct {
	A float64 `json:"a"`
	B float64 `json:"b"`
}

type addOut struct {
	Sum float64 `json:"sum"`
}

type sleepIn struct {
	Millis int `json:"millis"`
}

// testUpstream is a real go-sdk MCP server with a few tools, whose echo
// description can change and which records cancelled sleeps.
type testUpstream struct {
	server    *mcp.Server
	cancelled chan struct{} // a sleep tool call saw its context end (cap 16)
	mu        sync.Mutex
	headers   []http.Header // headers of every HTTP request seen
}

// newTestUpstream returns an upstream whose echo tool has the given
// description.
func newTestUpstream(echoDescription string) *testUpstream {
	u := &testUpstream{
		server:    mcp.NewServer(&mcp.Implementation{Name: "test-upstream", Version: "1.0.0"}, nil),
		cancelled: make(chan struct{}, 16),
	}
	u.setEcho(echoDescription)
	mcp.AddTool(u.server, &mcp.Tool{Name: "add", Description: "Adds two numbers."},
		func(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, addOut, error) {
			return nil, addOut{Sum: in.A + in.B}, nil
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "sleep", Description: "Sleeps for millis milliseconds."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in sleepIn) (*mcp.CallToolResult, any, error) {
			t := time.NewTimer(time.Duration(in.Millis) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "slept"}}}, nil, nil
			case <-ctx.Done():
				select {
				case u.cancelled <- struct{}{}:
				default:
				}
				return nil, nil, ctx.Err()
			}
		})
	mcp.AddTool(u.server, &mcp.Tool{Name: "fail", Description: "Always fails."},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return nil, nil, errors.New("this tool always fails")
		})
	return u
}

// setEcho (re)defines the echo tool with a description.
func (u *testUpstream) setEcho(description string) {
	mcp.AddTool(u.server, &mcp.Tool{Name: "echo", Description: description},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Message}}}, nil, nil
		})
}

// recordHeaders wraps h to remember each request's headers.
func (u *testUpstream) recordHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// seenHeaders returns the headers of the requests seen so far.
func (u *testUpstream) seenHeaders() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

// streamableHandler serves the upstream over Streamable HTTP.
func (u *testUpstream) streamableHandler() http.Handler {
	return u.recordHeaders(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server }, nil))
}

// sseHandler serves the upstream over the legacy SSE transport.
func (u *testUpstream) sseHandler() http.Handler {
	return u.recordHeaders(mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return u.server }, nil))
}

// startHTTP serves h on addr ("" for any port) and closes it, hanging
// requests included, when the test ends.
func startHTTP(t testing.TB, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listening on %s again: %v", addr, err)
		}
		ts.Listener.Close()
		ts.Listener = l
	}
	ts.Start()
	t.Cleanup(func() { stopHTTP(ts) })
	return ts
}

// stopHTTP closes ts even while MCP streams hang on it; it is idempotent.
func stopHTTP(ts *httptest.Server) {
	ts.CloseClientConnections()
	ts.Close()
}

// newTestPool returns a pool with quick backoff, closed when the test ends.
func newTestPool(t testing.TB, opts PoolOptions) *Pool {
	t.Helper()
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 10 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 100 * time.Millisecond
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	p := NewPool(opts)
	t.Cleanup(func() { p.Close() })
	return p
}

// textOf returns the text of a result's only text content.
func textOf(t testing.TB, res *mcp.CallToolResult) string {
	t.Helper()
	if res == nil || len(res.Content) != 1 {
		t.Fatalf("result %+v: want exactly one content", res)
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("result content is %T, want *mcp.TextContent", res.Content[0])
	}
	return tc.Text
}

// toolNames returns the names of defs.
func toolNames(defs []ToolDef) []string {
	names := make([]string, 0, len(defs))
	for _, d := range defs {
		names = append(names, d.Name)
	}
	return names
}
