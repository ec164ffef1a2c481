package projections

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// CoreGroup is the projection group behind the /v1 read API.
var CoreGroup = Group{Name: "core", Handlers: []Handler{Tenants{}, Keys{}, Sessions{}, AuditTrail{}, Usage{}, EventCounts{}, Secrets{}, Approvals{}, Webhooks{}, Proxy{}, Tree{}}}

func decode[T any](e *events.Event) (T, error) {
	var v T
	if err := json.Unmarshal(e.Payload, &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", e.Type, err)
	}
	return v, nil
}

// Tenants projects tenant.created.
type Tenants struct{}

// Tables implements Handler.
func (Tenants) Tables() []string { return []string{"tenants"} }

// Apply implements Handler.
func (Tenants) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	if e.Type != domain.TypeTenantCreated {
		return nil
	}
	p, err := decode[domain.TenantCreated](e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO {tenants} (tenant_id, name, created_at) VALUES (?, ?, ?)", p.TenantID, p.Name, e.RecordedAt.UnixNano())
	return err
}

// Keys projects API keys: their hashes, scopes and revocation.
type Keys struct{}

// Tables implements Handler.
func (Keys) Tables() []string { return []string{"api_keys"} }

// Apply implements Handler.
func (Keys) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	switch e.Type {
	case domain.TypeKeyCreated:
		p, err := decode[domain.KeyCreated](e)
		if err != nil {
			return err
		}
		scopes, _ := json.Marshal(p.Scopes)
		_, err = tx.Exec(ctx, "INSERT INTO {api_keys} (prefix, tenant_id, name, scopes, key_hash, rate_limit, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
			p.Prefix, e.Tenant, p.Name, string(scopes), p.KeyHash, p.RateLimit, e.RecordedAt.UnixNano())
		return err
	case domain.TypeKeyRevoked:
		p, err := decode[domain.KeyRevoked](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE {api_keys} SET revoked_at = ? WHERE prefix = ? AND tenant_id = ? AND revoked_at IS NULL",
			e.RecordedAt.UnixNano(), p.Prefix, e.Tenant)
		return err
	}
	return nil
}

// Sessions projects sessions with their spend.
type Sessions struct{}

// Tables implements Handler.
func (Sessions) Tables() []string { return []string{"sessions"} }

// Apply implements Handler.
func (Sessions) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	var err error
	switch e.Type {
	case domain.TypeSessionCreated:
		var p domain.SessionCreated
		if p, err = decode[domain.SessionCreated](e); err != nil {
			return err
		}
		scopes, _ := json.Marshal(p.Scopes)
		_, err = tx.Exec(ctx, `INSERT INTO {sessions} (tenant_id, session_id, agent_id, scopes, spend_limit, spent, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, 0, ?, ?)`, e.Tenant, p.SessionID, p.AgentID, string(scopes), int64(p.SpendLimit), e.RecordedAt.UnixNano(), p.ExpiresAt.UnixNano())
	case domain.TypeSessionRevoked:
		var p domain.SessionRevoked
		if p, err = decode[domain.SessionRevoked](e); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE {sessions} SET revoked_at = ? WHERE tenant_id = ? AND session_id = ? AND revoked_at IS NULL",
			e.RecordedAt.UnixNano(), e.Tenant, p.SessionID)
	case domain.TypePaymentAuthorized, domain.TypeAuditLogged:
		a := tx.Describe(e)
		err = addSpend(ctx, tx, e.Tenant, a.SessionID, a.Cost)
	case domain.TypePaymentReleased:
		var p domain.PaymentReleased
		if p, err = decode[domain.PaymentReleased](e); err != nil {
			return err
		}
		err = addSpend(ctx, tx, e.Tenant, p.SessionID, -p.Amount)
	}
	return err
}

func addSpend(ctx context.Context, tx *Tx, tenant, session string, m domain.Money) error {
	if m == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, "UPDATE {sessions} SET spent = spent + ? WHERE tenant_id = ? AND session_id = ?", int64(m), tenant, session)
	return err
}

// AuditEntry is how one ledger event appears in the audit trail.
type AuditEntry struct {
	SessionID, AgentID, Tool, Action string
	Cost                             domain.Money
	Flagged                          bool
	FlagReason                       string
	Details                          json.RawMessage
}

// Describe maps a ledger event to its audit-trail view: agent-reported
// actions keep their tool and action; Haldir's own decisions appear as tool
// "haldir" (or "payments") with the event type as the action.
func Describe(e *events.Event) AuditEntry {
	m := e.Meta()
	a := AuditEntry{SessionID: m.SessionID, AgentID: m.AgentID, Tool: "haldir", Action: e.Type, Details: e.Payload}
	switch e.Type {
	case domain.TypeAuditLogged:
		if p, err := decode[domain.AuditLogged](e); err == nil {
			a.SessionID, a.AgentID, a.Tool, a.Action, a.Cost = p.SessionID, p.AgentID, p.Tool, p.Action, p.CostUSD
			a.Flagged, a.FlagReason = p.Flagged, p.FlagReason
			a.Details = p.Details
		}
	case domain.TypePaymentAuthorized:
		if p, err := decode[domain.PaymentAuthorized](e); err == nil {
			a.SessionID, a.AgentID, a.Tool, a.Action, a.Cost = p.SessionID, p.AgentID, "payments", "authorize", p.Amount
		}
	case domain.TypeSecretStored:
		// The audit trail names the secret and its version, never the
		// ciphertext (and never, anywhere, the value).
		if p, err := decode[domain.SecretStored](e); err == nil {
			a.Tool, a.Action = "vault", "store"
			a.Details, _ = json.Marshal(map[string]any{"name": p.Name, "version": p.Version, "scope_required": p.ScopeRequired})
		}
	case domain.TypeSecretAccessDenied:
		if p, err := decode[domain.SecretAccessDenied](e); err == nil {
			a.Tool, a.Action = "vault", "read_denied"
			a.Flagged, a.FlagReason = true, string(p.Code)+": "+p.Reason
		}
	case domain.TypeSecretAccessed:
		a.Tool, a.Action = "vault", "read"
	case domain.TypeSecretDeleted:
		a.Tool, a.Action = "vault", "delete"
	case domain.TypeApprovalRequested:
		if p, err := decode[domain.ApprovalRequested](e); err == nil {
			a.SessionID, a.AgentID, a.Tool, a.Action, a.Cost = p.SessionID, p.AgentID, "approvals", "requested", 0
		}
	case domain.TypeApprovalApproved, domain.TypeApprovalDenied, domain.TypeApprovalExpired, domain.TypeApprovalConsumed, domain.TypeApprovalRuleAdded:
		a.Tool, a.Action = "approvals", strings.TrimPrefix(e.Type, "approval.")
	case domain.TypeWebhookRegistered:
		// Never the sealed signing secret.
		if p, err := decode[domain.WebhookRegistered](e); err == nil {
			a.Tool, a.Action = "webhooks", "registered"
			a.Details, _ = json.Marshal(map[string]any{"webhook_id": p.WebhookID, "url": p.URL, "name": p.Name, "events": p.Events})
		}
	case domain.TypeWebhookSecretRotated:
		if p, err := decode[domain.WebhookSecretRotated](e); err == nil {
			a.Tool, a.Action = "webhooks", "secret_rotated"
			a.Details, _ = json.Marshal(map[string]any{"webhook_id": p.WebhookID, "version": p.Version, "previous_expires_at": p.PreviousExpiresAt})
		}
	case domain.TypeWebhookDisabled:
		a.Tool, a.Action = "webhooks", "disabled"
	case domain.TypeUpstreamRegistered:
		if p, err := decode[domain.UpstreamRegistered](e); err == nil {
			a.Tool, a.Action = "proxy", "upstream_registered"
			a.Details, _ = json.Marshal(map[string]any{"name": p.Name, "transport": p.Transport, "url": p.URL, "command": p.Command})
		}
	case domain.TypeToolPinned, domain.TypeToolApproved, domain.TypePolicyAdded:
		a.Tool, a.Action = "proxy", strings.TrimPrefix(e.Type, "proxy.")
	case domain.TypeToolQuarantined:
		if p, err := decode[domain.ToolQuarantined](e); err == nil {
			a.Tool, a.Action = p.Tool, "quarantined"
			a.Flagged, a.FlagReason = true, "the tool's definition changed since it was pinned; it is quarantined until an admin approves it"
		}
	case domain.TypeToolCallAllowed:
		if p, err := decode[domain.ToolCallAllowed](e); err == nil {
			a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, p.Tool, "call_allowed"
			a.Details = json.RawMessage(e.Payload) // hashes and secret names, never values
		}
	case domain.TypeToolCallCompleted:
		if p, err := decode[domain.ToolCallCompleted](e); err == nil {
			a.Tool, a.Action = p.Tool, "call_completed"
			a.Details = json.RawMessage(e.Payload)
		}
	case domain.TypeToolCallDenied:
		if p, err := decode[domain.ToolCallDenied](e); err == nil {
			a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, p.Tool, "call_denied"
			a.Flagged, a.FlagReason = true, string(p.Code)+": "+p.Reason
			a.Details = json.RawMessage(e.Payload)
		}
	case domain.TypePaymentReleased:
		if p, err := decode[domain.PaymentReleased](e); err == nil {
			a.SessionID, a.Tool, a.Action, a.Cost = p.SessionID, "payments", "release", -p.Amount
		}
	case domain.TypeVerificationFailed:
		if p, err := decode[domain.VerificationFailed](e); err == nil {
			a.Tool, a.Action = "haldir", "verification_failed"
			a.Flagged, a.FlagReason = true, fmt.Sprintf("the hash chain failed to verify at seq %d: %s", p.FirstBadSeq, p.Reason)
		}
	case domain.TypePaymentDenied:
		if p, err := decode[domain.PaymentDenied](e); err == nil {
			a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, "payments", "deny"
			a.Flagged, a.FlagReason = true, string(p.Code)+": "+p.Reason
		}
	}
	if len(a.Details) == 0 {
		a.Details = json.RawMessage("{}")
	}
	return a
}

// AuditTrail projects every event of every tenant into a queryable trail.
type AuditTrail struct{}

// Tables implements Handler.
func (AuditTrail) Tables() []string { return []string{"audit_entries"} }

// Apply implements Handler.
func (AuditTrail) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	if strings.HasPrefix(e.Tenant, "_") {
		return nil // install-wide streams belong to no tenant's trail
	}
	a := tx.Describe(e)
	_, err := tx.Exec(ctx, `INSERT INTO {audit_entries} (tenant_id, seq, position, entry_id, type, session_id, agent_id, tool, action, cost,
flagged, flag_reason, recorded_at, details, prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Tenant, e.Seq, e.Position, e.ID, e.Type, a.SessionID, a.AgentID, a.Tool, a.Action, int64(a.Cost),
		boolInt(a.Flagged), a.FlagReason, e.RecordedAt.UnixNano(), string(a.Details), hex.EncodeToString(e.PrevHash[:]), hex.EncodeToString(e.Hash[:]))
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Usage counts each tenant's governed actions and spend per calendar month
// (UTC), summed per transaction and written once (Flush).
type Usage struct{}

type usageKey struct{ tenant, month string }

type usageSum struct {
	actions int64
	spend   domain.Money
}

// Tables implements Handler.
func (Usage) Tables() []string { return []string{"usage_monthly"} }

func usageBatch(tx *Tx) map[usageKey]*usageSum {
	return Batch(tx, "usage", func() map[usageKey]*usageSum { return map[usageKey]*usageSum{} })
}

// Apply implements Handler.
func (Usage) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	if !domain.CountsAsAction(e.Type) {
		return nil
	}
	b := usageBatch(tx)
	k := usageKey{e.Tenant, e.RecordedAt.Format("2006-01")}
	s := b[k]
	if s == nil {
		s = &usageSum{}
		b[k] = s
	}
	s.actions++
	s.spend += tx.Describe(e).Cost
	return nil
}

// Flush implements Flusher.
func (Usage) Flush(ctx context.Context, tx *Tx) error {
	for k, s := range usageBatch(tx) {
		if _, err := tx.Exec(ctx, `INSERT INTO {usage_monthly} (tenant_id, month, action_count, spend) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant_id, month) DO UPDATE SET action_count = {usage_monthly}.action_count + excluded.action_count, spend = {usage_monthly}.spend + excluded.spend`,
			k.tenant, k.month, s.actions, int64(s.spend)); err != nil {
			return err
		}
	}
	clear(usageBatch(tx))
	return nil
}
