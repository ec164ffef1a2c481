package transparency

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzOpenCheckpoint feeds arbitrary notes to OpenCheckpoint. Whatever
// opens must be exactly the checkpoint text FormatCheckpoint writes, and,
// when it carries only the trusted signature, exactly what SignCheckpoint
// writes (Ed25519 is deterministic): one checkpoint, one encoding.
func FuzzOpenCheckpoint(f *testing.F) {
	skey, vkey := testKey(f, "haldir.example", 7)
	askey, _ := testKey(f, "attacker.example", 99)
	signer := testSigner(f, skey)
	evs := chain("ten_abc", 5, "a")
	s := storeOf(f, evs)
	for _, size := range []int64{0, 1, 5} {
		msg := signedCheckpoint(f, skey, s, "ten_abc", size, testTime)
		f.Add(msg)
		n, _ := note.Open(msg, note.VerifierList(mustVerifier(f, vkey)))
		cosigned, _ := note.Sign(n, testSigner(f, askey))
		f.Add(cosigned)
		f.Add(bytes.Replace(msg, []byte("\n\n"), []byte("\n"), 1))
	}
	f.Add([]byte("haldir.ledger/x\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 2025-01-02T03:04:05Z\n\n— haldir.example AAAA\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := OpenCheckpoint(msg, vkey)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "transparency: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		text, err := FormatCheckpoint(c)
		if err != nil {
			t.Fatalf("opened checkpoint %+v does not format: %v", c, err)
		}
		if !bytes.HasPrefix(msg, append(text, '\n')) {
			t.Fatalf("opened %q but the note's text is not FormatCheckpoint's %q", msg, text)
		}
		if bytes.Count(msg, []byte("\n— ")) == 1 {
			again, err := SignCheckpoint(signer, c)
			if err != nil || !bytes.Equal(again, msg) {
				t.Fatalf("opened %q, but signing its checkpoint gives %q (%v)", msg, again, err)
			}
		}
	})
}

// FuzzParseCheckpoint checks that ParseCheckpoint accepts only what
// FormatCheckpoint writes.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("haldir.ledger/ten_abc\n3\nQflEcd1GQs0PiZg0UW41gz+twPgwY9kjBEyL6TgcbVY=\ntime 2025-01-02T03:04:05Z\n"))
	f.Add([]byte("haldir.ledger/_install\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 1970-01-01T00:00:00Z\n"))
	f.Add([]byte("go.sum database tree\n3\nQflEcd1GQs0PiZg0UW41gz+twPgwY9kjBEyL6TgcbVY=\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		back, err := FormatCheckpoint(c)
		if err != nil || !bytes.Equal(back, text) {
			t.Fatalf("parsed %q as %+v, which formats as %q (%v)", text, c, back, err)
		}
	})
}

// FuzzParseProofJSON feeds arbitrary JSON to the three proof parsers.
// Whatever parses must survive a JSON round trip unchanged and must not
// make the verifiers panic, whatever it claims.
func FuzzParseProofJSON(f *testing.F) {
	ctx := context.Background()
	skey, vkey := testKey(f, "haldir.example", 7)
	evs := chain("ten_j", 13, "a")
	s := storeOf(f, evs)
	for _, n := range []int64{1, 2, 7, 13} {
		ip, _ := ProveInclusion(ctx, s, &evs[n/2], n)
		b, _ := json.Marshal(ip)
		f.Add(b)
		for _, m := range []int64{0, 1, n / 2, n} {
			cp, _ := ProveConsistency(ctx, s, "ten_j", m, n)
			b, _ := json.Marshal(cp)
			f.Add(b)
		}
		sth, _ := NewSignedTreeHead(signedCheckpoint(f, skey, s, "ten_j", n, testTime), vkey)
		b, _ = json.Marshal(sth)
		f.Add(b)
	}
	f.Add([]byte(`{"algorithm":"RFC6962-SHA256","leaf_index":9223372036854775807,"tree_size":-9223372036854775808}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := ParseInclusionProof(data); err == nil {
			b, _ := json.Marshal(p)
			q, err := ParseInclusionProof(b)
			if err != nil || !reflect.DeepEqual(p, q) {
				t.Fatalf("inclusion proof %s does not round-trip: %s, %v", data, b, err)
			}
			err = VerifyInclusion(p, p.LeafIndex, tlog.Hash(p.LeafHash), p.TreeSize, tlog.Hash(p.RootHash))
			if c, e := TreeHead(ctx, s, "ten_j", p.TreeSize); err == nil && e == nil && c.Root == tlog.Hash(p.RootHash) {
				// A proof against a real root must be the real one.
				want, _ := ProveInclusion(ctx, s, &evs[p.LeafIndex], p.TreeSize)
				if !reflect.DeepEqual(want.AuditPath, p.AuditPath) || want.LeafHash != p.LeafHash {
					t.Fatalf("verified a proof that is not the log's: %s", data)
				}
			}
		} else if !strings.HasPrefix(err.Error(), "transparency: ") {
			t.Fatalf("error %q lacks the package prefix", err)
		}
		if p, err := ParseConsistencyProof(data); err == nil {
			b, _ := json.Marshal(p)
			q, err := ParseConsistencyProof(b)
			if err != nil || !reflect.DeepEqual(p, q) {
				t.Fatalf("consistency proof %s does not round-trip: %s, %v", data, b, err)
			}
			VerifyConsistency(p, p.FirstSize, tlog.Hash(p.FirstRoot), p.SecondSize, tlog.Hash(p.SecondRoot))
		} else if !strings.HasPrefix(err.Error(), "transparency: ") {
			t.Fatalf("error %q lacks the package prefix", err)
		}
		if sth, err := ParseSignedTreeHead(data); err == nil {
			if c, err := VerifyTreeHead(sth, vkey); err == nil {
				if c.Size != sth.TreeSize || Hash(c.Root) != sth.RootHash || !c.Time.Equal(sth.SignedAt) {
					t.Fatalf("verified tree head %s disagrees with its checkpoint %+v", data, c)
				}
			}
		} else if !strings.HasPrefix(err.Error(), "transparency: ") {
			t.Fatalf("error %q lacks the package prefix", err)
		}
	})
}

// FuzzParseBundle feeds arbitrary bytes to VerifyBundle, with and without
// an old checkpoint. It must not panic, must explain every refusal with the
// package prefix, and may accept only bundles whose checkpoint it could
// open with the trusted key and whose lines all end in newlines.
func FuzzParseBundle(f *testing.F) {
	skey, vkey := testKey(f, "haldir.example", 7)
	// Small seeds keep the fuzzer's minimisation of new inputs quick.
	evs := chain("ten_b", 3, "a")
	s := storeOf(f, evs)
	f.Add(bundleOf(f, skey, vkey, "ten_b", evs, 3), false)
	f.Add(bundleOf(f, skey, vkey, "ten_b", evs, 2), true)
	f.Add(bundleOf(f, skey, vkey, "ten_b", nil, 0), false)
	f.Add([]byte(`{"kind":"header","format":"haldir-bundle/v1","tenant":"ten_b","exported_at":"0001-01-01T00:00:00Z"}`+"\n"), false)
	f.Add([]byte("\n\n\n"), true)
	old := signedCheckpoint(f, skey, s, "ten_b", 2, testTime)
	f.Fuzz(func(t *testing.T, data []byte, withOld bool) {
		var o []byte
		if withOld {
			o = old
		}
		rep, err := VerifyBundle(bytes.NewReader(data), vkey, o)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "transparency: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		if len(data) == 0 || data[len(data)-1] != '\n' {
			t.Fatalf("accepted a bundle that does not end in a newline: %q", data)
		}
		if rep.Checkpoint.Size > rep.Events || rep.Checkpoint.Tenant != rep.Tenant {
			t.Fatalf("report %+v", rep)
		}
		if withOld && (rep.Old == nil || rep.Events < rep.Old.Size) {
			t.Fatalf("report %+v with an old checkpoint", rep)
		}
		if rep.Events > 0 {
			// An accepted bundle holds the chain that ends in Head.
			i := bytes.LastIndex(data, []byte(`"hash":"`+Hash(rep.Head).String()+`"}`))
			if i < 0 {
				t.Fatalf("head %x is not the last event's hash", rep.Head)
			}
		}
	})
}

// FuzzEventLine checks that the fast event-line parser agrees with the
// encoding/json path it stands for: the same lines accepted, with the same
// values.
func FuzzEventLine(f *testing.F) {
	evs := chain("ten_b", 3, "a")
	evs[1].Stream = "s/<é>\u2028\"\\\x01"
	evs[2].ID = "évt"
	for i := range evs {
		b, _ := json.Marshal(newEventLine(&evs[i]))
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"event","seq":-0,"id":"","tenant":"","stream":"","version":0,"type":"","recorded_at":0,"position":0,"payload":"","metadata":"","prev_hash":"","hash":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ferr := parseEventLine(b)
		slow, serr := slowEventLine(b)
		if (ferr == nil) != (serr == nil) || fast != slow {
			t.Fatalf("line %q: fast %+v, %v; encoding/json %+v, %v", b, fast, ferr, slow, serr)
		}
	})
}
