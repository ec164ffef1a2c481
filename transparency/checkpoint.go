package transparency

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// OriginPrefix starts the origin line of every checkpoint; the tenant id
// follows it.
const OriginPrefix = "haldir.ledger/"

// timeLayout is the checkpoint time line's format: RFC 3339, UTC, seconds.
const timeLayout = "2006-01-02T15:04:05Z"

// Limits on untrusted input.
const (
	maxTenantLen = 256
	maxNoteSize  = 16 << 10
)

// Checkpoint is a tree head: the root of a tenant's tree of Size leaves, as
// of Time. Signed, it is the note described in the package documentation.
type Checkpoint struct {
	Tenant string
	Size   int64
	Root   tlog.Hash
	// Time is when the checkpoint was signed. It is encoded to the second
	// in UTC; FormatCheckpoint drops the rest.
	Time time.Time
}

// Origin returns the checkpoint's origin line, OriginPrefix followed by the
// tenant id.
func (c Checkpoint) Origin() string { return OriginPrefix + c.Tenant }

// FormatCheckpoint returns the checkpoint text of c, the four lines
//
//	haldir.ledger/<tenant>
//	<size>
//	<base64 root>
//	time <YYYY-MM-DDTHH:MM:SSZ>
//
// each ending in a newline. The tenant must be 1 to 256 bytes of UTF-8
// without spaces, control characters or '+'; Time must be set and fall in
// the years 1970 to 9999.
func FormatCheckpoint(c Checkpoint) ([]byte, error) {
	if err := checkTenant(c.Tenant); err != nil {
		return nil, err
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("transparency: checkpoint has negative size %d", c.Size)
	}
	t := c.Time.UTC().Truncate(time.Second)
	if y := t.Year(); c.Time.IsZero() || y < 1970 || y > 9999 {
		return nil, fmt.Errorf("transparency: checkpoint time %v is unset or outside the years 1970 to 9999", c.Time)
	}
	return fmt.Appendf(nil, "%s\n%d\n%s\ntime %s\n", c.Origin(), c.Size, base64.StdEncoding.EncodeToString(c.Root[:]), t.Format(timeLayout)), nil
}

// ParseCheckpoint parses checkpoint text as FormatCheckpoint writes it, and
// only that: any other spelling of the same values is refused. It does not
// check any signature; see OpenCheckpoint.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	bad := func(format string, args ...any) (Checkpoint, error) {
		return Checkpoint{}, fmt.Errorf("transparency: malformed checkpoint: "+format, args...)
	}
	if len(text) > maxNoteSize {
		return bad("%d bytes, at most %d allowed", len(text), maxNoteSize)
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) != 5 || lines[4] != "" {
		return bad("want exactly 4 lines each ending in a newline, got %d newlines", bytes.Count(text, []byte("\n")))
	}
	var c Checkpoint
	tenant, ok := strings.CutPrefix(lines[0], OriginPrefix)
	if !ok {
		return bad("origin line %q does not start with %q", lines[0], OriginPrefix)
	}
	if err := checkTenant(tenant); err != nil {
		return Checkpoint{}, fmt.Errorf("transparency: malformed checkpoint: origin line: %w", err)
	}
	c.Tenant = tenant
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || lines[1] != strconv.FormatInt(n, 10) {
		return bad("tree size %q is not a canonical non-negative decimal", lines[1])
	}
	c.Size = n
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return bad("root hash %q is not 32 bytes in canonical padded base64", lines[2])
	}
	copy(c.Root[:], root)
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if !ok {
		return bad("fourth line %q is not \"time <RFC 3339 UTC>\"", lines[3])
	}
	t, err := time.Parse(timeLayout, ts)
	if err != nil || t.Format(timeLayout) != ts || t.Year() < 1970 {
		return bad("time %q is not RFC 3339 UTC to the second (%s)", ts, timeLayout)
	}
	c.Time = t
	return c, nil
}

// checkTenant reports whether tenant can stand in an origin line.
func checkTenant(tenant string) error {
	switch {
	case tenant == "":
		return errors.New("transparency: tenant id is empty")
	case len(tenant) > maxTenantLen:
		return fmt.Errorf("transparency: tenant id is %d bytes, at most %d allowed", len(tenant), maxTenantLen)
	case !utf8.ValidString(tenant):
		return fmt.Errorf("transparency: tenant id %q is not valid UTF-8", tenant)
	case strings.IndexFunc(tenant, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '+' }) >= 0:
		return fmt.Errorf("transparency: tenant id %q contains a space, a control character or '+'", tenant)
	}
	return nil
}

// GenerateSigningKey returns a new Ed25519 note key pair named name (for
// example the server's host name): the signer key
// "PRIVATE+KEY+<name>+<hash>+<base64>" to keep secret in the server's
// configuration, and the verifier key "<name>+<hash>+<base64>" to give to
// auditors. The name must be non-empty UTF-8 without spaces or '+'.
func GenerateSigningKey(name string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("transparency: generating key: %w", err)
	}
	if _, err := note.NewSigner(skey); err != nil {
		return "", "", fmt.Errorf("transparency: key name %q is not a valid note name (non-empty, no spaces, no '+')", name)
	}
	return skey, vkey, nil
}

// VerifierKey returns the verifier key of the signer key skey, so that a
// server configured with only its signer key can publish its public key.
func VerifierKey(skey string) (string, error) {
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("transparency: signer key is malformed: %w", err)
	}
	// NewSigner accepted "PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>".
	parts := strings.SplitN(skey, "+", 5)
	key, _ := base64.StdEncoding.DecodeString(parts[4])
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return "", fmt.Errorf("transparency: %w", err)
	}
	return vkey, nil
}

// KeyID returns the identifier of verifier key vkey, "<name>+<hash>": the
// key's name and note's 8-hex-digit key hash. It is the key_id of tree heads
// and the kid of the key's JWK.
func KeyID(vkey string) (string, error) {
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("transparency: verifier key is malformed: %w", err)
	}
	// NewVerifier accepted "<name>+<hash>+<key>"; the name has no '+'.
	parts := strings.SplitN(vkey, "+", 3)
	return parts[0] + "+" + parts[1], nil
}

// PublicKey returns the Ed25519 public key of verifier key vkey.
func PublicKey(vkey string) (ed25519.PublicKey, error) {
	if _, err := note.NewVerifier(vkey); err != nil {
		return nil, fmt.Errorf("transparency: verifier key is malformed: %w", err)
	}
	// NewVerifier accepted "<name>+<hash>+<base64(0x01 ‖ key[32])>"; the
	// name has no '+'.
	key, _ := base64.StdEncoding.DecodeString(strings.SplitN(vkey, "+", 3)[2])
	return ed25519.PublicKey(key[1:]), nil
}

// JWKS returns the JSON Web Key Set (RFC 7517) publishing the verifier keys
// as RFC 8037 Ed25519 keys, one per key, in order:
//
//	{"keys":[{"kty":"OKP","crv":"Ed25519","x":"<base64url public key>","kid":"<KeyID>","use":"sig","alg":"EdDSA"}]}
//
// x is the unpadded base64url of the 32-byte public key. A tree head's
// signature verifies with this key over the checkpoint text.
func JWKS(vkeys ...string) ([]byte, error) {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, vkey := range vkeys {
		pub, err := PublicKey(vkey)
		if err != nil {
			return nil, err
		}
		kid, _ := KeyID(vkey)
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Use: "sig", Alg: "EdDSA"})
	}
	return json.Marshal(set)
}

// SignCheckpoint returns the signed note of c: FormatCheckpoint(c), a blank
// line, and signer's signature line. The signer is usually
// note.NewSigner(skey).
func SignCheckpoint(signer note.Signer, c Checkpoint) ([]byte, error) {
	text, err := FormatCheckpoint(c)
	if err != nil {
		return nil, err
	}
	msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return nil, fmt.Errorf("transparency: signing checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies the signed checkpoint note msg with verifier key
// vkey and returns the checkpoint. The note must carry exactly one
// signature line by vkey, valid and in canonical base64; lines by other
// keys (cosigners) are allowed and ignored, but must also be canonical. The
// text must be exactly as FormatCheckpoint writes it.
func OpenCheckpoint(msg []byte, vkey string) (Checkpoint, error) {
	c, _, err := openCheckpoint(msg, vkey)
	return c, err
}

// openCheckpoint is OpenCheckpoint that also returns the Ed25519 signature
// made by vkey.
func openCheckpoint(msg []byte, vkey string) (Checkpoint, []byte, error) {
	if len(msg) > maxNoteSize {
		return Checkpoint{}, nil, fmt.Errorf("transparency: checkpoint note is %d bytes, at most %d allowed", len(msg), maxNoteSize)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("transparency: verifier key is malformed: %w", err)
	}
	kid := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			var by []string
			for _, s := range unverified.Note.UnverifiedSigs {
				by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return Checkpoint{}, nil, fmt.Errorf("transparency: checkpoint is not signed by key %s (signed by %s)", kid, strings.Join(by, ", "))
		case errors.As(err, &invalid):
			return Checkpoint{}, nil, fmt.Errorf("transparency: checkpoint signature by key %s does not verify: the note was altered or forged", kid)
		}
		return Checkpoint{}, nil, fmt.Errorf("transparency: checkpoint note is malformed: %w", err)
	}
	// note.Open ignores repeated lines of one key before verifying them and
	// accepts non-canonical base64; refuse both, so that one checkpoint has
	// one encoding.
	sigs := msg[bytes.LastIndex(msg, []byte("\n\n"))+2:]
	var sig []byte
	for line := range strings.Lines(string(sigs)) {
		name, b64, _ := strings.Cut(strings.TrimPrefix(strings.TrimSuffix(line, "\n"), "— "), " ")
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || base64.StdEncoding.EncodeToString(raw) != b64 {
			return Checkpoint{}, nil, fmt.Errorf("transparency: checkpoint note is malformed: signature by %s is not canonical base64", name)
		}
		if name == v.Name() && binary.BigEndian.Uint32(raw) == v.KeyHash() {
			if sig != nil {
				return Checkpoint{}, nil, fmt.Errorf("transparency: checkpoint note is malformed: more than one signature line by key %s", kid)
			}
			sig = raw[4:]
		}
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	return c, sig, nil
}

// SignedTreeHead is the JSON tree head the API serves. Checkpoint is the
// signed note; the other fields repeat what it signs: TreeSize, RootHash
// and SignedAt its size, root and time, Signature the base64 (standard,
// padded) 64-byte Ed25519 signature over the checkpoint text by the key
// KeyID.
type SignedTreeHead struct {
	Algorithm  string    `json:"algorithm"`
	TreeSize   int64     `json:"tree_size"`
	RootHash   Hash      `json:"root_hash"`
	SignedAt   time.Time `json:"signed_at"`
	Signature  string    `json:"signature"`
	KeyID      string    `json:"key_id"`
	Checkpoint string    `json:"checkpoint"`
}

// NewSignedTreeHead returns the tree head of the signed checkpoint note
// msg, after verifying it with the server's verifier key vkey.
func NewSignedTreeHead(msg []byte, vkey string) (*SignedTreeHead, error) {
	sth, _, err := signedTreeHead(msg, vkey)
	return sth, err
}

func signedTreeHead(msg []byte, vkey string) (*SignedTreeHead, Checkpoint, error) {
	c, sig, err := openCheckpoint(msg, vkey)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	kid, _ := KeyID(vkey)
	return &SignedTreeHead{
		Algorithm:  Algorithm,
		TreeSize:   c.Size,
		RootHash:   Hash(c.Root),
		SignedAt:   c.Time,
		Signature:  base64.StdEncoding.EncodeToString(sig),
		KeyID:      kid,
		Checkpoint: string(msg),
	}, c, nil
}

// VerifyTreeHead verifies sth's checkpoint with the trusted verifier key
// vkey, checks that every other field of sth repeats it, and returns the
// checkpoint.
func VerifyTreeHead(sth *SignedTreeHead, vkey string) (Checkpoint, error) {
	want, c, err := signedTreeHead([]byte(sth.Checkpoint), vkey)
	if err != nil {
		return Checkpoint{}, err
	}
	var field string
	switch {
	case sth.Algorithm != want.Algorithm:
		field = "algorithm"
	case sth.TreeSize != want.TreeSize:
		field = "tree_size"
	case sth.RootHash != want.RootHash:
		field = "root_hash"
	case !sth.SignedAt.Equal(want.SignedAt):
		field = "signed_at"
	case sth.Signature != want.Signature:
		field = "signature"
	case sth.KeyID != want.KeyID:
		field = "key_id"
	}
	if field != "" {
		return Checkpoint{}, fmt.Errorf("transparency: tree head field %s does not match its signed checkpoint", field)
	}
	return c, nil
}

// ParseSignedTreeHead decodes a SignedTreeHead from JSON. Every field must
// be present; unknown fields are ignored. VerifyTreeHead checks it.
func ParseSignedTreeHead(data []byte) (*SignedTreeHead, error) {
	var w struct {
		Algorithm  *string    `json:"algorithm"`
		TreeSize   *int64     `json:"tree_size"`
		RootHash   *Hash      `json:"root_hash"`
		SignedAt   *time.Time `json:"signed_at"`
		Signature  *string    `json:"signature"`
		KeyID      *string    `json:"key_id"`
		Checkpoint *string    `json:"checkpoint"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("transparency: tree head: %w", jsonError(err))
	}
	if err := missing("tree head", []field{
		{"algorithm", w.Algorithm == nil},
		{"tree_size", w.TreeSize == nil},
		{"root_hash", w.RootHash == nil},
		{"signed_at", w.SignedAt == nil},
		{"signature", w.Signature == nil},
		{"key_id", w.KeyID == nil},
		{"checkpoint", w.Checkpoint == nil},
	}); err != nil {
		return nil, err
	}
	if *w.Algorithm != Algorithm {
		return nil, fmt.Errorf("transparency: tree head: algorithm %q, want %q", *w.Algorithm, Algorithm)
	}
	return &SignedTreeHead{Algorithm: *w.Algorithm, TreeSize: *w.TreeSize, RootHash: *w.RootHash, SignedAt: *w.SignedAt,
		Signature: *w.Signature, KeyID: *w.KeyID, Checkpoint: *w.Checkpoint}, nil
}

// CheckConsistency decides whether checkpoint newer extends checkpoint
// older of the same tenant, given the consistency proof between their sizes
// (ProveConsistency's path, or a proof computed locally). It returns nil if
// newer's tree has older's as a prefix; an error wrapping ErrTruncated if
// newer is smaller; ErrFork if both have the same size and different roots;
// ErrInvalidProof if the proof does not show the prefix relation (a fork,
// or a bad proof). The checkpoints' signatures must have been verified.
func CheckConsistency(older, newer Checkpoint, proof tlog.TreeProof) error {
	if older.Tenant != newer.Tenant {
		return fmt.Errorf("transparency: checkpoints are of different logs: %q and %q", older.Origin(), newer.Origin())
	}
	if newer.Size < older.Size {
		return fmt.Errorf("%w: checkpoint of %s signs %d leaves, fewer than the %d an earlier checkpoint signed: the log was truncated or rolled back",
			ErrTruncated, newer.Time.Format(timeLayout), newer.Size, older.Size)
	}
	return checkConsistency(older.Size, older.Root, newer.Size, newer.Root, proof)
}
