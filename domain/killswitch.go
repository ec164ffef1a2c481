package domain

import (
	"encoding/json"
	"fmt"
)

// The kill switch stops an agent, a whole tenant or, for the operator, the
// whole install, at once and until it is lifted.
//
// Each tenant has one kill-switch stream holding its agents' kills and its
// own; the operator's install-wide kill is the same stream in
// OperatorTenant. While a kill is in force, new sessions, payments, secret
// reads and governed calls of what it covers are refused with
// CodeAgentKilled; a kill also revokes the live sessions it covers, so that
// lifting it does not bring them back.
const (
	TypeAgentKilled   = "agent.killed"
	TypeAgentUnkilled = "agent.unkilled"
	// KillSwitchStream is the stream of a tenant's kills.
	KillSwitchStream = "killswitch"
	// OperatorTenant holds the operator's install-wide kill switch.
	OperatorTenant = "_operator"
)

// CodeAgentKilled refuses what a kill switch covers.
const CodeAgentKilled Code = "agent_killed"

// AgentKill is the payload of agent.killed and agent.unkilled. An empty
// AgentID is the whole tenant (in OperatorTenant: the whole install).
type AgentKill struct {
	AgentID string `json:"agent_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// By names who pulled or lifted it (the key's name, or "operator").
	By string `json:"by,omitempty"`
}

// MaxKillReasonLen bounds a kill's reason.
const MaxKillReasonLen = 500

// Kills is the folded kill-switch stream of one tenant.
type Kills struct {
	// Killed maps each killed agent ("" for the whole tenant) to the kill
	// in force.
	Killed map[string]AgentKill
	// Version is the stream version the state reflects.
	Version int64
}

// Apply folds one recorded event of a kill-switch stream into k.
func (k *Kills) Apply(typ string, payload []byte, version int64) error {
	switch typ {
	case TypeAgentKilled, TypeAgentUnkilled:
		var e AgentKill
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		if k.Killed == nil {
			k.Killed = map[string]AgentKill{}
		}
		if typ == TypeAgentKilled {
			k.Killed[e.AgentID] = e
		} else {
			delete(k.Killed, e.AgentID)
		}
	}
	k.Version = version
	return nil
}

// Stops reports whether a kill in force covers agentID: its own or its
// tenant's.
func (k *Kills) Stops(agentID string) (AgentKill, bool) {
	if e, ok := k.Killed[""]; ok {
		return e, true
	}
	e, ok := k.Killed[agentID]
	return e, ok
}

// Kill decides a kill of agentID ("" for the whole tenant). It returns
// false, with no event to append, when that kill is already in force.
func (k *Kills) Kill(agentID, reason, by string) (AgentKill, bool, error) {
	if err := checkKill(agentID, reason); err != nil {
		return AgentKill{}, false, err
	}
	if _, ok := k.Killed[agentID]; ok {
		return AgentKill{}, false, nil
	}
	return AgentKill{AgentID: agentID, Reason: reason, By: by}, true, nil
}

// Unkill decides lifting the kill of agentID. It returns false when no
// such kill is in force; lifting an agent's kill does not lift its
// tenant's.
func (k *Kills) Unkill(agentID, by string) (AgentKill, bool, error) {
	if err := checkKill(agentID, ""); err != nil {
		return AgentKill{}, false, err
	}
	if _, ok := k.Killed[agentID]; !ok {
		return AgentKill{}, false, nil
	}
	return AgentKill{AgentID: agentID, By: by}, true, nil
}

func checkKill(agentID, reason string) error {
	if len(agentID) > MaxAgentIDLen {
		return Invalid("agent_id", "agent_id is longer than %d characters", MaxAgentIDLen)
	}
	if len(reason) > MaxKillReasonLen {
		return Invalid("reason", "reason is longer than %d characters", MaxKillReasonLen)
	}
	return nil
}

// Killed returns the error refusing what kill stops.
func Killed(agentID string, kill AgentKill) *Error {
	what := "agent " + agentID + " is"
	if kill.AgentID == "" {
		what = "every agent is"
	}
	msg := what + " stopped by a kill switch"
	if kill.Reason != "" {
		msg += ": " + kill.Reason
	}
	return &Error{Code: CodeAgentKilled, Message: msg + "; lift it with unkill"}
}
