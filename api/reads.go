package api

import (
	"context"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections/views"
)

// Reads are the read-model queries the API serves from
// (projections.Queries). Every one is scoped to a tenant except
// KeyByPrefix, which finds the tenant of a presented key, and AnyTenant.
type Reads interface {
	keyLookup

	// AnyTenant reports whether a tenant exists (bootstrap is allowed once).
	AnyTenant(ctx context.Context) (bool, error)
	TenantName(ctx context.Context, tenant string) (string, error)
	Keys(ctx context.Context, tenant string) ([]views.KeyView, error)
	Session(ctx context.Context, tenant, id string) (domain.Session, bool, error)
	Counts(ctx context.Context, tenant string, now time.Time) (views.Counts, error)
	Usage(ctx context.Context, tenant, month string) (views.MonthUsage, error)

	Audit(ctx context.Context, tenant string, f views.AuditFilter) (rows []views.AuditRow, more bool, err error)
	// AuditAscending calls fn for every selected entry, oldest first.
	AuditAscending(ctx context.Context, tenant string, f views.AuditFilter, fn func(*views.AuditRow) error) error
	Spend(ctx context.Context, tenant string, f views.AuditFilter) (views.SpendSummary, error)

	ApprovalRules(ctx context.Context, tenant string) ([]domain.ApprovalRule, error)
	PendingApprovals(ctx context.Context, tenant, agentID string, now time.Time) ([]views.ApprovalRow, error)
	ApprovalCounts(ctx context.Context, tenant string, now time.Time) (views.ApprovalCounts, error)

	SecretNames(ctx context.Context, tenant string) ([]string, error)
	Vault(ctx context.Context, tenant, month string) (views.VaultCounts, error)

	Pin(ctx context.Context, tenant, tool string) (domain.ToolPin, bool, error)
	Policies(ctx context.Context, tenant string) ([]domain.Policy, error)

	AnomalyList(ctx context.Context, tenant string, open bool, limit int) ([]views.Anomaly, error)

	Webhooks(ctx context.Context, tenant string) ([]views.WebhookRow, error)
	WebhookStats(ctx context.Context, tenant string, since, until time.Time) (views.WebhookStats, error)
}

// keyLookup finds an API key by its public prefix, in any tenant.
type keyLookup interface {
	KeyByPrefix(ctx context.Context, prefix string) (views.KeyView, bool, error)
}
