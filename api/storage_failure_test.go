package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/api"
	"github.com/haldir-dev/haldir/app"
	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// fillStore makes the store unable to write, as a full disk does, and
// returns the function that frees the space again.
//
// SQLite fails for real: VACUUM packs the file so that it has no free
// page, and max_page_count on the writer connection (SQLite's only one)
// caps it at its size, so any write that needs one page more fails with
// SQLITE_FULL, which is what SQLite answers on a full disk. Rows bigger
// than a page (bigDetails) always need a new page.
//
// Postgres cannot be made to fill a disk from a test, so every table gets
// a trigger raising SQLSTATE 53100 disk_full, the error a Postgres server
// returns to each write it cannot extend a table for.
func fillStore(t *testing.T, s *apptest.Server) (free func()) {
	t.Helper()
	db := s.App.DB
	exec := func(q string) {
		t.Helper()
		if _, err := db.Write.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if db.Dialect == sqldb.SQLite {
		// A full disk fills both files: the ledger's and the state's.
		var frees []func()
		for _, f := range []*sqldb.DB{db, db.State()} {
			if _, err := f.Write.Exec("VACUUM"); err != nil {
				t.Fatal(err)
			}
			var pages, limit int64
			if err := f.Write.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
				t.Fatal(err)
			}
			if err := f.Write.QueryRow(fmt.Sprintf("PRAGMA max_page_count = %d", pages)).Scan(&limit); err != nil || limit != pages {
				t.Fatalf("max_page_count = %d (%v), want %d", limit, err, pages)
			}
			frees = append(frees, func() {
				t.Helper()
				if err := f.Write.QueryRow("PRAGMA max_page_count = 4294967294").Scan(&limit); err != nil || limit <= pages {
					t.Fatalf("lifting max_page_count: %d, %v", limit, err)
				}
			})
		}
		if db.State() == db {
			t.Fatal("the SQLite store has no state file of its own")
		}
		return func() {
			t.Helper()
			for _, free := range frees {
				free()
			}
		}
	}
	rows, err := db.Read.Query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if !slices.Contains(tables, "events") {
		t.Fatalf("no events table among %v", tables)
	}
	exec(`CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
RAISE EXCEPTION 'could not extend file "base/16384/16385": No space left on device' USING ERRCODE = 'disk_full';
END $$`)
	for _, table := range tables {
		exec(fmt.Sprintf("CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE OR DELETE ON %q FOR EACH ROW EXECUTE FUNCTION test_disk_full()", table))
	}
	return func() {
		t.Helper()
		for _, table := range tables {
			exec(fmt.Sprintf("DROP TRIGGER test_disk_full ON %q", table))
		}
		exec("DROP FUNCTION test_disk_full()")
	}
}

// bigDetails is an audit entry's details too big to fit in any page.
var bigDetails = map[string]any{"note": strings.Repeat("x", 6000)}

// bigSession asks for a session whose event is bigger than a page.
func bigSession(agent string) map[string]any {
	scopes := make([]string, 48)
	for i := range scopes {
		scopes[i] = fmt.Sprintf("read:%03d:%s", i, strings.Repeat("s", 110))
	}
	return map[string]any{"agent_id": agent, "scopes": scopes}
}

func shortReadYourWrites(c *app.Config) { c.ReadYourWritesTimeout = 300 * time.Millisecond }

// expectUnavailable checks a refused write: 503 unavailable, Retry-After,
// and a body naming nothing of the store.
func expectUnavailable(t *testing.T, what string, r *apptest.Response) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable || r.Code() != "unavailable" {
		t.Fatalf("%s while the store cannot write: %s; want 503 unavailable", what, r)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("%s: 503 without Retry-After", what)
	}
	for k := range r.Body {
		if k != "error" && k != "code" && k != "request_id" {
			t.Errorf("%s: the error body has a field %q: %s", what, k, r.Raw)
		}
	}
	low := strings.ToLower(string(r.Raw))
	for _, leak := range []string{"sqlite", "sqlstate", "53100", "disk", "space left", "extend", "insert", "events:", "commit", "base/"} {
		if strings.Contains(low, leak) {
			t.Errorf("%s: the error body gives away %q: %s", what, leak, r.Raw)
		}
	}
}

// auditIDs returns the entry ids the audit trail of session shows.
func auditIDs(t *testing.T, c *apptest.Client, session string) map[string]bool {
	t.Helper()
	r := c.Do("GET", "/v1/audit?limit=1000&session_id="+session, nil).Expect(t, 200)
	ids := map[string]bool{}
	for _, e := range r.Body["entries"].([]any) {
		ids[e.(map[string]any)["entry_id"].(string)] = true
	}
	return ids
}

// checkNothingLost verifies the chain, that the projections equal a replay
// of the ledger, and that every acknowledged entry is readable.
func checkNothingLost(t *testing.T, s *apptest.Server, c *apptest.Client, session string, acked []string) {
	t.Helper()
	if v := c.Do("GET", "/v1/audit/verify", nil).Expect(t, 200); !v.Bool("verified") {
		t.Errorf("chain after the store recovered: %s", v)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ids := auditIDs(t, c, session)
		var missing []string
		for _, id := range acked {
			if !ids[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged entries missing from the audit trail after recovery: %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	head, err := s.App.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.App.Projector.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	diffs, _, err := projections.Check(ctx, s.App.DB.State(), s.App.Store, projections.CoreGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("projection %s differs from a replay of the ledger:\n%s", d.Table, d.Diff)
	}
}

// TestFullDiskAnswers503: while the store cannot write, writes answer 503
// unavailable with Retry-After and a body that gives nothing away; what
// was acknowledged before, during and after is all there once it can.
func TestFullDiskAnswers503(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			s := apptest.Start(t, backend, shortReadYourWrites)
			a := s.NewTenant("a")
			ses := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201).Str("session_id")
			logAction := func(action string, details map[string]any) *apptest.Response {
				body := map[string]any{"session_id": ses, "action": action, "tool": "t"}
				if details != nil {
					body["details"] = details
				}
				return a.Do("POST", "/v1/audit", body)
			}
			var acked []string
			for i := range 3 {
				acked = append(acked, logAction(fmt.Sprintf("before-%d", i), bigDetails).Expect(t, 201).Str("entry_id"))
			}

			free := fillStore(t, s)
			expectUnavailable(t, "POST /v1/audit", logAction("refused", bigDetails))
			expectUnavailable(t, "POST /v1/sessions", a.Do("POST", "/v1/sessions", bigSession("refused")))
			// With an Idempotency-Key the reservation is the first write.
			expectUnavailable(t, "POST /v1/audit with an Idempotency-Key",
				a.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": "keyed", "tool": "t", "details": bigDetails}, "Idempotency-Key", "full-disk-1"))

			// Concurrent writes of every size, sharing group commits: each
			// is durable (2xx) or refused (503), never anything else, and a
			// 2xx without the pending header is readable at once.
			var mu sync.Mutex
			var visible []string
			var wg sync.WaitGroup
			sizes := []map[string]any{nil, {"note": strings.Repeat("m", 700)}, bigDetails}
			for i := range 24 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := logAction(fmt.Sprintf("during-%d", i), sizes[i%len(sizes)])
					switch {
					case r.Status == http.StatusCreated:
						if r.Header.Get(api.PositionHeader) == "" {
							t.Errorf("a 2xx write without %s: %s", api.PositionHeader, r)
						}
						mu.Lock()
						acked = append(acked, r.Str("entry_id"))
						if r.Header.Get(api.ConsistencyHeader) != "pending" {
							visible = append(visible, r.Str("entry_id"))
						}
						mu.Unlock()
					case r.Status == http.StatusServiceUnavailable && r.Code() == "unavailable" && r.Header.Get("Retry-After") != "":
					default:
						t.Errorf("a write while the store cannot write: %s; want 201 or 503 unavailable with Retry-After", r)
					}
				}()
			}
			wg.Wait()
			ids := auditIDs(t, a, ses)
			for _, id := range visible {
				if !ids[id] {
					t.Errorf("entry %s was answered without %s: pending but is not readable", id, api.ConsistencyHeader)
				}
			}
			t.Logf("%d of 24 writes while full were acknowledged (%d visible at once)", len(acked)-3, len(visible))

			free()
			// Clients retry after Retry-After; the first retries may still
			// meet the refusal the store last saw, not for long.
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := logAction("after", bigDetails)
				if r.Status == http.StatusCreated {
					acked = append(acked, r.Str("entry_id"))
					break
				}
				expectUnavailable(t, "POST /v1/audit right after recovery", r)
				if time.Now().After(deadline) {
					t.Fatal("writes still refused 10 s after the store recovered")
				}
				time.Sleep(100 * time.Millisecond)
			}
			a.Do("POST", "/v1/sessions", bigSession("after")).Expect(t, 201)
			checkNothingLost(t, s, a, ses, acked)
		})
	}
}

// TestReadyzFollowsTheStore: /readyz is 503 while the store cannot write,
// whether an append just failed or the ledger is idle, and 200 again once
// it can.
func TestReadyzFollowsTheStore(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			s := apptest.Start(t, backend, shortReadYourWrites)
			anon := s.Anonymous()
			a := s.NewTenant("a")
			ses := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201).Str("session_id")
			logAction := func(action string) *apptest.Response {
				return a.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": action, "details": bigDetails})
			}
			var acked []string
			acked = append(acked, logAction("before").Expect(t, 201).Str("entry_id"))
			anon.Do("GET", "/readyz", nil).Expect(t, 200)

			readyBecomes := func(why string, want int) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					r := anon.Do("GET", "/readyz", nil)
					if r.Status == want {
						if want != http.StatusOK {
							if r.Bool("ready") || strings.Contains(strings.ToLower(string(r.Raw)), "sqlite") || strings.Contains(string(r.Raw), "53100") {
								t.Errorf("/readyz: %s", r)
							}
						}
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: /readyz still answers %s after 10 s; want %d", why, r, want)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}

			// A failed append: not ready at once.
			free := fillStore(t, s)
			if r := logAction("refused"); r.Status < 500 {
				t.Fatalf("POST /v1/audit while the store cannot write: %s", r)
			}
			if r := anon.Do("GET", "/readyz", nil); r.Status != http.StatusServiceUnavailable {
				t.Errorf("/readyz right after an append failed to commit: %s; want 503", r)
			}
			// Still not ready a while later: retries keep failing.
			time.Sleep(1500 * time.Millisecond)
			readyBecomes("the store still cannot write", http.StatusServiceUnavailable)
			free()
			readyBecomes("the store can write again", http.StatusOK)
			acked = append(acked, logAction("between").Expect(t, 201).Str("entry_id"))

			// An idle ledger: readiness finds out by itself.
			free = fillStore(t, s)
			readyBecomes("idle, and the store cannot write", http.StatusServiceUnavailable)
			free()
			readyBecomes("idle, and the store can write again", http.StatusOK)

			acked = append(acked, logAction("after").Expect(t, 201).Str("entry_id"))
			checkNothingLost(t, s, a, ses, acked)
		})
	}
}

// TestUnprojectedWriteAnswersPending: when the ledger takes a write but
// the read models cannot commit it, the write is still acknowledged (it is
// durable) but says so: Haldir-Read-Your-Writes: pending, and a read
// naming its position is refused with 503 until the projector, retrying,
// gets it in. Nothing is skipped.
func TestUnprojectedWriteAnswersPending(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			s := apptest.Start(t, backend, shortReadYourWrites)
			a := s.NewTenant("a")
			ses := a.Do("POST", "/v1/sessions", map[string]any{"agent_id": "bot"}).Expect(t, 201).Str("session_id")
			db := s.App.DB.State() // the read models'
			block, unblock := []string{
				"CREATE TRIGGER test_block_audit BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END",
			}, []string{"DROP TRIGGER test_block_audit"}
			if db.Dialect == sqldb.Postgres {
				block = []string{
					"CREATE FUNCTION test_block_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'blocked by the test' USING ERRCODE = 'disk_full'; END $$",
					"CREATE TRIGGER test_block_audit BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION test_block_audit()",
				}
				unblock = []string{"DROP TRIGGER test_block_audit ON audit_entries", "DROP FUNCTION test_block_audit()"}
			}
			for _, q := range block {
				if _, err := db.Write.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			r := a.Do("POST", "/v1/audit", map[string]any{"session_id": ses, "action": "unprojected"}).Expect(t, 201)
			if r.Header.Get(api.ConsistencyHeader) != "pending" {
				t.Errorf("a write its read models could not take answered without %s: pending: %v", api.ConsistencyHeader, r.Header)
			}
			pos := r.Header.Get(api.PositionHeader)
			if n, err := strconv.ParseInt(pos, 10, 64); err != nil || n <= 0 {
				t.Fatalf("%s = %q", api.PositionHeader, pos)
			}
			id := r.Str("entry_id")
			expectUnavailable(t, "a read naming the unprojected position", a.Do("GET", "/v1/audit?session_id="+ses, nil, api.PositionHeader, pos))
			for _, q := range unblock {
				if _, err := db.Write.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			var got *apptest.Response
			deadline := time.Now().Add(10 * time.Second)
			for {
				got = a.Do("GET", "/v1/audit?session_id="+ses, nil, api.PositionHeader, pos)
				if got.Status == http.StatusOK || time.Now().After(deadline) {
					break
				}
			}
			got.Expect(t, 200)
			if !strings.Contains(string(got.Raw), id) {
				t.Errorf("the entry is not in the audit trail once projected: %s", got)
			}
			checkNothingLost(t, s, a, ses, []string{id})
		})
	}
}
