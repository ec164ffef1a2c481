package webhooks_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/webhooks"
)

func TestBackoff(t *testing.T) {
	b := webhooks.Backoff{Base: time.Second, Max: time.Hour, MaxAttempts: 20}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		lo, hi     time.Duration
		ok         bool
	}{
		{"first retry", 1, 0, 0, 2 * time.Second, true},
		{"fifth retry", 5, 0, 0, 32 * time.Second, true},
		{"eleventh retry", 11, 0, 0, 2048 * time.Second, true},
		{"capped", 12, 0, 0, time.Hour, true},
		{"far past the cap", 19, 0, 0, time.Hour, true},
		{"retry-after is a floor", 1, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, true},
		{"retry-after under the jitter", 11, time.Second, time.Second, 2048 * time.Second, true},
		{"retry-after capped at a day", 2, 72 * time.Hour, 24 * time.Hour, 24 * time.Hour, true},
		{"gives up", 20, 0, 0, 0, false},
		{"gives up despite retry-after", 21, time.Minute, 0, 0, false},
		{"nonsense attempt", 0, 0, 0, 2 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				if d, ok := b.Next(tc.attempt, tc.retryAfter, rnd); ok || d != 0 {
					t.Fatalf("Next(%d) = %v, %v; want 0, false", tc.attempt, d, ok)
				}
				return
			}
			seenLow, seenHigh := false, false
			for range 2000 {
				d, ok := b.Next(tc.attempt, tc.retryAfter, rnd)
				if ok != tc.ok {
					t.Fatalf("Next(%d) ok = %v, want %v", tc.attempt, ok, tc.ok)
				}
				if d < tc.lo || d > tc.hi {
					t.Fatalf("Next(%d, %v) = %v, want within [%v, %v]", tc.attempt, tc.retryAfter, d, tc.lo, tc.hi)
				}
				span := tc.hi - tc.lo
				seenLow = seenLow || d <= tc.lo+span/4
				seenHigh = seenHigh || d >= tc.hi-span/4
			}
			if !seenLow || !seenHigh {
				t.Errorf("2000 draws never came near one end of [%v, %v]: not full jitter", tc.lo, tc.hi)
			}
		})
	}
}

func TestNextAttemptDefaults(t *testing.T) {
	attempts := 1
	var total time.Duration
	for {
		d, ok := webhooks.NextAttempt(attempts, 0, nil)
		if !ok {
			break
		}
		if d < 0 || d > webhooks.DefaultMaxDelay {
			t.Fatalf("NextAttempt(%d) = %v", attempts, d)
		}
		total += d
		attempts++
	}
	if attempts != webhooks.DefaultMaxAttempts {
		t.Errorf("gave up after %d attempts, want %d", attempts, webhooks.DefaultMaxAttempts)
	}
	if d, ok := webhooks.NextAttempt(1<<20, 0, nil); ok || d != 0 {
		t.Errorf("NextAttempt(huge) = %v, %v", d, ok)
	}
	if d, _ := (webhooks.Backoff{MaxAttempts: 1000}).Next(200, 0, nil); d < 0 || d > webhooks.DefaultMaxDelay {
		t.Errorf("Next(200) = %v: overflow", d)
	}
}
