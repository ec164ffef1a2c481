package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// everythingServer is the entry point of @modelcontextprotocol/server-everything,
// installed by `npm ci --prefix proxy/testdata`.
const everythingServer = "testdata/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

// everythingCommand returns the argv that runs the everything server over
// stdio, skipping the test (failing it under CI=true) when node or the
// package is missing.
func everythingCommand(t *testing.T) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	requireOrSkip(t, err == nil, "node is not installed")
	script, err := filepath.Abs(everythingServer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(script)
	requireOrSkip(t, err == nil, "%s is missing: run `npm ci --prefix proxy/testdata`", everythingServer)
	return []string{node, script, "stdio"}
}

// TestPoolStdioEverything runs the reference everything server as a stdio
// child: lists its tools, calls echo and get-sum, checks that the child's
// environment holds only PATH, HOME and the configured variables, and that
// Close stops the child.
func TestPoolStdioEverything(t *testing.T) {
	cmd := everythingCommand(t)
	t.Setenv("HALDIR_ENCRYPTION_KEY", "must-never-reach-a-child")
	marker := "m" + strconv.FormatInt(time.Now().UnixNano(), 36)

	p := NewPool(PoolOptions{StdioPath: "/usr/local/bin:/usr/bin:/bin", StdioHome: t.TempDir()})
	defer p.Close()
	ctx := context.Background()
	disc, err := p.Add(ctx, Upstream{Name: "everything", Command: cmd, Env: map[string]string{"HALDIR_TEST_MARKER": marker}})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	names := toolNames(disc.Tools)
	for _, want := range []string{"everything.echo", "everything.get-sum", "everything.get-env"} {
		if !slices.Contains(names, want) {
			t.Errorf("discovered tools %v lack %s", names, want)
		}
	}
	st, _ := p.Status("everything")
	if st.Transport != TransportStdio || !st.Connected || st.URL != "" {
		t.Errorf("Status = %+v", st)
	}

	tests := []struct {
		name, tool, args, want string
	}{
		{name: "echo", tool: "everything.echo", args: `{"message":"hello from haldir"}`, want: "Echo: hello from haldir"},
		{name: "get-sum", tool: "everything.get-sum", args: `{"a":2,"b":3}`, want: "The sum of 2 and 3 is 5."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _, err := p.Call(ctx, tt.tool, json.RawMessage(tt.args), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := textOf(t, res); got != tt.want {
				t.Errorf("text = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("sanitised environment", func(t *testing.T) {
		res, _, err := p.Call(ctx, "everything.get-env", nil, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var env map[string]string
		if err := json.Unmarshal([]byte(textOf(t, res)), &env); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": p.opts.StdioHome, "HALDIR_TEST_MARKER": marker}
		if diff := cmp.Diff(want, env); diff != "" {
			t.Errorf("child environment (-want +got):\n%s", diff)
		}
	})

	if !childRunning(t, marker) {
		t.Fatal("cannot find the child process by its marker; the exit check below would be vacuous")
	}
	p.Close()
	waitFor(t, 10*time.Second, "the stdio child to exit", func() bool { return !childRunning(t, marker) })
}

// childRunning reports whether a process with HALDIR_TEST_MARKER=marker in
// its environment exists, skipping the test where /proc is unavailable
// (failing it under CI=true).
func childRunning(t *testing.T, marker string) bool {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/environ")
	requireOrSkip(t, err == nil && len(dirs) > 0, "no /proc to look for child processes")
	needle := []byte("HALDIR_TEST_MARKER=" + marker + "\x00")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, needle) {
			return true
		}
	}
	return false
}

// TestPoolStdioGo runs a go-sdk upstream as a stdio child (this test binary
// in helper mode), and checks that a child that dies is restarted.
func TestPoolStdioGo(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPool(t, PoolOptions{})
	ctx := context.Background()
	disc, err := p.Add(ctx, Upstream{Name: "gostdio", Command: []string{exe}, Env: map[string]string{helperEnv: helperUpstream}})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if diff := cmp.Diff([]string{"gostdio.add", "gostdio.echo", "gostdio.exit", "gostdio.fail", "gostdio.sleep"}, toolNames(disc.Tools)); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	res, _, err := p.Call(ctx, "gostdio.echo", json.RawMessage(`{"message":"over pipes"}`), 5*time.Second)
	if err != nil || textOf(t, res) != "echo: over pipes" {
		t.Fatalf("echo: %v, %v", res, err)
	}

	// The child exits mid-call: the call fails, and the pool starts a new
	// child by itself.
	_, _, err = p.Call(ctx, "gostdio.exit", nil, 5*time.Second)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("call that kills the child: error = %v, want ErrUnavailable", err)
	}
	waitFor(t, 10*time.Second, "a new child", func() bool {
		st, _ := p.Status("gostdio")
		return st.Connected && st.Reconnects == 1
	})
	res, _, err = p.Call(ctx, "gostdio.echo", json.RawMessage(`{"message":"again"}`), 5*time.Second)
	if err != nil || textOf(t, res) != "echo: again" {
		t.Fatalf("echo after restart: %v, %v", res, err)
	}
	if st, _ := p.Status("gostdio"); !strings.Contains(st.LastError, "gostdio") {
		t.Errorf("LastError = %q, want it to name the upstream", st.LastError)
	}
}
