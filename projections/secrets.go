package projections

import (
	"context"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// Secrets projects the current version of every secret. It holds
// ciphertext only; the data keys are in the key store.
type Secrets struct{}

// Tables implements Handler.
func (Secrets) Tables() []string { return []string{"secrets", "secret_access_counts"} }

// Apply implements Handler.
func (Secrets) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	switch e.Type {
	case domain.TypeSecretStored:
		p, err := decode[domain.SecretStored](e)
		if err != nil {
			return err
		}
		at := e.RecordedAt.UnixNano()
		_, err = tx.Exec(ctx, `INSERT INTO {secrets} (tenant_id, name, version, scope_required, key_id, sealed, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, name) DO UPDATE SET version = excluded.version,
scope_required = excluded.scope_required, key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at`,
			e.Tenant, p.Name, int64(p.Version), p.ScopeRequired, p.KeyID, p.Sealed, at, at)
		return err
	case domain.TypeSecretDeleted:
		p, err := decode[domain.SecretDeleted](e)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM {secrets} WHERE tenant_id = ? AND name = ?", e.Tenant, p.Name)
		return err
	case domain.TypeSecretAccessed, domain.TypeSecretAccessDenied:
		acc, den := 1, 0
		if e.Type == domain.TypeSecretAccessDenied {
			acc, den = 0, 1
		}
		_, err := tx.Exec(ctx, `INSERT INTO {secret_access_counts} (tenant_id, month, accesses, denials) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant_id, month) DO UPDATE SET accesses = {secret_access_counts}.accesses + excluded.accesses, denials = {secret_access_counts}.denials + excluded.denials`,
			e.Tenant, e.RecordedAt.Format("2006-01"), acc, den)
		return err
	}
	return nil
}
