package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/webhooks"
)

// receiver is a real HTTP endpoint that verifies every signature.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret []string
	status func(id string, attempt int) int
	seen   map[string]int // webhook-id -> requests
	ok     map[string]int // webhook-id -> 2xx answers
	bodies map[string]map[string]any
	sigs   map[string]string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, seen: map[string]int{}, ok: map[string]int{}, bodies: map[string]map[string]any{}, sigs: map[string]string{},
		status: func(string, int) int { return 200 }}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id := req.Header.Get(webhooks.HeaderID)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := webhooks.Verify(r.secret, req.Header, body, time.Now(), webhooks.DefaultTolerance); err != nil {
			t.Errorf("delivery %s: signature does not verify: %v", id, err)
			w.WriteHeader(400)
			return
		}
		r.seen[id]++
		code := r.status(id, r.seen[id])
		if code/100 == 2 {
			r.ok[id]++
			var m map[string]any
			json.Unmarshal(body, &m)
			r.bodies[id] = m
			r.sigs[id] = req.Header.Get(webhooks.HeaderSignature)
		}
		w.WriteHeader(code)
		io.WriteString(w, "receiver says: <script>alert(1)</script>")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setSecrets(s ...string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

// types returns the event types delivered successfully.
func (r *receiver) types() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, b := range r.bodies {
		out[b["type"].(string)]++
	}
	return out
}

// waitFor polls cond until it holds, failing the test after 30 s with what
// and the event types delivered by then.
func (r *receiver) waitFor(what string, cond func() bool) {
	r.t.Helper()
	if !eventually(30*time.Second, cond) {
		r.t.Fatalf("timed out waiting for %s; delivered %v", what, r.types())
	}
}

func register(t *testing.T, c *apptest.Client, r *receiver, events ...string) string {
	t.Helper()
	body := map[string]any{"url": r.srv.URL + "/hook", "name": "test"}
	if events != nil {
		body["events"] = events
	}
	res := c.Do("POST", "/v1/webhooks", body).Expect(t, 201)
	if !strings.HasPrefix(res.Str("secret"), "whsec_") {
		t.Fatalf("register: %s", res)
	}
	r.setSecrets(res.Str("secret"))
	return res.Str("webhook_id")
}

var fastRetry = webhooks.Backoff{Base: 20 * time.Millisecond, Max: 100 * time.Millisecond, MaxAttempts: 20}

func withFastRetry(cfg *app.Config) { cfg.WebhookRetry = fastRetry }

// TestWebhooksDeliverEveryEvent: approvals requested, approved, denied and
// expired, a payment denied, a session revoked and a broken chain all reach
// a real receiver, signed; a filter selects; the other tenant's endpoint
// hears nothing of it.
func TestWebhooksDeliverEveryEvent(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			s := apptest.Start(t, backend, withFastRetry)
			a, b := s.NewTenant("a"), s.NewTenant("b")
			all, onlyRevoked, other := newReceiver(t), newReceiver(t), newReceiver(t)
			register(t, a, all)
			register(t, a, onlyRevoked, "session.revoked")
			register(t, b, other)

			a.Do("POST", "/v1/approvals/rules", map[string]any{"type": "spend_over", "threshold": 5}).Expect(t, 201)
			ses := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot", "spend_limit": 10}).Expect(t, 201).Str("session_id")
			r1 := a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 6}).Expect(t, 403, "approval_required").Str("request_id")
			a.Do("POST", "/v1/approvals/"+r1+"/approve", map[string]any{"decided_by": "alice"}).Expect(t, 200)
			r2 := a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 7}).Expect(t, 403, "approval_required").Str("request_id")
			a.Do("POST", "/v1/approvals/"+r2+"/deny", map[string]any{"decided_by": "bob"}).Expect(t, 200)
			a.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "t", "ttl": 1}).Expect(t, 201)
			a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 4}).Expect(t, 200)
			a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 5}).Expect(t, 200)
			a.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 2}).Expect(t, 403, "budget_exceeded")
			a.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
			// An anomaly flag (a first use) and a kill switch.
			a.Do("PUT", "/v1/anomalies/settings", map[string]any{"first_use": true}).Expect(t, 200)
			flagged := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "newcomer"}).Expect(t, 201).Str("session_id")
			a.Do("POST", "/v1/audit", map[string]any{"session_id": flagged, "tool": "search", "action": "query"}).Expect(t, 201)
			a.Do("POST", "/v1/agents/nobody/kill", nil).Expect(t, 200)
			// Break the chain and let verification find it.
			db := s.App.DB
			if err := sqltest.Tamper(context.Background(), db, "UPDATE events SET payload = payload || 'x' WHERE tenant_id = ? AND seq = 3", a.Tenant); err != nil {
				t.Fatal(err)
			}
			a.Do("GET", "/v1/audit/verify", nil).Expect(t, 200)

			want := []string{"approval.requested", "approval.approved", "approval.denied", "approval.expired", "payment.denied", "session.revoked", "audit.verification_failed",
				"anomaly.flagged", "agent.killed"}
			all.waitFor("every event type", func() bool {
				got := all.types()
				for _, w := range want {
					if got[w] == 0 {
						return false
					}
				}
				return true
			})
			onlyRevoked.waitFor("the revocation", func() bool { return onlyRevoked.types()["session.revoked"] == 1 })
			if got := onlyRevoked.types(); len(got) != 1 {
				t.Errorf("the filtered webhook received %v, want only session.revoked", got)
			}
			all.mu.Lock()
			for id, b := range all.bodies {
				if b["id"] != id || b["tenant_id"] != a.Tenant || b["data"] == nil {
					t.Errorf("delivery %s body %v", id, b)
				}
			}
			all.mu.Unlock()
			other.mu.Lock()
			if len(other.seen) != 0 {
				t.Errorf("tenant b's endpoint received tenant a's events: %v", other.seen)
			}
			other.mu.Unlock()

			// The delivery log records attempts, never the receiver's body.
			d := a.Do("GET", "/v1/webhooks/deliveries?limit=100", nil).Expect(t, 200)
			if d.Num("count") < float64(len(want)) || strings.Contains(string(d.Raw), "script") {
				t.Errorf("deliveries: %s", d.Raw)
			}
			if bd := b.Do("GET", "/v1/webhooks/deliveries", nil); bd.Num("count") != 0 {
				t.Errorf("tenant b sees tenant a's deliveries: %s", bd.Raw)
			}
			l := a.Do("GET", "/v1/webhooks", nil).Expect(t, 200)
			if l.Num("count") != 2 || strings.Contains(string(l.Raw), "whsec_") {
				t.Errorf("list: %s", l.Raw)
			}
		})
	}
}

// TestWebhookSecretRotation: during the grace period each delivery carries
// a signature by the old secret and one by the new.
func TestWebhookSecretRotation(t *testing.T) {
	s := apptest.Start(t, "sqlite", withFastRetry)
	c := s.NewTenant("rotate")
	r := newReceiver(t)
	id := register(t, c, r)
	old := r.secret[0]
	rot := c.Do("POST", "/v1/webhooks/"+id+"/rotate-secret", map[string]any{"grace_seconds": 600}).Expect(t, 200)
	fresh := rot.Str("secret")
	if fresh == old || rot.Str("secret_prev_expires_at") == "" {
		t.Fatalf("rotate: %s", rot)
	}
	r.setSecrets(old, fresh)
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "x"}).Str("session_id")
	c.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
	r.waitFor("a delivery", func() bool { return len(r.types()) > 0 })
	r.mu.Lock()
	defer r.mu.Unlock()
	for eid, sig := range r.sigs {
		if n := len(strings.Fields(sig)); n != 2 {
			t.Errorf("delivery %s carries %d signatures during the grace period, want 2", eid, n)
		}
	}
	c.Do("POST", "/v1/webhooks/whk_aaaaaaaaaaaaaaaaaaaaaaaa/rotate-secret", map[string]any{}).Expect(t, 404, "not_found")
}

// TestWebhookRetriesSurviveARestart: the receiver fails, the server stops
// mid-retries, a new server on the same store finishes the job, and each
// event is delivered exactly once as the receiver sees it.
func TestWebhookRetriesSurviveARestart(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			s := apptest.Start(t, backend, withFastRetry)
			c := s.NewTenant("restart")
			r := newReceiver(t)
			var mu sync.Mutex
			healthy := false
			r.status = func(string, int) int {
				mu.Lock()
				defer mu.Unlock()
				if healthy {
					return 204
				}
				return 503
			}
			register(t, c, r)
			for i := 0; i < 5; i++ {
				ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "x"}).Str("session_id")
				c.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
			}
			r.waitFor("failed attempts", func() bool {
				r.mu.Lock()
				defer r.mu.Unlock()
				return len(r.seen) == 5
			})
			cfg := s.Config
			s.Stop()
			mu.Lock()
			healthy = true
			mu.Unlock()
			s2 := apptest.StartConfig(t, backend, cfg)
			r.waitFor("all five delivered", func() bool { return r.types()["session.revoked"] == 5 })
			r.mu.Lock()
			for id, n := range r.ok {
				if n != 1 {
					t.Errorf("event %s was answered 2xx %d times; each must be delivered once", id, n)
				}
			}
			r.mu.Unlock()
			// The worker records an attempt once the receiver has answered it.
			waitFor(t, 20*time.Second, "the delivery log to record the failures and the successes", func() bool {
				d := s2.WithKey(c.Key, c.Tenant).Do("GET", "/v1/webhooks/deliveries?limit=1000", nil)
				return strings.Contains(string(d.Raw), `"status_code":503`) && strings.Contains(string(d.Raw), `"status_code":204`)
			})
		})
	}
}

// TestWebhookGoneDisablesTheEndpoint: a 410 answer disables the webhook.
func TestWebhookGoneDisablesTheEndpoint(t *testing.T) {
	s := apptest.Start(t, "sqlite", withFastRetry)
	c := s.NewTenant("gone")
	r := newReceiver(t)
	r.status = func(string, int) int { return 410 }
	register(t, c, r)
	ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "x"}).Str("session_id")
	c.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
	waitFor(t, 20*time.Second, "the webhook to be disabled after a 410", func() bool {
		return strings.Contains(string(c.Do("GET", "/v1/webhooks", nil).Raw), `"active":false`)
	})
	if !strings.Contains(string(c.Do("GET", "/v1/audit?tool=webhooks", nil).Raw), `"action":"disabled"`) {
		t.Error("the disabling is not on the ledger")
	}
}

// TestWebhookURLsAreGuarded: without HALDIR_ALLOW_PRIVATE_NETWORKS, private,
// loopback, link-local and metadata addresses are refused at registration.
func TestWebhookURLsAreGuarded(t *testing.T) {
	s := apptest.Start(t, "sqlite", func(cfg *app.Config) { cfg.AllowPrivateNetworks = false })
	c := s.NewTenant("ssrf")
	for _, u := range []string{"http://127.0.0.1:8080/x", "http://localhost/x", "http://10.0.0.5/x", "http://169.254.169.254/latest/meta-data",
		"http://[::1]/x", "http://192.168.1.1/x", "ftp://example.com/x", "http://user:pw@10.0.0.1/x"} {
		r := c.Do("POST", "/v1/webhooks", map[string]any{"url": u})
		if r.Status != 400 || r.Str("field") != "url" {
			t.Errorf("%s: %s; want 400 on url", u, r)
		}
	}
	if l := c.Do("GET", "/v1/webhooks", nil); l.Num("count") != 0 {
		t.Errorf("a refused webhook was registered: %s", l.Raw)
	}
}
