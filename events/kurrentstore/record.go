package kurrentstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/haldir-dev/haldir/events"
)

// A ledger event is stored as one KurrentDB event of the ledger stream:
//
//	EventID      UUIDv5(eventIDSpace, event id)
//	EventType    the event's Type, verbatim
//	ContentType  binary (KurrentDB never parses or re-encodes the data)
//	Data         the payload, verbatim
//	Metadata     the header:
//
//	    "HLD" ‖ 0x01 ‖ u64be(position) ‖ u64be(seq) ‖ u64be(version) ‖
//	    i64be(recorded_at unix nanoseconds) ‖ prev_hash[32] ‖ hash[32] ‖
//	    lp(id) ‖ lp(tenant) ‖ lp(stream) ‖ lp(metadata)
//
// where lp(x) = u32be(len(x)) ‖ x. Every field the chain hash covers is
// stored as the exact bytes that were hashed, so events.ComputeHash over a
// decoded event recomputes the stored hash. The position is stored too, and
// a record read at a revision other than position-1 is reported corrupt:
// a ledger stream that was truncated and rewritten shifts revisions and is
// caught even where the chain would link.
const (
	headerMagic  = "HLD\x01"
	headerFixed  = len(headerMagic) + 4*8 + 2*events.HashSize
	headerFields = 4 // length-prefixed fields after the fixed part
)

// eventIDSpace is the UUID namespace of ledger event ids. Deriving the
// KurrentDB EventID from the Haldir id makes a re-sent append of the same
// batch at the same expected revision one that KurrentDB recognises as
// already written (its idempotent-write check), instead of a second copy.
var eventIDSpace = uuid.MustParse("5f1d3a52-7c0e-4b9a-9d3e-6a8f2c1b0e47")

// eventUUID returns the KurrentDB EventID of a ledger event id.
func eventUUID(id string) uuid.UUID { return uuid.NewSHA1(eventIDSpace, []byte(id)) }

// encodeRecord returns the KurrentDB event that stores e.
func encodeRecord(e *events.Event) esdb.EventData {
	return esdb.EventData{
		EventID:     eventUUID(e.ID),
		EventType:   e.Type,
		ContentType: esdb.ContentTypeBinary,
		Data:        e.Payload,
		Metadata:    appendHeader(make([]byte, 0, headerSize(e)), e),
	}
}

func headerSize(e *events.Event) int {
	return headerFixed + 4*headerFields + len(e.ID) + len(e.Tenant) + len(e.Stream) + len(e.Metadata)
}

func appendHeader(dst []byte, e *events.Event) []byte {
	dst = append(dst, headerMagic...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Position))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Seq))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Version))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.RecordedAt.UnixNano()))
	dst = append(dst, e.PrevHash[:]...)
	dst = append(dst, e.Hash[:]...)
	for _, f := range [][]byte{[]byte(e.ID), []byte(e.Tenant), []byte(e.Stream), e.Metadata} {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f)))
		dst = append(dst, f...)
	}
	return dst
}

// recordSize estimates the bytes an event takes in an append request, for
// keeping a batch under the server's maximum append size.
func recordSize(e *events.Event) int {
	const perEvent = 64 // the id, the content-type entry and protobuf framing
	return perEvent + len(e.Type) + len(e.Payload) + headerSize(e)
}

// decodeHeader parses a header into e. It fails on a wrong magic, a short
// or over-long header, or a length prefix past the end.
func decodeHeader(b []byte, e *events.Event) error {
	if len(b) < headerFixed || string(b[:len(headerMagic)]) != headerMagic {
		return fmt.Errorf("not a Haldir ledger record (%d-byte metadata without the header)", len(b))
	}
	p := b[len(headerMagic):]
	u64 := func() uint64 {
		v := binary.BigEndian.Uint64(p)
		p = p[8:]
		return v
	}
	e.Position = int64(u64())
	e.Seq = int64(u64())
	e.Version = int64(u64())
	e.RecordedAt = time.Unix(0, int64(u64())).UTC()
	copy(e.PrevHash[:], p)
	copy(e.Hash[:], p[events.HashSize:])
	p = p[2*events.HashSize:]
	var fields [headerFields][]byte
	for i := range fields {
		if len(p) < 4 {
			return fmt.Errorf("header ends inside field %d", i)
		}
		n := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(n) > uint64(len(p)) {
			return fmt.Errorf("header field %d claims %d bytes, %d remain", i, n, len(p))
		}
		fields[i], p = p[:n:n], p[n:]
	}
	if len(p) != 0 {
		return fmt.Errorf("header has %d trailing bytes", len(p))
	}
	e.ID, e.Tenant, e.Stream = string(fields[0]), string(fields[1]), string(fields[2])
	e.Metadata = append([]byte{}, fields[3]...)
	return nil
}

// decodeRecord returns the ledger event stored in r, a record of the
// ledger stream. parsed reports whether the header could be read at all
// (so that an index can still place the event); err is a
// *events.CorruptError naming position r.EventNumber+1 when the record is
// not a Haldir record or says it belongs at another position.
func decodeRecord(r *esdb.RecordedEvent) (e events.Event, parsed bool, err error) {
	at := int64(r.EventNumber) + 1
	if err := decodeHeader(r.UserMetadata, &e); err != nil {
		return events.Event{Position: at}, false, &events.CorruptError{Position: at, Reason: err.Error()}
	}
	e.Type = r.EventType
	e.Payload = append([]byte{}, r.Data...)
	if e.Position != at {
		return e, true, &events.CorruptError{Position: at, Reason: fmt.Sprintf("the record at ledger revision %d says it is position %d", at-1, e.Position)}
	}
	return e, true, nil
}
