package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/haldir-dev/haldir/app/apptest"
)

// each runs fn against a fresh server on every backend.
func each(t *testing.T, fn func(t *testing.T, s *apptest.Server)) {
	for _, b := range apptest.Backends {
		t.Run(b, func(t *testing.T) {
			fn(t, apptest.Start(t, b))
		})
	}
}

// TestOpenAPIListsExactlyTheServedRoutes compares /openapi.json with a walk
// of the router itself.
func TestOpenAPIListsExactlyTheServedRoutes(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	doc := s.Anonymous().Do("GET", "/openapi.json", nil).Expect(t, http.StatusOK)
	if doc.Str("openapi") != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.Str("openapi"))
	}
	var documented []string
	for path, item := range doc.Body["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	served := s.App.API.ServedRoutes()
	sort.Strings(documented)
	sort.Strings(served)
	if !slices.Equal(documented, served) {
		t.Errorf("OpenAPI documents %d routes, the router serves %d:\n documented %v\n served     %v", len(documented), len(served), documented, served)
	}
	if len(served) < 20 {
		t.Errorf("only %d routes served; the comparison would be meaningless", len(served))
	}
}

// TestEveryRouteEnforcesItsScope takes each route's required scope from the
// OpenAPI document and calls the route with a key lacking it (403
// insufficient_scope) and with a key holding only it (never 403
// insufficient_scope).
func TestEveryRouteEnforcesItsScope(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		root := s.NewTenant("scopes")
		doc := s.Anonymous().Do("GET", "/openapi.json", nil)
		type op struct{ method, path, scope string }
		var ops []op
		for path, item := range doc.Body["paths"].(map[string]any) {
			for method, v := range item.(map[string]any) {
				if scope, ok := v.(map[string]any)["x-required-scope"].(string); ok {
					ops = append(ops, op{strings.ToUpper(method), path, scope})
				}
			}
		}
		if len(ops) < 15 {
			t.Fatalf("only %d scoped operations documented", len(ops))
		}
		keys := map[string]*apptest.Client{}
		keyFor := func(scope string) *apptest.Client {
			if keys[scope] == nil {
				keys[scope] = root.KeyWithScopes(scope)
			}
			return keys[scope]
		}
		for _, o := range ops {
			t.Run(o.method+" "+o.path, func(t *testing.T) {
				path := strings.NewReplacer("{id}", "ses_aaaaaaaaaaaaaaaaaaaaaaaa", "{prefix}", "hld_nonexist", "{name}", "x").Replace(o.path)
				res, _, _ := strings.Cut(o.scope, ":")
				// A key for another resource altogether.
				other := "webhooks:read"
				if res == "webhooks" {
					other = "audit:read"
				}
				r := keyFor(other).Do(o.method, path, map[string]any{})
				if r.Status != http.StatusForbidden || r.Code() != "insufficient_scope" || r.Str("required") != o.scope {
					t.Errorf("with %s: %s; want 403 insufficient_scope requiring %s", other, r, o.scope)
				}
				// read does not grant write.
				if strings.HasSuffix(o.scope, ":write") {
					r := keyFor(res+":read").Do(o.method, path, map[string]any{})
					if r.Status != http.StatusForbidden || r.Code() != "insufficient_scope" {
						t.Errorf("with %s:read: %s; want 403 insufficient_scope", res, r)
					}
				}
				body := map[string]any{}
				if o.path == "/v1/keys" {
					body["scopes"] = []string{"admin:read"} // a key may only mint what it holds
				}
				r = keyFor(o.scope).Do(o.method, path, body)
				if r.Code() == "insufficient_scope" || r.Status == http.StatusUnauthorized {
					t.Errorf("with exactly %s: %s; the scope should suffice", o.scope, r)
				}
			})
		}
	})
}

// TestTenantIsolation: a second tenant can neither see nor touch the first
// tenant's sessions, audit entries, keys or spend.
func TestTenantIsolation(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a, b := s.NewTenant("a"), s.NewTenant("b")
		ses := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot-a", "scopes": []string{"read", "spend:20"}}).Expect(t, 201)
		id := ses.Str("session_id")
		a.Do("POST", "/v1/audit", map[string]any{"session_id": id, "tool": "stripe", "action": "charge", "cost_usd": 2}).Expect(t, 201)
		a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 3}).Expect(t, 200)

		b.Do("GET", "/v1/sessions/"+id, nil).Expect(t, 404, "not_found")
		b.Do("DELETE", "/v1/sessions/"+id, nil).Expect(t, 404, "not_found")
		if r := b.Do("POST", "/v1/sessions/"+id+"/check", map[string]any{"scope": "read"}).Expect(t, 200); r.Bool("allowed") {
			t.Error("tenant b was allowed a scope on tenant a's session")
		}
		b.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 1}).Expect(t, 404, "not_found")
		b.Do("POST", "/v1/audit", map[string]any{"session_id": id, "action": "x"}).Expect(t, 404, "not_found")
		for _, q := range []string{"", "?session_id=" + id, "?agent_id=bot-a"} {
			if r := b.Do("GET", "/v1/audit"+q, nil).Expect(t, 200); strings.Contains(string(r.Raw), id) || strings.Contains(string(r.Raw), "bot-a") {
				t.Errorf("tenant b's audit%s shows tenant a's data: %s", q, r.Raw)
			}
		}
		if r := b.Do("GET", "/v1/audit/spend", nil).Expect(t, 200); r.Num("total_usd") != 0 {
			t.Errorf("tenant b's spend includes tenant a's: %s", r)
		}
		if r := b.Do("GET", "/v1/audit/export", nil); strings.Contains(string(r.Raw), id) {
			t.Error("tenant b's export includes tenant a's session")
		}
		keysA := a.Do("GET", "/v1/keys", nil).Expect(t, 200)
		prefixA := keysA.Body["keys"].([]any)[0].(map[string]any)["prefix"].(string)
		b.Do("DELETE", "/v1/keys/"+prefixA, nil).Expect(t, 404, "not_found")
		if r := b.Do("GET", "/v1/keys", nil).Expect(t, 200); strings.Contains(string(r.Raw), prefixA) {
			t.Error("tenant b lists tenant a's key")
		}
		for _, path := range []string{"/v1/metrics", "/v1/admin/overview", "/v1/usage"} {
			r := b.Do("GET", path, nil).Expect(t, 200)
			if strings.Contains(string(r.Raw), a.Tenant) {
				t.Errorf("%s for tenant b mentions tenant a", path)
			}
		}
		if r := b.Do("GET", "/v1/usage", nil); r.Num("action_count") != 0 {
			t.Errorf("tenant b's usage counts tenant a's actions: %s", r)
		}
		if r := a.Do("GET", "/v1/usage", nil); r.Num("action_count") != 2 {
			t.Errorf("tenant a's usage = %s, want 2 actions", r)
		}
		// Each tenant's chain verifies on its own.
		for _, c := range []*apptest.Client{a, b} {
			if r := c.Do("GET", "/v1/audit/verify", nil).Expect(t, 200); !r.Bool("verified") {
				t.Errorf("verify: %s", r)
			}
		}
		// Tenant a is untouched by all of the above.
		r := a.Do("GET", "/v1/sessions/"+id, nil).Expect(t, 200)
		if !r.Bool("is_valid") || r.Num("spent") != 5 {
			t.Errorf("tenant a's session after tenant b's attempts: %s", r)
		}
	})
}

// TestConcurrentPaymentsNeverExceedTheCap: 50 concurrent $1 authorisations
// against a $10 cap; exactly 10 succeed.
func TestConcurrentPaymentsNeverExceedTheCap(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("pay")
		s.NewTenant("bystander") // a second tenant in every test
		id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "spender", "spend_limit": 10}).Expect(t, 201).Str("session_id")
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[string]int{}
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 1, "description": fmt.Sprint(i)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case r.Status == 200 && r.Bool("authorized"):
					codes["ok"]++
				case r.Status == 403 && r.Code() == "budget_exceeded" && r.Body["authorized"] == false:
					codes["denied"]++
				default:
					codes[r.String()]++
				}
			}()
		}
		wg.Wait()
		if codes["ok"] != 10 || codes["denied"] != 40 || len(codes) != 2 {
			t.Fatalf("outcomes %v; want exactly 10 authorised and 40 budget_exceeded", codes)
		}
		r := c.Do("GET", "/v1/sessions/"+id, nil).Expect(t, 200)
		if r.Num("spent") != 10 || r.Num("remaining_budget") != 0 {
			t.Errorf("session after the race: %s; want spent 10.00, remaining 0", r)
		}
		// Every decision, denials included, is in the ledger.
		a := c.Do("GET", "/v1/audit?session_id="+id+"&limit=1000", nil).Expect(t, 200)
		var auth, deny int
		for _, e := range a.Body["entries"].([]any) {
			switch e.(map[string]any)["type"] {
			case "payment.authorized":
				auth++
			case "payment.denied":
				deny++
			}
		}
		if auth != 10 || deny != 40 {
			t.Errorf("ledger holds %d authorisations and %d denials, want 10 and 40", auth, deny)
		}
	})
}

// TestConcurrentAuditWritesKeepTheChain: 200 concurrent POST /v1/audit.
func TestConcurrentAuditWritesKeepTheChain(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("audit")
		other := s.NewTenant("other")
		ids := []string{
			c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a1"}).Expect(t, 201).Str("session_id"),
			c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a2"}).Expect(t, 201).Str("session_id"),
		}
		oid := other.Do("POST", "/v1/sessions", map[string]any{"agent_id": "o"}).Expect(t, 201).Str("session_id")
		var wg sync.WaitGroup
		fails := make(chan string, 250)
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client, sid := c, ids[i%2]
				if i%10 == 0 {
					client, sid = other, oid
				}
				r := client.Do("POST", "/v1/audit", map[string]any{"session_id": sid, "tool": "t", "action": fmt.Sprintf("a%d", i), "cost_usd": 0.01})
				if r.Status != 201 {
					fails <- r.String()
				}
			}()
		}
		wg.Wait()
		close(fails)
		for f := range fails {
			t.Errorf("audit write failed: %s", f)
		}
		for _, cl := range []*apptest.Client{c, other} {
			v := cl.Do("GET", "/v1/audit/verify", nil).Expect(t, 200)
			if !v.Bool("verified") {
				t.Fatalf("chain broken after concurrent writes: %s", v)
			}
		}
		v := c.Do("GET", "/v1/audit/verify", nil)
		// tenant.created + key.created + 2 sessions + 180 actions
		if got := int(v.Num("entries_checked")); got != 184 {
			t.Errorf("entries_checked = %d, want 184", got)
		}
		if r := c.Do("GET", "/v1/audit/spend", nil); r.Num("total_usd") != 1.8 || r.Num("action_count") != 180 {
			t.Errorf("spend = %s, want 1.8 over 180 actions", r)
		}
	})
}

// TestIdempotencyKeyRunsTheCommandOnce: 20 concurrent requests with one key.
func TestIdempotencyKeyRunsTheCommandOnce(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("idem")
		s.NewTenant("bystander")
		body := map[string]any{"agent_id": "idem-bot", "scopes": []string{"read"}}
		var wg sync.WaitGroup
		results := make([]*apptest.Response, 20)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = c.Do("POST", "/v1/sessions", body, "Idempotency-Key", "create-idem-bot-1")
			}()
		}
		wg.Wait()
		replayed := 0
		for _, r := range results {
			r.Expect(t, 201)
			if r.Str("session_id") != results[0].Str("session_id") {
				t.Fatalf("duplicates created different sessions: %s vs %s", r.Str("session_id"), results[0].Str("session_id"))
			}
			if r.Header.Get("Idempotent-Replayed") == "true" {
				replayed++
			}
		}
		if replayed != 19 {
			t.Errorf("%d responses were replays, want 19", replayed)
		}
		a := c.Do("GET", "/v1/audit?agent_id=idem-bot", nil).Expect(t, 200)
		if n := a.Num("count"); n != 1 {
			t.Errorf("%v events for the agent, want exactly 1 session.created", n)
		}
		// Same key, different body: 422. Same key in another tenant: a
		// different key.
		c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "other"}, "Idempotency-Key", "create-idem-bot-1").Expect(t, 422, "idempotency_key_reused")
		s.NewTenant("t2").Do("POST", "/v1/sessions", body, "Idempotency-Key", "create-idem-bot-1").Expect(t, 201)
		// Key creation responses hold a secret: a replay cannot repeat it.
		c.Do("POST", "/v1/keys", map[string]any{"name": "k"}, "Idempotency-Key", "mint-1").Expect(t, 201)
		c.Do("POST", "/v1/keys", map[string]any{"name": "k"}, "Idempotency-Key", "mint-1").Expect(t, 409, "conflict")
	})
}

// TestBootstrapIsSingleUse: the unauthenticated first key works once, even
// when ten callers race for it.
func TestBootstrapIsSingleUse(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		var wg sync.WaitGroup
		results := make([]*apptest.Response, 10)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = s.Anonymous().Do("POST", "/v1/keys", map[string]any{"name": "first"})
			}()
		}
		wg.Wait()
		var key string
		for _, r := range results {
			switch r.Status {
			case 201:
				if key != "" {
					t.Fatal("two callers bootstrapped the install")
				}
				key = r.Str("key")
			case 401:
				if r.Code() != "unauthenticated" {
					t.Errorf("loser got %s", r)
				}
			default:
				t.Errorf("unexpected %s", r)
			}
		}
		if !strings.HasPrefix(key, "hld_") || len(key) < 4+43 {
			t.Fatalf("bootstrap key %q is not hld_ + 32 random bytes", key)
		}
		s.Anonymous().Do("POST", "/v1/keys", map[string]any{"name": "again"}).Expect(t, 401, "unauthenticated")
		c := s.WithKey(key, "")
		c.Do("GET", "/v1/keys", nil).Expect(t, 200)
		// After bootstrap, creating keys needs admin:write.
		c.KeyWithScopes("sessions:write").Do("POST", "/v1/keys", map[string]any{"name": "x"}).Expect(t, 403, "insufficient_scope")
		// And the operator route makes further tenants.
		s.NewTenant("second")
	})
}
