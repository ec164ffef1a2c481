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
	return http.StatusOK, map[string]any{
		"session_id": ses.ID, "agent_id": ses.AgentID, "scopes": ses.Scopes,
		"spend_limit": ses.SpendLimit, "spent": ses.Spent, "remaining_budget": ses.Remaining(),
		"is_valid": ses.Valid(now), "created_at": formatTime(ses.CreatedAt), "expires_at": formatTime(ses.ExpiresAt),
		"revoked_at": optionalTime(ses.RevokedAt),
	}, nil
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
