// Package checkpoints keeps the transparency log's signed checkpoints in the
// database (table tree_checkpoints): append-only, one note per tenant and
// tree size, shared by every replica. It implements treelog.Checkpoints.
package checkpoints

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb"
)

// Store is the SQL checkpoint store.
type Store struct{ db *sqldb.DB }

// New returns a Store on db.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// At returns the note stored for exactly size.
func (s *Store) At(ctx context.Context, tenant string, size int64) ([]byte, bool, error) {
	return s.note(ctx, "SELECT note FROM tree_checkpoints WHERE tenant_id = ? AND size = ?", tenant, size)
}

// Latest returns the note of the largest stored size.
func (s *Store) Latest(ctx context.Context, tenant string) ([]byte, bool, error) {
	return s.note(ctx, "SELECT note FROM tree_checkpoints WHERE tenant_id = ? ORDER BY size DESC LIMIT 1", tenant)
}

func (s *Store) note(ctx context.Context, query string, args ...any) ([]byte, bool, error) {
	var b []byte
	err := s.db.Read.QueryRowContext(ctx, s.db.Rebind(query), args...).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("checkpoints: read: %w", err)
	}
	return b, true, nil
}

// Add stores note for size unless a note of that size is stored already.
func (s *Store) Add(ctx context.Context, tenant string, size int64, signedAt time.Time, note []byte) error {
	if _, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`INSERT INTO tree_checkpoints (tenant_id, size, signed_at, note) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant_id, size) DO NOTHING`), tenant, size, signedAt.UnixNano(), note); err != nil {
		return fmt.Errorf("checkpoints: store: %w", err)
	}
	return nil
}

// Grown lists the tenants whose projected tree (tree_sizes) holds more
// entries than their newest checkpoint.
func (s *Store) Grown(ctx context.Context) ([]string, error) {
	rows, err := s.db.Read.QueryContext(ctx, `SELECT s.tenant_id FROM tree_sizes s
WHERE s.size > COALESCE((SELECT MAX(c.size) FROM tree_checkpoints c WHERE c.tenant_id = s.tenant_id), 0)`)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: list grown trees: %w", err)
	}
	defer rows.Close()
	var tenants []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		tenants = append(tenants, t)
	}
	return tenants, rows.Err()
}
