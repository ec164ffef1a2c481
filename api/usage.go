package api

import (
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/haldir-dev/haldir/domain"
)

var monthPattern = regexp.MustCompile(`^\d{4}-(0[1-9]|1[0-2])$`)

func (s *Server) usage(c *call) (int, any, error) {
	month := c.r.URL.Query().Get("month")
	if month == "" {
		month = s.now().Format("2006-01")
	}
	if !monthPattern.MatchString(month) {
		return 0, nil, domain.Invalid("month", "month must look like 2026-04")
	}
	u, err := s.deps.Queries.Usage(c.ctx, c.tenant, month)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"tenant_id": c.tenant, "month": month, "action_count": u.Actions, "spend_usd": u.Spend}, nil
}

func (s *Server) tenantMetrics(c *call) (int, any, error) {
	now := s.now()
	counts, err := s.deps.Queries.Counts(c.ctx, c.tenant, now)
	if err != nil {
		return 0, nil, err
	}
	u, err := s.deps.Queries.Usage(c.ctx, c.tenant, now.Format("2006-01"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{
		"tenant_id": c.tenant, "sessions_total": counts.SessionsTotal, "sessions_active": counts.SessionsActive,
		"active_agents": counts.ActiveAgents, "audit_entries": counts.AuditEntries, "flagged_7d": counts.Flagged7d,
		"api_keys": counts.Keys, "actions_this_month": u.Actions, "spend_this_month_usd": u.Spend, "events_by_type": counts.EventsByType,
	}, nil
}

func (s *Server) overview(c *call) (int, any, error) {
	now := s.now()
	counts, err := s.deps.Queries.Counts(c.ctx, c.tenant, now)
	if err != nil {
		return 0, nil, err
	}
	u, err := s.deps.Queries.Usage(c.ctx, c.tenant, now.Format("2006-01"))
	if err != nil {
		return 0, nil, err
	}
	v, err := s.deps.Queries.Vault(c.ctx, c.tenant, now.Format("2006-01"))
	if err != nil {
		return 0, nil, err
	}
	ap, err := s.deps.Queries.ApprovalCounts(c.ctx, c.tenant, now)
	if err != nil {
		return 0, nil, err
	}
	wh, err := s.deps.Queries.WebhookStats(c.ctx, c.tenant, now.Add(-24*time.Hour), now.Add(time.Second))
	if err != nil {
		return 0, nil, err
	}
	rate := ""
	if wh.Attempts > 0 {
		rate = fmt.Sprintf("%.2f%%", 100*float64(wh.Delivered)/float64(wh.Attempts))
	}
	chain, err := s.verifyChain(c.ctx, c.tenant, false)
	if err != nil {
		return 0, nil, err
	}
	chainStatus := "verified"
	if !chain.Verified {
		chainStatus = "broken"
	}
	overall, _, _, _ := s.componentStatus(c.ctx)
	return http.StatusOK, map[string]any{
		"tenant_id":    c.tenant,
		"generated_at": formatTime(now),
		"status":       overall,
		"actions":      map[string]any{"this_month": u.Actions, "month": now.Format("2006-01")},
		"spend":        map[string]any{"this_month_usd": u.Spend},
		"sessions":     map[string]any{"active": counts.SessionsActive, "total": counts.SessionsTotal, "active_agents": counts.ActiveAgents},
		"audit":        map[string]any{"entries": counts.AuditEntries, "flagged_7d": counts.Flagged7d, "chain": chainStatus, "chain_checked_at": formatTime(chain.at)},
		"keys":         map[string]any{"active": counts.Keys},
		"vault":        map[string]any{"secrets": v.Secrets, "accesses_this_month": v.Accesses, "denials_this_month": v.Denials},
		"approvals":    map[string]any{"pending": ap.Pending, "approved": ap.Approved, "denied": ap.Denied, "expired": ap.Expired},
		"webhooks":     map[string]any{"registered": wh.Registered, "active": wh.Active, "deliveries_24h": wh.Attempts, "success_rate_24h": rate},
	}, nil
}
