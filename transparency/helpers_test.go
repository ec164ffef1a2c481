package transparency

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"iter"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
)

// testKey returns a deterministic note key pair named name, derived from
// seed, so that signatures in tests and examples are reproducible.
func testKey(t testing.TB, name string, seed byte) (skey, vkey string) {
	t.Helper()
	var s [ed25519.SeedSize]byte
	for i := range s {
		s[i] = seed + byte(i)
	}
	pub := ed25519.NewKeyFromSeed(s[:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.Split(vkey, "+")[1]
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%s+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{1}, s[:]...)))
	if _, err := note.NewSigner(skey); err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

func testSigner(t testing.TB, skey string) note.Signer {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testTime is the fixed time of test events and checkpoints.
var testTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// chain returns n chained events of tenant, deterministic in variant: two
// calls with different variants give different histories from the first
// event on. Positions interleave with an imaginary other tenant.
func chain(tenant string, n int, variant string) []events.Event {
	evs := make([]events.Event, n)
	var prev events.Hash
	for i := range evs {
		e := &evs[i]
		*e = events.Event{
			ID:         fmt.Sprintf("evt_%s%04d", variant, i+1),
			Tenant:     tenant,
			Stream:     fmt.Sprintf("session/ses_%d", i%3),
			Version:    int64(i/3 + 1),
			Type:       "audit.logged",
			Payload:    []byte(fmt.Sprintf(`{"action":"call","i":%d,"v":%q}`, i, variant)),
			Metadata:   events.EncodeMetadata(events.Metadata{Actor: "hk_test", AgentID: "agent-1"}),
			RecordedAt: testTime.Add(time.Duration(i) * time.Millisecond),
			Seq:        int64(i + 1),
			Position:   int64(2*i + 3),
			PrevHash:   prev,
		}
		if i%5 == 4 {
			e.Payload = nil // empty payloads must round-trip too
		}
		e.Hash = events.ComputeHash(e)
		prev = e.Hash
	}
	return evs
}

// storeOf appends the events' leaves to a new MemoryStore.
func storeOf(t testing.TB, evs []events.Event) *MemoryStore {
	t.Helper()
	s := NewMemoryStore()
	for i := range evs {
		n, err := s.Append(context.Background(), evs[i].Tenant, evs[i].Hash)
		if err != nil {
			t.Fatal(err)
		}
		if n != evs[i].Seq-1 {
			t.Fatalf("Append returned leaf %d for seq %d", n, evs[i].Seq)
		}
	}
	return s
}

func seqOf(evs []events.Event) iter.Seq2[*events.Event, error] {
	return func(yield func(*events.Event, error) bool) {
		for i := range evs {
			if !yield(&evs[i], nil) {
				return
			}
		}
	}
}

func signedCheckpoint(t testing.TB, skey string, s HashStore, tenant string, size int64, at time.Time) []byte {
	t.Helper()
	c, err := TreeHead(context.Background(), s, tenant, size)
	if err != nil {
		t.Fatal(err)
	}
	c.Time = at
	msg, err := SignCheckpoint(testSigner(t, skey), c)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// The reference below is RFC 6962 §2.1 written out from its recursive
// definitions, independently of tlog, over the leaf data D[i] = event hash.

func refLeaf(d []byte) tlog.Hash {
	return sha256.Sum256(append([]byte{0x00}, d...))
}

func refNode(l, r tlog.Hash) tlog.Hash {
	return sha256.Sum256(append(append([]byte{0x01}, l[:]...), r[:]...))
}

// refSplit returns k, the largest power of two smaller than n (n > 1).
func refSplit(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// refMTH is MTH(D[n]).
func refMTH(d [][]byte) tlog.Hash {
	switch n := len(d); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return refLeaf(d[0])
	default:
		k := refSplit(n)
		return refNode(refMTH(d[:k]), refMTH(d[k:]))
	}
}

// refPath is PATH(m, D[n]), the audit path of leaf m.
func refPath(m int, d [][]byte) []tlog.Hash {
	n := len(d)
	if n == 1 {
		return nil
	}
	k := refSplit(n)
	if m < k {
		return append(refPath(m, d[:k]), refMTH(d[k:]))
	}
	return append(refPath(m-k, d[k:]), refMTH(d[:k]))
}

// refProof is PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
func refProof(m int, d [][]byte) []tlog.Hash { return refSubproof(m, d, true) }

func refSubproof(m int, d [][]byte, b bool) []tlog.Hash {
	n := len(d)
	if m == n {
		if b {
			return nil
		}
		return []tlog.Hash{refMTH(d)}
	}
	k := refSplit(n)
	if m <= k {
		return append(refSubproof(m, d[:k], b), refMTH(d[k:]))
	}
	return append(refSubproof(m-k, d[k:], false), refMTH(d[:k]))
}

// rfcVerifyInclusion is the RFC 9162 §2.1.3.2 verification algorithm.
func rfcVerifyInclusion(index, size int64, leaf tlog.Hash, path []tlog.Hash, root tlog.Hash) bool {
	if index >= size || index < 0 {
		return false
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range path {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			r = refNode(p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = refNode(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return sn == 0 && r == root
}

// rfcVerifyConsistency is the RFC 9162 §2.1.4.2 verification algorithm,
// for 0 < first < second.
func rfcVerifyConsistency(first, second int64, firstRoot, secondRoot tlog.Hash, path []tlog.Hash) bool {
	if first <= 0 || first >= second || len(path) == 0 {
		return false
	}
	if first&(first-1) == 0 {
		path = append([]tlog.Hash{firstRoot}, path...)
	}
	fn, sn := first-1, second-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			fr = refNode(c, fr)
			sr = refNode(c, sr)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			sr = refNode(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	return fr == firstRoot && sr == secondRoot && sn == 0
}

func leafData(evs []events.Event) [][]byte {
	d := make([][]byte, len(evs))
	for i := range evs {
		d[i] = evs[i].Hash[:]
	}
	return d
}
