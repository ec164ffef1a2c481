package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func anomalyLine(w io.Writer, m map[string]any) {
	state := "open"
	if m["acknowledged"] == true {
		state = "acked"
	}
	ev, _ := m["evidence"].([]any)
	fmt.Fprintf(w, "%v  %-6s %-9v %-6v %-16v %v (%d events)\n", m["flagged_at"], state, m["detector"], m["severity"], m["agent_id"], m["reason"], len(ev))
}

func newAnomalies(e *env) *cobra.Command {
	var open bool
	var limit int
	list := e.simple("list", "List anomaly flags, newest first", "  haldir anomalies list --open", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", fmt.Sprintf("/v1/anomalies?open=%t&limit=%d", open, limit), nil, nil
		},
		func(w io.Writer, r map[string]any) {
			items, _ := r["anomalies"].([]any)
			for _, x := range items {
				anomalyLine(w, x.(map[string]any))
			}
			if len(items) == 0 {
				fmt.Fprintln(w, "no anomalies flagged")
			}
		})
	list.Flags().BoolVar(&open, "open", false, "only flags not yet acknowledged")
	list.Flags().IntVar(&limit, "limit", 100, "how many (1-1000)")
	var note string
	ack := e.simple("ack ANOMALY_ID", "Acknowledge an anomaly flag", "  haldir anomalies ack anm_… --note 'known batch job'", cobra.ExactArgs(1),
		func(_ *cobra.Command, a []string) (string, string, any, error) {
			return "POST", "/v1/anomalies/" + pathEsc(a[0]) + "/ack", map[string]any{"note": note}, nil
		},
		func(w io.Writer, r map[string]any) {
			if r["changed"] == true {
				fmt.Fprintf(w, "acknowledged %v\n", r["anomaly_id"])
			} else {
				fmt.Fprintf(w, "%v was acknowledged already\n", r["anomaly_id"])
			}
		})
	ack.Flags().StringVar(&note, "note", "", "why it is fine, or what was done")
	settings := e.simple("settings", "Show the tenant's detector settings", "  haldir anomalies settings --json", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			return "GET", "/v1/anomalies/settings", nil, nil
		},
		func(w io.Writer, r map[string]any) {
			on := func(v any) bool { n, _ := v.(float64); return n > 0 }
			line := func(name string, enabled bool, format string, args ...any) {
				if !enabled {
					fmt.Fprintf(w, "%-10s off\n", name+":")
					return
				}
				fmt.Fprintf(w, "%-10s "+format+"\n", append([]any{name + ":"}, args...)...)
			}
			line("loop", on(r["loop_calls"]), "more than %v same calls in %vs", r["loop_calls"], r["loop_window_seconds"])
			line("first use", r["first_use"] == true, "on")
			line("denials", on(r["denials"]), "more than %v in %vs in one session", r["denials"], r["denial_window_seconds"])
			line("spend", on(r["spend_usd"]), "over $%v in %vs", r["spend_usd"], r["spend_window_seconds"])
			line("off hours", r["off_hours"] == true, "outside %v:00-%v:00 %v", r["start_hour"], r["end_hour"], r["timezone"])
		})
	return group("anomalies", "List and acknowledge anomaly flags", "  haldir anomalies list --open\n  haldir audit tail --flagged", list, ack, settings)
}
