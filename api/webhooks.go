package api

import (
	"net/http"
	"time"

	"github.com/haldir-dev/haldir/domain"
)

func (s *Server) registerWebhook(c *call) (int, any, error) {
	url := c.obj.str("url", true, domain.MaxWebhookURLLen)
	name := c.obj.str("name", false, 128)
	evs, _ := c.obj.strList("events", len(domain.DeliveredEvents)+1, 64)
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	w, secret, err := s.deps.Commands.RegisterWebhook(c.ctx, c.actor, url, name, evs)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"webhook_id": w.ID, "url": w.URL, "name": w.Name, "events": w.Events, "secret": secret,
		"signing": "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>"}, nil
}

func (s *Server) listWebhooks(c *call) (int, any, error) {
	rows, err := s.deps.Queries.Webhooks(c.ctx, c.tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		out = append(out, map[string]any{"webhook_id": r.ID, "url": r.URL, "name": r.Name, "events": r.Events, "active": r.Active,
			"fire_count": r.Delivered, "fail_count": r.Failed, "created_at": formatTime(r.CreatedAt)})
	}
	return http.StatusOK, map[string]any{"webhooks": out, "count": len(out)}, nil
}

func (s *Server) rotateWebhookSecret(c *call) (int, any, error) {
	grace, _ := c.obj.integer("grace_seconds", 0, int64(domain.MaxWebhookGrace/time.Second))
	if err := c.obj.Err(); err != nil {
		return 0, nil, err
	}
	if _, given := c.obj.fields["grace_seconds"]; !given {
		grace = 3600
	}
	id := c.vars("id")
	w, secret, err := s.deps.Commands.RotateWebhookSecret(c.ctx, c.actor, id, time.Duration(grace)*time.Second)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"webhook_id": id, "secret": secret, "secret_prev_expires_at": formatTime(w.PrevExpiresAt)}, nil
}

func (s *Server) webhookDeliveries(c *call) (int, any, error) {
	q := c.r.URL.Query()
	limit, err := queryInt(q, "limit", 1, 1000, 20)
	if err != nil {
		return 0, nil, err
	}
	eventID, err := queryString(q, "event_id", 64)
	if err != nil {
		return 0, nil, err
	}
	webhookID, err := queryString(q, "webhook_id", 64)
	if err != nil {
		return 0, nil, err
	}
	list, err := s.deps.Deliveries.List(c.ctx, c.tenant, domain.DeliveryFilter{EventID: eventID, WebhookID: webhookID, Limit: limit})
	if err != nil {
		return 0, nil, err
	}
	out := make([]map[string]any, 0, len(list))
	for _, a := range list {
		out = append(out, map[string]any{"delivery_id": a.DeliveryID, "event_id": a.EventID, "webhook_id": a.WebhookID, "event_type": a.EventType,
			"attempt": a.Attempt, "status_code": a.StatusCode, "error": a.Error, "duration_ms": a.Duration.Milliseconds(),
			"created_at": formatTime(a.CreatedAt), "status": a.Status})
	}
	return http.StatusOK, map[string]any{"deliveries": out, "count": len(out)}, nil
}
