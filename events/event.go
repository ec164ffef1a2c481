// Package events is Haldir's ledger: an append-only, per-tenant SHA-256
// chain of events from which every other piece of state is derived.
//
// An event is appended as a Proposed value and read back as an Event, which
// adds what the store assigned: the tenant sequence number, the global
// position, the recorded time and the chain hashes. The exact payload and
// metadata bytes that were hashed are the bytes that are stored; nothing is
// re-encoded before it is hashed again (see Hash).
//
// Stores implement the Store interface; every implementation must pass the
// contract suite in package storetest.
package events

import (
	"encoding/json"
	"time"
)

// AnyVersion as Proposed.ExpectedVersion appends without a concurrency
// check. Decisions must never use it; it is for facts that cannot conflict.
const AnyVersion int64 = -1

// HashSize is the size of a chain hash in bytes.
const HashSize = 32

// Hash is a SHA-256 chain hash.
type Hash [HashSize]byte

// Metadata describes who caused an event. It is stored as canonical JSON
// bytes beside the payload and covered by the chain hash. It never holds
// secrets: Actor is an API key prefix, never the key.
type Metadata struct {
	Actor          string `json:"actor,omitempty"`
	SessionID      string `json:"session_id,omitempty"`
	AgentID        string `json:"agent_id,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Proposed is an event a command wants to append.
type Proposed struct {
	// ID is the event id, unique across the ledger. Appending an ID that
	// already exists with identical content returns the stored event
	// instead of appending again (idempotent retry).
	ID     string
	Tenant string
	// Stream names the aggregate the event belongs to, for example
	// "session/ses_…"; its versions count from 1.
	Stream string
	// ExpectedVersion is the stream version the decision was made on: 0 for
	// a new stream, or AnyVersion.
	ExpectedVersion int64
	// Type is the event's stable name, such as "session.created". It never
	// derives from a Go type path.
	Type    string
	Payload []byte
	Meta    Metadata
	// Deferrable lets a store hold the event briefly (at most
	// DeferLimit) so that it shares a commit with the next append rather
	// than costing one of its own: for events nobody waits on before
	// answering, such as a forwarded call's outcome. An append of
	// deferrable events only is deferred; the order of appends is kept.
	Deferrable bool
}

// DeferLimit bounds how long a store may hold a Deferrable append.
const DeferLimit = 2 * time.Millisecond

// Event is an event as recorded in the ledger.
type Event struct {
	ID         string
	Tenant     string
	Stream     string
	Version    int64
	Type       string
	Payload    []byte
	Metadata   []byte
	RecordedAt time.Time
	// Seq is the event's 1-based position in its tenant's chain.
	Seq int64
	// Position is the event's 1-based, gapless, commit-ordered position in
	// the whole ledger.
	Position int64
	PrevHash Hash
	Hash     Hash
}

// Meta decodes the event's metadata. Malformed metadata yields the zero value.
func (e *Event) Meta() Metadata {
	var m Metadata
	_ = json.Unmarshal(e.Metadata, &m)
	return m
}

// EncodeMetadata returns the canonical bytes stored for m: encoding/json of
// the struct, whose field order is fixed.
func EncodeMetadata(m Metadata) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic("events: metadata is always encodable: " + err.Error())
	}
	return b
}
