package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// recordedCall is what a Handle callback saw.
type recordedCall struct {
	Transport string
	Name      string
	Arguments string
	APIKey    string
	Session   string
	Header    string // a test header's value
	Meta      map[string]any
}

// testHaldir is a Server whose tool list depends on the API key and whose
// Handle records every call.
type testHaldir struct {
	server *Server
	mu     sync.Mutex
	calls  []recordedCall
	lists  []string // API keys of tools/list requests
}

// testHaldirTools returns the tool list testHaldir shows an API key.
func testHaldirTools(key string) []ToolDef {
	getSession := ToolDef{Name: "haldir.getSession", Description: "Reads a session.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"session_id":{"type":"string"}}}`)}
	switch key {
	case "hld_reader":
		return []ToolDef{getSession}
	case "hld_admin":
		return []ToolDef{getSession, {Name: "up.echo", Description: "Echoes.", Upstream: "up"}} // no schema: {"type":"object"} is sent
	}
	return nil
}

func newTestHaldir() *testHaldir {
	h := &testHaldir{}
	h.server = NewServer(ServerOptions{
		Name:    "haldir-test",
		Version: "0.0.1",
		Tools: func(_ context.Context, r *Request) ([]ToolDef, error) {
			h.mu.Lock()
			h.lists = append(h.lists, r.APIKey())
			h.mu.Unlock()
			switch key := r.APIKey(); key {
			case "":
				return nil, &jsonrpc.Error{Code: -32001, Message: "unauthenticated"}
			case "hld_broken":
				return nil, errors.New("database password is hunter2") // must not reach the client
			default:
				return testHaldirTools(key), nil
			}
		},
		Handle: func(_ context.Context, c *ToolCall) (*mcp.CallToolResult, error) {
			h.mu.Lock()
			h.calls = append(h.calls, recordedCall{
				Transport: c.Transport, Name: c.Name, Arguments: string(c.Arguments), APIKey: c.APIKey(),
				Session: c.Session, Header: c.Header.Get("X-Test"), Meta: c.Meta,
			})
			h.mu.Unlock()
			switch c.Name {
			case "haldir.denied":
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "denied by policy"}}}, nil
			case "haldir.missing":
				return nil, ErrNotFound
			case "haldir.empty":
				return &mcp.CallToolResult{}, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok " + c.Name}}}, nil
		},
	})
	return h
}

// lastCall returns the most recent recorded call.
func (h *testHaldir) lastCall() recordedCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) == 0 {
		return recordedCall{}
	}
	return h.calls[len(h.calls)-1]
}

// headerClient returns an HTTP client that adds headers to every request.
func headerClient(headers map[string]string) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		for k, v := range headers {
			r.Header.Set(k, v)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

// connectGo connects a go-sdk client to url with headers.
func connectGo(t testing.TB, url string, headers map[string]string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "go-test-client", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: headerClient(headers)}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// listedNames returns the names of a tools/list answer.
func listedNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

// TestServerHTTPPerRequestTools checks that the tool list follows the API
// key of each request, and that callback errors are answered without
// leaking their text.
func TestServerHTTPPerRequestTools(t *testing.T) {
	h := newTestHaldir()
	ts := startHTTP(t, "", h.server.HTTPHandler())
	tests := []struct {
		name      string
		headers   map[string]string
		want      []string
		wantError string
	}{
		{name: "bearer reader key", headers: map[string]string{"Authorization": "Bearer hld_reader"}, want: []string{"haldir.getSession"}},
		{name: "x-api-key admin key", headers: map[string]string{"X-API-Key": "hld_admin"}, want: []string{"haldir.getSession", "up.echo"}},
		{name: "unknown key lists nothing", headers: map[string]string{"X-API-Key": "hld_other"}, want: nil},
		{name: "no key", headers: nil, wantError: "unauthenticated"},
		{name: "internal error is not leaked", headers: map[string]string{"X-API-Key": "hld_broken"}, wantError: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := connectGo(t, ts.URL, tt.headers)
			res, err := cs.ListTools(context.Background(), nil)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("ListTools error = %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tool := range res.Tools {
				got = append(got, tool.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("tools (-want +got):\n%s", diff)
			}
			for _, tool := range res.Tools {
				if tool.Name == "up.echo" {
					if diff := cmp.Diff(map[string]any{"type": "object"}, tool.InputSchema); diff != "" {
						t.Errorf("default input schema (-want +got):\n%s", diff)
					}
				}
			}
		})
	}

	// One client whose key changes between requests sees the list change:
	// nothing is cached per connection.
	key := "hld_reader"
	var mu sync.Mutex
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		mu.Lock()
		r.Header.Set("X-API-Key", key)
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := mcp.NewClient(&mcp.Implementation{Name: "switcher", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: ts.URL, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := listedNames(t, cs); len(got) != 1 {
		t.Fatalf("reader sees %v", got)
	}
	mu.Lock()
	key = "hld_admin"
	mu.Unlock()
	if got := listedNames(t, cs); len(got) != 2 {
		t.Errorf("after switching to the admin key the same client sees %v, want 2 tools", got)
	}
}

// TestServerHTTPCall checks what Handle receives for tools/call over HTTP:
// the name as sent, the arguments, the headers and _meta, and the session
// from _meta or the header.
func TestServerHTTPCall(t *testing.T) {
	h := newTestHaldir()
	ts := startHTTP(t, "", h.server.HTTPHandler())
	tests := []struct {
		name     string
		headers  map[string]string
		params   *mcp.CallToolParams
		want     recordedCall
		wantText string
		isError  bool
		wantErr  string
	}{
		{
			name:    "session from _meta haldir/session wins over the header",
			headers: map[string]string{"Authorization": "Bearer hld_admin", HeaderSession: "ses_header", "X-Test": "t1"},
			params: &mcp.CallToolParams{Name: "up.echo", Arguments: map[string]any{"message": "hi"},
				Meta: mcp.Meta{MetaKeySession: "ses_meta", "trace": "abc"}},
			want: recordedCall{Transport: "http", Name: "up.echo", Arguments: `{"message":"hi"}`, APIKey: "hld_admin",
				Session: "ses_meta", Header: "t1", Meta: map[string]any{MetaKeySession: "ses_meta", "trace": "abc"}},
			wantText: "ok up.echo",
		},
		{
			name:     "session from _meta session_id",
			headers:  map[string]string{"X-API-Key": "hld_admin"},
			params:   &mcp.CallToolParams{Name: "haldir.getSession", Meta: mcp.Meta{MetaKeySessionID: "ses_old"}},
			want:     recordedCall{Transport: "http", Name: "haldir.getSession", Arguments: `{}`, APIKey: "hld_admin", Session: "ses_old", Meta: map[string]any{MetaKeySessionID: "ses_old"}},
			wantText: "ok haldir.getSession",
		},
		{
			name:     "session from the X-Haldir-Session header",
			headers:  map[string]string{"X-API-Key": "hld_admin", HeaderSession: "ses_header"},
			params:   &mcp.CallToolParams{Name: "haldir.getSession", Arguments: map[string]any{}},
			want:     recordedCall{Transport: "http", Name: "haldir.getSession", Arguments: `{}`, APIKey: "hld_admin", Session: "ses_header"},
			wantText: "ok haldir.getSession",
		},
		{
			name:    "a refusal is a result with isError",
			headers: map[string]string{"X-API-Key": "hld_admin"},
			params:  &mcp.CallToolParams{Name: "haldir.denied"},
			want:    recordedCall{Transport: "http", Name: "haldir.denied", Arguments: `{}`, APIKey: "hld_admin"},
			// the text is checked below
			wantText: "denied by policy",
			isError:  true,
		},
		{
			name:     "a result without content gets an empty list",
			headers:  map[string]string{"X-API-Key": "hld_admin"},
			params:   &mcp.CallToolParams{Name: "haldir.empty"},
			want:     recordedCall{Transport: "http", Name: "haldir.empty", Arguments: `{}`, APIKey: "hld_admin"},
			wantText: "",
		},
		{
			name:    "ErrNotFound becomes unknown tool",
			headers: map[string]string{"X-API-Key": "hld_admin"},
			params:  &mcp.CallToolParams{Name: "haldir.missing"},
			want:    recordedCall{Transport: "http", Name: "haldir.missing", Arguments: `{}`, APIKey: "hld_admin"},
			wantErr: `unknown tool "haldir.missing"`,
		},
		{
			name:    "a non-string session in _meta is refused before Handle",
			headers: map[string]string{"X-API-Key": "hld_admin"},
			params:  &mcp.CallToolParams{Name: "haldir.never", Meta: mcp.Meta{MetaKeySession: 42}},
			wantErr: `_meta "haldir/session" must be a string`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := connectGo(t, ts.URL, tt.headers)
			before := h.lastCall()
			res, err := cs.CallTool(context.Background(), tt.params)
			got := h.lastCall()
			if tt.want.Name == "" {
				got = recordedCall{} // Handle must not have run
				if diff := cmp.Diff(before, h.lastCall()); diff != "" {
					t.Errorf("Handle ran (-before +after):\n%s", diff)
				}
			}
			// The go-sdk client adds MCP 2026-07-28 protocol fields to
			// _meta; compare only the keys the test sent.
			got.Meta = onlyKeys(got.Meta, tt.want.Meta)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); tt.want.Name != "" && diff != "" {
				t.Errorf("Handle saw (-want +got):\n%s", diff)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CallTool error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError != tt.isError {
				t.Errorf("IsError = %v, want %v", res.IsError, tt.isError)
			}
			if tt.wantText == "" {
				if len(res.Content) != 0 {
					t.Errorf("content = %v, want none", res.Content)
				}
				return
			}
			if got := textOf(t, res); got != tt.wantText {
				t.Errorf("text = %q, want %q", got, tt.wantText)
			}
		})
	}
}

// onlyKeys returns the entries of m whose keys want has (nil when want has
// none), to compare _meta without the protocol's own fields.
func onlyKeys(m, want map[string]any) map[string]any {
	if len(want) == 0 {
		return nil
	}
	out := make(map[string]any)
	for k := range want {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// TestServerHTTPLimits checks the HTTP handler's refusals: GET, a body over
// MaxRequestBytes, and a loopback request with a foreign Host.
func TestServerHTTPLimits(t *testing.T) {
	s := NewServer(ServerOptions{
		MaxRequestBytes: 1024,
		Tools:           func(context.Context, *Request) ([]ToolDef, error) { return nil, nil },
		Handle:          func(context.Context, *ToolCall) (*mcp.CallToolResult, error) { return &mcp.CallToolResult{}, nil },
	})
	ts := startHTTP(t, "", s.HTTPHandler())
	post := func(body, host string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, ts.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	tests := []struct {
		name       string
		body, host string
		wantStatus int
		wantBody   string
	}{
		{name: "tools/list", body: list, wantStatus: http.StatusOK, wantBody: `"tools":[]`},
		{name: "tools/list without params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, wantStatus: http.StatusOK, wantBody: `"tools":[]`},
		{name: "tools/call without params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, wantStatus: http.StatusBadRequest, wantBody: `missing required "params"`},
		{name: "body over the cap", body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"pad":"` + strings.Repeat("x", 2048) + `"}}}`,
			wantStatus: http.StatusRequestEntityTooLarge},
		{name: "DNS rebinding Host", body: list, host: "evil.example", wantStatus: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(tt.body, tt.host)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("answer = %d %s, want %d with %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	t.Run("foreign Host allowed when protection is off", func(t *testing.T) {
		open := NewServer(ServerOptions{
			DisableLocalhostProtection: true,
			Tools:                      func(context.Context, *Request) ([]ToolDef, error) { return nil, nil },
			Handle:                     func(context.Context, *ToolCall) (*mcp.CallToolResult, error) { return &mcp.CallToolResult{}, nil },
		})
		ots := startHTTP(t, "", open.HTTPHandler())
		req, _ := http.NewRequest(http.MethodPost, ots.URL, strings.NewReader(list))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Host = "haldir.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status = %d, want 200", resp.StatusCode)
		}
	})
	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status = %d, want 405", resp.StatusCode)
		}
	})
}

// TestServerServeOverPipes runs Serve over an io.Pipe pair and connects a
// go-sdk client to it: the static header stands in for HTTP headers.
func TestServerServeOverPipes(t *testing.T) {
	h := newTestHaldir()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	header := http.Header{}
	header.Set("Authorization", "Bearer hld_reader")
	header.Set(HeaderSession, "ses_stdio")
	served := make(chan error, 1)
	go func() { served <- h.server.Serve(ctx, &mcp.IOTransport{Reader: serverR, Writer: serverW}, header) }()

	c := mcp.NewClient(&mcp.Implementation{Name: "pipe-client", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: clientR, Writer: clientW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"haldir.getSession"}, listedNames(t, cs)); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "haldir.getSession", Arguments: map[string]any{"session_id": "ses_x"}})
	if err != nil || textOf(t, res) != "ok haldir.getSession" {
		t.Fatalf("CallTool: %v, %v", res, err)
	}
	got := h.lastCall()
	got.Meta = nil
	want := recordedCall{Transport: "stdio", Name: "haldir.getSession", Arguments: `{"session_id":"ses_x"}`, APIKey: "hld_reader", Session: "ses_stdio"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Handle saw (-want +got):\n%s", diff)
	}
	cs.Close()
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the client closed")
	}
}

// TestServerServeStdioProcess runs ServeStdio in a child process (this test
// binary in helper mode) and talks to it over its stdin and stdout.
func TestServerServeStdioProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{helperEnv + "=" + helperHaldir, "HALDIR_API_KEY=hld_from_env", "HALDIR_SESSION=ses_env"}
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-client", Version: "1"}, nil)
	ctx := context.Background()
	cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if diff := cmp.Diff([]string{"haldir.whoami"}, listedNames(t, cs)); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "haldir.whoami", Arguments: map[string]any{"x": 1}})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(textOf(t, res)), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tool": "haldir.whoami", "key": "hld_from_env", "session": "ses_env", "transport": "stdio", "args": `{"x":1}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Handle saw (-want +got):\n%s", diff)
	}
}

// TestServerProxiesPool wires the Server to a Pool, as Haldir does: the
// agent lists the upstream's namespaced tools at /mcp and calls one,
// which reaches the real upstream.
func TestServerProxiesPool(t *testing.T) {
	up := newTestUpstream("Echoes.")
	uts := startHTTP(t, "", up.streamableHandler())
	p := newTestPool(t, PoolOptions{})
	if _, err := p.Add(context.Background(), Upstream{Name: "up", URL: uts.URL}); err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerOptions{
		Tools: func(context.Context, *Request) ([]ToolDef, error) { return p.Tools(), nil },
		Handle: func(ctx context.Context, c *ToolCall) (*mcp.CallToolResult, error) {
			res, _, err := p.Call(ctx, c.Name, c.Arguments, 5*time.Second)
			return res, err
		},
	})
	ts := startHTTP(t, "", s.HTTPHandler())
	cs := connectGo(t, ts.URL, nil)
	if diff := cmp.Diff([]string{"up.add", "up.echo", "up.fail", "up.sleep"}, listedNames(t, cs)); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	tests := []struct {
		name, tool string
		args       map[string]any
		want       string
		isError    bool
		wantErr    string
	}{
		{name: "echo", tool: "up.echo", args: map[string]any{"message": "through haldir"}, want: "echo: through haldir"},
		{name: "structured", tool: "up.add", args: map[string]any{"a": 40, "b": 2}, want: `{"sum":42}`},
		{name: "tool error", tool: "up.fail", want: "this tool always fails", isError: true},
		{name: "unknown", tool: "up.nope", wantErr: `unknown tool "up.nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tt.tool, Arguments: tt.args})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := textOf(t, res); got != tt.want || res.IsError != tt.isError {
				t.Errorf("result = %q (isError %v), want %q (isError %v)", got, res.IsError, tt.want, tt.isError)
			}
		})
	}
}
