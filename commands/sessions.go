package commands

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// maxDecisionRetries bounds how often a decision is re-made after losing an
// optimistic-concurrency race. Past it the conflict is returned, which the
// API answers as a retryable 503; retryPause spreads the retries out so
// that writers on several replicas stop colliding long before.
const maxDecisionRetries = 30

// sessionRepo loads session aggregates from the ledger and caches them.
//
// update decides under the session's lock and hands the events to the
// ledger writer before releasing it, so decisions on one session queue in
// memory and many land in one group commit. Each carries the version it was
// decided on; if any fails (another replica appended, or a commit failed),
// the ones decided on top of it fail their version check too, the entry is
// marked stale, and the decision is re-made on reloaded state.
type sessionRepo struct {
	store events.Store
	max   int

	mu      sync.Mutex
	entries map[sessionKey]*sessionEntry
}

type sessionKey struct{ tenant, id string }

type sessionEntry struct {
	mu     sync.Mutex
	state  domain.Session
	loaded bool
}

func newSessionRepo(store events.Store, max int) *sessionRepo {
	return &sessionRepo{store: store, max: max, entries: make(map[sessionKey]*sessionEntry)}
}

func (r *sessionRepo) entry(k sessionKey) *sessionEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[k]
	if !ok {
		if len(r.entries) >= r.max {
			// Evict an arbitrary tenth. An evicted entry that is still in
			// use stays correct: its next decision reloads or conflicts.
			n := r.max / 10
			for k := range r.entries {
				if n <= 0 {
					break
				}
				delete(r.entries, k)
				n--
			}
		}
		e = &sessionEntry{}
		r.entries[k] = e
	}
	return e
}

// load folds the session's stream into a fresh state.
func (r *sessionRepo) load(ctx context.Context, k sessionKey) (domain.Session, error) {
	var s domain.Session
	evs, err := r.store.ReadStream(ctx, k.tenant, domain.SessionStream(k.id), 0)
	if err != nil {
		return s, err
	}
	for i := range evs {
		if err := s.Apply(evs[i].Type, evs[i].Payload, evs[i].RecordedAt, evs[i].Version); err != nil {
			return s, err
		}
	}
	return s, nil
}

// decision is what a decide function returns: the events to append.
type decision struct {
	proposals []proposal
	meta      events.Metadata
}

// update runs decide on the session's current state and appends what it
// returns. decide must not modify the session it is given. It returns
// errNotFound for a session that does not exist in the tenant.
func (r *sessionRepo) update(ctx context.Context, a Actor, id string, now func() time.Time,
	decide func(s domain.Session) (decision, error)) ([]events.Event, error) {
	k := sessionKey{a.Tenant, id}
	ids := a.eventIDs(domain.SessionStream(id)) // one step, however often re-decided
	for attempt := 0; ; attempt++ {
		e := r.entry(k)
		e.mu.Lock()
		if !e.loaded {
			s, err := r.load(ctx, k)
			if err != nil {
				e.mu.Unlock()
				return nil, err
			}
			e.state, e.loaded = s, true
		}
		if e.state.Version == 0 {
			e.loaded = false // it may be created later
			e.mu.Unlock()
			return nil, errNotFound
		}
		state := e.state
		state.Scopes = append([]string(nil), e.state.Scopes...)
		d, err := decide(state)
		if err != nil || len(d.proposals) == 0 {
			e.mu.Unlock()
			return nil, err
		}
		base := e.state.Version
		ps := make([]events.Proposed, len(d.proposals))
		t := now()
		for i, p := range d.proposals {
			payload := encode(p.payload)
			ps[i] = events.Proposed{ID: ids(i), Tenant: a.Tenant, Stream: domain.SessionStream(id),
				ExpectedVersion: base + int64(i), Type: p.typ, Payload: payload, Meta: d.meta}
			// Assume it lands; if not, the entry is reloaded below.
			e.state.Apply(p.typ, payload, t, base+int64(i)+1)
		}
		wait, err := r.store.AppendAsync(ctx, ps...)
		if err != nil {
			e.loaded = false
			e.mu.Unlock()
			return nil, err
		}
		e.mu.Unlock()

		recs, err := wait()
		if errors.Is(err, events.ErrDuplicateID) {
			recs, err = recorded(ctx, r.store, ps)
		}
		if err != nil || recs[0].Version != base+1 {
			// Failed, or a retried idempotent call returned recorded
			// events: either way the assumed state is wrong.
			e.mu.Lock()
			e.loaded = false
			e.mu.Unlock()
		}
		if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		}
		return recs, err
	}
}

var errNotFound = domain.Errorf(domain.CodeNotFound, "session not found")

// CreateSession starts a session for an agent.
func (s *Service) CreateSession(ctx context.Context, a Actor, req domain.NewSession) (domain.SessionCreated, error) {
	id := a.newID("ses")
	created, err := domain.CreateSession(id, req, s.now())
	if err != nil {
		return created, err
	}
	if err := s.alive(ctx, a.Tenant, req.AgentID, cachedKills); err != nil {
		return domain.SessionCreated{}, err
	}
	recs, err := s.appendDurable(ctx, events.Proposed{ID: a.eventID(domain.SessionStream(id)), Tenant: a.Tenant, Stream: domain.SessionStream(id),
		ExpectedVersion: 0, Type: domain.TypeSessionCreated, Payload: encode(created), Meta: a.meta(id, req.AgentID)})
	if err != nil {
		return created, err
	}
	s.acknowledge(ctx, recs)
	// A kill that committed before the session did may have missed it.
	if err := s.alive(ctx, a.Tenant, req.AgentID, recs[0].Position); err != nil {
		if rerr := s.revokeSession(ctx, a, id, "agent_killed"); rerr != nil {
			return domain.SessionCreated{}, rerr
		}
		return domain.SessionCreated{}, err
	}
	return decodeRecorded[domain.SessionCreated](recs[0])
}

// RevokeSession revokes a session and closes its open approval requests
// (see expireSessionApprovals). Revoking a revoked session succeeds without
// a new revocation event, and closes any request still open.
func (s *Service) RevokeSession(ctx context.Context, a Actor, id string) error {
	if !domain.ValidID("ses", id) {
		return errNotFound
	}
	return s.revokeSession(ctx, a, id, "")
}

// revokeSession is RevokeSession, recording why (empty: on request).
func (s *Service) revokeSession(ctx context.Context, a Actor, id, reason string) error {
	recs, err := s.sessions.update(ctx, a, id, s.now, func(ses domain.Session) (decision, error) {
		if !ses.RevokedAt.IsZero() {
			return decision{}, nil
		}
		return decision{proposals: []proposal{{domain.TypeSessionRevoked, domain.SessionRevoked{SessionID: id, Reason: reason}}}, meta: a.meta(id, ses.AgentID)}, nil
	})
	if err != nil {
		return err
	}
	s.settle(ctx, recs)
	if err := s.expireSessionApprovals(ctx, a, id); err != nil {
		// The revocation is durable and the requests already read as
		// expired; the sweeper records what this could not.
		s.log.Warn("closing a revoked session's approval requests failed", "session_id", id, "err", err)
	}
	return nil
}

// PaymentResult is the outcome of AuthorizePayment: exactly one of
// Authorized and Denied is set. Both are recorded in the ledger.
type PaymentResult struct {
	Authorized *domain.PaymentAuthorized
	Denied     *domain.PaymentDenied
	RecordedAt time.Time
}

// AuthorizePayment decides a payment against the session's cap. Concurrent
// authorisations never exceed the cap: each decision is appended with the
// session version it was made on.
func (s *Service) AuthorizePayment(ctx context.Context, a Actor, sessionID string, amount domain.Money, currency, description string) (PaymentResult, error) {
	if err := domain.CheckPayment(amount, currency); err != nil {
		return PaymentResult{}, err
	}
	if !domain.ValidID("ses", sessionID) {
		return PaymentResult{}, errNotFound
	}
	// Approval rules apply to payments a valid session could make; an
	// invalid session is refused below without bothering a person.
	if s.reads != nil {
		ses, found, err := s.session(ctx, a.Tenant, sessionID)
		if err != nil {
			return PaymentResult{}, err
		}
		if !found {
			return PaymentResult{}, errNotFound
		}
		if ses.Valid(s.now()) {
			args, _ := json.Marshal(map[string]string{"currency": currency, "description": description})
			call := domain.Call{SessionID: sessionID, AgentID: ses.AgentID, Tool: "payments", Action: "authorize", ArgsHash: domain.ArgsHash(args), Amount: amount}
			if err := s.gate(ctx, a, call); err != nil {
				return PaymentResult{}, err
			}
		}
	}
	return s.authorize(ctx, a, sessionID, amount, currency, description)
}

// authorize decides a payment against the session's cap, with no approval
// rules (callers gate first).
func (s *Service) authorize(ctx context.Context, a Actor, sessionID string, amount domain.Money, currency, description string) (PaymentResult, error) {
	authID := a.newID("pay")
	recs, err := s.sessions.update(ctx, a, sessionID, s.now, func(ses domain.Session) (decision, error) {
		if err := s.alive(ctx, a.Tenant, ses.AgentID, cachedKills); err != nil {
			return decision{}, err
		}
		ok, denied := ses.Authorize(authID, amount, currency, description, s.now())
		d := decision{meta: a.meta(sessionID, ses.AgentID)}
		if ok != nil {
			d.proposals = []proposal{{domain.TypePaymentAuthorized, ok}}
		} else {
			d.proposals = []proposal{{domain.TypePaymentDenied, denied}}
		}
		return d, nil
	})
	if err != nil {
		return PaymentResult{}, err
	}
	s.acknowledge(ctx, recs)
	r := PaymentResult{RecordedAt: recs[0].RecordedAt}
	switch recs[0].Type {
	case domain.TypePaymentAuthorized:
		p, err := decodeRecorded[domain.PaymentAuthorized](recs[0])
		if err != nil {
			return r, err
		}
		// A kill that committed before the authorisation did undoes it.
		if kerr := s.alive(ctx, a.Tenant, p.AgentID, recs[0].Position); kerr != nil {
			if rerr := s.ReleaseSpend(context.WithoutCancel(ctx), a, sessionID, p.AuthorizationID, p.Amount, "stopped by a kill switch"); rerr != nil {
				return PaymentResult{}, rerr
			}
			return PaymentResult{}, kerr
		}
		r.Authorized = &p
		return r, nil
	default:
		p, err := decodeRecorded[domain.PaymentDenied](recs[0])
		r.Denied = &p
		return r, err
	}
}

// LoggedAction is the outcome of LogAction.
type LoggedAction struct {
	EntryID string
	Entry   domain.AuditLogged
}

// LogAction appends an action the agent reports to the audit trail. Its
// cost counts toward the session's spend.
func (s *Service) LogAction(ctx context.Context, a Actor, sessionID string, act domain.Action) (LoggedAction, error) {
	if err := domain.CheckCost("cost_usd", act.Cost); err != nil {
		return LoggedAction{}, err
	}
	if !domain.ValidID("ses", sessionID) {
		return LoggedAction{}, domain.Errorf(domain.CodeNotFound, "session not found").WithField("session_id")
	}
	recs, err := s.sessions.update(ctx, a, sessionID, s.now, func(ses domain.Session) (decision, error) {
		e := ses.LogAction(act, s.now())
		return decision{proposals: []proposal{{domain.TypeAuditLogged, e}}, meta: a.meta(sessionID, ses.AgentID)}, nil
	})
	if errors.Is(err, errNotFound) {
		return LoggedAction{}, domain.Errorf(domain.CodeNotFound, "session not found").WithField("session_id")
	}
	if err != nil {
		return LoggedAction{}, err
	}
	s.acknowledge(ctx, recs)
	entry, err := decodeRecorded[domain.AuditLogged](recs[0])
	return LoggedAction{EntryID: recs[0].ID, Entry: entry}, err
}
