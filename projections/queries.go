package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections/views"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// Queries reads the projections. Every method is scoped to one tenant
// except KeyByPrefix (authentication happens before a tenant is known) and
// AnyTenant.
type Queries struct {
	db       *sqldb.DB
	sessions *SessionCache
}

// NewQueries returns Queries over db.
func NewQueries(db *sqldb.DB) *Queries { return &Queries{db: db} }

// CacheSessions has Session answer from c when c holds the session (see
// SessionCache for when that is safe). Call it before any use.
func (q *Queries) CacheSessions(c *SessionCache) { q.sessions = c }

func (q *Queries) row(ctx context.Context, query string, args ...any) *sql.Row {
	return q.db.QueryRowRead(ctx, query, args...)
}

func nanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// Session returns the tenant's session id as last projected.
func (q *Queries) Session(ctx context.Context, tenant, id string) (domain.Session, bool, error) {
	if q.sessions != nil {
		if s, ok := q.sessions.Get(tenant, id); ok {
			return s, true, nil
		}
	}
	var s domain.Session
	var scopes string
	var limit, spent, created, expires int64
	var revoked sql.NullInt64
	err := q.row(ctx, `SELECT agent_id, scopes, spend_limit, spent, created_at, expires_at, revoked_at FROM sessions
WHERE tenant_id = ? AND session_id = ?`, tenant, id).Scan(&s.AgentID, &scopes, &limit, &spent, &created, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("projections: read session: %w", err)
	}
	s.ID, s.SpendLimit, s.Spent, s.CreatedAt, s.ExpiresAt, s.Version = id, domain.Money(limit), domain.Money(spent), nanos(created), nanos(expires), 1
	if revoked.Valid {
		s.RevokedAt = nanos(revoked.Int64)
	}
	if err := json.Unmarshal([]byte(scopes), &s.Scopes); err != nil {
		return s, false, fmt.Errorf("projections: session scopes: %w", err)
	}
	return s, true, nil
}

// KeyByPrefix returns the key with prefix, in any tenant.
func (q *Queries) KeyByPrefix(ctx context.Context, prefix string) (views.KeyView, bool, error) {
	var k views.KeyView
	var scopes string
	var created int64
	var revoked sql.NullInt64
	err := q.row(ctx, "SELECT tenant_id, name, scopes, key_hash, rate_limit, created_at, revoked_at FROM api_keys WHERE prefix = ?", prefix).
		Scan(&k.TenantID, &k.Name, &scopes, &k.KeyHash, &k.RateLimit, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return k, false, nil
	}
	if err != nil {
		return k, false, fmt.Errorf("projections: read key: %w", err)
	}
	k.Prefix, k.CreatedAt = prefix, nanos(created)
	if revoked.Valid {
		k.RevokedAt = nanos(revoked.Int64)
	}
	return k, true, json.Unmarshal([]byte(scopes), &k.Scopes)
}

// Keys returns the tenant's keys, oldest first.
func (q *Queries) Keys(ctx context.Context, tenant string) ([]views.KeyView, error) {
	rows, err := q.db.QueryRead(ctx,
		"SELECT prefix, name, scopes, rate_limit, created_at, revoked_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at, prefix", tenant)
	if err != nil {
		return nil, fmt.Errorf("projections: list keys: %w", err)
	}
	defer rows.Close()
	var out []views.KeyView
	for rows.Next() {
		k := views.KeyView{TenantID: tenant}
		var scopes string
		var created int64
		var revoked sql.NullInt64
		if err := rows.Scan(&k.Prefix, &k.Name, &scopes, &k.RateLimit, &created, &revoked); err != nil {
			return nil, err
		}
		k.CreatedAt = nanos(created)
		if revoked.Valid {
			k.RevokedAt = nanos(revoked.Int64)
		}
		if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AnyTenant reports whether any tenant exists, which closes the
// unauthenticated first-key route.
func (q *Queries) AnyTenant(ctx context.Context) (bool, error) {
	var n int
	if err := q.row(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM tenants LIMIT 1) t").Scan(&n); err != nil {
		return false, fmt.Errorf("projections: count tenants: %w", err)
	}
	return n > 0, nil
}

func auditWhere(f views.AuditFilter, tenant string) (string, []any) {
	conds := []string{"tenant_id = ?"}
	args := []any{tenant}
	add := func(cond string, arg any) {
		conds = append(conds, cond)
		args = append(args, arg)
	}
	if f.SessionID != "" {
		add("session_id = ?", f.SessionID)
	}
	if f.AgentID != "" {
		add("agent_id = ?", f.AgentID)
	}
	if f.Tool != "" {
		add("tool = ?", f.Tool)
	}
	if f.Flagged != nil {
		add("flagged = ?", boolInt(*f.Flagged))
	}
	if !f.Since.IsZero() {
		add("recorded_at >= ?", f.Since.UnixNano())
	}
	if !f.Until.IsZero() {
		add("recorded_at < ?", f.Until.UnixNano())
	}
	if f.Before > 0 {
		add("seq < ?", f.Before)
	}
	return strings.Join(conds, " AND "), args
}

const auditColumns = "entry_id, seq, position, type, session_id, agent_id, tool, action, cost, flagged, flag_reason, recorded_at, details, prev_hash, entry_hash"

// Audit returns the tenant's entries matching f, newest first, and whether
// more follow.
func (q *Queries) Audit(ctx context.Context, tenant string, f views.AuditFilter) ([]views.AuditRow, bool, error) {
	where, args := auditWhere(f, tenant)
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit+1)
	rows, err := q.db.QueryRead(ctx, "SELECT "+auditColumns+" FROM audit_entries WHERE "+where+" ORDER BY seq DESC LIMIT ?", args...)
	if err != nil {
		return nil, false, fmt.Errorf("projections: read audit trail: %w", err)
	}
	out, err := scanAudit(rows)
	if err != nil {
		return nil, false, err
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// AuditAscending calls fn for every entry matching f in sequence order,
// streaming, for exports.
func (q *Queries) AuditAscending(ctx context.Context, tenant string, f views.AuditFilter, fn func(*views.AuditRow) error) error {
	where, args := auditWhere(f, tenant)
	rows, err := q.db.QueryRead(ctx, "SELECT "+auditColumns+" FROM audit_entries WHERE "+where+" ORDER BY seq", args...)
	if err != nil {
		return fmt.Errorf("projections: read audit trail: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAuditRow(rows)
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func scanAudit(rows *sql.Rows) ([]views.AuditRow, error) {
	defer rows.Close()
	var out []views.AuditRow
	for rows.Next() {
		r, err := scanAuditRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func scanAuditRow(rows *sql.Rows) (views.AuditRow, error) {
	var r views.AuditRow
	var cost, at int64
	var flagged int
	var details string
	err := rows.Scan(&r.EntryID, &r.Seq, &r.Position, &r.Type, &r.SessionID, &r.AgentID, &r.Tool, &r.Action, &cost, &flagged,
		&r.FlagReason, &at, &details, &r.PrevHash, &r.EntryHash)
	r.Cost, r.Flagged, r.RecordedAt, r.Details = domain.Money(cost), flagged == 1, nanos(at), json.RawMessage(details)
	return r, err
}

// Spend totals the tenant's spend, optionally for one session or agent.
func (q *Queries) Spend(ctx context.Context, tenant string, f views.AuditFilter) (views.SpendSummary, error) {
	where, args := auditWhere(f, tenant)
	rows, err := q.db.QueryRead(ctx,
		"SELECT tool, COALESCE(SUM(cost), 0), COUNT(*) FROM audit_entries WHERE "+where+" AND type IN (?, ?, ?) GROUP BY tool ORDER BY tool",
		append(args, domain.TypeAuditLogged, domain.TypePaymentAuthorized, domain.TypePaymentReleased)...)
	if err != nil {
		return views.SpendSummary{}, fmt.Errorf("projections: spend: %w", err)
	}
	defer rows.Close()
	s := views.SpendSummary{ByTool: map[string]domain.Money{}}
	for rows.Next() {
		var tool string
		var cost, n int64
		if err := rows.Scan(&tool, &cost, &n); err != nil {
			return s, err
		}
		s.ByTool[tool] = domain.Money(cost)
		s.Total += domain.Money(cost)
		s.ActionCount += n
	}
	return s, rows.Err()
}

// Usage returns the tenant's usage in month ("2006-01").
func (q *Queries) Usage(ctx context.Context, tenant, month string) (views.MonthUsage, error) {
	var u views.MonthUsage
	var spend int64
	err := q.row(ctx, "SELECT action_count, spend FROM usage_monthly WHERE tenant_id = ? AND month = ?", tenant, month).Scan(&u.Actions, &spend)
	if errors.Is(err, sql.ErrNoRows) {
		return u, nil
	}
	u.Spend = domain.Money(spend)
	return u, err
}

// views.Counts returns the tenant's headline numbers at now.
func (q *Queries) Counts(ctx context.Context, tenant string, now time.Time) (views.Counts, error) {
	var c views.Counts
	n := now.UnixNano()
	if err := q.row(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN revoked_at IS NULL AND expires_at > ? THEN 1 ELSE 0 END), 0),
COUNT(DISTINCT CASE WHEN revoked_at IS NULL AND expires_at > ? THEN agent_id END) FROM sessions WHERE tenant_id = ?`, n, n, tenant).
		Scan(&c.SessionsTotal, &c.SessionsActive, &c.ActiveAgents); err != nil {
		return c, fmt.Errorf("projections: count sessions: %w", err)
	}
	if err := q.row(ctx, "SELECT COUNT(*) FROM audit_entries WHERE tenant_id = ? AND flagged = 1 AND recorded_at >= ?",
		tenant, now.Add(-7*24*time.Hour).UnixNano()).Scan(&c.Flagged7d); err != nil {
		return c, err
	}
	if err := q.row(ctx, "SELECT COUNT(*) FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL", tenant).Scan(&c.Keys); err != nil {
		return c, err
	}
	rows, err := q.db.QueryRead(ctx, "SELECT type, count FROM event_counts WHERE tenant_id = ?", tenant)
	if err != nil {
		return c, err
	}
	defer rows.Close()
	c.EventsByType = map[string]int64{}
	for rows.Next() {
		var t string
		var k int64
		if err := rows.Scan(&t, &k); err != nil {
			return c, err
		}
		c.EventsByType[t] = k
		c.AuditEntries += k
	}
	return c, rows.Err()
}

// SecretNames returns the tenant's secret names, sorted.
func (q *Queries) SecretNames(ctx context.Context, tenant string) ([]string, error) {
	rows, err := q.db.QueryRead(ctx, "SELECT name FROM secrets WHERE tenant_id = ? ORDER BY name", tenant)
	if err != nil {
		return nil, fmt.Errorf("projections: list secrets: %w", err)
	}
	defer rows.Close()
	names := []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// Vault returns the tenant's vault counts for month ("2006-01").
func (q *Queries) Vault(ctx context.Context, tenant, month string) (views.VaultCounts, error) {
	var v views.VaultCounts
	if err := q.row(ctx, "SELECT COUNT(*) FROM secrets WHERE tenant_id = ?", tenant).Scan(&v.Secrets); err != nil {
		return v, err
	}
	err := q.row(ctx, "SELECT accesses, denials FROM secret_access_counts WHERE tenant_id = ? AND month = ?", tenant, month).Scan(&v.Accesses, &v.Denials)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return v, err
}

// TenantName returns the tenant's name.
func (q *Queries) TenantName(ctx context.Context, tenant string) (string, error) {
	var n string
	err := q.row(ctx, "SELECT name FROM tenants WHERE tenant_id = ?", tenant).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return n, err
}

// LiveSessions returns the ids of the tenant's sessions of agentID ("" for
// every agent) that are neither revoked nor expired at now.
func (q *Queries) LiveSessions(ctx context.Context, tenant, agentID string, now time.Time) ([]string, error) {
	query, args := "SELECT session_id FROM sessions WHERE tenant_id = ? AND revoked_at IS NULL AND expires_at > ?", []any{tenant, now.UnixNano()}
	if agentID != "" {
		query, args = query+" AND agent_id = ?", append(args, agentID)
	}
	rows, err := q.db.QueryRead(ctx, query+" ORDER BY session_id", args...)
	if err != nil {
		return nil, fmt.Errorf("projections: read live sessions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
