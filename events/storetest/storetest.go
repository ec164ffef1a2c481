// Package storetest is the contract every events.Store implementation must
// pass, in the manner of golang.org/x/mod/sumdb/storage's test suite. A
// backend's tests call Run with a function that makes a fresh, empty store.
//
// The suite proves the ledger invariants of Haldir's design: optimistic
// concurrency, idempotent appends by event id, gapless commit-ordered
// tailing under concurrent writers, an append-only table enforced by the
// database, and verification that names the first bad position after any
// stored column of any row is altered, a row is deleted, inserted or moved.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/haldir-dev/haldir/events"
)

// Harness is a fresh, empty store and raw access to the database behind it.
// Queries are SQL against the ledger table "events" with "?" placeholders.
type Harness struct {
	Store events.Store
	// Exec runs a statement as an ordinary client would: the database's
	// protections stay on.
	Exec func(ctx context.Context, query string, args ...any) error
	// Tamper runs statements with the append-only protection lifted, as an
	// attacker with direct database access would.
	Tamper func(ctx context.Context, query string, args ...any) error
	// Query runs a query returning a single value.
	Query func(ctx context.Context, query string, args ...any) (any, error)
}

// Run runs the contract suite. newHarness is called once per subtest and
// must return an empty store; the caller closes it through t.Cleanup.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"AppendAndRead", testAppendAndRead},
		{"ExpectedVersion", testExpectedVersion},
		{"AtomicCall", testAtomicCall},
		{"ConcurrentDecisions", testConcurrentDecisions},
		{"IdempotentAppend", testIdempotentAppend},
		{"GaplessTailing", testGaplessTailing},
		{"AppendOnly", testAppendOnly},
		{"VerifyCatchesFlippedColumns", testVerifyFlippedColumns},
		{"VerifyCatchesDeletedInsertedReordered", testVerifyStructural},
		{"TenantChainsAreSeparate", testTenantChains},
		{"AppendedWakesWaiters", testAppendedWakes},
		{"AppendAsyncKeepsOrder", testAppendAsyncOrder},
		{"Lookup", testLookup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newHarness(t))
		})
	}
}

var idCounter struct {
	sync.Mutex
	n int
}

func newID() string {
	idCounter.Lock()
	defer idCounter.Unlock()
	idCounter.n++
	return fmt.Sprintf("evt_test_%d_%d", time.Now().UnixNano(), idCounter.n)
}

func proposed(tenant, stream string, expected int64, payload string) events.Proposed {
	return events.Proposed{
		ID:              newID(),
		Tenant:          tenant,
		Stream:          stream,
		ExpectedVersion: expected,
		Type:            "test.happened",
		Payload:         []byte(payload),
		Meta:            events.Metadata{Actor: "hld_test", RequestID: "req_1"},
	}
}

func mustAppend(t *testing.T, s events.Store, ps ...events.Proposed) []events.Event {
	t.Helper()
	got, err := s.Append(context.Background(), ps...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return got
}

func testAppendAndRead(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	a1 := mustAppend(t, s, proposed("t_a", "s/1", 0, `{"n":1}`))
	a2 := mustAppend(t, s, proposed("t_a", "s/1", 1, `{"n":2}`), proposed("t_a", "s/2", 0, `{"n":3}`))
	b1 := mustAppend(t, s, proposed("t_b", "s/1", 0, `{"n":4}`))

	all := append(append(append([]events.Event{}, a1...), a2...), b1...)
	for i, e := range all {
		if e.Position != int64(i+1) {
			t.Errorf("event %d has position %d, want %d", i, e.Position, i+1)
		}
		if e.Hash != events.ComputeHash(&e) {
			t.Errorf("event %d: returned hash is not the hash of the returned event", i)
		}
	}
	if got, want := []int64{a1[0].Seq, a2[0].Seq, a2[1].Seq, b1[0].Seq}, []int64{1, 2, 3, 1}; !cmp.Equal(got, want) {
		t.Errorf("tenant sequences = %v, want %v", got, want)
	}
	if a2[0].PrevHash != a1[0].Hash || b1[0].PrevHash != (events.Hash{}) {
		t.Errorf("chain links wrong: a2.prev=%x a1=%x b1.prev=%x", a2[0].PrevHash, a1[0].Hash, b1[0].PrevHash)
	}

	read, err := s.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all, read); diff != "" {
		t.Errorf("ReadAll mismatch (-want +got):\n%s", diff)
	}
	page, err := s.ReadAll(ctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[1:3], page); diff != "" {
		t.Errorf("ReadAll(1, 2) mismatch (-want +got):\n%s", diff)
	}
	for after := int64(0); after <= 4; after++ {
		tail, err := s.Tail(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		want := all[after:min(after+2, 4)]
		if diff := cmp.Diff(want, tail, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Tail(%d, 2) mismatch (-want +got):\n%s", after, diff)
		}
	}
	stream, err := s.ReadStream(ctx, "t_a", "s/1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]events.Event{a1[0], a2[0]}, stream); diff != "" {
		t.Errorf("ReadStream mismatch (-want +got):\n%s", diff)
	}
	tail, err := s.ReadStream(ctx, "t_a", "s/1", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]events.Event{a2[0]}, tail); diff != "" {
		t.Errorf("ReadStream(after 1) mismatch (-want +got):\n%s", diff)
	}
	tenant, err := s.ReadTenant(ctx, "t_b", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b1, tenant); diff != "" {
		t.Errorf("ReadTenant mismatch (-want +got):\n%s", diff)
	}
	if head, err := s.Head(ctx); err != nil || head != 4 {
		t.Errorf("Head = %d, %v; want 4", head, err)
	}
	if seq, hash, err := s.TenantHead(ctx, "t_a"); err != nil || seq != 3 || hash != a2[1].Hash {
		t.Errorf("TenantHead(t_a) = %d, %x, %v; want 3, %x", seq, hash, err, a2[1].Hash)
	}
	if seq, hash, err := s.TenantHead(ctx, "t_none"); err != nil || seq != 0 || hash != (events.Hash{}) {
		t.Errorf("TenantHead(t_none) = %d, %x, %v; want 0, zero hash", seq, hash, err)
	}
	if m := read[0].Meta(); m.Actor != "hld_test" || m.RequestID != "req_1" {
		t.Errorf("metadata = %+v, want actor hld_test and request req_1", m)
	}
	if _, err := events.VerifyAll(ctx, s, nil); err != nil {
		t.Errorf("VerifyAll on an untouched ledger: %v", err)
	}
}

func testExpectedVersion(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	mustAppend(t, s, proposed("t", "s", 0, "1"))
	_, err := s.Append(ctx, proposed("t", "s", 0, "2"))
	var ce *events.ConflictError
	if !errors.Is(err, events.ErrConflict) || !errors.As(err, &ce) || ce.Actual != 1 || ce.Expected != 0 {
		t.Fatalf("append at stale version: err = %v, want ConflictError{Expected:0, Actual:1}", err)
	}
	if _, err := s.Append(ctx, proposed("t", "s", 5, "3")); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("append at future version: err = %v, want ErrConflict", err)
	}
	got := mustAppend(t, s, proposed("t", "s", 1, "4"))
	if got[0].Version != 2 {
		t.Errorf("version = %d, want 2", got[0].Version)
	}
	got = mustAppend(t, s, proposed("t", "s", events.AnyVersion, "5"))
	if got[0].Version != 3 {
		t.Errorf("AnyVersion append got version %d, want 3", got[0].Version)
	}
	// The same stream name in another tenant is another stream.
	if _, err := s.Append(ctx, proposed("t2", "s", 0, "6")); err != nil {
		t.Errorf("new stream in another tenant: %v", err)
	}
	if _, err := s.Append(ctx, events.Proposed{ID: "x", Tenant: "t", Stream: "s", ExpectedVersion: 3}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("event without a type: err = %v, want ErrInvalid", err)
	}
}

func testAtomicCall(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	mustAppend(t, s, proposed("t", "s", 0, "1"))
	// The second event expects the wrong version: nothing of the call lands.
	_, err := s.Append(ctx, proposed("t", "other", 0, "2"), proposed("t", "s", 0, "3"))
	if !errors.Is(err, events.ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if head, _ := s.Head(ctx); head != 1 {
		t.Errorf("head after a failed call = %d, want 1 (the call must be all or nothing)", head)
	}
	// Two events of one call on one stream count up.
	got := mustAppend(t, s, proposed("t", "s", 1, "4"), proposed("t", "s", 2, "5"))
	if got[0].Version != 2 || got[1].Version != 3 {
		t.Errorf("versions = %d, %d; want 2, 3", got[0].Version, got[1].Version)
	}
	// A failing call in the same group commit as succeeding ones does not
	// take them down.
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			expected := int64(0)
			if i%2 == 1 {
				expected = 99 // always wrong
			}
			_, errs[i] = s.Append(ctx, proposed("t", fmt.Sprintf("g/%d", i), expected, "x"))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("call %d: %v", i, err)
		}
		if i%2 == 1 && !errors.Is(err, events.ErrConflict) {
			t.Errorf("call %d: err = %v, want ErrConflict", i, err)
		}
	}
	if head, _ := s.Head(ctx); head != 13 {
		t.Errorf("head = %d, want 13", head)
	}
	if _, err := events.VerifyAll(ctx, s, nil); err != nil {
		t.Errorf("VerifyAll: %v", err)
	}
}

// testConcurrentDecisions: many writers decide on the same stream version at
// once; exactly one may win.
func testConcurrentDecisions(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	mustAppend(t, s, proposed("t", "budget", 0, "open"))
	const writers = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	start := make(chan struct{})
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Append(ctx, proposed("t", "budget", 1, "spend"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, events.ErrConflict):
				conflicts++
			default:
				t.Errorf("Append: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 || conflicts != writers-1 {
		t.Errorf("wins = %d, conflicts = %d; want 1 and %d", wins, conflicts, writers-1)
	}
}

func testIdempotentAppend(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	p := proposed("t", "s", 0, `{"a":1}`)
	first := mustAppend(t, s, p)
	again := mustAppend(t, s, p)
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("retry returned a different event (-first +retry):\n%s", diff)
	}
	if head, _ := s.Head(ctx); head != 1 {
		t.Errorf("head after retry = %d, want 1", head)
	}
	changed := p
	changed.Payload = []byte(`{"a":2}`)
	if _, err := s.Append(ctx, changed); !errors.Is(err, events.ErrDuplicateID) {
		t.Errorf("same id, different payload: err = %v, want ErrDuplicateID", err)
	}
	// Concurrent duplicates: one append, every caller gets the same event.
	q := proposed("t", "s2", 0, "dup")
	const n = 20
	var wg sync.WaitGroup
	results := make([][]events.Event, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Append(ctx, q)
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("duplicate %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(results[0], results[i]); diff != "" {
			t.Errorf("duplicate %d returned a different event (-first +this):\n%s", i, diff)
		}
	}
	if head, _ := s.Head(ctx); head != 2 {
		t.Errorf("head after %d concurrent duplicates = %d, want 2", n, head)
	}
}

// testGaplessTailing runs 16 writers while a tailer follows the ledger by
// position. The tailer must see every position exactly once, in order.
func testGaplessTailing(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	const writers, perWriter = 16, 150
	total := int64(writers * perWriter)

	tailed := make(chan error, 1)
	seen := make(map[string]bool, total)
	go func() {
		var last int64
		deadline := time.Now().Add(2 * time.Minute)
		for last < total {
			if time.Now().After(deadline) {
				tailed <- fmt.Errorf("tailer stuck at position %d of %d", last, total)
				return
			}
			wake := s.Appended()
			page, err := s.ReadAll(ctx, last, 64)
			if err != nil {
				tailed <- err
				return
			}
			for _, e := range page {
				if e.Position != last+1 {
					tailed <- fmt.Errorf("tailer saw position %d after %d: an event was skipped or repeated", e.Position, last)
					return
				}
				if seen[e.ID] {
					tailed <- fmt.Errorf("tailer saw event %s twice", e.ID)
					return
				}
				seen[e.ID] = true
				last = e.Position
			}
			if len(page) == 0 {
				select {
				case <-wake:
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		tailed <- nil
	}()

	var wg sync.WaitGroup
	ids := make([][]string, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				p := proposed(fmt.Sprintf("t_%d", w%3), fmt.Sprintf("w/%d", w), events.AnyVersion, fmt.Sprint(i))
				if _, err := s.Append(ctx, p); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				ids[w] = append(ids[w], p.ID)
			}
		}()
	}
	wg.Wait()
	if err := <-tailed; err != nil {
		t.Fatal(err)
	}
	for w := range ids {
		for _, id := range ids[w] {
			if !seen[id] {
				t.Errorf("acknowledged event %s was never tailed", id)
			}
		}
	}
	if _, err := events.VerifyAll(ctx, s, nil); err != nil {
		t.Errorf("VerifyAll after concurrent appends: %v", err)
	}
}

func testAppendOnly(t *testing.T, h Harness) {
	ctx := context.Background()
	mustAppend(t, h.Store, proposed("t", "s", 0, "1"), proposed("t", "s", 1, "2"))
	for _, q := range []string{
		"UPDATE events SET type = 'forged' WHERE position = 1",
		"UPDATE events SET payload = payload WHERE position = 2",
		"DELETE FROM events WHERE position = 2",
		"DELETE FROM events",
	} {
		if err := h.Exec(ctx, q); err == nil {
			t.Errorf("%s: the database accepted it; the ledger must be append-only", q)
		}
	}
	if head, _ := h.Store.Head(ctx); head != 2 {
		t.Errorf("head = %d after refused changes, want 2", head)
	}
	if _, err := events.VerifyAll(ctx, h.Store, nil); err != nil {
		t.Errorf("VerifyAll: %v", err)
	}
}

// seed appends n events spread over two tenants and a few streams.
func seed(t *testing.T, s events.Store, n int) []events.Event {
	t.Helper()
	var out []events.Event
	for i := 0; i < n; i++ {
		tenant := []string{"t_a", "t_b"}[i%2]
		out = append(out, mustAppend(t, s, proposed(tenant, fmt.Sprintf("s/%d", i%3), events.AnyVersion, fmt.Sprintf(`{"i":%d}`, i)))...)
	}
	return out
}

func expectBroken(t *testing.T, s events.Store, what string, wantPos int64) {
	t.Helper()
	_, err := events.VerifyAll(context.Background(), s, nil)
	var ve *events.VerifyError
	if !errors.As(err, &ve) {
		t.Errorf("%s: VerifyAll err = %v, want a VerifyError", what, err)
		return
	}
	if ve.Position != wantPos {
		t.Errorf("%s: VerifyAll names position %d (%s), want %d", what, ve.Position, ve.Reason, wantPos)
	}
}

// testVerifyFlippedColumns flips one byte (or bit) of every stored column of
// a row in the middle of the ledger, one column at a time, and expects
// verification to name that row's position; then restores it.
func testVerifyFlippedColumns(t *testing.T, h Harness) {
	ctx := context.Background()
	evs := seed(t, h.Store, 9)
	const target = 5 // tenant t_a, seq 3
	columns := []struct {
		name, flip, restore string
		wantPos             int64
	}{
		{"tenant_id", "UPDATE events SET tenant_id = 't_c' WHERE position = ?", "UPDATE events SET tenant_id = 't_a' WHERE position = ?", target},
		{"seq", "UPDATE events SET seq = seq + 100 WHERE position = ?", "UPDATE events SET seq = seq - 100 WHERE position = ?", target},
		{"event_id", "UPDATE events SET event_id = event_id || 'x' WHERE position = ?", "", target},
		{"stream", "UPDATE events SET stream = 's/9' WHERE position = ?", "", target},
		{"stream_version", "UPDATE events SET stream_version = stream_version + 1 WHERE position = ?", "UPDATE events SET stream_version = stream_version - 1 WHERE position = ?", target},
		{"type", "UPDATE events SET type = 'test.forged' WHERE position = ?", "UPDATE events SET type = 'test.happened' WHERE position = ?", target},
		{"payload", "", "", target},
		{"metadata", "", "", target},
		{"recorded_at", "UPDATE events SET recorded_at = recorded_at + 1 WHERE position = ?", "UPDATE events SET recorded_at = recorded_at - 1 WHERE position = ?", target},
		{"prev_hash", "", "", target},
		{"hash", "", "", target},
		// Moving a row to a free position leaves a hole where it was.
		{"position", "UPDATE events SET position = position + 1000 WHERE position = ?", "UPDATE events SET position = position - 1000 WHERE position = ?", target},
	}
	orig := evs[target-1]
	for _, c := range columns {
		t.Run(c.name, func(t *testing.T) {
			flip, restore := c.flip, c.restore
			var flipArgs, restoreArgs []any
			switch c.name {
			case "payload", "metadata", "prev_hash", "hash":
				var b []byte
				switch c.name {
				case "payload":
					b = append([]byte{}, orig.Payload...)
				case "metadata":
					b = append([]byte{}, orig.Metadata...)
				case "prev_hash":
					b = append([]byte{}, orig.PrevHash[:]...)
				case "hash":
					b = append([]byte{}, orig.Hash[:]...)
				}
				saved := append([]byte{}, b...)
				b[len(b)/2] ^= 0x01 // one bit
				flip = "UPDATE events SET " + c.name + " = ? WHERE position = ?"
				restore = flip
				flipArgs = []any{b, target}
				restoreArgs = []any{saved, target}
			case "event_id":
				restore = "UPDATE events SET event_id = ? WHERE position = ?"
				restoreArgs = []any{orig.ID, target}
				flipArgs = []any{target}
			case "stream":
				restore = "UPDATE events SET stream = ? WHERE position = ?"
				restoreArgs = []any{orig.Stream, target}
				flipArgs = []any{target}
			case "position":
				flipArgs = []any{target}
				restoreArgs = []any{target + 1000}
			default:
				flipArgs = []any{target}
				restoreArgs = []any{target}
			}
			if err := h.Tamper(ctx, flip, flipArgs...); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			expectBroken(t, h.Store, "flipped "+c.name, c.wantPos)
			if err := h.Tamper(ctx, restore, restoreArgs...); err != nil {
				t.Fatalf("restore: %v", err)
			}
			if _, err := events.VerifyAll(ctx, h.Store, nil); err != nil {
				t.Fatalf("after restoring %s: %v", c.name, err)
			}
		})
	}
}

func testVerifyStructural(t *testing.T, h Harness) {
	ctx := context.Background()
	evs := seed(t, h.Store, 10)
	_ = evs
	cols := "position, tenant_id, seq, event_id, stream, stream_version, type, payload, metadata, recorded_at, prev_hash, hash"
	insert := "INSERT INTO events (" + cols + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
	row := func(e events.Event) []any {
		return []any{e.Position, e.Tenant, e.Seq, e.ID, e.Stream, e.Version, e.Type, e.Payload, e.Metadata, e.RecordedAt.UnixNano(), e.PrevHash[:], e.Hash[:]}
	}

	t.Run("deleted", func(t *testing.T) {
		victim := evs[3] // position 4
		if err := h.Tamper(ctx, "DELETE FROM events WHERE position = ?", victim.Position); err != nil {
			t.Fatal(err)
		}
		expectBroken(t, h.Store, "deleted row", 4)
		if err := h.Tamper(ctx, insert, row(victim)...); err != nil {
			t.Fatal(err)
		}
		if _, err := events.VerifyAll(ctx, h.Store, nil); err != nil {
			t.Fatalf("after restoring: %v", err)
		}
	})

	t.Run("deleted and renumbered", func(t *testing.T) {
		// The attacker deletes position 4 and closes the hole so that
		// positions stay gapless; the tenant chain still breaks at the
		// next event of the victim's tenant.
		victim := evs[3] // t_b seq 2
		if err := h.Tamper(ctx, "DELETE FROM events WHERE position = ?", victim.Position); err != nil {
			t.Fatal(err)
		}
		for p := int64(5); p <= 10; p++ {
			if err := h.Tamper(ctx, "UPDATE events SET position = ? WHERE position = ?", p-1, p); err != nil {
				t.Fatal(err)
			}
		}
		// Position 5 now holds t_b seq 3 (was position 6), whose seq no
		// longer follows t_b seq 1.
		expectBroken(t, h.Store, "deleted and renumbered", 5)
		for p := int64(10); p >= 5; p-- {
			if err := h.Tamper(ctx, "UPDATE events SET position = ? WHERE position = ?", p, p-1); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Tamper(ctx, insert, row(victim)...); err != nil {
			t.Fatal(err)
		}
		if _, err := events.VerifyAll(ctx, h.Store, nil); err != nil {
			t.Fatalf("after restoring: %v", err)
		}
	})

	t.Run("inserted", func(t *testing.T) {
		// A forged event with a correctly computed hash, chained to t_a's
		// event at position 5 and slotted in after it; later rows are
		// moved up to make room. The next t_a event no longer links.
		prev := evs[4] // t_a seq 3
		for p := int64(10); p >= 6; p-- {
			if err := h.Tamper(ctx, "UPDATE events SET position = ? WHERE position = ?", p+1, p); err != nil {
				t.Fatal(err)
			}
		}
		forged := events.Event{ID: "evt_forged", Tenant: "t_a", Stream: "s/0", Version: 99, Type: "test.happened",
			Payload: []byte(`{"forged":true}`), Metadata: []byte(`{}`), RecordedAt: prev.RecordedAt, Seq: prev.Seq + 100,
			Position: 6, PrevHash: prev.Hash}
		forged.Hash = events.ComputeHash(&forged)
		if err := h.Tamper(ctx, insert, row(forged)...); err != nil {
			t.Fatal(err)
		}
		expectBroken(t, h.Store, "inserted row", 6)
		if err := h.Tamper(ctx, "DELETE FROM events WHERE position = 6"); err != nil {
			t.Fatal(err)
		}
		for p := int64(7); p <= 11; p++ {
			if err := h.Tamper(ctx, "UPDATE events SET position = ? WHERE position = ?", p-1, p); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := events.VerifyAll(ctx, h.Store, nil); err != nil {
			t.Fatalf("after restoring: %v", err)
		}
	})

	t.Run("appended with a wrong hash", func(t *testing.T) {
		last := evs[len(evs)-1]
		forged := events.Event{ID: "evt_tail", Tenant: last.Tenant, Stream: "s/x", Version: 1, Type: "test.happened",
			Payload: []byte(`{}`), Metadata: []byte(`{}`), RecordedAt: last.RecordedAt, Seq: 6,
			Position: 11, PrevHash: last.Hash, Hash: events.Hash{1}}
		if err := h.Tamper(ctx, insert, row(forged)...); err != nil {
			t.Fatal(err)
		}
		expectBroken(t, h.Store, "tail row with a wrong hash", 11)
		if err := h.Tamper(ctx, "DELETE FROM events WHERE position = 11"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reordered", func(t *testing.T) {
		// Swap positions 3 and 5 (both t_a: seq 2 and seq 3).
		for _, q := range [][2]int64{{3, 1003}, {5, 3}, {1003, 5}} {
			if err := h.Tamper(ctx, "UPDATE events SET position = ? WHERE position = ?", q[1], q[0]); err != nil {
				t.Fatal(err)
			}
		}
		expectBroken(t, h.Store, "reordered rows", 3)
		for _, q := range [][2]int64{{3, 1003}, {5, 3}, {1003, 5}} {
			if err := h.Tamper(ctx, "UPDATE events SET position = ? WHERE position = ?", q[1], q[0]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := events.VerifyAll(ctx, h.Store, nil); err != nil {
			t.Fatalf("after restoring: %v", err)
		}
	})
}

func testTenantChains(t *testing.T, h Harness) {
	ctx := context.Background()
	evs := seed(t, h.Store, 8)
	for _, tenant := range []string{"t_a", "t_b"} {
		r, err := events.VerifyTenant(ctx, h.Store, tenant, nil)
		if err != nil {
			t.Fatalf("VerifyTenant(%s): %v", tenant, err)
		}
		if r.Checked != 4 {
			t.Errorf("VerifyTenant(%s) checked %d events, want 4", tenant, r.Checked)
		}
	}
	// Breaking t_b leaves t_a's chain intact.
	victim := evs[1]
	b := append([]byte{}, victim.Payload...)
	b[0] ^= 0x20
	if err := h.Tamper(ctx, "UPDATE events SET payload = ? WHERE position = ?", b, victim.Position); err != nil {
		t.Fatal(err)
	}
	if _, err := events.VerifyTenant(ctx, h.Store, "t_a", nil); err != nil {
		t.Errorf("VerifyTenant(t_a) after t_b was altered: %v", err)
	}
	if _, err := events.VerifyTenant(ctx, h.Store, "t_b", nil); err == nil {
		t.Errorf("VerifyTenant(t_b) passed after its event was altered")
	}
}

func testAppendedWakes(t *testing.T, h Harness) {
	wake := h.Store.Appended()
	select {
	case <-wake:
		t.Fatal("Appended fired before any append")
	default:
	}
	mustAppend(t, h.Store, proposed("t", "s", 0, "1"))
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("Appended did not fire after a commit")
	}
}

// testAppendAsyncOrder decides a stream's next events without waiting for
// the previous ones, as a pipelining caller does.
func testAppendAsyncOrder(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	var waits []func() ([]events.Event, error)
	for v := int64(0); v < 50; v++ {
		w, err := s.AppendAsync(ctx, proposed("t", "pipelined", v, fmt.Sprint(v)))
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	for i, w := range waits {
		got, err := w()
		if err != nil {
			t.Fatalf("pipelined append %d: %v", i, err)
		}
		if got[0].Version != int64(i+1) {
			t.Errorf("pipelined append %d got version %d, want %d", i, got[0].Version, i+1)
		}
	}
	// If an earlier call fails, the calls decided on top of it fail too.
	bad, _ := s.AppendAsync(ctx, proposed("t", "pipelined", 7, "stale"))
	next, _ := s.AppendAsync(ctx, proposed("t", "pipelined", 51, "builds on stale"))
	if _, err := bad(); !errors.Is(err, events.ErrConflict) {
		t.Errorf("stale pipelined append: err = %v, want ErrConflict", err)
	}
	if _, err := next(); !errors.Is(err, events.ErrConflict) {
		t.Errorf("append decided on a failed one: err = %v, want ErrConflict", err)
	}
}

func testLookup(t *testing.T, h Harness) {
	ctx := context.Background()
	got := mustAppend(t, h.Store, proposed("t", "s", 0, "x"))
	e, ok, err := h.Store.Lookup(ctx, got[0].ID)
	if err != nil || !ok {
		t.Fatalf("Lookup(%s) = %v, %v", got[0].ID, ok, err)
	}
	if diff := cmp.Diff(got[0], e); diff != "" {
		t.Errorf("Lookup mismatch (-appended +looked up):\n%s", diff)
	}
	if _, ok, err := h.Store.Lookup(ctx, "evt_missing"); ok || err != nil {
		t.Errorf("Lookup(missing) = %v, %v; want not found", ok, err)
	}
}
