package domain

import (
	"testing"
	"time"
)

func TestInWindowCrossesMidnight(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 11, 26, h, 30, 0, 0, time.UTC) }
	for _, c := range []struct {
		start, end, hour int
		want             bool
	}{
		{9, 17, 8, false}, {9, 17, 9, true}, {9, 17, 16, true}, {9, 17, 17, false},
		{22, 6, 21, false}, {22, 6, 22, true}, {22, 6, 23, true}, {22, 6, 0, true}, {22, 6, 5, true}, {22, 6, 6, false}, {22, 6, 12, false},
		{0, 24, 0, true}, {0, 24, 23, true},
	} {
		if got := InWindow(c.start, c.end, time.UTC, at(c.hour)); got != c.want {
			t.Errorf("InWindow(%d, %d) at %02d:30 = %v, want %v", c.start, c.end, c.hour, got, c.want)
		}
	}
}

func TestTimeWindowUsesItsTimeZone(t *testing.T) {
	// 15:30 UTC is 10:30 in New York (EST, UTC-5) and 00:30 next day in Tokyo.
	now := time.Date(2026, 11, 26, 15, 30, 0, 0, time.UTC)
	ny := []Policy{{PolicyID: "pol_ny", Type: PolicyTimeWindow, StartHour: 9, EndHour: 17, Timezone: "America/New_York"}}
	if d := EvaluateStatic(ny, "files.echo", 0, now); d != nil {
		t.Errorf("10:30 in New York is inside 9-17 there, but: %+v", d)
	}
	tokyo := []Policy{{PolicyID: "pol_tk", Type: PolicyTimeWindow, StartHour: 9, EndHour: 17, Timezone: "Asia/Tokyo"}}
	if d := EvaluateStatic(tokyo, "files.echo", 0, now); d == nil || d.PolicyID != "pol_tk" {
		t.Errorf("00:30 in Tokyo is outside 9-17 there, but got %+v", d)
	}
	night := []Policy{{PolicyID: "pol_night", Type: PolicyTimeWindow, StartHour: 22, EndHour: 2, Timezone: "Asia/Tokyo"}}
	if d := EvaluateStatic(night, "files.echo", 0, now); d != nil {
		t.Errorf("00:30 in Tokyo is inside 22-02 there, but: %+v", d)
	}
}

func TestEvaluateStaticFirstDenyWins(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ps := []Policy{
		{PolicyID: "pol_allow", Type: PolicyAllowList, Tools: []string{"files.*", "search"}},
		{PolicyID: "pol_deny", Type: PolicyDenyList, Tools: []string{"delete"}},
		{PolicyID: "pol_spend", Type: PolicySpendLimit, Max: mustMoney("1.00")},
		{PolicyID: "pol_block", Type: PolicyBlockTool, Tool: "files.delete"},
	}
	for _, c := range []struct {
		tool   string
		cost   string
		denyBy string
	}{
		{"files.echo", "0", ""},
		{"web.search", "0", ""},             // bare-name match on the allow list
		{"files.delete", "0", "pol_deny"},   // deny list before block_tool
		{"files.echo", "1.01", "pol_spend"}, // over the per-call limit
		{"shell.exec", "0", "pol_allow"},    // on no allow list
		{"files.delete", "5", "pol_deny"},   // the first deny in order wins
	} {
		d := EvaluateStatic(ps, c.tool, mustMoney(c.cost), now)
		got := ""
		if d != nil {
			got = d.PolicyID
			if d.Code != CodePolicyDenied || d.Reason == "" {
				t.Errorf("%s: denial %+v lacks its code or reason", c.tool, d)
			}
		}
		if got != c.denyBy {
			t.Errorf("%s costing %s: denied by %q, want %q", c.tool, c.cost, got, c.denyBy)
		}
	}
}

func TestValidatePolicy(t *testing.T) {
	for _, p := range []Policy{
		{Type: "nope"},
		{Type: PolicyDenyList},
		{Type: PolicyDenyList, Tools: []string{"[unclosed"}},
		{Type: PolicyRateLimit},
		{Type: PolicyTimeWindow, StartHour: 9, EndHour: 9},
		{Type: PolicyTimeWindow, StartHour: 9, EndHour: 17, Timezone: "Mars/Olympus"},
		{Type: PolicyBlockTool},
	} {
		if err := ValidatePolicy(p); err == nil {
			t.Errorf("ValidatePolicy(%+v) accepted an invalid policy", p)
		}
	}
	if err := ValidatePolicy(Policy{Type: PolicyTimeWindow, StartHour: 22, EndHour: 6, Timezone: "Europe/Paris"}); err != nil {
		t.Errorf("a window across midnight was refused: %v", err)
	}
}

func mustMoney(s string) Money {
	m, ok := ParseMoney(s)
	if !ok {
		panic("bad money " + s)
	}
	return m
}
