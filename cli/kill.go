package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// killTarget is what `haldir kill` and `haldir unkill` act on: exactly one
// of an agent, the key's tenant, or (with the operator token as the key)
// the whole install.
type killTarget struct {
	agent   string
	tenant  bool
	install bool
}

func (k *killTarget) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.agent, "agent", "", "the agent id to act on")
	cmd.Flags().BoolVar(&k.tenant, "tenant", false, "every agent of the key's tenant (needs admin:write)")
	cmd.Flags().BoolVar(&k.install, "install", false, "every tenant of the install (the key must be the operator token, HALDIR_ADMIN_TOKEN)")
}

// path returns the route for verb ("kill" or "unkill").
func (k *killTarget) path(verb string) (string, error) {
	n := 0
	for _, set := range []bool{k.agent != "", k.tenant, k.install} {
		if set {
			n++
		}
	}
	if n != 1 {
		return "", fail(ExitUsage, "give exactly one of --agent ID, --tenant or --install")
	}
	switch {
	case k.agent != "":
		return "/v1/agents/" + pathEsc(k.agent) + "/" + verb, nil
	case k.tenant:
		return "/v1/" + verb, nil
	default:
		return "/v1/admin/" + verb, nil
	}
}

func killLine(verb string) func(w io.Writer, r map[string]any) {
	return func(w io.Writer, r map[string]any) {
		what := fmt.Sprint(r["scope"])
		if r["agent_id"] != nil {
			what = "agent " + fmt.Sprint(r["agent_id"])
		}
		if r["changed"] != true {
			fmt.Fprintf(w, "%s: nothing to do (%s)\n", what, map[string]string{"kill": "already killed", "unkill": "not killed"}[verb])
			return
		}
		fmt.Fprintf(w, "%s: %sed\n", what, verb)
		if revoked, ok := r["sessions_revoked"].([]any); ok && len(revoked) > 0 {
			fmt.Fprintf(w, "revoked %d live session(s)\n", len(revoked))
		}
	}
}

func newKill(e *env) *cobra.Command {
	var t killTarget
	var reason string
	cmd := e.simple("kill", "Stop an agent, a tenant or the install at once: revoke its sessions and refuse it everything until unkill",
		"  haldir kill --agent my-bot --reason 'looping on delete'\n  haldir kill --tenant", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			path, err := t.path("kill")
			return "POST", path, map[string]any{"reason": reason}, err
		}, killLine("kill"))
	t.flags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown to whoever is refused")
	return cmd
}

func newUnkill(e *env) *cobra.Command {
	var t killTarget
	cmd := e.simple("unkill", "Lift a kill switch (sessions it revoked stay revoked)", "  haldir unkill --agent my-bot", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) {
			path, err := t.path("unkill")
			return "POST", path, map[string]any{}, err
		}, killLine("unkill"))
	t.flags(cmd)
	return cmd
}

func newKills(e *env) *cobra.Command {
	return e.simple("kills", "List the kill switches in force", "  haldir kills", cobra.NoArgs,
		func(*cobra.Command, []string) (string, string, any, error) { return "GET", "/v1/kills", nil, nil },
		func(w io.Writer, r map[string]any) {
			if r["install_killed"] == true {
				fmt.Fprintln(w, "the install is killed (operator)")
			}
			if r["tenant_killed"] == true {
				fmt.Fprintln(w, "the tenant is killed")
			}
			agents, _ := r["agents"].([]any)
			for _, x := range agents {
				a := x.(map[string]any)
				fmt.Fprintf(w, "agent %v killed by %v: %v\n", a["agent_id"], a["by"], a["reason"])
			}
			if len(agents) == 0 && r["install_killed"] != true && r["tenant_killed"] != true {
				fmt.Fprintln(w, "no kill switch is in force")
			}
		})
}
