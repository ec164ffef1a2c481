package api

import (
	"net/http"
	"time"

	"github.com/haldir-dev/haldir/domain"
)

func (s *Server) createSession(c *call) (int, any, error) {
	req := domain.NewSession{AgentID: c.obj.str("agent_id", true, domain.MaxAgentIDLen)}
	if scopes, ok := c.obj.strList("scopes", domain.MaxSessionScopes, domain.MaxSessionScopeLen); ok {
		req.Scopes = scopes
	}
	if ttl, ok := c.obj.integer("ttl", 1, int64(domain.MaxSessionTTL/time.Second)); ok {
		req.TTL = time.Duration(ttl) * time.Second
	}
	if limit, ok := c.obj.money("spend_limit", false, 0, domain.MaxPayment); ok {
		req.SpendLimit = &limit
	}
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	created, err := s.deps.Commands.CreateSession(c.ctx, c.actor, req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{
		"session_id": created.SessionID, "agent_id": created.AgentID, "scopes": created.Scopes,
		"spend_limit": created.SpendLimit, "expires_at": formatTime(created.ExpiresAt), "ttl": created.TTL,
	}, nil
}

func sessionNotFound(id string) error {
	return domain.Errorf(domain.CodeNotFound, "no session %q in this tenant", truncate(id, 64))
}

func (s *Server) getSession(c *call) (int, any, error) {
	id := c.vars("id")
	ses, ok, err := s.deps.Queries.Session(c.ctx, c.tenant, id)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		return 0, nil, sessionNotFound(id)
	}
	now := s.now()
	return http.StatusOK, sessionBody{
		SessionID: ses.ID, AgentID: ses.AgentID, Scopes: ses.Scopes,
		SpendLimit: ses.SpendLimit, Spent: ses.Spent, RemainingBudget: ses.Remaining(),
		IsValid: ses.Valid(now), CreatedAt: formatTime(ses.CreatedAt), ExpiresAt: formatTime(ses.ExpiresAt),
		RevokedAt: optionalTime(ses.RevokedAt),
	}, nil
}

// sessionBody is the body of GET /v1/sessions/{id}, the hottest read: a
// struct encodes faster than a map. Its fields are in the order
// encoding/json writes a map's keys (sorted), so the bytes are those a map
// gave.
type sessionBody struct {
	AgentID         string       `json:"agent_id"`
	CreatedAt       string       `json:"created_at"`
	ExpiresAt       string       `json:"expires_at"`
	IsValid         bool         `json:"is_valid"`
	RemainingBudget domain.Money `json:"remaining_budget"`
	RevokedAt       any          `json:"revoked_at"`
	Scopes          []string     `json:"scopes"`
	SessionID       string       `json:"session_id"`
	SpendLimit      domain.Money `json:"spend_limit"`
	Spent           domain.Money `json:"spent"`
}

func (s *Server) revokeSession(c *call) (int, any, error) {
	id := c.vars("id")
	if err := s.deps.Commands.RevokeSession(c.ctx, c.actor, id); err != nil {
		if domain.ErrorCode(err) == domain.CodeNotFound {
			return 0, nil, sessionNotFound(id)
		}
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"revoked": true, "session_id": id}, nil
}

func (s *Server) checkSession(c *call) (int, any, error) {
	id := c.vars("id")
	scope := c.obj.str("scope", true, domain.MaxSessionScopeLen)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	ses, ok, err := s.deps.Queries.Session(c.ctx, c.tenant, id)
	if err != nil {
		return 0, nil, err
	}
	allowed := ok && ses.Check(scope, s.now())
	return http.StatusOK, map[string]any{"allowed": allowed, "session_id": id, "scope": scope}, nil
}
