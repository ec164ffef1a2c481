package app_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections"
)

// TestSessionCacheMatchesTheTable: on the embedded store, session reads
// answer from the in-memory read model the core projection feeds. After
// every kind of session event (creation, payments authorised and denied,
// costed actions, revocation), in two tenants, it holds each session
// exactly as the sessions table does.
func TestSessionCacheMatchesTheTable(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	if s.App.Sessions == nil {
		t.Fatal("the embedded store runs without the session cache")
	}
	type held struct{ tenant, id string }
	var all []held
	for _, name := range []string{"a", "b"} {
		c := s.NewTenant(name)
		for i := 0; i < 4; i++ {
			id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": fmt.Sprint("bot-", i), "scopes": []string{"read", "spend:20"}, "spend_limit": 5, "ttl": 600}).Expect(t, 201).Str("session_id")
			c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 1.25}).Expect(t, 200)
			c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 100}).Expect(t, 403)
			c.Do("POST", "/v1/audit", map[string]any{"session_id": id, "action": "act", "cost_usd": 0.5 * float64(i)}).Expect(t, 201)
			if i%2 == 1 {
				c.Do("DELETE", "/v1/sessions/"+id, nil).Expect(t, 200)
			}
			all = append(all, held{c.Tenant, id})
		}
	}
	s.AwaitFlags(t) // the core group is at the ledger head
	table := projections.NewQueries(s.App.DB.State())
	for _, h := range all {
		cached, ok := s.App.Sessions.Get(h.tenant, h.id)
		if !ok {
			t.Errorf("the cache does not hold %s", h.id)
			continue
		}
		stored, found, err := table.Session(context.Background(), h.tenant, h.id)
		if err != nil || !found {
			t.Fatalf("the table: %v, %v", found, err)
		}
		// The table keeps no stream version; times compare as instants.
		if d := cmp.Diff(stored, cached, cmpopts.IgnoreFields(domain.Session{}, "Version"), cmpopts.EquateApproxTime(0)); d != "" {
			t.Errorf("session %s: cache differs from the table (-table +cache):\n%s", h.id, d)
		}
	}
	if _, ok := s.App.Sessions.Get(all[0].tenant, all[len(all)-1].id); ok {
		t.Error("the cache answers a session under another tenant")
	}
}
