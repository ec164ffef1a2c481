package projections

import (
	"strings"
	"sync"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// SessionCache is an in-memory read model of sessions, so that reading
// one on the request path costs no query. It holds the sessions whose
// creation the core group has passed since the cache was made, folded from
// their events as the group passes them (feed Observe from
// Group.Observe): it is exactly as fresh as the group's position, which is
// what WaitFor promises. A session it does not hold (created before it was
// made, or evicted) is read from the table.
//
// Use it only where this process's projector sees every event before any
// read that must reflect it (SQLite, one process): on Postgres another
// replica's projector may commit a revocation to the shared table before
// this replica's group passes it.
type SessionCache struct {
	max int
	mu  sync.RWMutex
	m   map[sessionKey]domain.Session
}

type sessionKey struct{ tenant, id string }

// NewSessionCache returns a cache of at most max sessions (default
// 100,000).
func NewSessionCache(max int) *SessionCache {
	if max <= 0 {
		max = 100_000
	}
	return &SessionCache{max: max, m: make(map[sessionKey]domain.Session)}
}

// Observe folds e into the cache if it is an event of a session stream.
func (c *SessionCache) Observe(e *events.Event) {
	id, ok := strings.CutPrefix(e.Stream, domain.SessionStream(""))
	if !ok {
		return
	}
	k := sessionKey{e.Tenant, id}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, held := c.m[k]
	if !held {
		if e.Type != domain.TypeSessionCreated {
			return
		}
		if len(c.m) >= c.max {
			c.evict()
		}
	}
	if err := s.Apply(e.Type, e.Payload, e.RecordedAt, e.Version); err != nil {
		delete(c.m, k) // the table answers for it
		return
	}
	c.m[k] = s
}

// evict drops an arbitrary tenth of the entries; mu is held.
func (c *SessionCache) evict() {
	n := max(c.max/10, 1)
	for k := range c.m {
		if n == 0 {
			return
		}
		delete(c.m, k)
		n--
	}
}

// Get returns the cached session, with its own copy of the scopes.
func (c *SessionCache) Get(tenant, id string) (domain.Session, bool) {
	c.mu.RLock()
	s, ok := c.m[sessionKey{tenant, id}]
	c.mu.RUnlock()
	s.Scopes = append([]string(nil), s.Scopes...)
	return s, ok
}
