package api

import (
	"net/http"
	"strings"

	"github.com/haldir-dev/haldir/domain"
)

func (s *Server) authorizePayment(c *call) (int, any, error) {
	sessionID := c.obj.str("session_id", true, 64)
	amount, _ := c.obj.money("amount", true, domain.MinPayment, domain.MaxPayment)
	currency := strings.ToUpper(c.obj.str("currency", false, 3))
	description := c.obj.str("description", false, 1024)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	if currency == "" {
		currency = "USD"
	}
	if currency != "USD" {
		return 0, nil, domain.Invalid("currency", "only USD is supported; session caps are in US dollars")
	}
	res, err := s.deps.Commands.AuthorizePayment(c.ctx, c.actor, sessionID, amount, currency, description)
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeNotFound {
			return 0, nil, domain.Errorf(domain.CodeNotFound, "no session %q in this tenant", truncate(sessionID, 64)).WithField("session_id")
		}
		return 0, nil, err
	}
	if d := res.Denied; d != nil {
		return 0, map[string]any{"authorized": false, "session_id": d.SessionID, "amount": d.Amount, "remaining_budget": d.RemainingBudget},
			&domain.Error{Code: d.Code, Message: d.Reason, Reason: d.Reason}
	}
	a := res.Authorized
	return http.StatusOK, map[string]any{
		"authorized": true, "authorization_id": a.AuthorizationID, "session_id": a.SessionID, "agent_id": a.AgentID,
		"amount": a.Amount, "currency": a.Currency, "description": a.Description, "remaining_budget": a.RemainingBudget,
		"timestamp": formatTime(res.RecordedAt),
	}, nil
}
