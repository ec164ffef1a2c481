// Package transparency makes a tenant's ledger provable to outsiders, in the
// manner of Certificate Transparency and the Go checksum database: every
// tenant's chain of event hashes is also the leaf sequence of an RFC 6962
// Merkle tree, whose heads are published as Ed25519 signed checkpoints. An
// auditor holding a checkpoint can check that any event is included
// (inclusion proof), that a later checkpoint only extends it (consistency
// proof), and, from an offline bundle, that a whole exported history is the
// one that was signed.
//
// The tree arithmetic is golang.org/x/mod/sumdb/tlog's and the signed notes
// are golang.org/x/mod/sumdb/note's; this package fixes what goes into them.
//
// # Leaves
//
// The tree of a tenant with N events has N leaves. Leaf n (0-based) is the
// event with tenant sequence number n+1, and its leaf hash is the RFC 6962
// leaf hash of the event's 32-byte chain hash (events.ComputeHash):
//
//	leaf_hash(n) = SHA-256( 0x00 ‖ event_hash[32] )            // tlog.RecordHash(event_hash[:])
//	node_hash    = SHA-256( 0x01 ‖ left[32] ‖ right[32] )      // tlog.NodeHash
//	root(0)      = SHA-256( "" )                                // e3b0c442…b855
//
// and the root of N leaves is RFC 6962 MTH(D[N]) over those leaf hashes
// (RFC 9162 §2.1.1). The record data is the raw 32 bytes of the event hash,
// not its hex form. In JSON every hash is 64 lowercase hexadecimal digits.
//
// # Stored hashes
//
// The server never rebuilds a tree per request. When it appends leaf n it
// persists the hashes returned by StoredHashesFor (the leaf hash and the
// roots of the complete subtrees the leaf closes, 1 + trailing ones of n),
// at the dense storage indexes tlog.StoredHashIndex(0, n), +1, +2, …; a tree
// of N leaves has tlog.StoredHashCount(N) stored hashes, about 2N. Tree
// heads and proofs read at most O(log N) of them through a HashStore.
//
// # Checkpoints
//
// A checkpoint (C2SP tlog-checkpoint style) is four lines, each ending in a
// newline (U+000A):
//
//	haldir.ledger/<tenant>
//	<tree size in decimal, no sign, no leading zeros>
//	<root hash in standard padded base64, 44 characters>
//	time <signing time, RFC 3339 UTC to the second: 2006-01-02T15:04:05Z>
//
// and is published as a golang.org/x/mod/sumdb/note signed note: the text
// above, a blank line, and one signature line per signer:
//
//	— <key name> <base64( key_hash[4] ‖ Ed25519 signature[64] )>
//
// for example (ExampleSignCheckpoint)
//
//	haldir.ledger/ten_abc
//	3
//	QflEcd1GQs0PiZg0UW41gz+twPgwY9kjBEyL6TgcbVY=
//	time 2025-01-02T03:04:05Z
//
//	— haldir.example mQB4wj2dc1UgBrkrI5G1yO7k5TokDBb5HNn/9mkHoAK6x9VnmJPx2BvIZPVq3yLgedY9lJyfm8G/pv6CSB2iLZQBRAo=
//
// where the signature is over the checkpoint text including its final
// newline and key_hash is note's 4-byte key hash. Parsers accept exactly
// this text and exactly one signature line by the trusted key, in canonical
// base64, so that a checkpoint has one encoding; signature lines of other
// keys (cosigners, witnesses) may follow and are ignored. Keys are note
// keys: the signer key "PRIVATE+KEY+<name>+<hash>+<base64>" stays in the
// server's configuration; the verifier key "<name>+<hash>+<base64>" is given
// to auditors, and is also published as a JSON Web Key Set (see JWKS).
//
// # JSON
//
// The API serves these shapes (field order as shown):
//
//	{"algorithm":"RFC6962-SHA256","tree_size":3,"root_hash":"41f94471…",
//	 "signed_at":"2025-01-02T03:04:05Z","signature":"<base64 Ed25519 signature>",
//	 "key_id":"<name>+<hash>","checkpoint":"<signed note>"}
//
//	{"algorithm":"RFC6962-SHA256","entry_id":"evt_…","leaf_index":0,
//	 "leaf_hash":"…","tree_size":3,"root_hash":"…","audit_path":["…","…"]}
//
//	{"algorithm":"RFC6962-SHA256","first_size":1,"second_size":3,
//	 "first_root":"…","second_root":"…","consistency_path":["…","…"]}
//
// The audit path and consistency path are RFC 9162 §2.1.3 and §2.1.4
// proofs (identical to RFC 6962 PATH and PROOF): hashes ordered from the
// leaf (or the old tree) up to the root. A consistency proof between equal
// sizes, or from size 0, is empty.
//
// # Bundles
//
// An offline bundle is JSON Lines, one JSON object per line, each line
// ending in a newline, in exactly the canonical encoding WriteBundle
// produces (re-encoding any line must give the same bytes):
//
//	{"kind":"header","format":"haldir-bundle/v1","tenant":"ten_abc","exported_at":"2025-01-02T03:04:05.123Z"}
//	{"kind":"event","seq":1,"id":"evt_…","tenant":"ten_abc","stream":"session/ses_…","version":1,"type":"session.created","recorded_at":1735787045123456789,"position":7,"payload":"<base64>","metadata":"<base64>","prev_hash":"<hex>","hash":"<hex>"}
//	… one event line per event, seq 1, 2, … N …
//	{"kind":"checkpoint","events":N,"checkpoint":"<signed note>","verifier_key":"<name>+<hash>+<base64>"}
//
// payload and metadata are standard padded base64 of the exact stored bytes,
// recorded_at is Unix nanoseconds, hashes are lowercase hex. Two values are
// carried for reference only, as nothing signs them: exported_at, and
// position, the event's global ledger position, which the chain hash
// deliberately does not cover (VerifyBundle checks only that positions
// increase). The verifier key is informational too: VerifyBundle uses the
// key the auditor trusts, and refuses a bundle declaring another.
package transparency
