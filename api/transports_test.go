package api_test

import (
	"strings"
	"testing"

	"github.com/haldir-dev/haldir/app/apptest"
)

// TestTransportsAgreeOnPaymentRules: the amount bounds of a payment live in
// package domain, so REST and MCP refuse the same amounts with the same
// code. MCP's authorizePayment used to have no maximum: an amount above
// 1,000,000 was decided against the cap (budget_exceeded) instead of being
// refused as invalid.
func TestTransportsAgreeOnPaymentRules(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		b := s.NewTenant("b")
		ses := agentSession(t, a, "bot", 1_000_000)
		cs := mcpClient(t, s, "Authorization", "Bearer "+a.Key)
		for _, amount := range []float64{1_000_000.01, 5_000_000, 0.001, -1} {
			a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": amount}).Expect(t, 400, "invalid_request")
			text, isErr := callText(t, cs, "authorizePayment", map[string]any{"session_id": ses, "amount": amount}, nil)
			if !isErr || !strings.HasPrefix(text, "invalid_request") {
				t.Errorf("MCP authorizePayment of %v: %q (error %v); want invalid_request like REST", amount, text, isErr)
			}
		}
		// In bounds, both authorise against the same cap.
		a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 200)
		if text, isErr := callText(t, cs, "authorizePayment", map[string]any{"session_id": ses, "amount": 1}, nil); isErr {
			t.Errorf("MCP authorizePayment of 1: %s", text)
		}
		if got := a.Do("GET", "/v1/sessions/"+ses, nil).Num("spent"); got != 2 {
			t.Errorf("spent %v, want 2", got)
		}
		// Tenant b cannot pay from tenant a's session by either transport.
		b.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 404)
		bcs := mcpClient(t, s, "Authorization", "Bearer "+b.Key)
		if text, isErr := callText(t, bcs, "authorizePayment", map[string]any{"session_id": ses, "amount": 1}, nil); !isErr || !strings.HasPrefix(text, "not_found") {
			t.Errorf("tenant b via MCP: %q", text)
		}
	})
}
