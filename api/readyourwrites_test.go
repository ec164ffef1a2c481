package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/haldir-dev/haldir/api"
	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
)

// TestReadsSeeTheTenantsOwnHotWrites: the agents' hot writes (sessions,
// audit, payments) may answer once durable, before the read models take
// them (always on the embedded store; on Postgres with
// HALDIR_READ_YOUR_WRITES=position). A read right after, without any
// header, still shows them: the server holds it until its read models
// include the tenant's writes. Many writers at once, two tenants, each
// seeing its own writes and none of the other's.
func TestReadsSeeTheTenantsOwnHotWrites(t *testing.T) {
	modes := []struct {
		backend, mode string
	}{{"sqlite", ""}, {"postgres", app.ReadYourWritesPosition}, {"postgres", app.ReadYourWritesStrict}}
	for _, m := range modes {
		t.Run(m.backend+"/"+m.mode, func(t *testing.T) {
			s := apptest.Start(t, m.backend, func(c *app.Config) { c.ReadYourWrites = m.mode })
			tenants := []*apptest.Client{s.NewTenant("a"), s.NewTenant("b")}
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, other := tenants[w%2], tenants[(w+1)%2]
					for i := 0; i < 5; i++ {
						r := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": fmt.Sprintf("bot-%d", w), "spend_limit": 100})
						if r.Status != http.StatusCreated {
							t.Errorf("create: %s", r)
							return
						}
						id := r.Str("session_id")
						if g := c.Do("GET", "/v1/sessions/"+id, nil); g.Status != http.StatusOK || g.Str("session_id") != id {
							t.Errorf("a session read right after its creation: %s", g)
						}
						if g := other.Do("GET", "/v1/sessions/"+id, nil); g.Status != http.StatusNotFound {
							t.Errorf("another tenant read the session: %s", g)
						}
						if p := c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 2.5}); p.Status != http.StatusOK {
							t.Errorf("a payment right after the session's creation: %s", p)
						}
						entry := c.Do("POST", "/v1/audit", map[string]any{"session_id": id, "action": "act", "cost_usd": 1}).Str("entry_id")
						if g := c.Do("GET", "/v1/sessions/"+id, nil); g.Num("spent") != 3.5 {
							t.Errorf("spent right after a payment of 2.5 and an action costing 1: %s", g)
						}
						if g := c.Do("GET", "/v1/audit?session_id="+id, nil); !strings.Contains(string(g.Raw), entry) {
							t.Errorf("the audit trail right after the action does not hold it: %s", g)
						}
					}
				}()
			}
			wg.Wait()
			// A write answered before its read models took it says so.
			r := tenants[0].Do("POST", "/v1/sessions", map[string]any{"agent_id": "last"}).Expect(t, http.StatusCreated)
			if r.Header.Get(api.PositionHeader) == "" {
				t.Errorf("a hot write without %s: %v", api.PositionHeader, r.Header)
			}
			if m.mode == app.ReadYourWritesStrict && r.Header.Get(api.ConsistencyHeader) != "" {
				t.Errorf("a strict write answered %s: %s", api.ConsistencyHeader, r.Header.Get(api.ConsistencyHeader))
			}
		})
	}
}

// TestAReadRightAfterAGovernedCallShowsItsOutcome: a governed call answers
// without waiting for its outcome's commit (the decision was durable
// before forwarding); the tenant's next request, without any header, still
// finds the outcome in the audit trail. Eight tenants call at once, each
// counting its own outcomes.
func TestAReadRightAfterAGovernedCallShowsItsOutcome(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		up := newUpstream(t)
		var tenants []*apptest.Client
		for w := 0; w < 8; w++ {
			c := s.NewTenant(fmt.Sprint("t", w))
			registerFiles(t, c, up)
			tenants = append(tenants, c)
		}
		var wg sync.WaitGroup
		for _, c := range tenants {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ses := agentSession(t, c, "bot", 0, "tool:files")
				for i := 0; i < 5; i++ {
					r := c.Do("POST", "/v1/proxy/call", map[string]any{"tool": "files.echo", "arguments": map[string]any{"message": "hi"}, "session_id": ses})
					if r.Status != http.StatusOK {
						t.Errorf("call: %s", r)
						return
					}
					trail := c.Do("GET", "/v1/audit?limit=1000", nil)
					if got := strings.Count(string(trail.Raw), `"type":"proxy.call_completed"`); got != i+1 {
						t.Errorf("after %d calls the audit trail holds %d outcomes", i+1, got)
					}
				}
			}()
		}
		wg.Wait()
	})
}
