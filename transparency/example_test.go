package transparency_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/transparency"
)

// Keys as transparency.GenerateSigningKey("haldir.example") returns them;
// fixed here so that the output is reproducible.
const (
	skey = "PRIVATE+KEY+haldir.example+990078c2+AQcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUm"
	vkey = "haldir.example+990078c2+AQDQWh0eolE5bVV6+9RYizxtmdvrly/tEKMlYuom3Nz6"
)

var signedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// ledger returns n chained events of tenant, as the ledger records them.
func ledger(tenant string, n int, what string) []events.Event {
	evs := make([]events.Event, n)
	var prev events.Hash
	for i := range evs {
		evs[i] = events.Event{
			ID: fmt.Sprintf("evt_%03d", i+1), Tenant: tenant, Stream: "session/ses_1", Version: int64(i + 1), Type: "audit.logged",
			Payload:    []byte(fmt.Sprintf(`{"action":%q}`, what)),
			Metadata:   events.EncodeMetadata(events.Metadata{Actor: "hk_1"}),
			RecordedAt: signedAt.Add(-time.Duration(n-i) * time.Minute), Seq: int64(i + 1), Position: int64(i + 1), PrevHash: prev,
		}
		evs[i].Hash = events.ComputeHash(&evs[i])
		prev = evs[i].Hash
	}
	return evs
}

// The server appends each event's leaf as it appends the event, signs
// checkpoints, and serves proofs; an auditor who trusts only the verifier
// key checks them.
func Example() {
	ctx := context.Background()
	evs := ledger("ten_abc", 5, "deploy")

	// Server: one leaf per event, in the append transaction.
	store := transparency.NewMemoryStore()
	for i := range evs {
		if _, err := store.Append(ctx, "ten_abc", evs[i].Hash); err != nil {
			log.Fatal(err)
		}
	}
	head, err := transparency.TreeHead(ctx, store, "ten_abc", 5)
	if err != nil {
		log.Fatal(err)
	}
	head.Time = signedAt
	signer, err := note.NewSigner(skey)
	if err != nil {
		log.Fatal(err)
	}
	checkpoint, err := transparency.SignCheckpoint(signer, head)
	if err != nil {
		log.Fatal(err)
	}
	sth, err := transparency.NewSignedTreeHead(checkpoint, vkey) // GET …/tree-head
	if err != nil {
		log.Fatal(err)
	}
	proof, err := transparency.ProveInclusion(ctx, store, &evs[2], sth.TreeSize) // GET …/proof/evt_003
	if err != nil {
		log.Fatal(err)
	}

	// Auditor: trusts vkey, holds event evt_003.
	trusted, err := transparency.VerifyTreeHead(sth, vkey)
	if err != nil {
		log.Fatal(err)
	}
	e := &evs[2]
	if events.ComputeHash(e) != e.Hash {
		log.Fatal("event does not match its hash")
	}
	err = transparency.VerifyInclusion(proof, e.Seq-1, transparency.LeafHash(e.Hash), trusted.Size, trusted.Root)
	fmt.Printf("tree of %d events signed by %s at %s\n", trusted.Size, sth.KeyID, trusted.Time.Format(time.RFC3339))
	fmt.Printf("%s is leaf %d with a %d-hash audit path: %v\n", proof.EntryID, proof.LeafIndex, len(proof.AuditPath), err)
	// Output:
	// tree of 5 events signed by haldir.example+990078c2 at 2025-01-02T03:04:05Z
	// evt_003 is leaf 2 with a 3-hash audit path: <nil>
}

// Appending leaf n stores the leaf hash and the root of every complete
// subtree it closes, at consecutive storage indexes.
func ExampleStoredHashesFor() {
	var stored []tlog.Hash // a SQL table (tenant_id, idx, hash) in the server
	read := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			out[i] = stored[idx]
		}
		return out, nil
	})
	for i, e := range ledger("ten_abc", 8, "x") {
		indexes, hashes, err := transparency.StoredHashesFor(int64(i), e.Hash, read)
		if err != nil {
			log.Fatal(err)
		}
		stored = append(stored, hashes...)
		fmt.Printf("leaf %d: store indexes %v\n", i, indexes)
	}
	fmt.Println("stored hashes for 8 leaves:", len(stored), tlog.StoredHashCount(8))
	// Output:
	// leaf 0: store indexes [0]
	// leaf 1: store indexes [1 2]
	// leaf 2: store indexes [3]
	// leaf 3: store indexes [4 5 6]
	// leaf 4: store indexes [7]
	// leaf 5: store indexes [8 9]
	// leaf 6: store indexes [10]
	// leaf 7: store indexes [11 12 13 14]
	// stored hashes for 8 leaves: 15 15
}

func ExampleLeafHash() {
	var eventHash events.Hash // SHA-256 chain hash of an event
	copy(eventHash[:], bytes.Repeat([]byte{0xab}, 32))
	leaf := transparency.LeafHash(eventHash) // SHA-256(0x00 ‖ eventHash)
	fmt.Println(transparency.Hash(leaf))
	// Output:
	// 86754e71ab90f305c4faa7eee57b41b89e49ebcdf03a745c855ee611e4597237
}

func ExampleSignCheckpoint() {
	ctx := context.Background()
	store := transparency.NewMemoryStore()
	for _, e := range ledger("ten_abc", 3, "x") {
		store.Append(ctx, "ten_abc", e.Hash)
	}
	head, _ := transparency.TreeHead(ctx, store, "ten_abc", 3)
	head.Time = signedAt
	signer, _ := note.NewSigner(skey)
	msg, err := transparency.SignCheckpoint(signer, head)
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(msg)
	// Output:
	// haldir.ledger/ten_abc
	// 3
	// QflEcd1GQs0PiZg0UW41gz+twPgwY9kjBEyL6TgcbVY=
	// time 2025-01-02T03:04:05Z
	//
	// — haldir.example mQB4wj2dc1UgBrkrI5G1yO7k5TokDBb5HNn/9mkHoAK6x9VnmJPx2BvIZPVq3yLgedY9lJyfm8G/pv6CSB2iLZQBRAo=
}

func ExampleOpenCheckpoint() {
	msg := []byte("haldir.ledger/ten_abc\n3\nQflEcd1GQs0PiZg0UW41gz+twPgwY9kjBEyL6TgcbVY=\ntime 2025-01-02T03:04:05Z\n\n" +
		"— haldir.example mQB4wj2dc1UgBrkrI5G1yO7k5TokDBb5HNn/9mkHoAK6x9VnmJPx2BvIZPVq3yLgedY9lJyfm8G/pv6CSB2iLZQBRAo=\n")
	c, err := transparency.OpenCheckpoint(msg, vkey)
	fmt.Println(c.Tenant, c.Size, transparency.Hash(c.Root), err)

	msg[len("haldir.ledger/ten_abc\n")] = '4' // claim a fourth event
	_, err = transparency.OpenCheckpoint(msg, vkey)
	fmt.Println(err)
	// Output:
	// ten_abc 3 41f94471dd4642cd0f899834516e35833fadc0f83063d923044c8be9381c6d56 <nil>
	// transparency: checkpoint signature by key haldir.example+990078c2 does not verify: the note was altered or forged
}

func ExampleJWKS() {
	jwks, err := transparency.JWKS(vkey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(jwks))
	// Output:
	// {"keys":[{"kty":"OKP","crv":"Ed25519","x":"ANBaHR6iUTltVXr71FiLPG2Z2-uXL-0QoyVi6ibc3Po","kid":"haldir.example+990078c2","use":"sig","alg":"EdDSA"}]}
}

// An auditor kept yesterday's checkpoint. Today's checkpoint must extend
// it; one signed over a different history does not, whatever the server
// sends as proof.
func ExampleCheckConsistency() {
	ctx := context.Background()
	signer, _ := note.NewSigner(skey)
	checkpoint := func(evs []events.Event, size int64) (transparency.Checkpoint, transparency.HashStore) {
		store := transparency.NewMemoryStore()
		for _, e := range evs {
			store.Append(ctx, e.Tenant, e.Hash)
		}
		head, _ := transparency.TreeHead(ctx, store, "ten_abc", size)
		head.Time = signedAt
		msg, _ := transparency.SignCheckpoint(signer, head)
		c, err := transparency.OpenCheckpoint(msg, vkey)
		if err != nil {
			log.Fatal(err)
		}
		return c, store
	}
	honest := ledger("ten_abc", 10, "deploy")
	yesterday, _ := checkpoint(honest, 6)
	today, store := checkpoint(honest, 10)
	p, _ := transparency.ProveConsistency(ctx, store, "ten_abc", 6, 10)
	fmt.Println("honest:", transparency.CheckConsistency(yesterday, today, p.Path()))

	rewritten := ledger("ten_abc", 10, "nothing happened")
	forged, store := checkpoint(rewritten, 10)
	p, _ = transparency.ProveConsistency(ctx, store, "ten_abc", 6, 10)
	err := transparency.CheckConsistency(yesterday, forged, p.Path())
	fmt.Println("rewritten:", errors.Is(err, transparency.ErrInvalidProof))

	shorter, _ := checkpoint(honest, 4)
	err = transparency.CheckConsistency(yesterday, shorter, nil)
	fmt.Println("truncated:", errors.Is(err, transparency.ErrTruncated))
	// Output:
	// honest: <nil>
	// rewritten: true
	// truncated: true
}

// haldir audit export --bundle writes a bundle; haldir audit verify
// --bundle FILE --key KEY checks it with no server.
func ExampleVerifyBundle() {
	ctx := context.Background()
	evs := ledger("ten_abc", 4, "deploy")
	store := transparency.NewMemoryStore()
	for _, e := range evs {
		store.Append(ctx, e.Tenant, e.Hash)
	}
	head, _ := transparency.TreeHead(ctx, store, "ten_abc", 4)
	head.Time = signedAt
	signer, _ := note.NewSigner(skey)
	checkpoint, _ := transparency.SignCheckpoint(signer, head)

	var bundle bytes.Buffer
	all := func(yield func(*events.Event, error) bool) {
		for i := range evs {
			if !yield(&evs[i], nil) {
				return
			}
		}
	}
	err := transparency.WriteBundle(&bundle, transparency.BundleHeader{Tenant: "ten_abc", ExportedAt: signedAt}, all, checkpoint, vkey)
	if err != nil {
		log.Fatal(err)
	}

	rep, err := transparency.VerifyBundle(bytes.NewReader(bundle.Bytes()), vkey, nil)
	fmt.Printf("%s: %d events verified, checkpoint of %d signed at %s: %v\n",
		rep.Tenant, rep.Events, rep.Checkpoint.Size, rep.Checkpoint.Time.Format(time.RFC3339), err)

	tampered := bytes.Replace(bundle.Bytes(), []byte(`"version":3`), []byte(`"version":4`), 1)
	_, err = transparency.VerifyBundle(bytes.NewReader(tampered), vkey, nil)
	fmt.Println(err)
	// Output:
	// ten_abc: 4 events verified, checkpoint of 4 signed at 2025-01-02T03:04:05Z: <nil>
	// transparency: bundle line 4 (event seq 3): stored hash does not match the event's content (the event was modified)
}
