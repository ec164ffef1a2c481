package commands

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// loadApproval folds a binding's approval stream: the latest request for
// that exact call.
func (s *Service) loadApproval(ctx context.Context, tenant, binding string) (domain.Approval, error) {
	return s.loadRequest(ctx, tenant, binding, "")
}

// loadRequest folds a binding's stream up to the end of request id's
// events (id "" means the latest request). Version stays the stream's
// version, so a decision on the latest request can expect it.
func (s *Service) loadRequest(ctx context.Context, tenant, binding, id string) (domain.Approval, error) {
	var a domain.Approval
	evs, err := s.store.ReadStream(ctx, tenant, domain.ApprovalStream(binding), 0)
	if err != nil {
		return a, err
	}
	for i := range evs {
		if id != "" && evs[i].Type == domain.TypeApprovalRequested && a.Request.RequestID == id {
			a.Version = evs[len(evs)-1].Version
			return a, nil // a newer request follows: id's history is complete
		}
		if err := a.Apply(evs[i].Type, evs[i].Payload, evs[i].RecordedAt, evs[i].Version); err != nil {
			return a, err
		}
	}
	return a, nil
}

// Approvals and the sessions they belong to.
//
// A request covers one call on one session, so it lives no longer than
// that session. This is kept on the ledger, with every decision still an
// event appended with the version of the approval stream it was made on:
//
//   - a request on a revoked or expired session is refused (403
//     session_invalid) and never appended;
//   - reading, deciding and expiring a request load its session's record
//     (withSession), and domain.Approval.StatusAt then reports a pending
//     request or an unused approval of an invalid session as expired, so
//     a decision on one is a 409, whether or not an event says so yet.
//     That covers expiry by TTL, which has no event, and any revocation a
//     step below has not closed;
//   - revoking a session appends approval.expired to each of its open
//     requests (expireSessionApprovals), each expecting the version its
//     status was read at, so of a racing decision and the expiry exactly
//     one lands; the expiry sweeper records the expiry of requests whose
//     session ran out of time (ExpireApproval).
//
// Nothing here is held in one process's memory: every replica derives the
// same status from the same records.

// withSession sets a's session from the session read model, so that its
// status accounts for the session's validity.
func (s *Service) withSession(ctx context.Context, tenant string, a *domain.Approval) error {
	if s.reads == nil || a.Version == 0 {
		return nil
	}
	ses, found, err := s.session(ctx, tenant, a.Request.SessionID)
	if err != nil {
		return err
	}
	if found {
		a.Session = &ses
	}
	return nil
}

// sessionInvalid refuses a request for a call on a session that cannot
// make it.
func sessionInvalid(ses domain.Session) error {
	reason := "the session has expired"
	if !ses.RevokedAt.IsZero() {
		reason = "the session has been revoked"
	}
	return domain.Errorf(domain.CodeSessionInvalid, "%s: a call on it can never run, so there is nothing to approve", reason).WithField("session_id")
}

// AddApprovalRule records a rule that makes matching calls wait for a
// person.
func (s *Service) AddApprovalRule(ctx context.Context, a Actor, r domain.ApprovalRule) (domain.ApprovalRule, error) {
	if err := domain.ValidateRule(r); err != nil {
		return r, err
	}
	r.RuleID = a.newID("rul")
	recs, err := s.append(ctx, events.Proposed{ID: a.eventID(domain.ApprovalRulesStream), Tenant: a.Tenant, Stream: domain.ApprovalRulesStream,
		ExpectedVersion: events.AnyVersion, Type: domain.TypeApprovalRuleAdded, Payload: encode(r), Meta: a.meta("", "")})
	if err != nil {
		return r, err
	}
	return decodeRecorded[domain.ApprovalRule](recs[0])
}

// ApprovalRequest is what an agent asks a person to approve.
type ApprovalRequest struct {
	Call    domain.Call
	Reason  string
	Details json.RawMessage
	TTL     time.Duration
	RuleID  string
}

// opening names what a step that may open an approval request creates:
// its event and the request. It is made once per step, so a decision
// re-made after a version conflict keeps the ids (see ids.go).
type opening struct{ eventID, requestID string }

func (a Actor) opening(binding string) opening {
	return opening{eventID: a.eventID(domain.ApprovalStream(binding)), requestID: a.newID("apr")}
}

// requestEvent builds the event that opens a request for req.
func (s *Service) requestEvent(a Actor, req ApprovalRequest, binding string, expected int64, o opening) (events.Proposed, error) {
	ttl := req.TTL
	if ttl == 0 {
		ttl = domain.DefaultApprovalTTL
	}
	if ttl < time.Second || ttl > domain.MaxApprovalTTL {
		return events.Proposed{}, domain.Invalid("ttl", "ttl must be between 1 second and 7 days")
	}
	c := req.Call
	e := domain.ApprovalRequested{RequestID: o.requestID, Binding: binding, SessionID: c.SessionID, AgentID: c.AgentID, Tool: c.Tool,
		Action: c.Action, ArgsHash: c.ArgsHash, Amount: c.Amount, Reason: req.Reason, Details: req.Details, RuleID: req.RuleID,
		ExpiresAt: s.now().Add(ttl).Truncate(time.Millisecond), TTL: int64(ttl / time.Second)}
	return events.Proposed{ID: o.eventID, Tenant: a.Tenant, Stream: domain.ApprovalStream(binding), ExpectedVersion: expected,
		Type: domain.TypeApprovalRequested, Payload: encode(e), Meta: a.meta(c.SessionID, c.AgentID)}, nil
}

// RequestApproval opens a request for the exact call described, or returns
// the pending request already open for it.
func (s *Service) RequestApproval(ctx context.Context, a Actor, req ApprovalRequest) (domain.Approval, error) {
	ses, found, err := s.session(ctx, a.Tenant, req.Call.SessionID)
	if err != nil {
		return domain.Approval{}, err
	}
	if !found {
		return domain.Approval{}, domain.Errorf(domain.CodeNotFound, "no such session in this tenant").WithField("session_id")
	}
	if !ses.Valid(s.now()) {
		return domain.Approval{}, sessionInvalid(ses)
	}
	req.Call.AgentID = ses.AgentID
	binding := req.Call.Binding(a.Tenant)
	open := a.opening(binding)
	for attempt := 0; ; attempt++ {
		cur, err := s.loadApproval(ctx, a.Tenant, binding)
		if err != nil {
			return cur, err
		}
		cur.Session = &ses
		if cur.Version > 0 && cur.StatusAt(s.now()) == domain.ApprovalPending {
			return cur, nil
		}
		p, err := s.requestEvent(a, req, binding, cur.Version, open)
		if err != nil {
			return cur, err
		}
		if _, err := s.append(ctx, p); errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		} else if err != nil {
			return cur, err
		}
		next, err := s.loadApproval(ctx, a.Tenant, binding)
		next.Session = &ses
		return next, err
	}
}

// Approval returns the request requestID of the tenant, its status
// accounting for its session's validity.
func (s *Service) Approval(ctx context.Context, tenant, requestID string) (domain.Approval, error) {
	binding, found, err := s.reads.ApprovalBinding(ctx, tenant, requestID)
	if err != nil {
		return domain.Approval{}, err
	}
	if !found {
		return domain.Approval{}, domain.Errorf(domain.CodeNotFound, "no approval request %q in this tenant", truncateID(requestID))
	}
	ap, err := s.loadRequest(ctx, tenant, binding, requestID)
	if err != nil {
		return ap, err
	}
	return ap, s.withSession(ctx, tenant, &ap)
}

func truncateID(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// DecideApproval approves or denies a pending request. The decision is
// appended expecting the version it was made on, so of two racing
// approvers exactly one wins; the other, and any decision after expiry
// (its own, or its session's), gets a conflict.
func (s *Service) DecideApproval(ctx context.Context, a Actor, requestID string, approve bool, decidedBy, note string) (domain.Approval, error) {
	binding, found, err := s.reads.ApprovalBinding(ctx, a.Tenant, requestID)
	if err != nil {
		return domain.Approval{}, err
	}
	if !found {
		return domain.Approval{}, domain.Errorf(domain.CodeNotFound, "no approval request %q in this tenant", truncateID(requestID))
	}
	cur, err := s.loadApproval(ctx, a.Tenant, binding)
	if err != nil {
		return cur, err
	}
	if err := s.withSession(ctx, a.Tenant, &cur); err != nil {
		return cur, err
	}
	now := s.now()
	switch {
	case cur.Request.RequestID != requestID:
		return cur, domain.Errorf(domain.CodeConflict, "this request is closed: a newer request for the same call replaced it")
	case cur.StatusAt(now) == domain.ApprovalExpired:
		if cur.Status == domain.ApprovalPending {
			s.expire(ctx, a, binding, cur)
		}
		if cur.Open() && cur.Session != nil && !cur.Session.Valid(now) {
			return cur, domain.Errorf(domain.CodeConflict, "this request expired with its session, which is revoked or expired; the call it covers can never run")
		}
		return cur, domain.Errorf(domain.CodeConflict, "this request expired at %s without a decision; the agent must ask again", cur.Request.ExpiresAt.Format(time.RFC3339))
	case cur.Status != domain.ApprovalPending:
		return cur, domain.Errorf(domain.CodeConflict, "this request was already %s by %s", cur.Status, cur.DecidedBy)
	}
	e := domain.ApprovalDecided{RequestID: requestID, DecidedBy: decidedBy, Note: note}
	typ := domain.TypeApprovalDenied
	if approve {
		typ = domain.TypeApprovalApproved
		e.UseBy = now.Add(time.Duration(cur.Request.TTL) * time.Second).Truncate(time.Millisecond)
	}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.ApprovalStream(binding)), Tenant: a.Tenant, Stream: domain.ApprovalStream(binding), ExpectedVersion: cur.Version,
		Type: typ, Payload: encode(e), Meta: a.meta(cur.Request.SessionID, cur.Request.AgentID)})
	if errors.Is(err, events.ErrConflict) {
		return cur, domain.Errorf(domain.CodeConflict, "another decision on this request came first")
	}
	if err != nil {
		return cur, err
	}
	return s.loadApproval(ctx, a.Tenant, binding)
}

// expiry is the event that closes cur, expecting the version it was read
// at.
func (a Actor) expiry(id, binding string, cur domain.Approval) events.Proposed {
	return events.Proposed{ID: id, Tenant: a.Tenant, Stream: domain.ApprovalStream(binding), ExpectedVersion: cur.Version,
		Type: domain.TypeApprovalExpired, Payload: encode(domain.ApprovalClosed{RequestID: cur.Request.RequestID}),
		Meta: a.meta(cur.Request.SessionID, cur.Request.AgentID)}
}

// expire records that a pending request ran out of time.
func (s *Service) expire(ctx context.Context, a Actor, binding string, cur domain.Approval) error {
	_, err := s.append(ctx, a.expiry(a.eventID(domain.ApprovalStream(binding)), binding, cur))
	if errors.Is(err, events.ErrConflict) {
		return nil // decided or expired concurrently
	}
	return err
}

// ExpireApproval records the expiry of a pending request past its TTL or
// its session's; the background sweeper calls it for every replica,
// conflicts are harmless.
func (s *Service) ExpireApproval(ctx context.Context, tenant, binding string) error {
	cur, err := s.loadApproval(ctx, tenant, binding)
	if err != nil || cur.Status != domain.ApprovalPending {
		return err
	}
	if err := s.withSession(ctx, tenant, &cur); err != nil || cur.StatusAt(s.now()) != domain.ApprovalExpired {
		return err
	}
	return s.expire(ctx, Actor{Tenant: tenant, KeyPrefix: "system", Route: "approval expiry"}, binding, cur)
}

// expireSessionApprovals closes the open requests of session sessionID,
// which has just been revoked: each pending request, or approval not yet
// used, gets approval.expired, appended with the version its status was
// read at. A request decided or used in the meantime is re-read and, if
// still open, closed; one the read model does not list yet is expired by
// its status all the same (see the notes above).
func (s *Service) expireSessionApprovals(ctx context.Context, a Actor, sessionID string) error {
	if s.reads == nil {
		return nil
	}
	bindings, err := s.reads.OpenApprovals(ctx, a.Tenant, sessionID)
	if err != nil {
		return err
	}
	var last []events.Event
	for _, binding := range bindings {
		id := a.eventID(domain.ApprovalStream(binding)) // one step per request
		for attempt := 0; ; attempt++ {
			cur, err := s.loadApproval(ctx, a.Tenant, binding)
			if err != nil {
				return err
			}
			if cur.Request.SessionID != sessionID || !cur.Open() {
				break
			}
			recs, err := s.appendDurable(ctx, a.expiry(id, binding, cur))
			if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
				continue
			}
			if err != nil {
				return err
			}
			last = recs
			break
		}
	}
	s.settle(ctx, last)
	return nil
}

// ApprovalRequiredError refuses a call that needs a person's approval; it
// carries the request to wait for.
func ApprovalRequiredError(a domain.Approval) error {
	return &domain.Error{Code: domain.CodeApprovalRequired,
		Message: "this call needs a person's approval; wait for the request to be approved, then make the same call again",
		// request_id names the approval request, as clients of the
		// reference read it; approval_request_id says so unambiguously.
		// The HTTP request id stays in the X-Request-ID header.
		Extra: map[string]any{"request_id": a.Request.RequestID, "approval_request_id": a.Request.RequestID,
			"status": domain.ApprovalPending, "expires_at": a.Request.ExpiresAt.UTC().Format(time.RFC3339)}}
}

// gate applies the tenant's approval rules to a call. A call no rule
// matches passes. A matching call passes only by consuming an approval of
// this exact call (single use); otherwise it is refused with the pending
// request, opened now if there is none. Consuming is appended with the
// version it was decided on, so an approval is used at most once.
func (s *Service) gate(ctx context.Context, a Actor, c domain.Call) error {
	rules, err := s.reads.ApprovalRules(ctx, a.Tenant)
	if err != nil {
		return err
	}
	return s.gateWith(ctx, a, c, rules)
}

// gateWith is gate with the tenant's approval rules already read.
func (s *Service) gateWith(ctx context.Context, a Actor, c domain.Call, rules []domain.ApprovalRule) error {
	rule, match := domain.FirstMatch(rules, c)
	if !match {
		return nil
	}
	binding := c.Binding(a.Tenant)
	// One step, whichever event it appends: consuming an approval, or
	// opening a request.
	open := a.opening(binding)
	for attempt := 0; ; attempt++ {
		cur, err := s.loadApproval(ctx, a.Tenant, binding)
		if err != nil {
			return err
		}
		var p events.Proposed
		switch cur.StatusAt(s.now()) {
		case domain.ApprovalPending:
			return ApprovalRequiredError(cur)
		case domain.ApprovalApproved:
			p = events.Proposed{ID: open.eventID, Tenant: a.Tenant, Stream: domain.ApprovalStream(binding), ExpectedVersion: cur.Version,
				Type: domain.TypeApprovalConsumed, Payload: encode(domain.ApprovalClosed{RequestID: cur.Request.RequestID}), Meta: a.meta(c.SessionID, c.AgentID)}
		default:
			if p, err = s.requestEvent(a, ApprovalRequest{Call: c, RuleID: rule.RuleID, Reason: "matched approval rule " + rule.RuleID + " (" + rule.Type + ")"},
				binding, cur.Version, open); err != nil {
				return err
			}
		}
		if _, err := s.append(ctx, p); errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		} else if err != nil {
			return err
		}
		if p.Type == domain.TypeApprovalConsumed {
			return nil
		}
		next, err := s.loadApproval(ctx, a.Tenant, binding)
		if err != nil {
			return err
		}
		return ApprovalRequiredError(next)
	}
}
