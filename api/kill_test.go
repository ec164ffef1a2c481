package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/haldir-dev/haldir/app/apptest"
)

func operator(s *apptest.Server, method, path string) *apptest.Response {
	return s.Anonymous().Do(method, path, map[string]any{}, "Authorization", "Bearer "+apptest.AdminToken)
}

func pay(c *apptest.Client, session string, amount float64) *apptest.Response {
	return c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": session, "amount": amount})
}

// TestKillSwitchStopsAnAgent: a kill revokes the agent's live sessions and
// refuses it new sessions, payments, secret reads and governed calls until
// unkill; other agents, other tenants and, after unkill, new sessions are
// untouched. The tenant-wide and install-wide kills stop everyone they
// cover the same way.
func TestKillSwitchStopsAnAgent(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a, b := s.NewTenant("a"), s.NewTenant("b")
		upA, upB := newUpstream(t), newUpstream(t)
		registerFiles(t, a, upA)
		registerFiles(t, b, upB)
		a.Do("POST", "/v1/secrets", map[string]any{"name": "api_key", "value": "sk_live_kill"}).Expect(t, 201)
		bot := agentSession(t, a, "bot", 10, "tool:files", "read")
		other := agentSession(t, a, "other", 10, "tool:files", "read")
		botB := agentSession(t, b, "bot", 10, "tool:files")
		proxyCall(a, bot, "files.echo", map[string]any{"message": "before"}, 0).Expect(t, 200)

		k := a.Do("POST", "/v1/agents/bot/kill", map[string]any{"reason": "looping on delete"}).Expect(t, 200)
		if !k.Bool("changed") || k.Str("scope") != "agent" || fmt.Sprint(k.Body["sessions_revoked"]) != "["+bot+"]" {
			t.Fatalf("kill: %s", k)
		}
		if again := a.Do("POST", "/v1/agents/bot/kill", nil).Expect(t, 200); again.Bool("changed") {
			t.Errorf("a second kill changed something: %s", again)
		}
		refused := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 403, "agent_killed")
		if !strings.Contains(refused.Str("error"), "looping on delete") {
			t.Errorf("the refusal does not say why: %s", refused)
		}
		if g := a.Do("GET", "/v1/sessions/"+bot, nil).Expect(t, 200); g.Str("status") != "revoked" && g.Bool("valid") {
			t.Errorf("the killed agent's session is still live: %s", g)
		}
		pay(a, bot, 1).Expect(t, 403, "agent_killed")
		proxyCall(a, bot, "files.echo", map[string]any{"message": "after-kill"}, 0).Expect(t, 403)
		a.Do("GET", "/v1/secrets/api_key?session_id="+bot, nil).Expect(t, 403)
		if upA.received("after-kill") {
			t.Error("a killed agent's call reached the upstream")
		}
		list := a.Do("GET", "/v1/kills", nil).Expect(t, 200)
		if list.Num("count") != 1 || list.Bool("tenant_killed") || list.Bool("install_killed") {
			t.Errorf("kills: %s", list)
		}

		// Another agent of the tenant, and the same agent id in tenant b.
		pay(a, other, 1).Expect(t, 200)
		proxyCall(a, other, "files.echo", map[string]any{"message": "other"}, 0).Expect(t, 200)
		proxyCall(b, botB, "files.echo", map[string]any{"message": "tenant-b"}, 0).Expect(t, 200)
		b.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201)
		if bl := b.Do("GET", "/v1/kills", nil).Expect(t, 200); bl.Num("count") != 0 {
			t.Errorf("tenant b sees tenant a's kill: %s", bl)
		}

		// Unkill: new sessions work; the killed ones stay revoked.
		u := a.Do("POST", "/v1/agents/bot/unkill", nil).Expect(t, 200)
		if !u.Bool("changed") {
			t.Errorf("unkill: %s", u)
		}
		fresh := agentSession(t, a, "bot", 10, "tool:files")
		pay(a, fresh, 1).Expect(t, 200)
		proxyCall(a, fresh, "files.echo", map[string]any{"message": "revived"}, 0).Expect(t, 200)
		pay(a, bot, 1).Expect(t, 403, "session_invalid")

		// The tenant-wide kill needs admin:write, and stops every agent.
		a.KeyWithScopes("sessions:write").Do("POST", "/v1/kill", nil).Expect(t, 403, "insufficient_scope")
		a.Do("POST", "/v1/kill", map[string]any{"reason": "incident"}).Expect(t, 200)
		a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "someone"}).Expect(t, 403, "agent_killed")
		proxyCall(b, botB, "files.echo", map[string]any{"message": "b-during-a-kill"}, 0).Expect(t, 200)
		a.Do("POST", "/v1/unkill", nil).Expect(t, 200)
		pay(a, agentSession(t, a, "other", 10), 1).Expect(t, 200)

		// The install-wide kill needs the operator token, and stops b too.
		a.Do("POST", "/v1/admin/kill", nil).Expect(t, 401)
		operator(s, "POST", "/v1/admin/kill").Expect(t, 200)
		proxyCall(b, botB, "files.echo", map[string]any{"message": "b-install-killed"}, 0).Expect(t, 403, "agent_killed")
		pay(b, botB, 1).Expect(t, 403, "agent_killed")
		if bl := b.Do("GET", "/v1/kills", nil).Expect(t, 200); !bl.Bool("install_killed") {
			t.Errorf("kills during an install-wide kill: %s", bl)
		}
		operator(s, "POST", "/v1/admin/unkill").Expect(t, 200)
		proxyCall(b, botB, "files.echo", map[string]any{"message": "b-after"}, 0).Expect(t, 200)
		if upB.received("b-install-killed") {
			t.Error("a call refused by the install-wide kill reached the upstream")
		}
		if got := trailActions(t, a, "haldir"); !containsAll(got, "agent.killed", "agent.unkilled") {
			t.Errorf("the kill is not in the trail: %v", got)
		}
	})
}

func containsAll(list []string, want ...string) bool {
	have := map[string]bool{}
	for _, s := range list {
		have[s] = true
	}
	for _, w := range want {
		if !have[w] {
			return false
		}
	}
	return true
}

// TestKillWithCallsInFlight: 50 governed calls and 50 payments of one
// agent race a kill. In the ledger, no call decided after the kill's
// position was forwarded, and no payment authorised after it stands (each
// was released and answered 403); every call the upstream saw was
// decided before the kill.
func TestKillWithCallsInFlight(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		s.NewTenant("b")
		// The upstream holds every call until the kill has been answered, so
		// that calls are in flight at every stage when it lands.
		up := newUpstream(t)
		release := make(chan struct{})
		mcp.AddTool(up.server, &mcp.Tool{Name: "hold", Description: "Holds the call."},
			func(ctx context.Context, _ *mcp.CallToolRequest, in messageIn) (*mcp.CallToolResult, any, error) {
				up.record("hold", in.Message)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "held " + in.Message}}}, nil, nil
			})
		a.Do("POST", "/v1/proxy/upstreams", map[string]any{"name": "files", "url": up.srv.URL}).Expect(t, 201)
		sessions := make([]string, 5)
		for i := range sessions {
			sessions[i] = agentSession(t, a, "bot", 1000, "tool:files")
		}
		var wg sync.WaitGroup
		calls := make([]*apptest.Response, 50)
		pays := make([]*apptest.Response, 50)
		for i := range 50 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				calls[i] = proxyCall(a, sessions[i%5], "files.hold", map[string]any{"message": fmt.Sprintf("m-%d", i)}, 0)
			}()
			go func() {
				defer wg.Done()
				pays[i] = pay(a, sessions[i%5], 1)
			}()
		}
		waitFor(t, 30*time.Second, "the first calls reaching the upstream", func() bool { return up.count("hold") >= 3 })
		a.Do("POST", "/v1/agents/bot/kill", map[string]any{"reason": "in flight"}).Expect(t, 200)
		// A second wave, sent after the kill was answered: all refused.
		late := make([]*apptest.Response, 20)
		for i := range late {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					late[i] = proxyCall(a, sessions[i%5], "files.hold", map[string]any{"message": fmt.Sprintf("late-%d", i)}, 0)
				} else {
					late[i] = pay(a, sessions[i%5], 1)
				}
			}()
		}
		close(release)
		wg.Wait()
		for i, r := range late {
			if r.Status != 403 {
				t.Errorf("request %d sent after the kill was answered: %s", i, r)
			}
			if i%2 == 0 && up.received(fmt.Sprintf("late-%d", i)) {
				t.Errorf("call late-%d, sent after the kill was answered, reached the upstream", i)
			}
		}

		forwarded, stopped, authorised, refused := 0, 0, 0, 0
		for i := range 50 {
			switch r := calls[i]; {
			case r.Status == 200:
				forwarded++
			case r.Status == 403:
				stopped++
			default:
				t.Errorf("call %d: %s", i, r)
			}
			switch r := pays[i]; {
			case r.Status == 200:
				authorised++
			case r.Status == 403:
				refused++
			default:
				t.Errorf("payment %d: %s", i, r)
			}
		}
		if up.count("hold") != forwarded {
			t.Errorf("the upstream saw %d calls; %d were answered as forwarded", up.count("hold"), forwarded)
		}

		// The ledger: positions of the kill, each call's decision and outcome,
		// each payment and release.
		// Outcomes are projected after the answer; wait until every call
		// decided has one.
		var entries []any
		waitFor(t, 30*time.Second, "every call's outcome in the audit trail", func() bool {
			entries = a.Do("GET", "/v1/audit?limit=1000", nil).Expect(t, 200).Body["entries"].([]any)
			allowed, completed := 0, 0
			for _, x := range entries {
				switch x.(map[string]any)["type"] {
				case "proxy.call_allowed":
					allowed++
				case "proxy.call_completed":
					completed++
				}
			}
			return allowed == completed
		})
		var killSeq float64
		type call struct {
			allowed   float64
			completed string // "" until its outcome; "ok" or the error
		}
		byCall := map[string]*call{}
		authorisedAt := map[string]float64{}
		released := map[string]bool{}
		for _, x := range entries {
			e := x.(map[string]any)
			var d struct {
				CallID          string `json:"call_id"`
				AuthorizationID string `json:"authorization_id"`
				Error           string `json:"error"`
			}
			raw, _ := json.Marshal(e["details"])
			json.Unmarshal(raw, &d)
			seq := e["seq"].(float64)
			switch e["type"] {
			case "agent.killed":
				killSeq = seq
			case "proxy.call_allowed":
				if byCall[d.CallID] == nil {
					byCall[d.CallID] = &call{}
				}
				byCall[d.CallID].allowed = seq
			case "proxy.call_completed":
				if byCall[d.CallID] == nil {
					byCall[d.CallID] = &call{}
				}
				byCall[d.CallID].completed = "ok"
				if d.Error != "" {
					byCall[d.CallID].completed = d.Error
				}
			case "payment.authorized":
				authorisedAt[d.AuthorizationID] = seq
			case "payment.released":
				released[d.AuthorizationID] = true
			}
		}
		if killSeq == 0 {
			t.Fatal("no agent.killed in the ledger")
		}
		ok := 0
		for id, c := range byCall {
			if c.completed == "ok" {
				ok++
			}
			if c.allowed > killSeq && c.completed == "ok" {
				t.Errorf("call %s was decided at %v, after the kill at %v, and forwarded", id, c.allowed, killSeq)
			}
		}
		if ok != forwarded {
			t.Errorf("the ledger holds %d forwarded calls; %d were answered 200", ok, forwarded)
		}
		standing := 0
		for id, at := range authorisedAt {
			if !released[id] {
				standing++
			}
			if at > killSeq && !released[id] {
				t.Errorf("payment %s was authorised at %v, after the kill at %v, and stands", id, at, killSeq)
			}
		}
		if standing != authorised {
			t.Errorf("%d payments stand in the ledger; %d were answered 200", standing, authorised)
		}
		t.Logf("kill at seq %v: %d calls forwarded, %d stopped; %d payments authorised, %d refused", killSeq, forwarded, stopped, authorised, refused)
	})
}
