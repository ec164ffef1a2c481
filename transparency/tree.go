package transparency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
)

// Algorithm names the tree hashing scheme in every JSON shape.
const Algorithm = "RFC6962-SHA256"

// Errors matched with errors.Is. Each returned error wraps one of these and
// says precisely what failed.
var (
	// ErrInvalidProof reports an inclusion or consistency proof that does
	// not prove what it claims.
	ErrInvalidProof = errors.New("transparency: invalid proof")
	// ErrFork reports two different tree roots for the same leaves: the
	// log showed different histories to different readers, or history was
	// rewritten.
	ErrFork = errors.New("transparency: log forked")
	// ErrTruncated reports a log that has fewer leaves than an earlier
	// checkpoint signed.
	ErrTruncated = errors.New("transparency: log truncated")
)

// Hash is a SHA-256 hash that encodes in JSON and text as 64 lowercase
// hexadecimal digits. It converts freely to and from tlog.Hash and
// events.Hash.
type Hash [32]byte

// String returns h as 64 lowercase hexadecimal digits.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText returns h as 64 lowercase hexadecimal digits.
func (h Hash) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, h[:]), nil }

// UnmarshalText sets h from exactly 64 lowercase hexadecimal digits.
func (h *Hash) UnmarshalText(text []byte) error {
	v, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseHash parses exactly 64 lowercase hexadecimal digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return Hash{}, fmt.Errorf("transparency: hash must be 64 lowercase hex digits, got %d characters", len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil || strings.ContainsAny(s, "ABCDEF") {
		return Hash{}, fmt.Errorf("transparency: hash %q is not 64 lowercase hex digits", s)
	}
	return h, nil
}

// LeafHash returns the Merkle leaf hash of an event: SHA-256(0x00 ‖
// eventHash), which is tlog.RecordHash of the 32 raw bytes of the event's
// chain hash.
func LeafHash(eventHash events.Hash) tlog.Hash {
	return tlog.RecordHash(eventHash[:])
}

// EmptyRoot returns the root hash of a tree with no leaves, SHA-256 of the
// empty string.
func EmptyRoot() tlog.Hash { return sha256.Sum256(nil) }

// HashStore reads a tenant's stored tree hashes (see StoredHashesFor). It
// must return exactly one hash per index, in the order asked, or an error;
// an index that was never stored is an error. Implementations must be safe
// for concurrent use.
type HashStore interface {
	ReadHashes(ctx context.Context, tenant string, indexes []int64) ([]tlog.Hash, error)
}

// NewHashReader returns the tlog.HashReader that reads tenant's stored
// hashes from s with ctx.
func NewHashReader(ctx context.Context, s HashStore, tenant string) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		hs, err := s.ReadHashes(ctx, tenant, indexes)
		if err == nil && len(hs) != len(indexes) {
			err = fmt.Errorf("transparency: hash store returned %d hashes for %d indexes", len(hs), len(indexes))
		}
		return hs, err
	})
}

// StoredHashesFor returns the stored hashes to persist when leaf n (the
// event with tenant sequence number n+1, whose chain hash is eventHash) is
// appended, and their storage indexes. r reads the hashes stored for leaves
// 0…n-1; at most log₂ n of them are read. The indexes are consecutive,
// starting at tlog.StoredHashIndex(0, n), so after leaves 0…n the store
// holds exactly the indexes 0…tlog.StoredHashCount(n+1)-1.
func StoredHashesFor(n int64, eventHash events.Hash, r tlog.HashReader) (indexes []int64, hashes []tlog.Hash, err error) {
	if n < 0 {
		return nil, nil, fmt.Errorf("transparency: negative leaf index %d", n)
	}
	hashes, err = tlog.StoredHashesForRecordHash(n, LeafHash(eventHash), r)
	if err != nil {
		return nil, nil, fmt.Errorf("transparency: computing stored hashes for leaf %d: %w", n, err)
	}
	return denseIndexes(tlog.StoredHashIndex(0, n), len(hashes)), hashes, nil
}

// StoredHashesForLeaves is StoredHashesFor for the consecutive leaves n,
// n+1, … whose event hashes are eventHashes, as when one transaction appends
// several events of a tenant: hashes computed for earlier leaves of the
// batch are used without being read from r. r needs to serve only the
// hashes stored before leaf n.
func StoredHashesForLeaves(n int64, eventHashes []events.Hash, r tlog.HashReader) (indexes []int64, hashes []tlog.Hash, err error) {
	if n < 0 {
		return nil, nil, fmt.Errorf("transparency: negative leaf index %d", n)
	}
	base := tlog.StoredHashIndex(0, n)
	overlay := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var older []int64
		for _, i := range idx {
			if i < base {
				older = append(older, i)
			}
		}
		var got []tlog.Hash
		if len(older) > 0 {
			var err error
			if got, err = r.ReadHashes(older); err != nil {
				return nil, err
			}
			if len(got) != len(older) {
				return nil, fmt.Errorf("transparency: hash reader returned %d hashes for %d indexes", len(got), len(older))
			}
		}
		for k, i := range idx {
			switch {
			case i < base:
				out[k], got = got[0], got[1:]
			case i-base < int64(len(hashes)):
				out[k] = hashes[i-base]
			default:
				return nil, fmt.Errorf("transparency: stored hash %d read before it was computed", i)
			}
		}
		return out, nil
	})
	for k, eh := range eventHashes {
		hs, err := tlog.StoredHashesForRecordHash(n+int64(k), LeafHash(eh), overlay)
		if err != nil {
			return nil, nil, fmt.Errorf("transparency: computing stored hashes for leaf %d: %w", n+int64(k), err)
		}
		hashes = append(hashes, hs...)
	}
	return denseIndexes(base, len(hashes)), hashes, nil
}

func denseIndexes(first int64, n int) []int64 {
	idx := make([]int64, n)
	for i := range idx {
		idx[i] = first + int64(i)
	}
	return idx
}

// hashSlice is the stored hashes of one tree, index i at position i.
type hashSlice []tlog.Hash

func (s hashSlice) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for k, i := range indexes {
		if i < 0 || i >= int64(len(s)) {
			return nil, fmt.Errorf("transparency: stored hash %d does not exist (%d stored)", i, len(s))
		}
		out[k] = s[i]
	}
	return out, nil
}

// memTree is one tenant's tree held in memory.
type memTree struct {
	leaves int64
	hashes hashSlice
}

// append adds the leaf for eventHash and returns its index.
func (t *memTree) append(eventHash events.Hash) (int64, error) {
	_, hs, err := StoredHashesFor(t.leaves, eventHash, t.hashes)
	if err != nil {
		return 0, err
	}
	t.hashes = append(t.hashes, hs...)
	t.leaves++
	return t.leaves - 1, nil
}

// MemoryStore is a HashStore held in memory, for tests, benchmarks and
// offline verification. Its zero value is not usable; see NewMemoryStore.
type MemoryStore struct {
	mu      sync.RWMutex
	tenants map[string]*memTree
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{tenants: make(map[string]*memTree)}
}

// ReadHashes returns tenant's stored hashes at indexes, or an error naming
// the first index that was never stored.
func (m *MemoryStore) ReadHashes(ctx context.Context, tenant string, indexes []int64) ([]tlog.Hash, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.tenants[tenant]
	if t == nil {
		t = &memTree{}
	}
	return t.hashes.ReadHashes(indexes)
}

// Append adds the leaf for the next event of tenant, whose chain hash is
// eventHash, and returns its leaf index (the event's seq minus one).
func (m *MemoryStore) Append(ctx context.Context, tenant string, eventHash events.Hash) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tenants[tenant]
	if t == nil {
		t = &memTree{}
		m.tenants[tenant] = t
	}
	return t.append(eventHash)
}

// Size returns the number of leaves appended for tenant.
func (m *MemoryStore) Size(tenant string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if t := m.tenants[tenant]; t != nil {
		return t.leaves
	}
	return 0
}

// TreeHead returns the unsigned checkpoint of tenant's tree of size leaves:
// its root hash from at most 1+log₂ size stored hashes. The caller sets Time
// before signing it.
func TreeHead(ctx context.Context, s HashStore, tenant string, size int64) (Checkpoint, error) {
	if size < 0 {
		return Checkpoint{}, fmt.Errorf("transparency: negative tree size %d", size)
	}
	root, err := tlog.TreeHash(size, NewHashReader(ctx, s, tenant))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("transparency: root of tenant %q tree size %d: %w", tenant, size, err)
	}
	return Checkpoint{Tenant: tenant, Size: size, Root: root}, nil
}
