package transparency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
)

func syntheticHash(i int64) events.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

// BenchmarkAppend measures appending one leaf to a MemoryStore: the stored
// hashes of the leaf (StoredHashesFor, ~2 SHA-256 per leaf on average)
// and their storage.
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	s := NewMemoryStore()
	var i int64
	for b.Loop() {
		if _, err := s.Append(ctx, "ten_bench", syntheticHash(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkStoredHashesFor measures the pure append step the ledger's
// transaction calls, over a slice of stored hashes.
func BenchmarkStoredHashesFor(b *testing.B) {
	var stored hashSlice
	var i int64
	for b.Loop() {
		_, hs, err := StoredHashesFor(i, syntheticHash(i), stored)
		if err != nil {
			b.Fatal(err)
		}
		stored = append(stored, hs...)
		i++
	}
}

const benchLeaves = 1_000_000

func millionLeafStore(b *testing.B) *MemoryStore {
	b.Helper()
	s := NewMemoryStore()
	for i := range int64(benchLeaves) {
		if _, err := s.Append(context.Background(), "ten_bench", syntheticHash(i)); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkInclusionProof1M measures ProveInclusion (root, proof and the
// self-check against the event hash) in a tree of 1,000,000 leaves held in
// a MemoryStore.
func BenchmarkInclusionProof1M(b *testing.B) {
	ctx := context.Background()
	s := millionLeafStore(b)
	var i int64
	for b.Loop() {
		n := (i * 7919) % benchLeaves
		e := events.Event{Tenant: "ten_bench", Seq: n + 1, Hash: syntheticHash(n)}
		p, err := ProveInclusion(ctx, s, &e, benchLeaves)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.AuditPath) > 20 {
			b.Fatalf("audit path of %d hashes", len(p.AuditPath))
		}
		i++
	}
}

// BenchmarkConsistencyProof1M measures ProveConsistency from a random size
// to 1,000,000 leaves.
func BenchmarkConsistencyProof1M(b *testing.B) {
	ctx := context.Background()
	s := millionLeafStore(b)
	var i int64
	for b.Loop() {
		first := (i*7919)%(benchLeaves-1) + 1
		if _, err := ProveConsistency(ctx, s, "ten_bench", first, benchLeaves); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVerifyInclusion1M measures an auditor checking one proof.
func BenchmarkVerifyInclusion1M(b *testing.B) {
	ctx := context.Background()
	s := millionLeafStore(b)
	e := events.Event{Tenant: "ten_bench", Seq: 123457, Hash: syntheticHash(123456)}
	p, err := ProveInclusion(ctx, s, &e, benchLeaves)
	if err != nil {
		b.Fatal(err)
	}
	leaf, root := LeafHash(e.Hash), tlog.Hash(p.RootHash)
	for b.Loop() {
		if err := VerifyInclusion(p, 123456, leaf, benchLeaves, root); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyBundle measures offline verification per event: parsing,
// the chain hash, the Merkle tree and the root check.
func BenchmarkVerifyBundle(b *testing.B) {
	skey, vkey := testKey(b, "haldir.example", 7)
	const n = 20_000
	bundle := bundleOf(b, skey, vkey, "ten_bench", chain("ten_bench", n, "a"), n)
	b.SetBytes(int64(len(bundle)))
	for b.Loop() {
		if _, err := VerifyBundle(bytes.NewReader(bundle), vkey, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
