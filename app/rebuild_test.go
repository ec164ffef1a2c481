package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/app/apptest"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// TestRebuildMatchesTheLiveReadModels: the live projector commits small
// batches as requests arrive; a replay applies pages of thousands of events,
// where a session's creation, spend and revocation fall in one transaction
// and rows are written hundreds per statement. Both must give the same read
// models, in two tenants. After a rebuild of the core group the tables hold
// the same rows, keep every index under its own name, and serve reads.
func TestRebuildMatchesTheLiveReadModels(t *testing.T) {
	for _, backend := range apptest.Backends {
		t.Run(backend, func(t *testing.T) {
			s := apptest.Start(t, backend)
			ctx := context.Background()
			type spent struct {
				c  *apptest.Client
				id string
				// want is the spend the session must show, in cents.
				want int
			}
			var mu sync.Mutex
			var sessions []spent
			var wg sync.WaitGroup
			for _, name := range []string{"a", "b"} {
				c := s.NewTenant(name)
				for w := 0; w < 4; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 12; i++ {
							id := c.Do("POST", "/v1/sessions", map[string]any{"agent_id": fmt.Sprint("bot-", w), "scopes": []string{"read", "spend:50"},
								"spend_limit": 40, "ttl": 600}).Expect(t, 201).Str("session_id")
							want := 0
							for j := 0; j < i%4; j++ {
								c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 1.25}).Expect(t, 200)
								c.Do("POST", "/v1/audit", map[string]any{"session_id": id, "tool": "search", "action": "act", "cost_usd": 0.5}).Expect(t, 201)
								want += 175
							}
							if i%3 == 0 {
								c.Do("DELETE", "/v1/sessions/"+id, nil).Expect(t, 200)
								c.Do("POST", "/v1/payments/authorize", map[string]any{"session_id": id, "amount": 1}).Expect(t, 403)
							}
							mu.Lock()
							sessions = append(sessions, spent{c, id, want})
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
			s.AwaitFlags(t)

			db := s.App.DB.State()
			indexesBefore := indexes(t, db, projections.CoreGroup.Tables())
			if len(indexesBefore) < 5 {
				t.Fatalf("found %d indexes on the core tables, want the audit trail's at least: %v", len(indexesBefore), indexesBefore)
			}
			diffs, pos, err := projections.Check(ctx, db, s.App.Store, projections.CoreGroup, nil)
			if err != nil || len(diffs) != 0 {
				t.Fatalf("the replay differs from the live read models at %d (%v):\n%v", pos, err, diffs)
			}
			// The server keeps serving reads and writes while the rebuild
			// runs and swaps the tables.
			stop := make(chan struct{})
			served := make(chan int)
			go func() {
				n := 0
				defer func() { served <- n }()
				c := sessions[0].c
				for {
					select {
					case <-stop:
						return
					default:
					}
					c.Do("GET", "/v1/sessions/"+sessions[0].id, nil).Expect(t, 200)
					c.Do("POST", "/v1/audit", map[string]any{"session_id": sessions[0].id, "tool": "during", "action": "rebuild"}).Expect(t, 201)
					c.Do("GET", "/v1/audit?tool=during&limit=1", nil).Expect(t, 200)
					n++
				}
			}()
			_, err = projections.Rebuild(ctx, db, s.App.Store, projections.CoreGroup, nil)
			close(stop)
			if n := <-served; n == 0 {
				t.Error("no request was served while the rebuild ran")
			}
			if err != nil {
				t.Fatal(err)
			}
			s.AwaitFlags(t)
			if diffs, _, err := projections.Check(ctx, db, s.App.Store, projections.CoreGroup, nil); err != nil || len(diffs) != 0 {
				t.Fatalf("after the rebuild, a replay differs from the tables (%v):\n%v", err, diffs)
			}
			if d := cmp.Diff(indexesBefore, indexes(t, db, projections.CoreGroup.Tables())); d != "" {
				t.Errorf("indexes after the rebuild (-before +after):\n%s", d)
			}
			for _, sp := range sessions {
				r := sp.c.Do("GET", "/v1/sessions/"+sp.id, nil).Expect(t, 200)
				if got := int(r.Num("spent")*100 + 0.5); got != sp.want {
					t.Errorf("session %s spent %d cents after the rebuild, want %d", sp.id, got, sp.want)
				}
			}
			r := sessions[0].c.Do("GET", "/v1/audit?tool=search&limit=5", nil).Expect(t, 200)
			if n := int(r.Num("count")); n != 5 {
				t.Errorf("the audit trail filtered by tool gave %d entries after the rebuild, want 5", n)
			}
		})
	}
}

// indexes returns the definition of every index on tables, by name.
func indexes(t *testing.T, db *sqldb.DB, tables []string) map[string]string {
	t.Helper()
	q := "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = ?"
	if db.Dialect == sqldb.Postgres {
		q = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1"
	}
	out := map[string]string{}
	for _, table := range tables {
		rows, err := db.Read.Query(q, table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				t.Fatal(err)
			}
			out[name] = def
		}
		rows.Close()
	}
	return out
}
