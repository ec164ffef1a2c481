package commands

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"sync"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// Ids under an Idempotency-Key.
//
// A request that carries an Idempotency-Key derives every id it creates,
// event ids and resource ids alike, from
//
//	(tenant, route, key, what the id names, its ordinal in the request)
//
// where "what the id names" is the stream of an event or the prefix of a
// resource id, and the ordinal counts the ids of that name the request has
// derived so far. Two ids of one request therefore never collide, by
// construction; a retry of the same request (after a crash, or after a
// server error released the key) walks the same steps in the same order and
// derives the same ids, so the ledger returns what the first run appended
// instead of appending it twice.
//
// An id is derived once per step, before any retry of the step's decision
// on a version conflict, so a step keeps its id however often its decision
// is re-made.

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// idSequence counts, per name, the ids one request has derived.
type idSequence struct {
	mu sync.Mutex
	n  map[string]int
}

func (q *idSequence) next(name string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := q.n[name]
	q.n[name] = i + 1
	return i
}

// WithIdempotencyKey returns a copy of a whose commands derive their ids
// from key (see the package's notes on ids). Use one per request: the copy
// and the copies made of it share one sequence.
func (a Actor) WithIdempotencyKey(key string) Actor {
	a.IdempotencyKey = key
	a.seq = &idSequence{n: map[string]int{}}
	return a
}

// derived reports whether a derives its ids from an idempotency key.
func (a Actor) derived() bool { return a.IdempotencyKey != "" && a.seq != nil }

// eventIDs returns the ids of one step's events on stream: the i-th event
// of the step gets ids(i). Call it once per step, outside any retry loop.
func (a Actor) eventIDs(stream string) func(i int) string {
	if !a.derived() {
		return func(int) string { return events.NewID() }
	}
	step := a.seq.next("evt\x00" + stream)
	return func(i int) string {
		return "evt_" + idEncoding.EncodeToString(a.digest("evt", stream, strconv.Itoa(step), strconv.Itoa(i)))
	}
}

// eventID returns the id of a one-event step on stream.
func (a Actor) eventID(stream string) string { return a.eventIDs(stream)(0) }

// newID returns a fresh resource id with prefix, or, under an idempotency
// key, the one this step of the request derives.
func (a Actor) newID(prefix string) string {
	if !a.derived() {
		return domain.NewID(prefix)
	}
	step := a.seq.next("id\x00" + prefix)
	return domain.NewIDFromBytes(prefix, a.digest("id", prefix, strconv.Itoa(step)))
}

// digest is 15 bytes of SHA-256 over the length-prefixed request identity
// and parts.
func (a Actor) digest(parts ...string) []byte {
	h := sha256.New()
	for _, s := range append([]string{"haldir/idempotency/v2", a.Tenant, a.Route, a.IdempotencyKey}, parts...) {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return h.Sum(nil)[:15]
}
