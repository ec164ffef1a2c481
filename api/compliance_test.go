package api_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/evidence"
)

func TestComplianceEvidence(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c, other := s.NewTenant("Acme"), s.NewTenant("Other")
		vkey := strings.TrimSpace(string(s.Anonymous().Do("GET", "/.well-known/haldir-checkpoint-key", nil).Raw))
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a", "spend_limit": 10}).Expect(t, 201).Str("session_id")
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 4}).Expect(t, 200)
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 40}).Expect(t, 403, "budget_exceeded")
		c.Do("POST", "/v1/secrets", map[string]any{"name": "k", "value": "v"}).Expect(t, 201)
		other.Do("POST", "/v1/sessions", map[string]any{"agent_id": "other-agent"}).Expect(t, 201)
		// A closed period: a little in the past up to now.
		until := time.Now().UTC().Add(time.Second).Truncate(time.Second)
		period := "?since=" + url.QueryEscape(until.Add(-time.Hour).Format(time.RFC3339)) + "&until=" + url.QueryEscape(until.Format(time.RFC3339))
		// Let the closing second pass so nothing more lands in the period
		// (recorded_at < until). The app takes no injectable clock
		// (app.Config has none) and the ledger stamps events with the real
		// time, so the test waits, polling, until the real clock is past
		// until (with the same 10 ms margin as before).
		waitFor(t, time.Until(until)+5*time.Second, "the period's closing second to pass", func() bool {
			return time.Now().After(until.Add(10 * time.Millisecond))
		})

		r := c.Do("GET", "/v1/compliance/evidence"+period, nil).Expect(t, 200)
		var p evidence.Pack
		if err := json.Unmarshal(r.Raw, &p); err != nil {
			t.Fatal(err)
		}
		if err := evidence.Verify(&p, vkey); err != nil {
			t.Fatalf("the pack does not verify with the published key: %v", err)
		}
		sec := p.Sections
		if sec.Identity.TenantName != "Acme" || sec.Spend.Authorized != 1 || sec.Spend.DeniedOverCap != 1 || sec.Encryption.SecretsAtEnd != 1 ||
			!sec.AuditTrail.Chain.Verified || sec.AuditTrail.TreeHead == nil || p.Manifest.EventCounts["payment.denied"] != 1 {
			t.Errorf("sections: %s", r.Raw)
		}
		if strings.Contains(string(r.Raw), "other-agent") || strings.Contains(string(r.Raw), other.Tenant) {
			t.Error("the pack mentions the other tenant")
		}
		// Re-checking the same closed period gives the same digest.
		m := c.Do("GET", "/v1/compliance/evidence/manifest"+period, nil).Expect(t, 200)
		if m.Body["manifest"].(map[string]any)["sections_sha256"] != p.Manifest.Digest {
			t.Errorf("manifest digest %v differs from the pack's %s", m.Body["manifest"], p.Manifest.Digest)
		}
		// A modified pack fails.
		p.Sections.Spend.Denied = 0
		if err := evidence.Verify(&p, vkey); !errors.Is(err, evidence.ErrDigest) {
			t.Errorf("a modified pack: %v", err)
		}
		md := c.Do("GET", "/v1/compliance/evidence"+period+"&format=markdown", nil).Expect(t, 200)
		for _, want := range []string{"## 2. Access control (SOC 2 CC6.1)", "## 7. Outbound alerting (SOC 2 CC7.3)", "## 8. Anomaly detection (SOC 2 CC7.2)", "## 9. Signature", "haldir.evidence/" + c.Tenant} {
			if !strings.Contains(string(md.Raw), want) {
				t.Errorf("the Markdown pack lacks %q", want)
			}
		}
		sc := c.Do("GET", "/v1/compliance/score", nil).Expect(t, 200)
		if n := sc.Num("score"); n <= 0 || n > 100 {
			t.Errorf("score: %s", sc)
		}
		c.Do("GET", "/v1/compliance/evidence?since=2026-02-01&until=2026-01-01", nil).Expect(t, 400, "invalid_request")
		c.Do("GET", "/v1/compliance/evidence?format=pdf", nil).Expect(t, 400, "invalid_request")
	})
}
