package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/api"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/cli"
)

type echoIn struct {
	Message string `json:"message"`
}

type pathIn struct {
	Path string `json:"path"`
}

// startUpstream serves a go-sdk MCP server with echo and delete tools over
// Streamable HTTP, and returns its URL.
func startUpstream(t *testing.T) string {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "Echoes a message."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Message}}}, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "delete", Description: "Deletes a file."},
		func(_ context.Context, _ *mcp.CallToolRequest, in pathIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deleted " + in.Path}}}, nil, nil
		})
	mux := http.NewServeMux()
	mux.Handle("/", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts.URL
}

// stdioMCP runs `haldir mcp args…` in-process on pipes and connects the
// go-sdk client to it; stderr collects what the command reports.
func stdioMCP(t *testing.T, stderr *bytes.Buffer, args ...string) (*mcp.ClientSession, <-chan int) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- cli.Main(context.Background(), append([]string{"mcp"}, args...), inR, outW, stderr)
		outW.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil).Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatalf("connect to haldir mcp: %v (stderr: %s)", err, stderr)
	}
	return cs, code
}

// TestMCPOverStdio drives `haldir mcp` with the go-sdk client over its
// stdin and stdout: the server's own tools and a governed upstream tool,
// relayed to a real server's /mcp with HALDIR_API_KEY; the command exits 0
// when stdin closes.
func TestMCPOverStdio(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("stdio")
	other := s.NewTenant("other")
	up := startUpstream(t)
	c.Do("POST", "/v1/proxy/upstreams", map[string]any{"name": "files", "url": up}).Expect(t, 201)
	c.Do("POST", "/v1/proxy/policies", map[string]any{"type": "deny_list", "tools": []string{"files.delete"}}).Expect(t, 201)
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "desktop", "scopes": []string{"read", "tool:files"}}).Expect(t, 201).Str("session_id")
	t.Setenv("HALDIR_CONFIG_FILE", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("HALDIR_BASE_URL", s.URL)
	t.Setenv("HALDIR_API_KEY", c.Key)

	var stderr bytes.Buffer
	cs, code := stdioMCP(t, &stderr, "--session", ses)
	ctx := context.Background()
	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	want := append(api.OwnToolNames(), "files.echo")
	if !slices.Equal(names, want) {
		t.Errorf("tools = %v, want %v", names, want)
	}
	text := func(res *mcp.CallToolResult) string {
		var sb strings.Builder
		for _, c := range res.Content {
			sb.WriteString(c.(*mcp.TextContent).Text)
		}
		return sb.String()
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "files.echo", Arguments: map[string]any{"message": "over stdio"}})
	if err != nil || res.IsError || text(res) != "echo: over stdio" {
		t.Fatalf("files.echo: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "files.delete", Arguments: map[string]any{"path": "/"}})
	if err != nil || !res.IsError || !strings.Contains(text(res), "blocked by Haldir") {
		t.Fatalf("files.delete: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "getSession", Arguments: map[string]any{"session_id": ses}})
	var got struct {
		AgentID string `json:"agent_id"`
	}
	if err != nil || res.IsError || json.Unmarshal([]byte(text(res)), &got) != nil || got.AgentID != "desktop" {
		t.Fatalf("getSession: %v %+v", err, res)
	}
	// The audit trail records the relayed call under this tenant only.
	if r := c.Do("GET", "/v1/audit?tool=files.echo", nil); !strings.Contains(string(r.Raw), "call_allowed") {
		t.Errorf("the relayed call is not audited: %s", r.Raw)
	}
	if r := other.Do("GET", "/v1/audit?tool=files.echo", nil); r.Num("count") != 0 {
		t.Errorf("the other tenant sees the call: %s", r.Raw)
	}
	cs.Close()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("haldir mcp exited %d: %s", c, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("haldir mcp did not exit when its stdin closed")
	}
	if strings.Contains(stderr.String(), c.Key) {
		t.Error("haldir mcp printed the API key")
	}
}

// TestMCPOverStdioRefusesABadKey: a key the server refuses makes every
// request fail with an error the MCP client can show, not a hang.
func TestMCPOverStdioRefusesABadKey(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	t.Setenv("HALDIR_CONFIG_FILE", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("HALDIR_BASE_URL", s.URL)
	t.Setenv("HALDIR_API_KEY", "hld_"+strings.Repeat("x", 43))
	var stderr bytes.Buffer
	cs, _ := stdioMCP(t, &stderr)
	defer cs.Close()
	_, err := cs.ListTools(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "refused the API key") {
		t.Errorf("tools/list with a bad key: %v", err)
	}
	t.Setenv("HALDIR_API_KEY", "")
	if r := run(t, "", "mcp"); r.code != cli.ExitAuth || !strings.Contains(r.stderr, "HALDIR_API_KEY") {
		t.Errorf("haldir mcp without a key: %d %q", r.code, r.stderr)
	}
}
