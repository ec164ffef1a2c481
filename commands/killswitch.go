package commands

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// killSwitches caches each tenant's folded kill-switch stream, refreshed
// from the ledger. A refresh reads only the events past the cached
// version, so it is one indexed read that usually returns nothing.
//
// The check that matters is made after a decision is durable (fresh):
// appends are serialised and positions commit-ordered, so a read made
// after the decision committed sees every kill committed before it, on any
// replica. A decision that lost that race is undone and refused. The check
// made before deciding may use the cache as it is: it only saves work.
//
// A store that knows which positions it appended itself
// (events.StreamWatcher) lets a check made after a decision skip the read
// when no kill-switch event can lie between the cached state and the
// decision: no other process appended in between, and this one appended
// no kill-switch event.
type killSwitches struct {
	store events.Store
	watch events.StreamWatcher // nil: every fresh check reads
	mu    sync.Mutex
	by    map[string]*killEntry
}

// Kill-switch freshness, the before argument of state and alive: the
// cached state will do (cachedKills), read the ledger now (readKills), or
// (a position) reflect every kill committed before that append of this
// process.
const (
	cachedKills int64 = 0
	readKills   int64 = -1
)

func (k *killSwitches) init(store events.Store) {
	k.store = store
	if w, ok := store.(events.StreamWatcher); ok {
		w.WatchStream(domain.KillSwitchStream)
		k.watch = w
	}
}

// killEntry is one tenant's cached kill-switch state. Fresh reads are
// shared: a caller joins the next read to start (next), which begins only
// after every caller that joined it arrived, so it sees every kill
// committed before any of them asked; one read in flight at a time
// (running) serves all who queued meanwhile, instead of one read each
// under a lock.
type killEntry struct {
	mu      sync.Mutex
	kills   domain.Kills
	loaded  bool
	readAt  int64 // the ledger position the last read reflects (watch)
	running bool
	next    *killRead
}

// killRead is one read of a tenant's kill-switch stream and its waiters.
type killRead struct {
	done chan struct{}
	err  error
}

// killReadTimeout bounds one shared read of a kill-switch stream.
const killReadTimeout = 10 * time.Second

func (k *killSwitches) entry(tenant string) *killEntry {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.by == nil {
		k.by = map[string]*killEntry{}
	}
	e, ok := k.by[tenant]
	if !ok {
		e = &killEntry{}
		k.by[tenant] = e
	}
	return e
}

// state returns the tenant's kills, first reading what the ledger holds
// past the cache (a read that starts after this call) unless before is
// cachedKills, or is a position the watching store says no kill-switch
// event can precede unseen.
func (k *killSwitches) state(ctx context.Context, tenant string, before int64) (domain.Kills, error) {
	e := k.entry(tenant)
	e.mu.Lock()
	fresh := before != cachedKills
	if fresh && before > 0 && e.loaded && k.watch != nil && k.watch.Quiet(domain.KillSwitchStream, e.readAt, before) {
		fresh = false
	}
	if fresh || !e.loaded {
		if e.next == nil {
			e.next = &killRead{done: make(chan struct{})}
		}
		r := e.next
		if !e.running {
			e.running = true
			go k.read(e, tenant)
		}
		e.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return domain.Kills{}, ctx.Err()
		}
		if r.err != nil {
			return domain.Kills{}, r.err
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	out := domain.Kills{Version: e.kills.Version, Killed: make(map[string]domain.AgentKill, len(e.kills.Killed))}
	for a, kill := range e.kills.Killed {
		out.Killed[a] = kill
	}
	return out, nil
}

// read runs the entry's queued reads one after another until none is
// queued: each takes the waiters queued so far, reads the stream past the
// cached version and folds it in.
func (k *killSwitches) read(e *killEntry, tenant string) {
	for {
		e.mu.Lock()
		r := e.next
		if r == nil {
			e.running = false
			e.mu.Unlock()
			return
		}
		e.next = nil
		after := e.kills.Version
		e.mu.Unlock()
		var at int64
		if k.watch != nil {
			at = k.watch.LastAppended() // the read below sees everything up to it
		}
		ctx, cancel := context.WithTimeout(context.Background(), killReadTimeout)
		evs, err := k.store.ReadStream(ctx, tenant, domain.KillSwitchStream, after)
		cancel()
		e.mu.Lock()
		for i := range evs {
			if err != nil || evs[i].Version <= e.kills.Version {
				continue
			}
			err = e.kills.Apply(evs[i].Type, evs[i].Payload, evs[i].Version)
		}
		if err == nil {
			e.loaded = true
			e.readAt = max(e.readAt, at)
		}
		r.err = err
		e.mu.Unlock()
		close(r.done)
	}
}

// alive returns a CodeAgentKilled error when a kill in force covers the
// tenant's agent: its own, its tenant's or the operator's install-wide
// kill. before says how fresh the state must be: cachedKills, readKills,
// or the position of the caller's append, to reflect every kill committed
// before it (see killSwitches).
//
// A cached state that says stopped is confirmed from the ledger before it
// refuses, so that an unkill on any replica counts at once.
func (s *Service) alive(ctx context.Context, tenant, agentID string, before int64) error {
	for _, t := range []string{domain.OperatorTenant, tenant} {
		kills, err := s.kills.state(ctx, t, before)
		if err != nil {
			return err
		}
		_, stopped := kills.Stops(agentID)
		if stopped && before != readKills {
			if kills, err = s.kills.state(ctx, t, readKills); err != nil {
				return err
			}
		}
		if kill, stopped := kills.Stops(agentID); stopped {
			if t == domain.OperatorTenant {
				kill.AgentID = ""
			}
			return domain.Killed(agentID, kill)
		}
	}
	return nil
}

// Alive reports, from the ledger, whether a kill switch stops the agent
// (nil when none does).
func (s *Service) Alive(ctx context.Context, tenant, agentID string) error {
	return s.alive(ctx, tenant, agentID, readKills)
}

// KillResult is the outcome of Kill and Unkill.
type KillResult struct {
	// Changed is false when the kill was already in force (or, for
	// Unkill, was not).
	Changed bool
	// Revoked are the sessions the kill revoked.
	Revoked []string
}

// Kill stops agentID ("" for the whole tenant; in domain.OperatorTenant
// the whole install) until Unkill: one agent.killed event, then the
// revocation of every live session it covers. From the kill's position on,
// nothing it covers is authorised or forwarded, on any replica.
func (s *Service) Kill(ctx context.Context, a Actor, agentID, reason string) (KillResult, error) {
	var res KillResult
	ids := a.eventIDs(domain.KillSwitchStream)
	for attempt := 0; ; attempt++ {
		kills, err := s.kills.state(ctx, a.Tenant, readKills)
		if err != nil {
			return res, err
		}
		kill, changed, err := kills.Kill(agentID, reason, by(a))
		if err != nil || !changed {
			break
		}
		_, err = s.appendDurable(ctx, events.Proposed{ID: ids(0), Tenant: a.Tenant, Stream: domain.KillSwitchStream,
			ExpectedVersion: kills.Version, Type: domain.TypeAgentKilled, Payload: encode(kill), Meta: a.meta("", agentID)})
		if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		}
		if err != nil {
			return res, err
		}
		res.Changed = true
		if _, err := s.kills.state(ctx, a.Tenant, readKills); err != nil { // this replica's checks see it at once
			return res, err
		}
		break
	}
	if a.Tenant == domain.OperatorTenant || s.reads == nil {
		return res, nil
	}
	// Revoke what the kill covers (also when it was in force already:
	// a session that slipped in while it was being pulled ends here).
	live, err := s.reads.LiveSessions(ctx, a.Tenant, agentID, s.now())
	if err != nil {
		return res, err
	}
	for _, id := range live {
		if err := s.revokeSession(ctx, a, id, "agent_killed"); err != nil {
			return res, err
		}
		res.Revoked = append(res.Revoked, id)
	}
	return res, nil
}

// Unkill lifts the kill of agentID ("" for the whole tenant). The sessions
// the kill revoked stay revoked; new ones may be created.
func (s *Service) Unkill(ctx context.Context, a Actor, agentID string) (KillResult, error) {
	ids := a.eventIDs(domain.KillSwitchStream)
	for attempt := 0; ; attempt++ {
		kills, err := s.kills.state(ctx, a.Tenant, readKills)
		if err != nil {
			return KillResult{}, err
		}
		lift, changed, err := kills.Unkill(agentID, by(a))
		if err != nil || !changed {
			return KillResult{}, err
		}
		_, err = s.append(ctx, events.Proposed{ID: ids(0), Tenant: a.Tenant, Stream: domain.KillSwitchStream,
			ExpectedVersion: kills.Version, Type: domain.TypeAgentUnkilled, Payload: encode(lift), Meta: a.meta("", agentID)})
		if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		}
		if err != nil {
			return KillResult{}, err
		}
		_, err = s.kills.state(ctx, a.Tenant, readKills)
		return KillResult{Changed: true}, err
	}
}

// Kills returns the kills in force in the tenant, from the ledger.
func (s *Service) Kills(ctx context.Context, tenant string) (domain.Kills, error) {
	return s.kills.state(ctx, tenant, readKills)
}

// by names who pulls or lifts a kill: the key's prefix, or the operator.
func by(a Actor) string {
	if a.KeyPrefix == "" {
		return "operator"
	}
	return a.KeyPrefix
}
