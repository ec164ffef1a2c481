package api_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
)

func TestErrorCodes(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("errors")
		s.NewTenant("bystander")
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot", "scopes": []string{"read", "spend:5"}}).Expect(t, 201).Str("session_id")
		big := `{"agent_id":"` + strings.Repeat("x", 1<<20) + `"}`
		tests := []struct {
			name         string
			client       *apptest.Client
			method, path string
			body         any
			headers      []string
			status       int
			code, field  string
		}{
			{"bad JSON", c, "POST", "/v1/sessions", `{"agent_id":`, nil, 400, "invalid_request", ""},
			{"not an object", c, "POST", "/v1/sessions", `[1,2]`, nil, 400, "invalid_request", ""},
			{"wrong type", c, "POST", "/v1/sessions", `{"agent_id": 5}`, nil, 400, "invalid_request", "agent_id"},
			{"null required", c, "POST", "/v1/sessions", `{"agent_id": null}`, nil, 400, "invalid_request", "agent_id"},
			{"missing required", c, "POST", "/v1/sessions", `{}`, nil, 400, "invalid_request", "agent_id"},
			{"over-long string", c, "POST", "/v1/sessions", `{"agent_id": "` + strings.Repeat("a", 129) + `"}`, nil, 400, "invalid_request", "agent_id"},
			{"control characters", c, "POST", "/v1/sessions", `{"agent_id": "a\u0007b"}`, nil, 400, "invalid_request", "agent_id"},
			{"ttl not whole", c, "POST", "/v1/sessions", `{"agent_id": "a", "ttl": 1.5}`, nil, 400, "invalid_request", "ttl"},
			{"ttl too long", c, "POST", "/v1/sessions", `{"agent_id": "a", "ttl": 99999999}`, nil, 400, "invalid_request", "ttl"},
			{"NaN", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": NaN}`, nil, 400, "invalid_request", ""},
			{"Infinity", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": 1e400}`, nil, 400, "invalid_request", "amount"},
			{"negative money", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": -1}`, nil, 400, "invalid_request", "amount"},
			{"money as string", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": "1"}`, nil, 400, "invalid_request", "amount"},
			{"too precise", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": 0.0000001}`, nil, 400, "invalid_request", "amount"},
			{"below minimum", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": 0.001}`, nil, 400, "invalid_request", "amount"},
			{"other currency", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": 1, "currency": "EUR"}`, nil, 400, "invalid_request", "currency"},
			{"negative cost", c, "POST", "/v1/audit", `{"session_id": "` + ses + `", "action": "x", "cost_usd": -0.5}`, nil, 400, "invalid_request", "cost_usd"},
			{"details not object", c, "POST", "/v1/audit", `{"session_id": "` + ses + `", "action": "x", "details": [1]}`, nil, 400, "invalid_request", "details"},
			{"bad scope", c, "POST", "/v1/sessions", `{"agent_id": "a", "scopes": ["spend:lots"]}`, nil, 400, "invalid_request", "scopes"},
			{"limit=abc", c, "GET", "/v1/audit?limit=abc", nil, nil, 400, "invalid_request", "limit"},
			{"limit=0", c, "GET", "/v1/audit?limit=0", nil, nil, 400, "invalid_request", "limit"},
			{"limit=1001", c, "GET", "/v1/audit?limit=1001", nil, nil, 400, "invalid_request", "limit"},
			{"flagged=maybe", c, "GET", "/v1/audit?flagged=maybe", nil, nil, 400, "invalid_request", "flagged"},
			{"since=garbage", c, "GET", "/v1/audit?since=yesterday", nil, nil, 400, "invalid_request", "since"},
			{"cursor=garbage", c, "GET", "/v1/audit?cursor=zz", nil, nil, 400, "invalid_request", "cursor"},
			{"month=13", c, "GET", "/v1/usage?month=2026-13", nil, nil, 400, "invalid_request", "month"},
			{"export format", c, "GET", "/v1/audit/export?format=xml", nil, nil, 400, "invalid_request", "format"},
			{"missing key", s.Anonymous(), "GET", "/v1/audit", nil, nil, 401, "unauthenticated", ""},
			{"unknown key", s.WithKey("hld_"+strings.Repeat("A", 43), ""), "GET", "/v1/audit", nil, nil, 401, "unauthenticated", ""},
			{"malformed key", s.WithKey("not-a-key", ""), "GET", "/v1/audit", nil, nil, 401, "unauthenticated", ""},
			{"key in X-API-Key works", s.Anonymous(), "GET", "/v1/usage", nil, []string{"X-API-Key", c.Key}, 200, "", ""},
			{"operator route without token", s.Anonymous(), "POST", "/v1/tenants", `{"name":"x"}`, nil, 401, "unauthenticated", ""},
			{"operator route with a tenant key", c, "POST", "/v1/tenants", `{"name":"x"}`, nil, 401, "unauthenticated", ""},
			{"metrics without token", s.Anonymous(), "GET", "/metrics", nil, nil, 401, "unauthenticated", ""},
			{"insufficient scope", c.KeyWithScopes("audit:read"), "POST", "/v1/sessions", `{"agent_id":"a"}`, nil, 403, "insufficient_scope", ""},
			{"unknown session", c, "GET", "/v1/sessions/ses_aaaaaaaaaaaaaaaaaaaaaaaa", nil, nil, 404, "not_found", ""},
			{"malformed session id", c, "GET", "/v1/sessions/../../etc", nil, nil, 404, "not_found", ""},
			{"unknown route", c, "GET", "/v1/nothing", nil, nil, 404, "not_found", ""},
			{"unknown session on pay", c, "POST", "/v1/payments/authorize", `{"session_id": "ses_aaaaaaaaaaaaaaaaaaaaaaaa", "amount": 1}`, nil, 404, "not_found", "session_id"},
			{"too large", c, "POST", "/v1/sessions", big, nil, 413, "payload_too_large", ""},
			{"form body", c, "POST", "/v1/sessions", `agent_id=a`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", ""},
			{"budget exceeded", c, "POST", "/v1/payments/authorize", `{"session_id": "` + ses + `", "amount": 6}`, nil, 403, "budget_exceeded", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.client.Do(tt.method, tt.path, tt.body, tt.headers...)
				if r.Status != tt.status || r.Code() != tt.code || (tt.field != "" && r.Str("field") != tt.field) {
					t.Fatalf("got %s; want %d %s field %q", truncate(r.String(), 300), tt.status, tt.code, tt.field)
				}
				if tt.status >= 400 {
					if r.Str("error") == "" || r.Str("request_id") == "" || r.Str("request_id") != r.Header.Get("X-Request-ID") {
						t.Errorf("error envelope incomplete: %s", truncate(r.String(), 300))
					}
				}
			})
		}
		// session_invalid: spending on a revoked session.
		c.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 403, "session_invalid")
		// A revoked key is refused at once.
		k := c.KeyWithScopes("audit:read")
		k.Do("GET", "/v1/audit", nil).Expect(t, 200)
		prefix := k.Key[:12]
		c.Do("DELETE", "/v1/keys/"+prefix, nil).Expect(t, 200)
		k.Do("GET", "/v1/audit", nil).Expect(t, 401, "unauthenticated")
		if r := c.Do("GET", "/v1/keys", nil); !strings.Contains(string(r.Raw), `"revoked":true`) {
			t.Errorf("key list does not show the revocation: %s", r)
		}
		c.Do("DELETE", "/v1/keys/"+prefix, nil).Expect(t, 200) // repeat is harmless
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func TestRateLimit(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("limited")
		limited := c.Do("POST", "/v1/keys", map[string]any{"name": "slow", "scopes": []string{"audit:read"}, "rate_limit": 3}).Expect(t, 201)
		k := s.WithKey(limited.Str("key"), c.Tenant)
		for i := 0; i < 3; i++ {
			r := k.Do("GET", "/v1/audit", nil).Expect(t, 200)
			if r.Header.Get("X-RateLimit-Limit") != "3" || r.Header.Get("X-RateLimit-Remaining") != fmt.Sprint(2-i) || r.Header.Get("X-RateLimit-Reset") == "" {
				t.Errorf("request %d: rate headers %v", i, r.Header)
			}
		}
		r := k.Do("GET", "/v1/audit", nil).Expect(t, 429, "rate_limited")
		if r.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		// Other keys are not limited by it.
		c.Do("GET", "/v1/audit", nil).Expect(t, 200)
	})
}

func TestSessions(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("sessions")
		s.NewTenant("bystander")
		r := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "defaults"}).Expect(t, 201)
		if fmt.Sprint(r.Body["scopes"]) != "[read browse]" || r.Num("ttl") != 3600 || r.Num("spend_limit") != 0 {
			t.Errorf("defaults: %s", r)
		}
		exp, err := time.Parse(time.RFC3339, r.Str("expires_at"))
		if err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
			t.Errorf("expires_at %q is not an hour away", r.Str("expires_at"))
		}
		id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "scoped", "scopes": []string{"write", "read:files", "spend:12.5"}}).Expect(t, 201).Str("session_id")
		g := c.Do("GET", "/v1/sessions/"+id, nil).Expect(t, 200)
		if g.Num("spend_limit") != 12.5 || g.Num("remaining_budget") != 12.5 || !g.Bool("is_valid") || g.Str("created_at") == "" {
			t.Errorf("GET session: %s", g)
		}
		checks := map[string]bool{"write": true, "write:files": true, "write:database": true, "read:files": true, "read:other": false, "read": false, "admin": false, "spend": false}
		for scope, want := range checks {
			if got := c.Do("POST", "/v1/sessions/"+id+"/check", map[string]any{"scope": scope}).Expect(t, 200).Bool("allowed"); got != want {
				t.Errorf("check %q = %v, want %v", scope, got, want)
			}
		}
		// [fix] a sibling never grants.
		sib := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "sib", "scopes": []string{"write:files"}}).Expect(t, 201).Str("session_id")
		if c.Do("POST", "/v1/sessions/"+sib+"/check", map[string]any{"scope": "write:database"}).Bool("allowed") {
			t.Error("write:files granted write:database")
		}
		// [fix] no cap, no spending.
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": sib, "amount": 0.01}).Expect(t, 403, "budget_exceeded")
		// Revocation: immediate, and a repeat is harmless.
		c.Do("DELETE", "/v1/sessions/"+id, nil).Expect(t, 200)
		c.Do("DELETE", "/v1/sessions/"+id, nil).Expect(t, 200)
		if g := c.Do("GET", "/v1/sessions/"+id, nil); g.Bool("is_valid") || g.Str("revoked_at") == "" {
			t.Errorf("after revoke: %s", g)
		}
		if c.Do("POST", "/v1/sessions/"+id+"/check", map[string]any{"scope": "write"}).Bool("allowed") {
			t.Error("a revoked session still grants scopes")
		}
		c.Do("POST", "/v1/sessions/ses_aaaaaaaaaaaaaaaaaaaaaaaa/check", map[string]any{"scope": "read"}).Expect(t, 200)
		// TTL expiry: a one-second session becomes invalid without any event.
		short := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "brief", "ttl": 1, "spend_limit": 5}).Expect(t, 201).Str("session_id")
		// The app takes no injectable clock (app.Config has none), so the
		// second passes for real: poll for its observable effect.
		waitFor(t, 5*time.Second, "the session with ttl 1 to become invalid", func() bool {
			return !c.Do("GET", "/v1/sessions/"+short, nil).Bool("is_valid")
		})
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": short, "amount": 1}).Expect(t, 403, "session_invalid")
		if r := c.Do("POST", "/v1/audit", map[string]any{"session_id": short, "action": "late"}).Expect(t, 201); !r.Bool("flagged") {
			t.Errorf("an action on an expired session was not flagged: %s", r)
		}
	})
}

func TestAuditTrail(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("trail")
		s.NewTenant("bystander")
		s1 := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "alpha", "scopes": []string{"spend:10"}}).Expect(t, 201).Str("session_id")
		s2 := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "beta", "scopes": []string{"spend:1"}}).Expect(t, 201).Str("session_id")
		for i := 0; i < 5; i++ {
			r := c.Do("POST", "/v1/audit", map[string]any{"session_id": s1, "tool": "search", "action": fmt.Sprintf("q%d", i), "details": map[string]any{"i": i}})
			r.Expect(t, 201)
			if r.Str("entry_id") == "" || r.Bool("flagged") {
				t.Errorf("log: %s", r)
			}
			// Read-your-writes: the very next query shows it.
			if q := c.Do("GET", "/v1/audit?limit=1", nil); q.Body["entries"].([]any)[0].(map[string]any)["entry_id"] != r.Str("entry_id") {
				t.Fatalf("the newest entry is not the one just logged: %s", q)
			}
		}
		over := c.Do("POST", "/v1/audit", map[string]any{"session_id": s2, "tool": "stripe", "action": "charge", "cost_usd": 2.5}).Expect(t, 201)
		if !over.Bool("flagged") || !strings.Contains(over.Str("flag_reason"), "budget") {
			t.Errorf("a cost over the cap was not flagged: %s", over)
		}
		if g := c.Do("GET", "/v1/sessions/"+s2, nil); g.Num("spent") != 2.5 {
			t.Errorf("cost_usd did not count toward spend: %s", g)
		}
		filters := map[string]int{
			"?session_id=" + s1: 6, "?agent_id=beta": 2, "?tool=search": 5, "?tool=stripe": 1, "?flagged=true": 1,
			"?since=2000-01-01": 10, "?until=2000-01-01": 0,
		}
		for q, want := range filters {
			if r := c.Do("GET", "/v1/audit"+q, nil).Expect(t, 200); int(r.Num("count")) != want {
				t.Errorf("GET /v1/audit%s: %v entries, want %d", q, r.Num("count"), want)
			}
		}
		// Entries carry their chain hashes; pages never overlap.
		seen := map[float64]bool{}
		var prevSeq float64 = 1 << 50
		cursor := ""
		pages := 0
		for {
			r := c.Do("GET", "/v1/audit?limit=3"+cursor, nil).Expect(t, 200)
			pages++
			for _, e := range r.Body["entries"].([]any) {
				m := e.(map[string]any)
				seq := m["seq"].(float64)
				if seen[seq] || seq >= prevSeq {
					t.Fatalf("page %d repeats or reorders seq %v", pages, seq)
				}
				seen[seq], prevSeq = true, seq
				if len(m["entry_hash"].(string)) != 64 || len(m["prev_hash"].(string)) != 64 || m["timestamp"] == "" {
					t.Errorf("entry lacks hashes or time: %v", m)
				}
			}
			next, _ := r.Body["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = "&cursor=" + next
		}
		if len(seen) != 10 || pages != 4 {
			t.Errorf("paged through %d entries in %d pages, want 10 in 4", len(seen), pages)
		}
		sp := c.Do("GET", "/v1/audit/spend?session_id="+s2, nil).Expect(t, 200)
		if sp.Num("total_usd") != 2.5 || sp.Num("action_count") != 1 || sp.Body["by_tool"].(map[string]any)["stripe"] != 2.5 {
			t.Errorf("spend: %s", sp)
		}
	})
}

func TestExport(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("export")
		s.NewTenant("bystander")
		id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "x"}).Expect(t, 201).Str("session_id")
		for i := 0; i < 4; i++ {
			c.Do("POST", "/v1/audit", map[string]any{"session_id": id, "action": fmt.Sprintf("a,\"%d\"", i)}).Expect(t, 201)
		}
		r := c.Do("GET", "/v1/audit/export?format=jsonl", nil).Expect(t, 200)
		lines := bytes.Split(bytes.TrimSpace(r.Raw), []byte("\n"))
		body := bytes.Join(lines[:len(lines)-1], []byte("\n"))
		body = append(body, '\n')
		var m struct {
			Manifest struct {
				Count    int64  `json:"count"`
				FirstSeq int64  `json:"first_seq"`
				LastSeq  int64  `json:"last_seq"`
				HeadHash string `json:"head_hash"`
				Sha256   string `json:"sha256"`
			}
		}
		if err := json.Unmarshal(lines[len(lines)-1], &m); err != nil {
			t.Fatalf("last line is not a manifest: %s", lines[len(lines)-1])
		}
		sum := sha256.Sum256(body)
		if m.Manifest.Count != 7 || m.Manifest.FirstSeq != 1 || m.Manifest.LastSeq != 7 || m.Manifest.Sha256 != hex.EncodeToString(sum[:]) || len(lines) != 8 {
			t.Errorf("manifest %+v does not match the %d lines before it", m.Manifest, len(lines)-1)
		}
		v := c.Do("GET", "/v1/audit/verify", nil)
		if m.Manifest.HeadHash != v.Str("head_hash") {
			t.Errorf("manifest head %s, verify head %s", m.Manifest.HeadHash, v.Str("head_hash"))
		}
		cr := c.Do("GET", "/v1/audit/export?format=csv", nil).Expect(t, 200)
		sc := bufio.NewScanner(bytes.NewReader(cr.Raw))
		var last string
		for sc.Scan() {
			last = sc.Text()
		}
		if !strings.HasPrefix(last, "#manifest ") {
			t.Fatalf("CSV does not end with a manifest: %q", last)
		}
		records, err := csv.NewReader(bytes.NewReader(cr.Raw[:bytes.LastIndex(cr.Raw, []byte("#manifest"))])).ReadAll()
		if err != nil || len(records) != 8 || records[0][0] != "entry_id" {
			t.Fatalf("CSV: %d records, %v", len(records), err)
		}
	})
}

func TestRequestIDAndHealth(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.Anonymous()
		if r := a.Do("GET", "/healthz", nil, "X-Request-ID", "trace-123"); r.Header.Get("X-Request-ID") != "trace-123" {
			t.Errorf("X-Request-ID not echoed: %v", r.Header)
		}
		if r := a.Do("GET", "/healthz", nil, "X-Request-ID", "bad id with spaces"); !strings.HasPrefix(r.Header.Get("X-Request-ID"), "req_") {
			t.Errorf("unsafe X-Request-ID echoed: %q", r.Header.Get("X-Request-ID"))
		}
		a.Do("GET", "/readyz", nil).Expect(t, 200)
		st := a.Do("GET", "/v1/status", nil).Expect(t, 200)
		if st.Str("status") != "ok" || len(st.Body["components"].([]any)) < 3 {
			t.Errorf("status: %s", st)
		}
		m := a.Do("GET", "/metrics", nil, "Authorization", "Bearer "+apptest.AdminToken).Expect(t, 200)
		if !strings.Contains(string(m.Raw), "haldir_http_requests_total") || !strings.Contains(string(m.Raw), "haldir_ledger_position") {
			t.Errorf("metrics:\n%s", m.Raw)
		}
		// When the store stops answering, readiness says so.
		s.App.DB.Read.Close()
		if s.App.DB.Write != s.App.DB.Read {
			s.App.DB.Write.Close()
		}
		a.Do("GET", "/readyz", nil).Expect(t, http.StatusServiceUnavailable)
	})
}

// TestRestartKeepsEverything stops a server and starts another on the same
// store: the data and the chain survive.
func TestRestartKeepsEverything(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("durable")
		id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "x", "spend_limit": 3}).Expect(t, 201).Str("session_id")
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 2}).Expect(t, 200)
		s.Stop()
		s2 := apptest.StartConfig(t, s.Backend, app.Config(s.Config))
		c2 := s2.WithKey(c.Key, c.Tenant)
		if g := c2.Do("GET", "/v1/sessions/"+id, nil).Expect(t, 200); g.Num("spent") != 2 {
			t.Errorf("after restart: %s", g)
		}
		c2.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 2}).Expect(t, 403, "budget_exceeded")
		c2.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 1}).Expect(t, 200)
		if v := c2.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
			t.Errorf("chain after restart: %s", v)
		}
	})
}
