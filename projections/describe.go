package projections

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

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
//
// Every entry starts from the event itself: tool "haldir", the event type
// as the action, the session and agent of its metadata, its payload as the
// details. The describer of the event's type, if describers has one,
// refines that; an event whose payload does not decode keeps it. Details
// are never empty ("{}" at least).
func Describe(e *events.Event) AuditEntry {
	m := e.Meta()
	a := AuditEntry{SessionID: m.SessionID, AgentID: m.AgentID, Tool: "haldir", Action: e.Type, Details: e.Payload}
	if d := describers[e.Type]; d != nil {
		d(e, &a)
	}
	if len(a.Details) == 0 {
		a.Details = json.RawMessage("{}")
	}
	return a
}

// A describer refines a, the entry Describe starts from, for the event e.
type describer func(e *events.Event, a *AuditEntry)

// describers holds the audit-trail view of each event type that has one of
// its own; every other type keeps Describe's default. A new event type is
// one row here.
var describers = map[string]describer{
	domain.TypeAnomalyFlagged: payload(func(a *AuditEntry, p domain.AnomalyFlagged) {
		a.SessionID, a.AgentID, a.Action = p.SessionID, p.AgentID, "anomaly."+p.Detector
		if p.Tool != "" {
			a.Tool = p.Tool
		}
		a.Flagged, a.FlagReason = true, p.Detector+" ("+p.Severity+"): "+p.Reason
	}),
	domain.TypeAuditLogged: payload(func(a *AuditEntry, p domain.AuditLogged) {
		a.SessionID, a.AgentID, a.Tool, a.Action, a.Cost = p.SessionID, p.AgentID, p.Tool, p.Action, p.CostUSD
		a.Flagged, a.FlagReason = p.Flagged, p.FlagReason
		a.Details = p.Details
	}),

	domain.TypePaymentAuthorized: payload(func(a *AuditEntry, p domain.PaymentAuthorized) {
		a.SessionID, a.AgentID, a.Tool, a.Action, a.Cost = p.SessionID, p.AgentID, "payments", "authorize", p.Amount
	}),
	domain.TypePaymentDenied: payload(func(a *AuditEntry, p domain.PaymentDenied) {
		a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, "payments", "deny"
		a.Flagged, a.FlagReason = true, string(p.Code)+": "+p.Reason
	}),
	domain.TypePaymentReleased: payload(func(a *AuditEntry, p domain.PaymentReleased) {
		a.SessionID, a.Tool, a.Action, a.Cost = p.SessionID, "payments", "release", -p.Amount
	}),

	// The audit trail names the secret and its version, never the
	// ciphertext (and never, anywhere, the value).
	domain.TypeSecretStored: payload(func(a *AuditEntry, p domain.SecretStored) {
		a.Tool, a.Action = "vault", "store"
		a.Details, _ = json.Marshal(map[string]any{"name": p.Name, "version": p.Version, "scope_required": p.ScopeRequired})
	}),
	domain.TypeSecretAccessDenied: payload(func(a *AuditEntry, p domain.SecretAccessDenied) {
		a.Tool, a.Action = "vault", "read_denied"
		a.Flagged, a.FlagReason = true, string(p.Code)+": "+p.Reason
	}),
	domain.TypeSecretAccessed: as("vault", "read"),
	domain.TypeSecretDeleted:  as("vault", "delete"),

	domain.TypeApprovalRequested: payload(func(a *AuditEntry, p domain.ApprovalRequested) {
		a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, "approvals", "requested"
	}),
	domain.TypeApprovalApproved:  asType("approvals", "approval."),
	domain.TypeApprovalDenied:    asType("approvals", "approval."),
	domain.TypeApprovalExpired:   asType("approvals", "approval."),
	domain.TypeApprovalConsumed:  asType("approvals", "approval."),
	domain.TypeApprovalRuleAdded: asType("approvals", "approval."),

	// Never the sealed signing secret.
	domain.TypeWebhookRegistered: payload(func(a *AuditEntry, p domain.WebhookRegistered) {
		a.Tool, a.Action = "webhooks", "registered"
		a.Details, _ = json.Marshal(map[string]any{"webhook_id": p.WebhookID, "url": p.URL, "name": p.Name, "events": p.Events})
	}),
	domain.TypeWebhookSecretRotated: payload(func(a *AuditEntry, p domain.WebhookSecretRotated) {
		a.Tool, a.Action = "webhooks", "secret_rotated"
		a.Details, _ = json.Marshal(map[string]any{"webhook_id": p.WebhookID, "version": p.Version, "previous_expires_at": p.PreviousExpiresAt})
	}),
	domain.TypeWebhookDisabled: as("webhooks", "disabled"),

	domain.TypeUpstreamRegistered: payload(func(a *AuditEntry, p domain.UpstreamRegistered) {
		a.Tool, a.Action = "proxy", "upstream_registered"
		a.Details, _ = json.Marshal(map[string]any{"name": p.Name, "transport": p.Transport, "url": p.URL, "command": p.Command})
	}),
	domain.TypeToolPinned:   asType("proxy", "proxy."),
	domain.TypeToolApproved: asType("proxy", "proxy."),
	domain.TypePolicyAdded:  asType("proxy", "proxy."),
	domain.TypeToolQuarantined: payload(func(a *AuditEntry, p domain.ToolQuarantined) {
		a.Tool, a.Action = p.Tool, "quarantined"
		a.Flagged, a.FlagReason = true, "the tool's definition changed since it was pinned; it is quarantined until an admin approves it"
	}),
	// The details of a proxied call stay its payload: hashes and secret
	// names, never values.
	domain.TypeToolCallAllowed: payload(func(a *AuditEntry, p domain.ToolCallAllowed) {
		a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, p.Tool, "call_allowed"
	}),
	domain.TypeToolCallCompleted: payload(func(a *AuditEntry, p domain.ToolCallCompleted) {
		a.Tool, a.Action = p.Tool, "call_completed"
	}),
	domain.TypeToolCallDenied: payload(func(a *AuditEntry, p domain.ToolCallDenied) {
		a.SessionID, a.AgentID, a.Tool, a.Action = p.SessionID, p.AgentID, p.Tool, "call_denied"
		a.Flagged, a.FlagReason = true, string(p.Code)+": "+p.Reason
	}),

	domain.TypeVerificationFailed: payload(func(a *AuditEntry, p domain.VerificationFailed) {
		a.Tool, a.Action = "haldir", "verification_failed"
		a.Flagged, a.FlagReason = true, fmt.Sprintf("the hash chain failed to verify at seq %d: %s", p.FirstBadSeq, p.Reason)
	}),
}

// payload returns a describer that decodes the event's payload as a P and,
// if it decodes, has fill refine the entry.
func payload[P any](fill func(a *AuditEntry, p P)) describer {
	return func(e *events.Event, a *AuditEntry) {
		if p, err := decode[P](e); err == nil {
			fill(a, p)
		}
	}
}

// as returns a describer that sets the tool and action.
func as(tool, action string) describer {
	return func(_ *events.Event, a *AuditEntry) { a.Tool, a.Action = tool, action }
}

// asType returns a describer that sets the tool, and as the action the
// event type without prefix ("approval.approved" is "approved").
func asType(tool, prefix string) describer {
	return func(e *events.Event, a *AuditEntry) { a.Tool, a.Action = tool, strings.TrimPrefix(e.Type, prefix) }
}
