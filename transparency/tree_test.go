package transparency

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
)

// TestReferenceKnownAnswers checks the test's own RFC 6962 reference
// against the Certificate Transparency test vectors (the eight leaves and
// roots used by every CT implementation), and tlog against both, so that
// the reference can be trusted as independent evidence below.
func TestReferenceKnownAnswers(t *testing.T) {
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	var d [][]byte
	var stored hashSlice
	for i, l := range leaves {
		b, _ := hex.DecodeString(l)
		d = append(d, b)
		hs, err := tlog.StoredHashes(int64(i), b, stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		want, _ := ParseHash(roots[i])
		if got := refMTH(d); Hash(got) != want {
			t.Errorf("reference MTH of %d leaves = %x, want %s", i+1, got, want)
		}
		if got, _ := tlog.TreeHash(int64(i+1), stored); Hash(got) != want {
			t.Errorf("tlog.TreeHash of %d leaves = %x, want %s", i+1, got, want)
		}
	}
	if got := refMTH(nil); Hash(got) != Hash(EmptyRoot()) || Hash(got).String() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty root = %x", got)
	}
	// RFC 9162 consistency vector: PROOF(2, D[5]).
	p := refProof(2, d[:5])
	if len(p) != 2 || Hash(p[0]).String() != "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e" ||
		Hash(p[1]).String() != "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b" {
		t.Errorf("reference PROOF(2, D[5]) = %x", p)
	}
}

// TestMatchesRFC6962 checks, for every tree of 0 to 70 leaves and of 1000,
// that the stored tree's root is MTH, that every inclusion proof is PATH and
// every consistency proof is PROOF as the RFC defines them recursively, and
// that the RFC 9162 iterative verifiers accept them.
func TestMatchesRFC6962(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sizes := []int{1000}
	for n := 0; n <= 70; n++ {
		sizes = append(sizes, n)
	}
	all := chain("ten_ref", 1000, "a")
	s := storeOf(t, all)
	for _, n := range sizes {
		d := leafData(all[:n])
		head, err := TreeHead(ctx, s, "ten_ref", int64(n))
		if err != nil {
			t.Fatal(err)
		}
		if want := refMTH(d); head.Root != want {
			t.Fatalf("root of %d leaves = %x, RFC 6962 MTH = %x", n, head.Root, want)
		}
		step := 1
		if n > 100 {
			step = 37
		}
		for m := 0; m < n; m += step {
			p, err := ProveInclusion(ctx, s, &all[m], int64(n))
			if err != nil {
				t.Fatal(err)
			}
			want := refPath(m, d)
			if !slices.Equal(fromHex(p.AuditPath), want) {
				t.Fatalf("inclusion proof of leaf %d in %d = %x, RFC 6962 PATH = %x", m, n, p.AuditPath, want)
			}
			if !rfcVerifyInclusion(int64(m), int64(n), refLeaf(d[m]), want, head.Root) {
				t.Fatalf("RFC 9162 verifier rejects PATH(%d, D[%d])", m, n)
			}
			if err := VerifyInclusion(p, int64(m), LeafHash(all[m].Hash), int64(n), head.Root); err != nil {
				t.Fatal(err)
			}
		}
		for m := 0; m <= n; m += step {
			p, err := ProveConsistency(ctx, s, "ten_ref", int64(m), int64(n))
			if err != nil {
				t.Fatal(err)
			}
			var want []tlog.Hash
			if m > 0 {
				want = refProof(m, d)
			}
			if !slices.Equal(fromHex(p.ConsistencyPath), want) {
				t.Fatalf("consistency proof %d→%d = %x, RFC 6962 PROOF = %x", m, n, p.ConsistencyPath, want)
			}
			if 0 < m && m < n && !rfcVerifyConsistency(int64(m), int64(n), refMTH(d[:m]), head.Root, want) {
				t.Fatalf("RFC 9162 verifier rejects PROOF(%d, D[%d])", m, n)
			}
			if err := VerifyConsistency(p, int64(m), refMTH(d[:m]), int64(n), head.Root); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestLeafHashIsRecordHashOfEventHash(t *testing.T) {
	var eh events.Hash
	for i := range eh {
		eh[i] = byte(i)
	}
	got := LeafHash(eh)
	if got != refLeaf(eh[:]) || got != tlog.RecordHash(eh[:]) {
		t.Fatalf("LeafHash = %x, want SHA-256(0x00 ‖ event hash)", got)
	}
}

func TestStoredHashesAreDense(t *testing.T) {
	var stored hashSlice
	evs := chain("ten_x", 300, "a")
	for i := range evs {
		idx, hs, err := StoredHashesFor(int64(i), evs[i].Hash, stored)
		if err != nil {
			t.Fatal(err)
		}
		if len(idx) != len(hs) || idx[0] != int64(len(stored)) || idx[0] != tlog.StoredHashIndex(0, int64(i)) {
			t.Fatalf("leaf %d: indexes %v for %d stored hashes", i, idx, len(stored))
		}
		for k := range idx {
			if idx[k] != idx[0]+int64(k) {
				t.Fatalf("leaf %d: indexes %v are not consecutive", i, idx)
			}
		}
		if hs[0] != LeafHash(evs[i].Hash) {
			t.Fatalf("leaf %d: first stored hash is not the leaf hash", i)
		}
		stored = append(stored, hs...)
		if int64(len(stored)) != tlog.StoredHashCount(int64(i+1)) {
			t.Fatalf("after leaf %d: %d stored hashes, want %d", i, len(stored), tlog.StoredHashCount(int64(i+1)))
		}
	}
	if _, _, err := StoredHashesFor(-1, events.Hash{}, stored); err == nil {
		t.Fatal("StoredHashesFor(-1) succeeded")
	}
	// A reader missing hashes fails instead of inventing them.
	if _, _, err := StoredHashesFor(299, events.Hash{}, stored[:10]); err == nil {
		t.Fatal("StoredHashesFor with a short store succeeded")
	}
}

// TestStoredHashesForLeaves checks that appending in batches of any size
// stores the same hashes as appending one leaf at a time, reading only
// hashes stored before each batch.
func TestStoredHashesForLeaves(t *testing.T) {
	evs := chain("ten_x", 200, "a")
	var one hashSlice
	for i := range evs {
		_, hs, err := StoredHashesFor(int64(i), evs[i].Hash, one)
		if err != nil {
			t.Fatal(err)
		}
		one = append(one, hs...)
	}
	for _, batch := range []int{1, 2, 3, 7, 16, 64, 200} {
		var many hashSlice
		for i := 0; i < len(evs); i += batch {
			j := min(i+batch, len(evs))
			hashes := make([]events.Hash, 0, j-i)
			for k := i; k < j; k++ {
				hashes = append(hashes, evs[k].Hash)
			}
			before := many // the reader sees only what was stored before the batch
			idx, hs, err := StoredHashesForLeaves(int64(i), hashes, before)
			if err != nil {
				t.Fatalf("batch %d at %d: %v", batch, i, err)
			}
			if len(idx) != len(hs) || (len(idx) > 0 && idx[0] != int64(len(many))) {
				t.Fatalf("batch %d at %d: indexes start at %d, %d stored", batch, i, idx[0], len(many))
			}
			many = append(many, hs...)
		}
		if !slices.Equal(one, many) {
			t.Fatalf("batches of %d store different hashes than single appends", batch)
		}
	}
}

// A stored tree that disagrees with the ledger is reported by
// ProveInclusion, never served as a proof.
func TestProveInclusionChecksTheStore(t *testing.T) {
	ctx := context.Background()
	evs := chain("ten_x", 9, "a")
	s := storeOf(t, evs)
	other := chain("ten_x", 9, "b")
	if _, err := ProveInclusion(ctx, s, &other[4], 9); err == nil || !strings.Contains(err.Error(), "disagree with the ledger") {
		t.Fatalf("ProveInclusion of an event not in the tree: %v", err)
	}
	if _, err := ProveInclusion(ctx, s, &evs[8], 8); err == nil {
		t.Fatal("ProveInclusion of seq 9 in a tree of 8 succeeded")
	}
	if _, err := ProveInclusion(ctx, s, &evs[0], 10); err == nil {
		t.Fatal("ProveInclusion in a tree larger than the store succeeded")
	}
	if _, err := ProveConsistency(ctx, s, "ten_x", 5, 4); err == nil {
		t.Fatal("ProveConsistency 5→4 succeeded")
	}
	if _, err := TreeHead(ctx, s, "ten_x", 10); err == nil {
		t.Fatal("TreeHead beyond the store succeeded")
	}
}

// inclusionProbe is a claimed inclusion: everything VerifyInclusion is
// given, trusted arguments and proof fields alike set to the same values,
// so that only the hashing can reject it.
type inclusionProbe struct {
	desc        func() string
	index, size int64
	leaf, root  tlog.Hash
	path        []tlog.Hash
}

func (p inclusionProbe) verify() (ours error, rfc bool) {
	proof := &InclusionProof{Algorithm: Algorithm, EntryID: "evt", LeafIndex: p.index, LeafHash: Hash(p.leaf), TreeSize: p.size,
		RootHash: Hash(p.root), AuditPath: toHex(p.path)}
	return VerifyInclusion(proof, p.index, p.leaf, p.size, p.root), rfcVerifyInclusion(p.index, p.size, p.leaf, p.path, p.root)
}

func corruptInclusion(good inclusionProbe, eventHash events.Hash, roots []tlog.Hash) []inclusionProbe {
	var out []inclusionProbe
	add := func(desc string, f func(*inclusionProbe)) {
		p := good
		p.desc = func() string { return desc }
		p.path = slices.Clone(good.path)
		f(&p)
		out = append(out, p)
	}
	for k := range good.path {
		for bit := 0; bit < 8*tlog.HashSize; bit++ {
			p := good
			p.desc = func() string { return fmt.Sprintf("path[%d] bit %d flipped", k, bit) }
			p.path = slices.Clone(good.path)
			p.path[k][bit/8] ^= 1 << (bit % 8)
			out = append(out, p)
		}
	}
	if n := len(good.path); n > 0 {
		add("path without its last hash", func(p *inclusionProbe) { p.path = p.path[:n-1] })
		add("path without its first hash", func(p *inclusionProbe) { p.path = p.path[1:] })
		add("empty path", func(p *inclusionProbe) { p.path = nil })
		add("path with its first hash repeated", func(p *inclusionProbe) { p.path = append([]tlog.Hash{p.path[0]}, p.path...) })
	}
	add("path extended by a zero hash", func(p *inclusionProbe) { p.path = append(p.path, tlog.Hash{}) })
	add("path extended by the root", func(p *inclusionProbe) { p.path = append(p.path, p.root) })
	add("path preceded by a zero hash", func(p *inclusionProbe) { p.path = append([]tlog.Hash{{}}, p.path...) })
	add("path preceded by the leaf", func(p *inclusionProbe) { p.path = append([]tlog.Hash{p.leaf}, p.path...) })
	for j := int64(-1); j <= good.size; j++ {
		if j != good.index {
			add(fmt.Sprintf("leaf index %d", j), func(p *inclusionProbe) { p.index = j })
		}
	}
	add("tree size * 2", func(p *inclusionProbe) { p.size *= 2 })
	add("tree size / 2", func(p *inclusionProbe) { p.size /= 2 })
	add("tree size 0", func(p *inclusionProbe) { p.size = 0 })
	add("leaf hash bit flipped", func(p *inclusionProbe) { p.leaf[31] ^= 1 })
	add("event hash used as the leaf hash (no 0x00 prefix)", func(p *inclusionProbe) { p.leaf = tlog.Hash(eventHash) })
	if good.leaf != good.root { // in a tree of one leaf they are the same hash
		add("leaf and root swapped", func(p *inclusionProbe) { p.leaf, p.root = p.root, p.leaf })
	}
	add("root bit flipped", func(p *inclusionProbe) { p.root[0] ^= 0x80 })
	add("empty-tree root", func(p *inclusionProbe) { p.root = EmptyRoot() })
	for n, r := range roots {
		if int64(n) != good.size && r != good.root {
			add(fmt.Sprintf("root of tree size %d", n), func(p *inclusionProbe) { p.root = r })
		}
	}
	return out
}

// TestInclusionMutations is a mutation corpus in the style of
// transparency-dev/merkle, over every leaf of every tree of 1 to 20 leaves and some leaves of larger trees:
// each bit of each proof hash flipped, proofs truncated and extended, every
// other leaf index, wrong tree heights, wrong leaves and roots. Every probe
// must fail both VerifyInclusion and the RFC 9162 reference verifier.
//
// Tree size + 1 and similar are deliberately not probes: a path that ends
// in a left subtree proves the same root for several tree sizes (RFC 9162
// §2.1.3.2 accepts them too). The size is bound to the root by the signed
// checkpoint, and VerifyInclusion refuses a proof whose tree_size differs
// from the trusted one (TestInclusionFieldsMustMatch).
func TestInclusionMutations(t *testing.T) {
	ctx := context.Background()
	evs := chain("ten_m", 66, "a")
	s := storeOf(t, evs)
	roots := make([]tlog.Hash, 67)
	for n := range roots {
		c, _ := TreeHead(ctx, s, "ten_m", int64(n))
		roots[n] = c.Root
	}
	t.Parallel()
	type pair struct{ index, size int64 }
	var pairs []pair
	for size := int64(1); size <= 20; size++ {
		for i := int64(0); i < size; i++ {
			pairs = append(pairs, pair{i, size})
		}
	}
	for _, size := range []int64{33, 64, 65, 66} {
		for _, i := range []int64{0, 1, 31, 32, size - 2, size - 1} {
			pairs = append(pairs, pair{i, size})
		}
	}
	probes := 0
	for _, pr := range pairs {
		i, size := pr.index, pr.size
		p, err := ProveInclusion(ctx, s, &evs[i], size)
		if err != nil {
			t.Fatal(err)
		}
		good := inclusionProbe{index: i, size: size, leaf: tlog.Hash(p.LeafHash), root: tlog.Hash(p.RootHash), path: fromHex(p.AuditPath)}
		if ours, rfc := good.verify(); ours != nil || !rfc {
			t.Fatalf("good proof of leaf %d in %d: ours %v, RFC 9162 %v", i, size, ours, rfc)
		}
		for _, bad := range corruptInclusion(good, evs[i].Hash, roots) {
			probes++
			ours, rfc := bad.verify()
			if ours == nil || rfc {
				t.Errorf("leaf %d in tree %d, %s: ours %v, RFC 9162 accepts %v", i, size, bad.desc(), ours, rfc)
			} else if !errors.Is(ours, ErrInvalidProof) {
				t.Errorf("leaf %d in tree %d, %s: error %v does not wrap ErrInvalidProof", i, size, bad.desc(), ours)
			}
		}
	}
	t.Logf("%d corrupted inclusion proofs rejected", probes)
}

// TestInclusionFieldsMustMatch checks that a proof whose JSON fields differ
// from what the auditor trusts is refused, before any hashing.
func TestInclusionFieldsMustMatch(t *testing.T) {
	ctx := context.Background()
	evs := chain("ten_m", 6, "a")
	s := storeOf(t, evs)
	good, err := ProveInclusion(ctx, s, &evs[0], 5)
	if err != nil {
		t.Fatal(err)
	}
	leaf, root := LeafHash(evs[0].Hash), tlog.Hash(good.RootHash)
	if err := VerifyInclusion(good, 0, leaf, 5, root); err != nil {
		t.Fatal(err)
	}
	// The path of leaf 0 in a tree of 5 also leads to the root of 5 when
	// read as a tree of 6 (see TestInclusionMutations): the trusted size
	// must come with the trusted root.
	if err := tlog.CheckRecord(fromHex(good.AuditPath), 6, root, 0, leaf); err != nil {
		t.Fatalf("expected tlog to accept the size-ambiguous path: %v", err)
	}
	for _, tc := range []struct {
		field string
		f     func(*InclusionProof)
	}{
		{"algorithm", func(p *InclusionProof) { p.Algorithm = "RFC6962-SHA512" }},
		{"tree_size", func(p *InclusionProof) { p.TreeSize = 6 }},
		{"leaf_index", func(p *InclusionProof) { p.LeafIndex = 1 }},
		{"leaf_hash", func(p *InclusionProof) { p.LeafHash[0] ^= 1 }},
		{"root_hash", func(p *InclusionProof) { p.RootHash[0] ^= 1 }},
		{"audit_path", func(p *InclusionProof) { p.AuditPath = make([]Hash, 65) }},
	} {
		p := *good
		p.AuditPath = slices.Clone(good.AuditPath)
		tc.f(&p)
		if err := VerifyInclusion(&p, 0, leaf, 5, root); err == nil || !errors.Is(err, ErrInvalidProof) {
			t.Errorf("proof with a changed %s: %v", tc.field, err)
		}
	}
	for _, tc := range []struct {
		desc        string
		index, size int64
	}{{"size 6", 0, 6}, {"index 5 of 5", 5, 5}, {"index -1", -1, 5}, {"size 0", 0, 0}} {
		if err := VerifyInclusion(good, tc.index, leaf, tc.size, root); err == nil {
			t.Errorf("trusted %s accepted", tc.desc)
		}
	}
}

type consistencyProbe struct {
	desc          func() string
	first, second int64
	r1, r2        tlog.Hash
	path          []tlog.Hash
}

func (p consistencyProbe) verify() (ours error, rfc bool) {
	proof := &ConsistencyProof{Algorithm: Algorithm, FirstSize: p.first, SecondSize: p.second, FirstRoot: Hash(p.r1), SecondRoot: Hash(p.r2),
		ConsistencyPath: toHex(p.path)}
	return VerifyConsistency(proof, p.first, p.r1, p.second, p.r2), rfcVerifyConsistency(p.first, p.second, p.r1, p.r2, p.path)
}

func corruptConsistency(good consistencyProbe, roots []tlog.Hash) []consistencyProbe {
	var out []consistencyProbe
	add := func(desc string, f func(*consistencyProbe)) {
		p := good
		p.desc = func() string { return desc }
		p.path = slices.Clone(good.path)
		f(&p)
		out = append(out, p)
	}
	for k := range good.path {
		for bit := 0; bit < 8*tlog.HashSize; bit++ {
			p := good
			p.desc = func() string { return fmt.Sprintf("path[%d] bit %d flipped", k, bit) }
			p.path = slices.Clone(good.path)
			p.path[k][bit/8] ^= 1 << (bit % 8)
			out = append(out, p)
		}
	}
	if n := len(good.path); n > 0 {
		add("path without its last hash", func(p *consistencyProbe) { p.path = p.path[:n-1] })
		add("path without its first hash", func(p *consistencyProbe) { p.path = p.path[1:] })
		add("empty path", func(p *consistencyProbe) { p.path = nil })
		add("path preceded by its first hash", func(p *consistencyProbe) { p.path = append([]tlog.Hash{p.path[0]}, p.path...) })
	}
	add("path extended by a zero hash", func(p *consistencyProbe) { p.path = append(p.path, tlog.Hash{}) })
	add("path extended by the first root", func(p *consistencyProbe) { p.path = append(p.path, p.r1) })
	add("path extended by the second root", func(p *consistencyProbe) { p.path = append(p.path, p.r2) })
	add("path preceded by the first root", func(p *consistencyProbe) { p.path = append([]tlog.Hash{p.r1}, p.path...) })
	add("path preceded by the second root", func(p *consistencyProbe) { p.path = append([]tlog.Hash{p.r2}, p.path...) })
	add("first size - 1", func(p *consistencyProbe) { p.first-- })
	add("first size + 1", func(p *consistencyProbe) { p.first++ })
	add("first size ^ 2", func(p *consistencyProbe) { p.first ^= 2 })
	add("first root bit flipped", func(p *consistencyProbe) { p.r1[5] ^= 4 })
	// The empty tree is a prefix of every tree: a proof from size 0 says
	// nothing about the second tree, so changing only that is no
	// corruption.
	bindsSecond := good.first > 0
	if bindsSecond {
		add("second size * 2", func(p *consistencyProbe) { p.second *= 2 })
		add("second size / 2", func(p *consistencyProbe) { p.second /= 2 })
		add("second root bit flipped", func(p *consistencyProbe) { p.r2[5] ^= 4 })
	}
	if good.r1 != good.r2 {
		add("roots swapped", func(p *consistencyProbe) { p.r1, p.r2 = p.r2, p.r1 })
		add("second root for both", func(p *consistencyProbe) { p.r1 = p.r2 })
		if bindsSecond {
			add("first root for both", func(p *consistencyProbe) { p.r2 = p.r1 })
		}
	}
	for n, r := range roots {
		if r != good.r1 && int64(n) != good.first {
			add(fmt.Sprintf("first root of size %d", n), func(p *consistencyProbe) { p.r1 = r })
		}
		if r != good.r2 && int64(n) != good.second && bindsSecond {
			add(fmt.Sprintf("second root of size %d", n), func(p *consistencyProbe) { p.r2 = r })
		}
	}
	return out
}

// TestConsistencyMutations is the consistency-proof mutation corpus, over
// every pair of sizes 0 ≤ first ≤ second ≤ 20 (and some larger): every bit
// of every proof hash flipped, proofs truncated, extended and emptied,
// sizes moved, roots corrupted, swapped or taken from other sizes. Every
// probe must fail VerifyConsistency, and, where the sizes are in its domain
// 0 < first < second, the RFC 9162 reference verifier.
//
// Second size + 1 is not a probe, for the same reason as tree size + 1 in
// TestInclusionMutations.
func TestConsistencyMutations(t *testing.T) {
	ctx := context.Background()
	evs := chain("ten_m", 66, "a")
	s := storeOf(t, evs)
	roots := make([]tlog.Hash, 67)
	for n := range roots {
		c, _ := TreeHead(ctx, s, "ten_m", int64(n))
		roots[n] = c.Root
	}
	type pair struct{ first, second int64 }
	t.Parallel()
	pairs := []pair{{1, 66}, {31, 65}, {32, 66}, {33, 64}, {64, 65}, {63, 66}, {21, 33}, {0, 66}, {66, 66}}
	for second := int64(0); second <= 20; second++ {
		for first := int64(0); first <= second; first++ {
			pairs = append(pairs, pair{first, second})
		}
	}
	probes := 0
	for _, pr := range pairs {
		p, err := ProveConsistency(ctx, s, "ten_m", pr.first, pr.second)
		if err != nil {
			t.Fatal(err)
		}
		good := consistencyProbe{first: pr.first, second: pr.second, r1: roots[pr.first], r2: roots[pr.second], path: fromHex(p.ConsistencyPath)}
		if ours, rfc := good.verify(); ours != nil || (0 < pr.first && pr.first < pr.second && !rfc) {
			t.Fatalf("good proof %d→%d: ours %v, RFC 9162 %v", pr.first, pr.second, ours, rfc)
		}
		for _, bad := range corruptConsistency(good, roots) {
			probes++
			ours, rfc := bad.verify()
			if ours == nil || rfc {
				t.Errorf("proof %d→%d, %s: ours %v, RFC 9162 accepts %v", pr.first, pr.second, bad.desc(), ours, rfc)
			}
		}
	}
	t.Logf("%d corrupted consistency proofs rejected", probes)
}

func TestConsistencyFieldsMustMatch(t *testing.T) {
	ctx := context.Background()
	evs := chain("ten_m", 9, "a")
	s := storeOf(t, evs)
	good, err := ProveConsistency(ctx, s, "ten_m", 3, 9)
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := tlog.Hash(good.FirstRoot), tlog.Hash(good.SecondRoot)
	if err := VerifyConsistency(good, 3, r1, 9, r2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		f     func(*ConsistencyProof)
	}{
		{"algorithm", func(p *ConsistencyProof) { p.Algorithm = "" }},
		{"first_size", func(p *ConsistencyProof) { p.FirstSize = 4 }},
		{"second_size", func(p *ConsistencyProof) { p.SecondSize = 10 }},
		{"first_root", func(p *ConsistencyProof) { p.FirstRoot = p.SecondRoot }},
		{"second_root", func(p *ConsistencyProof) { p.SecondRoot = p.FirstRoot }},
	} {
		p := *good
		tc.f(&p)
		if err := VerifyConsistency(&p, 3, r1, 9, r2); err == nil || !errors.Is(err, ErrInvalidProof) {
			t.Errorf("proof with a changed %s: %v", tc.field, err)
		}
	}
	// Trusted sizes going backwards are a truncation, equal sizes with
	// different roots a fork.
	back := &ConsistencyProof{Algorithm: Algorithm, FirstSize: 9, SecondSize: 3, FirstRoot: Hash(r2), SecondRoot: Hash(r1), ConsistencyPath: []Hash{}}
	if err := VerifyConsistency(back, 9, r2, 3, r1); !errors.Is(err, ErrTruncated) {
		t.Errorf("9→3: %v, want ErrTruncated", err)
	}
	fork := &ConsistencyProof{Algorithm: Algorithm, FirstSize: 9, SecondSize: 9, FirstRoot: Hash(r2), SecondRoot: Hash(r1), ConsistencyPath: []Hash{}}
	if err := VerifyConsistency(fork, 9, r2, 9, r1); !errors.Is(err, ErrFork) {
		t.Errorf("9→9 with two roots: %v, want ErrFork", err)
	}
}

// TestForkedHistoriesAreInconsistent builds two histories that share a
// prefix and then differ, and checks that no consistency proof from one
// history links a root of the other.
func TestForkedHistoriesAreInconsistent(t *testing.T) {
	ctx := context.Background()
	a := chain("ten_f", 20, "a")
	b := slices.Clone(a[:12])
	b = append(b, chain("ten_f", 20, "b")[12:]...) // same first 12 leaves, then different
	sa, sb := storeOf(t, a), storeOf(t, b)
	for first := int64(1); first <= 20; first++ {
		for second := first; second <= 20; second++ {
			pa, err := ProveConsistency(ctx, sa, "ten_f", first, second)
			if err != nil {
				t.Fatal(err)
			}
			ha, _ := TreeHead(ctx, sa, "ten_f", first)
			hb, _ := TreeHead(ctx, sb, "ten_f", first)
			hb2, _ := TreeHead(ctx, sb, "ten_f", second)
			err = checkConsistency(first, ha.Root, second, hb2.Root, fromHex(pa.ConsistencyPath))
			shared := second <= 12
			if shared != (err == nil) {
				t.Errorf("history a at %d to history b at %d: %v", first, second, err)
			}
			if first == second && first > 12 && !errors.Is(err, ErrFork) {
				t.Errorf("same size %d, different roots: %v, want ErrFork", first, err)
			}
			if first > 12 && ha.Root == hb.Root {
				t.Errorf("histories agree at size %d", first)
			}
		}
	}
}

func TestParseProofJSON(t *testing.T) {
	ctx := context.Background()
	evs := chain("ten_j", 7, "a")
	s := storeOf(t, evs)
	ip, _ := ProveInclusion(ctx, s, &evs[2], 7)
	cp, _ := ProveConsistency(ctx, s, "ten_j", 3, 7)
	for _, v := range []any{ip, cp} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back any
		switch v.(type) {
		case *InclusionProof:
			back, err = ParseInclusionProof(b)
		case *ConsistencyProof:
			back, err = ParseConsistencyProof(b)
		}
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		b2, _ := json.Marshal(back)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed\n%s\nto\n%s", b, b2)
		}
	}
	b, _ := json.Marshal(ip)
	want := fmt.Sprintf(`{"algorithm":"RFC6962-SHA256","entry_id":"evt_a0003","leaf_index":2,"leaf_hash":"%s","tree_size":7,"root_hash":"%s","audit_path":["%s","%s","%s"]}`,
		ip.LeafHash, ip.RootHash, ip.AuditPath[0], ip.AuditPath[1], ip.AuditPath[2])
	if string(b) != want {
		t.Fatalf("inclusion proof JSON\n%s\nwant\n%s", b, want)
	}
	one, _ := ProveInclusion(ctx, s, &evs[0], 1)
	if b, _ := json.Marshal(one); !strings.HasSuffix(string(b), `"audit_path":[]}`) {
		t.Fatalf("empty audit path encodes as %s", b)
	}
	hexRoot := ip.RootHash.String()
	for _, bad := range []string{
		``, `null`, `[]`, `{}`, `{"algorithm":"RFC6962-SHA256"}`,
		strings.Replace(string(b), hexRoot, strings.ToUpper(hexRoot), 1),
		strings.Replace(string(b), hexRoot, hexRoot[:62], 1),
		strings.Replace(string(b), `"RFC6962-SHA256"`, `"sha256"`, 1),
		strings.Replace(string(b), `"leaf_index":2`, `"leaf_index":7`, 1),
		strings.Replace(string(b), `"leaf_index":2`, `"leaf_index":-1`, 1),
		strings.Replace(string(b), `"leaf_index":2`, `"leaf_index":"2"`, 1),
		strings.Replace(string(b), `"audit_path":[`, `"audit_path":null,"x":[`, 1),
		string(b) + `{}`,
		`{"algorithm":"RFC6962-SHA256","entry_id":"","leaf_index":0,"leaf_hash":"` + hexRoot + `","tree_size":1,"root_hash":"` + hexRoot + `","audit_path":[` + strings.Repeat(`"`+hexRoot+`",`, 64) + `"` + hexRoot + `"]}`,
	} {
		if _, err := ParseInclusionProof([]byte(bad)); err == nil {
			t.Errorf("ParseInclusionProof(%s) succeeded", bad)
		}
	}
	cb, _ := json.Marshal(cp)
	for _, bad := range []string{
		`{}`,
		strings.Replace(string(cb), `"first_size":3`, `"first_size":8`, 1),
		strings.Replace(string(cb), `"first_size":3`, `"first_size":-3`, 1),
		strings.Replace(string(cb), `"consistency_path"`, `"path"`, 1),
	} {
		if _, err := ParseConsistencyProof([]byte(bad)); err == nil {
			t.Errorf("ParseConsistencyProof(%s) succeeded", bad)
		}
	}
}
