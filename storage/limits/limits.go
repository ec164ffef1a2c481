// Package limits keeps rate-limit windows in the database, so that every
// replica on one store counts against the same window.
package limits

import (
	"context"
	"fmt"
	"time"

	"github.com/haldir-dev/haldir/ratelimit"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// SQL is a ratelimit.Limiter whose counters live in the database, so every replica
// shares them.
type SQL struct {
	db *sqldb.DB
}

// New returns a database-backed Limiter.
func New(db *sqldb.DB) *SQL { return &SQL{db: db} }

// countSQLite adds one to a window and returns its count.
const countSQLite = `INSERT INTO rate_windows (key, window_start, count) VALUES (?, ?, 1)
ON CONFLICT (key, window_start) DO UPDATE SET count = rate_windows.count + 1 RETURNING count`

// countPostgres is countSQLite committed without waiting for the WAL
// flush (synchronous_commit off, for this statement's transaction only):
// the count is visible to every replica at once, as with any commit, and
// a database crash can lose only the last increments before it, which
// lets a few more calls through in that one window. It saves a disk flush
// on the path of every rate-limited request.
const countPostgres = `WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO rate_windows (key, window_start, count) SELECT ?, ?, 1 FROM relaxed
ON CONFLICT (key, window_start) DO UPDATE SET count = rate_windows.count + 1 RETURNING count`

// Allow implements ratelimit.Limiter.
func (s *SQL) Allow(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (ratelimit.Result, error) {
	if limit <= 0 {
		return ratelimit.Result{Allowed: true}, nil
	}
	start := ratelimit.WindowStart(now, window)
	query := countSQLite
	if s.db.Dialect == sqldb.Postgres {
		query = countPostgres
	}
	var count int64
	err := s.db.Write.QueryRowContext(ctx, s.db.Rebind(query), key, start.UnixNano()).Scan(&count)
	if err != nil {
		return ratelimit.Result{}, fmt.Errorf("ratelimit: count: %w", err)
	}
	return ratelimit.Counted(count, limit, start, window), nil
}

// Expire deletes windows that ended before cutoff.
func (s *SQL) Expire(ctx context.Context, cutoff time.Time) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM rate_windows WHERE window_start < ?"), cutoff.UnixNano())
	return err
}
