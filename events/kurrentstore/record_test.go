package kurrentstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/haldir-dev/haldir/events"
)

// chained returns n events of one tenant, chained and hashed as the writer
// makes them.
func chained(n int, payload func(i int) []byte) []events.Event {
	var out []events.Event
	var h events.TenantHead
	for i := range n {
		e := events.Event{
			ID:         "evt_" + string(rune('a'+i)),
			Tenant:     "t_rec",
			Stream:     "session/ses_1",
			Version:    int64(i + 1),
			Type:       "test.happened",
			Payload:    payload(i),
			Metadata:   events.EncodeMetadata(events.Metadata{Actor: "hld_x", RequestID: "req"}),
			RecordedAt: time.Unix(1_700_000_000, int64(i)*1_000_001).UTC(),
			Seq:        h.Seq + 1,
			Position:   int64(i + 1),
			PrevHash:   h.Hash,
		}
		e.Hash = events.ComputeHash(&e)
		h = events.TenantHead{Seq: e.Seq, Hash: e.Hash}
		out = append(out, e)
	}
	return out
}

// stored is what KurrentDB hands back for an appended event at a revision:
// the fields the client reads from the server, as the client's own types.
func stored(d esdb.EventData, revision uint64) *esdb.RecordedEvent {
	ct := "application/octet-stream"
	if d.ContentType == esdb.ContentTypeJson {
		ct = "application/json"
	}
	return &esdb.RecordedEvent{EventID: d.EventID, EventType: d.EventType, ContentType: ct, StreamID: "haldir-ledger",
		EventNumber: revision, Data: d.Data, UserMetadata: d.Metadata}
}

// TestRecordRoundTrip: what the store writes decodes to the same event,
// byte for byte, and the chain hash recomputed over the decoded event is
// the stored one, for payloads of any bytes (not only JSON).
func TestRecordRoundTrip(t *testing.T) {
	payloads := [][]byte{[]byte(`{"a":1}`), {}, {0xff, 0xfe, 0x00, '"'}, bytes.Repeat([]byte("x"), 70_000), []byte(` { "b" : 2 } `)}
	evs := chained(len(payloads), func(i int) []byte { return payloads[i] })
	evs[2].Tenant, evs[2].Stream, evs[2].ID = "t\x00\xff", "s|/\n", "evt_\u00e9\u0000"
	for i := range evs {
		evs[i].Hash = events.ComputeHash(&evs[i]) // fields changed above
	}
	for _, e := range evs {
		d := encodeRecord(&e)
		if d.ContentType != esdb.ContentTypeBinary || d.EventType != e.Type || !bytes.Equal(d.Data, e.Payload) {
			t.Errorf("position %d: stored as type %q content %v, data %d bytes; want the type, binary, the payload verbatim", e.Position, d.EventType, d.ContentType, len(d.Data))
		}
		got, parsed, err := decodeRecord(stored(d, uint64(e.Position-1)))
		if err != nil || !parsed {
			t.Fatalf("position %d: decode: parsed %v, %v", e.Position, parsed, err)
		}
		if diff := cmp.Diff(e, got); diff != "" {
			t.Errorf("position %d: round trip (-written +read):\n%s", e.Position, diff)
		}
		if events.ComputeHash(&got) != e.Hash {
			t.Errorf("position %d: the hash over the decoded event is not the stored hash", e.Position)
		}
	}
	// A nil payload is stored as an empty one and reads back non-nil, as
	// the SQL store's rows do.
	e := chained(1, func(int) []byte { return nil })[0]
	got, _, err := decodeRecord(stored(encodeRecord(&e), 0))
	if err != nil || got.Payload == nil || len(got.Payload) != 0 {
		t.Errorf("nil payload read back as %#v, %v; want an empty non-nil slice", got.Payload, err)
	}
}

// TestRecordAtWrongRevision: a record read at a revision other than its
// position-1 (the stream was truncated and rewritten, or the record copied)
// is corrupt at the revision's position, though it parses.
func TestRecordAtWrongRevision(t *testing.T) {
	e := chained(3, func(int) []byte { return []byte("{}") })[2]
	_, parsed, err := decodeRecord(stored(encodeRecord(&e), 7))
	var ce *events.CorruptError
	if !errors.As(err, &ce) || ce.Position != 8 || !parsed {
		t.Fatalf("record of position 3 at revision 7: parsed %v, err %v; want a CorruptError at position 8", parsed, err)
	}
}

// TestRecordHeaderTamper flips every bit of a stored header and cuts it at
// every length. Each change must either fail to decode (a CorruptError at
// the record's position) or change the decoded event so that the chain
// check fails: the hash no longer matches, or the position or sequence
// number is not the one expected. None may go unnoticed.
func TestRecordHeaderTamper(t *testing.T) {
	evs := chained(2, func(i int) []byte { return []byte(`{"i":1}`) })
	e := evs[1]
	d := encodeRecord(&e)
	noticed := func(b []byte) bool {
		r := stored(d, 1)
		r.UserMetadata = b
		got, _, err := decodeRecord(r)
		if err != nil {
			var ce *events.CorruptError
			if !errors.As(err, &ce) || ce.Position != 2 {
				t.Fatalf("decode error %v is not a CorruptError at position 2", err)
			}
			return true
		}
		return events.ComputeHash(&got) != got.Hash || got.Hash != e.Hash || got.Seq != e.Seq || got.Position != e.Position || got.PrevHash != evs[0].Hash
	}
	for i := range d.Metadata {
		for bit := range 8 {
			b := bytes.Clone(d.Metadata)
			b[i] ^= 1 << bit
			if !noticed(b) {
				t.Errorf("flipping bit %d of header byte %d went unnoticed", bit, i)
			}
		}
	}
	for n := range len(d.Metadata) {
		if !noticed(d.Metadata[:n]) {
			t.Errorf("header cut to %d bytes went unnoticed", n)
		}
	}
	if !noticed(append(bytes.Clone(d.Metadata), 0)) {
		t.Errorf("a trailing byte went unnoticed")
	}
	// The payload and the type live outside the header; the chain covers them.
	r := stored(d, 1)
	r.Data = []byte(`{"i":2}`)
	if got, _, err := decodeRecord(r); err != nil || events.ComputeHash(&got) == e.Hash {
		t.Errorf("a changed payload went unnoticed (err %v)", err)
	}
	r = stored(d, 1)
	r.EventType = "test.forged"
	if got, _, err := decodeRecord(r); err != nil || events.ComputeHash(&got) == e.Hash {
		t.Errorf("a changed event type went unnoticed (err %v)", err)
	}
}

// TestRecordForeignEvent: an event some other client appended to the
// ledger stream is not a Haldir record.
func TestRecordForeignEvent(t *testing.T) {
	for _, md := range [][]byte{nil, []byte(`{"$correlationId":"x"}`), []byte("HLD\x02" + string(make([]byte, 200)))} {
		_, parsed, err := decodeRecord(&esdb.RecordedEvent{EventType: "SomethingHappened", Data: []byte(`{}`), UserMetadata: md, EventNumber: 4})
		var ce *events.CorruptError
		if parsed || !errors.As(err, &ce) || ce.Position != 5 {
			t.Errorf("metadata %q: parsed %v, err %v; want unparsed, CorruptError at 5", md, parsed, err)
		}
	}
}

func TestEventUUID(t *testing.T) {
	a, b := eventUUID("evt_1"), eventUUID("evt_1")
	if a != b {
		t.Errorf("eventUUID is not deterministic: %s, %s", a, b)
	}
	if a.Version() != 5 || a.Variant() != uuid.RFC4122 {
		t.Errorf("eventUUID(evt_1) = %s, version %d: want an RFC 4122 version 5 UUID", a, a.Version())
	}
	seen := map[uuid.UUID]string{}
	for _, id := range []string{"evt_1", "evt_2", "evt_10", "evt_1 ", "", "EVT_1"} {
		u := eventUUID(id)
		if prev, dup := seen[u]; dup {
			t.Errorf("eventUUID(%q) = eventUUID(%q)", id, prev)
		}
		seen[u] = id
	}
}

// FuzzDecodeHeader: decoding never panics, and a header that decodes is
// the canonical encoding of what it decoded to.
func FuzzDecodeHeader(f *testing.F) {
	for _, e := range chained(3, func(i int) []byte { return []byte{byte(i)} }) {
		f.Add(encodeRecord(&e).Metadata)
	}
	f.Add([]byte(headerMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e events.Event
		if err := decodeHeader(b, &e); err != nil {
			return
		}
		if again := appendHeader(nil, &e); !bytes.Equal(again, b) {
			t.Fatalf("header %x decodes to an event that encodes as %x", b, again)
		}
	})
}
