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
	"github.com/haldir-dev/haldir/webhooks"
)

// Webhooks projects registered webhooks for the API and the delivery
// worker's endpoint lookup.
type Webhooks struct{}

// Tables implements Handler.
func (Webhooks) Tables() []string { return []string{"webhooks"} }

// Apply implements Handler.
func (Webhooks) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	switch e.Type {
	case domain.TypeWebhookRegistered:
		w, err := decode[domain.WebhookRegistered](e)
		if err != nil {
			return err
		}
		evs, _ := json.Marshal(w.Events)
		_, err = tx.Exec(ctx, `INSERT INTO {webhooks} (tenant_id, webhook_id, url, name, events, active, secret_version, key_id, sealed,
prev_version, prev_key_id, prev_sealed, prev_expires_at, created_at) VALUES (?, ?, ?, ?, ?, 1, 1, ?, ?, 0, '', NULL, 0, ?)`,
			e.Tenant, w.WebhookID, w.URL, w.Name, string(evs), w.KeyID, w.Sealed, e.RecordedAt.UnixNano())
		return err
	case domain.TypeWebhookSecretRotated:
		r, err := decode[domain.WebhookSecretRotated](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE {webhooks} SET prev_version = secret_version, prev_key_id = key_id, prev_sealed = sealed, prev_expires_at = ?,
secret_version = ?, key_id = ?, sealed = ? WHERE tenant_id = ? AND webhook_id = ?`,
			r.PreviousExpiresAt.UnixNano(), int64(r.Version), r.KeyID, r.Sealed, e.Tenant, r.WebhookID)
		return err
	case domain.TypeWebhookDisabled:
		d, err := decode[domain.WebhookDisabled](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE {webhooks} SET active = 0 WHERE tenant_id = ? AND webhook_id = ?", e.Tenant, d.WebhookID)
		return err
	}
	return nil
}

// OutboxGroup enqueues webhook deliveries. It is its own group, with its
// own copy of the webhook registry, so that it sees exactly the webhooks
// registered before each event, and so that rebuilding the core read
// models never re-sends or skips a delivery.
func OutboxGroup(q *webhooks.Queue) Group {
	return Group{Name: "outbox", Handlers: []Handler{OutboxRegistry{}, Outbox{Queue: q}}, Async: true}
}

// OutboxRegistry keeps the outbox group's copy of the registry.
type OutboxRegistry struct{}

// Tables implements Handler.
func (OutboxRegistry) Tables() []string { return []string{"outbox_webhooks"} }

// Apply implements Handler.
func (OutboxRegistry) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	switch e.Type {
	case domain.TypeWebhookRegistered:
		w, err := decode[domain.WebhookRegistered](e)
		if err != nil {
			return err
		}
		evs, _ := json.Marshal(w.Events)
		_, err = tx.Exec(ctx, "INSERT INTO {outbox_webhooks} (tenant_id, webhook_id, events, active) VALUES (?, ?, ?, 1)", e.Tenant, w.WebhookID, string(evs))
		return err
	case domain.TypeWebhookDisabled:
		d, err := decode[domain.WebhookDisabled](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE {outbox_webhooks} SET active = 0 WHERE tenant_id = ? AND webhook_id = ?", e.Tenant, d.WebhookID)
		return err
	}
	return nil
}

// Outbox enqueues a delivery of every deliverable event to each active
// webhook of its tenant whose filter wants it, in the projection's
// transaction: exactly once per (webhook, event), durable before the
// checkpoint moves.
type Outbox struct {
	Queue *webhooks.Queue
}

// Tables implements Handler. The delivery queue is not a read model: it is
// never rebuilt.
func (Outbox) Tables() []string { return nil }

// Body is the JSON a webhook receives.
type Body struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	TenantID  string          `json:"tenant_id"`
	Data      json.RawMessage `json:"data"`
}

// Apply implements Handler.
func (o Outbox) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	if tx.prefix != "" || !domain.WebhookWants([]string{"all"}, e.Type) {
		return nil // scratch replays never deliver
	}
	rows, err := tx.Query(ctx, "SELECT webhook_id, events FROM {outbox_webhooks} WHERE tenant_id = ? AND active = 1", e.Tenant)
	if err != nil {
		return err
	}
	type target struct{ id, events string }
	var targets []target
	for rows.Next() {
		var t target
		if err := rows.Scan(&t.id, &t.events); err != nil {
			rows.Close()
			return err
		}
		targets = append(targets, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(targets) == 0 {
		return nil
	}
	body, err := json.Marshal(Body{ID: e.ID, Type: e.Type, Timestamp: e.RecordedAt.UTC().Format(time.RFC3339Nano), TenantID: e.Tenant, Data: e.Payload})
	if err != nil {
		return err
	}
	for _, t := range targets {
		var filter []string
		if err := json.Unmarshal([]byte(t.events), &filter); err != nil {
			return fmt.Errorf("webhook %s filter: %w", t.id, err)
		}
		if !domain.WebhookWants(filter, e.Type) {
			continue
		}
		if _, _, err := o.Queue.EnqueueExec(ctx, tx.Exec, webhooks.Message{TenantID: e.Tenant, WebhookID: t.id, EventID: e.ID,
			EventType: e.Type, Body: body, At: e.RecordedAt}); err != nil {
			return err
		}
	}
	return nil
}

// Webhook returns a tenant's webhook as projected.
func (q *Queries) Webhook(ctx context.Context, tenant, id string) (domain.Webhook, bool, error) {
	w := domain.Webhook{ID: id}
	var evs string
	var active int
	var version, prevVersion, prevExpires int64
	err := q.row(ctx, `SELECT url, name, events, active, secret_version, key_id, sealed, prev_version, prev_key_id, prev_sealed, prev_expires_at
FROM webhooks WHERE tenant_id = ? AND webhook_id = ?`, tenant, id).Scan(&w.URL, &w.Name, &evs, &active, &version, &w.KeyID, &w.Sealed,
		&prevVersion, &w.PrevKeyID, &w.PrevSealed, &prevExpires)
	if errors.Is(err, sql.ErrNoRows) {
		return w, false, nil
	}
	if err != nil {
		return w, false, fmt.Errorf("projections: read webhook: %w", err)
	}
	w.Active, w.SecretVersion, w.PrevVersion, w.PrevExpiresAt = active == 1, uint64(version), uint64(prevVersion), nanos(prevExpires)
	return w, true, json.Unmarshal([]byte(evs), &w.Events)
}

// Webhooks lists the tenant's webhooks with delivered and failed counts.
func (q *Queries) Webhooks(ctx context.Context, tenant string) ([]views.WebhookRow, error) {
	rows, err := q.db.QueryRead(ctx, `SELECT w.webhook_id, w.url, w.name, w.events, w.active, w.created_at, w.prev_expires_at,
(SELECT COUNT(*) FROM webhook_deliveries d WHERE d.tenant_id = w.tenant_id AND d.webhook_id = w.webhook_id AND d.status = 'delivered'),
(SELECT COUNT(*) FROM webhook_deliveries d WHERE d.tenant_id = w.tenant_id AND d.webhook_id = w.webhook_id AND d.status IN ('failed', 'disabled'))
FROM webhooks w WHERE w.tenant_id = ? ORDER BY w.created_at, w.webhook_id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("projections: list webhooks: %w", err)
	}
	defer rows.Close()
	var out []views.WebhookRow
	for rows.Next() {
		var r views.WebhookRow
		var evs string
		var active int
		var created, prevExp int64
		if err := rows.Scan(&r.ID, &r.URL, &r.Name, &evs, &active, &created, &prevExp, &r.Delivered, &r.Failed); err != nil {
			return nil, err
		}
		r.Active, r.CreatedAt, r.SecretPrevExpireAt = active == 1, nanos(created), nanos(prevExp)
		if err := json.Unmarshal([]byte(evs), &r.Events); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// views.WebhookStats counts the tenant's webhooks and the delivery attempts made
// in [since, until).
func (q *Queries) WebhookStats(ctx context.Context, tenant string, since, until time.Time) (views.WebhookStats, error) {
	var s views.WebhookStats
	if err := q.row(ctx, "SELECT COUNT(*), COALESCE(SUM(active), 0) FROM webhooks WHERE tenant_id = ?", tenant).Scan(&s.Registered, &s.Active); err != nil {
		return s, err
	}
	err := q.row(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END), 0)
FROM webhook_attempts WHERE tenant_id = ? AND created_at >= ? AND created_at < ?`, tenant, since.UnixNano(), until.UnixNano()).Scan(&s.Attempts, &s.Delivered)
	s.Failed = s.Attempts - s.Delivered
	return s, err
}
