package domain

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Webhook event types.
const (
	TypeWebhookRegistered    = "webhook.registered"
	TypeWebhookSecretRotated = "webhook.secret_rotated"
	TypeWebhookDisabled      = "webhook.disabled"
)

// Webhook limits.
const (
	MaxWebhookURLLen   = 2048
	MaxWebhookGrace    = 7 * 24 * time.Hour
	DefaultWebhookName = "webhook"
)

// WebhookStream returns the stream of one webhook.
func WebhookStream(id string) string { return "webhook/" + id }

// WebhookSecretName returns the vault key name of a webhook's signing
// secret, outside the namespace of tenant secrets (which cannot start
// with "webhook.").
func WebhookSecretName(id string) string { return "webhook." + id }

// DeliveredEvents are the event types webhooks can receive, and the names
// a webhook's events filter may use ("all" selects every one).
var DeliveredEvents = []string{
	TypeApprovalRequested, TypeApprovalApproved, TypeApprovalDenied, TypeApprovalExpired,
	TypePaymentDenied, TypeSessionRevoked, TypeVerificationFailed,
	TypeAnomalyFlagged, TypeAgentKilled,
}

// ValidateWebhookEvents checks a webhook's events filter; nil means all.
func ValidateWebhookEvents(list []string) ([]string, error) {
	if len(list) == 0 {
		return []string{"all"}, nil
	}
	for _, e := range list {
		if e != "all" && !slices.Contains(DeliveredEvents, e) {
			return nil, Invalid("events", "%q is not a deliverable event; use \"all\" or some of %v", truncate(e, 60), DeliveredEvents)
		}
	}
	return list, nil
}

// WebhookWants reports whether a webhook with filter events receives an
// event of type typ.
func WebhookWants(events []string, typ string) bool {
	if !slices.Contains(DeliveredEvents, typ) {
		return false
	}
	return slices.Contains(events, "all") || slices.Contains(events, typ)
}

// WebhookRegistered adds an endpoint. Sealed is the signing secret's
// ciphertext; its data key is held outside the ledger under KeyID.
type WebhookRegistered struct {
	WebhookID string   `json:"webhook_id"`
	URL       string   `json:"url"`
	Name      string   `json:"name"`
	Events    []string `json:"events"`
	KeyID     string   `json:"key_id"`
	Sealed    []byte   `json:"sealed"`
}

// WebhookSecretRotated replaces the signing secret; the previous one stays
// valid until PreviousExpiresAt.
type WebhookSecretRotated struct {
	WebhookID         string    `json:"webhook_id"`
	Version           uint64    `json:"version"`
	KeyID             string    `json:"key_id"`
	Sealed            []byte    `json:"sealed"`
	PreviousExpiresAt time.Time `json:"previous_expires_at"`
}

// WebhookDisabled stops deliveries to an endpoint.
type WebhookDisabled struct {
	WebhookID string `json:"webhook_id"`
	Reason    string `json:"reason"`
}

// Webhook is the aggregate of one webhook's stream.
type Webhook struct {
	ID            string
	URL, Name     string
	Events        []string
	Active        bool
	SecretVersion uint64
	KeyID         string
	Sealed        []byte
	PrevVersion   uint64
	PrevKeyID     string
	PrevSealed    []byte
	PrevExpiresAt time.Time
	StreamVersion int64
}

// Apply folds one event of the webhook's stream into w.
func (w *Webhook) Apply(typ string, payload []byte, version int64) error {
	switch typ {
	case TypeWebhookRegistered:
		var e WebhookRegistered
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		*w = Webhook{ID: e.WebhookID, URL: e.URL, Name: e.Name, Events: e.Events, Active: true, SecretVersion: 1, KeyID: e.KeyID, Sealed: e.Sealed}
	case TypeWebhookSecretRotated:
		var e WebhookSecretRotated
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		w.PrevVersion, w.PrevKeyID, w.PrevSealed, w.PrevExpiresAt = w.SecretVersion, w.KeyID, w.Sealed, e.PreviousExpiresAt
		w.SecretVersion, w.KeyID, w.Sealed = e.Version, e.KeyID, e.Sealed
	case TypeWebhookDisabled:
		w.Active = false
	}
	w.StreamVersion = version
	return nil
}

// WebhookSecretPrefix starts every webhook signing secret (Standard
// Webhooks): "whsec_" followed by the base64 of the HMAC key.
const WebhookSecretPrefix = "whsec_"

// NewWebhookSecret returns a new signing secret: WebhookSecretPrefix and
// the base64 of 32 random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(b)
}
