package api_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/api"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/projections"
)

// detected waits until the detectors have passed every event up to the
// position r was answered at (and on to the ledger's head) and the flags
// they raised are in the ledger, then returns the tenant's flags as a read
// at that head sees them.
func detected(t *testing.T, s *apptest.Server, c *apptest.Client, r *apptest.Response) []map[string]any {
	t.Helper()
	if _, err := strconv.ParseInt(r.Header.Get(api.PositionHeader), 10, 64); err != nil {
		t.Fatalf("no %s on %s", api.PositionHeader, r)
	}
	return anomalies(t, c, s.AwaitFlags(t))
}

// anomalies lists the tenant's flags once the read models reach position.
func anomalies(t *testing.T, c *apptest.Client, position int64) []map[string]any {
	t.Helper()
	r := c.Do("GET", "/v1/anomalies", nil, api.PositionHeader, strconv.FormatInt(position, 10)).Expect(t, 200)
	out := []map[string]any{}
	for _, x := range r.Body["anomalies"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

func flagEvidence(f map[string]any) []string {
	var out []string
	for _, x := range f["evidence"].([]any) {
		out = append(out, x.(string))
	}
	return out
}

func logSame(t *testing.T, c *apptest.Client, ses string) *apptest.Response {
	t.Helper()
	return c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "tool": "files", "action": "delete", "details": map[string]any{"path": "/"}}).Expect(t, 201)
}

// TestLoopDetector: the same call more than loop_calls times in the window
// raises one flag, with those calls as evidence; as many calls do not; the
// calls after the flag in the same burst raise no second one; a tenant with
// the detectors off sees nothing.
func TestLoopDetector(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a, b := s.NewTenant("a"), s.NewTenant("b")
		a.Do("PUT", "/v1/anomalies/settings", map[string]any{"loop_calls": 5, "loop_window_seconds": 60}).Expect(t, 200)
		ses := agentSession(t, a, "looper", 0)
		sesB := agentSession(t, b, "looper", 0)
		var ids []string
		var last *apptest.Response
		for range 5 {
			last = logSame(t, a, ses)
			ids = append(ids, last.Str("entry_id"))
			logSame(t, b, sesB)
		}
		if got := detected(t, s, a, last); len(got) != 0 {
			t.Fatalf("5 calls with loop_calls 5 raised %v", got)
		}
		last = logSame(t, a, ses)
		ids = append(ids, last.Str("entry_id"))
		got := detected(t, s, a, last)
		if len(got) != 1 {
			t.Fatalf("the 6th call raised %d flags: %v", len(got), got)
		}
		f := got[0]
		if f["detector"] != "loop" || f["severity"] != "high" || f["agent_id"] != "looper" || f["session_id"] != ses || f["acknowledged"] != false {
			t.Errorf("flag: %v", f)
		}
		if diff := cmp.Diff(ids, flagEvidence(f)); diff != "" {
			t.Errorf("evidence (-the six calls +flag):\n%s", diff)
		}
		for range 3 {
			last = logSame(t, a, ses)
		}
		if got := detected(t, s, a, last); len(got) != 1 {
			t.Errorf("the same burst raised %d flags", len(got))
		}
		if got := anomalies(t, b, 0); len(got) != 0 {
			t.Errorf("tenant b, detectors off, has flags: %v", got)
		}

		// The flag is a ledger entry: flagged in the audit trail and the
		// overview, acknowledged once.
		flagged := a.Do("GET", "/v1/audit?flagged=true", nil).Expect(t, 200).Body["entries"].([]any)
		if len(flagged) != 1 || flagged[0].(map[string]any)["entry_id"] != f["entry_id"] {
			t.Errorf("flagged entries: %v", flagged)
		}
		a.KeyWithScopes("audit:read").Do("POST", "/v1/anomalies/"+f["anomaly_id"].(string)+"/ack", nil).Expect(t, 403, "insufficient_scope")
		b.Do("POST", "/v1/anomalies/"+f["anomaly_id"].(string)+"/ack", nil).Expect(t, 404)
		ack := a.Do("POST", "/v1/anomalies/"+f["anomaly_id"].(string)+"/ack", map[string]any{"note": "known script"}).Expect(t, 200)
		if !ack.Bool("changed") {
			t.Errorf("ack: %s", ack)
		}
		if again := a.Do("POST", "/v1/anomalies/"+f["anomaly_id"].(string)+"/ack", nil).Expect(t, 200); again.Bool("changed") {
			t.Errorf("a second ack changed something: %s", again)
		}
		open := a.Do("GET", "/v1/anomalies?open=true", nil).Expect(t, 200)
		if open.Num("count") != 0 {
			t.Errorf("open flags after the ack: %s", open)
		}
	})
}

// TestDenialAndSpendDetectors: more than `denials` refusals in a session,
// and spend over `spend_usd` in the window, each raise one flag at the
// event that crosses the line, and none just under it.
func TestDenialAndSpendDetectors(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		s.NewTenant("b")
		a.Do("PUT", "/v1/anomalies/settings", map[string]any{"denials": 3, "denial_window_seconds": 60, "spend_usd": 10, "spend_window_seconds": 3600}).Expect(t, 200)
		broke := agentSession(t, a, "prober", 0)
		var last *apptest.Response
		for range 3 {
			last = pay(a, broke, 1).Expect(t, 403, "budget_exceeded")
		}
		if got := detected(t, s, a, last); len(got) != 0 {
			t.Fatalf("3 denials with denials 3 raised %v", got)
		}
		last = pay(a, broke, 1).Expect(t, 403, "budget_exceeded")
		got := detected(t, s, a, last)
		if len(got) != 1 || got[0]["detector"] != "denials" || len(flagEvidence(got[0])) != 4 || got[0]["session_id"] != broke {
			t.Fatalf("the 4th denial raised %v", got)
		}

		spender := agentSession(t, a, "spender", 100)
		for _, amount := range []float64{4, 4, 2} { // 10: not over
			last = pay(a, spender, amount).Expect(t, 200)
		}
		if got := detected(t, s, a, last); len(got) != 1 {
			t.Fatalf("spend of exactly the threshold raised %v", got)
		}
		last = pay(a, spender, 0.01).Expect(t, 200)
		got = detected(t, s, a, last)
		if len(got) != 2 || got[0]["detector"] != "spend" || got[0]["agent_id"] != "spender" || len(flagEvidence(got[0])) != 4 {
			t.Fatalf("spend over the threshold raised %v", got)
		}
		last = pay(a, spender, 5).Expect(t, 200)
		if got := detected(t, s, a, last); len(got) != 2 {
			t.Errorf("more spend in the same window raised another flag: %v", got)
		}
	})
}

// TestFirstUseAndOffHoursDetectors: an agent's first use of each tool is
// flagged once; activity outside the tenant's hours is flagged once per
// agent and day.
func TestFirstUseAndOffHoursDetectors(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		s.NewTenant("b")
		now := time.Now().UTC().Hour()
		// Working hours that exclude now.
		a.Do("PUT", "/v1/anomalies/settings", map[string]any{"first_use": true, "off_hours": true,
			"start_hour": (now + 1) % 24, "end_hour": (now + 2) % 24, "timezone": "UTC"}).Expect(t, 200)
		ses := agentSession(t, a, "night-owl", 0)
		var last *apptest.Response
		for _, tool := range []string{"search", "search", "files", "search"} {
			last = a.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "tool": tool, "action": "run"}).Expect(t, 201)
		}
		got := detected(t, s, a, last)
		var detectors []string
		for _, f := range got {
			detectors = append(detectors, fmt.Sprint(f["detector"], ":", f["tool"]))
		}
		slices.Sort(detectors)
		if want := []string{"first_use:files", "first_use:search", "off_hours:search"}; !slices.Equal(detectors, want) {
			t.Errorf("flags %v, want %v", detectors, want)
		}
	})
}

// TestFlagsAreRaisedOnceUnderConcurrencyAndReplay: 40 concurrent identical
// calls raise exactly one loop flag; rebuilding the detectors and the read
// models, and recording the same flag again, change nothing.
func TestFlagsAreRaisedOnceUnderConcurrencyAndReplay(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		s.NewTenant("b")
		a.Do("PUT", "/v1/anomalies/settings", map[string]any{"loop_calls": 5, "loop_window_seconds": 60, "first_use": true}).Expect(t, 200)
		ses := agentSession(t, a, "burst", 0)
		rs := make([]*apptest.Response, 40)
		var wg sync.WaitGroup
		for i := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs[i] = logSame(t, a, ses)
			}()
		}
		wg.Wait()
		last := slices.MaxFunc(rs, func(x, y *apptest.Response) int {
			px, _ := strconv.ParseInt(x.Header.Get(api.PositionHeader), 10, 64)
			py, _ := strconv.ParseInt(y.Header.Get(api.PositionHeader), 10, 64)
			return int(px - py)
		})
		before := detected(t, s, a, last)
		count := map[string]int{}
		for _, f := range before {
			count[f["detector"].(string)]++
		}
		if count["loop"] != 1 || count["first_use"] != 1 || len(before) != 2 {
			t.Fatalf("40 concurrent calls raised %v", before)
		}

		ctx := context.Background()
		headBefore, _ := s.App.Store.Head(ctx)
		if _, err := projections.Rebuild(ctx, s.App.DB.State(), s.App.Store, projections.AnomalyGroup(domain.AnomalySettings{}), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := projections.Rebuild(ctx, s.App.DB.State(), s.App.Store, projections.CoreGroup, nil); err != nil {
			t.Fatal(err)
		}
		pending, err := s.App.Queries.PendingFlags(ctx, 10)
		if err != nil || len(pending) != 0 {
			t.Fatalf("the rebuild queued flags again: %v %v", pending, err)
		}
		for _, f := range before {
			flag := domain.AnomalyFlagged{FlagID: f["anomaly_id"].(string), Detector: f["detector"].(string), Severity: f["severity"].(string),
				AgentID: f["agent_id"].(string), SessionID: f["session_id"].(string), Tool: f["tool"].(string), Reason: f["reason"].(string), Evidence: flagEvidence(f)}
			if err := s.App.Commands.RecordFlag(ctx, a.Tenant, flag); err != nil {
				t.Fatal(err)
			}
		}
		headAfter, _ := s.App.Store.Head(ctx)
		if headAfter != headBefore {
			t.Errorf("recording the same flags again appended %d events", headAfter-headBefore)
		}
		if diff := cmp.Diff(before, anomalies(t, a, headAfter)); diff != "" {
			t.Errorf("flags after the rebuild (-before +after):\n%s", diff)
		}
	})
}

// TestAnomalySettingsAreValidated: bad settings are refused with the field
// named, and admin scopes guard them.
func TestAnomalySettingsAreValidated(t *testing.T) {
	s := apptest.Start(t, "sqlite")
	a := s.NewTenant("a")
	s.NewTenant("b")
	for body, field := range map[string]string{
		`{"loop_calls": -1}`:                          "loop_calls",
		`{"loop_calls": 5, "loop_window_seconds": 0}`: "loop_window_seconds",
		`{"spend_usd": "10"}`:                         "spend_usd",
		`{"off_hours": true, "start_hour": 8, "end_hour": 20, "timezone": "Mars/Olympus"}`: "timezone",
		`{"start_hour": 25}`: "start_hour",
	} {
		r := a.Do("PUT", "/v1/anomalies/settings", body).Expect(t, 400, "invalid_request")
		if r.Str("field") != field {
			t.Errorf("%s: field %q, want %q (%s)", body, r.Str("field"), field, r)
		}
	}
	a.KeyWithScopes("audit:read").Do("GET", "/v1/anomalies/settings", nil).Expect(t, 403, "insufficient_scope")
	got := a.Do("GET", "/v1/anomalies/settings", nil).Expect(t, 200)
	if got.Num("loop_calls") != 0 || got.Bool("first_use") {
		t.Errorf("the test server's defaults are not off: %s", got)
	}
}

// TestAutomaticKillResponse: a detector opted into the kill response stops
// the flagged agent; another agent, and a detector left on flag only, do
// not.
func TestAutomaticKillResponse(t *testing.T) {
	each(t, func(t *testing.T, s *apptest.Server) {
		a := s.NewTenant("a")
		s.NewTenant("b")
		a.Do("PUT", "/v1/anomalies/settings", map[string]any{"loop_calls": 3, "loop_window_seconds": 60, "first_use": true,
			"responses": map[string]any{"loop": "kill"}}).Expect(t, 200)
		a.Do("PUT", "/v1/anomalies/settings", map[string]any{"responses": map[string]any{"loop": "shout"}}).Expect(t, 400, "invalid_request")
		looper := agentSession(t, a, "looper", 0)
		calm := agentSession(t, a, "calm", 0)
		logSame(t, a, calm) // a first use: flag only
		var last *apptest.Response
		for range 4 {
			last = logSame(t, a, looper)
		}
		got := detected(t, s, a, last)
		if len(got) != 3 {
			t.Fatalf("flags: %v", got)
		}
		waitFor(t, 30*time.Second, "the looping agent killed", func() bool {
			return a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "looper"}).Status == 403
		})
		a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "calm"}).Expect(t, 201)
		kills := a.Do("GET", "/v1/kills", nil).Expect(t, 200)
		if kills.Num("count") != 1 {
			t.Errorf("kills: %s", kills)
		}
	})
}
