package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// helperEnv selects a helper mode of this test binary, so tests can run a
// real stdio MCP process without building one.
const helperEnv = "HALDIR_PROXY_TEST_HELPER"

// The helper modes.
const (
	// helperUpstream serves the test upstream (plus an "exit" tool that
	// kills the process) over stdio.
	helperUpstream = "upstream-stdio"
	// helperHaldir serves a proxy Server with ServeStdio, presenting
	// HALDIR_API_KEY as a Bearer token.
	helperHaldir = "haldir-stdio"
)

// TestMain runs a helper mode instead of the tests when helperEnv is set.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case helperUpstream:
		up := newTestUpstream("Echoes.")
		mcp.AddTool(up.server, &mcp.Tool{Name: "exit", Description: "Exits the process."},
			func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
				os.Exit(3)
				return nil, nil, nil
			})
		exitWith(up.server.Run(context.Background(), &mcp.StdioTransport{}))
	case helperHaldir:
		s := NewServer(ServerOptions{
			Name: "haldir-test",
			Tools: func(_ context.Context, r *Request) ([]ToolDef, error) {
				return []ToolDef{{Name: "haldir.whoami", Description: "Tells who is asking.", InputSchema: json.RawMessage(`{"type":"object"}`)}}, nil
			},
			Handle: func(_ context.Context, c *ToolCall) (*mcp.CallToolResult, error) {
				b, _ := json.Marshal(map[string]string{"tool": c.Name, "key": c.APIKey(), "session": c.Session, "transport": c.Transport, "args": string(c.Arguments)})
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil
			},
		})
		header := http.Header{}
		header.Set("Authorization", "Bearer "+os.Getenv("HALDIR_API_KEY"))
		header.Set(HeaderSession, os.Getenv("HALDIR_SESSION"))
		exitWith(s.ServeStdio(context.Background(), header))
	}
	os.Exit(m.Run())
}

// exitWith ends a helper process.
func exitWith(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
