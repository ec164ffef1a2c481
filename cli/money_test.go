package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/cli"
)

// TestMoneyFlagsAreDecimalDollars: an amount given on the command line is
// read by the server's own strict parser. Go literal syntax used to be
// accepted by the float flags: --spend-limit 0x10 gave a $16 cap and 1_0 a
// $10 one.
func TestMoneyFlagsAreDecimalDollars(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	a := s.NewTenant("a")
	t.Setenv("HALDIR_BASE_URL", s.URL)
	t.Setenv("HALDIR_API_KEY", a.Key)
	t.Setenv("HALDIR_CONFIG_FILE", filepath.Join(t.TempDir(), "config.json"))
	ses := run(t, "", "session", "create", "--agent", "bot", "--spend-limit", "10", "--json")
	if ses.code != 0 {
		t.Fatalf("session create: %+v", ses)
	}
	for _, bad := range []string{"0x10", "0x1p4", "1_0", "1/3", "-5", "ten"} {
		for _, args := range [][]string{
			{"session", "create", "--agent", "bot", "--spend-limit", bad},
			{"pay", "authorize", "--session", "ses_aaaaaaaaaaaaaaaaaaaaaaaa", "--amount", bad},
			{"audit", "log", "--session", "ses_aaaaaaaaaaaaaaaaaaaaaaaa", "--action", "x", "--cost", bad},
			{"proxy", "policy", "add", "--type", "spend_limit", "--max", bad},
		} {
			r := run(t, "", args...)
			if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "not an amount of dollars") {
				t.Errorf("%v: exit %d, stderr %q; want a usage error", args, r.code, r.stderr)
			}
		}
	}
	// Nothing was sent: the ledger holds the one session and no payment,
	// action or policy.
	trail := a.Do("GET", "/v1/audit?limit=1000", nil).Expect(t, 200)
	counts := map[string]int{}
	for _, e := range trail.Body["entries"].([]any) {
		counts[e.(map[string]any)["type"].(string)]++
	}
	if counts["session.created"] != 1 || counts["payment.authorized"]+counts["payment.denied"]+counts["audit.logged"]+counts["proxy.policy_added"] != 0 {
		t.Errorf("the ledger holds %v; refused flags must send nothing", counts)
	}
	good := run(t, "", "session", "create", "--agent", "bot", "--spend-limit", "12.5", "--json")
	if good.code != 0 || !strings.Contains(good.stdout, `"spend_limit": 12.5`) {
		t.Errorf("--spend-limit 12.5: %+v", good)
	}
}
