// Package idempotency keeps Idempotency-Key reservations in the database,
// so that every API replica sees them.
//
// A request with a key first reserves it. The reservation is taken before
// the command runs, so concurrent duplicates find it and wait instead of
// running the command again. When the command finishes, its response is
// stored and later duplicates replay it.
package idempotency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// Store keeps reservations. Retention is how long completed keys are kept.
type Store struct {
	db        *sqldb.DB
	Retention time.Duration
}

// New returns a Store on db keeping keys for 48 hours.
func New(db *sqldb.DB) *Store { return &Store{db: db, Retention: 48 * time.Hour} }

// Reserve tries to reserve key for a request with the given hash. It
// returns reserved true when the caller now owns the key; otherwise it
// returns the existing record.
func (s *Store) Reserve(ctx context.Context, tenant, key, hash string, now time.Time) (reserved bool, existing domain.Reservation, err error) {
	res, err := s.db.Write.ExecContext(ctx, s.db.Rebind(`INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, created_at)
VALUES (?, ?, ?, 0, ?) ON CONFLICT (tenant_id, key) DO NOTHING`), tenant, key, hash, now.UnixNano())
	if err != nil {
		return false, domain.Reservation{}, fmt.Errorf("idempotency: reserve: %w", sqldb.Unavailable(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, domain.Reservation{}, nil
	}
	rec, found, err := s.Get(ctx, tenant, key)
	if err != nil {
		return false, domain.Reservation{}, err
	}
	if !found { // expired between the insert and the read: try once more
		return s.Reserve(ctx, tenant, key, hash, now)
	}
	return false, rec, nil
}

// Get reads a reservation.
func (s *Store) Get(ctx context.Context, tenant, key string) (domain.Reservation, bool, error) {
	var r domain.Reservation
	var created int64
	err := s.db.Write.QueryRowContext(ctx, s.db.Rebind("SELECT request_hash, status, response, created_at FROM idempotency_keys WHERE tenant_id = ? AND key = ?"),
		tenant, key).Scan(&r.RequestHash, &r.Status, &r.Response, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("idempotency: read: %w", err)
	}
	r.CreatedAt = time.Unix(0, created).UTC()
	return r, true, nil
}

// TakeOver claims a reservation left in progress by a process that died,
// if it is still the one observed (created at createdAt).
func (s *Store) TakeOver(ctx context.Context, tenant, key string, createdAt, now time.Time) (bool, error) {
	res, err := s.db.Write.ExecContext(ctx, s.db.Rebind("UPDATE idempotency_keys SET created_at = ? WHERE tenant_id = ? AND key = ? AND status = 0 AND created_at = ?"),
		now.UnixNano(), tenant, key, createdAt.UnixNano())
	if err != nil {
		return false, fmt.Errorf("idempotency: take over: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Complete stores the response for a reserved key. A nil response with
// status Unreplayable records completion without the body.
func (s *Store) Complete(ctx context.Context, tenant, key string, status domain.ReservationStatus, response []byte, now time.Time) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("UPDATE idempotency_keys SET status = ?, response = ?, completed_at = ? WHERE tenant_id = ? AND key = ?"),
		int(status), response, now.UnixNano(), tenant, key)
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	return nil
}

// Release drops a reservation whose command failed before it changed
// anything, so the client may retry with the same key.
func (s *Store) Release(ctx context.Context, tenant, key string) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM idempotency_keys WHERE tenant_id = ? AND key = ? AND status = 0"), tenant, key)
	return err
}

// Expire deletes reservations older than the retention period.
func (s *Store) Expire(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM idempotency_keys WHERE created_at < ?"), now.Add(-s.Retention).UnixNano())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
