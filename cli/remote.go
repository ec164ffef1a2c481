package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haldir-dev/haldir/client"
)

// DefaultBaseURL is the server the CLI talks to when none is configured.
const DefaultBaseURL = "http://localhost:8000"

// stored is the login file: ~/.config/haldir/config.json, mode 0600.
type stored struct {
	BaseURL string `json:"base_url"`
	APIKey  string `json:"api_key"`
}

func configPath() (string, error) {
	if p := os.Getenv("HALDIR_CONFIG_FILE"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "haldir", "config.json"), nil
}

func loadStored() stored {
	var s stored
	if p, err := configPath(); err == nil {
		if b, err := os.ReadFile(p); err == nil {
			json.Unmarshal(b, &s)
		}
	}
	return s
}

// remote returns a client for the configured server: HALDIR_BASE_URL and
// HALDIR_API_KEY (or --base-url) override what 'haldir login' stored.
func (e *env) remote() (*client.Client, error) {
	s := loadStored()
	base := e.v.GetString("base-url")
	if base == "" {
		base = s.BaseURL
	}
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fail(ExitUsage, "the base URL %q is not an http(s) URL", base)
	}
	key := os.Getenv("HALDIR_API_KEY")
	if key == "" {
		key = s.APIKey
	}
	return client.New(base, key), nil
}

// call runs one API call and maps failures to exit codes: 3 when the
// server cannot be reached, 4 when it refuses the key, 1 otherwise.
func (e *env) call(ctx context.Context, method, path string, body, out any) error {
	c, err := e.remote()
	if err != nil {
		return err
	}
	return apiFailure(c.Do(ctx, method, path, body, out), c)
}

func apiFailure(err error, c *client.Client) error {
	var ue *client.UnreachableError
	var ae *client.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ue):
		return &exitError{code: ExitUnreachable, err: fmt.Errorf("cannot reach Haldir at %s (is 'haldir serve' running? set HALDIR_BASE_URL or run 'haldir login')", c.BaseURL)}
	case errors.As(err, &ae) && ae.Status == 401:
		hint := "run 'haldir login' or set HALDIR_API_KEY"
		if c.Key == "" {
			hint = "no API key is configured: " + hint
		}
		return &exitError{code: ExitAuth, err: fmt.Errorf("the server refused the API key: %s (%s)", strings.TrimSuffix(ae.Message, "."), hint)}
	case errors.As(err, &ae) && ae.Code == "insufficient_scope":
		return &exitError{code: ExitAuth, err: fmt.Errorf("%s", strings.TrimSuffix(ae.Message, "."))}
	case errors.As(err, &ae):
		return &exitError{code: ExitCheckFailed, err: ae}
	}
	return &exitError{code: ExitCheckFailed, err: err}
}

// show prints the server's answer: as JSON under --json, else via human.
func (e *env) show(resp map[string]any, human func(w io.Writer, r map[string]any)) error {
	return e.print(resp, func(w io.Writer) { human(w, resp) })
}

// simple builds a command that makes one API call and prints its answer.
func (e *env) simple(use, short, example string, args cobra.PositionalArgs, request func(cmd *cobra.Command, args []string) (method, path string, body any, err error),
	human func(w io.Writer, r map[string]any)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Example: example, Args: args,
		RunE: func(cmd *cobra.Command, a []string) error {
			method, path, body, err := request(cmd, a)
			if err != nil {
				return err
			}
			var resp map[string]any
			if err := e.call(cmd.Context(), method, path, body, &resp); err != nil {
				return err
			}
			return e.show(resp, human)
		},
	}
}

func newLogin(e *env) *cobra.Command {
	var keyFromStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Check an API key against the server and store it (mode 0600)",
		Long: `Check an API key against the server and store it, with the server's URL, in
your config directory (~/.config/haldir/config.json, mode 0600). The key is
read from HALDIR_API_KEY or, with --stdin or at a prompt, from standard input;
it is never taken as a command-line argument, where other users could see it.
HALDIR_API_KEY and HALDIR_BASE_URL override what is stored.`,
		Example: "  haldir login --base-url https://haldir.example.com\n  echo \"$KEY\" | haldir login --stdin",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.remote()
			if err != nil {
				return err
			}
			key := os.Getenv("HALDIR_API_KEY")
			if key == "" || keyFromStdin {
				if !keyFromStdin && !e.json {
					fmt.Fprint(e.stderr, "API key (hld_…): ")
				}
				line, err := bufio.NewReader(e.stdin).ReadString('\n')
				if err != nil && line == "" {
					return fail(ExitUsage, "no API key given on standard input")
				}
				key = strings.TrimSpace(line)
			}
			c.Key = key
			var who map[string]any
			if err := apiFailure(c.Do(cmd.Context(), "GET", "/v1/whoami", nil, &who), c); err != nil {
				return err
			}
			p, err := configPath()
			if err != nil {
				return fail(ExitCheckFailed, "cannot find a config directory: %v", err)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return fail(ExitCheckFailed, "cannot create %s: %v", filepath.Dir(p), err)
			}
			b, _ := json.MarshalIndent(stored{BaseURL: c.BaseURL, APIKey: key}, "", "  ")
			tmp := p + ".tmp"
			if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
				return fail(ExitCheckFailed, "cannot write %s: %v", p, err)
			}
			if err := os.Rename(tmp, p); err != nil {
				return fail(ExitCheckFailed, "cannot write %s: %v", p, err)
			}
			who["base_url"], who["config_file"] = c.BaseURL, p
			return e.show(who, func(w io.Writer, r map[string]any) {
				fmt.Fprintf(w, "logged in to %s as key %v of tenant %v\nstored in %s\n", c.BaseURL, r["prefix"], r["tenant_id"], p)
			})
		},
	}
	cmd.Flags().BoolVar(&keyFromStdin, "stdin", false, "read the key from standard input")
	return cmd
}

func newWhoami(e *env) *cobra.Command {
	return e.simple("whoami", "Show the configured key's tenant and scopes", "  haldir whoami --json", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) { return "GET", "/v1/whoami", nil, nil },
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "key %v (%v) of tenant %v\nscopes: %s\n", r["prefix"], r["name"], r["tenant_id"], joinAny(r["scopes"]))
		})
}

// pill renders a coloured status pill on a terminal, plain text elsewhere.
func (e *env) pill(status string) string {
	color := map[string]string{"ok": "32", "degraded": "33", "down": "31"}[status]
	if color == "" {
		color = "33"
	}
	label := map[string]string{"ok": "● ok", "degraded": "● degraded", "down": "● down"}[status]
	if label == "" {
		label = "● " + status
	}
	if isTerminal(e.stdout) {
		return "\033[" + color + "m" + label + "\033[0m"
	}
	return label
}

func newStatus(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show the server's components as green, yellow or red pills",
		Example: "  haldir status\n  haldir status --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var r map[string]any
			if err := e.call(cmd.Context(), "GET", "/v1/status", nil, &r); err != nil {
				return err
			}
			if err := e.show(r, func(w io.Writer, r map[string]any) {
				fmt.Fprintf(w, "Haldir %v  %s\n", r["version"], e.pill(fmt.Sprint(r["status"])))
				comps, _ := r["components"].([]any)
				for _, c := range comps {
					m, _ := c.(map[string]any)
					detail := ""
					if d, ok := m["detail"].(string); ok && d != "" {
						detail = "  " + d
					}
					fmt.Fprintf(w, "  %-12v %s%s\n", m["name"], e.pill(fmt.Sprint(m["status"])), detail)
				}
			}); err != nil {
				return err
			}
			if r["status"] != "ok" {
				return &exitError{code: ExitCheckFailed}
			}
			return nil
		},
	}
}

func newReady(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "ready",
		Short: "Exit 0 when the server is ready, 1 when not; print nothing unless --json",
		Long: `Ask the server's /readyz. Exit 0 when it is ready, 1 when it is not, 3 when it
cannot be reached. Prints nothing, for CI and health checks, unless --json.`,
		Example: "  haldir ready && echo up",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.remote()
			if err != nil {
				return err
			}
			var r map[string]any
			err = c.Do(cmd.Context(), "GET", "/readyz", nil, &r)
			var ae *client.APIError
			ready := err == nil
			if errors.As(err, &ae) && ae.Status == 503 {
				err = nil
			}
			if err != nil {
				if e.json {
					e.print(map[string]any{"ready": false, "reachable": false}, nil)
				}
				return &exitError{code: ExitUnreachable}
			}
			if e.json {
				e.print(map[string]any{"ready": ready, "reachable": true}, nil)
			}
			if !ready {
				return &exitError{code: ExitCheckFailed}
			}
			return nil
		},
	}
}

// joinAny joins a JSON list for display.
func joinAny(v any) string {
	list, _ := v.([]any)
	out := make([]string, len(list))
	for i, x := range list {
		out[i] = fmt.Sprint(x)
	}
	return strings.Join(out, ", ")
}
