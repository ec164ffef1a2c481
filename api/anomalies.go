package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections/views"
)

// listAnomalies answers GET /v1/anomalies (?open=true for the
// unacknowledged, ?limit=).
func (s *Server) listAnomalies(c *call) (int, any, error) {
	q := c.r.URL.Query()
	open, err := queryBool(q, "open")
	if err != nil {
		return 0, nil, err
	}
	limit, err := queryInt(q, "limit", 1, 1000, 100)
	if err != nil {
		return 0, nil, err
	}
	list, err := s.deps.Queries.AnomalyList(c.ctx, c.tenant, open != nil && *open, limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(list))
	for i := range list {
		out = append(out, anomalyJSON(&list[i]))
	}
	return http.StatusOK, map[string]any{"anomalies": out, "count": len(out)}, nil
}

func anomalyJSON(a *views.Anomaly) map[string]any {
	m := map[string]any{"anomaly_id": a.FlagID, "detector": a.Detector, "severity": a.Severity, "agent_id": a.AgentID,
		"session_id": a.SessionID, "tool": a.Tool, "reason": a.Reason, "evidence": a.Evidence, "entry_id": a.EntryID,
		"flagged_at": formatTime(a.FlaggedAt), "acknowledged": !a.AckedAt.IsZero()}
	if !a.AckedAt.IsZero() {
		m["acknowledged_at"], m["acknowledged_by"], m["note"] = formatTime(a.AckedAt), a.AckedBy, a.Note
	}
	return m
}

// ackAnomaly answers POST /v1/anomalies/{id}/ack.
func (s *Server) ackAnomaly(c *call) (int, any, error) {
	id := c.vars("id")
	note := c.obj.str("note", false, 500)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	if !domain.ValidID("anm", id) {
		return 0, nil, domain.Errorf(domain.CodeNotFound, "no such anomaly")
	}
	changed, err := s.deps.Commands.AckAnomaly(c.ctx, c.actor, id, note)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"anomaly_id": id, "acknowledged": true, "changed": changed}, nil
}

// anomalySettings answers GET /v1/anomalies/settings.
func (s *Server) anomalySettings(c *call) (int, any, error) {
	set, err := s.deps.Commands.AnomalySettings(c.ctx, c.tenant, s.deps.AnomalyDefaults)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, set, nil
}

// putAnomalySettings answers PUT /v1/anomalies/settings: the fields given
// replace the current ones; the others keep their value.
func (s *Server) putAnomalySettings(c *call) (int, any, error) {
	set, err := s.deps.Commands.AnomalySettings(c.ctx, c.tenant, s.deps.AnomalyDefaults)
	if err != nil {
		return 0, nil, err
	}
	o := c.obj
	seconds := func(name string, into *domain.Duration) {
		if n, ok := o.integer(name, 1, int64(domain.MaxAnomalyWindow/time.Second)); ok {
			*into = domain.Duration(time.Duration(n) * time.Second)
		}
	}
	if n, ok := o.integer("loop_calls", 0, 10000); ok {
		set.LoopCalls = int(n)
	}
	seconds("loop_window_seconds", &set.LoopWindow)
	if b, ok := o.boolean("first_use"); ok {
		set.FirstUse = b
	}
	if n, ok := o.integer("denials", 0, 10000); ok {
		set.Denials = int(n)
	}
	seconds("denial_window_seconds", &set.DenialWindow)
	if m, ok := o.money("spend_usd", false, 0, domain.MaxPayment); ok {
		set.Spend = m
	}
	seconds("spend_window_seconds", &set.SpendWindow)
	if b, ok := o.boolean("off_hours"); ok {
		set.Hours = b
	}
	if n, ok := o.integer("start_hour", 0, 23); ok {
		set.StartHour = int(n)
	}
	if n, ok := o.integer("end_hour", 0, 24); ok {
		set.EndHour = int(n)
	}
	if tz := o.str("timezone", false, 64); tz != "" {
		set.TimeZone = tz
	}
	if raw, ok := o.lookup("responses", false); ok {
		var r map[string]string
		if err := json.Unmarshal(raw, &r); err != nil {
			o.fail("responses", "responses maps detector names to \"flag\" or \"kill\"")
		} else {
			set.Responses = r
		}
	}
	if err := o.Err(); err != nil {
		return 0, nil, err
	}
	if err := s.deps.Commands.SetAnomalySettings(c.ctx, c.actor, set); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, set, nil
}
