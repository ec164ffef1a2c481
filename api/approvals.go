package api

import (
	"context"
	"net/http"
	"time"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
)

func (s *Server) addApprovalRule(c *call) (int, any, error) {
	r := domain.ApprovalRule{Type: c.obj.str("type", true, 32)}
	r.Threshold, _ = c.obj.money("threshold", false, 0, domain.MaxMoney)
	r.Tools, _ = c.obj.strList("tools", domain.MaxRuleTools, 256)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	if r.Type == domain.RuleSpendOver {
		if _, ok := c.obj.fields["threshold"]; !ok {
			return 0, nil, domain.Invalid("threshold", "spend_over needs a threshold")
		}
	}
	rule, err := s.deps.Commands.AddApprovalRule(c.ctx, c.actor, r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"rule_id": rule.RuleID, "type": rule.Type, "threshold": rule.Threshold, "tools": rule.Tools}, nil
}

func (s *Server) listApprovalRules(c *call) (int, any, error) {
	rules, err := s.deps.Queries.ApprovalRules(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(rules))
	for _, r := range rules {
		out = append(out, map[string]any{"rule_id": r.RuleID, "type": r.Type, "threshold": r.Threshold, "tools": r.Tools})
	}
	return http.StatusOK, map[string]any{"rules": out, "count": len(out)}, nil
}

func (s *Server) requestApproval(c *call) (int, any, error) {
	req := commands.ApprovalRequest{Call: domain.Call{
		SessionID: c.obj.str("session_id", true, 64),
		Tool:      c.obj.str("tool", false, maxToolLen),
		Action:    c.obj.str("action", false, maxActionLen),
	}}
	req.Call.Amount, _ = c.obj.money("amount", false, 0, domain.MaxPayment)
	req.Reason = c.obj.str("reason", false, 1024)
	req.Details = c.obj.details("details", maxDetailsLen)
	if ttl, ok := c.obj.integer("ttl", 1, int64(domain.MaxApprovalTTL/time.Second)); ok {
		req.TTL = time.Duration(ttl) * time.Second
	}
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	req.Call.ArgsHash = domain.ArgsHash(req.Details)
	a, err := s.deps.Commands.RequestApproval(c.ctx, c.actor, req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"request_id": a.Request.RequestID, "status": a.StatusAt(s.now()), "expires_at": formatTime(a.Request.ExpiresAt)}, nil
}

func (s *Server) approvalBody(a domain.Approval) map[string]any {
	status := a.StatusAt(s.now())
	used := status == domain.ApprovalConsumed
	if used {
		status = domain.ApprovalApproved // used once; the API's four statuses
	}
	r := a.Request
	return map[string]any{
		"request_id": r.RequestID, "status": status, "used": used, "session_id": r.SessionID, "agent_id": r.AgentID,
		"tool": r.Tool, "action": r.Action, "amount": r.Amount, "reason": r.Reason, "details": r.Details,
		"args_hash": r.ArgsHash, "rule_id": r.RuleID, "created_at": formatTime(a.CreatedAt), "expires_at": formatTime(r.ExpiresAt),
		"decided_by": a.DecidedBy, "decision_note": a.Note, "decided_at": optionalTime(a.DecidedAt),
	}
}

// maxWait bounds GET /v1/approvals/{id}?wait=.
const maxWait = 60 * time.Second

func (s *Server) getApproval(c *call) (int, any, error) {
	id := c.vars("id")
	var wait time.Duration
	if w := c.r.URL.Query().Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 || d > maxWait {
			return 0, nil, domain.Invalid("wait", "wait must be a duration such as 30s, at most %s", maxWait)
		}
		wait = d
	}
	ctx, cancel := context.WithTimeout(c.ctx, wait)
	defer cancel()
	for {
		// Take the wake-up before reading, so no append slips between.
		appended := s.deps.Store.Appended()
		a, err := s.deps.Commands.Approval(c.ctx, c.tenant, id)
		if err != nil {
			return 0, nil, err
		}
		if a.StatusAt(s.now()) != domain.ApprovalPending || wait == 0 {
			return http.StatusOK, s.approvalBody(a), nil
		}
		expiry := time.Until(a.Request.ExpiresAt)
		select {
		case <-ctx.Done():
			return http.StatusOK, s.approvalBody(a), nil
		case <-appended:
		case <-time.After(min(time.Second, max(expiry, time.Millisecond))):
			// Another replica may decide, and expiry needs no event.
		}
	}
}

func (s *Server) decideApproval(approve bool) func(*call) (int, any, error) {
	return func(c *call) (int, any, error) {
		by := c.obj.str("decided_by", false, 256)
		note := c.obj.str("note", false, 2048)
		if err := c.obj.Err(); err != nil {
			return 0, nil, err
		}
		if by == "" {
			by = c.actor.KeyPrefix
		}
		id := c.vars("id")
		if _, err := s.deps.Commands.DecideApproval(c.ctx, c.actor, id, approve, by, note); err != nil {
			return 0, nil, err
		}
		key := "denied"
		if approve {
			key = "approved"
		}
		return http.StatusOK, map[string]any{key: true, "request_id": id}, nil
	}
}

func (s *Server) pendingApprovals(c *call) (int, any, error) {
	agent, err := queryString(c.r.URL.Query(), "agent_id", domain.MaxAgentIDLen)
	if err != nil {
		return 0, nil, err
	}
	rows, err := s.deps.Queries.PendingApprovals(c.ctx, c.tenant, agent, s.now())
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		out = append(out, map[string]any{"request_id": r.RequestID, "status": r.Status, "session_id": r.SessionID, "agent_id": r.AgentID,
			"tool": r.Tool, "action": r.Action, "amount": r.Amount, "reason": r.Reason,
			"created_at": formatTime(r.CreatedAt), "expires_at": formatTime(r.ExpiresAt)})
	}
	return http.StatusOK, map[string]any{"count": len(out), "requests": out}, nil
}
