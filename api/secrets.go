package api

import (
	"net/http"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/vault"
)

func (s *Server) storeSecret(c *call) (int, any, error) {
	name := c.obj.str("name", true, 128)
	raw, _ := c.obj.lookup("value", true)
	scope := c.obj.str("scope_required", false, domain.MaxSessionScopeLen)
	var value string
	if raw != nil && c.obj.err == nil {
		// The value is taken as a string of any characters (a key may
		// hold anything), but never echoed in an error.
		if err := jsonString(raw, &value); err != nil {
			c.obj.fail("value", "value must be a string")
		} else if len(value) > vault.MaxValueSize {
			c.obj.fail("value", "value is larger than %d bytes", vault.MaxValueSize)
		}
	}
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	stored, err := s.deps.Commands.StoreSecret(c.ctx, c.actor, name, []byte(value), scope)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"stored": true, "name": stored.Name, "version": stored.Version, "scope_required": stored.ScopeRequired}, nil
}

// sessionOf returns the session a request names: the X-Session-ID header,
// else the session_id query parameter.
func sessionOf(c *call) string {
	if v := c.r.Header.Get("X-Session-ID"); v != "" {
		return v
	}
	return c.r.URL.Query().Get("session_id")
}

func (s *Server) getSecret(c *call) (int, any, error) {
	name := c.vars("name")
	value, err := s.deps.Commands.ReadSecret(c.ctx, c.actor, name, sessionOf(c), "api")
	if err != nil {
		return 0, nil, err
	}
	c.w.Header().Set("Cache-Control", "no-store")
	return http.StatusOK, map[string]any{"name": name, "value": string(value)}, nil
}

// recordSecretRefusal records a read refused for the key's scopes.
func (s *Server) recordSecretRefusal(c *call, refusal *domain.Error) error {
	return s.deps.Commands.RecordSecretRefusal(c.ctx, c.actor, c.vars("name"), sessionOf(c), refusal.Code, refusal.Message)
}

func (s *Server) listSecrets(c *call) (int, any, error) {
	names, err := s.deps.Queries.SecretNames(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"secrets": names, "count": len(names)}, nil
}

func (s *Server) deleteSecret(c *call) (int, any, error) {
	name := c.vars("name")
	if err := s.deps.Commands.DeleteSecret(c.ctx, c.actor, name); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"deleted": true, "name": name}, nil
}
