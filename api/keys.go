package api

import (
	"net/http"

	"github.com/haldir-dev/haldir/commands"
	"github.com/haldir-dev/haldir/domain"
)

func (s *Server) createTenant(c *call) (int, any, error) {
	name := c.obj.str("name", true, commands.MaxTenantName)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	t, err := s.deps.Commands.CreateTenant(c.ctx, c.actor, name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"tenant_id": t.TenantID, "name": t.Name, "key": t.Key.Key, "prefix": t.Key.Prefix}, nil
}

// createKey serves POST /v1/keys. The scopes field defaults to ["*"] only
// when it is omitted (or null, which the API treats as omitted for every
// optional field, and which the CLI and SDKs send for "not given"). An
// explicit empty list, "scopes": [], is refused with 400 invalid_request
// naming scopes, on the bootstrap route too: a client that asks for a key
// with no scopes must not receive one with every scope.
func (s *Server) createKey(c *call) (int, any, error) {
	name := c.obj.str("name", false, commands.MaxKeyNameLen)
	scopes, given := c.obj.strList("scopes", 32, 64)
	rate, _ := c.obj.integer("rate_limit", 0, 1_000_000)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	switch {
	case !given:
		scopes = append([]string(nil), domain.DefaultKeyScopes...)
	case len(scopes) == 0:
		return 0, nil, domain.Invalid("scopes", "scopes must name at least one key scope; omit the field for the default [\"*\"]")
	}
	if c.key == nil {
		// No key was presented: only a fresh install may mint one.
		exists, err := s.deps.Queries.AnyTenant(c.ctx)
		if err != nil {
			return 0, nil, err
		}
		if exists {
			return 0, nil, commands.ErrInstallClosed
		}
		t, err := s.deps.Commands.Bootstrap(c.ctx, c.actor, "default")
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, keyBody(t.Key, t.TenantID), nil
	}
	if name == "" {
		name = "unnamed"
	}
	k, err := s.deps.Commands.CreateKey(c.ctx, c.actor, c.key.Scopes, name, scopes, int(rate))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, keyBody(k, c.tenant), nil
}

func keyBody(k commands.NewKey, tenant string) map[string]any {
	return map[string]any{"key": k.Key, "prefix": k.Prefix, "name": k.Name, "scopes": k.Scopes,
		"rate_limit": k.RateLimit, "tenant_id": tenant, "created_at": formatTime(k.Created.RecordedAt)}
}

func (s *Server) whoami(c *call) (int, any, error) {
	return http.StatusOK, map[string]any{"tenant_id": c.tenant, "prefix": c.key.Prefix, "name": c.key.Name, "scopes": c.key.Scopes}, nil
}

func (s *Server) listKeys(c *call) (int, any, error) {
	keys, err := s.deps.Queries.Keys(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, map[string]any{"prefix": k.Prefix, "name": k.Name, "scopes": k.Scopes, "rate_limit": k.RateLimit,
			"created_at": formatTime(k.CreatedAt), "last_used": optionalTime(s.auth.lastUsed(k.Prefix)), "revoked": !k.RevokedAt.IsZero()})
	}
	return http.StatusOK, map[string]any{"keys": out, "count": len(out)}, nil
}

func (s *Server) revokeKey(c *call) (int, any, error) {
	prefix := c.vars("prefix")
	if err := s.deps.Commands.RevokeKey(c.ctx, c.actor, prefix); err != nil {
		return 0, nil, err
	}
	s.auth.forget(prefix)
	return http.StatusOK, map[string]any{"revoked": true, "prefix": prefix}, nil
}
