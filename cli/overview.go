package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func newOverview(e *env) *cobra.Command {
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "overview",
		Short: "The tenant dashboard: actions, spend, sessions, vault, audit, webhooks, approvals",
		Long: `Print the tenant dashboard. With --watch it becomes a live, top-style view that
redraws in place every --interval and quits on q or Ctrl-C.`,
		Example: "  haldir overview\n  haldir overview --watch --interval 5s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !watch {
				r, err := e.overview(cmd.Context())
				if err != nil {
					return err
				}
				return e.show(r, e.renderOverview)
			}
			if e.json {
				return fail(ExitUsage, "--watch draws a live view; use it without --json")
			}
			return e.watchOverview(cmd.Context(), interval)
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "redraw in place until q or Ctrl-C")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch redraws")
	return cmd
}

func (e *env) overview(ctx context.Context) (map[string]any, error) {
	var r map[string]any
	err := e.call(ctx, "GET", "/v1/admin/overview", nil, &r)
	return r, err
}

// num reads a number from nested JSON maps: num(r, "audit", "entries").
func num(r map[string]any, path ...string) int64 {
	var cur any = r
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0
		}
		cur = m[p]
	}
	f, _ := cur.(float64)
	return int64(f)
}

func str(r map[string]any, path ...string) string {
	var cur any = r
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	if cur == nil {
		return ""
	}
	return fmt.Sprint(cur)
}

func (e *env) renderOverview(w io.Writer, r map[string]any) {
	chain := "chain ✓"
	switch str(r, "audit", "chain") {
	case "broken":
		chain = "chain ✗ BROKEN"
	case "":
		chain = "chain ?"
	}
	rate := "no deliveries"
	if num(r, "webhooks", "deliveries_24h") > 0 {
		rate = str(r, "webhooks", "success_rate_24h") + " success"
	}
	lines := [][2]string{
		{"Status", e.pill(str(r, "status"))},
		{"Actions", fmt.Sprintf("%s this month", thousands(num(r, "actions", "this_month")))},
		{"Spend", "$ " + str(r, "spend", "this_month_usd") + " this month"},
		{"Sessions", fmt.Sprintf("%s active · %s", thousands(num(r, "sessions", "active")), plural(num(r, "sessions", "active_agents"), "agent"))},
		{"Vault", fmt.Sprintf("%d secrets · %d accesses this month", num(r, "vault", "secrets"), num(r, "vault", "accesses_this_month"))},
		{"Audit", fmt.Sprintf("%s entries · %d flagged (7d) · %s", thousands(num(r, "audit", "entries")), num(r, "audit", "flagged_7d"), chain)},
		{"Webhooks", fmt.Sprintf("%d registered · %d deliveries (24h) · %s", num(r, "webhooks", "registered"), num(r, "webhooks", "deliveries_24h"), rate)},
		{"Approvals", fmt.Sprintf("%d pending", num(r, "approvals", "pending"))},
	}
	fmt.Fprintln(w, "Haldir tenant overview")
	fmt.Fprintf(w, "%s · %s\n", str(r, "tenant_id"), str(r, "generated_at"))
	for _, l := range lines {
		fmt.Fprintf(w, "%-10s %s\n", l[0], l[1])
	}
}

// watchOverview redraws the dashboard in place until q, Ctrl-C or ctx.
func (e *env) watchOverview(ctx context.Context, interval time.Duration) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	quit := make(chan struct{})
	if in, ok := e.stdin.(*os.File); ok {
		if restore := rawMode(in); restore != nil {
			defer restore()
		}
		go func() {
			buf := make([]byte, 1)
			for {
				n, err := in.Read(buf)
				if err != nil {
					return
				}
				if n == 1 && (buf[0] == 'q' || buf[0] == 'Q' || buf[0] == 3) { // 3: Ctrl-C in raw mode
					close(quit)
					return
				}
			}
		}()
	}
	fmt.Fprint(e.stdout, "\033[?25l") // hide the cursor
	defer fmt.Fprint(e.stdout, "\033[?25h\n")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := e.overview(ctx)
		var frame strings.Builder
		frame.WriteString("\033[H\033[2J") // home, clear
		if err != nil {
			fmt.Fprintf(&frame, "Haldir tenant overview\n\n%v\n", err)
		} else {
			e.renderOverview(&frame, r)
		}
		fmt.Fprintf(&frame, "\nrefreshing every %s · %s · q to quit", interval, time.Now().Format("15:04:05"))
		io.WriteString(e.stdout, frame.String())
		select {
		case <-ctx.Done():
			return nil
		case <-quit:
			return nil
		case <-t.C:
		}
	}
}

// plural formats n with noun, adding an s unless n is 1.
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return thousands(n) + " " + noun + "s"
}
