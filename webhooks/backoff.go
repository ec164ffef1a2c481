package webhooks

import (
	"math/rand/v2"
	"time"
)

// The default retry schedule. With full jitter the wait before retry n
// (n ≥ 1) is uniform in [0, min(DefaultMaxDelay, DefaultBaseDelay·2ⁿ)]:
// 12 attempts spread over up to about 20 hours, half that on average.
const (
	DefaultBaseDelay   = 30 * time.Second
	DefaultMaxDelay    = 6 * time.Hour
	DefaultMaxAttempts = 12
)

// Backoff is a retry schedule: exponential with full jitter, honouring
// Retry-After. Zero fields take the defaults above.
type Backoff struct {
	Base        time.Duration // the first retry waits up to 2·Base
	Max         time.Duration // no jittered wait exceeds Max
	MaxAttempts int           // attempts in all, the first one included
}

// Next returns how long to wait after the attempt-th failed attempt
// (attempt ≥ 1) before the next one, and false when attempt reaches
// MaxAttempts and the message should be given up. The wait is never
// shorter than retryAfter (capped at 24 hours). rnd supplies the jitter;
// nil means the goroutine-safe global source.
func (b Backoff) Next(attempt int, retryAfter time.Duration, rnd *rand.Rand) (time.Duration, bool) {
	base, maxDelay, maxAttempts := b.Base, b.Max, b.MaxAttempts
	if base <= 0 {
		base = DefaultBaseDelay
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	if attempt >= maxAttempts {
		return 0, false
	}
	ceiling := maxDelay
	if attempt < 1 {
		attempt = 1
	}
	if attempt < 62 && base <= maxDelay>>attempt {
		ceiling = base << attempt
	}
	var d time.Duration
	if rnd != nil {
		d = time.Duration(rnd.Int64N(int64(ceiling) + 1))
	} else {
		d = time.Duration(rand.Int64N(int64(ceiling) + 1))
	}
	return max(d, min(retryAfter, maxRetryAfter)), true
}

// NextAttempt is Backoff{}.Next: the default schedule.
func NextAttempt(attempt int, retryAfter time.Duration, rnd *rand.Rand) (time.Duration, bool) {
	return Backoff{}.Next(attempt, retryAfter, rnd)
}
