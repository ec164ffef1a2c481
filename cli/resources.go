package cli

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func group(use, short, example string, children ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Example: example}
	cmd.AddCommand(children...)
	return cmd
}

func pathEsc(s string) string { return url.PathEscape(s) }

func newKeys(e *env) *cobra.Command {
	var name string
	var scopes []string
	var rate int
	create := e.simple("create", "Create an API key (shown once)", `  haldir keys create --name ci --scopes audit:read,sessions:read`, cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "POST", "/v1/keys", map[string]any{"name": name, "scopes": scopes, "rate_limit": rate}, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "created key %v (%v) with scopes %s\n%v\nthis is the only time the key is shown\n", r["prefix"], r["name"], joinAny(r["scopes"]), r["key"])
		})
	create.Flags().StringVar(&name, "name", "", "a name for the key")
	create.Flags().StringSliceVar(&scopes, "scopes", nil, "scopes, e.g. audit:read,sessions:write (default *)")
	create.Flags().IntVar(&rate, "rate-limit", 0, "requests a minute for this key (0: server default)")
	list := e.simple("list", "List API keys", "  haldir keys list", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) { return "GET", "/v1/keys", nil, nil },
		func(w io.Writer, r map[string]any) {
			keys, _ := r["keys"].([]any)
			for _, k := range keys {
				m := k.(map[string]any)
				state := "active"
				if m["revoked"] == true {
					state = "revoked"
				}
				fmt.Fprintf(w, "%-14v %-8s %-20v %s\n", m["prefix"], state, m["name"], joinAny(m["scopes"]))
			}
			fmt.Fprintf(w, "%v keys\n", r["count"])
		})
	revoke := e.simple("revoke PREFIX", "Revoke an API key", "  haldir keys revoke hld_AbCdEfGh", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "DELETE", "/v1/keys/" + pathEsc(a[0]), nil, nil
		},
		func(w io.Writer, r map[string]any) { fmt.Fprintf(w, "revoked %v\n", r["prefix"]) })
	return group("keys", "Manage API keys", "  haldir keys list", list, create, revoke)
}

func sessionLine(w io.Writer, r map[string]any) {
	valid := "valid"
	if v, ok := r["is_valid"].(bool); ok && !v {
		valid = "INVALID (revoked or expired)"
	}
	fmt.Fprintf(w, "%v  agent %v  %s\n  scopes %s\n  spend %v of %v (remaining %v)\n  expires %v\n", r["session_id"], r["agent_id"], valid,
		joinAny(r["scopes"]), orZero(r["spent"]), r["spend_limit"], orAny(r["remaining_budget"], r["spend_limit"]), r["expires_at"])
}

func orZero(v any) any {
	if v == nil {
		return 0
	}
	return v
}

func orAny(v, alt any) any {
	if v == nil {
		return alt
	}
	return v
}

func newSession(e *env) *cobra.Command {
	var agent string
	var scopes []string
	var ttl int
	var limit money
	create := e.simple("create", "Create an agent session", `  haldir session create --agent my-bot --scopes read,browse,spend:50 --ttl 3600`, cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			body := map[string]any{"agent_id": agent, "ttl": ttl}
			if scopes != nil {
				body["scopes"] = scopes
			}
			if limit.v > 0 {
				body["spend_limit"] = limit.v
			}
			return "POST", "/v1/sessions", body, nil
		}, sessionLine)
	create.Flags().StringVar(&agent, "agent", "", "agent id (required)")
	create.Flags().StringSliceVar(&scopes, "scopes", nil, "session scopes (default read,browse)")
	create.Flags().IntVar(&ttl, "ttl", 3600, "lifetime in seconds")
	create.Flags().Var(&limit, "spend-limit", "spend cap in USD")
	get := e.simple("get SESSION_ID", "Show a session", "  haldir session get ses_…", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "GET", "/v1/sessions/" + pathEsc(a[0]), nil, nil
		}, sessionLine)
	revoke := e.simple("revoke SESSION_ID", "Revoke a session", "  haldir session revoke ses_…", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "DELETE", "/v1/sessions/" + pathEsc(a[0]), nil, nil
		},
		func(w io.Writer, r map[string]any) { fmt.Fprintf(w, "revoked %v\n", r["session_id"]) })
	check := &cobra.Command{
		Use: "check SESSION_ID SCOPE", Short: "Check whether a session grants a scope (exit 1 when not)", Example: "  haldir session check ses_… write:files",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			var r map[string]any
			if err := e.call(cmd.Context(), "POST", "/v1/sessions/"+pathEsc(a[0])+"/check", map[string]any{"scope": a[1]}, &r); err != nil {
				return err
			}
			if err := e.show(r, func(w io.Writer, r map[string]any) {
				verdict := "allowed"
				if r["allowed"] != true {
					verdict = "NOT allowed"
				}
				fmt.Fprintf(w, "%v: %s %s\n", r["session_id"], r["scope"], verdict)
			}); err != nil {
				return err
			}
			if r["allowed"] != true {
				return &exitError{code: ExitCheckFailed}
			}
			return nil
		},
	}
	return group("session", "Manage agent sessions", "  haldir session create --agent my-bot --scopes read,spend:50", create, get, revoke, check)
}

func newSecret(e *env) *cobra.Command {
	var scope, session string
	var fromStdin bool
	store := &cobra.Command{
		Use:   "store NAME",
		Short: "Store a secret (value from HALDIR_SECRET_VALUE or standard input, never an argument)",
		Long: `Store a secret in the vault. The value is read from standard input (or the
HALDIR_SECRET_VALUE environment variable), never from the command line, where
other users could see it.`,
		Example: "  printf %s \"$STRIPE_KEY\" | haldir secret store stripe_key --stdin",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			value := os.Getenv("HALDIR_SECRET_VALUE")
			if value == "" || fromStdin {
				b, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20))
				if err != nil {
					return fail(ExitUsage, "cannot read the value: %v", err)
				}
				value = strings.TrimRight(string(b), "\r\n")
			}
			if value == "" {
				return fail(ExitUsage, "no value: pipe it on standard input or set HALDIR_SECRET_VALUE")
			}
			body := map[string]any{"name": a[0], "value": value}
			if scope != "" {
				body["scope_required"] = scope
			}
			var r map[string]any
			if err := e.call(cmd.Context(), "POST", "/v1/secrets", body, &r); err != nil {
				return err
			}
			return e.show(r, func(w io.Writer, r map[string]any) {
				fmt.Fprintf(w, "stored %v version %v (requires scope %v)\n", r["name"], r["version"], r["scope_required"])
			})
		},
	}
	store.Flags().StringVar(&scope, "scope-required", "", "the session scope a reader needs (default read)")
	store.Flags().BoolVar(&fromStdin, "stdin", false, "read the value from standard input")
	get := e.simple("get NAME", "Read a secret with a session holding its scope", "  haldir secret get stripe_key --session ses_…", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			if session == "" {
				return "", "", nil, fail(ExitUsage, "--session is required: reading a secret needs a session holding its scope")
			}
			return "GET", "/v1/secrets/" + pathEsc(a[0]) + "?session_id=" + url.QueryEscape(session), nil, nil
		},
		func(w io.Writer, r map[string]any) { fmt.Fprintln(w, r["value"]) })
	get.Flags().StringVar(&session, "session", "", "session id (required)")
	list := e.simple("list", "List secret names (never values)", "  haldir secret list", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) { return "GET", "/v1/secrets", nil, nil },
		func(w io.Writer, r map[string]any) {
			names, _ := r["secrets"].([]any)
			for _, n := range names {
				fmt.Fprintln(w, n)
			}
			fmt.Fprintf(w, "%v secrets\n", r["count"])
		})
	del := e.simple("delete NAME", "Delete a secret: its data keys are destroyed", "  haldir secret delete stripe_key", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "DELETE", "/v1/secrets/" + pathEsc(a[0]), nil, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "deleted %v; its plaintext is unrecoverable\n", r["name"])
		})
	return group("secret", "Manage vault secrets", "  haldir secret list", store, get, list, del)
}

func newPay(e *env) *cobra.Command {
	var session, description, currency string
	var amount money
	authorize := e.simple("authorize", "Authorize spend against a session's cap", "  haldir pay authorize --session ses_… --amount 29.99", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "POST", "/v1/payments/authorize", map[string]any{"session_id": session, "amount": amount.v, "description": description, "currency": currency}, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "authorized $%v (%v); remaining budget $%v\n", r["amount"], r["authorization_id"], r["remaining_budget"])
		})
	authorize.Flags().StringVar(&session, "session", "", "session id (required)")
	authorize.Flags().Var(&amount, "amount", "amount in USD (required)")
	authorize.Flags().StringVar(&description, "description", "", "what it is for")
	authorize.Flags().StringVar(&currency, "currency", "USD", "currency")
	return group("pay", "Authorize payments", "  haldir pay authorize --session ses_… --amount 29.99", authorize)
}

func newApprovals(e *env) *cobra.Command {
	var agent, by, note string
	pending := e.simple("pending", "List pending approval requests", "  haldir approvals pending --agent my-bot", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", "/v1/approvals/pending?agent_id=" + url.QueryEscape(agent), nil, nil
		},
		func(w io.Writer, r map[string]any) {
			reqs, _ := r["requests"].([]any)
			for _, x := range reqs {
				m := x.(map[string]any)
				fmt.Fprintf(w, "%v  %v %v.%v $%v  expires %v  %v\n", m["request_id"], m["agent_id"], m["tool"], m["action"], m["amount"], m["expires_at"], m["reason"])
			}
			fmt.Fprintf(w, "%v pending\n", r["count"])
		})
	pending.Flags().StringVar(&agent, "agent", "", "only this agent")
	decide := func(verb string) *cobra.Command {
		c := e.simple(verb+" REQUEST_ID", strings.ToUpper(verb[:1])+verb[1:]+" a pending request", "  haldir approvals "+verb+" apr_… --note \"ok\"", cobra.ExactArgs(1),
			func(_ *cobra.Command, a []string) (string, string, any, error) {
				return "POST", "/v1/approvals/" + pathEsc(a[0]) + "/" + verb, map[string]any{"decided_by": by, "note": note}, nil
			},
			func(w io.Writer, r map[string]any) { fmt.Fprintf(w, "%sd %v\n", verb[:len(verb)-1], r["request_id"]) })
		c.Flags().StringVar(&by, "by", "", "who decides (default: the key's prefix)")
		c.Flags().StringVar(&note, "note", "", "a note for the record")
		return c
	}
	return group("approvals", "Decide human approvals", "  haldir approvals pending", pending, decide("approve"), decide("deny"))
}

func newComplianceRemote(e *env, cmd *cobra.Command) {
	var since, until, format, out string
	evidence := &cobra.Command{
		Use:     "evidence",
		Short:   "Download the signed compliance evidence pack (JSON or Markdown)",
		Example: "  haldir compliance evidence --since 2026-01-01 --out evidence-q1-2026.md",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if format == "" {
				format = "json"
				if strings.HasSuffix(out, ".md") {
					format = "markdown"
				}
			}
			q := url.Values{"format": {format}}
			if since != "" {
				q.Set("since", since)
			}
			if until != "" {
				q.Set("until", until)
			}
			cl, err := e.remote()
			if err != nil {
				return err
			}
			resp, err := cl.Raw(c.Context(), "GET", "/v1/compliance/evidence?"+q.Encode(), nil)
			if err != nil {
				return apiFailure(err, cl)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return fail(ExitUnreachable, "the download was interrupted: %v", err)
			}
			if out == "" || out == "-" {
				_, err := e.stdout.Write(body)
				return err
			}
			if err := os.WriteFile(out, body, 0o600); err != nil {
				return fail(ExitCheckFailed, "cannot write %s: %v", out, err)
			}
			return e.print(map[string]any{"file": out, "format": format, "bytes": len(body)}, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s (%s, %s bytes); check it any time with 'haldir compliance verify'\n", out, format, thousands(int64(len(body))))
			})
		},
	}
	evidence.Flags().StringVar(&since, "since", "", "period start (RFC 3339 or YYYY-MM-DD; default 30 days ago)")
	evidence.Flags().StringVar(&until, "until", "", "period end (default now)")
	evidence.Flags().StringVar(&format, "format", "", "json or markdown (default from --out's extension)")
	evidence.Flags().StringVar(&out, "out", "", "output file (default stdout)")
	score := e.simple("score", "The compliance posture score", "  haldir compliance score", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", "/v1/compliance/score", nil, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "posture score %v/100\n", r["score"])
			checks, _ := r["checks"].([]any)
			for _, x := range checks {
				m := x.(map[string]any)
				mark := "✗"
				if m["passed"] == true {
					mark = "✓"
				}
				fmt.Fprintf(w, "  %s %-24v %3v  %v\n", mark, m["id"], m["weight"], m["detail"])
			}
		})
	cmd.AddCommand(evidence, score)
}
