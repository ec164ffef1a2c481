package domain

import (
	"encoding/json"
	"time"
)

// Event type names. They are part of the ledger and never change: a stored
// event keeps its name forever, whatever Go type reads it.
const (
	TypeTenantCreated     = "tenant.created"
	TypeTenantRegistered  = "install.tenant_registered"
	TypeKeyCreated        = "key.created"
	TypeKeyRevoked        = "key.revoked"
	TypeSessionCreated    = "session.created"
	TypeSessionRevoked    = "session.revoked"
	TypePaymentAuthorized = "payment.authorized"
	TypePaymentDenied     = "payment.denied"
	TypeAuditLogged       = "audit.logged"
	// TypeVerificationFailed records that a tenant's hash chain failed to
	// verify; it is appended (onto the broken chain) so webhooks and the
	// evidence pack hear of it.
	TypeVerificationFailed = "audit.verification_failed"
)

// VerificationFailed records a broken chain.
type VerificationFailed struct {
	FirstBadSeq int64  `json:"first_bad_seq"`
	Reason      string `json:"reason"`
}

// VerificationStream is the tenant stream of verification failures.
const VerificationStream = "audit-verification"

// InstallTenant is the pseudo-tenant that owns install-wide streams. No API
// key belongs to it.
const InstallTenant = "_install"

// Stream names.
const (
	// TenantsStream, in InstallTenant, records every tenant registration;
	// the unauthenticated first key may be created only while it is empty.
	TenantsStream = "install/tenants"
)

// SessionStream returns the stream of session id.
func SessionStream(id string) string { return "session/" + id }

// KeyStream returns the stream of the API key with prefix.
func KeyStream(prefix string) string { return "key/" + prefix }

// TenantStream returns the stream holding a tenant's own lifecycle.
func TenantStream(id string) string { return "tenant/" + id }

// TenantCreated starts a tenant.
type TenantCreated struct {
	TenantID string `json:"tenant_id"`
	Name     string `json:"name"`
}

// TenantRegistered records a tenant in the install-wide registry.
type TenantRegistered struct {
	TenantID string `json:"tenant_id"`
	// Bootstrap is true for the tenant made by the unauthenticated first
	// key of a fresh install.
	Bootstrap bool `json:"bootstrap,omitempty"`
}

// KeyCreated records a new API key. KeyHash is the hex SHA-256 of the key;
// the key itself is never stored.
type KeyCreated struct {
	Prefix  string    `json:"prefix"`
	Name    string    `json:"name"`
	Scopes  KeyScopes `json:"scopes"`
	KeyHash string    `json:"key_hash"`
	// RateLimit is the key's own limit in requests a minute; 0 uses the
	// server default.
	RateLimit int `json:"rate_limit,omitempty"`
}

// KeyRevoked revokes an API key.
type KeyRevoked struct {
	Prefix string `json:"prefix"`
}

// SessionCreated starts an agent session.
type SessionCreated struct {
	SessionID  string    `json:"session_id"`
	AgentID    string    `json:"agent_id"`
	Scopes     []string  `json:"scopes"`
	SpendLimit Money     `json:"spend_limit"`
	TTL        int64     `json:"ttl"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// SessionRevoked ends a session early.
type SessionRevoked struct {
	SessionID string `json:"session_id"`
	// Reason is set when a kill switch revoked it ("agent_killed").
	Reason string `json:"reason,omitempty"`
}

// PaymentAuthorized records spend approved against a session's cap.
type PaymentAuthorized struct {
	AuthorizationID string `json:"authorization_id"`
	SessionID       string `json:"session_id"`
	AgentID         string `json:"agent_id"`
	Amount          Money  `json:"amount"`
	Currency        string `json:"currency"`
	Description     string `json:"description"`
	RemainingBudget Money  `json:"remaining_budget"`
}

// PaymentDenied records a refused payment and why.
type PaymentDenied struct {
	SessionID       string `json:"session_id"`
	AgentID         string `json:"agent_id"`
	Amount          Money  `json:"amount"`
	Currency        string `json:"currency"`
	Description     string `json:"description"`
	Code            Code   `json:"code"`
	Reason          string `json:"reason"`
	RemainingBudget Money  `json:"remaining_budget"`
}

// AuditLogged records an action an agent reported.
type AuditLogged struct {
	SessionID  string          `json:"session_id"`
	AgentID    string          `json:"agent_id"`
	Tool       string          `json:"tool"`
	Action     string          `json:"action"`
	Details    json.RawMessage `json:"details,omitempty"`
	CostUSD    Money           `json:"cost_usd"`
	Flagged    bool            `json:"flagged"`
	FlagReason string          `json:"flag_reason,omitempty"`
}

// CountsAsAction reports whether an event of type typ counts toward a
// tenant's monthly actions: the governed things agents did.
func CountsAsAction(typ string) bool {
	switch typ {
	case TypeAuditLogged, TypePaymentAuthorized, TypePaymentDenied:
		return true
	}
	return false
}
