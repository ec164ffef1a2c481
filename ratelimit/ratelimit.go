// Package ratelimit counts requests in fixed windows. It declares the
// Limiter its users need and implements it in memory for one process;
// storage/limits implements it in the database, so every replica sees the
// same count.
package ratelimit

import (
	"context"
	"sync"
	"time"
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

// WindowStart returns the start of the fixed window holding now.
func WindowStart(now time.Time, window time.Duration) time.Time {
	return now.Truncate(window)
}

// Counted returns the Result for the count-th event in the window that
// starts at start.
func Counted(count int64, limit int, start time.Time, window time.Duration) Result {
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
	start := WindowStart(now, window)
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
	return Counted(w.count, limit, start, window), nil
}
