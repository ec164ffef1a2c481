package transparency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
)

// maxProofHashes bounds the hashes in a parsed proof. An inclusion proof in
// a tree of at most 2⁶³-1 leaves has at most 63 hashes and a consistency
// proof at most 64; anything longer is refused before any hashing.
const maxProofHashes = 64

// InclusionProof is the JSON proof that the event EntryID, with leaf hash
// LeafHash, is leaf LeafIndex of the tree of TreeSize leaves whose root is
// RootHash. AuditPath is the RFC 9162 §2.1.3 inclusion path, from the leaf
// up. EntryID is informational: what binds the event is LeafHash, which is
// LeafHash(event hash), and the event hash covers the id.
type InclusionProof struct {
	Algorithm string `json:"algorithm"`
	EntryID   string `json:"entry_id"`
	LeafIndex int64  `json:"leaf_index"`
	LeafHash  Hash   `json:"leaf_hash"`
	TreeSize  int64  `json:"tree_size"`
	RootHash  Hash   `json:"root_hash"`
	AuditPath []Hash `json:"audit_path"`
}

// ConsistencyProof is the JSON proof that the tree of FirstSize leaves with
// root FirstRoot is a prefix of the tree of SecondSize leaves with root
// SecondRoot. ConsistencyPath is the RFC 9162 §2.1.4 consistency path; it is
// empty when the sizes are equal or FirstSize is 0.
type ConsistencyProof struct {
	Algorithm       string `json:"algorithm"`
	FirstSize       int64  `json:"first_size"`
	SecondSize      int64  `json:"second_size"`
	FirstRoot       Hash   `json:"first_root"`
	SecondRoot      Hash   `json:"second_root"`
	ConsistencyPath []Hash `json:"consistency_path"`
}

// Path returns the audit path as a tlog.RecordProof.
func (p *InclusionProof) Path() tlog.RecordProof { return fromHex(p.AuditPath) }

// Path returns the consistency path as a tlog.TreeProof.
func (p *ConsistencyProof) Path() tlog.TreeProof { return fromHex(p.ConsistencyPath) }

// ProveInclusion returns the proof that event e is included in its
// tenant's tree of treeSize leaves, read from s. It checks the proof
// against e's hash before returning it, so a stored tree that disagrees
// with the ledger is reported instead of served.
func ProveInclusion(ctx context.Context, s HashStore, e *events.Event, treeSize int64) (*InclusionProof, error) {
	n := e.Seq - 1
	if n < 0 || n >= treeSize {
		return nil, fmt.Errorf("transparency: event seq %d is not in a tree of size %d", e.Seq, treeSize)
	}
	r := NewHashReader(ctx, s, e.Tenant)
	root, err := tlog.TreeHash(treeSize, r)
	if err != nil {
		return nil, fmt.Errorf("transparency: root of tenant %q tree size %d: %w", e.Tenant, treeSize, err)
	}
	path, err := tlog.ProveRecord(treeSize, n, r)
	if err != nil {
		return nil, fmt.Errorf("transparency: inclusion proof for leaf %d in tree size %d: %w", n, treeSize, err)
	}
	leaf := LeafHash(e.Hash)
	if err := tlog.CheckRecord(path, treeSize, root, n, leaf); err != nil {
		return nil, fmt.Errorf("transparency: stored tree of tenant %q does not contain event seq %d (hash %x): the stored hashes disagree with the ledger", e.Tenant, e.Seq, e.Hash[:])
	}
	return &InclusionProof{
		Algorithm: Algorithm,
		EntryID:   e.ID,
		LeafIndex: n,
		LeafHash:  Hash(leaf),
		TreeSize:  treeSize,
		RootHash:  Hash(root),
		AuditPath: toHex(path),
	}, nil
}

// ProveConsistency returns the proof that tenant's tree of first leaves is
// a prefix of its tree of second leaves, read from s.
func ProveConsistency(ctx context.Context, s HashStore, tenant string, first, second int64) (*ConsistencyProof, error) {
	if first < 0 || first > second {
		return nil, fmt.Errorf("transparency: no consistency proof from tree size %d to %d", first, second)
	}
	r := NewHashReader(ctx, s, tenant)
	firstRoot, err := tlog.TreeHash(first, r)
	if err != nil {
		return nil, fmt.Errorf("transparency: root of tenant %q tree size %d: %w", tenant, first, err)
	}
	secondRoot, err := tlog.TreeHash(second, r)
	if err != nil {
		return nil, fmt.Errorf("transparency: root of tenant %q tree size %d: %w", tenant, second, err)
	}
	var path tlog.TreeProof
	if first > 0 && first < second {
		if path, err = tlog.ProveTree(second, first, r); err != nil {
			return nil, fmt.Errorf("transparency: consistency proof from %d to %d: %w", first, second, err)
		}
	}
	return &ConsistencyProof{
		Algorithm:       Algorithm,
		FirstSize:       first,
		SecondSize:      second,
		FirstRoot:       Hash(firstRoot),
		SecondRoot:      Hash(secondRoot),
		ConsistencyPath: toHex(path),
	}, nil
}

// VerifyInclusion checks that p proves that the leaf with leafHash is leaf
// leafIndex of the tree of treeSize leaves with the given root. The
// arguments are what the auditor trusts (the root and size from a verified
// checkpoint, the leaf hash recomputed from the event); every field of p
// must agree with them. A failed proof wraps ErrInvalidProof.
func VerifyInclusion(p *InclusionProof, leafIndex int64, leafHash tlog.Hash, treeSize int64, root tlog.Hash) error {
	switch {
	case p.Algorithm != Algorithm:
		return fmt.Errorf("%w: algorithm %q, want %q", ErrInvalidProof, p.Algorithm, Algorithm)
	case treeSize < 1 || leafIndex < 0 || leafIndex >= treeSize:
		return fmt.Errorf("%w: leaf index %d is outside a tree of size %d", ErrInvalidProof, leafIndex, treeSize)
	case p.TreeSize != treeSize:
		return fmt.Errorf("%w: proof is for tree size %d, want %d", ErrInvalidProof, p.TreeSize, treeSize)
	case p.LeafIndex != leafIndex:
		return fmt.Errorf("%w: proof is for leaf index %d, want %d", ErrInvalidProof, p.LeafIndex, leafIndex)
	case p.LeafHash != Hash(leafHash):
		return fmt.Errorf("%w: proof is for leaf hash %s, want %s", ErrInvalidProof, p.LeafHash, Hash(leafHash))
	case p.RootHash != Hash(root):
		return fmt.Errorf("%w: proof is for root %s, want %s", ErrInvalidProof, p.RootHash, Hash(root))
	case len(p.AuditPath) > maxProofHashes:
		return fmt.Errorf("%w: audit path has %d hashes", ErrInvalidProof, len(p.AuditPath))
	}
	if err := tlog.CheckRecord(fromHex(p.AuditPath), treeSize, root, leafIndex, leafHash); err != nil {
		return fmt.Errorf("%w: audit path does not lead from leaf %d to the root of tree size %d", ErrInvalidProof, leafIndex, treeSize)
	}
	return nil
}

// VerifyConsistency checks that p proves that the tree of firstSize leaves
// with firstRoot is a prefix of the tree of secondSize leaves with
// secondRoot, the sizes and roots being what the auditor trusts; every field
// of p must agree with them. Equal sizes need an empty path and equal roots
// (else the error wraps ErrFork); size 0 needs an empty path and the empty
// root. A failed proof wraps ErrInvalidProof.
func VerifyConsistency(p *ConsistencyProof, firstSize int64, firstRoot tlog.Hash, secondSize int64, secondRoot tlog.Hash) error {
	switch {
	case p.Algorithm != Algorithm:
		return fmt.Errorf("%w: algorithm %q, want %q", ErrInvalidProof, p.Algorithm, Algorithm)
	case p.FirstSize != firstSize:
		return fmt.Errorf("%w: proof is from tree size %d, want %d", ErrInvalidProof, p.FirstSize, firstSize)
	case p.SecondSize != secondSize:
		return fmt.Errorf("%w: proof is to tree size %d, want %d", ErrInvalidProof, p.SecondSize, secondSize)
	case p.FirstRoot != Hash(firstRoot):
		return fmt.Errorf("%w: proof is from root %s, want %s", ErrInvalidProof, p.FirstRoot, Hash(firstRoot))
	case p.SecondRoot != Hash(secondRoot):
		return fmt.Errorf("%w: proof is to root %s, want %s", ErrInvalidProof, p.SecondRoot, Hash(secondRoot))
	case len(p.ConsistencyPath) > maxProofHashes:
		return fmt.Errorf("%w: consistency path has %d hashes", ErrInvalidProof, len(p.ConsistencyPath))
	}
	return checkConsistency(firstSize, firstRoot, secondSize, secondRoot, fromHex(p.ConsistencyPath))
}

// checkConsistency is the RFC 9162 §2.1.4.2 decision, with the empty-tree
// and equal-size cases made explicit.
func checkConsistency(firstSize int64, firstRoot tlog.Hash, secondSize int64, secondRoot tlog.Hash, path tlog.TreeProof) error {
	switch {
	case firstSize < 0:
		return fmt.Errorf("%w: negative tree size %d", ErrInvalidProof, firstSize)
	case secondSize < firstSize:
		return fmt.Errorf("%w: tree size went from %d down to %d", ErrTruncated, firstSize, secondSize)
	case firstSize == secondSize:
		if len(path) != 0 {
			return fmt.Errorf("%w: proof between two trees of size %d must be empty, has %d hashes", ErrInvalidProof, firstSize, len(path))
		}
		if firstRoot != secondRoot {
			return fmt.Errorf("%w: two different roots for tree size %d: %s and %s", ErrFork, firstSize, Hash(firstRoot), Hash(secondRoot))
		}
		return nil
	case firstSize == 0:
		if len(path) != 0 {
			return fmt.Errorf("%w: proof from the empty tree must be empty, has %d hashes", ErrInvalidProof, len(path))
		}
		if firstRoot != EmptyRoot() {
			return fmt.Errorf("%w: root of the empty tree is %s, not %s", ErrInvalidProof, Hash(EmptyRoot()), Hash(firstRoot))
		}
		return nil
	case len(path) > maxProofHashes:
		return fmt.Errorf("%w: consistency path has %d hashes", ErrInvalidProof, len(path))
	}
	if err := tlog.CheckTree(path, secondSize, secondRoot, firstSize, firstRoot); err != nil {
		return fmt.Errorf("%w: consistency path does not show tree size %d (root %s) is a prefix of tree size %d (root %s)",
			ErrInvalidProof, firstSize, Hash(firstRoot), secondSize, Hash(secondRoot))
	}
	return nil
}

// ParseInclusionProof decodes an InclusionProof from JSON. Every field must
// be present; unknown fields are ignored. It checks the shape only (the
// algorithm, sizes in range, at most 64 path hashes); VerifyInclusion checks
// the proof.
func ParseInclusionProof(data []byte) (*InclusionProof, error) {
	var w struct {
		Algorithm *string `json:"algorithm"`
		EntryID   *string `json:"entry_id"`
		LeafIndex *int64  `json:"leaf_index"`
		LeafHash  *Hash   `json:"leaf_hash"`
		TreeSize  *int64  `json:"tree_size"`
		RootHash  *Hash   `json:"root_hash"`
		AuditPath *[]Hash `json:"audit_path"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("transparency: inclusion proof: %w", jsonError(err))
	}
	if err := missing("inclusion proof", []field{
		{"algorithm", w.Algorithm == nil},
		{"entry_id", w.EntryID == nil},
		{"leaf_index", w.LeafIndex == nil},
		{"leaf_hash", w.LeafHash == nil},
		{"tree_size", w.TreeSize == nil},
		{"root_hash", w.RootHash == nil},
		{"audit_path", w.AuditPath == nil},
	}); err != nil {
		return nil, err
	}
	p := &InclusionProof{Algorithm: *w.Algorithm, EntryID: *w.EntryID, LeafIndex: *w.LeafIndex, LeafHash: *w.LeafHash,
		TreeSize: *w.TreeSize, RootHash: *w.RootHash, AuditPath: *w.AuditPath}
	switch {
	case p.Algorithm != Algorithm:
		return nil, fmt.Errorf("transparency: inclusion proof: algorithm %q, want %q", p.Algorithm, Algorithm)
	case p.TreeSize < 1 || p.LeafIndex < 0 || p.LeafIndex >= p.TreeSize:
		return nil, fmt.Errorf("transparency: inclusion proof: leaf index %d is outside a tree of size %d", p.LeafIndex, p.TreeSize)
	case len(p.AuditPath) > maxProofHashes:
		return nil, fmt.Errorf("transparency: inclusion proof: audit path has %d hashes, at most %d allowed", len(p.AuditPath), maxProofHashes)
	}
	if p.AuditPath == nil {
		p.AuditPath = []Hash{}
	}
	return p, nil
}

// ParseConsistencyProof decodes a ConsistencyProof from JSON. Every field
// must be present; unknown fields are ignored. It checks the shape only
// (the algorithm, 0 ≤ first_size ≤ second_size, at most 64 path hashes);
// VerifyConsistency checks the proof.
func ParseConsistencyProof(data []byte) (*ConsistencyProof, error) {
	var w struct {
		Algorithm       *string `json:"algorithm"`
		FirstSize       *int64  `json:"first_size"`
		SecondSize      *int64  `json:"second_size"`
		FirstRoot       *Hash   `json:"first_root"`
		SecondRoot      *Hash   `json:"second_root"`
		ConsistencyPath *[]Hash `json:"consistency_path"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("transparency: consistency proof: %w", jsonError(err))
	}
	if err := missing("consistency proof", []field{
		{"algorithm", w.Algorithm == nil},
		{"first_size", w.FirstSize == nil},
		{"second_size", w.SecondSize == nil},
		{"first_root", w.FirstRoot == nil},
		{"second_root", w.SecondRoot == nil},
		{"consistency_path", w.ConsistencyPath == nil},
	}); err != nil {
		return nil, err
	}
	p := &ConsistencyProof{Algorithm: *w.Algorithm, FirstSize: *w.FirstSize, SecondSize: *w.SecondSize, FirstRoot: *w.FirstRoot,
		SecondRoot: *w.SecondRoot, ConsistencyPath: *w.ConsistencyPath}
	switch {
	case p.Algorithm != Algorithm:
		return nil, fmt.Errorf("transparency: consistency proof: algorithm %q, want %q", p.Algorithm, Algorithm)
	case p.FirstSize < 0 || p.FirstSize > p.SecondSize:
		return nil, fmt.Errorf("transparency: consistency proof: sizes %d to %d are not 0 ≤ first ≤ second", p.FirstSize, p.SecondSize)
	case len(p.ConsistencyPath) > maxProofHashes:
		return nil, fmt.Errorf("transparency: consistency proof: path has %d hashes, at most %d allowed", len(p.ConsistencyPath), maxProofHashes)
	}
	if p.ConsistencyPath == nil {
		p.ConsistencyPath = []Hash{}
	}
	return p, nil
}

// field is a JSON field and whether it was absent from the input.
type field struct {
	name   string
	absent bool
}

// missing returns an error naming the first absent field of what.
func missing(what string, fields []field) error {
	for _, f := range fields {
		if f.absent {
			return fmt.Errorf("transparency: %s: missing field %q", what, f.name)
		}
	}
	return nil
}

// jsonError rewrites an encoding/json error without Go type names, keeping
// the offset of a syntax error.
func jsonError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("malformed JSON at offset %d: %v", se.Offset, se)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q has the wrong JSON type %s", te.Field, te.Value)
	}
	return trimPrefix(err)
}

func toHex(p []tlog.Hash) []Hash {
	out := make([]Hash, len(p))
	for i, h := range p {
		out[i] = Hash(h)
	}
	return out
}

func fromHex(p []Hash) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i, h := range p {
		out[i] = tlog.Hash(h)
	}
	return out
}
