// Package ratelimit counts requests in fixed windows, either in memory (one
// process) or in the database (every replica sees the same count).
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/sqldb"
)

// Result is the outcome of one Allow call.
type Result struct {
	Allowed   bool
	Limit     int
	Remaining int
	// Reset is when the current window ends.
	Reset time.Time
}

// RetryAfter returns how long to wait before the window resets.
func (r Result) RetryAfter(now time.Time) time.Duration {
	if d := r.Reset.Sub(now); d > 0 {
		return d
	}
	return 0
}

// Limiter counts one event for key and reports whether it fits in limit
// per window. A limit <= 0 allows everything.
type Limiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (Result, error)
}

func windowStart(now time.Time, window time.Duration) time.Time {
	return now.Truncate(window)
}

func result(count int64, limit int, start time.Time, window time.Duration) Result {
	return Result{Allowed: count <= int64(limit), Limit: limit, Remaining: max(limit-int(count), 0), Reset: start.Add(window)}
}

// Memory is a Limiter for a single process.
type Memory struct {
	mu      sync.Mutex
	windows map[string]memWindow
	sweep   time.Time
}

type memWindow struct {
	start time.Time
	count int64
}

// NewMemory returns an in-memory Limiter.
func NewMemory() *Memory { return &Memory{windows: map[string]memWindow{}} }

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, limit int, window time.Duration, now time.Time) (Result, error) {
	if limit <= 0 {
		return Result{Allowed: true}, nil
	}
	start := windowStart(now, window)
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.sweep) > time.Minute {
		for k, w := range m.windows {
			if now.Sub(w.start) > 24*time.Hour {
				delete(m.windows, k)
			}
		}
		m.sweep = now
	}
	w := m.windows[key]
	if !w.start.Equal(start) {
		w = memWindow{start: start}
	}
	w.count++
	m.windows[key] = w
	return result(w.count, limit, start, window), nil
}

// SQL is a Limiter whose counters live in the database, so every replica
// shares them.
type SQL struct {
	db *sqldb.DB
}

// NewSQL returns a database-backed Limiter.
func NewSQL(db *sqldb.DB) *SQL { return &SQL{db: db} }

// Allow implements Limiter.
func (s *SQL) Allow(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (Result, error) {
	if limit <= 0 {
		return Result{Allowed: true}, nil
	}
	start := windowStart(now, window)
	var count int64
	err := s.db.Write.QueryRowContext(ctx, s.db.Rebind(`INSERT INTO rate_windows (key, window_start, count) VALUES (?, ?, 1)
ON CONFLICT (key, window_start) DO UPDATE SET count = rate_windows.count + 1 RETURNING count`), key, start.UnixNano()).Scan(&count)
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: count: %w", err)
	}
	return result(count, limit, start, window), nil
}

// Expire deletes windows that ended before cutoff.
func (s *SQL) Expire(ctx context.Context, cutoff time.Time) error {
	_, err := s.db.Write.ExecContext(ctx, s.db.Rebind("DELETE FROM rate_windows WHERE window_start < ?"), cutoff.UnixNano())
	return err
}
