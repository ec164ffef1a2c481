package kurrentstore

import (
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/haldir-dev/haldir/events"
)

// plan is one group commit worked out against the index: the rows to
// append at the end of the ledger as it stood (base), and what each call
// gets if they land. Planning does no I/O and changes nothing; the same
// index, calls and clock give the same plan, byte for byte, which is what
// lets a re-sent append be recognised (see eventIDSpace).
type plan struct {
	base    int64 // the ledger head the rows follow
	rows    []events.Event
	results []callPlan
}

// callPlan is the outcome planned for one call: it appends rows
// [first, first+n), or it repeats recorded events (refs), or it fails.
type callPlan struct {
	first, n int
	refs     []ref // an idempotent retry: where each of its events is recorded
	err      error
}

// ref names a recorded event: a row of this plan (row >= 0) or a position
// already in the ledger.
type ref struct {
	row int
	pos int64
}

// expectedRevision is the ExpectedRevision of an append that follows a
// ledger of head events: the stream must not exist yet, or its last
// revision must be head-1. Positions are revisions plus one, so the rows
// land at positions head+1, head+2, ….
func expectedRevision(head int64) esdb.ExpectedRevision {
	if head == 0 {
		return esdb.NoStream{}
	}
	return esdb.Revision(uint64(head - 1))
}

// planCalls plans calls, in order, on top of x. A call that fails leaves
// the plan as it was, so one bad call never takes down the others in its
// group; a later call sees the stream versions and chain heads the earlier
// successful ones produce.
func planCalls(x *index, calls [][]events.Proposed, now time.Time) *plan {
	p := &plan{base: x.next, results: make([]callPlan, len(calls))}
	ov := overlay{x: x, versions: map[streamKey]int64{}, heads: map[string]events.TenantHead{}, ids: map[string]int{}}
	for i, c := range calls {
		p.results[i] = ov.plan(p, c, now)
	}
	return p
}

// overlay is the index plus the rows planned so far.
type overlay struct {
	x        *index
	versions map[streamKey]int64
	heads    map[string]events.TenantHead
	ids      map[string]int // id → row
}

func (o *overlay) version(k streamKey) int64 {
	if v, ok := o.versions[k]; ok {
		return v
	}
	return o.x.version(k)
}

func (o *overlay) head(tenant string) events.TenantHead {
	if h, ok := o.heads[tenant]; ok {
		return h
	}
	return o.x.head(tenant)
}

func (o *overlay) recorded(id string) (ref, bool) {
	if r, ok := o.ids[id]; ok {
		return ref{row: r}, true
	}
	if pos, ok := o.x.position(id); ok {
		return ref{row: -1, pos: pos}, true
	}
	return ref{}, false
}

func (o *overlay) plan(p *plan, batch []events.Proposed, now time.Time) callPlan {
	// Idempotent retry: the first event's id is recorded. The content of
	// each event is compared once the recorded events are in hand.
	if _, ok := o.recorded(batch[0].ID); ok {
		refs := make([]ref, len(batch))
		for i := range batch {
			r, ok := o.recorded(batch[i].ID)
			if !ok {
				return callPlan{err: fmt.Errorf("%w: %s", events.ErrDuplicateID, batch[0].ID)}
			}
			refs[i] = r
		}
		return callPlan{refs: refs}
	}
	versions := map[streamKey]int64{}
	heads := map[string]events.TenantHead{}
	seen := map[string]bool{}
	rows := make([]events.Event, 0, len(batch))
	pos := p.base + int64(len(p.rows))
	for i := range batch {
		pr := &batch[i]
		if _, dup := o.recorded(pr.ID); dup || seen[pr.ID] {
			return callPlan{err: fmt.Errorf("%w: %s", events.ErrDuplicateID, pr.ID)}
		}
		seen[pr.ID] = true
		k := streamKey{pr.Tenant, pr.Stream}
		cur, ok := versions[k]
		if !ok {
			cur = o.version(k)
		}
		if pr.ExpectedVersion != events.AnyVersion && pr.ExpectedVersion != cur {
			return callPlan{err: &events.ConflictError{Tenant: pr.Tenant, Stream: pr.Stream, Expected: pr.ExpectedVersion, Actual: cur}}
		}
		h, ok := heads[pr.Tenant]
		if !ok {
			h = o.head(pr.Tenant)
		}
		pos++
		e := h.Next(*pr, cur+1, pos, now)
		versions[k] = e.Version
		heads[pr.Tenant] = events.TenantHead{Seq: e.Seq, Hash: e.Hash}
		rows = append(rows, e)
	}
	// The call succeeds: fold it into the plan.
	for k, v := range versions {
		o.versions[k] = v
	}
	for t, h := range heads {
		o.heads[t] = h
	}
	first := len(p.rows)
	for i := range rows {
		o.ids[rows[i].ID] = first + i
	}
	p.rows = append(p.rows, rows...)
	return callPlan{first: first, n: len(rows)}
}

// appends reports whether the call writes rows.
func (c *callPlan) appends() bool { return c.err == nil && c.refs == nil && c.n > 0 }

// needsRows reports whether the call's outcome depends on the plan's rows
// landing: it appends them, or repeats events planned in this group.
func (c *callPlan) needsRows() bool {
	if c.appends() {
		return true
	}
	for _, r := range c.refs {
		if r.row >= 0 {
			return true
		}
	}
	return false
}

// sameContent reports whether a proposed event and a recorded one carry the
// same decision: an idempotent retry must repeat it exactly.
func sameContent(p *events.Proposed, e *events.Event) bool {
	return p.Tenant == e.Tenant && p.Stream == e.Stream && p.Type == e.Type &&
		string(p.Payload) == string(e.Payload) && string(events.EncodeMetadata(p.Meta)) == string(e.Metadata)
}

// recordedNow returns the recorded time of a group: the current time at nanosecond
// precision without a monotonic reading, exactly as it reads back.
func recordedNow() time.Time { return time.Unix(0, time.Now().UnixNano()).UTC() }
