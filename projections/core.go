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
var CoreGroup = Group{Name: "core", Handlers: []Handler{Tenants{}, Keys{}, Sessions{}, AuditTrail{}, Usage{}, EventCounts{}, Secrets{}, Approvals{}, Webhooks{}, Proxy{}, Tree{}, Anomalies{}}}

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
		if _, err = tx.Exec(ctx, "UPDATE {api_keys} SET revoked_at = ? WHERE prefix = ? AND tenant_id = ? AND revoked_at IS NULL",
			e.RecordedAt.UnixNano(), p.Prefix, e.Tenant); err != nil {
			return err
		}
		return tx.Invalidate(ctx, "key:"+p.Prefix)
	}
	return nil
}

// Sessions projects sessions with their spend. A transaction's writes are
// made at Flush: new sessions in multi-row inserts (with the spend they
// gathered in the same transaction), then revocations in order, then one
// spend update per older session. Nothing reads the sessions table inside
// the projection transaction.
type Sessions struct{}

// Tables implements Handler.
func (Sessions) Tables() []string { return []string{"sessions"} }

// sessionBatch is a transaction's pending session writes.
type sessionBatch struct {
	rows *rowBuffer
	// created maps a session inserted in this transaction to its row.
	created map[sessionKey]int
	spend   map[sessionKey]domain.Money
	revoked []revocation
}

type revocation struct {
	key sessionKey
	at  int64
}

// sessionColumns is the number of columns of a buffered session row; the
// spend is column spentColumn.
const (
	sessionColumns = 8
	spentColumn    = 5
)

func sessionsBatch(tx *Tx) *sessionBatch {
	return Batch(tx, "sessions", func() *sessionBatch {
		return &sessionBatch{
			rows: rows(tx, "sessions.rows", "INSERT INTO {sessions} (tenant_id, session_id, agent_id, scopes, spend_limit, spent, created_at, expires_at) VALUES",
				"", sessionColumns),
			created: map[sessionKey]int{},
			spend:   map[sessionKey]domain.Money{},
		}
	})
}

// Apply implements Handler.
func (Sessions) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	b := sessionsBatch(tx)
	switch e.Type {
	case domain.TypeSessionCreated:
		p, err := decode[domain.SessionCreated](e)
		if err != nil {
			return err
		}
		scopes, _ := json.Marshal(p.Scopes)
		b.created[sessionKey{tenant: e.Tenant, id: p.SessionID}] = len(b.rows.args) / sessionColumns
		b.rows.add(e.Tenant, p.SessionID, p.AgentID, string(scopes), int64(p.SpendLimit), int64(0), e.RecordedAt.UnixNano(), p.ExpiresAt.UnixNano())
	case domain.TypeSessionRevoked:
		p, err := decode[domain.SessionRevoked](e)
		if err != nil {
			return err
		}
		b.revoked = append(b.revoked, revocation{sessionKey{tenant: e.Tenant, id: p.SessionID}, e.RecordedAt.UnixNano()})
	case domain.TypePaymentAuthorized, domain.TypeAuditLogged:
		a := tx.Describe(e)
		b.addSpend(e.Tenant, a.SessionID, a.Cost)
	case domain.TypePaymentReleased:
		p, err := decode[domain.PaymentReleased](e)
		if err != nil {
			return err
		}
		b.addSpend(e.Tenant, p.SessionID, -p.Amount)
	}
	return nil
}

// addSpend adds m to the session's spend: in its pending row when the
// session is new in this transaction, else to the update made at Flush.
func (b *sessionBatch) addSpend(tenant, session string, m domain.Money) {
	if m == 0 {
		return
	}
	k := sessionKey{tenant: tenant, id: session}
	if row, ok := b.created[k]; ok {
		spent := &b.rows.args[row*sessionColumns+spentColumn]
		*spent = (*spent).(int64) + int64(m)
		return
	}
	b.spend[k] += m
}

// Flush implements Flusher.
func (Sessions) Flush(ctx context.Context, tx *Tx) error {
	b := sessionsBatch(tx)
	if err := b.rows.flush(ctx, tx); err != nil {
		return err
	}
	for _, r := range b.revoked {
		if _, err := tx.Exec(ctx, "UPDATE {sessions} SET revoked_at = ? WHERE tenant_id = ? AND session_id = ? AND revoked_at IS NULL",
			r.at, r.key.tenant, r.key.id); err != nil {
			return err
		}
	}
	for k, m := range b.spend {
		if m == 0 {
			continue
		}
		if _, err := tx.Exec(ctx, "UPDATE {sessions} SET spent = spent + ? WHERE tenant_id = ? AND session_id = ?", int64(m), k.tenant, k.id); err != nil {
			return err
		}
	}
	clear(b.created)
	clear(b.spend)
	b.revoked = b.revoked[:0]
	return nil
}

// AuditTrail projects every event of every tenant into a queryable trail.
// A transaction's entries are written at Flush, many rows per statement;
// nothing reads the trail inside the projection transaction.
type AuditTrail struct{}

// Tables implements Handler.
func (AuditTrail) Tables() []string { return []string{"audit_entries"} }

func auditRows(tx *Tx) *rowBuffer {
	return rows(tx, "audit_entries", `INSERT INTO {audit_entries} (tenant_id, seq, position, entry_id, type, session_id, agent_id, tool, action, cost,
flagged, flag_reason, recorded_at, details, prev_hash, entry_hash) VALUES`, "", 16)
}

// Apply implements Handler.
func (AuditTrail) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	if strings.HasPrefix(e.Tenant, "_") {
		return nil // install-wide streams belong to no tenant's trail
	}
	a := tx.Describe(e)
	auditRows(tx).add(e.Tenant, e.Seq, e.Position, e.ID, e.Type, a.SessionID, a.AgentID, a.Tool, a.Action, int64(a.Cost),
		boolInt(a.Flagged), a.FlagReason, e.RecordedAt.UnixNano(), string(a.Details), hex.EncodeToString(e.PrevHash[:]), hex.EncodeToString(e.Hash[:]))
	return nil
}

// Flush implements Flusher.
func (AuditTrail) Flush(ctx context.Context, tx *Tx) error { return auditRows(tx).flush(ctx, tx) }

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
