package api

import (
	"net/http"
	"sort"

	"github.com/haldir-dev/haldir/domain"
)

// The kill switch: POST /v1/agents/{agent_id}/kill stops one agent, POST
// /v1/kill the whole tenant, POST /v1/admin/kill (operator token) the
// whole install; each has an unkill. See commands.Service.Kill.

func (s *Server) killAgent(c *call) (int, any, error)   { return s.kill(c, c.vars("agent_id")) }
func (s *Server) killTenant(c *call) (int, any, error)  { return s.kill(c, "") }
func (s *Server) unkillAgent(c *call) (int, any, error) { return s.unkill(c, c.vars("agent_id")) }
func (s *Server) unkillTenant(c *call) (int, any, error) {
	return s.unkill(c, "")
}

func (s *Server) kill(c *call, agentID string) (int, any, error) {
	reason := c.obj.str("reason", false, domain.MaxKillReasonLen)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	res, err := s.deps.Commands.Kill(c.ctx, c.actor, agentID, reason)
	if err != nil {
		return 0, nil, err
	}
	revoked := res.Revoked
	if revoked == nil {
		revoked = []string{}
	}
	return http.StatusOK, killBody(c, agentID, true, map[string]any{"changed": res.Changed, "sessions_revoked": revoked}), nil
}

func (s *Server) unkill(c *call, agentID string) (int, any, error) {
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	res, err := s.deps.Commands.Unkill(c.ctx, c.actor, agentID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, killBody(c, agentID, false, map[string]any{"changed": res.Changed}), nil
}

// killBody names what a kill or unkill covered: an agent, the tenant, or
// (operator) the install.
func killBody(c *call, agentID string, killed bool, extra map[string]any) map[string]any {
	out := map[string]any{"killed": killed}
	switch {
	case c.actor.Tenant == domain.OperatorTenant:
		out["scope"] = "install"
	case agentID == "":
		out["scope"] = "tenant"
	default:
		out["scope"], out["agent_id"] = "agent", agentID
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// listKills answers GET /v1/kills: the kills in force in the tenant, and
// whether the operator has stopped the install.
func (s *Server) listKills(c *call) (int, any, error) {
	kills, err := s.deps.Commands.Kills(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	install, err := s.deps.Commands.Kills(c.ctx, domain.OperatorTenant)
	if err != nil {
		return 0, nil, err
	}
	_, tenantKilled := kills.Killed[""]
	agents := []map[string]any{}
	for id, k := range kills.Killed {
		if id != "" {
			agents = append(agents, map[string]any{"agent_id": id, "reason": k.Reason, "by": k.By})
		}
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i]["agent_id"].(string) < agents[j]["agent_id"].(string) })
	_, installKilled := install.Killed[""]
	return http.StatusOK, map[string]any{"agents": agents, "count": len(agents), "tenant_killed": tenantKilled, "install_killed": installKilled}, nil
}
