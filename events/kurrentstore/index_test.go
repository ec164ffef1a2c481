package kurrentstore

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/events"
)

func ev(pos int64, id, tenant, stream string, seq, version int64) *events.Event {
	return &events.Event{Position: pos, ID: id, Tenant: tenant, Stream: stream, Seq: seq, Version: version, Hash: events.Hash{byte(pos)}}
}

// TestIndexApply: positions are taken once, in order; the writer and the
// follower applying the same commit index it once.
func TestIndexApply(t *testing.T) {
	x := newIndex("l", 4)
	if !x.apply(1, ev(1, "a", "t", "s", 1, 1), true) || !x.apply(2, ev(2, "b", "t", "s", 2, 2), true) {
		t.Fatal("new positions were not applied")
	}
	if x.apply(2, ev(2, "b", "t", "s", 2, 2), true) || x.apply(1, ev(1, "zz", "u", "s", 1, 1), true) {
		t.Error("a position at or below the head was applied again")
	}
	if _, ok := x.position("zz"); ok || x.next != 2 {
		t.Errorf("a re-applied position changed the index: next %d", x.next)
	}
	x.apply(3, ev(3, "c", "u", "s", 1, 1), true)
	x.apply(4, ev(4, "d", "t", "s2", 3, 1), true)
	if got := x.version(streamKey{"t", "s"}); got != 2 {
		t.Errorf("version(t, s) = %d, want 2", got)
	}
	if got := x.version(streamKey{"u", "s"}); got != 1 {
		t.Errorf("version(u, s) = %d, want 1: streams are per tenant", got)
	}
	if got := x.version(streamKey{"t", "new"}); got != 0 {
		t.Errorf("version of a new stream = %d, want 0", got)
	}
	if h := x.head("t"); h.Seq != 3 || h.Hash != (events.Hash{4}) {
		t.Errorf("head(t) = %+v, want seq 3 and the hash of position 4", h)
	}
	if h := x.head("nobody"); h != (events.TenantHead{}) {
		t.Errorf("head of a new tenant = %+v", h)
	}
	if got := x.tenantPositions("t", 0, 0); !cmp.Equal(got, []int64{1, 2, 4}) {
		t.Errorf("tenantPositions(t) = %v", got)
	}
	if got := x.tenantPositions("t", 1, 1); !cmp.Equal(got, []int64{2}) {
		t.Errorf("tenantPositions(t, after 1, limit 1) = %v", got)
	}
	if got := x.streamPositions(streamKey{"t", "s"}, 1, 0); !cmp.Equal(got, []int64{2}) {
		t.Errorf("streamPositions(t, s, after 1) = %v", got)
	}
	if got := x.streamPositions(streamKey{"t", "s"}, 5, 0); len(got) != 0 {
		t.Errorf("streamPositions past the end = %v", got)
	}
	if got := x.tenantPositions("t", -3, 0); !cmp.Equal(got, []int64{1, 2, 4}) {
		t.Errorf("tenantPositions(after -3) = %v", got)
	}
}

// TestIndexKeepsWhatIsStored: the index records a ledger as it is, a
// tampered or truncated one too, so that reads return what is stored and
// verification can name the bad position.
func TestIndexKeepsWhatIsStored(t *testing.T) {
	x := newIndex("l", 8)
	x.apply(1, ev(1, "a", "t", "s", 1, 1), true)
	x.apply(2, nil, false)                        // not a Haldir record
	x.apply(3, ev(7, "b", "t", "s", 9, 5), false) // says it is position 7
	x.apply(6, ev(6, "c", "t", "s", 3, 2), true)  // the stream skips 4 and 5
	x.apply(7, ev(7, "a", "t", "s2", 4, 1), true) // a second copy of id a
	if x.next != 7 {
		t.Errorf("next = %d, want 7", x.next)
	}
	if p, _ := x.position("a"); p != 1 {
		t.Errorf("position(a) = %d, want 1: the first occurrence is the recorded one", p)
	}
	if got := x.tenantPositions("t", 0, 0); !cmp.Equal(got, []int64{1, 3, 6, 7}) {
		t.Errorf("tenantPositions = %v, want every stored event of t at its revision's position", got)
	}
	if got := x.version(streamKey{"t", "s"}); got != 2 {
		t.Errorf("version = %d, want the stored version of the stream's last event", got)
	}
	if got := x.recent(0, 10); len(got) != 1 || got[0].ID != "a" {
		t.Errorf("recent(0) = %v, want only position 1: the ring must not serve corrupt or missing records", got)
	}
	if _, ok := x.cached(3); ok {
		t.Error("the ring serves a corrupt record")
	}
	if got := x.recent(5, 10); len(got) != 2 || got[0].Position != 6 {
		t.Errorf("recent(5) = %v, want positions 6 and 7", got)
	}
}

// TestIndexRing: the ring serves the last len(ring) positions, in order,
// never a slot a later position overwrote.
func TestIndexRing(t *testing.T) {
	x := newIndex("l", 4)
	for p := int64(1); p <= 10; p++ {
		x.apply(p, ev(p, fmt.Sprint("e", p), "t", "s", p, p), true)
	}
	for _, c := range []struct {
		after   int64
		limit   int
		want    []int64
		wantNil bool
	}{
		{after: 6, limit: 10, want: []int64{7, 8, 9, 10}},
		{after: 7, limit: 2, want: []int64{8, 9}},
		{after: 5, limit: 10, wantNil: true}, // position 6 was overwritten by 10
		{after: 10, limit: 10, wantNil: true},
		{after: 0, limit: 10, wantNil: true},
		{after: 8, limit: 0, wantNil: true},
	} {
		got := x.recent(c.after, c.limit)
		var ps []int64
		for _, e := range got {
			ps = append(ps, e.Position)
		}
		if c.wantNil {
			if got != nil {
				t.Errorf("recent(%d, %d) = %v, want nil", c.after, c.limit, ps)
			}
			continue
		}
		if !cmp.Equal(ps, c.want) {
			t.Errorf("recent(%d, %d) = %v, want %v", c.after, c.limit, ps, c.want)
		}
	}
	if _, ok := x.cached(6); ok {
		t.Error("cached(6) after the ring wrapped")
	}
	if e, ok := x.cached(9); !ok || e.ID != "e9" {
		t.Errorf("cached(9) = %v, %v", e.ID, ok)
	}
}
