package api

import (
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/evidence"
)

// evidencePack builds and signs the pack for the request's period
// (?since, ?until; default the last 30 days).
func (s *Server) evidencePack(c *call) (*evidence.Pack, error) {
	if s.deps.Log == nil {
		return nil, errNoLog
	}
	q := c.r.URL.Query()
	since, err := queryTime(q, "since")
	if err != nil {
		return nil, err
	}
	until, err := queryTime(q, "until")
	if err != nil {
		return nil, err
	}
	now := s.now()
	if until.IsZero() {
		until = now.Truncate(time.Second)
	}
	if since.IsZero() {
		since = until.Add(-30 * 24 * time.Hour)
	}
	if !since.Before(until) {
		return nil, domain.Invalid("until", "until must be after since")
	}
	name, err := s.deps.Queries.TenantName(c.ctx, c.tenant)
	if err != nil {
		return nil, err
	}
	in := evidence.Input{Tenant: c.tenant, TenantName: name, Since: since, Until: until}
	// Read the tenant's events once; verify the chain over the same bytes.
	v := events.NewVerifier(false)
	in.Chain.Verified = true
	for after := int64(0); ; {
		page, err := s.deps.Store.ReadTenant(c.ctx, c.tenant, after, 5000)
		if err != nil {
			return nil, err
		}
		for i := range page {
			if in.Chain.Verified {
				if err := v.Check(&page[i]); err != nil {
					var ve *events.VerifyError
					if !errors.As(err, &ve) {
						return nil, err
					}
					in.Chain = evidence.ChainStatus{Verified: false, Checked: ve.Seq - 1, FirstBadSeq: ve.Seq, Reason: ve.Reason}
				} else {
					in.Chain.Checked++
					in.Chain.HeadHash = hex.EncodeToString(page[i].Hash[:])
				}
			}
			after = page[i].Seq
		}
		in.Events = append(in.Events, page...)
		if len(page) < 5000 {
			break
		}
	}
	head, err := s.deps.Log.Head(c.ctx, c.tenant)
	if err != nil {
		return nil, err
	}
	in.TreeHead = &head.Checkpoint
	if s.deps.KEKVersion != nil {
		in.KEKVersion = s.deps.KEKVersion()
	}
	if s.deps.WebhookStats != nil {
		if in.Webhooks, err = s.deps.WebhookStats(c.ctx, c.tenant, since, until); err != nil {
			return nil, err
		}
	}
	p, err := evidence.Build(in)
	if err != nil {
		return nil, err
	}
	p.GeneratedAt = now
	keyID := s.deps.Log.Signer().Name()
	if err := evidence.Sign(&p, s.deps.Log.Signer(), keyID); err != nil {
		return nil, err
	}
	return &p, nil
}

func (s *Server) complianceEvidence(c *call) error {
	format := c.r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "markdown" {
		return domain.Invalid("format", "format must be json or markdown")
	}
	p, err := s.evidencePack(c)
	if err != nil {
		return err
	}
	if format == "markdown" {
		c.w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		c.w.WriteHeader(http.StatusOK)
		return evidence.WriteMarkdown(c.w, p)
	}
	writeJSON(c.w, http.StatusOK, p)
	return nil
}

func (s *Server) complianceManifest(c *call) (int, any, error) {
	p, err := s.evidencePack(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"format": p.Format, "period": map[string]string{"since": p.Sections.Identity.Since, "until": p.Sections.Identity.Until},
		"manifest": p.Manifest, "signature": p.Signature, "verifier_key": s.deps.Log.VerifierKey()}, nil
}

func (s *Server) complianceScore(c *call) (int, any, error) {
	p, err := s.evidencePack(c)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, evidence.Score(p), nil
}
