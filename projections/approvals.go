package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/projections/views"
)

// Approvals projects approval rules and requests.
type Approvals struct{}

// Tables implements Handler.
func (Approvals) Tables() []string { return []string{"approval_rules", "approvals"} }

// Apply implements Handler.
func (Approvals) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	at := e.RecordedAt.UnixNano()
	switch e.Type {
	case domain.TypeApprovalRuleAdded:
		r, err := decode[domain.ApprovalRule](e)
		if err != nil {
			return err
		}
		tools, _ := json.Marshal(r.Tools)
		_, err = tx.Exec(ctx, "INSERT INTO {approval_rules} (tenant_id, rule_id, type, threshold, tools, created_at) VALUES (?, ?, ?, ?, ?, ?)",
			e.Tenant, r.RuleID, r.Type, int64(r.Threshold), string(tools), at)
		return err
	case domain.TypeApprovalRequested:
		r, err := decode[domain.ApprovalRequested](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO {approvals} (tenant_id, request_id, binding, session_id, agent_id, tool, action, amount, reason, rule_id,
status, created_at, expires_at, decided_by, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '')`,
			e.Tenant, r.RequestID, r.Binding, r.SessionID, r.AgentID, r.Tool, r.Action, int64(r.Amount), r.Reason, r.RuleID,
			domain.ApprovalPending, at, r.ExpiresAt.UnixNano())
		return err
	case domain.TypeApprovalApproved, domain.TypeApprovalDenied:
		d, err := decode[domain.ApprovalDecided](e)
		if err != nil {
			return err
		}
		status := domain.ApprovalDenied
		if e.Type == domain.TypeApprovalApproved {
			status = domain.ApprovalApproved
		}
		_, err = tx.Exec(ctx, "UPDATE {approvals} SET status = ?, decided_at = ?, decided_by = ?, note = ? WHERE tenant_id = ? AND request_id = ?",
			status, at, d.DecidedBy, d.Note, e.Tenant, d.RequestID)
		return err
	case domain.TypeApprovalExpired, domain.TypeApprovalConsumed:
		d, err := decode[domain.ApprovalClosed](e)
		if err != nil {
			return err
		}
		status := domain.ApprovalExpired
		if e.Type == domain.TypeApprovalConsumed {
			status = domain.ApprovalConsumed
		}
		_, err = tx.Exec(ctx, "UPDATE {approvals} SET status = ? WHERE tenant_id = ? AND request_id = ?", status, e.Tenant, d.RequestID)
		return err
	}
	return nil
}

// ApprovalRules returns the tenant's rules in the order they were added.
func (q *Queries) ApprovalRules(ctx context.Context, tenant string) ([]domain.ApprovalRule, error) {
	rows, err := q.db.QueryRead(ctx, "SELECT rule_id, type, threshold, tools FROM approval_rules WHERE tenant_id = ? ORDER BY created_at, rule_id", tenant)
	if err != nil {
		return nil, fmt.Errorf("projections: read approval rules: %w", err)
	}
	defer rows.Close()
	var out []domain.ApprovalRule
	for rows.Next() {
		var r domain.ApprovalRule
		var threshold int64
		var tools string
		if err := rows.Scan(&r.RuleID, &r.Type, &threshold, &tools); err != nil {
			return nil, err
		}
		r.Threshold = domain.Money(threshold)
		if err := json.Unmarshal([]byte(tools), &r.Tools); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ApprovalBinding returns the binding (and so the stream) of a request.
func (q *Queries) ApprovalBinding(ctx context.Context, tenant, requestID string) (string, bool, error) {
	var b string
	err := q.row(ctx, "SELECT binding FROM approvals WHERE tenant_id = ? AND request_id = ?", tenant, requestID).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return b, err == nil, err
}

// sessionEnded is an SQL condition, on an approvals row aliased a, that
// holds when the request's session is revoked or expired at the time bound
// to its one parameter: a request lives no longer than its session.
const sessionEnded = `EXISTS (SELECT 1 FROM sessions s WHERE s.tenant_id = a.tenant_id AND s.session_id = a.session_id
AND (s.revoked_at IS NOT NULL OR s.expires_at <= ?))`

// OpenApprovals returns the bindings of the session's requests that are
// pending, or approved and not yet used, for closing them when the session
// is revoked.
func (q *Queries) OpenApprovals(ctx context.Context, tenant, sessionID string) ([]string, error) {
	rows, err := q.db.QueryRead(ctx, "SELECT DISTINCT binding FROM approvals WHERE tenant_id = ? AND session_id = ? AND status IN (?, ?) ORDER BY binding",
		tenant, sessionID, domain.ApprovalPending, domain.ApprovalApproved)
	if err != nil {
		return nil, fmt.Errorf("projections: read a session's open approvals: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// PendingApprovals returns the tenant's pending requests that have not
// expired, nor their session, oldest first, optionally for one agent.
func (q *Queries) PendingApprovals(ctx context.Context, tenant, agentID string, now time.Time) ([]views.ApprovalRow, error) {
	query := `SELECT a.request_id, a.binding, a.session_id, a.agent_id, a.tool, a.action, a.reason, a.status, a.amount, a.created_at, a.expires_at
FROM approvals a WHERE a.tenant_id = ? AND a.status = ? AND a.expires_at > ? AND NOT ` + sessionEnded
	args := []any{tenant, domain.ApprovalPending, now.UnixNano(), now.UnixNano()}
	if agentID != "" {
		query += " AND a.agent_id = ?"
		args = append(args, agentID)
	}
	rows, err := q.db.QueryRead(ctx, query+" ORDER BY a.created_at LIMIT 1000", args...)
	if err != nil {
		return nil, fmt.Errorf("projections: read pending approvals: %w", err)
	}
	defer rows.Close()
	var out []views.ApprovalRow
	for rows.Next() {
		var r views.ApprovalRow
		var amount, created, expires int64
		if err := rows.Scan(&r.RequestID, &r.Binding, &r.SessionID, &r.AgentID, &r.Tool, &r.Action, &r.Reason, &r.Status, &amount, &created, &expires); err != nil {
			return nil, err
		}
		r.Amount, r.CreatedAt, r.ExpiresAt = domain.Money(amount), nanos(created), nanos(expires)
		out = append(out, r)
	}
	return out, rows.Err()
}

// OverdueApproval is a pending request past its expiry, across tenants.
type OverdueApproval struct{ Tenant, Binding string }

// OverdueApprovals returns up to limit pending requests that expired
// before now, or whose session did, for the expiry sweeper.
func (q *Queries) OverdueApprovals(ctx context.Context, now time.Time, limit int) ([]OverdueApproval, error) {
	rows, err := q.db.QueryRead(ctx, "SELECT a.tenant_id, a.binding FROM approvals a WHERE a.status = ? AND (a.expires_at <= ? OR "+sessionEnded+") LIMIT ?",
		domain.ApprovalPending, now.UnixNano(), now.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OverdueApproval
	for rows.Next() {
		var o OverdueApproval
		if err := rows.Scan(&o.Tenant, &o.Binding); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// views.ApprovalCounts counts the tenant's requests by status; pending counts
// only those that have not expired, nor their session.
func (q *Queries) ApprovalCounts(ctx context.Context, tenant string, now time.Time) (views.ApprovalCounts, error) {
	var c views.ApprovalCounts
	n := now.UnixNano()
	err := q.row(ctx, `SELECT
COALESCE(SUM(CASE WHEN a.status = 'pending' AND a.expires_at > ? AND NOT `+sessionEnded+` THEN 1 ELSE 0 END), 0),
COALESCE(SUM(CASE WHEN a.status IN ('approved', 'consumed') THEN 1 ELSE 0 END), 0),
COALESCE(SUM(CASE WHEN a.status = 'denied' THEN 1 ELSE 0 END), 0),
COALESCE(SUM(CASE WHEN a.status = 'expired' OR (a.status = 'pending' AND (a.expires_at <= ? OR `+sessionEnded+`)) THEN 1 ELSE 0 END), 0)
FROM approvals a WHERE a.tenant_id = ?`, n, n, n, n, tenant).Scan(&c.Pending, &c.Approved, &c.Denied, &c.Expired)
	return c, err
}
