package webhooks_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/webhooks"
)

// openDB returns a migrated database of backend b with the webhook tables,
// and its URL (Postgres) or directory (SQLite).
func openDB(t *testing.T, b sqltest.Backend) (*sqldb.DB, string) {
	t.Helper()
	return b.Open(t) // migrations (0007_webhooks) create the tables
}

// reopen opens a second handle on the same database, as another replica
// (or the same process after a restart) would.
func reopen(t *testing.T, db *sqldb.DB, where string) *sqldb.DB {
	t.Helper()
	var (
		db2 *sqldb.DB
		err error
	)
	switch db.Dialect {
	case sqldb.SQLite:
		db2, err = sqldb.OpenSQLite(where)
	case sqldb.Postgres:
		db2, err = sqldb.OpenPostgres(context.Background(), where, 8)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	return db2
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		<-tick.C
	}
}

// reply is one scripted answer of a receiver.
type reply struct {
	status     int
	retryAfter string
	hang       bool   // block until the client gives up
	location   string // for redirects
}

// receiver is a webhook endpoint on a real HTTP server. It verifies every
// signature with webhooks.Verify, answers according to script (by how
// many requests it has seen for the webhook-id), and counts requests and
// the 2xx answers it gave per id. It fails the test on a bad signature or
// on two concurrent requests for one id.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	secrets []string
	script  func(id string, n int) reply // n counts from 1

	mu       sync.Mutex
	requests map[string]int
	ok       map[string]int
	inFlight map[string]bool
	bodies   map[string]string
}

func newReceiver(t *testing.T, secrets []string, script func(id string, n int) reply) *receiver {
	r := &receiver{t: t, secrets: secrets, script: script,
		requests: map[string]int{}, ok: map[string]int{}, inFlight: map[string]bool{}, bodies: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		r.t.Errorf("receiver: read body: %v", err)
	}
	if err := webhooks.Verify(r.secrets, req.Header, body, time.Now(), 0); err != nil {
		r.t.Errorf("receiver: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if got := req.Header.Get("content-type"); got != "application/json" {
		r.t.Errorf("receiver: content-type %q", got)
	}
	if got := req.Header.Get("user-agent"); got != webhooks.UserAgent {
		r.t.Errorf("receiver: user-agent %q", got)
	}
	id := req.Header.Get(webhooks.HeaderID)
	r.mu.Lock()
	if r.inFlight[id] {
		r.t.Errorf("receiver: two concurrent requests for %s", id)
	}
	r.inFlight[id] = true
	r.requests[id]++
	a := r.script(id, r.requests[id])
	r.bodies[id] = string(body)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight[id] = false
		r.mu.Unlock()
	}()
	if a.hang {
		<-req.Context().Done()
		return
	}
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	if a.location != "" {
		w.Header().Set("Location", a.location)
	}
	if a.status >= 200 && a.status < 300 {
		r.mu.Lock()
		r.ok[id]++
		r.mu.Unlock()
	}
	w.WriteHeader(a.status)
}

// counts returns copies of the per-id request and 2xx counts.
func (r *receiver) counts() (requests, ok map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	requests, ok = map[string]int{}, map[string]int{}
	for k, v := range r.requests {
		requests[k] = v
	}
	for k, v := range r.ok {
		ok[k] = v
	}
	return requests, ok
}

// endpoints is a registration table keyed by tenant and webhook id.
type endpoints struct {
	mu sync.Mutex
	m  map[[2]string]endpoint
}

type endpoint struct {
	url     string
	secrets []string
	active  bool
}

func (e *endpoints) set(tenant, webhook string, ep endpoint) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[[2]string]endpoint{}
	}
	e.m[[2]string{tenant, webhook}] = ep
}

func (e *endpoints) Endpoint(_ context.Context, tenant, webhook string) (string, []string, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep, ok := e.m[[2]string{tenant, webhook}]
	if !ok {
		return "", nil, false, nil
	}
	return ep.url, ep.secrets, ep.active, nil
}
