package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/internal/canonical"
)

func TestDefinitionHash(t *testing.T) {
	base := &mcp.Tool{Name: "echo", Description: "Echoes", InputSchema: map[string]any{"type": "object"}}
	baseHash, err := DefinitionHash(base)
	if err != nil {
		t.Fatal(err)
	}
	if baseHash != "a66d90ac27e7682c7f764e2a5900c3afdd17898c79118f6e1b485d71913b28be" {
		t.Fatalf("DefinitionHash = %s; the documented example says otherwise", baseHash)
	}
	tests := []struct {
		name     string
		tool     *mcp.Tool
		wantSame bool
	}{
		{name: "same definition, other name and annotations", tool: &mcp.Tool{Name: "other", Title: "T", Description: "Echoes",
			InputSchema: json.RawMessage(`{ "type" : "object" }`), Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, wantSame: true},
		{name: "no schema means an object schema", tool: &mcp.Tool{Description: "Echoes"}, wantSame: true},
		{name: "description changed", tool: &mcp.Tool{Description: "Echoes!", InputSchema: map[string]any{"type": "object"}}},
		{name: "schema changed", tool: &mcp.Tool{Description: "Echoes", InputSchema: map[string]any{"type": "object", "required": []string{"x"}}}},
		{name: "description moved into the schema", tool: &mcp.Tool{InputSchema: map[string]any{"type": "object", "description": "Echoes"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefinitionHash(tt.tool)
			if err != nil {
				t.Fatal(err)
			}
			if (got == baseHash) != tt.wantSame {
				t.Errorf("hash %s vs base %s: same = %v, want %v", got, baseHash, got == baseHash, tt.wantSame)
			}
		})
	}
	if _, err := DefinitionHash(&mcp.Tool{InputSchema: json.RawMessage(`{"a":1,"a":2}`)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate keys in a schema: error = %v, want ErrInvalid", err)
	}
}

func TestResultHash(t *testing.T) {
	a := &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hi"}}, StructuredContent: map[string]any{"b": 1, "a": 2}}
	var b mcp.CallToolResult
	if err := json.Unmarshal([]byte(`{"structuredContent":{"a":2,"b":1.0},"content":[{"text":"hi","type":"text"}]}`), &b); err != nil {
		t.Fatal(err)
	}
	ha, err := ResultHash(a)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := ResultHash(&b)
	if err != nil {
		t.Fatal(err)
	}
	if ha != hb || len(ha) != 64 {
		t.Errorf("equal results hash differently: %s vs %s", ha, hb)
	}
	hc, _ := ResultHash(&mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hi"}}, IsError: true})
	hn, _ := ResultHash(nil)
	if hc == ha || hn == ha || hn == "" {
		t.Errorf("different results share a hash: %s %s %s", ha, hc, hn)
	}
}

func TestDiff(t *testing.T) {
	defs := []ToolDef{{Name: "u.a", DefinitionHash: "1"}, {Name: "u.b", DefinitionHash: "2"}, {Name: "u.c", DefinitionHash: "3"}, {Name: "u.c", DefinitionHash: "9"}}
	type result struct{ Added, Changed, Removed []string }
	tests := []struct {
		name   string
		pinned map[string]string
		want   result
	}{
		{name: "nothing pinned", pinned: nil, want: result{Added: []string{"u.a", "u.b", "u.c"}}},
		{name: "all pinned", pinned: map[string]string{"u.a": "1", "u.b": "2", "u.c": "3"}, want: result{}},
		{name: "one changed, one removed, one added", pinned: map[string]string{"u.a": "1", "u.b": "X", "u.z": "4"},
			want: result{Added: []string{"u.c"}, Changed: []string{"u.b"}, Removed: []string{"u.z"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, c, r := Diff(tt.pinned, defs)
			if diff := cmp.Diff(tt.want, result{a, c, r}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(map[string]string{"u.a": "1", "u.b": "2", "u.c": "3"}, Pins(defs)); diff != "" {
		t.Errorf("Pins (-want +got):\n%s", diff)
	}
}

func TestSplitJoin(t *testing.T) {
	tests := []struct {
		name, in, upstream, tool string
		wantErr                  bool
	}{
		{name: "simple", in: "github.create_issue", upstream: "github", tool: "create_issue"},
		{name: "tool with dots", in: "fs.read.file", upstream: "fs", tool: "read.file"},
		{name: "dashes and digits", in: "my-server_2.get-sum", upstream: "my-server_2", tool: "get-sum"},
		{name: "no separator", in: "echo", wantErr: true},
		{name: "empty tool", in: "fs.", wantErr: true},
		{name: "empty upstream", in: ".echo", wantErr: true},
		{name: "uppercase upstream", in: "FS.echo", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, tool, err := Split(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("Split(%q) = %q, %q, %v; want ErrInvalid", tt.in, u, tool, err)
				}
				return
			}
			if err != nil || u != tt.upstream || tool != tt.tool {
				t.Errorf("Split(%q) = %q, %q, %v; want %q, %q", tt.in, u, tool, err, tt.upstream, tt.tool)
			}
			if got := Join(u, tool); got != tt.in {
				t.Errorf("Join = %q, want %q", got, tt.in)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name    string
		up      Upstream
		wantErr bool
	}{
		{name: "streamable", up: Upstream{Name: "gh", URL: "https://mcp.example.com/mcp"}},
		{name: "sse", up: Upstream{Name: "old", Transport: TransportSSE, URL: "http://10.0.0.1:8080/sse", Headers: map[string]string{"Authorization": "Bearer x"}}},
		{name: "stdio by command", up: Upstream{Name: "local", Command: []string{"npx", "-y", "pkg"}, Env: map[string]string{"TOKEN": "x"}}},
		{name: "64 characters", up: Upstream{Name: long[:64], URL: "http://h"}},
		{name: "65 characters", up: Upstream{Name: long, URL: "http://h"}, wantErr: true},
		{name: "empty name", up: Upstream{URL: "http://h"}, wantErr: true},
		{name: "dot in name", up: Upstream{Name: "a.b", URL: "http://h"}, wantErr: true},
		{name: "uppercase name", up: Upstream{Name: "Gh", URL: "http://h"}, wantErr: true},
		{name: "unknown transport", up: Upstream{Name: "a", Transport: "ws", URL: "http://h"}, wantErr: true},
		{name: "ftp url", up: Upstream{Name: "a", URL: "ftp://h"}, wantErr: true},
		{name: "relative url", up: Upstream{Name: "a", URL: "/mcp"}, wantErr: true},
		{name: "no url", up: Upstream{Name: "a"}, wantErr: true},
		{name: "fragment", up: Upstream{Name: "a", URL: "http://h/#x"}, wantErr: true},
		{name: "command on http", up: Upstream{Name: "a", URL: "http://h", Command: []string{"x"}, Transport: TransportStreamable}, wantErr: true},
		{name: "env on http", up: Upstream{Name: "a", URL: "http://h", Env: map[string]string{"A": "b"}}, wantErr: true},
		{name: "url on stdio", up: Upstream{Name: "a", Command: []string{"x"}, URL: "http://h"}, wantErr: true},
		{name: "headers on stdio", up: Upstream{Name: "a", Command: []string{"x"}, Headers: map[string]string{"A": "b"}}, wantErr: true},
		{name: "stdio without command", up: Upstream{Name: "a", Transport: TransportStdio}, wantErr: true},
		{name: "empty program", up: Upstream{Name: "a", Command: []string{""}}, wantErr: true},
		{name: "NUL in argument", up: Upstream{Name: "a", Command: []string{"x", "a\x00b"}}, wantErr: true},
		{name: "env name with =", up: Upstream{Name: "a", Command: []string{"x"}, Env: map[string]string{"A=B": "c"}}, wantErr: true},
		{name: "header with CRLF", up: Upstream{Name: "a", URL: "http://h", Headers: map[string]string{"X-A": "a\r\nX-B: b"}}, wantErr: true},
		{name: "header name not a token", up: Upstream{Name: "a", URL: "http://h", Headers: map[string]string{"X A": "b"}}, wantErr: true},
		{name: "reserved header", up: Upstream{Name: "a", URL: "http://h", Headers: map[string]string{"mcp-session-id": "s"}}, wantErr: true},
		{name: "reserved content type", up: Upstream{Name: "a", URL: "http://h", Headers: map[string]string{"Content-Type": "text/plain"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.up.Validate()
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
	// Secret values never appear in validation errors.
	err := Upstream{Name: "a", URL: "http://h", Headers: map[string]string{"X-A": "s3cret\n"}}.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %v quotes a header value", err)
	}
}

func TestNormalizeArguments(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "absent", in: "", want: "{}"},
		{name: "null", in: " null ", want: "{}"},
		{name: "object", in: ` {"a":1} `, want: `{"a":1}`},
		{name: "array", in: `[1]`, wantErr: true},
		{name: "string", in: `"x"`, wantErr: true},
		{name: "broken", in: `{"a":`, wantErr: true},
		{name: "two objects", in: `{} {}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalizeArguments(json.RawMessage(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("got %s, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestLatencyPercentiles(t *testing.T) {
	tests := []struct {
		name     string
		samples  int // 1ms, 2ms, … samples·ms
		p50, p99 time.Duration
	}{
		{name: "empty", samples: 0},
		{name: "one", samples: 1, p50: time.Millisecond, p99: time.Millisecond},
		{name: "hundred", samples: 100, p50: 50 * time.Millisecond, p99: 99 * time.Millisecond},
		{name: "window keeps the last 1024", samples: 2048, p50: 1536 * time.Millisecond, p99: 2038 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w latencyWindow
			for i := 1; i <= tt.samples; i++ {
				w.add(time.Duration(i) * time.Millisecond)
			}
			p50, p99 := w.percentiles()
			if p50 != tt.p50 || p99 != tt.p99 {
				t.Errorf("p50, p99 = %v, %v; want %v, %v", p50, p99, tt.p50, tt.p99)
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv(map[string]string{"TOKEN": "t", "HOME": "/override"}, "/bin", "/home/h")
	want := []string{"HOME=/override", "PATH=/bin", "TOKEN=t"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := childEnv(nil, "", ""); len(got) != 0 {
		t.Errorf("childEnv with nothing = %v", got)
	}
}

// TestHeaderTransportOrigin checks that injected headers reach the
// upstream's own origin only, never a redirect target elsewhere.
func TestHeaderTransportOrigin(t *testing.T) {
	var gotOther string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotOther = r.Header.Get("Authorization")
	}))
	defer other.Close()
	var gotUp string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUp = r.Header.Get("Authorization")
		http.Redirect(w, r, other.URL, http.StatusFound)
	}))
	defer up.Close()
	hc := upstreamHTTPClient(nil, Upstream{Name: "a", URL: up.URL + "/mcp", Headers: map[string]string{"Authorization": "Bearer secret"}})
	resp, err := hc.Get(up.URL + "/other-path")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotUp != "Bearer secret" || gotOther != "" {
		t.Errorf("upstream got %q, redirect target got %q; want the header at the upstream only", gotUp, gotOther)
	}
	tests := []struct{ a, b string }{
		{"http://h/x", "http://H:80/y"},
		{"https://h", "https://h:443/"},
	}
	for _, tt := range tests {
		ua, _ := url.Parse(tt.a)
		ub, _ := url.Parse(tt.b)
		if origin(ua) != origin(ub) {
			t.Errorf("origin(%s) = %s, origin(%s) = %s; want equal", tt.a, origin(ua), tt.b, origin(ub))
		}
	}
	if ua, _ := url.Parse("http://h"); origin(ua) == "https://h:443" {
		t.Errorf("http and https share an origin")
	}
}

// ExampleDefinitionHash shows the exact bytes a tool definition hashes.
func ExampleDefinitionHash() {
	doc := `{"inputSchema": {"type": "object"}, "description": "Echoes"}`
	canon, _ := canonical.JSON([]byte(doc))
	fmt.Printf("%s (%d bytes)\n", canon, len(canon))
	hash, _ := definitionHash("Echoes", json.RawMessage(`{"type":"object"}`))
	fmt.Println(hash)
	// Output:
	// {"description":"Echoes","inputSchema":{"type":"object"}} (56 bytes)
	// a66d90ac27e7682c7f764e2a5900c3afdd17898c79118f6e1b485d71913b28be
}
