package api_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/events"
)

// eventTypesOf returns the types of the tenant's events recorded under
// Idempotency-Key key, in ledger order.
func eventTypesOf(t *testing.T, s *apptest.Server, tenant, key string) []string {
	t.Helper()
	return ledgerTypes(t, s, tenant, func(e events.Event) bool { return e.Meta().IdempotencyKey == key })
}

// eventTypesOfTenant returns the types of all the tenant's events.
func eventTypesOfTenant(t *testing.T, s *apptest.Server, tenant string) []string {
	t.Helper()
	return ledgerTypes(t, s, tenant, func(events.Event) bool { return true })
}

func ledgerTypes(t *testing.T, s *apptest.Server, tenant string, keep func(events.Event) bool) []string {
	t.Helper()
	// A governed call's outcome reaches the ledger just after the answer.
	if err := s.App.Commands.AwaitTenant(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
	evs, err := s.App.Store.ReadTenant(context.Background(), tenant, 0, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if keep(e) {
			out = append(out, e.Type)
		}
	}
	return out
}

// TestIdempotentProxyCallRecordsEveryEvent: a governed call made with an
// Idempotency-Key appends every event of its pipeline. Ids derived from the
// key with hand-picked indices used to collide (reserve, release and the
// secret read all took index 0; consuming an approval and the outcome both
// took 7), and the ledger returned the colliding event instead of
// appending, so the release, the secret read and the outcome were lost.
func TestIdempotentProxyCallRecordsEveryEvent(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		b := s.NewTenant("b")
		up := newUpstream(t)
		registerFiles(t, a, up)
		a.Do("POST", "/v1/secrets", map[string]any{"name": "tok", "value": randomToken("sk_")}).Expect(t, 201)
		a.Do("POST", "/v1/approvals/rules", map[string]any{"type": "tool_match", "tools": []string{"files.delete"}}).Expect(t, 201)
		ses := agentSession(t, a, "bot", 5, "tool:files", "read")
		call := func(key, tool string, args map[string]any) *apptest.Response {
			return a.Do("POST", "/v1/proxy/call", map[string]any{"tool": tool, "arguments": args, "session_id": ses, "cost_usd": 1}, "Idempotency-Key", key)
		}

		// An approved call: consume the approval, reserve, read the secret,
		// allow, complete.
		args := map[string]any{"path": "{{secret:tok}}"}
		id := call("held", "files.delete", args).Expect(t, 403, "approval_required").Str("approval_request_id")
		a.Do("POST", "/v1/approvals/"+id+"/approve", map[string]any{"decided_by": "alice"}).Expect(t, 200)
		call("approved", "files.delete", args).Expect(t, 200)
		want := []string{"approval.consumed", "payment.authorized", "secret.accessed", "proxy.call_allowed", "proxy.call_completed"}
		if diff := cmp.Diff(want, eventTypesOf(t, s, a.Tenant, "approved")); diff != "" {
			t.Errorf("approved call's events (-want +got):\n%s", diff)
		}

		// A call whose upstream is gone: the reservation is released too.
		up.srv.CloseClientConnections()
		up.srv.Close()
		call("failed", "files.echo", map[string]any{"message": "{{secret:tok}}"}).Expect(t, 503, "unavailable")
		want = []string{"payment.authorized", "secret.accessed", "proxy.call_allowed", "payment.released", "proxy.call_completed"}
		if diff := cmp.Diff(want, eventTypesOf(t, s, a.Tenant, "failed")); diff != "" {
			t.Errorf("failed call's events (-want +got):\n%s", diff)
		}
		if got := a.Do("GET", "/v1/sessions/"+ses, nil).Num("spent"); got != 1 {
			t.Errorf("spent = %v, want 1: the failed call's reservation must be released", got)
		}
		// The same key in another tenant is another request.
		bses := agentSession(t, b, "bot", 5, "read")
		b.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": bses, "amount": 1}, "Idempotency-Key", "approved").Expect(t, 200)
		if got := eventTypesOf(t, s, b.Tenant, "approved"); !slices.Equal(got, []string{"payment.authorized"}) {
			t.Errorf("tenant b's events under the key: %v", got)
		}
		if v := a.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
			t.Errorf("verify: %s", v)
		}
	})
}

// TestEveryCommandUnderAnIdempotencyKey runs each write route with its own
// Idempotency-Key and checks that it appended exactly the events it should,
// and that a replay appends nothing more.
func TestEveryCommandUnderAnIdempotencyKey(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		ses := agentSession(t, a, "bot", 10, "read")
		a.Do("POST", "/v1/secrets", map[string]any{"name": "base", "value": "v"}).Expect(t, 201)
		steps := []struct {
			name, method, path string
			body               map[string]any
			want               []string
		}{
			{"create session", "POST", "/v1/sessions", map[string]any{"agent_id": "bot2", "scopes": []string{"read", "spend:3"}}, []string{"session.created"}},
			{"authorize payment", "POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 2}, []string{"payment.authorized"}},
			{"log action", "POST", "/v1/audit", map[string]any{"session_id": ses, "action": "search", "cost_usd": 1}, []string{"audit.logged"}},
			{"store secret", "POST", "/v1/secrets", map[string]any{"name": "api_key", "value": "sk_live_x"}, []string{"secret.stored"}},
			{"approval rule", "POST", "/v1/approvals/rules", map[string]any{"type": "spend_over", "threshold": 100}, []string{"approval.rule_added"}},
			{"approval request", "POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "stripe", "action": "charge", "amount": 5}, []string{"approval.requested"}},
			{"proxy policy", "POST", "/v1/proxy/policies", map[string]any{"type": "deny_list", "tools": []string{"files.delete"}}, []string{"proxy.policy_added"}},
			{"check", "POST", "/v1/sessions/" + ses + "/check", map[string]any{"scope": "read"}, nil},
		}
		for i, st := range steps {
			key := fmt.Sprintf("k%d", i)
			first := a.Do(st.method, st.path, st.body, "Idempotency-Key", key)
			if first.Status >= 300 {
				t.Fatalf("%s: %s", st.name, first)
			}
			again := a.Do(st.method, st.path, st.body, "Idempotency-Key", key)
			if again.Status != first.Status || string(again.Raw) != string(first.Raw) || again.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("%s: replay %s, want the original %s", st.name, again, first)
			}
			if diff := cmp.Diff(st.want, eventTypesOf(t, s, a.Tenant, key)); diff != "" {
				t.Errorf("%s: events (-want +got):\n%s", st.name, diff)
			}
		}
	})
}
