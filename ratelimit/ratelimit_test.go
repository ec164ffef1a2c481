package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/ratelimit"
	"github.com/haldir-dev/haldir/storage/limits"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

func limiters(t *testing.T) map[string]ratelimit.Limiter {
	out := map[string]ratelimit.Limiter{"memory": ratelimit.NewMemory()}
	for _, b := range sqltest.Backends() {
		db, _ := b.Open(t)
		out[b.Name] = limits.New(db)
	}
	return out
}

// TestLimitHoldsUnderConcurrency: 64 concurrent callers against a limit of
// 10 in one window; exactly 10 are allowed, on every implementation.
func TestLimitHoldsUnderConcurrency(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for i := 0; i < 64; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := l.Allow(context.Background(), "agent:a", 10, time.Minute, now)
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						allowed.Add(1)
					}
				}()
			}
			wg.Wait()
			if allowed.Load() != 10 {
				t.Fatalf("%d allowed, want exactly 10", allowed.Load())
			}
			// Another key has its own window; the next window starts afresh.
			if r, _ := l.Allow(context.Background(), "agent:b", 10, time.Minute, now); !r.Allowed || r.Remaining != 9 {
				t.Errorf("another key: %+v", r)
			}
			r, _ := l.Allow(context.Background(), "agent:a", 10, time.Minute, now.Add(time.Minute))
			if !r.Allowed || !r.Reset.Equal(now.Truncate(time.Minute).Add(2*time.Minute)) {
				t.Errorf("next window: %+v", r)
			}
			if r, _ := l.Allow(context.Background(), "agent:a", 0, time.Minute, now); !r.Allowed {
				t.Error("a limit of 0 must allow everything")
			}
		})
	}
}
