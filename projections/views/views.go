// Package views holds the rows the read models serve: what the API and
// the CLI read, with no SQL in it. Package projections builds and queries
// them.
package views

import (
	"encoding/json"
	"time"

	"github.com/haldir-dev/haldir/domain"
)

// KeyView is an API key as stored: never the key, only its hash.
type KeyView struct {
	Prefix    string
	TenantID  string
	Name      string
	Scopes    domain.KeyScopes
	KeyHash   string
	RateLimit int
	CreatedAt time.Time
	RevokedAt time.Time
}

// AuditRow is one entry of the audit trail.
type AuditRow struct {
	EntryID    string
	Seq        int64
	Position   int64
	Type       string
	SessionID  string
	AgentID    string
	Tool       string
	Action     string
	Cost       domain.Money
	Flagged    bool
	FlagReason string
	RecordedAt time.Time
	Details    json.RawMessage
	PrevHash   string
	EntryHash  string
}

// AuditFilter selects audit entries. Zero values select everything.
type AuditFilter struct {
	SessionID, AgentID, Tool string
	Flagged                  *bool
	Since, Until             time.Time
	// Before, when non-zero, returns entries with seq < Before (the cursor
	// of the previous page).
	Before int64
	Limit  int
}

// ApprovalCounts are a tenant's approval numbers for the overview.
type ApprovalCounts struct{ Pending, Approved, Denied, Expired int64 }

// ApprovalRow is a request as listed.
type ApprovalRow struct {
	RequestID, Binding, SessionID, AgentID, Tool, Action, Reason, Status string
	Amount                                                               domain.Money
	CreatedAt, ExpiresAt                                                 time.Time
}

// Counts are a tenant's headline numbers.
type Counts struct {
	SessionsTotal  int64
	SessionsActive int64
	ActiveAgents   int64
	AuditEntries   int64
	Flagged7d      int64
	Keys           int64
	EventsByType   map[string]int64
}

// SpendSummary totals spend over audit entries.
type SpendSummary struct {
	Total       domain.Money
	ActionCount int64
	ByTool      map[string]domain.Money
}

// MonthUsage is a tenant's governed actions and spend in one month.
type MonthUsage struct {
	Actions int64
	Spend   domain.Money
}

// VaultCounts are a tenant's secret count and this month's reads.
type VaultCounts struct {
	Secrets, Accesses, Denials int64
}

// WebhookStats are a tenant's webhook figures for a period.
type WebhookStats struct {
	Registered, Active          int
	Attempts, Delivered, Failed int64
}

// WebhookRow is a webhook as listed, with its delivery counts.
type WebhookRow struct {
	ID, URL, Name      string
	Events             []string
	Active             bool
	CreatedAt          time.Time
	Delivered, Failed  int64
	SecretPrevExpireAt time.Time
}

// PendingFlag is a raised flag not yet appended to the ledger.
type PendingFlag struct {
	Tenant string
	Flag   domain.AnomalyFlagged
}

// Anomaly is a flag as listed.
type Anomaly struct {
	FlagID, Detector, Severity, AgentID, SessionID, Tool, Reason string
	Evidence                                                     []string
	// EntryID is the anomaly.flagged event's id in the audit trail.
	EntryID   string
	FlaggedAt time.Time
	AckedAt   time.Time
	AckedBy   string
	Note      string
}
