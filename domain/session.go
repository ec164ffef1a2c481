package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Session limits and defaults.
const (
	MaxAgentIDLen     = 128
	DefaultSessionTTL = time.Hour
	MaxSessionTTL     = 30 * 24 * time.Hour
)

// DefaultSessionScopes are granted when a session is created without scopes.
var DefaultSessionScopes = []string{"read", "browse"}

// Session is the aggregate that governs one agent session: its scopes, its
// lifetime and its spend. It is rebuilt by folding the events of its
// stream with Apply; decisions never change it directly.
type Session struct {
	ID         string
	AgentID    string
	Scopes     []string
	SpendLimit Money
	Spent      Money
	CreatedAt  time.Time
	ExpiresAt  time.Time
	RevokedAt  time.Time
	// Version is the stream version the state reflects.
	Version int64
}

// Valid reports whether the session is neither revoked nor expired at now.
func (s *Session) Valid(now time.Time) bool {
	return s.Version > 0 && s.RevokedAt.IsZero() && now.Before(s.ExpiresAt)
}

// Check reports whether the session is valid and grants scope.
func (s *Session) Check(scope string, now time.Time) bool {
	return s.Valid(now) && Grants(s.Scopes, scope)
}

// Remaining returns the unspent part of the cap, never below zero.
func (s *Session) Remaining() Money {
	if s.Spent >= s.SpendLimit {
		return 0
	}
	return s.SpendLimit - s.Spent
}

// NewSession is the request to create a session.
type NewSession struct {
	AgentID string
	// Scopes nil means DefaultSessionScopes.
	Scopes []string
	// TTL zero means DefaultSessionTTL.
	TTL time.Duration
	// SpendLimit, when set, is the cap; otherwise a "spend:N" scope sets
	// it; otherwise the session cannot spend.
	SpendLimit *Money
}

// CreateSession validates req and decides the SessionCreated event.
func CreateSession(id string, req NewSession, now time.Time) (SessionCreated, error) {
	if req.AgentID == "" {
		return SessionCreated{}, Invalid("agent_id", "agent_id is required")
	}
	if len(req.AgentID) > MaxAgentIDLen {
		return SessionCreated{}, Invalid("agent_id", "agent_id is longer than %d characters", MaxAgentIDLen)
	}
	scopes := req.Scopes
	if scopes == nil {
		scopes = DefaultSessionScopes
	}
	if len(scopes) > MaxSessionScopes {
		return SessionCreated{}, Invalid("scopes", "at most %d scopes", MaxSessionScopes)
	}
	var limit Money
	var fromScope *Money
	for _, s := range scopes {
		if !ValidSessionScope(s) {
			return SessionCreated{}, Invalid("scopes", "%q is not a valid scope (1–%d characters of letters, digits and :._-/*)", truncate(s, 40), MaxSessionScopeLen)
		}
		m, ok, err := SpendScope(s)
		if err != nil {
			return SessionCreated{}, err
		}
		if ok {
			if fromScope != nil {
				return SessionCreated{}, Invalid("scopes", "more than one spend:N scope")
			}
			fromScope = &m
		}
	}
	switch {
	case req.SpendLimit != nil:
		if *req.SpendLimit < 0 || *req.SpendLimit > MaxPayment {
			return SessionCreated{}, Invalid("spend_limit", "spend_limit must be between 0 and %s", MaxPayment)
		}
		limit = *req.SpendLimit
	case fromScope != nil:
		if *fromScope > MaxPayment {
			return SessionCreated{}, Invalid("scopes", "a spend:N cap must be at most %s", MaxPayment)
		}
		limit = *fromScope
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultSessionTTL
	}
	if ttl < time.Second || ttl > MaxSessionTTL {
		return SessionCreated{}, Invalid("ttl", "ttl must be between 1 second and 30 days")
	}
	return SessionCreated{
		SessionID:  id,
		AgentID:    req.AgentID,
		Scopes:     append([]string{}, scopes...),
		SpendLimit: limit,
		TTL:        int64(ttl / time.Second),
		ExpiresAt:  now.Add(ttl).UTC().Truncate(time.Millisecond),
	}, nil
}

// Payment limits.
const (
	MinPayment = Cent
	MaxPayment = 1_000_000 * Dollar
)

// CheckPayment validates a payment request, whatever transport it came
// by: the amount is between MinPayment and MaxPayment and the currency is
// USD, the currency caps are kept in. It returns an invalid_request error
// naming the field.
func CheckPayment(amount Money, currency string) error {
	if amount < MinPayment || amount > MaxPayment {
		return Invalid("amount", "amount must be between %s and %s", MinPayment, MaxPayment)
	}
	if currency != "USD" {
		return Invalid("currency", "only USD is supported; session caps are in US dollars")
	}
	return nil
}

// CheckCost validates what a governed call or a logged action declares it
// cost: between 0 and MaxPayment (sub-cent costs are allowed). field names
// the request field for the error.
func CheckCost(field string, cost Money) error {
	if cost < 0 || cost > MaxPayment {
		return Invalid(field, "%s must be between 0 and %s", field, MaxPayment)
	}
	return nil
}

// Authorize decides a payment against the session: PaymentAuthorized when
// the session is valid and the amount fits the remaining cap, otherwise
// PaymentDenied with the reason. A session without a cap cannot spend.
func (s *Session) Authorize(authID string, amount Money, currency, description string, now time.Time) (authorized *PaymentAuthorized, denied *PaymentDenied) {
	deny := func(code Code, reason string) (*PaymentAuthorized, *PaymentDenied) {
		return nil, &PaymentDenied{SessionID: s.ID, AgentID: s.AgentID, Amount: amount, Currency: currency,
			Description: description, Code: code, Reason: reason, RemainingBudget: s.Remaining()}
	}
	switch {
	case amount <= 0 || amount > MaxPayment:
		// Callers check the request (CheckPayment, CheckCost) first; the
		// aggregate still never lets an amount raise the budget.
		return deny(CodeInvalid, fmt.Sprintf("amount %s is not between 0 and %s", amount, MaxPayment))
	case !s.RevokedAt.IsZero():
		return deny(CodeSessionInvalid, "session has been revoked")
	case !now.Before(s.ExpiresAt):
		return deny(CodeSessionInvalid, "session has expired")
	case s.SpendLimit == 0:
		return deny(CodeBudgetExceeded, "session has no spend cap, so it cannot spend (grant spend:N or set spend_limit)")
	case amount > s.Remaining():
		return deny(CodeBudgetExceeded, fmt.Sprintf("amount %s exceeds the remaining budget of %s", amount, s.Remaining()))
	}
	return &PaymentAuthorized{AuthorizationID: authID, SessionID: s.ID, AgentID: s.AgentID, Amount: amount,
		Currency: currency, Description: description, RemainingBudget: s.Remaining() - amount}, nil
}

// LogAction decides the AuditLogged event for an action reported on this
// session, flagging what an auditor should look at.
func (s *Session) LogAction(a Action, now time.Time) AuditLogged {
	e := AuditLogged{SessionID: s.ID, AgentID: s.AgentID, Tool: a.Tool, Action: a.Action, Details: a.Details, CostUSD: a.Cost}
	switch {
	case !s.RevokedAt.IsZero():
		e.Flagged, e.FlagReason = true, "action logged on a revoked session"
	case !now.Before(s.ExpiresAt):
		e.Flagged, e.FlagReason = true, "action logged on an expired session"
	case a.Cost > 0 && a.Cost > s.Remaining():
		e.Flagged, e.FlagReason = true, fmt.Sprintf("cost %s exceeds the remaining budget of %s", a.Cost, s.Remaining())
	}
	return e
}

// Action is an agent action reported to the audit trail.
type Action struct {
	Tool    string
	Action  string
	Details json.RawMessage
	Cost    Money
}

// Apply folds one recorded event of the session's stream into s.
func (s *Session) Apply(typ string, payload []byte, at time.Time, version int64) error {
	switch typ {
	case TypeSessionCreated:
		var e SessionCreated
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		s.ID, s.AgentID, s.Scopes, s.SpendLimit = e.SessionID, e.AgentID, e.Scopes, e.SpendLimit
		s.CreatedAt, s.ExpiresAt = at, e.ExpiresAt
	case TypeSessionRevoked:
		if s.RevokedAt.IsZero() {
			s.RevokedAt = at
		}
	case TypePaymentAuthorized:
		var e PaymentAuthorized
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		s.Spent += e.Amount
	case TypePaymentReleased:
		var e PaymentReleased
		if err := decodeJSON(typ, payload, &e); err != nil {
			return err
		}
		s.Spent -= e.Amount
	case TypeAuditLogged:
		var e AuditLogged
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		s.Spent += e.CostUSD
	}
	s.Version = version
	return nil
}
