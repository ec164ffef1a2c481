package domain

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestKillsFoldAndDecide(t *testing.T) {
	var k Kills
	apply := func(typ string, e AgentKill) {
		t.Helper()
		b, _ := json.Marshal(e)
		if err := k.Apply(typ, b, k.Version+1); err != nil {
			t.Fatal(err)
		}
	}
	if _, stopped := k.Stops("bot"); stopped {
		t.Fatal("an empty stream stops an agent")
	}
	kill, changed, err := k.Kill("bot", "looping", "hld_x")
	if err != nil || !changed || kill != (AgentKill{AgentID: "bot", Reason: "looping", By: "hld_x"}) {
		t.Fatalf("Kill = %+v, %v, %v", kill, changed, err)
	}
	apply(TypeAgentKilled, kill)
	if _, changed, _ := k.Kill("bot", "again", "hld_x"); changed {
		t.Error("killing a killed agent decided a second kill")
	}
	if got, stopped := k.Stops("bot"); !stopped || got.Reason != "looping" {
		t.Errorf("Stops(bot) = %+v, %v", got, stopped)
	}
	if _, stopped := k.Stops("other"); stopped {
		t.Error("an agent kill stops another agent")
	}
	apply(TypeAgentKilled, AgentKill{Reason: "incident"})
	if got, stopped := k.Stops("other"); !stopped || got.AgentID != "" {
		t.Errorf("a tenant kill does not stop every agent: %+v, %v", got, stopped)
	}
	lift, changed, _ := k.Unkill("bot", "hld_y")
	if !changed {
		t.Fatal("Unkill of a killed agent decided nothing")
	}
	apply(TypeAgentUnkilled, lift)
	if _, stopped := k.Stops("bot"); !stopped {
		t.Error("lifting an agent's kill lifted its tenant's")
	}
	apply(TypeAgentUnkilled, AgentKill{})
	if _, stopped := k.Stops("bot"); stopped {
		t.Error("still stopped with no kill in force")
	}
	if _, changed, _ := k.Unkill("bot", "hld_y"); changed {
		t.Error("Unkill of an agent not killed decided an event")
	}
	if k.Version != 4 {
		t.Errorf("Version = %d, want 4", k.Version)
	}
	if _, _, err := k.Kill(strings.Repeat("a", MaxAgentIDLen+1), "", ""); ErrorCode(err) != CodeInvalid {
		t.Errorf("an over-long agent id: %v", err)
	}
	if _, _, err := k.Kill("bot", strings.Repeat("r", MaxKillReasonLen+1), ""); ErrorCode(err) != CodeInvalid {
		t.Errorf("an over-long reason: %v", err)
	}
	if e := Killed("bot", AgentKill{AgentID: "bot", Reason: "r"}); e.Code != CodeAgentKilled || !strings.Contains(e.Message, "agent bot") {
		t.Errorf("Killed = %v", e)
	}
}
