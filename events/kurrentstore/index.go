package kurrentstore

import (
	"github.com/haldir-dev/haldir/events"
)

// index is one process's view of a ledger stream, built by reading the
// stream from its start and kept current by the writer and the follower.
// It answers what planning an append needs (stream versions, tenant chain
// heads, recorded ids) and where the events of a tenant or an aggregate
// are, without a query. It holds no payloads beyond the ring of recent
// events: about 100 bytes an event.
//
// Positions in the index are ledger revisions plus one. The index records
// what is stored, as stored: it does not verify the chain (VerifyAll does),
// so a tampered ledger is indexed too and verification can name the bad
// position.
//
// An index is not safe for concurrent use; Store guards it.
type index struct {
	stream string // the ledger stream indexed
	next   int64  // revisions indexed: the ledger's head position
	ids    map[string]int64
	tenant map[string]*tenantIndex
	ring   []events.Event // recent events, ring[pos%len(ring)]
}

type tenantIndex struct {
	head      events.TenantHead // seq and hash of the tenant's last event
	positions []int64           // the tenant's events, in ledger order
	streams   map[string]*streamIndex
}

type streamIndex struct {
	version   int64   // the stored version of the stream's last event
	positions []int64 // the stream's events, in ledger order
}

type streamKey struct{ tenant, stream string }

func newIndex(stream string, ringSize int) *index {
	return &index{stream: stream, ids: make(map[string]int64), tenant: make(map[string]*tenantIndex), ring: make([]events.Event, ringSize)}
}

// apply records the event stored at position pos. Positions at or below
// the index's head are ignored (the writer and the follower both apply what
// the writer committed), so apply reports whether pos was new. A position
// past next+1 (a stream truncated before pos) is accepted: the positions
// skipped are simply absent. When the record could not be parsed, e is nil
// and only the head moves. When the record parsed but is corrupt (ok is
// false), it is indexed but kept out of the ring, so that readers fetch it
// and see the error.
func (x *index) apply(pos int64, e *events.Event, ok bool) bool {
	if pos <= x.next {
		return false
	}
	x.next = pos
	if e == nil {
		return true
	}
	if _, dup := x.ids[e.ID]; !dup {
		x.ids[e.ID] = pos // the first occurrence of an id is the recorded one
	}
	t := x.tenant[e.Tenant]
	if t == nil {
		t = &tenantIndex{streams: make(map[string]*streamIndex)}
		x.tenant[e.Tenant] = t
	}
	t.head = events.TenantHead{Seq: e.Seq, Hash: e.Hash}
	t.positions = append(t.positions, pos)
	s := t.streams[e.Stream]
	if s == nil {
		s = &streamIndex{}
		t.streams[e.Stream] = s
	}
	s.version = e.Version
	s.positions = append(s.positions, pos)
	if ok && len(x.ring) > 0 {
		x.ring[pos%int64(len(x.ring))] = *e
	}
	return true
}

// version returns a stream's current version, 0 for a new stream.
func (x *index) version(k streamKey) int64 {
	if t := x.tenant[k.tenant]; t != nil {
		if s := t.streams[k.stream]; s != nil {
			return s.version
		}
	}
	return 0
}

// head returns a tenant's chain head; the zero value for a new tenant.
func (x *index) head(tenant string) events.TenantHead {
	if t := x.tenant[tenant]; t != nil {
		return t.head
	}
	return events.TenantHead{}
}

// position returns where the event with the given id is recorded.
func (x *index) position(id string) (int64, bool) {
	p, ok := x.ids[id]
	return p, ok
}

// streamPositions returns the positions of a stream's events with a
// version above after, at most limit of them (limit <= 0: all). Versions
// count from 1 in ledger order, so they are found by offset; the caller
// filters what it reads back, which only differs on a tampered ledger.
func (x *index) streamPositions(k streamKey, after int64, limit int) []int64 {
	t := x.tenant[k.tenant]
	if t == nil {
		return nil
	}
	s := t.streams[k.stream]
	if s == nil {
		return nil
	}
	return window(s.positions, after, limit)
}

// tenantPositions is streamPositions for a tenant's chain, by sequence
// number.
func (x *index) tenantPositions(tenant string, after int64, limit int) []int64 {
	t := x.tenant[tenant]
	if t == nil {
		return nil
	}
	return window(t.positions, after, limit)
}

func window(ps []int64, after int64, limit int) []int64 {
	start := int64(0)
	if after > 0 {
		start = min(after, int64(len(ps)))
	}
	end := int64(len(ps))
	if limit > 0 {
		end = min(end, start+int64(limit))
	}
	return append([]int64(nil), ps[start:end]...)
}

// recent returns the consecutive events after position after that the
// ring holds, at most limit; nil when it does not hold after+1.
func (x *index) recent(after int64, limit int) []events.Event {
	n := int64(len(x.ring))
	if n == 0 || after < 0 || after+1 > x.next || after+1 <= x.next-n || limit <= 0 {
		return nil
	}
	var out []events.Event
	for p := after + 1; p <= x.next && len(out) < limit; p++ {
		e := &x.ring[p%n]
		if e.Position != p {
			break // not held: a corrupt or unparsed record, or a truncated stretch
		}
		out = append(out, *e)
	}
	return out
}

// cached returns the event at pos from the ring, if it holds it.
func (x *index) cached(pos int64) (events.Event, bool) {
	n := int64(len(x.ring))
	if n == 0 || pos <= 0 || pos > x.next || pos <= x.next-n {
		return events.Event{}, false
	}
	e := x.ring[pos%n]
	return e, e.Position == pos
}
