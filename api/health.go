package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/haldir-dev/haldir/events"
)

func (s *Server) healthz(c *call) (int, any, error) {
	return http.StatusOK, map[string]any{"status": "ok"}, nil
}

func (s *Server) readyz(c *call) (int, any, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	if err := s.deps.Ready(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		reason := "the store does not answer"
		if errors.Is(err, events.ErrUnavailable) {
			reason = "the store cannot write"
		}
		return http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason}, nil
	}
	return http.StatusOK, map[string]any{"ready": true}, nil
}

type component struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// componentStatus checks the store and the projections.
func (s *Server) componentStatus(ctx context.Context) (string, []component, int64, int64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	comps := []component{{Name: "api", Status: "ok"}}
	overall := "ok"
	head, err := s.deps.Store.Head(ctx)
	if err != nil {
		comps = append(comps, component{Name: "ledger", Status: "down", Detail: "the store does not answer"})
		return "down", comps, 0, 0
	}
	comps = append(comps, component{Name: "ledger", Status: "ok"})
	projected := s.deps.Projected()
	lag := head - projected
	p := component{Name: "projections", Status: "ok"}
	if lag > 10_000 {
		p.Status, overall = "degraded", "degraded"
		p.Detail = "read models are behind the ledger"
	}
	comps = append(comps, p)
	return overall, comps, head, lag
}

func (s *Server) status(c *call) (int, any, error) {
	overall, comps, head, lag := s.componentStatus(c.ctx)
	return http.StatusOK, map[string]any{
		"status":          overall,
		"version":         s.opts.Version,
		"uptime_seconds":  int64(time.Since(s.started).Seconds()),
		"components":      comps,
		"ledger_position": head,
		"projection_lag":  lag,
	}, nil
}

// prometheus serves GET /metrics (operator token): the process's
// metrics, which hold no tenant's data.
func (s *Server) prometheus(c *call) error {
	s.metrics.Handler().ServeHTTP(c.w, c.r)
	return nil
}
