package api_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

// replicas starts n servers on one Postgres database, each with its own
// store, pools, caches and projector, as separate replicas would have.
func replicas(t *testing.T, n int) []*apptest.Server {
	t.Helper()
	first := apptest.Start(t, "postgres")
	out := []*apptest.Server{first}
	for len(out) < n {
		out = append(out, apptest.StartConfig(t, "postgres", first.Config))
	}
	return out
}

// TestConflictsAcrossReplicasNeverAnswer500: 16 writers on one session,
// spread over three replicas on one Postgres, race audit writes and
// payments. Each replica's session cache loses version races to the
// others; a lost race is re-decided, or answered as a retryable 503 with
// Retry-After, never as a 500. Every authorised payment counts once.
func TestConflictsAcrossReplicasNeverAnswer500(t *testing.T) {
	rs := replicas(t, 3)
	a := rs[0].NewTenant("a")
	rs[0].NewTenant("bystander")
	clients := make([]*apptest.Client, len(rs))
	for i, r := range rs {
		clients[i] = r.WithKey(a.Key, a.Tenant)
	}
	ses := agentSession(t, a, "bot", 1000)
	const writers, each = 16, 15
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c := clients[(w+i)%len(clients)]
				var r *apptest.Response
				if i%2 == 0 {
					r = c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1})
				} else {
					r = c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprintf("w%d-%d", w, i)})
				}
				key := fmt.Sprint(r.Status)
				if i%2 == 0 && r.Status == 200 {
					key = "payment authorised"
				}
				if r.Status == 503 && r.Header.Get("Retry-After") == "" {
					key = "503 without Retry-After"
				}
				mu.Lock()
				outcomes[key]++
				if r.Status >= 500 && r.Status != 503 {
					t.Errorf("replica %d: %s", (w+i)%len(clients), r)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if outcomes["503 without Retry-After"] > 0 {
		t.Errorf("outcomes %v: a 503 must say when to retry", outcomes)
	}
	paid := 0
	for _, c := range clients {
		a := c.Do("GET", "/v1/audit?session_id="+ses+"&limit=1000", nil).Expect(t, 200)
		n := 0
		for _, e := range a.Body["entries"].([]any) {
			if e.(map[string]any)["type"] == "payment.authorized" {
				n++
			}
		}
		paid = n
		if got := c.Do("GET", "/v1/sessions/"+ses, nil).Expect(t, 200).Num("spent"); got != float64(n) {
			t.Errorf("%s: spent %v, but the ledger holds %d $1 authorisations", c.Base, got, n)
		}
	}
	if paid != outcomes["payment authorised"] || paid == 0 {
		t.Errorf("outcomes %v, but the ledger holds %d authorisations", outcomes, paid)
	}
	t.Logf("outcomes %v; %d payments authorised", outcomes, paid)
	if v := a.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
		t.Errorf("verify: %s", v)
	}
}

// TestReadYourWritesByPosition: a write names its ledger position in
// Haldir-Position; a read on another replica that echoes it sees the write.
// When the projections cannot keep up (here: their sessions table is
// locked), the write still answers 201, since it is durable, but says
// Haldir-Read-Your-Writes: pending instead of silently promising a read it
// cannot keep, and a read naming its position gets a retryable 503 until
// the projections reach it.
func TestReadYourWritesByPosition(t *testing.T) {
	first := apptest.Start(t, "postgres", func(c *app.Config) { c.ReadYourWritesTimeout = 300 * time.Millisecond })
	second := apptest.StartConfig(t, "postgres", first.Config)
	a := first.NewTenant("a")
	b := first.NewTenant("b")
	onSecond := second.WithKey(a.Key, a.Tenant)

	// A command off the agents' hot path answers once its read models
	// show it: no pending.
	stored := a.Do("POST", "/v1/secrets", map[string]any{"name": "k", "value": "v"}).Expect(t, 201)
	if n, err := strconv.ParseInt(stored.Header.Get("Haldir-Position"), 10, 64); err != nil || n <= 0 || stored.Header.Get("Haldir-Read-Your-Writes") != "" {
		t.Fatalf("a projected write: headers %v", stored.Header)
	}
	// A hot one answers once durable, naming its position; a read on
	// another replica that echoes it sees it.
	r := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201)
	pos := r.Header.Get("Haldir-Position")
	if n, err := strconv.ParseInt(pos, 10, 64); err != nil || n <= 0 {
		t.Fatalf("a hot write: headers %v", r.Header)
	}
	onSecond.Do("GET", "/v1/sessions/"+r.Str("session_id"), nil, "Haldir-Position", pos).Expect(t, 200)
	b.Do("GET", "/v1/sessions/"+r.Str("session_id"), nil, "Haldir-Position", pos).Expect(t, 404)
	a.Do("GET", "/v1/sessions/x", nil, "Haldir-Position", "soon").Expect(t, 400, "invalid_request")

	// Stall the projector: it cannot write the sessions read model.
	tx, err := first.App.DB.Write.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("LOCK TABLE sessions IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	r = a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201)
	id, pos := r.Str("session_id"), r.Header.Get("Haldir-Position")
	if r.Header.Get("Haldir-Read-Your-Writes") != "pending" || pos == "" {
		t.Fatalf("an unprojected write answered %s with headers %v; want Haldir-Read-Your-Writes: pending", r, r.Header)
	}
	held := onSecond.Do("GET", "/v1/sessions/"+id, nil, "Haldir-Position", pos).Expect(t, 503, "unavailable")
	if held.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", held.Header)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	onSecond.Do("GET", "/v1/sessions/"+id, nil, "Haldir-Position", pos).Expect(t, 200)
}

// TestChainBreakIsRecordedOncePerBreak: every replica that verifies a
// broken chain records the break through one command, which appends it
// only if the verification stream does not hold it yet (appending with the
// version it decided on). A per-process memory used to make each replica
// record the same break again.
func TestChainBreakIsRecordedOncePerBreak(t *testing.T) {
	rs := replicas(t, 3)
	a := rs[0].NewTenant("a")
	b := rs[0].NewTenant("b")
	ses := agentSession(t, a, "bot", 0)
	for i := 0; i < 3; i++ {
		a.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprint(i)}).Expect(t, 201)
	}
	if err := sqltest.Tamper(context.Background(), rs[0].App.DB, "UPDATE events SET payload = payload || 'x' WHERE tenant_id = ? AND seq = 3", a.Tenant); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rs[i%len(rs)].WithKey(a.Key, a.Tenant).Do("GET", "/v1/audit/verify", nil)
			if r.Status != 200 || r.Bool("verified") || r.Num("first_bad_seq") != 3 {
				t.Errorf("verify on replica %d: %s", i%len(rs), r)
			}
		}()
	}
	wg.Wait()
	var breaks int
	for _, typ := range eventTypesOfTenant(t, rs[0], a.Tenant) {
		if typ == "audit.verification_failed" {
			breaks++
		}
	}
	if breaks != 1 {
		t.Errorf("the ledger records the break %d times, want once", breaks)
	}
	if v := b.Do("GET", "/v1/audit/verify", nil); !v.Bool("verified") {
		t.Errorf("tenant b: %s", v)
	}
	for _, typ := range eventTypesOfTenant(t, rs[0], b.Tenant) {
		if typ == "audit.verification_failed" {
			t.Errorf("tenant b's ledger records a break of tenant a's chain")
		}
	}
}
