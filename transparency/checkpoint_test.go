package transparency

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func testCheckpoint(t testing.TB) (Checkpoint, []byte, string) {
	t.Helper()
	skey, vkey := testKey(t, "haldir.example", 7)
	evs := chain("ten_abc", 3, "a")
	s := storeOf(t, evs)
	msg := signedCheckpoint(t, skey, s, "ten_abc", 3, testTime)
	c, err := OpenCheckpoint(msg, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return c, msg, vkey
}

func TestCheckpointRoundTrip(t *testing.T) {
	c, msg, vkey := testCheckpoint(t)
	if c.Tenant != "ten_abc" || c.Size != 3 || !c.Time.Equal(testTime) || c.Origin() != "haldir.ledger/ten_abc" {
		t.Fatalf("opened %+v", c)
	}
	text, _ := FormatCheckpoint(c)
	want := "haldir.ledger/ten_abc\n3\n" + base64.StdEncoding.EncodeToString(c.Root[:]) + "\ntime 2025-01-02T03:04:05Z\n"
	if string(text) != want || !bytes.HasPrefix(msg, append(text, '\n')) {
		t.Fatalf("checkpoint text\n%q\nwant\n%q\nnote\n%s", text, want, msg)
	}
	back, err := ParseCheckpoint(text)
	if err != nil || back != c {
		t.Fatalf("ParseCheckpoint = %+v, %v; want %+v", back, err, c)
	}
	// Sub-second precision and zones are dropped before signing.
	c2 := c
	c2.Time = testTime.Add(999 * time.Millisecond).In(time.FixedZone("X", 3600))
	text2, _ := FormatCheckpoint(c2)
	if !bytes.Equal(text, text2) {
		t.Fatalf("time not normalised: %q", text2)
	}
	// The verifier key round-trips through the signer key.
	skey, _ := testKey(t, "haldir.example", 7)
	if v, err := VerifierKey(skey); err != nil || v != vkey {
		t.Fatalf("VerifierKey = %q, %v; want %q", v, err, vkey)
	}
}

func TestFormatCheckpointRefuses(t *testing.T) {
	good := Checkpoint{Tenant: "ten_abc", Size: 1, Time: testTime}
	if _, err := FormatCheckpoint(good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		f    func(*Checkpoint)
	}{
		{"empty tenant", func(c *Checkpoint) { c.Tenant = "" }},
		{"tenant with a space", func(c *Checkpoint) { c.Tenant = "ten abc" }},
		{"tenant with a newline", func(c *Checkpoint) { c.Tenant = "ten\nabc" }},
		{"tenant with a plus", func(c *Checkpoint) { c.Tenant = "ten+abc" }},
		{"tenant with NBSP", func(c *Checkpoint) { c.Tenant = "ten\u00a0abc" }},
		{"tenant not UTF-8", func(c *Checkpoint) { c.Tenant = "ten\xff" }},
		{"long tenant", func(c *Checkpoint) { c.Tenant = strings.Repeat("t", 257) }},
		{"negative size", func(c *Checkpoint) { c.Size = -1 }},
		{"zero time", func(c *Checkpoint) { c.Time = time.Time{} }},
		{"year 10000", func(c *Checkpoint) { c.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		c := good
		tc.f(&c)
		if _, err := FormatCheckpoint(c); err == nil {
			t.Errorf("%s: FormatCheckpoint succeeded", tc.desc)
		} else if !strings.HasPrefix(err.Error(), "transparency: ") {
			t.Errorf("%s: error %q lacks the package prefix", tc.desc, err)
		}
		if _, err := SignCheckpoint(testSigner(t, mustSkey(t)), c); err == nil {
			t.Errorf("%s: SignCheckpoint succeeded", tc.desc)
		}
	}
}

func mustSkey(t testing.TB) string {
	skey, _ := testKey(t, "haldir.example", 7)
	return skey
}

func TestParseCheckpointRefuses(t *testing.T) {
	c, _, _ := testCheckpoint(t)
	text, _ := FormatCheckpoint(c)
	good := string(text)
	root := base64.StdEncoding.EncodeToString(c.Root[:])
	for _, bad := range []string{
		"",
		strings.TrimSuffix(good, "\n"),
		good + "\n",
		good + "extension\n",
		strings.Replace(good, "haldir.ledger/", "haldir.ledger", 1),
		strings.Replace(good, "haldir.ledger/", "go.sum database tree/", 1),
		strings.Replace(good, "ten_abc", "", 1),
		strings.Replace(good, "ten_abc", "ten abc", 1),
		strings.Replace(good, "\n3\n", "\n03\n", 1),
		strings.Replace(good, "\n3\n", "\n+3\n", 1),
		strings.Replace(good, "\n3\n", "\n-3\n", 1),
		strings.Replace(good, "\n3\n", "\n3.0\n", 1),
		strings.Replace(good, "\n3\n", "\n99999999999999999999\n", 1),
		strings.Replace(good, root, strings.TrimRight(root, "="), 1),
		strings.Replace(good, root, base64.URLEncoding.EncodeToString(c.Root[:]), 1),
		strings.Replace(good, root, root[:42]+"B=", 1), // nonzero padding bits... or a different hash
		strings.Replace(good, root, base64.StdEncoding.EncodeToString(c.Root[:31]), 1),
		strings.Replace(good, "time ", "time  ", 1),
		strings.Replace(good, "time ", "Time ", 1),
		strings.Replace(good, "05Z", "05.000Z", 1),
		strings.Replace(good, "05Z", "05+00:00", 1),
		strings.Replace(good, "05Z", "05z", 1),
		strings.Replace(good, "2025-01-02T", "2025-1-2T", 1),
		strings.Replace(good, "2025", "1969", 1),
		strings.Replace(good, "\n", "\r\n", 1),
		strings.Replace(good, "time 2025-01-02T03:04:05Z\n", "", 1),
	} {
		if bad == good {
			continue // a replacement that happened not to change anything
		}
		if _, err := ParseCheckpoint([]byte(bad)); err == nil {
			t.Errorf("ParseCheckpoint(%q) succeeded", bad)
		}
	}
}

// TestOpenCheckpointEveryChange checks, as note's own tests do and more,
// that every single-byte change (to every other byte value) of a signed
// checkpoint, every truncation and every other substring of it fails to
// open.
func TestOpenCheckpointEveryChange(t *testing.T) {
	t.Parallel()
	_, msg, vkey := testCheckpoint(t)
	b := bytes.Clone(msg)
	for i := range b {
		orig := b[i]
		for v := 0; v < 256; v++ {
			if byte(v) == orig {
				continue
			}
			b[i] = byte(v)
			if c, err := OpenCheckpoint(b, vkey); err == nil {
				t.Fatalf("byte %d changed from %q to %q: opened %+v\n%s", i, orig, byte(v), c, b)
			}
		}
		b[i] = orig
	}
	for i := 0; i <= len(msg); i++ {
		for j := i; j <= len(msg); j++ {
			if i == 0 && j == len(msg) {
				continue
			}
			if _, err := OpenCheckpoint(msg[i:j], vkey); err == nil {
				t.Fatalf("substring [%d:%d] opened:\n%s", i, j, msg[i:j])
			}
		}
	}
	if _, err := OpenCheckpoint(msg, vkey); err != nil {
		t.Fatal(err)
	}
}

// TestOpenCheckpointSignatures covers who signed: the wrong key, a
// cosigner, repeated lines, non-canonical base64.
func TestOpenCheckpointSignatures(t *testing.T) {
	c, msg, vkey := testCheckpoint(t)
	askey, avkey := testKey(t, "attacker.example", 99)
	attacker := testSigner(t, askey)

	// Signed by another key only.
	forged, _ := SignCheckpoint(attacker, c)
	if _, err := OpenCheckpoint(forged, vkey); err == nil || !strings.Contains(err.Error(), "not signed by key haldir.example+990078c2") {
		t.Errorf("forged checkpoint: %v", err)
	}
	if _, err := OpenCheckpoint(msg, avkey); err == nil {
		t.Error("checkpoint opened with the attacker's key")
	}
	// Same name, different key.
	_, impostor := testKey(t, "haldir.example", 8)
	if _, err := OpenCheckpoint(msg, impostor); err == nil {
		t.Error("checkpoint opened with a different key of the same name")
	}
	// A cosignature by another key is allowed and ignored.
	n, err := note.Open(msg, note.VerifierList(mustVerifier(t, vkey)))
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(n, attacker)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenCheckpoint(cosigned, vkey); err != nil || got != c {
		t.Errorf("cosigned checkpoint: %+v, %v", got, err)
	}
	// The trusted signature line twice: note ignores the repeat; we refuse.
	sigLine := msg[bytes.LastIndex(msg, []byte("\n\n"))+2:]
	if _, err := OpenCheckpoint(append(bytes.Clone(msg), sigLine...), vkey); err == nil || !strings.Contains(err.Error(), "more than one signature line") {
		t.Errorf("repeated signature line: %v", err)
	}
	// Non-canonical base64 with the same bytes: 68 bytes encode with one
	// '=' and two padding bits in the character before it.
	i := bytes.LastIndexByte(msg, '=') - 1
	alt := bytes.Clone(msg)
	alt[i] = base64Alphabet[strings.IndexByte(base64Alphabet, alt[i])^1]
	if raw, err := base64.StdEncoding.DecodeString(string(alt[bytes.LastIndexByte(alt, ' ')+1 : len(alt)-1])); err != nil {
		t.Fatal(err)
	} else if _, err := note.Open(alt, note.VerifierList(mustVerifier(t, vkey))); err != nil {
		t.Fatalf("note itself rejects the padding variant (%x): %v", raw[:4], err)
	}
	if _, err := OpenCheckpoint(alt, vkey); err == nil || !strings.Contains(err.Error(), "canonical base64") {
		t.Errorf("non-canonical signature base64: %v", err)
	}
	// Malformed keys.
	for _, k := range []string{"", "haldir.example", askey, vkey + "x", strings.Replace(vkey, "990078c2", "990078c3", 1)} {
		if _, err := OpenCheckpoint(msg, k); err == nil || !strings.Contains(err.Error(), "verifier key is malformed") {
			t.Errorf("OpenCheckpoint with key %q: %v", k, err)
		}
	}
	// Oversized input is refused before parsing.
	if _, err := OpenCheckpoint(bytes.Repeat([]byte("a"), maxNoteSize+1), vkey); err == nil {
		t.Error("oversized note opened")
	}
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func mustVerifier(t testing.TB, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKeys(t *testing.T) {
	skey, vkey, err := GenerateSigningKey("haldir.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(skey, "PRIVATE+KEY+haldir.example.com+") || !strings.HasPrefix(vkey, "haldir.example.com+") {
		t.Fatalf("keys %q %q", skey, vkey)
	}
	if v, err := VerifierKey(skey); err != nil || v != vkey {
		t.Fatalf("VerifierKey = %q, %v; want %q", v, err, vkey)
	}
	for _, name := range []string{"", "a b", "a+b", "a\nb"} {
		if _, _, err := GenerateSigningKey(name); err == nil {
			t.Errorf("GenerateSigningKey(%q) succeeded", name)
		}
	}
	for _, k := range []string{"", vkey, "PRIVATE+KEY+x", skey[:len(skey)-2]} {
		if _, err := VerifierKey(k); err == nil {
			t.Errorf("VerifierKey(%q) succeeded", k)
		}
	}
	for _, k := range []string{"", skey, "a+b+c"} {
		if _, err := KeyID(k); err == nil {
			t.Errorf("KeyID(%q) succeeded", k)
		}
		if _, err := PublicKey(k); err == nil {
			t.Errorf("PublicKey(%q) succeeded", k)
		}
		if _, err := JWKS(k); err == nil {
			t.Errorf("JWKS(%q) succeeded", k)
		}
	}
}

// TestJWKS checks the RFC 8037 shape and that a tree head's signature
// verifies with the published JWK alone, over the checkpoint text.
func TestJWKS(t *testing.T) {
	_, msg, vkey := testCheckpoint(t)
	b, err := JWKS(vkey)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"ANBaHR6iUTltVXr71FiLPG2Z2-uXL-0QoyVi6ibc3Po","kid":"haldir.example+990078c2","use":"sig","alg":"EdDSA"}]}`
	if string(b) != want {
		t.Fatalf("JWKS\n%s\nwant\n%s", b, want)
	}
	var set struct {
		Keys []struct{ X, Kid string }
	}
	json.Unmarshal(b, &set)
	pub, err := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	if err != nil {
		t.Fatal(err)
	}
	sth, err := NewSignedTreeHead(msg, vkey)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(sth.Signature)
	body := sth.Checkpoint[:strings.Index(sth.Checkpoint, "\n\n")+1]
	if !ed25519.Verify(pub, []byte(body), sig) {
		t.Fatal("tree head signature does not verify with the JWK over the checkpoint text")
	}
	if sth.KeyID != set.Keys[0].Kid {
		t.Fatalf("key_id %q, kid %q", sth.KeyID, set.Keys[0].Kid)
	}
	if b, _ := JWKS(); string(b) != `{"keys":[]}` {
		t.Fatalf("empty JWKS = %s", b)
	}
}

func TestSignedTreeHead(t *testing.T) {
	c, msg, vkey := testCheckpoint(t)
	sth, err := NewSignedTreeHead(msg, vkey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(sth)
	wantPrefix := `{"algorithm":"RFC6962-SHA256","tree_size":3,"root_hash":"` + Hash(c.Root).String() + `","signed_at":"2025-01-02T03:04:05Z","signature":"`
	if !strings.HasPrefix(string(b), wantPrefix) || !strings.Contains(string(b), `"key_id":"haldir.example+990078c2","checkpoint":"haldir.ledger/ten_abc\n3\n`) {
		t.Fatalf("tree head JSON %s", b)
	}
	back, err := ParseSignedTreeHead(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyTreeHead(back, vkey)
	if err != nil || got != c {
		t.Fatalf("VerifyTreeHead = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		field string
		f     func(*SignedTreeHead)
	}{
		{"algorithm", func(s *SignedTreeHead) { s.Algorithm = "x" }},
		{"tree_size", func(s *SignedTreeHead) { s.TreeSize++ }},
		{"root_hash", func(s *SignedTreeHead) { s.RootHash[0] ^= 1 }},
		{"signed_at", func(s *SignedTreeHead) { s.SignedAt = s.SignedAt.Add(time.Second) }},
		{"signature", func(s *SignedTreeHead) { s.Signature = "AAAA" }},
		{"key_id", func(s *SignedTreeHead) { s.KeyID = "other+00000000" }},
		{"checkpoint", func(s *SignedTreeHead) { s.Checkpoint = strings.Replace(s.Checkpoint, "\n3\n", "\n4\n", 1) }},
	} {
		s := *back
		tc.f(&s)
		if _, err := VerifyTreeHead(&s, vkey); err == nil {
			t.Errorf("tree head with a changed %s verified", tc.field)
		} else if tc.field != "checkpoint" && !strings.Contains(err.Error(), tc.field) {
			t.Errorf("changed %s: error %q does not name it", tc.field, err)
		}
	}
	for _, bad := range []string{`{}`, `[]`, strings.Replace(string(b), `"signed_at"`, `"signed"`, 1), strings.Replace(string(b), `RFC6962-SHA256`, `x`, 1)} {
		if _, err := ParseSignedTreeHead([]byte(bad)); err == nil {
			t.Errorf("ParseSignedTreeHead(%s) succeeded", bad)
		}
	}
}

// TestCheckConsistency covers the four outcomes of comparing an old
// checkpoint with a new one: consistent, truncated, forked at the same
// size, and forked at different sizes.
func TestCheckConsistency(t *testing.T) {
	ctx := context.Background()
	skey, vkey := testKey(t, "haldir.example", 7)
	a := chain("ten_c", 12, "a")
	b := append(a[:7:7], chain("ten_c", 12, "b")[7:]...) // same first 7 events
	sa, sb := storeOf(t, a), storeOf(t, b)
	open := func(s HashStore, size int64) Checkpoint {
		c, err := OpenCheckpoint(signedCheckpoint(t, skey, s, "ten_c", size, testTime.Add(time.Duration(size)*time.Hour)), vkey)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	proof := func(s HashStore, first, second int64) tlog.TreeProof {
		p, err := ProveConsistency(ctx, s, "ten_c", first, second)
		if err != nil {
			t.Fatal(err)
		}
		return fromHex(p.ConsistencyPath)
	}
	old := open(sa, 5)
	if err := CheckConsistency(old, open(sa, 12), proof(sa, 5, 12)); err != nil {
		t.Errorf("5→12 of one history: %v", err)
	}
	if err := CheckConsistency(old, old, nil); err != nil {
		t.Errorf("a checkpoint with itself: %v", err)
	}
	if err := CheckConsistency(old, open(sb, 12), proof(sb, 5, 12)); err != nil {
		t.Errorf("5→12 across histories that share 7 events: %v", err)
	}
	// Forks.
	old9 := open(sa, 9)
	if err := CheckConsistency(old9, open(sb, 9), nil); !errors.Is(err, ErrFork) {
		t.Errorf("same size, different histories: %v, want ErrFork", err)
	}
	if err := CheckConsistency(old9, open(sb, 12), proof(sb, 9, 12)); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("9 of a → 12 of b with b's proof: %v, want ErrInvalidProof", err)
	}
	if err := CheckConsistency(old9, open(sb, 12), proof(sa, 9, 12)); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("9 of a → 12 of b with a's proof: %v, want ErrInvalidProof", err)
	}
	// Truncation: the newer checkpoint signs fewer events.
	if err := CheckConsistency(open(sa, 12), open(sa, 9), nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("12→9: %v, want ErrTruncated", err)
	}
	// Another tenant's log.
	other := old
	other.Tenant = "ten_d"
	if err := CheckConsistency(old, other, nil); err == nil || !strings.Contains(err.Error(), "different logs") {
		t.Errorf("two tenants: %v", err)
	}
}
