package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections/views"
)

// keyCacheTTL bounds how long a cached key is reused. It is a backstop
// only: revocations reach the cache by invalidation (Server.Invalidate).
const keyCacheTTL = 30 * time.Second

// authenticator checks API keys against the projected key table.
//
// It caches what it read only while it is told of every revocation
// (trusted): on one process (SQLite), where revocations go through it, or
// while the replica's Postgres listener is connected and forwards the
// projections' invalidations. Otherwise every request reads the table. A
// read that raced an invalidation is not cached (gen), so a revoked key is
// refused on every replica from the moment the revocation's projection
// commits, which its DELETE waits for.
type authenticator struct {
	q   keyLookup
	now func() time.Time

	trusted atomic.Bool

	mu    sync.Mutex
	gen   uint64 // counts invalidations
	cache map[string]cachedKey
	used  map[string]time.Time // last successful use seen by this process
}

type cachedKey struct {
	key     views.KeyView
	hash    []byte
	fetched time.Time
}

func newAuthenticator(q keyLookup, now func() time.Time) *authenticator {
	return &authenticator{q: q, now: now, cache: map[string]cachedKey{}, used: map[string]time.Time{}}
}

var errBadKey = domain.Errorf(domain.CodeUnauthenticated, "invalid or revoked API key")

// check returns the key record for a presented key. The presented key's
// SHA-256 is compared with the stored hash in constant time.
func (a *authenticator) check(ctx context.Context, presented string) (*views.KeyView, error) {
	prefix := commands.KeyPrefix(presented)
	if prefix == "" || len(presented) > 256 {
		return nil, errBadKey
	}
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[prefix]
	gen := a.gen
	a.mu.Unlock()
	if !ok || now.Sub(c.fetched) > keyCacheTTL || !a.trusted.Load() {
		k, found, err := a.q.KeyByPrefix(ctx, prefix)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, errBadKey
		}
		stored, err := hex.DecodeString(k.KeyHash)
		if err != nil {
			return nil, errBadKey
		}
		c = cachedKey{key: k, hash: stored, fetched: now}
		a.mu.Lock()
		if len(a.cache) > 100_000 {
			clear(a.cache)
		}
		if a.gen == gen && a.trusted.Load() {
			a.cache[prefix] = c
		}
		a.mu.Unlock()
	}
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], c.hash) != 1 || !c.key.RevokedAt.IsZero() || c.key.TenantID == "" {
		return nil, errBadKey
	}
	a.mu.Lock()
	a.used[prefix] = now
	a.mu.Unlock()
	k := c.key
	return &k, nil
}

// lastUsed returns when this process last authenticated the key, or zero.
func (a *authenticator) lastUsed(prefix string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used[prefix]
}

// forget drops a cached key, after it was revoked (through this process
// or, told by a notification, another).
func (a *authenticator) forget(prefix string) {
	a.mu.Lock()
	a.gen++
	delete(a.cache, prefix)
	a.mu.Unlock()
}

// trust sets whether the authenticator hears of every revocation; either
// way the cache starts empty.
func (a *authenticator) trust(trusted bool) {
	a.mu.Lock()
	a.gen++
	clear(a.cache)
	a.trusted.Store(trusted)
	a.mu.Unlock()
}
