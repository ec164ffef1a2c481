package events

import (
	"crypto/sha256"
	"encoding/binary"
)

// chainTag separates Haldir ledger hashes from every other SHA-256 use.
const chainTag = "haldir/ledger/v1\x00"

// ComputeHash returns the chain hash of e:
//
//	SHA-256( "haldir/ledger/v1\x00" ‖ prev_hash[32] ‖ u64be(seq) ‖
//	         lp(id) ‖ lp(tenant) ‖ lp(stream) ‖ u64be(version) ‖ lp(type) ‖
//	         i64be(recorded_at unix nanoseconds) ‖ lp(payload) ‖ lp(metadata) )
//
// where lp(x) = u32be(len(x)) ‖ x. Every variable-length field is length
// prefixed, so no two different envelopes hash the same bytes. The global
// Position is deliberately not hashed: it is a property of the store, not of
// the tenant's history, and Verify checks it structurally instead.
func ComputeHash(e *Event) Hash {
	var buf [512]byte
	return sha256.Sum256(AppendEnvelope(buf[:0], e))
}

// AppendEnvelope appends the bytes that ComputeHash hashes to dst and returns
// the extended slice. Callers hashing many events reuse dst to avoid
// allocation.
func AppendEnvelope(dst []byte, e *Event) []byte {
	dst = append(dst, chainTag...)
	dst = append(dst, e.PrevHash[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Seq))
	dst = appendLP(dst, e.ID)
	dst = appendLP(dst, e.Tenant)
	dst = appendLP(dst, e.Stream)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Version))
	dst = appendLP(dst, e.Type)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.RecordedAt.UnixNano()))
	dst = appendLP(dst, e.Payload)
	dst = appendLP(dst, e.Metadata)
	return dst
}

func appendLP[T string | []byte](dst []byte, b T) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}
