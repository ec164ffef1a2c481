package api_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/vault"
)

// scopesOf returns the scopes of a key response.
func scopesOf(r *apptest.Response) []string {
	var out []string
	list, _ := r.Body["scopes"].([]any)
	for _, s := range list {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

// TestEmptyScopeListIsRefused: "scopes": [] on POST /v1/keys is a 400
// naming the field, on the bootstrap route as well as for a signed-in key,
// and mints nothing. Only an omitted (or null) scopes field gets the
// default ["*"]; a key with an empty list would otherwise have been an
// all-powerful key, able to mint more keys.
func TestEmptyScopeListIsRefused(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		// A fresh install: the unauthenticated bootstrap refuses it too,
		// and stays open.
		anon := s.Anonymous()
		if r := anon.Do("POST", "/v1/keys", `{"name":"first","scopes":[]}`); r.Status != 400 || r.Code() != "invalid_request" || r.Str("field") != "scopes" {
			t.Errorf("bootstrap with \"scopes\": []: got %s; want 400 invalid_request naming scopes", r)
		} else {
			anon.Do("POST", "/v1/keys", `{"name":"first"}`).Expect(t, 201)
		}

		a, b := s.NewTenant("keys-a"), s.NewTenant("keys-b")
		for _, c := range []*apptest.Client{a, b} {
			count := func() float64 { return c.Do("GET", "/v1/keys", nil).Expect(t, 200).Num("count") }
			before := count()
			r := c.Do("POST", "/v1/keys", `{"name":"nothing","scopes":[]}`)
			if r.Status != 400 || r.Code() != "invalid_request" || r.Str("field") != "scopes" {
				// Show what the minted key could do.
				if k := r.Str("key"); k != "" {
					minted := s.WithKey(k, c.Tenant)
					more := minted.Do("POST", "/v1/keys", map[string]any{"name": "more"})
					t.Fatalf("\"scopes\": [] got %s; want 400 invalid_request naming scopes (and the minted key minted another: %d)", r, more.Status)
				}
				t.Fatalf("\"scopes\": [] got %s; want 400 invalid_request naming scopes", r)
			}
			if after := count(); after != before {
				t.Errorf("a refused request minted a key: %v keys, was %v", after, before)
			}
			// A narrower creator gets the same refusal, not a scope error.
			c.KeyWithScopes("admin:write").Do("POST", "/v1/keys", `{"name":"nothing","scopes":[]}`).Expect(t, 400, "invalid_request")

			// Omitted and null both mean the default.
			for _, body := range []string{`{"name":"omitted"}`, `{"name":"null","scopes":null}`} {
				if got := scopesOf(c.Do("POST", "/v1/keys", body).Expect(t, 201)); !slices.Equal(got, []string{"*"}) {
					t.Errorf("%s: scopes %v, want [*]", body, got)
				}
			}
			if got := scopesOf(c.Do("POST", "/v1/keys", `{"name":"reader","scopes":["audit:read"]}`).Expect(t, 201)); !slices.Equal(got, []string{"audit:read"}) {
				t.Errorf("explicit list: scopes %v", got)
			}
			// A list holding only an empty name is no better.
			c.Do("POST", "/v1/keys", `{"name":"blank","scopes":[""]}`).Expect(t, 400, "invalid_request")
		}
	})
}

// approvalActions counts the approval events of a tenant's trail by
// action, for one session if session is not empty.
func approvalActions(t *testing.T, c *apptest.Client, session string) map[string]int {
	t.Helper()
	r := c.Do("GET", "/v1/audit?tool=approvals&limit=1000&session_id="+session, nil).Expect(t, 200)
	out := map[string]int{}
	entries, _ := r.Body["entries"].([]any)
	for _, e := range entries {
		out[fmt.Sprint(e.(map[string]any)["action"])]++
	}
	return out
}

func pendingIDs(t *testing.T, c *apptest.Client) []string {
	t.Helper()
	r := c.Do("GET", "/v1/approvals/pending", nil).Expect(t, 200)
	var ids []string
	list, _ := r.Body["requests"].([]any)
	for _, e := range list {
		ids = append(ids, fmt.Sprint(e.(map[string]any)["request_id"]))
	}
	slices.Sort(ids)
	return ids
}

// expiredSession creates a session with a one-second TTL and waits until
// it is no longer valid (the app takes no injectable clock).
func expiredSession(t *testing.T, c *apptest.Client, agent string) string {
	t.Helper()
	id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": agent, "ttl": 1}).Expect(t, 201).Str("session_id")
	waitFor(t, 10*time.Second, "the one-second session to expire", func() bool {
		r := c.Do("GET", "/v1/sessions/"+id, nil).Expect(t, 200)
		return !r.Bool("is_valid")
	})
	return id
}

// TestApprovalRequestOnDeadSessionIsRefused: a person is never asked to
// approve a call that can never run.
func TestApprovalRequestOnDeadSessionIsRefused(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a, b := s.NewTenant("dead-a"), s.NewTenant("dead-b")
		revoked := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "gone"}).Expect(t, 201).Str("session_id")
		a.Do("DELETE", "/v1/sessions/"+revoked, nil).Expect(t, 200)
		expired := expiredSession(t, a, "late")

		for name, ses := range map[string]string{"revoked": revoked, "expired": expired} {
			r := a.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "action": "drop", "reason": "cleanup"})
			if r.Status != 403 || r.Code() != "session_invalid" {
				t.Errorf("approval request on a %s session: got %s; want 403 session_invalid", name, r)
			}
			// The other tenant does not even learn that it exists.
			b.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop"}).Expect(t, 404, "not_found")
		}
		if ids := pendingIDs(t, a); len(ids) != 0 {
			t.Errorf("pending requests on dead sessions: %v", ids)
		}
		if n := approvalActions(t, a, "")["requested"]; n != 0 {
			t.Errorf("%d approval.requested events on dead sessions, want none", n)
		}
		// A live session still may ask.
		live := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "alive"}).Expect(t, 201).Str("session_id")
		a.Do("POST", "/v1/approvals/request", map[string]any{"session_id": live, "tool": "db.drop"}).Expect(t, 201)
	})
}

// TestPendingApprovalsExpireWithTheirSession: revoking a session closes
// its open requests on the ledger (approval.expired), and a session that
// ran out of time takes its requests with it at once, before any event
// says so; the other tenant's and other sessions' requests are untouched.
func TestPendingApprovalsExpireWithTheirSession(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a, b := s.NewTenant("expire-a"), s.NewTenant("expire-b")
		request := func(c *apptest.Client, ses, tool string) string {
			t.Helper()
			return c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": tool, "ttl": 3600}).Expect(t, 201).Str("request_id")
		}
		newSession := func(c *apptest.Client, agent string, ttl int) string {
			t.Helper()
			return c.Do("POST", "/v1/sessions", map[string]any{"agent_id": agent, "ttl": ttl}).Expect(t, 201).Str("session_id")
		}
		// A short session first, so that it is still valid when it asks.
		short := newSession(a, "short", 3)
		timed := request(a, short, "db.drop")
		doomed := newSession(a, "doomed", 3600)
		keeper := newSession(a, "keeper", 3600)
		other := newSession(b, "other", 3600)

		r1, r2 := request(a, doomed, "db.drop"), request(a, doomed, "db.truncate")
		approved := request(a, doomed, "db.vacuum")
		a.Do("POST", "/v1/approvals/"+approved+"/approve", map[string]any{"decided_by": "alice"}).Expect(t, 200)
		kept := request(a, keeper, "db.drop")
		theirs := request(b, other, "db.drop")

		// Revocation.
		a.Do("DELETE", "/v1/sessions/"+doomed, nil).Expect(t, 200)
		for _, id := range []string{r1, r2, approved} {
			if g := a.Do("GET", "/v1/approvals/"+id, nil).Expect(t, 200); g.Str("status") != "expired" {
				t.Errorf("request %s of a revoked session: status %q, want expired", id, g.Str("status"))
			}
		}
		a.Do("POST", "/v1/approvals/"+r1+"/approve", map[string]any{"decided_by": "late"}).Expect(t, 409, "conflict")
		a.Do("POST", "/v1/approvals/"+r2+"/deny", map[string]any{"decided_by": "late"}).Expect(t, 409, "conflict")
		// On the ledger, at once: the revocation closed all three.
		if n := approvalActions(t, a, doomed)["expired"]; n != 3 {
			t.Errorf("%d approval.expired events after the revocation, want 3 (two pending, one approved and unused)", n)
		}

		// Expiry by TTL: no event ends the session, its request still
		// ends with it.
		waitFor(t, 10*time.Second, "the three-second session to expire", func() bool {
			return !a.Do("GET", "/v1/sessions/"+short, nil).Expect(t, 200).Bool("is_valid")
		})
		if g := a.Do("GET", "/v1/approvals/"+timed, nil).Expect(t, 200); g.Str("status") != "expired" {
			t.Errorf("request of an expired session: status %q, want expired", g.Str("status"))
		}
		if ids := pendingIDs(t, a); !slices.Equal(ids, []string{kept}) {
			t.Errorf("pending after the sessions ended: %v, want only %s", ids, kept)
		}
		a.Do("POST", "/v1/approvals/"+timed+"/approve", map[string]any{"decided_by": "late"}).Expect(t, 409, "conflict")
		// The sweeper records that expiry too.
		waitFor(t, 15*time.Second, "the sweeper's approval.expired event for the expired session", func() bool {
			return approvalActions(t, a, short)["expired"] == 1
		})
		if n := approvalActions(t, a, keeper)["expired"]; n != 0 {
			t.Errorf("%d approval.expired events on a live session", n)
		}

		// Untouched: another session, another tenant.
		if g := a.Do("GET", "/v1/approvals/"+kept, nil).Expect(t, 200); g.Str("status") != "pending" {
			t.Errorf("a live session's request: %s", g)
		}
		if ids := pendingIDs(t, b); !slices.Equal(ids, []string{theirs}) {
			t.Errorf("the other tenant's pending: %v, want %s", ids, theirs)
		}
		b.Do("GET", "/v1/approvals/"+r1, nil).Expect(t, 404, "not_found")
		a.Do("POST", "/v1/approvals/"+kept+"/approve", map[string]any{"decided_by": "alice"}).Expect(t, 200)
	})
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestUnknownFieldsAreNamedInWarnings: unknown request fields are still
// accepted, but a 2xx object response names them in "warnings" (and the
// server logs them at debug level), so a typo is visible; error responses
// keep their fixed fields, and an idempotent replay repeats the body.
func TestUnknownFieldsAreNamedInWarnings(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			cfg := app.Config{AdminToken: apptest.AdminToken, Version: "test", EncryptionKey: vault.GenerateMasterKey(), AllowPrivateNetworks: true}
			cfg.SigningKey, _, _ = transparency.GenerateSigningKey("haldir-test")
			if backend == "sqlite" {
				cfg.DataDir = t.TempDir()
			} else {
				cfg.DatabaseURL = sqltest.NewPostgresDatabase(t)
			}
			var logs syncBuffer
			s := apptest.StartLogged(t, backend, cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			a, b := s.NewTenant("warn-a"), s.NewTenant("warn-b")

			warnings := func(r *apptest.Response) []string {
				var out []string
				list, _ := r.Body["warnings"].([]any)
				for _, w := range list {
					out = append(out, fmt.Sprint(w))
				}
				return out
			}
			r := a.Do("POST", "/v1/sessions", `{"agent_id":"typo","spend_limt":50}`).Expect(t, 201)
			if got, want := warnings(r), []string{`unknown field "spend_limt" ignored`}; !slices.Equal(got, want) {
				t.Errorf("warnings %q, want %q (response %s)", got, want, r)
			}
			ses := r.Str("session_id")
			if g := a.Do("GET", "/v1/sessions/"+ses, nil).Expect(t, 200); g.Num("spend_limit") != 0 {
				t.Errorf("the misspelt cap was applied: %s", g)
			}
			a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 403, "budget_exceeded")
			if !strings.Contains(logs.String(), "spend_limt") {
				t.Errorf("the unknown field was not logged at debug level")
			}

			// A correct body has no warnings key.
			ok := a.Do("POST", "/v1/sessions", `{"agent_id":"right","spend_limit":50}`).Expect(t, 201)
			if _, has := ok.Body["warnings"]; has {
				t.Errorf("a correct body got warnings: %s", ok)
			}
			// Several, sorted; nested fields are the field's business.
			r = b.Do("POST", "/v1/audit", `{"session_id":"`+b.Do("POST", "/v1/sessions", `{"agent_id":"x"}`).Expect(t, 201).Str("session_id")+
				`","action":"a","details":{"anything":1},"zeta":1,"cost":2}`).Expect(t, 201)
			if got, want := warnings(r), []string{`unknown field "cost" ignored`, `unknown field "zeta" ignored`}; !slices.Equal(got, want) {
				t.Errorf("warnings %q, want %q", got, want)
			}
			// Other routes: a field of another rule type is known to the
			// route (it reads it), a misspelt one is not.
			r = a.Do("POST", "/v1/approvals/rules", `{"type":"always","tools":["x"],"tool":"y"}`).Expect(t, 201)
			if got, want := warnings(r), []string{`unknown field "tool" ignored`}; !slices.Equal(got, want) {
				t.Errorf("rule warnings %q, want %q", got, want)
			}

			// Errors keep their fixed fields.
			e := a.Do("POST", "/v1/sessions", `{"spend_limt":50}`).Expect(t, 400, "invalid_request")
			keys := make([]string, 0, len(e.Body))
			for k := range e.Body {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, []string{"code", "error", "field", "request_id"}) {
				t.Errorf("error body fields %v: %s", keys, e)
			}

			// An idempotent replay repeats the body, warnings and all.
			body := `{"agent_id":"idem","spend_limt":5}`
			first := a.Do("POST", "/v1/sessions", body, "Idempotency-Key", "typo-1").Expect(t, 201)
			again := a.Do("POST", "/v1/sessions", body, "Idempotency-Key", "typo-1").Expect(t, 201)
			if again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(first.Raw, again.Raw) {
				t.Errorf("replay differs:\n first %s\n again %s (replayed %q)", first.Raw, again.Raw, again.Header.Get("Idempotent-Replayed"))
			}
			if len(warnings(again)) != 1 {
				t.Errorf("replay lost its warning: %s", again)
			}

			// The other tenant sees nothing of the session.
			b.Do("GET", "/v1/sessions/"+ses, nil).Expect(t, 404, "not_found")
		})
	}
}

// TestMCPTransportErrorsAreJSON: what the MCP transport refuses before any
// tool runs (no Accept, a body that is not JSON, a wrong method) answers in
// JSON, never in the go-sdk's text/plain with parser internals.
func TestMCPTransportErrorsAreJSON(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		s.NewTenant("b")
		rpc := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
		cases := []struct {
			name, body string
			headers    []string
			status     int
			jsonrpc    bool
		}{
			{"no Accept", rpc, []string{"Accept", ""}, 0, false},
			{"malformed JSON", `{"jsonrpc":"2.0","id":1,"method":"tools/list"`, []string{"Accept", "application/json, text/event-stream"}, 400, true},
			{"not an object", `[1,2`, []string{"Accept", "application/json, text/event-stream"}, 400, true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := a.Do("POST", "/mcp", tc.body, tc.headers...)
				if r.Status < 400 || (tc.status != 0 && r.Status != tc.status) {
					t.Fatalf("got %s; want a refusal", r)
				}
				if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q: %s", ct, r.Raw)
				}
				for _, internal := range []string{"unmarshal", "json:", "malformed payload", "jsonrpc message"} {
					if strings.Contains(strings.ToLower(string(r.Raw)), internal) {
						t.Errorf("the answer leaks %q: %s", internal, r.Raw)
					}
				}
				if tc.jsonrpc {
					e, _ := r.Body["error"].(map[string]any)
					if r.Body["jsonrpc"] != "2.0" || e == nil || e["code"] != float64(-32700) {
						t.Errorf("want a JSON-RPC parse error: %s", r.Raw)
					}
				} else if r.Code() == "" || r.Str("request_id") == "" {
					t.Errorf("want the error envelope: %s", r.Raw)
				}
			})
		}
		// A proper request still works.
		if r := a.Do("POST", "/mcp", rpc, "Accept", "application/json, text/event-stream"); r.Status != 200 {
			t.Errorf("a proper request: %s", r)
		}
	})
}
