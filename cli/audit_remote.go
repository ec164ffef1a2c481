package cli

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/transparency"
)

// entryLine renders one audit entry on one line.
func entryLine(m map[string]any) string {
	flag := ""
	if m["flagged"] == true {
		flag = "  ⚑ " + fmt.Sprint(m["flag_reason"])
	}
	cost := ""
	if c, _ := m["cost_usd"].(float64); c != 0 {
		cost = fmt.Sprintf("  $%v", m["cost_usd"])
	}
	agent := fmt.Sprint(m["agent_id"])
	if agent == "" {
		agent = "-"
	}
	return fmt.Sprintf("%v  #%-6v %-22s %-16s %s%s%s", m["timestamp"], m["seq"], fmt.Sprint(m["tool"])+"."+fmt.Sprint(m["action"]), agent, m["type"], cost, flag)
}

func entries(r map[string]any) []map[string]any {
	list, _ := r["entries"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func auditQuery(agent, session, tool string, flagged bool, limit int) string {
	q := url.Values{}
	if flagged {
		q.Set("flagged", "true")
	}
	for k, v := range map[string]string{"agent_id": agent, "session_id": session, "tool": tool} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("limit", fmt.Sprint(limit))
	return "/v1/audit?" + q.Encode()
}

func newTail(e *env) *cobra.Command {
	var agent, session, tool string
	var n int
	var follow, flagged bool
	cmd := &cobra.Command{
		Use:     "tail",
		Short:   "Show the last N audit entries, oldest first; --follow keeps printing new ones",
		Example: "  haldir audit tail --agent my-bot -n 50\n  haldir audit tail --follow",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var r map[string]any
			if err := e.call(ctx, "GET", auditQuery(agent, session, tool, flagged, n), nil, &r); err != nil {
				return err
			}
			list := entries(r)
			var last float64
			enc := json.NewEncoder(e.stdout)
			printEntry := func(m map[string]any) {
				if e.json {
					enc.Encode(m)
				} else {
					fmt.Fprintln(e.stdout, entryLine(m))
				}
				if s, _ := m["seq"].(float64); s > last {
					last = s
				}
			}
			for i := len(list) - 1; i >= 0; i-- {
				printEntry(list[i])
			}
			if !follow {
				return nil
			}
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				if err := e.call(ctx, "GET", auditQuery(agent, session, tool, flagged, 1000), nil, &r); err != nil {
					return err
				}
				list := entries(r)
				for i := len(list) - 1; i >= 0; i-- {
					if s, _ := list[i]["seq"].(float64); s > last {
						printEntry(list[i])
					}
				}
			}
		},
	}
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent")
	cmd.Flags().StringVar(&session, "session", "", "only this session")
	cmd.Flags().StringVar(&tool, "tool", "", "only this tool")
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many entries")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new entries")
	cmd.Flags().BoolVar(&flagged, "flagged", false, "only flagged entries (anomalies, denials)")
	return cmd
}

func newTrail(e *env) *cobra.Command {
	var agent, session, tool string
	var limit int
	var flagged bool
	cmd := e.simple("trail", "Query the audit trail, newest first", "  haldir audit trail --session ses_… --limit 100", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", auditQuery(agent, session, tool, flagged, limit), nil, nil
		},
		func(w io.Writer, r map[string]any) {
			for _, m := range entries(r) {
				fmt.Fprintln(w, entryLine(m))
			}
			fmt.Fprintf(w, "%v entries", r["count"])
			if next, _ := r["next_cursor"].(string); next != "" {
				fmt.Fprintf(w, " (more: --cursor %s via the API)", next)
			}
			fmt.Fprintln(w)
		})
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent")
	cmd.Flags().StringVar(&session, "session", "", "only this session")
	cmd.Flags().StringVar(&tool, "tool", "", "only this tool")
	cmd.Flags().IntVar(&limit, "limit", 100, "how many entries (1-1000)")
	cmd.Flags().BoolVar(&flagged, "flagged", false, "only flagged entries (anomalies, denials)")
	return cmd
}

func newLog(e *env) *cobra.Command {
	var session, tool, action, details string
	var cost money
	cmd := e.simple("log", "Append an agent action to the audit trail", `  haldir audit log --session ses_… --tool stripe --action charge --cost 29.99`, cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			body := map[string]any{"session_id": session, "tool": tool, "action": action}
			if cost.set {
				body["cost_usd"] = cost.v
			}
			if details != "" {
				var d any
				if err := json.Unmarshal([]byte(details), &d); err != nil {
					return "", "", nil, fail(ExitUsage, "--details must be a JSON object: %v", err)
				}
				body["details"] = d
			}
			return "POST", "/v1/audit", body, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "logged %v", r["entry_id"])
			if r["flagged"] == true {
				fmt.Fprintf(w, "  ⚑ %v", r["flag_reason"])
			}
			fmt.Fprintln(w)
		})
	cmd.Flags().StringVar(&session, "session", "", "session id (required)")
	cmd.Flags().StringVar(&tool, "tool", "", "tool name")
	cmd.Flags().StringVar(&action, "action", "", "action (required)")
	cmd.Flags().StringVar(&details, "details", "", "details as a JSON object")
	cmd.Flags().Var(&cost, "cost", "cost in USD")
	return cmd
}

func newSpend(e *env) *cobra.Command {
	var agent, session string
	cmd := e.simple("spend", "Spend summary by tool", "  haldir audit spend --agent my-bot", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			q := url.Values{}
			if agent != "" {
				q.Set("agent_id", agent)
			}
			if session != "" {
				q.Set("session_id", session)
			}
			return "GET", "/v1/audit/spend?" + q.Encode(), nil, nil
		},
		func(w io.Writer, r map[string]any) {
			fmt.Fprintf(w, "total $%v over %v actions\n", r["total_usd"], r["action_count"])
			by, _ := r["by_tool"].(map[string]any)
			for _, tool := range slices.Sorted(maps.Keys(by)) {
				fmt.Fprintf(w, "  %-24s $%v\n", tool, by[tool])
			}
		})
	cmd.Flags().StringVar(&agent, "agent", "", "only this agent")
	cmd.Flags().StringVar(&session, "session", "", "only this session")
	return cmd
}

func newExport(e *env) *cobra.Command {
	var format, out, since, until string
	var bundle bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Download the audit trail (JSONL with a manifest, CSV, or an offline-verifiable bundle)",
		Example: `  haldir audit export --format=jsonl --out audit-2026-04.jsonl
  haldir audit export --bundle --out audit.bundle`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if bundle {
				format = "bundle"
			}
			if out == "" {
				return fail(ExitUsage, "--out FILE is required")
			}
			q := url.Values{"format": {format}}
			if since != "" {
				q.Set("since", since)
			}
			if until != "" {
				q.Set("until", until)
			}
			c, err := e.remote()
			if err != nil {
				return err
			}
			resp, err := c.Raw(cmd.Context(), "GET", "/v1/audit/export?"+q.Encode(), nil)
			if err != nil {
				return apiFailure(err, c)
			}
			defer resp.Body.Close()
			tmp := out + ".part"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fail(ExitCheckFailed, "cannot write %s: %v", out, err)
			}
			p := e.progress("exporting")
			h := sha256.New()
			var lines, bytes int64
			sc := bufio.NewReaderSize(resp.Body, 1<<16)
			w := bufio.NewWriter(io.MultiWriter(f, h))
			for {
				line, err := sc.ReadBytes('\n')
				if len(line) > 0 {
					w.Write(line)
					lines++
					bytes += int64(len(line))
					p.update(lines, 0)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					f.Close()
					return fail(ExitUnreachable, "the export was interrupted: %v", err)
				}
			}
			p.done()
			if err := w.Flush(); err != nil {
				f.Close()
				return fail(ExitCheckFailed, "cannot write %s: %v", out, err)
			}
			if err := f.Close(); err != nil {
				return fail(ExitCheckFailed, "cannot write %s: %v", out, err)
			}
			if err := os.Rename(tmp, out); err != nil {
				return fail(ExitCheckFailed, "cannot write %s: %v", out, err)
			}
			return e.print(map[string]any{"file": out, "format": format, "lines": lines, "bytes": bytes, "sha256": hex.EncodeToString(h.Sum(nil))}, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: %s lines, %s bytes (%s)\n", out, thousands(lines), thousands(bytes), format)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl or csv")
	cmd.Flags().BoolVar(&bundle, "bundle", false, "write an offline-verifiable bundle (events, signed checkpoint, public key)")
	cmd.Flags().StringVar(&out, "out", "", "output file")
	cmd.Flags().StringVar(&since, "since", "", "from this time (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&until, "until", "", "before this time")
	return cmd
}

// trustedKey fetches the server's checkpoint key, or reads --key.
func (e *env) trustedKey(cmd *cobra.Command, key string) (string, error) {
	if key != "" {
		k, err := readKey(key)
		if err != nil {
			return "", fail(ExitUsage, "cannot read the key: %v", err)
		}
		return k, nil
	}
	c, err := e.remote()
	if err != nil {
		return "", err
	}
	resp, err := c.Raw(cmd.Context(), "GET", "/.well-known/haldir-checkpoint-key", nil)
	if err != nil {
		return "", apiFailure(err, c)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return strings.TrimSpace(string(b)), nil
}

func newProve(e *env) *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "prove ENTRY_ID",
		Short: "Prove that an entry is in the signed log, and check the proof locally",
		Long: `Fetch the newest signed tree head and an inclusion proof for the entry, then
check both here: the checkpoint signature with the verifier key (--key, or the
server's published key), and the proof against the signed root.`,
		Example: "  haldir audit prove evt_06h1fvpi6nuc62hcrnud21lo --key ./checkpoint-key.txt",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vkey, err := e.trustedKey(cmd, key)
			if err != nil {
				return err
			}
			var proof transparency.InclusionProof
			if err := e.call(cmd.Context(), "GET", "/v1/audit/inclusion-proof/"+url.PathEscape(args[0]), nil, &proof); err != nil {
				return err
			}
			var sth transparency.SignedTreeHead
			if err := e.call(cmd.Context(), "GET", "/v1/audit/tree-head", nil, &sth); err != nil {
				return err
			}
			cp, err := transparency.VerifyTreeHead(&sth, vkey)
			if err == nil && cp.Size != proof.TreeSize {
				err = fmt.Errorf("the proof is for tree size %d, the signed head has %d", proof.TreeSize, cp.Size)
			}
			if err == nil {
				err = transparency.VerifyInclusion(&proof, proof.LeafIndex, tlog.Hash(proof.LeafHash), cp.Size, cp.Root)
			}
			if err != nil {
				e.print(map[string]any{"proved": false, "error": err.Error()}, func(w io.Writer) { fmt.Fprintf(w, "✗ %v\n", err) })
				return &exitError{code: ExitCheckFailed, err: fmt.Errorf("the inclusion proof does not verify")}
			}
			return e.print(map[string]any{"proved": true, "entry_id": args[0], "leaf_index": proof.LeafIndex, "tree_size": cp.Size,
				"root_hash": fmt.Sprintf("%x", cp.Root[:]), "signed_at": cp.Time}, func(w io.Writer) {
				fmt.Fprintf(w, "✓ %s is leaf %d of the log of %d entries signed at %s (root %x…)\n", args[0], proof.LeafIndex, cp.Size, cp.Time.Format(time.RFC3339), cp.Root[:8])
			})
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "verifier key to trust (default: fetch the server's)")
	return cmd
}

func newConsistency(e *env) *cobra.Command {
	var first, second int64
	cmd := &cobra.Command{
		Use:     "consistency",
		Short:   "Prove the log at --second extends the log at --first, and check the proof locally",
		Example: "  haldir audit consistency --first 1000 --second 1847",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if first < 1 || second < first {
				return fail(ExitUsage, "--first and --second must satisfy 1 <= first <= second")
			}
			var p transparency.ConsistencyProof
			if err := e.call(cmd.Context(), "GET", fmt.Sprintf("/v1/audit/consistency-proof?first=%d&second=%d", first, second), nil, &p); err != nil {
				return err
			}
			if err := transparency.VerifyConsistency(&p, first, tlog.Hash(p.FirstRoot), second, tlog.Hash(p.SecondRoot)); err != nil {
				e.print(map[string]any{"consistent": false, "error": err.Error()}, func(w io.Writer) { fmt.Fprintf(w, "✗ %v\n", err) })
				return &exitError{code: ExitCheckFailed, err: fmt.Errorf("the consistency proof does not verify")}
			}
			return e.print(map[string]any{"consistent": true, "first_size": first, "second_size": second, "first_root": p.FirstRoot, "second_root": p.SecondRoot}, func(w io.Writer) {
				fmt.Fprintf(w, "✓ the log of %d entries (root %s…) extends the log of %d entries (root %s…)\n", second, p.SecondRoot.String()[:16], first, p.FirstRoot.String()[:16])
				fmt.Fprintln(w, "  compare the roots with checkpoints you hold; a root you have never seen signed proves nothing")
			})
		},
	}
	cmd.Flags().Int64Var(&first, "first", 0, "the older tree size")
	cmd.Flags().Int64Var(&second, "second", 0, "the newer tree size")
	return cmd
}
