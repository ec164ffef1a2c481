package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app/apptest"
)

func TestApprovalGatesAPayment(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("approvals")
		other := s.NewTenant("other")
		c.Do("POST", "/v1/approvals/rules", map[string]any{"type": "spend_over", "threshold": 100}).Expect(t, 201)
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "buyer", "spend_limit": 1000}).Expect(t, 201).Str("session_id")
		pay := map[string]any{"session_id": ses, "amount": 150, "description": "laptop"}

		// Under the threshold: no person needed.
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 50}).Expect(t, 200)
		// Over it: refused, with the request to wait for.
		r := c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 403, "approval_required")
		id := r.Str("request_id")
		if !strings.HasPrefix(id, "apr_") {
			t.Fatalf("refusal carries no request id: %s", r)
		}
		// Asking again before a decision points at the same request.
		if again := c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 403, "approval_required"); again.Str("request_id") != id {
			t.Errorf("a repeat opened another request: %s vs %s", again.Str("request_id"), id)
		}
		g := c.Do("GET", "/v1/approvals/"+id, nil).Expect(t, 200)
		if g.Str("status") != "pending" || g.Str("agent_id") != "buyer" || g.Num("amount") != 150 || g.Str("tool") != "payments" {
			t.Errorf("request: %s", g)
		}
		if p := c.Do("GET", "/v1/approvals/pending?agent_id=buyer", nil); p.Num("count") != 1 {
			t.Errorf("pending: %s", p)
		}
		// The other tenant sees and decides nothing of it.
		other.Do("GET", "/v1/approvals/"+id, nil).Expect(t, 404, "not_found")
		other.Do("POST", "/v1/approvals/"+id+"/approve", map[string]any{"decided_by": "mallory"}).Expect(t, 404, "not_found")
		if p := other.Do("GET", "/v1/approvals/pending", nil); p.Num("count") != 0 {
			t.Errorf("the other tenant lists %s", p)
		}

		c.Do("POST", "/v1/approvals/"+id+"/approve", map[string]any{"decided_by": "alice", "note": "ok for Q4"}).Expect(t, 200)
		if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "approved" || g.Str("decided_by") != "alice" || g.Str("decision_note") != "ok for Q4" {
			t.Errorf("after approval: %s", g)
		}
		// A different call (another amount) is not covered by it.
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 151, "description": "laptop"}).Expect(t, 403, "approval_required")
		// The same call succeeds exactly once.
		if ok := c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 200); !ok.Bool("authorized") {
			t.Fatalf("approved payment: %s", ok)
		}
		third := c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 403, "approval_required")
		if third.Str("request_id") == id {
			t.Error("a used approval was accepted again")
		}
		if g := c.Do("GET", "/v1/approvals/"+id, nil); g.Str("status") != "approved" || !g.Bool("used") {
			t.Errorf("after use: %s", g)
		}
		// Denied: the call stays refused and a new request opens.
		c.Do("POST", "/v1/approvals/"+third.Str("request_id")+"/deny", map[string]any{"decided_by": "bob"}).Expect(t, 200)
		fourth := c.Do("POST", "/v1/payments/authorize", pay).Expect(t, 403, "approval_required")
		if fourth.Str("request_id") == third.Str("request_id") {
			t.Error("a denied request was reused")
		}
		// A decided request cannot be decided again.
		c.Do("POST", "/v1/approvals/"+third.Str("request_id")+"/approve", map[string]any{"decided_by": "bob"}).Expect(t, 409, "conflict")
		// Every step is on the ledger.
		trail := c.Do("GET", "/v1/audit?tool=approvals&limit=100", nil)
		actions := map[string]int{}
		for _, e := range trail.Body["entries"].([]any) {
			actions[e.(map[string]any)["action"].(string)]++
		}
		want := map[string]int{"rule_added": 1, "requested": 4, "approved": 1, "consumed": 1, "denied": 1}
		if fmt.Sprint(actions) != fmt.Sprint(want) {
			t.Errorf("approval events %v, want %v", actions, want)
		}
		if g := c.Do("GET", "/v1/sessions/"+ses, nil); g.Num("spent") != 200 {
			t.Errorf("spent %v, want 200 (50 + the approved 150)", g.Num("spent"))
		}
	})
}

func TestApprovalRaceHasOneWinner(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("race")
		s.NewTenant("bystander")
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a"}).Expect(t, 201).Str("session_id")
		id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "db.drop", "action": "drop", "reason": "cleanup"}).Expect(t, 201).Str("request_id")
		var wg sync.WaitGroup
		statuses := make([]int, 20)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				verb := "approve"
				if i%2 == 1 {
					verb = "deny"
				}
				statuses[i] = c.Do("POST", "/v1/approvals/"+id+"/"+verb, map[string]any{"decided_by": fmt.Sprintf("approver-%d", i)}).Status
			}()
		}
		wg.Wait()
		wins, conflicts := 0, 0
		for _, st := range statuses {
			switch st {
			case 200:
				wins++
			case 409:
				conflicts++
			}
		}
		if wins != 1 || conflicts != 19 {
			t.Fatalf("statuses %v: want exactly one decision and 19 conflicts", statuses)
		}
		trail := c.Do("GET", "/v1/audit?tool=approvals", nil)
		decisions := strings.Count(string(trail.Raw), `"action":"approved"`) + strings.Count(string(trail.Raw), `"action":"denied"`)
		if decisions != 1 {
			t.Errorf("%d decision events on the ledger, want 1", decisions)
		}
	})
}

func TestApprovalExpiresWithoutConsent(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("expiry")
		s.NewTenant("bystander")
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a"}).Expect(t, 201).Str("session_id")
		id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "t", "ttl": 1}).Expect(t, 201).Str("request_id")
		// Long-poll: returns as soon as the status changes, which silence
		// does after a second.
		start := time.Now()
		g := c.Do("GET", "/v1/approvals/"+id+"?wait=20s", nil).Expect(t, 200)
		if g.Str("status") != "expired" {
			t.Fatalf("after the ttl: %s", g)
		}
		if time.Since(start) > 15*time.Second {
			t.Errorf("the long poll waited %s for an expiry due in 1 s", time.Since(start))
		}
		c.Do("POST", "/v1/approvals/"+id+"/approve", map[string]any{"decided_by": "late"}).Expect(t, 409, "conflict")
		// The sweeper records the expiry as an event. It runs on the real
		// clock (the app takes no injectable one), so poll for the event.
		waitFor(t, 15*time.Second, "the sweeper's approval.expired event", func() bool {
			return strings.Contains(string(c.Do("GET", "/v1/audit?tool=approvals", nil).Raw), `"action":"expired"`)
		})
		if p := c.Do("GET", "/v1/approvals/pending", nil); p.Num("count") != 0 {
			t.Errorf("an expired request is still pending: %s", p)
		}
	})
}

func TestApprovalLongPollSeesADecision(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("poll")
		s.NewTenant("bystander")
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a"}).Expect(t, 201).Str("session_id")
		id := c.Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "t"}).Expect(t, 201).Str("request_id")
		// The long poll is sent by hand so that the test sees its request
		// reach the server.
		req, err := http.NewRequest("GET", c.Base+"/v1/approvals/"+id+"?wait=30s", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.Key)
		var sent atomic.Bool
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(w httptrace.WroteRequestInfo) { sent.Store(w.Err == nil) },
		}))
		type polled struct {
			status string
			raw    []byte
			err    error
		}
		done := make(chan polled, 1)
		go func() {
			var p polled
			defer func() { done <- p }()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				p.err = err
				return
			}
			defer resp.Body.Close()
			if p.raw, p.err = io.ReadAll(resp.Body); p.err != nil {
				return
			}
			var body struct{ Status string }
			if p.err = json.Unmarshal(p.raw, &body); p.err == nil {
				p.status = body.Status
			}
		}()
		// Decide only once the poll is waiting on the request: once its
		// request has been sent (or it has already answered). The server
		// shows nothing of the handler's first read, so that is the last
		// observable step; should the decision still land before that read,
		// the poll answers the same approved status at once.
		waitFor(t, 10*time.Second, "the long poll's request to be sent", func() bool { return sent.Load() || len(done) > 0 })
		c.Do("POST", "/v1/approvals/"+id+"/approve", map[string]any{"decided_by": "alice"}).Expect(t, 200)
		select {
		case r := <-done:
			if r.err != nil || r.status != "approved" {
				t.Errorf("long poll returned %s (%v)", r.raw, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the long poll did not return within 10 s of the decision")
		}
		c.Do("GET", "/v1/approvals/"+id+"?wait=2h", nil).Expect(t, 400, "invalid_request")
	})
}

func TestApprovalRules(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		c := s.NewTenant("rules")
		s.NewTenant("bystander")
		for _, bad := range []map[string]any{
			{"type": "sometimes"}, {"type": "tool_match"}, {"type": "tool_match", "tools": []string{"["}},
			{"type": "spend_over"}, {"type": "spend_over", "threshold": -1},
		} {
			c.Do("POST", "/v1/approvals/rules", bad).Expect(t, 400, "invalid_request")
		}
		c.Do("POST", "/v1/approvals/rules", map[string]any{"type": "tool_match", "tools": []string{"pay*"}}).Expect(t, 201)
		if r := c.Do("GET", "/v1/approvals/rules", nil); r.Num("count") != 1 {
			t.Errorf("rules: %s", r)
		}
		ses := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": "a", "spend_limit": 5}).Expect(t, 201).Str("session_id")
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 403, "approval_required")
		// A revoked session is refused without asking anyone.
		c.Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
		c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 403, "session_invalid")
	})
}
