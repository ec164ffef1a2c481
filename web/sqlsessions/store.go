// Package sqlsessions keeps the dashboard's sign-ins (web.Session) in the
// dashboard_sessions table, on SQLite or Postgres, so that every replica on
// one database knows every session and every revocation at once.
package sqlsessions

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/web"
)

// Store implements web.SessionStore on a database migrated to version 10.
type Store struct{ db *sqldb.DB }

// New returns a Store on db.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// Create stores a new session.
func (s *Store) Create(ctx context.Context, r web.Session) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`INSERT INTO dashboard_sessions
(token_hash, tenant_id, key_prefix, key_name, sealed, wrapped, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		r.TokenHash, r.Tenant, r.KeyPrefix, r.KeyName, r.Sealed, r.Wrapped, r.CreatedAt.UnixNano(), r.ExpiresAt.UnixNano())
	if err != nil {
		return fmt.Errorf("sqlsessions: create: %w", err)
	}
	return nil
}

// Get returns the session whose token hashes to tokenHash; found is false
// when there is none, or it was revoked, or it expired by now.
func (s *Store) Get(ctx context.Context, tokenHash string, now time.Time) (web.Session, bool, error) {
	r := web.Session{TokenHash: tokenHash}
	var created, expires int64
	var revoked sql.NullInt64
	// The write pool: a revocation made a moment ago on another replica
	// must be seen, and SQLite's read pool may lag a checkpoint.
	err := s.db.Write.QueryRowContext(ctx, s.db.Rebind(`SELECT tenant_id, key_prefix, key_name, sealed, wrapped, created_at, expires_at, revoked_at
FROM dashboard_sessions WHERE token_hash = ?`), tokenHash).Scan(&r.Tenant, &r.KeyPrefix, &r.KeyName, &r.Sealed, &r.Wrapped, &created, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("sqlsessions: get: %w", err)
	}
	r.CreatedAt, r.ExpiresAt = time.Unix(0, created), time.Unix(0, expires)
	if revoked.Valid || !now.Before(r.ExpiresAt) {
		return r, false, nil
	}
	return r, true, nil
}

// Revoke ends one session; revoking it again is harmless.
func (s *Store) Revoke(ctx context.Context, tokenHash string, now time.Time) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`UPDATE dashboard_sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL`),
		now.UnixNano(), tokenHash)
	if err != nil {
		return fmt.Errorf("sqlsessions: revoke: %w", err)
	}
	return nil
}

// RevokeKey ends every session signed in with tenant's key prefix.
func (s *Store) RevokeKey(ctx context.Context, tenant, prefix string, now time.Time) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`UPDATE dashboard_sessions SET revoked_at = ? WHERE tenant_id = ? AND key_prefix = ? AND revoked_at IS NULL`),
		now.UnixNano(), tenant, prefix)
	if err != nil {
		return fmt.Errorf("sqlsessions: revoke key: %w", err)
	}
	return nil
}

// Sweep deletes sessions that expired before cutoff, with their sealed
// keys.
func (s *Store) Sweep(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`DELETE FROM dashboard_sessions WHERE expires_at < ?`), cutoff.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sqlsessions: sweep: %w", err)
	}
	return res.RowsAffected()
}
