package api

import (
	"fmt"
	"log/slog"
	"maps"
)

// maxWarnings bounds the warnings of one response; the rest are counted.
const maxWarnings = 20

// withWarnings names the request body's unknown top-level fields in a
// "warnings" list of a successful object response, for example
//
//	"warnings": ["unknown field \"spend_limt\" ignored"]
//
// so that a misspelt field is visible instead of silently doing nothing,
// while the request is still accepted (wire compatibility). It also logs
// them at debug level. Only 2xx responses whose body is a JSON object built
// by the handler get the list: error envelopes keep their fixed fields, and
// other bodies (a proxied tool's result) are passed through as they are.
// It runs before the response is stored for idempotent replay, so a replay
// repeats the warnings.
func (s *Server) withWarnings(c *call, status int, body any) any {
	if c.obj == nil || status < 200 || status > 299 {
		return body
	}
	unknown := c.obj.unknown()
	if len(unknown) == 0 {
		return body
	}
	s.log.LogAttrs(c.ctx, slog.LevelDebug, "unknown request fields ignored", slog.String("request_id", c.requestID),
		slog.String("route", c.route.method+" "+c.route.path), slog.Any("fields", unknown))
	m, ok := body.(map[string]any)
	if !ok {
		return body
	}
	if _, taken := m["warnings"]; taken {
		return body
	}
	warnings := make([]string, 0, min(len(unknown), maxWarnings+1))
	for i, name := range unknown {
		if i == maxWarnings {
			warnings = append(warnings, fmt.Sprintf("%d more unknown fields ignored", len(unknown)-maxWarnings))
			break
		}
		warnings = append(warnings, fmt.Sprintf("unknown field %q ignored", truncate(name, 64)))
	}
	out := maps.Clone(m) // the handler's map stays as it was
	out["warnings"] = warnings
	return out
}
