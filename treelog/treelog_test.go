package treelog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/projections"
	"github.com/haldir-dev/haldir/storage/checkpoints"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/transparency"
	"github.com/haldir-dev/haldir/treelog"
)

// env is a server's transparency log as the app wires it: the real ledger,
// the core projections keeping the stored Merkle hashes, and a Log over
// them.
type env struct {
	db    *sqldb.DB
	store *sqlstore.Store
	proj  *projections.Projector
	q     *projections.Queries
	skey  string
	log   *treelog.Log
	// evs is every appended event per tenant, in seq order.
	evs map[string][]events.Event
}

func newEnv(t *testing.T, b sqltest.Backend) *env {
	t.Helper()
	ctx := context.Background()
	db, _ := b.Open(t)
	s, err := sqlstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := projections.NewProjector(ctx, db, s, slog.New(slog.NewTextHandler(io.Discard, nil)), projections.CoreGroup)
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(context.Background())
	<-p.Running()
	t.Cleanup(func() { p.Close() })
	skey, _, err := transparency.GenerateSigningKey("treelog-test")
	if err != nil {
		t.Fatal(err)
	}
	q := projections.NewQueries(db)
	l, err := treelog.New(checkpoints.New(db), q, q, skey)
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: db, store: s, proj: p, q: q, skey: skey, log: l, evs: map[string][]events.Event{}}
}

// appendEvents appends n events to tenant and waits until the tree holds
// them.
func (e *env) appendEvents(t *testing.T, tenant string, n int) {
	t.Helper()
	ctx := context.Background()
	var batch []events.Proposed
	for i := range n {
		batch = append(batch, events.Proposed{ID: events.NewID(), Tenant: tenant, Stream: "s", ExpectedVersion: events.AnyVersion,
			Type: "test.treelog", Payload: []byte(fmt.Sprintf(`{"i":%d}`, len(e.evs[tenant])+i))})
	}
	recs, err := e.store.Append(ctx, batch...)
	if err != nil {
		t.Fatal(err)
	}
	e.evs[tenant] = append(e.evs[tenant], recs...)
	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.proj.WaitFor(wctx, head); err != nil {
		t.Fatal(err)
	}
}

// refRoot computes the root of the first n leaves of tenant's tree with
// tlog alone, from the event hashes as appended: the leaf of an event is
// tlog.RecordHash of its 32-byte chain hash.
func (e *env) refRoot(t *testing.T, tenant string, n int64) tlog.Hash {
	t.Helper()
	var stored hashSlice
	for i, ev := range e.evs[tenant][:n] {
		hs, err := tlog.StoredHashes(int64(i), ev.Hash[:], stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	root, err := tlog.TreeHash(n, stored)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type hashSlice []tlog.Hash

func (s hashSlice) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(s)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = s[x]
	}
	return out, nil
}

// openNote verifies a stored checkpoint with the server's verifier key, as
// an auditor would, with golang.org/x/mod/sumdb/note directly.
func openNote(t *testing.T, vkey string, msg []byte) transparency.Checkpoint {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("stored checkpoint does not verify: %v", err)
	}
	c, err := transparency.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkpointRows(t *testing.T, db *sqldb.DB, tenant string) []int64 {
	t.Helper()
	rows, err := db.Read.Query(db.Rebind("SELECT size FROM tree_checkpoints WHERE tenant_id = ? ORDER BY size"), tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	sizes := []int64{}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

type head struct {
	Tenant string
	Size   int64
	Root   string
}

func headOf(c transparency.Checkpoint) head {
	return head{c.Tenant, c.Size, hexOf(c.Root)}
}

// hexOf spells a hash in hex (tlog.Hash's String is base64).
func hexOf(h tlog.Hash) string { return fmt.Sprintf("%x", h[:]) }

// TestHeadSignsTheStoredTree grows one tenant's log in steps, through
// sizes on and off powers of two, and checks at each step that Head signs
// the root tlog computes for the appended events, stores it, and serves
// the stored note until the tree grows again.
func TestHeadSignsTheStoredTree(t *testing.T) {
	steps := []struct {
		name string
		add  int
	}{
		{"empty log", 0},
		{"one leaf", 1},
		{"two leaves", 1},
		{"three leaves", 1},
		{"full tree of eight", 5},
		{"nine leaves", 1},
		{"thirty-three leaves", 24},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			var sizes []int64
			var size int64
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) {
					if st.add > 0 {
						e.appendEvents(t, "t_a", st.add)
					}
					size += int64(st.add)
					got, err := e.log.Head(ctx, "t_a")
					if err != nil {
						t.Fatal(err)
					}
					want := head{"t_a", size, hexOf(e.refRoot(t, "t_a", size))}
					if size == 0 {
						sum := sha256.Sum256(nil)
						want.Root = fmt.Sprintf("%x", sum[:])
					}
					if diff := cmp.Diff(want, headOf(got.Checkpoint)); diff != "" {
						t.Errorf("Head checkpoint (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(want, headOf(openNote(t, e.log.VerifierKey(), got.Note))); diff != "" {
						t.Errorf("signed note (-want +got):\n%s", diff)
					}
					if got.Checkpoint.Time.IsZero() || time.Since(got.Checkpoint.Time) > time.Minute {
						t.Errorf("checkpoint time %v, want about now", got.Checkpoint.Time)
					}
					sizes = append(sizes, size)
					if diff := cmp.Diff(sizes, checkpointRows(t, e.db, "t_a")); diff != "" {
						t.Errorf("stored checkpoint sizes (-want +got):\n%s", diff)
					}
					// Without growth, Head serves the stored note as is.
					again, err := e.log.Head(ctx, "t_a")
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(again.Note, got.Note) {
						t.Error("second Head without growth returned another note")
					}
					at, found, err := e.log.At(ctx, "t_a", size)
					if err != nil || !found || !bytes.Equal(at.Note, got.Note) {
						t.Errorf("At(%d) = found %v, same note %v, err %v; want the published note", size, found, bytes.Equal(at.Note, got.Note), err)
					}
				})
			}
			// Every size published on the way stays retrievable and
			// verifiable, so an auditor can ask for proofs from any.
			for _, n := range sizes {
				at, found, err := e.log.At(ctx, "t_a", n)
				if err != nil || !found {
					t.Fatalf("At(%d) = %v, %v", n, found, err)
				}
				if at.Checkpoint.Size != n {
					t.Errorf("At(%d) returned size %d", n, at.Checkpoint.Size)
				}
			}
		})
	}
}

// TestHeadNeverGoesBack: when the projected tree reports fewer leaves than
// the newest checkpoint signed (a projection being rebuilt, a lagging
// replica), Head serves that newest checkpoint and signs nothing smaller,
// which auditors would see as a rollback.
func TestHeadNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			e.appendEvents(t, "t_a", 3)
			if _, err := e.log.Head(ctx, "t_a"); err != nil {
				t.Fatal(err)
			}
			e.appendEvents(t, "t_a", 2)
			newest, err := e.log.Head(ctx, "t_a")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.db.Write.Exec(e.db.Rebind("UPDATE tree_sizes SET size = ? WHERE tenant_id = ?"), 4, "t_a"); err != nil {
				t.Fatal(err)
			}
			got, err := e.log.Head(ctx, "t_a")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Note, newest.Note) {
				t.Errorf("Head with the tree behind = checkpoint of size %d, want the newest (size %d)", got.Checkpoint.Size, newest.Checkpoint.Size)
			}
			if diff := cmp.Diff([]int64{3, 5}, checkpointRows(t, e.db, "t_a")); diff != "" {
				t.Errorf("stored checkpoint sizes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAt(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			e.appendEvents(t, "t_a", 3)
			if _, err := e.log.Head(ctx, "t_a"); err != nil {
				t.Fatal(err)
			}
			e.appendEvents(t, "t_b", 5)
			if _, err := e.log.Head(ctx, "t_b"); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name      string
				tenant    string
				size      int64
				wantFound bool
			}{
				{name: "published", tenant: "t_a", size: 3, wantFound: true},
				{name: "never published", tenant: "t_a", size: 2},
				{name: "beyond the log", tenant: "t_a", size: 4},
				{name: "another tenant's size", tenant: "t_a", size: 5},
				{name: "the other tenant's", tenant: "t_b", size: 5, wantFound: true},
				{name: "unknown tenant", tenant: "t_c", size: 3},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					got, found, err := e.log.At(ctx, tc.tenant, tc.size)
					if err != nil {
						t.Fatal(err)
					}
					if found != tc.wantFound {
						t.Fatalf("found = %v, want %v", found, tc.wantFound)
					}
					if !found {
						return
					}
					want := head{tc.tenant, tc.size, hexOf(e.refRoot(t, tc.tenant, tc.size))}
					if diff := cmp.Diff(want, headOf(got.Checkpoint)); diff != "" {
						t.Errorf("At (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

// TestInclusion proves every event into the newest checkpoint and checks
// the proof with tlog against the signed root.
func TestInclusion(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			e.appendEvents(t, "t_a", 13)
			e.appendEvents(t, "t_b", 4) // another tenant's leaves must not show
			for _, ev := range e.evs["t_a"] {
				t.Run(fmt.Sprintf("seq %d", ev.Seq), func(t *testing.T) {
					p, h, err := e.log.Inclusion(ctx, &ev)
					if err != nil {
						t.Fatal(err)
					}
					c := openNote(t, e.log.VerifierKey(), h.Note)
					if c.Size != 13 || c.Root != e.refRoot(t, "t_a", 13) {
						t.Fatalf("proof's checkpoint is size %d root %x, want 13 and the computed root", c.Size, c.Root[:4])
					}
					if err := tlog.CheckRecord(p.Path(), c.Size, c.Root, ev.Seq-1, tlog.RecordHash(ev.Hash[:])); err != nil {
						t.Errorf("tlog.CheckRecord: %v", err)
					}
					if err := transparency.VerifyInclusion(p, ev.Seq-1, tlog.RecordHash(ev.Hash[:]), c.Size, c.Root); err != nil {
						t.Errorf("VerifyInclusion: %v", err)
					}
					if p.EntryID != ev.ID {
						t.Errorf("entry id %q, want %q", p.EntryID, ev.ID)
					}
				})
			}
			// The proof binds the leaf: it does not prove another event.
			p, h, err := e.log.Inclusion(ctx, &e.evs["t_a"][2])
			if err != nil {
				t.Fatal(err)
			}
			other := e.evs["t_a"][3]
			if err := tlog.CheckRecord(p.Path(), h.Checkpoint.Size, h.Checkpoint.Root, 2, tlog.RecordHash(other.Hash[:])); err == nil {
				t.Error("the proof for seq 3 also proves seq 4's hash")
			}
			// An event the tree does not hold yet is a conflict, not a proof.
			ahead := e.evs["t_a"][12]
			ahead.Seq = 14
			var de *domain.Error
			if _, _, err := e.log.Inclusion(ctx, &ahead); !errors.As(err, &de) || de.Code != domain.CodeConflict {
				t.Errorf("Inclusion of seq 14 in a log of 13: err = %v, want a %s error", err, domain.CodeConflict)
			}
		})
	}
}

func TestConsistency(t *testing.T) {
	const n = 21
	cases := []struct {
		name          string
		first, second int64
		wantField     string // for an invalid request
	}{
		{name: "one to all", first: 1, second: n},
		{name: "power of two to all", first: 8, second: n},
		{name: "inside the log", first: 5, second: 13},
		{name: "same size", first: 7, second: 7},
		{name: "all to all", first: n, second: n},
		{name: "first zero", first: 0, second: n, wantField: "first"},
		{name: "first negative", first: -1, second: n, wantField: "first"},
		{name: "second before first", first: 9, second: 8, wantField: "second"},
		{name: "second beyond the log", first: 1, second: n + 1, wantField: "second"},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			e.appendEvents(t, "t_a", n)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					p, err := e.log.Consistency(ctx, "t_a", tc.first, tc.second)
					if tc.wantField != "" {
						var de *domain.Error
						if !errors.As(err, &de) || de.Code != domain.CodeInvalid || de.Field != tc.wantField {
							t.Fatalf("err = %v, want %s on field %s", err, domain.CodeInvalid, tc.wantField)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					r1, r2 := e.refRoot(t, "t_a", tc.first), e.refRoot(t, "t_a", tc.second)
					want := []any{tc.first, tc.second, hexOf(r1), hexOf(r2)}
					got := []any{p.FirstSize, p.SecondSize, hexOf(tlog.Hash(p.FirstRoot)), hexOf(tlog.Hash(p.SecondRoot))}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("proof sizes and roots (-want +got):\n%s", diff)
					}
					if err := tlog.CheckTree(p.Path(), tc.second, r2, tc.first, r1); err != nil {
						t.Errorf("tlog.CheckTree: %v", err)
					}
					if tc.first < tc.second {
						// A proof from a root the log never had fails.
						forged := r1
						forged[0] ^= 1
						if err := tlog.CheckTree(p.Path(), tc.second, r2, tc.first, forged); err == nil {
							t.Error("the proof also proves a forged first root")
						}
					}
				})
			}
		})
	}
}

// TestPublishAll signs a checkpoint for each tenant whose tree grew, and
// for no internal tenant (ids starting with "_").
func TestPublishAll(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			steps := []struct {
				name      string
				grow      map[string]int
				headFirst []string // tenants whose Head is asked before PublishAll
				want      int
				wantSizes map[string][]int64
			}{
				{
					name: "nothing yet",
					want: 0,
					wantSizes: map[string][]int64{
						"t_a": {}, "t_b": {}, "_bootstrap": {},
					},
				},
				{
					name: "two tenants and an internal one grew",
					grow: map[string]int{"t_a": 3, "t_b": 2, "_bootstrap": 4},
					want: 2,
					wantSizes: map[string][]int64{
						"t_a": {3}, "t_b": {2}, "_bootstrap": {},
					},
				},
				{
					name: "nothing grew since",
					want: 0,
					wantSizes: map[string][]int64{
						"t_a": {3}, "t_b": {2}, "_bootstrap": {},
					},
				},
				{
					name: "one tenant grew",
					grow: map[string]int{"t_b": 1},
					want: 1,
					wantSizes: map[string][]int64{
						"t_a": {3}, "t_b": {2, 3}, "_bootstrap": {},
					},
				},
				{
					name:      "grown but already published by Head",
					grow:      map[string]int{"t_a": 2},
					headFirst: []string{"t_a"},
					want:      0,
					wantSizes: map[string][]int64{
						"t_a": {3, 5}, "t_b": {2, 3}, "_bootstrap": {},
					},
				},
			}
			for _, st := range steps {
				t.Run(st.name, func(t *testing.T) {
					for tenant, n := range st.grow {
						e.appendEvents(t, tenant, n)
					}
					for _, tenant := range st.headFirst {
						if _, err := e.log.Head(ctx, tenant); err != nil {
							t.Fatal(err)
						}
					}
					n, err := e.log.PublishAll(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if n != st.want {
						t.Errorf("PublishAll = %d, want %d", n, st.want)
					}
					got := map[string][]int64{}
					for tenant := range st.wantSizes {
						got[tenant] = checkpointRows(t, e.db, tenant)
					}
					if diff := cmp.Diff(st.wantSizes, got); diff != "" {
						t.Errorf("published sizes (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

// TestConcurrentHead: replicas racing to publish the same size store one
// checkpoint and all serve it.
func TestConcurrentHead(t *testing.T) {
	const n = 12
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			e.appendEvents(t, "t_a", 6)
			// Each replica has its own Log over the same database and key.
			logs := make([]*treelog.Log, n)
			for i := range logs {
				l, err := treelog.New(checkpoints.New(e.db), e.q, e.q, e.skey)
				if err != nil {
					t.Fatal(err)
				}
				logs[i] = l
			}
			notes := make([][]byte, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					var s treelog.Stored
					s, errs[i] = logs[i].Head(context.Background(), "t_a")
					notes[i] = s.Note
				}()
			}
			close(start)
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("Head %d: %v", i, errs[i])
				}
				if !bytes.Equal(notes[i], notes[0]) {
					t.Errorf("Head %d returned another note than Head 0", i)
				}
			}
			if diff := cmp.Diff([]int64{6}, checkpointRows(t, e.db, "t_a")); diff != "" {
				t.Errorf("stored checkpoints (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTamperDetection changes what is stored behind the log's back, as an
// attacker with database access could, and checks that it shows.
func TestTamperDetection(t *testing.T) {
	cases := []struct {
		name string
		// tamper changes the database after a checkpoint of size 5 is
		// published; check says how it is caught.
		tamper func(t *testing.T, e *env)
		check  func(t *testing.T, e *env, published treelog.Stored)
	}{
		{
			name: "a published checkpoint is rewritten",
			tamper: func(t *testing.T, e *env) {
				err := sqltest.Tamper(context.Background(), e.db, "UPDATE tree_checkpoints SET note = ? WHERE tenant_id = ? AND size = ?",
					[]byte("haldir.ledger/t_a\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 2025-01-01T00:00:00Z\n\n— treelog-test x\n"), "t_a", 5)
				if err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *env, _ treelog.Stored) {
				if _, err := e.log.Head(context.Background(), "t_a"); err == nil || !strings.Contains(err.Error(), "does not verify") {
					t.Errorf("Head over a rewritten checkpoint: err = %v, want it to refuse the note", err)
				}
				if _, _, err := e.log.At(context.Background(), "t_a", 5); err == nil {
					t.Error("At over a rewritten checkpoint succeeded")
				}
			},
		},
		{
			name:   "the server's signing key is replaced",
			tamper: func(t *testing.T, e *env) {},
			check: func(t *testing.T, e *env, _ treelog.Stored) {
				skey, _, err := transparency.GenerateSigningKey("treelog-test")
				if err != nil {
					t.Fatal(err)
				}
				other, err := treelog.New(checkpoints.New(e.db), e.q, e.q, skey)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := other.Head(context.Background(), "t_a"); err == nil {
					t.Error("a log with another key served the published checkpoint")
				}
			},
		},
		{
			name: "a stored leaf hash is changed",
			tamper: func(t *testing.T, e *env) {
				// Leaf 4 (seq 5): the tree of 5 is hash(leaves 0-3) and
				// this leaf, so its stored hash is read for every proof.
				idx := tlog.StoredHashIndex(0, 4)
				if _, err := e.db.Write.Exec(e.db.Rebind("UPDATE tree_hashes SET hash = ? WHERE tenant_id = ? AND idx = ?"), bytes.Repeat([]byte{7}, 32), "t_a", idx); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *env, published treelog.Stored) {
				ctx := context.Background()
				if _, _, err := e.log.Inclusion(ctx, &e.evs["t_a"][4]); err == nil {
					t.Error("Inclusion of the event whose leaf was changed succeeded")
				}
				// A later checkpoint is signed over the changed tree, but
				// an auditor holding the published one sees the fork.
				e.appendEvents(t, "t_a", 2)
				p, err := e.log.Consistency(ctx, "t_a", 5, 7)
				if err != nil {
					t.Fatal(err)
				}
				head, err := e.log.Head(ctx, "t_a")
				if err != nil {
					t.Fatal(err)
				}
				if err := tlog.CheckTree(p.Path(), 7, head.Checkpoint.Root, 5, published.Checkpoint.Root); err == nil {
					t.Error("the rewritten log proves consistency with the checkpoint published before")
				}
				if err := transparency.CheckConsistency(published.Checkpoint, head.Checkpoint, p.Path()); err == nil {
					t.Error("CheckConsistency accepted the rewritten log")
				}
			},
		},
		{
			name: "published checkpoints are append-only",
			tamper: func(t *testing.T, e *env) {
				for _, q := range []string{
					"UPDATE tree_checkpoints SET note = note WHERE tenant_id = 't_a'",
					"DELETE FROM tree_checkpoints WHERE tenant_id = 't_a'",
				} {
					if _, err := e.db.Write.Exec(q); err == nil {
						t.Errorf("%s: succeeded", q)
					}
				}
			},
			check: func(t *testing.T, e *env, published treelog.Stored) {
				got, err := e.log.Head(context.Background(), "t_a")
				if err != nil || !bytes.Equal(got.Note, published.Note) {
					t.Errorf("Head = same note %v, err %v; want the published note", bytes.Equal(got.Note, published.Note), err)
				}
			},
		},
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := newEnv(t, b)
					e.appendEvents(t, "t_a", 5)
					published, err := e.log.Head(context.Background(), "t_a")
					if err != nil {
						t.Fatal(err)
					}
					tc.tamper(t, e)
					tc.check(t, e, published)
				})
			}
		})
	}
}

func TestNew(t *testing.T) {
	skey, vkey, err := transparency.GenerateSigningKey("haldir")
	if err != nil {
		t.Fatal(err)
	}
	l, err := treelog.New(nil, transparency.NewMemoryStore(), nil, skey)
	if err != nil {
		t.Fatal(err)
	}
	if l.VerifierKey() != vkey {
		t.Errorf("VerifierKey = %q, want %q", l.VerifierKey(), vkey)
	}
	// The signer Evidence packs use signs as the log does.
	msg, err := note.Sign(&note.Note{Text: "evidence\n"}, l.Signer())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("a note signed with Signer does not verify with VerifierKey: %v", err)
	}
	for _, bad := range []string{"", "not a key", vkey} {
		if _, err := treelog.New(nil, nil, nil, bad); err == nil {
			t.Errorf("New with signing key %q succeeded", bad)
		}
	}
}

func TestLoadSigningKey(t *testing.T) {
	valid, _, err := transparency.GenerateSigningKey("haldir")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := transparency.GenerateSigningKey("other")
	if err != nil {
		t.Fatal(err)
	}
	_, vkey, _ := transparency.GenerateSigningKey("pub")
	cases := []struct {
		name       string
		configured string
		noDataDir  bool
		subdir     string
		file       string
		wantErr    string
		wantKey    string // with no error and generated false
		generated  bool
	}{
		{name: "configured", configured: valid, wantKey: valid},
		{name: "configured wins over the file", configured: valid, file: other + "\n", wantKey: valid},
		{name: "configured is not a key", configured: "nope", wantErr: "HALDIR_SIGNING_KEY is not a signed-note private key"},
		{name: "configured is the public key", configured: vkey, wantErr: "HALDIR_SIGNING_KEY is not a signed-note private key"},
		{name: "postgres requires a key", noDataDir: true, wantErr: "HALDIR_SIGNING_KEY is required with Postgres"},
		{name: "read from the data directory", file: valid + "\n", wantKey: valid},
		{name: "file is not a key", file: "garbage\n", wantErr: "does not hold a valid signing key"},
		{name: "generated into an empty data directory", generated: true},
		{name: "generated into a data directory not yet made", subdir: "x/y", generated: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.subdir)
			if tc.noDataDir {
				dir = ""
			}
			if tc.file != "" {
				if err := os.WriteFile(filepath.Join(dir, treelog.SigningKeyFile), []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			skey, generated, err := treelog.LoadSigningKey(tc.configured, dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if tc.configured != "" && strings.Contains(err.Error(), tc.configured) {
					t.Errorf("error repeats the configured key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if generated != tc.generated {
				t.Errorf("generated = %v, want %v", generated, tc.generated)
			}
			if !tc.generated {
				if skey != tc.wantKey {
					t.Errorf("returned another key than the one configured or stored")
				}
				return
			}
			if _, err := note.NewSigner(skey); err != nil {
				t.Fatalf("generated key is not a note signer key: %v", err)
			}
			path := filepath.Join(dir, treelog.SigningKeyFile)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s mode = %o, want 600", treelog.SigningKeyFile, perm)
			}
			again, generated, err := treelog.LoadSigningKey("", dir)
			if err != nil {
				t.Fatal(err)
			}
			if generated || again != skey {
				t.Errorf("reload: generated = %v, same key = %v; want false, true", generated, again == skey)
			}
		})
	}
}

// TestLoadSigningKeyRace: processes starting on one new data directory at
// once must all sign as one log.
func TestLoadSigningKeyRace(t *testing.T) {
	const n = 16
	dir := t.TempDir()
	keys := make([]string, n)
	gen := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			keys[i], gen[i], errs[i] = treelog.LoadSigningKey("", dir)
		}()
	}
	close(start)
	wg.Wait()
	generated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("LoadSigningKey %d: %v", i, errs[i])
		}
		if gen[i] {
			generated++
		}
		if keys[i] != keys[0] {
			t.Errorf("LoadSigningKey %d returned another key", i)
		}
	}
	if generated != 1 {
		t.Errorf("%d calls report generating the key, want 1", generated)
	}
}
