package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// keyValues parses repeated KEY=VALUE flags.
func keyValues(flag string, list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fail(ExitUsage, "--%s takes KEY=VALUE, not %q", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

// jsonObject parses a flag holding a JSON object.
func jsonObject(flag, s string) (map[string]any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, fail(ExitUsage, "--%s must be a JSON object, such as '{\"path\":\"/tmp\"}'", flag)
	}
	return m, nil
}

func newProxy(e *env) *cobra.Command {
	var upURL, transport string
	var headers, envs []string
	register := e.simple("register NAME (--url URL | -- COMMAND [ARG…])", "Register an upstream MCP server (a local command needs an admin key)",
		`  haldir proxy register files --url https://mcp.example.com/mcp --header 'Authorization=Bearer {{secret:files_token}}'
  haldir proxy register everything -- npx -y @modelcontextprotocol/server-everything stdio`,
		cobra.MinimumNArgs(1),
		func(cmd *cobra.Command, a []string) (string, string, any, error) {
			h, err := keyValues("header", headers)
			if err != nil {
				return "", "", nil, err
			}
			en, err := keyValues("env", envs)
			if err != nil {
				return "", "", nil, err
			}
			body := map[string]any{"name": a[0]}
			command := a[1:]
			switch {
			case upURL != "" && len(command) > 0:
				return "", "", nil, fail(ExitUsage, "give either --url or a command after --, not both")
			case upURL != "":
				body["url"] = upURL
			case len(command) > 0:
				body["command"] = command
			default:
				return "", "", nil, fail(ExitUsage, "give --url URL, or a local command after --")
			}
			if transport != "" {
				body["transport"] = transport
			}
			if h != nil {
				body["headers"] = h
			}
			if en != nil {
				body["env"] = en
			}
			return "POST", "/v1/proxy/upstreams", body, nil
		},
		func(w io.Writer, r map[string]any) {
			health := "healthy"
			if r["healthy"] != true {
				health = fmt.Sprintf("NOT connected (%v); it keeps retrying", r["error"])
			}
			fmt.Fprintf(w, "registered %v (%v), %s\n%v tools: %s\n", r["name"], r["transport"], health, r["tools_discovered"], joinAny(r["tool_names"]))
		})
	register.Flags().StringVar(&upURL, "url", "", "Streamable HTTP or SSE endpoint")
	register.Flags().StringVar(&transport, "transport", "", "streamable (default for --url) or sse")
	register.Flags().StringArrayVar(&headers, "header", nil, "HTTP header KEY=VALUE for the upstream; {{secret:NAME}} is filled from the vault")
	register.Flags().StringArrayVar(&envs, "env", nil, "environment KEY=VALUE for a local command; {{secret:NAME}} is filled from the vault")

	upstreams := e.simple("upstreams", "Show upstream health and call stats", "  haldir proxy upstreams", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", "/v1/proxy/upstreams", nil, nil
		},
		func(w io.Writer, r map[string]any) {
			ups, _ := r["upstreams"].([]any)
			for _, x := range ups {
				m := x.(map[string]any)
				state := "healthy"
				if m["healthy"] != true {
					state = fmt.Sprintf("DOWN (%v)", m["last_error"])
				}
				fmt.Fprintf(w, "%-16v %-10v %-8s %v tools  %v calls, %v failed  p50 %vms p99 %vms\n", m["name"], m["transport"], state,
					m["tools"], m["calls"], m["failures"], m["latency_p50_ms"], m["latency_p99_ms"])
			}
			fmt.Fprintf(w, "%v upstreams\n", r["count"])
		})

	tools := e.simple("tools", "List proxied tools and their quarantine status", "  haldir proxy tools", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) { return "GET", "/v1/proxy/tools", nil, nil },
		func(w io.Writer, r map[string]any) {
			list, _ := r["tools"].([]any)
			for _, x := range list {
				m := x.(map[string]any)
				state := "pinned"
				if m["quarantined"] == true {
					state = "QUARANTINED (definition changed; haldir proxy approve " + fmt.Sprint(m["name"]) + ")"
				}
				hash, _ := m["definition_hash"].(string)
				if len(hash) > 12 {
					hash = hash[:12] + "…"
				}
				fmt.Fprintf(w, "%-28v %-14s %s\n", m["name"], hash, state)
			}
			fmt.Fprintf(w, "%v tools\n", r["count"])
		})

	approve := e.simple("approve TOOL", "Approve a quarantined tool's new definition (admin)", "  haldir proxy approve files.read", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "POST", "/v1/proxy/tools/" + pathEsc(a[0]) + "/approve", nil, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "approved %v at definition %v\n", r["tool"], r["definition_hash"])
		})

	var session, args string
	var cost money
	call := e.simple("call TOOL", "Call a tool through the governed proxy", `  haldir proxy call files.read --session ses_… --args '{"path":"/tmp/report.txt"}'`, cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			m, err := jsonObject("args", args)
			if err != nil {
				return "", "", nil, err
			}
			body := map[string]any{"tool": a[0], "session_id": session, "arguments": m}
			if cost.v > 0 {
				body["cost_usd"] = cost.v
			}
			return "POST", "/v1/proxy/call", body, nil
		},
		func(w io.Writer, r map[string]any) {
			content, _ := r["content"].([]any)
			for _, x := range content {
				m, _ := x.(map[string]any)
				if t, ok := m["text"].(string); ok {
					fmt.Fprintln(w, t)
				} else {
					fmt.Fprintf(w, "[%v content]\n", m["type"])
				}
			}
			if r["isError"] == true {
				fmt.Fprintln(w, "(the tool reported an error)")
			}
		})
	call.Flags().StringVar(&session, "session", "", "the agent session (required)")
	call.Flags().StringVar(&args, "args", "", "arguments as a JSON object; {{secret:NAME}} is filled from the vault")
	call.Flags().Var(&cost, "cost", "what the call costs in USD, reserved against the session's cap")

	return group("proxy", "Govern upstream MCP servers", "  haldir proxy register files --url https://mcp.example.com/mcp\n  haldir proxy tools",
		register, upstreams, tools, approve, call, newPolicy(e))
}

func newPolicy(e *env) *cobra.Command {
	var typ, tool, tz string
	var tools []string
	var max money
	var perMinute, start, end int
	add := e.simple("add", "Add a proxy policy (the first deny wins)", `  haldir proxy policy add --type deny_list --tools 'files.delete,shell.*'
  haldir proxy policy add --type rate_limit --max-per-minute 60
  haldir proxy policy add --type time_window --start-hour 22 --end-hour 6 --timezone Europe/Paris`, cobra.NoArgs,
		func(cmd *cobra.Command, _ []string) (string, string, any, error) {
			body := map[string]any{"type": typ}
			set := func(flag, field string, v any) {
				if cmd.Flags().Changed(flag) {
					body[field] = v
				}
			}
			set("tools", "tools", tools)
			set("tool", "tool", tool)
			set("max", "max", max.v)
			set("max-per-minute", "max_per_minute", perMinute)
			set("start-hour", "start_hour", start)
			set("end-hour", "end_hour", end)
			set("timezone", "timezone", tz)
			return "POST", "/v1/proxy/policies", body, nil
		},
		func(w io.Writer, r map[string]any) { fmt.Fprintf(w, "added %v policy %v\n", r["type"], r["policy_id"]) })
	f := add.Flags()
	f.StringVar(&typ, "type", "", "allow_list, deny_list, block_tool, spend_limit, rate_limit or time_window")
	f.StringSliceVar(&tools, "tools", nil, "tool names or globs, for allow_list and deny_list")
	f.StringVar(&tool, "tool", "", "the tool, for block_tool")
	f.Var(&max, "max", "dollars a call may cost, for spend_limit")
	f.IntVar(&perMinute, "max-per-minute", 0, "calls an agent may make a minute, for rate_limit")
	f.IntVar(&start, "start-hour", 0, "first allowed hour (0-23), for time_window")
	f.IntVar(&end, "end-hour", 0, "hour the window closes (0-24; before start-hour crosses midnight), for time_window")
	f.StringVar(&tz, "timezone", "", "IANA time zone of the window (default UTC)")

	list := e.simple("list", "List proxy policies", "  haldir proxy policy list", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", "/v1/proxy/policies", nil, nil
		},
		func(w io.Writer, r map[string]any) {
			ps, _ := r["policies"].([]any)
			for _, x := range ps {
				m := x.(map[string]any)
				var detail []string
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					if k != "policy_id" && k != "type" {
						detail = append(detail, fmt.Sprintf("%s=%v", k, m[k]))
					}
				}
				fmt.Fprintf(w, "%v  %-12v %s\n", m["policy_id"], m["type"], strings.Join(detail, " "))
			}
			fmt.Fprintf(w, "%v policies\n", r["count"])
		})
	return group("policy", "Manage proxy policies", "  haldir proxy policy add --type deny_list --tools files.delete", add, list)
}

func newWebhooks(e *env) *cobra.Command {
	var name string
	var events []string
	add := e.simple("add URL", "Register a webhook endpoint (its signing secret is shown once)",
		"  haldir webhooks add https://hooks.example.com/haldir --events approval.requested,payment.denied", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			body := map[string]any{"url": a[0], "name": name}
			if events != nil {
				body["events"] = events
			}
			return "POST", "/v1/webhooks", body, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "registered %v for %s\nsigning secret (shown once): %v\n", r["webhook_id"], orAll(r["events"]), r["secret"])
		})
	add.Flags().StringVar(&name, "name", "", "a name for the endpoint")
	add.Flags().StringSliceVar(&events, "events", nil, "event types to deliver (default: all)")

	list := e.simple("list", "List webhook endpoints", "  haldir webhooks list", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) { return "GET", "/v1/webhooks", nil, nil },
		func(w io.Writer, r map[string]any) {
			hooks, _ := r["webhooks"].([]any)
			for _, x := range hooks {
				m := x.(map[string]any)
				state := "active"
				if m["active"] != true {
					state = "DISABLED"
				}
				fmt.Fprintf(w, "%v  %-8s %v  %s  %v delivered, %v failed\n", m["webhook_id"], state, m["url"], orAll(m["events"]), m["fire_count"], m["fail_count"])
			}
			fmt.Fprintf(w, "%v webhooks\n", r["count"])
		})

	var limit int
	var hook string
	deliveries := e.simple("deliveries", "Show recent delivery attempts, newest first", "  haldir webhooks deliveries -n 20", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if hook != "" {
				q.Set("webhook_id", hook)
			}
			return "GET", "/v1/webhooks/deliveries?" + q.Encode(), nil, nil
		},
		func(w io.Writer, r map[string]any) {
			list, _ := r["deliveries"].([]any)
			for _, x := range list {
				m := x.(map[string]any)
				outcome := fmt.Sprint(m["status_code"])
				if e, _ := m["error"].(string); e != "" {
					outcome = e
				}
				fmt.Fprintf(w, "%v  %-26v attempt %v  %-9v %v  %vms\n", m["created_at"], m["event_type"], m["attempt"], m["status"], outcome, m["duration_ms"])
			}
			fmt.Fprintf(w, "%v attempts\n", r["count"])
		})
	deliveries.Flags().IntVarP(&limit, "limit", "n", 20, "how many attempts (1-1000)")
	deliveries.Flags().StringVar(&hook, "webhook", "", "only this webhook id")

	var grace int
	rotate := e.simple("rotate WEBHOOK_ID", "Rotate a webhook's signing secret; the old one still signs during the grace period",
		"  haldir webhooks rotate whk_… --grace 3600", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "POST", "/v1/webhooks/" + pathEsc(a[0]) + "/rotate-secret", map[string]any{"grace_seconds": grace}, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "rotated %v; new signing secret (shown once): %v\nthe previous secret also signs until %v\n", r["webhook_id"], r["secret"], r["secret_prev_expires_at"])
		})
	rotate.Flags().IntVar(&grace, "grace", 3600, "seconds the previous secret keeps signing")
	return group("webhooks", "Manage webhook endpoints", "  haldir webhooks list\n  haldir webhooks deliveries", add, list, deliveries, rotate)
}

// orAll shows an event filter, where none means every event.
func orAll(v any) string {
	if s := joinAny(v); s != "" {
		return s
	}
	return "all events"
}
