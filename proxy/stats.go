package proxy

import (
	"slices"
	"time"
)

// latencyWindowSize is how many recent call latencies an upstream keeps for
// its percentiles.
const latencyWindowSize = 1024

// latencyWindow keeps the latencies of the most recent calls in a ring.
// It is not safe for concurrent use; its owner locks.
type latencyWindow struct {
	ring [latencyWindowSize]time.Duration
	n    int // samples held, ≤ latencyWindowSize
	next int // where the next sample goes
}

// add records one latency.
func (w *latencyWindow) add(d time.Duration) {
	w.ring[w.next] = d
	w.next = (w.next + 1) % latencyWindowSize
	if w.n < latencyWindowSize {
		w.n++
	}
}

// percentiles returns the nearest-rank p50 and p99 of the window, or zeros
// when it is empty.
func (w *latencyWindow) percentiles() (p50, p99 time.Duration) {
	if w.n == 0 {
		return 0, 0
	}
	s := slices.Clone(w.ring[:w.n])
	slices.Sort(s)
	return nearestRank(s, 50), nearestRank(s, 99)
}

// nearestRank returns the p-th percentile of sorted (non-empty) by the
// nearest-rank method: the smallest value with at least p% of the samples
// at or below it.
func nearestRank(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}
