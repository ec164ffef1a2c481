package main

// The multi-process suite: three real `haldir serve` processes on one
// Postgres database, each test spreading its requests round-robin over
// them. Every invariant sold for one process must hold across replicas.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/webhooks"
)

const replicas = 3

// maxPosition returns the highest Haldir-Position among responses.
func maxPosition(rs ...*apptest.Response) string {
	var max int64
	for _, r := range rs {
		if n, err := strconv.ParseInt(r.Header.Get("Haldir-Position"), 10, 64); err == nil && n > max {
			max = n
		}
	}
	return strconv.FormatInt(max, 10)
}

// parallel runs n calls of fn concurrently, the i-th on clients[i%len].
func parallel(n int, clients []*apptest.Client, fn func(i int, c *apptest.Client) *apptest.Response) []*apptest.Response {
	out := make([]*apptest.Response, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = fn(i, clients[i%len(clients)])
		}()
	}
	wg.Wait()
	return out
}

func newSession(t *testing.T, c *apptest.Client, body map[string]any) string {
	t.Helper()
	return c.Do("POST", "/v1/sessions", body).Expect(t, 201).Str("session_id")
}

// TestReplicas runs the suite on one cluster (starting processes is the
// slow part); each subtest has its own tenants.
func TestReplicas(t *testing.T) {
	cl := apptest.StartCluster(t, replicas)
	t.Run("payments never exceed the cap", func(t *testing.T) { paymentsAcrossReplicas(t, cl) })
	t.Run("audit writes land once and every replica serves the same tree head", func(t *testing.T) { auditAcrossReplicas(t, cl) })
	t.Run("one Idempotency-Key runs once", func(t *testing.T) { idempotencyAcrossReplicas(t, cl) })
	t.Run("an approval has one decision", func(t *testing.T) { approvalAcrossReplicas(t, cl) })
	t.Run("revocations are refused on every replica at once", func(t *testing.T) { revocationsAcrossReplicas(t, cl) })
	t.Run("a rate limit holds across replicas", func(t *testing.T) { rateLimitAcrossReplicas(t, cl) })
	t.Run("proxy configuration is in force on every replica at once", func(t *testing.T) { proxyConfigAcrossReplicas(t, cl) })
	t.Run("a kill switch stops the agent on every replica at once", func(t *testing.T) { killAcrossReplicas(t, cl) })
	t.Run("an anomaly is flagged once across replicas", func(t *testing.T) { anomaliesAcrossReplicas(t, cl) })
}

func paymentsAcrossReplicas(t *testing.T, cl *apptest.Cluster) {
	a := cl.NewTenant("payer")
	cl.NewTenant("bystander")
	ses := newSession(t, a[0], map[string]any{"agent_id": "spender", "spend_limit": 10})
	rs := parallel(60, a, func(i int, c *apptest.Client) *apptest.Response {
		return c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1})
	})
	outcomes := map[string]int{}
	for _, r := range rs {
		switch {
		case r.Status == 200 && r.Bool("authorized"):
			outcomes["authorized"]++
		case r.Status == 403 && r.Code() == "budget_exceeded":
			outcomes["budget_exceeded"]++
		default:
			outcomes[r.String()]++
		}
	}
	if outcomes["authorized"] != 10 || outcomes["budget_exceeded"] != 50 || len(outcomes) != 2 {
		t.Fatalf("outcomes %v; want exactly 10 authorised and 50 budget_exceeded", outcomes)
	}
	pos := maxPosition(rs...)
	for i, c := range a {
		r := c.Do("GET", "/v1/sessions/"+ses, nil, "Haldir-Position", pos).Expect(t, 200)
		if r.Num("spent") != 10 || r.Num("remaining_budget") != 0 {
			t.Errorf("replica %d: %s; want spent 10.00", i, r)
		}
	}
}

func auditAcrossReplicas(t *testing.T, cl *apptest.Cluster) {
	a := cl.NewTenant("auditor")
	b := cl.NewTenant("other")
	ses := newSession(t, a[0], map[string]any{"agent_id": "writer"})
	rs := parallel(300, a, func(i int, c *apptest.Client) *apptest.Response {
		return c.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprintf("write-%d", i)})
	})
	want := map[string]bool{}
	for _, r := range rs {
		r.Expect(t, 201)
		want[r.Str("entry_id")] = true
	}
	if len(want) != 300 {
		t.Fatalf("%d distinct entry ids for 300 writes", len(want))
	}
	pos := maxPosition(rs...)
	var heads []string
	for i, c := range a {
		r := c.Do("GET", "/v1/audit?session_id="+ses+"&limit=1000", nil, "Haldir-Position", pos).Expect(t, 200)
		seen := map[string]int{}
		for _, e := range r.Body["entries"].([]any) {
			if m := e.(map[string]any); m["type"] == "audit.logged" {
				seen[m["entry_id"].(string)]++
			}
		}
		for id := range want {
			if seen[id] != 1 {
				t.Errorf("replica %d lists entry %s %d times", i, id, seen[id])
			}
		}
		if len(seen) != 300 {
			t.Errorf("replica %d lists %d audit entries, want 300", i, len(seen))
		}
		if v := c.Do("GET", "/v1/audit/verify", nil).Expect(t, 200); !v.Bool("verified") {
			t.Errorf("replica %d: verify %s", i, v)
		}
		heads = append(heads, string(c.Do("GET", "/v1/audit/tree-head", nil, "Haldir-Position", pos).Expect(t, 200).Raw))
	}
	for i := 1; i < len(heads); i++ {
		if heads[i] != heads[0] {
			t.Errorf("replica %d serves tree head %s; replica 0 serves %s", i, heads[i], heads[0])
		}
	}
	if r := b[1].Do("GET", "/v1/audit?limit=1000", nil, "Haldir-Position", pos).Expect(t, 200); r.Num("count") > 5 {
		t.Errorf("tenant b sees %v entries", r.Num("count"))
	}
}

func idempotencyAcrossReplicas(t *testing.T, cl *apptest.Cluster) {
	a := cl.NewTenant("retrier")
	ses := newSession(t, a[0], map[string]any{"agent_id": "bot", "spend_limit": 100})
	rs := parallel(20, a, func(i int, c *apptest.Client) *apptest.Response {
		return c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 3}, "Idempotency-Key", "pay-once")
	})
	for i, r := range rs {
		r.Expect(t, 200)
		if string(r.Raw) != string(rs[0].Raw) {
			t.Errorf("duplicate %d answered %s; the first %s", i, r.Raw, rs[0].Raw)
		}
	}
	pos := maxPosition(rs...)
	for i, c := range a {
		if got := c.Do("GET", "/v1/sessions/"+ses, nil, "Haldir-Position", pos).Expect(t, 200).Num("spent"); got != 3 {
			t.Errorf("replica %d: spent %v after 20 duplicates, want 3 (one execution)", i, got)
		}
	}
}

func approvalAcrossReplicas(t *testing.T, cl *apptest.Cluster) {
	a := cl.NewTenant("approver")
	ses := newSession(t, a[0], map[string]any{"agent_id": "bot"})
	req := a[0].Do("POST", "/v1/approvals/request", map[string]any{"session_id": ses, "tool": "stripe", "action": "charge", "amount": 900}).Expect(t, 201)
	id, pos := req.Str("request_id"), req.Header.Get("Haldir-Position")
	rs := parallel(10, a, func(i int, c *apptest.Client) *apptest.Response {
		verb := "approve"
		if i%2 == 1 {
			verb = "deny"
		}
		return c.Do("POST", "/v1/approvals/"+id+"/"+verb, map[string]any{"decided_by": fmt.Sprintf("person-%d", i)}, "Haldir-Position", pos)
	})
	won, lost := 0, 0
	for _, r := range rs {
		switch r.Status {
		case 200:
			won++
		case 409:
			lost++
		default:
			t.Errorf("decision: %s", r)
		}
	}
	if won != 1 || lost != 9 {
		t.Fatalf("%d decisions won and %d refused; want 1 and 9", won, lost)
	}
	final := maxPosition(rs...)
	var status string
	for i, c := range a {
		r := c.Do("GET", "/v1/approvals/"+id, nil, "Haldir-Position", final).Expect(t, 200)
		if i == 0 {
			status = r.Str("status")
		} else if r.Str("status") != status {
			t.Errorf("replica %d says %s, replica 0 %s", i, r.Str("status"), status)
		}
	}
}

// refusedWithin asks a replica until it refuses, and fails the test when
// it still accepts bound after the revocation's 2xx. It returns how many
// requests were accepted first (0: refused at once) and how long the
// refusal took, the first request's own duration included.
func refusedWithin(t *testing.T, what string, bound time.Duration, refused func() bool) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	accepted := 0
	for !refused() {
		accepted++
		if time.Since(start) > bound {
			t.Fatalf("%s: still accepted %v after the revocation's 2xx", what, bound)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	return accepted, time.Since(start)
}

func revocationsAcrossReplicas(t *testing.T, cl *apptest.Cluster) {
	a := cl.NewTenant("revoker")
	b := cl.NewTenant("bystander")
	const bound = 100 * time.Millisecond
	// A key: warm every replica's cache with it, revoke on replica 0.
	key := a[0].Do("POST", "/v1/keys", map[string]any{"name": "doomed", "scopes": []string{"sessions:read"}}).Expect(t, 201)
	doomed := cl.Clients(key.Str("key"), a[0].Tenant)
	for _, c := range doomed {
		c.Do("GET", "/v1/whoami", nil).Expect(t, 200)
	}
	a[0].Do("DELETE", "/v1/keys/"+key.Str("prefix"), nil).Expect(t, 200)
	for i := 1; i < replicas; i++ {
		n, lag := refusedWithin(t, fmt.Sprintf("key on replica %d", i), bound, func() bool { return doomed[i].Do("GET", "/v1/whoami", nil).Status == 401 })
		t.Logf("key revocation: replica %d accepted %d requests after it, refused within %v", i, n, lag)
	}
	// A session: revoked on replica 1, refused for payments on the others.
	ses := newSession(t, a[0], map[string]any{"agent_id": "bot", "spend_limit": 10, "scopes": []string{"read"}})
	a[2].Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1}).Expect(t, 200)
	a[1].Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
	for _, i := range []int{0, 2} {
		n, lag := refusedWithin(t, fmt.Sprintf("session on replica %d", i), bound, func() bool {
			r := a[i].Do("POST", "/v1/payments/authorize", map[string]any{"session_id": ses, "amount": 1})
			return r.Status == 403 && r.Code() == "session_invalid"
		})
		t.Logf("session revocation: replica %d accepted %d payments after it, refused within %v", i, n, lag)
	}
	// A secret: deleted on replica 2, unreadable on the others.
	reader := newSession(t, a[0], map[string]any{"agent_id": "reader", "scopes": []string{"read"}})
	a[0].Do("POST", "/v1/secrets", map[string]any{"name": "api_key", "value": "sk_live_replicas"}).Expect(t, 201)
	a[1].Do("GET", "/v1/secrets/api_key?session_id="+reader, nil).Expect(t, 200)
	a[2].Do("DELETE", "/v1/secrets/api_key", nil).Expect(t, 200)
	for _, i := range []int{0, 1} {
		n, lag := refusedWithin(t, fmt.Sprintf("secret on replica %d", i), bound, func() bool {
			return a[i].Do("GET", "/v1/secrets/api_key?session_id="+reader, nil).Status == 404
		})
		t.Logf("secret deletion: replica %d served it %d times after it, refused within %v", i, n, lag)
	}
	// Tenant b is untouched.
	b[1].Do("GET", "/v1/whoami", nil).Expect(t, 200)
}

func rateLimitAcrossReplicas(t *testing.T, cl *apptest.Cluster) {
	a := cl.NewTenant("limited")
	// A key limited to 12 requests a minute, spread over the replicas.
	k := a[0].Do("POST", "/v1/keys", map[string]any{"name": "limited", "scopes": []string{"sessions:read"}, "rate_limit": 12}).Expect(t, 201)
	limited := cl.Clients(k.Str("key"), a[0].Tenant)
	rs := parallel(30, limited, func(i int, c *apptest.Client) *apptest.Response { return c.Do("GET", "/v1/whoami", nil) })
	ok, limitedN := 0, 0
	for _, r := range rs {
		switch r.Status {
		case 200:
			ok++
		case 429:
			limitedN++
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		default:
			t.Errorf("unexpected %s", r)
		}
	}
	if ok != 12 || limitedN != 18 {
		t.Errorf("%d allowed and %d limited over %d replicas; want 12 and 18 (12 a minute across all)", ok, limitedN, replicas)
	}
}

// TestReplicaKilledUnderWrites: 16 writers write through all three
// replicas while one is killed with kill -9. Every write a replica
// acknowledged is in the ledger, the chain verifies, and the survivors go
// on answering.
func TestReplicaKilledUnderWrites(t *testing.T) {
	cl := apptest.StartCluster(t, replicas)
	a := cl.NewTenant("writer")
	cl.NewTenant("bystander")
	ses := newSession(t, a[0], map[string]any{"agent_id": "bot"})
	var mu sync.Mutex
	acked := map[string]bool{}
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := a[(w+i)%replicas].Try("POST", "/v1/audit", map[string]any{"session_id": ses, "action": fmt.Sprintf("w%d-%d", w, i)})
				if err == nil && r.Status == 201 {
					mu.Lock()
					acked[r.Str("entry_id")] = true
					mu.Unlock()
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	waitAcked := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d writes acknowledged within 60 s", got)
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
	}
	waitAcked(200)
	cl.Kill(1)
	mu.Lock()
	atKill := len(acked)
	mu.Unlock()
	waitAcked(atKill + 200) // the survivors keep acknowledging
	close(stop)
	wg.Wait()
	t.Logf("%d writes acknowledged, %d refused or cut off (those sent to the killed replica)", len(acked), failed.Load())

	store := map[string]bool{}
	after := ""
	for {
		r := a[0].Do("GET", "/v1/audit?session_id="+ses+"&limit=1000"+after, nil).Expect(t, 200)
		for _, e := range r.Body["entries"].([]any) {
			store[e.(map[string]any)["entry_id"].(string)] = true
		}
		cur, _ := r.Body["next_cursor"].(string)
		if cur == "" {
			break
		}
		after = "&cursor=" + cur
	}
	for id := range acked {
		if !store[id] {
			t.Errorf("acknowledged entry %s is not in the ledger", id)
		}
	}
	for _, i := range []int{0, 2} {
		if v := a[i].Do("GET", "/v1/audit/verify", nil).Expect(t, 200); !v.Bool("verified") {
			t.Errorf("replica %d: verify %s", i, v)
		}
	}
	cl.Restart(1)
	if v := cl.Client(1, a[0].Key, a[0].Tenant).Do("GET", "/v1/audit/verify", nil).Expect(t, 200); !v.Bool("verified") {
		t.Errorf("restarted replica: verify %s", v)
	}
}

// receiver is a webhook endpoint that verifies every delivery's signature
// and counts deliveries per webhook-id; it answers slowly so that
// deliveries are in flight when a replica dies.
type receiver struct {
	srv    *httptest.Server
	secret string
	delay  time.Duration
	mu     sync.Mutex
	got    map[string]int
	bad    int
}

func newReceiver(t *testing.T, delay time.Duration) *receiver {
	r := &receiver{got: map[string]int{}, delay: delay}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		secret := r.secret
		r.mu.Unlock()
		if err := webhooks.Verify([]string{secret}, req.Header, body, time.Now(), webhooks.DefaultTolerance); err != nil {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
			w.WriteHeader(400)
			return
		}
		time.Sleep(r.delay) // a slow receiver, on purpose
		r.mu.Lock()
		r.got[req.Header.Get(webhooks.HeaderID)]++
		r.mu.Unlock()
		w.WriteHeader(204)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// TestWebhooksAcrossReplicasWithOneKilled: every event is delivered to its
// endpoint although the replica sending some of them is killed with
// kill -9; duplicates (at-least-once) carry the same webhook-id, so a
// receiver deduplicates them, and are counted.
func TestWebhooksAcrossReplicasWithOneKilled(t *testing.T) {
	cl := apptest.StartCluster(t, replicas)
	a := cl.NewTenant("hooked")
	rcv := newReceiver(t, 2*time.Second)
	reg := a[0].Do("POST", "/v1/webhooks", map[string]any{"url": rcv.srv.URL, "events": []string{"session.revoked"}}).Expect(t, 201)
	rcv.mu.Lock()
	rcv.secret = reg.Str("secret")
	rcv.mu.Unlock()
	const n = 12
	for i := 0; i < n; i++ {
		ses := newSession(t, a[i%replicas], map[string]any{"agent_id": fmt.Sprint("bot-", i)})
		a[i%replicas].Do("DELETE", "/v1/sessions/"+ses, nil).Expect(t, 200)
	}
	// Let deliveries start, then kill a replica mid-send.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var attempts struct {
			Deliveries []json.RawMessage `json:"deliveries"`
		}
		r := a[0].Do("GET", "/v1/webhooks/deliveries?limit=100", nil).Expect(t, 200)
		json.Unmarshal(r.Raw, &attempts)
		rcv.mu.Lock()
		started := len(rcv.got)
		rcv.mu.Unlock()
		if started > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	cl.Kill(0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		rcv.mu.Lock()
		delivered := len(rcv.got)
		rcv.mu.Unlock()
		if delivered == n {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d events delivered within 90 s of the kill", delivered, n)
		case <-time.After(100 * time.Millisecond): // polling interval
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	dups := 0
	for _, c := range rcv.got {
		dups += c - 1
	}
	if rcv.bad > 0 {
		t.Errorf("%d deliveries failed signature verification", rcv.bad)
	}
	t.Logf("%d events delivered to one endpoint, %d duplicate deliveries (same webhook-id)", len(rcv.got), dups)
}
