package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// Proxy projects upstream registrations, tool pins and policies.
type Proxy struct{}

// Tables implements Handler.
func (Proxy) Tables() []string { return []string{"proxy_upstreams", "proxy_pins", "proxy_policies"} }

// Apply implements Handler.
func (Proxy) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	at := e.RecordedAt.UnixNano()
	switch e.Type {
	case domain.TypeUpstreamRegistered:
		u, err := decode[domain.UpstreamRegistered](e)
		if err != nil {
			return err
		}
		cmd, _ := json.Marshal(u.Command)
		_, err = tx.Exec(ctx, `INSERT INTO {proxy_upstreams} (tenant_id, name, transport, url, command, key_id, sealed_config, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.Tenant, u.Name, u.Transport, u.URL, string(cmd), u.KeyID, u.SealedConfig, at)
		return err
	case domain.TypeToolPinned:
		p, err := decode[domain.ToolPinned](e)
		if err != nil {
			return err
		}
		return upsertPin(ctx, tx, e.Tenant, p.Tool, p.Hash, "pinned", "", at)
	case domain.TypeToolApproved:
		p, err := decode[domain.ToolApproved](e)
		if err != nil {
			return err
		}
		return upsertPin(ctx, tx, e.Tenant, p.Tool, p.Hash, "pinned", "", at)
	case domain.TypeToolQuarantined:
		p, err := decode[domain.ToolQuarantined](e)
		if err != nil {
			return err
		}
		return upsertPin(ctx, tx, e.Tenant, p.Tool, p.PinnedHash, "quarantined", p.NewHash, at)
	case domain.TypePolicyAdded:
		p, err := decode[domain.Policy](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO {proxy_policies} (tenant_id, policy_id, policy, created_at) VALUES (?, ?, ?, ?)", e.Tenant, p.PolicyID, string(e.Payload), at)
		return err
	}
	return nil
}

func upsertPin(ctx context.Context, tx *Tx, tenant, tool, hash, status, newHash string, at int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO {proxy_pins} (tenant_id, tool, hash, status, new_hash, updated_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, tool) DO UPDATE SET hash = excluded.hash, status = excluded.status, new_hash = excluded.new_hash, updated_at = excluded.updated_at`,
		tenant, tool, hash, status, newHash, at)
	return err
}

// Upstreams returns the tenant's registered upstreams, oldest first.
func (q *Queries) Upstreams(ctx context.Context, tenant string) ([]domain.UpstreamRegistered, error) {
	rows, err := q.db.QueryRead(ctx,
		"SELECT name, transport, url, command, key_id, sealed_config FROM proxy_upstreams WHERE tenant_id = ? ORDER BY created_at, name", tenant)
	if err != nil {
		return nil, fmt.Errorf("projections: list upstreams: %w", err)
	}
	defer rows.Close()
	var out []domain.UpstreamRegistered
	for rows.Next() {
		var u domain.UpstreamRegistered
		var cmd string
		if err := rows.Scan(&u.Name, &u.Transport, &u.URL, &cmd, &u.KeyID, &u.SealedConfig); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(cmd), &u.Command); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Pin returns the pin of one of the tenant's tools.
func (q *Queries) Pin(ctx context.Context, tenant, tool string) (domain.ToolPin, bool, error) {
	var p domain.ToolPin
	var status string
	err := q.row(ctx, "SELECT hash, status, new_hash FROM proxy_pins WHERE tenant_id = ? AND tool = ?", tenant, tool).Scan(&p.Hash, &status, &p.NewHash)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	p.Quarantined = status == "quarantined"
	return p, err == nil, err
}

// Policies returns the tenant's proxy policies in the order they were added.
func (q *Queries) Policies(ctx context.Context, tenant string) ([]domain.Policy, error) {
	rows, err := q.db.QueryRead(ctx, "SELECT policy FROM proxy_policies WHERE tenant_id = ? ORDER BY created_at, policy_id", tenant)
	if err != nil {
		return nil, fmt.Errorf("projections: list policies: %w", err)
	}
	defer rows.Close()
	var out []domain.Policy
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var p domain.Policy
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
