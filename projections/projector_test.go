package projections_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func appendN(t *testing.T, s events.Store, n int, tenants ...string) {
	t.Helper()
	ctx := context.Background()
	var batch []events.Proposed
	for i := 0; i < n; i++ {
		batch = append(batch, events.Proposed{ID: events.NewID(), Tenant: tenants[i%len(tenants)], Stream: "s",
			ExpectedVersion: events.AnyVersion, Type: []string{"test.a", "test.b", "test.c"}[i%3], Payload: []byte("{}")})
		if len(batch) == 500 || i == n-1 {
			if _, err := s.Append(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// counts returns event_counts as "tenant/type" -> count.
func counts(t *testing.T, db *sqldb.DB) map[string]int64 {
	t.Helper()
	rows, err := db.Read.Query("SELECT tenant_id, type, count FROM event_counts")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var tenant, typ string
		var n int64
		if err := rows.Scan(&tenant, &typ, &n); err != nil {
			t.Fatal(err)
		}
		out[tenant+"/"+typ] = n
	}
	return out
}

// expectedCounts mirrors appendN's distribution for one call.
func expectedCounts(n int, tenants ...string) map[string]int64 {
	out := map[string]int64{}
	for i := 0; i < n; i++ {
		out[tenants[i%len(tenants)]+"/"+[]string{"test.a", "test.b", "test.c"}[i%3]]++
	}
	return out
}

func addCounts(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range a {
		out[k] += v
	}
	for k, v := range b {
		out[k] += v
	}
	return out
}

func startProjector(t *testing.T, db *sqldb.DB, s events.Store, groups ...projections.Group) *projections.Projector {
	t.Helper()
	p, err := projections.NewProjector(context.Background(), db, s, quiet, groups...)
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(context.Background())
	<-p.Running()
	t.Cleanup(func() { p.Close() })
	return p
}

func waitHead(t *testing.T, p *projections.Projector, s events.Store) {
	t.Helper()
	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
}

var countsGroup = projections.Group{Name: "counts", Handlers: []projections.Handler{projections.EventCounts{}}}

func TestProjector(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			ctx := context.Background()
			s, err := sqlstore.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			appendN(t, s, 1200, "t_a", "t_b")
			p := startProjector(t, db, s, countsGroup)
			waitHead(t, p, s)
			want := expectedCounts(1200, "t_a", "t_b")
			if diff := cmp.Diff(want, counts(t, db)); diff != "" {
				t.Fatalf("counts after catch-up (-want +got):\n%s", diff)
			}

			// Live appends while the projector runs.
			appendN(t, s, 300, "t_b", "t_c")
			waitHead(t, p, s)
			want = addCounts(want, expectedCounts(300, "t_b", "t_c"))
			if diff := cmp.Diff(want, counts(t, db)); diff != "" {
				t.Fatalf("counts after live appends (-want +got):\n%s", diff)
			}

			// A restarted projector resumes from its checkpoint and
			// counts nothing twice.
			p.Close()
			appendN(t, s, 30, "t_a")
			p2 := startProjector(t, db, s, countsGroup)
			waitHead(t, p2, s)
			want = addCounts(want, expectedCounts(30, "t_a"))
			if diff := cmp.Diff(want, counts(t, db)); diff != "" {
				t.Fatalf("counts after restart (-want +got):\n%s", diff)
			}

			diffs, pos, err := projections.Check(ctx, db, s, countsGroup, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(diffs) != 0 || pos != 1530 {
				t.Fatalf("Check = %v at %d, want no differences at 1530", diffs, pos)
			}
		})
	}
}

// flaky fails the first time it sees each of the given positions, after
// the events before them in the batch were applied, so the whole batch
// must be rolled back and delivered again.
type flaky struct {
	projections.EventCounts
	failAt map[int64]bool
	failed atomic.Int64
}

func (f *flaky) Apply(ctx context.Context, tx *projections.Tx, e *events.Event) error {
	if f.failAt[e.Position] {
		delete(f.failAt, e.Position)
		f.failed.Add(1)
		return errors.New("injected failure")
	}
	return f.EventCounts.Apply(ctx, tx, e)
}

func TestProjectorExactlyOnceAfterFailures(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			s, err := sqlstore.Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			appendN(t, s, 900, "t_a", "t_b")
			f := &flaky{failAt: map[int64]bool{7: true, 450: true, 899: true}}
			p := startProjector(t, db, s, projections.Group{Name: "counts", Handlers: []projections.Handler{f}})
			waitHead(t, p, s)
			if f.failed.Load() != 3 {
				t.Fatalf("injected %d failures, want 3", f.failed.Load())
			}
			if diff := cmp.Diff(expectedCounts(900, "t_a", "t_b"), counts(t, db)); diff != "" {
				t.Fatalf("counts after failures (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTwoProjectorsShareOneDatabase runs two projectors on one database, as
// two API replicas would; each event still counts once.
func TestTwoProjectorsShareOneDatabase(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			s, err := sqlstore.Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p1 := startProjector(t, db, s, countsGroup)
			p2 := startProjector(t, db, s, countsGroup)
			for i := 0; i < 10; i++ {
				appendN(t, s, 97, "t_a", "t_b", "t_c")
			}
			waitHead(t, p1, s)
			waitHead(t, p2, s)
			want := map[string]int64{}
			for i := 0; i < 10; i++ {
				want = addCounts(want, expectedCounts(97, "t_a", "t_b", "t_c"))
			}
			if diff := cmp.Diff(want, counts(t, db)); diff != "" {
				t.Fatalf("counts with two projectors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRebuildAndCheck(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			ctx := context.Background()
			s, err := sqlstore.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			appendN(t, s, 700, "t_a", "t_b")
			p := startProjector(t, db, s, countsGroup)
			waitHead(t, p, s)
			want := counts(t, db)

			// Corrupt the live read model: Check must say where.
			if _, err := db.Write.Exec(db.Rebind("UPDATE event_counts SET count = count + 5 WHERE tenant_id = ? AND type = ?"), "t_a", "test.a"); err != nil {
				t.Fatal(err)
			}
			diffs, _, err := projections.Check(ctx, db, s, countsGroup, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(diffs) != 1 || diffs[0].Table != "event_counts" || !strings.Contains(diffs[0].Diff, "t_a") {
				t.Fatalf("Check after corrupting a row = %+v, want one difference in event_counts", diffs)
			}

			// Rebuild repairs it while appends continue.
			done := make(chan struct{})
			go func() {
				defer close(done)
				appendN(t, s, 200, "t_c")
			}()
			var last int64
			pos, err := projections.Rebuild(ctx, db, s, countsGroup, func(done, total int64) { last = done })
			if err != nil {
				t.Fatal(err)
			}
			<-done
			if pos < 700 || last == 0 {
				t.Fatalf("Rebuild reached %d (progress %d), want at least 700", pos, last)
			}
			waitHead(t, p, s)
			want = addCounts(want, expectedCounts(200, "t_c"))
			if diff := cmp.Diff(want, counts(t, db)); diff != "" {
				t.Fatalf("counts after rebuild (-want +got):\n%s", diff)
			}
			if diffs, _, err := projections.Check(ctx, db, s, countsGroup, nil); err != nil || len(diffs) != 0 {
				t.Fatalf("Check after rebuild = %v, %v; want none", diffs, err)
			}
			// Scratch tables are gone.
			var n int
			q := "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('rebuild_event_counts', 'check_event_counts')"
			if db.Dialect == sqldb.Postgres {
				q = "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('rebuild_event_counts', 'check_event_counts')"
			}
			if err := db.Read.QueryRow(q).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%d scratch tables left behind (%v)", n, err)
			}
		})
	}
}

func TestMessageRoundTrip(t *testing.T) {
	e := events.Event{ID: events.NewID(), Tenant: "t", Stream: "s/1", Version: 3, Type: "x.y", Payload: []byte(`{"a":1}`),
		Metadata: []byte(`{"actor":"hld_x"}`), RecordedAt: time.Unix(0, 1234567890123).UTC(), Seq: 9, Position: 42,
		PrevHash: events.Hash{1, 2, 3}, Hash: events.Hash{0, 255, 7}}
	got := projections.FromMessage(projections.ToMessage(&e))
	if diff := cmp.Diff(e, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	if m := projections.ToMessage(&e); m.UUID != e.ID {
		t.Errorf("message UUID = %q, want the event id %q", m.UUID, e.ID)
	}
}

// TestTreeMatchesIndependentComputation projects many small batches of
// three tenants' events through the core group and compares every
// tenant's Merkle root with one computed leaf by leaf in memory; a replay
// in other batch sizes (Check) must agree too.
func TestTreeMatchesIndependentComputation(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, _ := b.Open(t)
			ctx := context.Background()
			s, err := sqlstore.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := startProjector(t, db, s, projections.CoreGroup)
			mem := transparency.NewMemoryStore()
			tenants := []string{"t_a", "t_b", "t_c"}
			for round := 0; round < 40; round++ {
				var batch []events.Proposed
				for i := 0; i <= round%7; i++ {
					batch = append(batch, events.Proposed{ID: events.NewID(), Tenant: tenants[(round+i)%3], Stream: "s",
						ExpectedVersion: events.AnyVersion, Type: "test.tree", Payload: []byte(fmt.Sprintf(`{"r":%d,"i":%d}`, round, i))})
				}
				recs, err := s.Append(ctx, batch...)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range recs {
					if _, err := mem.Append(ctx, e.Tenant, e.Hash); err != nil {
						t.Fatal(err)
					}
				}
			}
			waitHead(t, p, s)
			q := projections.NewQueries(db)
			for _, tenant := range tenants {
				size, err := q.TreeSize(ctx, tenant)
				if err != nil || size != mem.Size(tenant) {
					t.Fatalf("%s: projected tree size %d (%v), want %d", tenant, size, err, mem.Size(tenant))
				}
				got, err := transparency.TreeHead(ctx, q, tenant, size)
				if err != nil {
					t.Fatal(err)
				}
				want, err := transparency.TreeHead(ctx, mem, tenant, size)
				if err != nil {
					t.Fatal(err)
				}
				if got.Root != want.Root {
					t.Errorf("%s: projected root %x, computed %x", tenant, got.Root[:8], want.Root[:8])
				}
			}
			diffs, _, err := projections.Check(ctx, db, s, projections.CoreGroup, nil)
			if err != nil || len(diffs) != 0 {
				t.Fatalf("replay differs from the live core projections: %v %v", diffs, err)
			}
		})
	}
}
