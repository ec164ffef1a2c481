package proxy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tsSDK is the TypeScript SDK package, installed by
// `npm ci --prefix proxy/testdata`.
const tsSDK = "testdata/node_modules/@modelcontextprotocol/sdk/package.json"

// TestServerTypeScriptClient runs testdata/tsclient.mjs, a client built on
// the official TypeScript SDK, against HTTPHandler: it must see the tool
// list of its API key and call a tool whose Handle receives the key, the
// _meta session and the arguments.
func TestServerTypeScriptClient(t *testing.T) {
	node, err := exec.LookPath("node")
	requireOrSkip(t, err == nil, "node is not installed")
	_, err = os.Stat(tsSDK)
	requireOrSkip(t, err == nil, "%s is missing: run `npm ci --prefix proxy/testdata`", tsSDK)
	script, err := filepath.Abs("testdata/tsclient.mjs")
	if err != nil {
		t.Fatal(err)
	}

	h := newTestHaldir()
	ts := startHTTP(t, "", h.server.HTTPHandler())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, ts.URL, "hld_admin", "up.echo", `{"message":"from typescript"}`, "ses_ts")
	cmd.Dir = "testdata"
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("tsclient.mjs: %v\n%s", err, stderr)
	}
	var got struct {
		ProtocolVersion string   `json:"protocolVersion"`
		Tools           []string `json:"tools"`
		Result          struct {
			Content []struct {
				Type, Text string
			} `json:"content"`
			IsError bool `json:"isError"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("tsclient.mjs printed %q: %v", out, err)
	}
	t.Logf("TypeScript SDK negotiated protocol %s", got.ProtocolVersion)
	if diff := cmp.Diff([]string{"haldir.getSession", "up.echo"}, got.Tools); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	if len(got.Result.Content) != 1 || got.Result.Content[0].Text != "ok up.echo" || got.Result.IsError {
		t.Errorf("result = %+v", got.Result)
	}
	call := h.lastCall()
	call.Meta = onlyKeys(call.Meta, map[string]any{MetaKeySession: nil})
	want := recordedCall{Transport: "http", Name: "up.echo", Arguments: `{"message":"from typescript"}`, APIKey: "hld_admin",
		Session: "ses_ts", Meta: map[string]any{MetaKeySession: "ses_ts"}}
	if diff := cmp.Diff(want, call); diff != "" {
		t.Errorf("Handle saw (-want +got):\n%s", diff)
	}
}
