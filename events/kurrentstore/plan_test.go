package kurrentstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/events"
)

var planTime = time.Unix(1_750_000_000, 123_456_789).UTC()

func prop(id, tenant, stream string, expected int64, payload string) events.Proposed {
	return events.Proposed{ID: id, Tenant: tenant, Stream: stream, ExpectedVersion: expected, Type: "test.happened", Payload: []byte(payload), Meta: events.Metadata{Actor: "hld_t"}}
}

// commitPlan applies a plan's rows to the index, as the writer does once
// KurrentDB acknowledged them.
func commitPlan(x *index, p *plan) {
	for i := range p.rows {
		x.apply(p.rows[i].Position, &p.rows[i], true)
	}
}

func TestExpectedRevision(t *testing.T) {
	if got := expectedRevision(0); got != (esdb.NoStream{}) {
		t.Errorf("expectedRevision(0) = %#v, want NoStream: the first append creates the ledger", got)
	}
	for head, want := range map[int64]uint64{1: 0, 2: 1, 1000: 999} {
		if got := expectedRevision(head); got != esdb.Revision(want) {
			t.Errorf("expectedRevision(%d) = %#v, want Revision(%d): the last event of a ledger of %d is at revision %d", head, got, want, head, want)
		}
	}
}

// TestPlanAssignsChainAndPositions: rows follow the ledger head, count each
// stream's versions and chain each tenant's events, across calls of one
// group and on top of what the index holds.
func TestPlanAssignsChainAndPositions(t *testing.T) {
	x := newIndex("l", 16)
	p1 := planCalls(x, [][]events.Proposed{{prop("a1", "ta", "s/1", 0, "1")}}, planTime)
	commitPlan(x, p1)
	p := planCalls(x, [][]events.Proposed{
		{prop("a2", "ta", "s/1", 1, "2"), prop("a3", "ta", "s/2", 0, "3")},
		{prop("b1", "tb", "s/1", 0, "4")},
		{prop("a4", "ta", "s/1", 2, "5"), prop("a5", "ta", "s/1", 3, "6")},
		{prop("a6", "ta", "s/1", events.AnyVersion, "7")},
	}, planTime)
	if p.base != 1 {
		t.Fatalf("base = %d, want 1", p.base)
	}
	type got struct {
		ID                     string
		Position, Seq, Version int64
	}
	var rows []got
	for _, r := range p.rows {
		rows = append(rows, got{r.ID, r.Position, r.Seq, r.Version})
	}
	want := []got{{"a2", 2, 2, 2}, {"a3", 3, 3, 1}, {"b1", 4, 1, 1}, {"a4", 5, 4, 3}, {"a5", 6, 5, 4}, {"a6", 7, 6, 5}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	for i, r := range p.results {
		if r.err != nil || r.refs != nil {
			t.Errorf("call %d: %+v, want it to append", i, r)
		}
	}
	prev := map[string]events.Hash{"ta": p1.rows[0].Hash}
	for _, r := range p.rows {
		if r.PrevHash != prev[r.Tenant] {
			t.Errorf("%s: previous hash does not link to the tenant's last event", r.ID)
		}
		if r.Hash != events.ComputeHash(&r) || !r.RecordedAt.Equal(planTime) {
			t.Errorf("%s: hash or recorded time wrong", r.ID)
		}
		prev[r.Tenant] = r.Hash
	}
	if p.results[0].first != 0 || p.results[0].n != 2 || p.results[2].first != 3 || p.results[2].n != 2 {
		t.Errorf("row ranges: %+v", p.results)
	}
}

// TestPlanRefusesDecisionsIndependently: a call whose expected version is
// stale fails with a ConflictError naming the current version and leaves
// the plan as it was, so the calls around it are planned as if it had not
// been there; the same goes for a duplicate id and a half-recorded retry.
func TestPlanRefusesDecisionsIndependently(t *testing.T) {
	x := newIndex("l", 16)
	commitPlan(x, planCalls(x, [][]events.Proposed{{prop("e1", "t", "s", 0, "1"), prop("e2", "t", "s", 1, "2")}}, planTime))
	p := planCalls(x, [][]events.Proposed{
		{prop("n1", "t", "other", 0, "x"), prop("n2", "t", "s", 1, "stale")}, // second event stale: all or nothing
		{prop("n3", "t", "s", 2, "ok")},
		{prop("n4", "t", "s", 2, "raced")}, // decided on the same version as n3, came second
		{prop("n5", "t", "s", 99, "future")},
		{prop("n6", "t", "x", 0, "a"), prop("n6", "t", "x", 1, "a")},                 // one id twice in a call
		{prop("n7", "t", "x", 0, "b"), prop("e1", "t", "s", events.AnyVersion, "1")}, // second id recorded
		{prop("e1", "t", "s", 0, "1"), prop("n8", "t", "s", 1, "new")},               // retry whose tail is new
		{prop("n9", "t", "other", 0, "y")},
	}, planTime)
	var ce *events.ConflictError
	if err := p.results[0].err; !errors.As(err, &ce) || ce.Stream != "s" || ce.Expected != 1 || ce.Actual != 2 {
		t.Errorf("call 0: %v, want ConflictError{s, expected 1, actual 2}", err)
	}
	if p.results[1].err != nil || p.rows[p.results[1].first].Version != 3 {
		t.Errorf("call 1: %+v, want it to append version 3", p.results[1])
	}
	if err := p.results[2].err; !errors.As(err, &ce) || ce.Expected != 2 || ce.Actual != 3 {
		t.Errorf("call 2: %v, want ConflictError{expected 2, actual 3}: exactly one of two equal decisions wins", err)
	}
	if err := p.results[3].err; !errors.Is(err, events.ErrConflict) {
		t.Errorf("call 3: %v, want ErrConflict", err)
	}
	for _, i := range []int{4, 5, 6} {
		if err := p.results[i].err; !errors.Is(err, events.ErrDuplicateID) {
			t.Errorf("call %d: %v, want ErrDuplicateID", i, err)
		}
	}
	last := p.rows[p.results[7].first]
	if p.results[7].err != nil || last.ID != "n9" || last.Version != 1 || last.Position != 4 || last.Seq != 4 {
		t.Errorf("call 7: %+v row %+v; want n9 at position 4, seq 4, version 1 of a stream call 0 never created", p.results[7], last)
	}
	if len(p.rows) != 2 {
		t.Errorf("%d rows planned, want 2 (n3, n9)", len(p.rows))
	}
}

// TestPlanRetries: a call whose first id is recorded, in the index or
// earlier in the same group, is a retry: it appends nothing and refers to
// where each of its events is.
func TestPlanRetries(t *testing.T) {
	x := newIndex("l", 16)
	commitPlan(x, planCalls(x, [][]events.Proposed{{prop("e1", "t", "s", 0, "1"), prop("e2", "t", "s", 1, "2")}}, planTime))
	q := prop("q1", "t", "q", 0, "dup")
	p := planCalls(x, [][]events.Proposed{
		{prop("e1", "t", "s", 0, "1"), prop("e2", "t", "s", 1, "2")}, // recorded: a retry, whatever it expected
		{q},
		{q}, // the same call twice in one group: the second gets the first's row
		{q},
	}, planTime)
	if diff := cmp.Diff([]ref{{row: -1, pos: 1}, {row: -1, pos: 2}}, p.results[0].refs, cmp.AllowUnexported(ref{})); diff != "" {
		t.Errorf("retry of recorded events (-want +got):\n%s", diff)
	}
	for _, i := range []int{2, 3} {
		if diff := cmp.Diff([]ref{{row: 0}}, p.results[i].refs, cmp.AllowUnexported(ref{})); diff != "" {
			t.Errorf("call %d, a duplicate within the group (-want +got):\n%s", i, diff)
		}
		if !p.results[i].needsRows() {
			t.Errorf("call %d depends on the group's rows landing, needsRows says no", i)
		}
	}
	if p.results[0].needsRows() || p.results[0].appends() {
		t.Errorf("a retry of recorded events needs no rows")
	}
	if len(p.rows) != 1 || p.rows[0].ID != "q1" {
		t.Errorf("rows = %v, want only q1", p.rows)
	}
}

// TestPlanIsDeterministic: planning the same calls on the same ledger at
// the same recorded time gives the same bytes to send, so an append sent
// again after an unknown outcome is the one KurrentDB already has (same
// event ids at the same expected revision) and not a different one.
func TestPlanIsDeterministic(t *testing.T) {
	build := func() *index {
		x := newIndex("l", 16)
		commitPlan(x, planCalls(x, [][]events.Proposed{{prop("e1", "t", "s", 0, "1")}, {prop("e2", "u", "s", 0, "2")}}, planTime))
		return x
	}
	calls := [][]events.Proposed{{prop("a", "t", "s", 1, "x"), prop("b", "u", "z", 0, "y")}, {prop("c", "t", "s", 2, "z")}}
	p, q := planCalls(build(), calls, planTime), planCalls(build(), calls, planTime)
	if len(p.rows) != 3 || len(q.rows) != 3 {
		t.Fatalf("planned %d and %d rows, want 3", len(p.rows), len(q.rows))
	}
	for i := range p.rows {
		a, b := encodeRecord(&p.rows[i]), encodeRecord(&q.rows[i])
		if a.EventID != b.EventID || a.EventType != b.EventType || !bytes.Equal(a.Data, b.Data) || !bytes.Equal(a.Metadata, b.Metadata) {
			t.Errorf("row %d differs between two plans of the same calls", i)
		}
	}
}

func TestGroup(t *testing.T) {
	call := func(n, size int) *appendCall { return &appendCall{events: make([]events.Proposed, n), size: size} }
	g := group{maxEvents: 10, maxLen: 1000}
	if !g.add(call(4, 600)) {
		t.Fatal("an empty group refused a call")
	}
	if g.add(call(1, 500)) {
		t.Error("the group took a call past its byte budget")
	}
	if !g.add(call(6, 100)) {
		t.Error("the group refused a call that fits")
	}
	if !g.full() {
		t.Error("a group of 10 events is not full")
	}
	if g.add(call(1, 1)) {
		t.Error("a full group took another call")
	}
	// A call bigger than the budget on its own still goes alone: check has
	// already refused calls over the server's limit.
	g = group{maxEvents: 10, maxLen: 1000}
	if !g.add(call(1, 5000)) || g.add(call(1, 1)) {
		t.Error("an oversized call must go alone")
	}
}

// TestCheck: what KurrentDB cannot store is refused before it reaches the
// writer.
func TestCheck(t *testing.T) {
	s := &Store{opts: Options{MaxAppendBytes: 10_000}}
	ok := prop("e", "t", "s", 0, `{}`)
	if _, err := s.check([]events.Proposed{ok}); err != nil {
		t.Fatalf("check(%+v): %v", ok, err)
	}
	for name, batch := range map[string][]events.Proposed{
		"system event type":   {func() events.Proposed { p := ok; p.Type = "$>"; return p }()},
		"invalid UTF-8 type":  {func() events.Proposed { p := ok; p.Type = "a\xffb"; return p }()},
		"no tenant":           {func() events.Proposed { p := ok; p.Tenant = ""; return p }()},
		"past MaxAppendBytes": {func() events.Proposed { p := ok; p.Payload = make([]byte, 10_000); return p }()},
		"too many events":     make([]events.Proposed, maxCallEvents+1),
	} {
		for i := range batch {
			if batch[i].ID == "" && name == "too many events" {
				batch[i] = ok
				batch[i].ID = fmt.Sprint("e", i)
			}
		}
		if _, err := s.check(batch); !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestLedgerNames(t *testing.T) {
	for _, name := range []string{"haldir-ledger", "haldir-ledger-cell7", "ledger_é"} {
		if err := validLedgerName(name); err != nil {
			t.Errorf("validLedgerName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "$all", "$$haldir-ledger", "$ce-haldir", "a\nb", "a\xffb", string(make([]byte, 201))} {
		if err := validLedgerName(name); err == nil {
			t.Errorf("validLedgerName(%q) accepted it", name)
		}
	}
	var o Options
	if err := o.defaults(); err != nil || o.Ledger != DefaultLedger || o.MaxAppendBytes != defaultMaxAppendBytes || o.AppendTimeout != defaultAppendTimeout || o.Log == nil {
		t.Errorf("zero Options after defaults: %+v, %v", o, err)
	}
}
