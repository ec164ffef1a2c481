package cli_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/cli"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestMain lets the test binary act as the haldir command, for tests that
// need a separate process (a pseudo-terminal).
func TestMain(m *testing.M) {
	if os.Getenv("HALDIR_CLI_MAIN") == "1" {
		os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// normalize replaces what changes from run to run with stable markers.
func normalize(s string) string {
	for _, r := range []struct{ re, with string }{
		{`\b(ses|pay|apr|tnt|rul|dek|pol|whk|cal|anm)_[a-z2-7]{24}\b`, "${1}_<id>"},
		{`\bwhsec_[A-Za-z0-9_+/=-]+`, "whsec_<secret>"},
		{`\b[0-9a-f]{12}…`, "<hash>…"},
		{`\bevt_[0-9a-v]{24}\b`, "evt_<id>"},
		{`\bhld_[A-Za-z0-9_-]{43}\b`, "hld_<key>"},
		{`\bhld_[A-Za-z0-9_-]{8}\b`, "hld_<prefix>"},
		{`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`, "<time>"},
		{`\b[0-9a-f]{64}\b`, "<sha256>"},
		{`\b[0-9a-f]{16}…`, "<hash>…"},
		{`"uptime_seconds": \d+`, `"uptime_seconds": <n>`},
		{`"chain_checked_at": "[^"]*"`, `"chain_checked_at": "<time>"`},
		{`\(\d+ events/s\)`, "(<rate> events/s)"},
		{`haldir-test\+[0-9a-f]{8}`, "haldir-test+<keyhash>"},
		{`http://127\.0\.0\.1:\d+`, "http://<server>"},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.with)
	}
	return s
}

// TestGolden runs a scripted session of commands against a real server,
// once for human output and once with --json, and compares both
// transcripts with golden files (go test ./cli -update refreshes them).
func TestGolden(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("golden")
	up := startUpstream(t)
	t.Setenv("HALDIR_BASE_URL", s.URL)
	t.Setenv("HALDIR_API_KEY", c.Key)
	t.Setenv("HALDIR_CONFIG_FILE", filepath.Join(t.TempDir(), "config.json"))
	for _, mode := range []string{"human", "json"} {
		t.Run(mode, func(t *testing.T) {
			var transcript strings.Builder
			step := func(stdin string, args ...string) result {
				if mode == "json" {
					args = append(args, "--json")
				}
				r := run(t, stdin, args...)
				fmt.Fprintf(&transcript, "$ haldir %s\n%s", strings.Join(args, " "), r.stdout)
				if r.code != 0 {
					fmt.Fprintf(&transcript, "[exit %d] %s", r.code, r.stderr)
				}
				transcript.WriteString("\n")
				if mode == "json" && r.stdout != "" && !strings.HasPrefix(strings.TrimSpace(r.stdout), "{") {
					t.Errorf("haldir %v --json printed non-JSON on stdout: %q", args, r.stdout)
				}
				return r
			}
			agent := "golden-" + mode
			ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": agent, "scopes": []string{"read", "spend:50"}}).Str("session_id")
			step("", "whoami")
			step("", "session", "get", ses)
			step("", "session", "check", ses, "read:files")
			step("", "session", "check", ses, "write")
			step("", "pay", "authorize", "--session", ses, "--amount", "12.5", "--description", "api credits")
			step("", "pay", "authorize", "--session", ses, "--amount", "99")
			step("", "audit", "log", "--session", ses, "--tool", "search", "--action", "query", "--cost", "0.25", "--details", `{"q":"haldir"}`)
			step("tok-"+mode+"\n", "secret", "store", "api_token_"+mode, "--stdin")
			step("", "secret", "get", "api_token_"+mode, "--session", ses)
			step("", "approvals", "pending")
			step("", "audit", "spend", "--agent", agent)
			step("", "audit", "tail", "-n", "3", "--agent", agent)
			step("", "audit", "verify")
			step("", "session", "revoke", ses)
			step("", "keys", "revoke", "hld_nonexist")

			files := "files_" + mode
			step("", "proxy", "register", files, "--url", up)
			step("", "proxy", "register", "bad", "--url", up, "--", "node")
			step("", "proxy", "tools")
			step("", "proxy", "policy", "add", "--type", "deny_list", "--tools", files+".delete")
			step("", "proxy", "policy", "add", "--type", "time_window", "--start-hour", "0", "--end-hour", "24", "--timezone", "Europe/Paris")
			step("", "proxy", "policy", "list")
			agentSes := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": agent, "scopes": []string{"tool:" + files}}).Str("session_id")
			step("", "proxy", "call", files+".echo", "--session", agentSes, "--args", `{"message":"hello"}`)
			step("", "proxy", "call", files+".delete", "--session", agentSes, "--args", `{"path":"/"}`)
			step("", "proxy", "call", files+".echo", "--session", agentSes, "--args", `[1]`)
			step("", "webhooks", "add", up+"/hook", "--events", "session.revoked")
			flagsRecorded(t, s) // the revocations' deliveries are done: the list counts them
			step("", "webhooks", "list")
			step("", "kill", "--agent", agent, "--reason", "golden test")
			step("", "kills")
			step("", "session", "create", "--agent", agent)
			step("", "unkill", "--agent", agent)
			step("", "unkill", "--agent", agent)
			step("", "kill")
			step("", "anomalies", "list")
			// A real flag: first use detection on for one call only, so the
			// rest of the script's ledger is the same on every run.
			c.Do("PUT", "/v1/anomalies/settings", map[string]any{"first_use": true}).Expect(t, 200)
			step("", "audit", "log", "--session", agentSes, "--tool", "novel-"+mode, "--action", "try")
			flagsRecorded(t, s)
			c.Do("PUT", "/v1/anomalies/settings", map[string]any{"first_use": false}).Expect(t, 200)
			step("", "anomalies", "list")
			step("", "anomalies", "settings")
			step("", "audit", "tail", "--flagged", "-n", "1", "--agent", agent)
			step("", "overview")
			step("", "version")
			golden := filepath.Join("testdata", "golden-"+mode+".txt")
			got := normalize(transcript.String())
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./cli -update creates it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("transcript differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("codes")
	t.Setenv("HALDIR_CONFIG_FILE", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("HALDIR_BASE_URL", s.URL)
	t.Setenv("HALDIR_API_KEY", c.Key)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"ok", nil, []string{"whoami"}, 0},
		{"usage: unknown command", nil, []string{"frobnicate"}, 2},
		{"usage: bad flag", nil, []string{"whoami", "--no-such-flag"}, 2},
		{"usage: missing argument", nil, []string{"session", "get"}, 2},
		{"unreachable", map[string]string{"HALDIR_BASE_URL": "http://127.0.0.1:1"}, []string{"status"}, 3},
		{"auth: unknown key", map[string]string{"HALDIR_API_KEY": "hld_" + strings.Repeat("x", 43)}, []string{"keys", "list"}, 4},
		{"auth: scope", map[string]string{"HALDIR_API_KEY": c.KeyWithScopes("audit:read").Key}, []string{"keys", "list"}, 4},
		{"failed check: not found", nil, []string{"session", "get", "ses_aaaaaaaaaaaaaaaaaaaaaaaa"}, 1},
		{"ready", nil, []string{"ready"}, 0},
		{"ready, unreachable", map[string]string{"HALDIR_BASE_URL": "http://127.0.0.1:1"}, []string{"ready"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := run(t, "", tt.args...)
			if r.code != tt.code {
				t.Fatalf("haldir %v exited %d, want %d\nstdout: %s\nstderr: %s", tt.args, r.code, tt.code, r.stdout, r.stderr)
			}
			if tt.code != 0 && tt.name != "ready, unreachable" && strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Errorf("the error is not one clear sentence: %q", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, c.Key) {
				t.Error("the output contains the API key")
			}
		})
	}
	// ready prints nothing unless --json.
	if r := run(t, "", "ready"); r.stdout != "" || r.stderr != "" {
		t.Errorf("ready printed %q %q", r.stdout, r.stderr)
	}
}

func TestLoginStoresTheKeyPrivately(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("login")
	cfg := filepath.Join(t.TempDir(), "haldir", "config.json")
	t.Setenv("HALDIR_CONFIG_FILE", cfg)
	t.Setenv("HALDIR_API_KEY", "")
	r := run(t, c.Key+"\n", "login", "--stdin", "--base-url", s.URL)
	if r.code != 0 {
		t.Fatalf("login: %d %s", r.code, r.stderr)
	}
	st, err := os.Stat(cfg)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v; want 0600", err, st.Mode())
	}
	// The stored key and URL are used from then on.
	t.Setenv("HALDIR_BASE_URL", "")
	if r := run(t, "", "whoami", "--json"); r.code != 0 || !strings.Contains(r.stdout, c.Tenant) {
		t.Fatalf("whoami after login: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// A bad key is refused and not stored.
	before, _ := os.ReadFile(cfg)
	if r := run(t, "hld_"+strings.Repeat("y", 43)+"\n", "login", "--stdin", "--base-url", s.URL); r.code != 4 {
		t.Fatalf("login with a bad key exited %d", r.code)
	}
	if after, _ := os.ReadFile(cfg); !bytes.Equal(before, after) {
		t.Error("a refused key replaced the stored one")
	}
}

// TestLocalVerifyFailsAfterAFlippedByte flips one byte of a stored event
// and expects 'haldir audit verify --data-dir' to exit 1 naming it.
func TestLocalVerifyFailsAfterAFlippedByte(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("verify")
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a"}).Str("session_id")
	for i := 0; i < 5; i++ {
		c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprint(i)})
	}
	dir := s.Config.DataDir
	if r := run(t, "", "audit", "verify", "--data-dir", dir); r.code != 0 || !strings.Contains(r.stdout, "✓ ledger verified") {
		t.Fatalf("verify before tampering: %d %s %s", r.code, r.stdout, r.stderr)
	}
	db, err := sqldb.OpenSQLite(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var payload []byte
	if err := db.Read.QueryRow("SELECT payload FROM events WHERE position = 6").Scan(&payload); err != nil {
		t.Fatal(err)
	}
	payload[len(payload)/2] ^= 0x01
	if err := sqltest.Tamper(context.Background(), db, "UPDATE events SET payload = ? WHERE position = 6", payload); err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "audit", "verify", "--data-dir", dir)
	if r.code != 1 || !strings.Contains(r.stdout, "position 6") {
		t.Fatalf("verify after a flipped byte: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, "", "audit", "verify", "--data-dir", dir, "--json")
	if r.code != 1 || !strings.Contains(r.stdout, `"first_bad_position": 6`) {
		t.Fatalf("--json verify after a flipped byte: exit %d\n%s", r.code, r.stdout)
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := run(t, "", "completion", sh)
		if r.code != 0 || !strings.Contains(r.stdout, "haldir") || len(r.stdout) < 500 {
			t.Errorf("completion %s: exit %d, %d bytes", sh, r.code, len(r.stdout))
		}
	}
}

// TestOverviewWatchRedrawsInAPseudoTerminal runs 'haldir overview --watch'
// as its own process on a pseudo-terminal, sees it redraw in place, then
// quits it by typing q.
func TestOverviewWatchRedrawsInAPseudoTerminal(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	c := s.NewTenant("watch")
	cmd := exec.Command(os.Args[0], "overview", "--watch", "--interval", "200ms")
	cmd.Env = append(os.Environ(), "HALDIR_CLI_MAIN=1", "HALDIR_BASE_URL="+s.URL, "HALDIR_API_KEY="+c.Key, "TERM=xterm",
		"HALDIR_CONFIG_FILE="+filepath.Join(t.TempDir(), "c.json"))
	pty, err := startInPTY(cmd)
	if err != nil {
		t.Fatalf("pseudo-terminal: %v", err)
	}
	defer pty.Close()
	var screen bytes.Buffer
	chunks := make(chan []byte, 64)
	go func() {
		for {
			buf := make([]byte, 4096)
			n, err := pty.Read(buf)
			if n > 0 {
				chunks <- buf[:n]
			}
			if err != nil {
				close(chunks)
				return
			}
		}
	}()
	frames := func() int { return strings.Count(screen.String(), "\033[H\033[2JHaldir tenant overview") }
	deadline := time.After(20 * time.Second)
	for frames() < 3 {
		select {
		case b, ok := <-chunks:
			if !ok {
				t.Fatalf("the program ended before redrawing:\n%q", screen.String())
			}
			screen.Write(b)
		case <-deadline:
			t.Fatalf("saw %d frames in 20 s:\n%q", frames(), screen.String())
		}
	}
	// Activity shows up in a later frame.
	c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "live"})
	for !strings.Contains(screen.String(), "1 active") {
		select {
		case b, ok := <-chunks:
			if !ok {
				t.Fatal("the program ended early")
			}
			screen.Write(b)
		case <-deadline:
			t.Fatalf("the new session never appeared:\n%q", screen.String())
		}
	}
	pty.Write([]byte("q"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("overview --watch exited with %v after q", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("overview --watch did not quit on q")
	}
	// Drain what the program wrote as it exited.
	drain := time.After(5 * time.Second)
	for !strings.Contains(screen.String(), "\033[?25h") {
		select {
		case b, ok := <-chunks:
			if !ok {
				t.Fatalf("the cursor was not restored on exit:\n%q", screen.String())
			}
			screen.Write(b)
		case <-drain:
			t.Fatalf("the cursor was not restored on exit:\n%q", screen.String())
		}
	}
}

// flagsRecorded waits until the detectors have passed the ledger's head,
// the flags they raised are appended, the read models show them, and the
// webhook deliveries queued so far are done.
func flagsRecorded(t *testing.T, s *apptest.Server) {
	t.Helper()
	ctx := context.Background()
	head := s.AwaitFlags(t)
	deadline := time.Now().Add(30 * time.Second)
	// The overview counts webhook deliveries: let those queued finish.
	for s.App.Projector.Position("outbox") < head {
		if time.Now().After(deadline) {
			t.Fatal("the webhook outbox did not reach the ledger head")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		var n int
		if err := s.App.DB.State().Read.QueryRowContext(ctx, "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d webhook deliveries still pending", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
