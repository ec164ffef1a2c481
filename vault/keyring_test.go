package vault_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/haldir-dev/haldir/vault"
)

// Fixed test master keys: bytes 1..32 and 33..64.
var (
	keyABytes = seq(1, 32)
	keyBBytes = seq(33, 32)
	keyA      = base64.RawURLEncoding.EncodeToString(keyABytes)
	keyB      = base64.RawURLEncoding.EncodeToString(keyBBytes)
)

func seq(first byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = first + byte(i)
	}
	return b
}

func mustMaster(t testing.TB, s string) vault.MasterKey {
	t.Helper()
	m, err := vault.ParseMasterKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustKeyring(t testing.TB, s string, current uint32) *vault.Keyring {
	t.Helper()
	k, err := vault.NewKeyring(mustMaster(t, s), current)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSeal(t testing.TB, k *vault.Keyring, ref vault.Ref, value string) (vault.Sealed, vault.WrappedKey) {
	t.Helper()
	s, w, err := k.Seal(ref, []byte(value))
	if err != nil {
		t.Fatalf("Seal(%v): %v", ref, err)
	}
	return s, w
}

func mustOpen(t testing.TB, k *vault.Keyring, ref vault.Ref, s vault.Sealed, w vault.WrappedKey, want string) {
	t.Helper()
	got, err := k.Open(ref, s, w)
	if err != nil {
		t.Fatalf("Open(%v): %v", ref, err)
	}
	if string(got) != want {
		t.Fatalf("Open(%v) = %q, want %q", ref, got, want)
	}
}

// wantErr fails unless err wraps target, and checks that its text holds no
// secret: neither the plaintext nor any spelling of the master keys.
func wantErr(t testing.TB, err, target error, plaintext string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "vault: ") {
		t.Errorf("error %q lacks the vault: prefix", msg)
	}
	secrets := []string{keyA, keyB, hex.EncodeToString(keyABytes), hex.EncodeToString(keyBBytes), fmt.Sprint(keyABytes), fmt.Sprint(keyBBytes)}
	if plaintext != "" {
		secrets = append(secrets, plaintext)
	}
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("error %q contains a secret", msg)
		}
	}
}

var ref1 = vault.Ref{Tenant: "ten_1", Name: "STRIPE_KEY", Version: 1}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	tests := []struct {
		name  string
		ref   vault.Ref
		value string
	}{
		{"typical", ref1, "sk_live_51Habcdefghijklmnopqrstuvwxyz0123456789"},
		{"empty value", ref1, ""},
		{"binary value", ref1, "\x00\xff\x00\n\"\\"},
		{"largest value", ref1, strings.Repeat("x", vault.MaxValueSize)},
		{"longest name", vault.Ref{Tenant: "t", Name: strings.Repeat("n", 128), Version: 1}, "v"},
		{"longest tenant", vault.Ref{Tenant: strings.Repeat("t", 255), Name: "n", Version: 1}, "v"},
		{"largest version", vault.Ref{Tenant: "t", Name: "a.b-c_D9", Version: math.MaxUint64}, "v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, w := mustSeal(t, k, tt.ref, tt.value)
			if got := w.KEKVersion(); got != 1 {
				t.Errorf("KEKVersion() = %d, want 1", got)
			}
			// Through storage: bytes out, parsed back in.
			s2, err := vault.ParseSealed(s.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			w2, err := vault.ParseWrappedKey(w.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			mustOpen(t, k, tt.ref, s2, w2, tt.value)
			if len(s.Bytes()) != 33+len(tt.value) || len(w.Bytes()) != 73 {
				t.Errorf("stored sizes %d and %d, want %d and 73", len(s.Bytes()), len(w.Bytes()), 33+len(tt.value))
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s1, w1 := mustSeal(t, k, ref1, "same value")
	s2, w2 := mustSeal(t, k, ref1, "same value")
	if bytes.Equal(s1.Bytes(), s2.Bytes()) || bytes.Equal(w1.Bytes(), w2.Bytes()) {
		t.Fatal("sealing the same value twice produced identical bytes")
	}
}

// TestMovedCiphertextFails moves the sealed value, the wrapped key or both
// to another secret: every combination must fail with ErrWrongRef.
func TestMovedCiphertextFails(t *testing.T) {
	const value = "hunter2-secret-value"
	k := mustKeyring(t, keyA, 1)
	base := vault.Ref{Tenant: "ab", Name: "c", Version: 2}
	sBase, wBase := mustSeal(t, k, base, value)
	targets := []struct {
		name string
		ref  vault.Ref
	}{
		{"other tenant", vault.Ref{Tenant: "ab2", Name: "c", Version: 2}},
		{"other name", vault.Ref{Tenant: "ab", Name: "d", Version: 2}},
		{"name differs in case", vault.Ref{Tenant: "ab", Name: "C", Version: 2}},
		{"older version", vault.Ref{Tenant: "ab", Name: "c", Version: 1}},
		{"newer version", vault.Ref{Tenant: "ab", Name: "c", Version: 3}},
		{"tenant-name boundary shifted", vault.Ref{Tenant: "a", Name: "bc", Version: 2}},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			sOther, wOther := mustSeal(t, k, tt.ref, "other value")
			cases := []struct {
				name string
				s    vault.Sealed
				w    vault.WrappedKey
			}{
				{"both moved", sBase, wBase},
				{"sealed value moved", sBase, wOther},
				{"wrapped key moved", sOther, wBase},
			}
			for _, c := range cases {
				_, err := k.Open(tt.ref, c.s, c.w)
				wantErr(t, err, vault.ErrWrongRef, value)
			}
			_, err := k.Rewrap(tt.ref, wBase)
			wantErr(t, err, vault.ErrWrongRef, value)
		})
	}
}

// TestFlippedSealedByte flips each byte of a sealed value in turn.
func TestFlippedSealedByte(t *testing.T) {
	const value = "a 64-byte secret value, long enough to look like an API token..."
	k := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, k, ref1, value)
	stored := s.Bytes()
	for i := range stored {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(stored)
			b[i] ^= mask
			parsed, err := vault.ParseSealed(b)
			if i == 0 { // the format byte
				wantErr(t, err, vault.ErrMalformed, value)
				continue
			}
			if err != nil {
				t.Fatalf("byte %d ^ %#x: ParseSealed: %v", i, mask, err)
			}
			_, err = k.Open(ref1, parsed, w)
			wantErr(t, err, vault.ErrTampered, value)
		}
	}
}

// TestFlippedWrappedKeyByte flips each byte of a wrapped key in turn, with
// a keyring that knows only KEK version 1.
func TestFlippedWrappedKeyByte(t *testing.T) {
	const value = "hunter2-secret-value"
	k := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, k, ref1, value)
	stored := w.Bytes()
	for i := range stored {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(stored)
			b[i] ^= mask
			parsed, err := vault.ParseWrappedKey(b)
			if i == 0 {
				wantErr(t, err, vault.ErrMalformed, value)
				continue
			}
			if err != nil {
				t.Fatalf("byte %d ^ %#x: ParseWrappedKey: %v", i, mask, err)
			}
			want := vault.ErrTampered
			if i <= 4 { // the KEK version
				want = vault.ErrUnknownKEKVersion
			}
			_, err = k.Open(ref1, s, parsed)
			wantErr(t, err, want, value)
			_, err = k.Rewrap(ref1, parsed)
			wantErr(t, err, want, value)
		}
	}
}

// TestFlippedKEKVersionBit flips each bit of the KEK version field with a
// keyring that knows versions 1 to 3: a flip to another known version
// reads as a key from another master key, since each version's KEK check
// differs.
func TestFlippedKEKVersionBit(t *testing.T) {
	k := mustKeyring(t, keyA, 3)
	s, w := mustSeal(t, k, ref1, "v")
	for bit := range 32 {
		b := w.Bytes()
		b[1+3-bit/8] ^= 1 << (bit % 8)
		parsed, err := vault.ParseWrappedKey(b)
		if err != nil {
			t.Fatal(err)
		}
		want := vault.ErrWrongKey
		if v := parsed.KEKVersion(); v == 0 || v > 3 {
			want = vault.ErrUnknownKEKVersion
		}
		_, err = k.Open(ref1, s, parsed)
		wantErr(t, err, want, "")
	}
}

func TestWrongMasterKey(t *testing.T) {
	const value = "hunter2-secret-value"
	a := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, a, ref1, value)
	for _, current := range []uint32{1, 2} {
		b := mustKeyring(t, keyB, current)
		_, err := b.Open(ref1, s, w)
		wantErr(t, err, vault.ErrWrongKey, value)
		_, err = b.Rewrap(ref1, w)
		wantErr(t, err, vault.ErrWrongKey, value)
	}
}

// TestMismatchedPair opens a sealed value with the data key of another Seal
// of the same secret: the key unwraps, the value does not open.
func TestMismatchedPair(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s1, _ := mustSeal(t, k, ref1, "first")
	_, w2 := mustSeal(t, k, ref1, "second")
	_, err := k.Open(ref1, s1, w2)
	wantErr(t, err, vault.ErrTampered, "first")
}

func TestRotate(t *testing.T) {
	const oldValue, newValue = "sealed under v1", "sealed under v2"
	k1 := mustKeyring(t, keyA, 1)
	sOld, wOld := mustSeal(t, k1, ref1, oldValue)

	k2, err := k1.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if k1.Current() != 1 || k2.Current() != 2 {
		t.Fatalf("Current() = %d and %d, want 1 and 2", k1.Current(), k2.Current())
	}
	ref2 := vault.Ref{Tenant: ref1.Tenant, Name: ref1.Name, Version: 2}
	sNew, wNew := mustSeal(t, k2, ref2, newValue)
	if wNew.KEKVersion() != 2 {
		t.Errorf("new key wrapped under KEK version %d, want 2", wNew.KEKVersion())
	}

	mustOpen(t, k2, ref1, sOld, wOld, oldValue)
	mustOpen(t, k2, ref2, sNew, wNew, newValue)
	_, err = k1.Open(ref2, sNew, wNew)
	wantErr(t, err, vault.ErrUnknownKEKVersion, newValue)

	// Rewrap moves the old key to version 2; the sealed value is untouched.
	rewrapped, err := k2.Rewrap(ref1, wOld)
	if err != nil {
		t.Fatal(err)
	}
	if rewrapped.KEKVersion() != 2 {
		t.Errorf("rewrapped under KEK version %d, want 2", rewrapped.KEKVersion())
	}
	mustOpen(t, k2, ref1, sOld, rewrapped, oldValue)
	mustOpen(t, k2, ref1, sOld, wOld, oldValue) // the old wrapping still opens until deleted

	// A keyring rebuilt at startup with the same master and version opens everything.
	rebuilt := mustKeyring(t, keyA, 2)
	mustOpen(t, rebuilt, ref1, sOld, wOld, oldValue)
	mustOpen(t, rebuilt, ref1, sOld, rewrapped, oldValue)
	mustOpen(t, rebuilt, ref2, sNew, wNew, newValue)
}

func TestRotateMaster(t *testing.T) {
	const value1, value3 = "under master A, v1", "under master B, v3"
	kA := mustKeyring(t, keyA, 2)
	s1, w1 := mustSeal(t, kA, ref1, value1)

	kB, err := kA.RotateMaster(mustMaster(t, keyB))
	if err != nil {
		t.Fatal(err)
	}
	if kB.Current() != 3 {
		t.Fatalf("Current() = %d, want 3", kB.Current())
	}
	ref3 := vault.Ref{Tenant: ref1.Tenant, Name: ref1.Name, Version: 3}
	s3, w3 := mustSeal(t, kB, ref3, value3)
	mustOpen(t, kB, ref1, s1, w1, value1) // older versions still derive from A
	mustOpen(t, kB, ref3, s3, w3, value3)

	// Without master A, the old wrapping reads as another master key's.
	onlyB := mustKeyring(t, keyB, 3)
	_, err = onlyB.Open(ref1, s1, w1)
	wantErr(t, err, vault.ErrWrongKey, value1)

	// After rewrapping, master B alone opens everything.
	rewrapped, err := kB.Rewrap(ref1, w1)
	if err != nil {
		t.Fatal(err)
	}
	mustOpen(t, onlyB, ref1, s1, rewrapped, value1)
	mustOpen(t, onlyB, ref3, s3, w3, value3)

	// Further same-master rotation after a master rotation keeps B.
	kB4, err := kB.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	s4, w4 := mustSeal(t, kB4, ref3, value3)
	mustOpen(t, mustKeyring(t, keyB, 4), ref3, s4, w4, value3)
	mustOpen(t, kB4, ref1, s1, w1, value1)
}

func TestTenantsAreIndependent(t *testing.T) {
	const value = "the same value in both tenants"
	k := mustKeyring(t, keyA, 1)
	r1 := vault.Ref{Tenant: "ten_1", Name: "DB_PASSWORD", Version: 1}
	r2 := vault.Ref{Tenant: "ten_2", Name: "DB_PASSWORD", Version: 1}
	s1, w1 := mustSeal(t, k, r1, value)
	s2, w2 := mustSeal(t, k, r2, value)
	if bytes.Equal(s1.Bytes()[5:], s2.Bytes()[5:]) || bytes.Equal(w1.Bytes()[13:], w2.Bytes()[13:]) {
		t.Fatal("two tenants share ciphertext")
	}
	mustOpen(t, k, r1, s1, w1, value)
	mustOpen(t, k, r2, s2, w2, value)
	for _, c := range []struct {
		name string
		ref  vault.Ref
		s    vault.Sealed
		w    vault.WrappedKey
	}{
		{"tenant 2 opens tenant 1's pair", r2, s1, w1},
		{"tenant 2's key opens tenant 1's value", r2, s1, w2},
		{"tenant 1's key opens tenant 2's value", r2, s2, w1},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := k.Open(c.ref, c.s, c.w)
			wantErr(t, err, vault.ErrWrongRef, value)
		})
	}
}

// TestShreddedValueStaysClosed: once its wrapped key is deleted, a sealed
// value opens with no other data key, even one wrapped for the same secret.
func TestShreddedValueStaysClosed(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s, _ := mustSeal(t, k, ref1, "shredded") // the wrapped key is dropped
	for range 3 {
		_, w := mustSeal(t, k, ref1, "replacement")
		_, err := k.Open(ref1, s, w)
		wantErr(t, err, vault.ErrTampered, "shredded")
	}
}

func TestInvalidInput(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, k, ref1, "v")
	tests := []struct {
		name  string
		ref   vault.Ref
		value []byte
		want  error
	}{
		{"empty tenant", vault.Ref{Name: "n", Version: 1}, nil, vault.ErrInvalidRef},
		{"tenant too long", vault.Ref{Tenant: strings.Repeat("t", 256), Name: "n", Version: 1}, nil, vault.ErrInvalidRef},
		{"empty name", vault.Ref{Tenant: "t", Version: 1}, nil, vault.ErrInvalidRef},
		{"name with space", vault.Ref{Tenant: "t", Name: "a b", Version: 1}, nil, vault.ErrInvalidRef},
		{"name too long", vault.Ref{Tenant: "t", Name: strings.Repeat("n", 129), Version: 1}, nil, vault.ErrInvalidRef},
		{"version zero", vault.Ref{Tenant: "t", Name: "n"}, nil, vault.ErrInvalidRef},
		{"value too large", ref1, make([]byte, vault.MaxValueSize+1), vault.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := k.Seal(tt.ref, tt.value)
			wantErr(t, err, tt.want, "")
			if tt.want == vault.ErrInvalidRef {
				_, err = k.Open(tt.ref, s, w)
				wantErr(t, err, tt.want, "")
				_, err = k.Rewrap(tt.ref, w)
				wantErr(t, err, tt.want, "")
			}
		})
	}
}

func TestZeroValues(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, k, ref1, "v")
	if _, err := k.Open(ref1, vault.Sealed{}, w); !errors.Is(err, vault.ErrMalformed) {
		t.Errorf("Open with the zero Sealed: %v, want ErrMalformed", err)
	}
	if _, err := k.Open(ref1, s, vault.WrappedKey{}); !errors.Is(err, vault.ErrMalformed) {
		t.Errorf("Open with the zero WrappedKey: %v, want ErrMalformed", err)
	}
	if _, err := k.Rewrap(ref1, vault.WrappedKey{}); !errors.Is(err, vault.ErrMalformed) {
		t.Errorf("Rewrap of the zero WrappedKey: %v, want ErrMalformed", err)
	}
	if (vault.Sealed{}).Bytes() != nil || (vault.WrappedKey{}).Bytes() != nil || (vault.WrappedKey{}).KEKVersion() != 0 {
		t.Error("zero values report stored bytes or a KEK version")
	}
	if _, err := vault.NewKeyring(vault.MasterKey{}, 1); !errors.Is(err, vault.ErrInvalidMasterKey) {
		t.Errorf("NewKeyring(zero MasterKey): %v, want ErrInvalidMasterKey", err)
	}
	if _, err := vault.NewKeyring(mustMaster(t, keyA), 0); err == nil {
		t.Error("NewKeyring(m, 0) succeeded")
	}
	if _, err := k.RotateMaster(vault.MasterKey{}); !errors.Is(err, vault.ErrInvalidMasterKey) {
		t.Errorf("RotateMaster(zero MasterKey): %v, want ErrInvalidMasterKey", err)
	}
	last := mustKeyring(t, keyA, math.MaxUint32)
	if _, err := last.Rotate(); err == nil {
		t.Error("Rotate past the last KEK version succeeded")
	}
	if _, err := last.RotateMaster(mustMaster(t, keyB)); err == nil {
		t.Error("RotateMaster past the last KEK version succeeded")
	}
}

// TestStoredBytesAreCopies: callers (and database drivers) may reuse
// buffers; neither ParseSealed nor Bytes may alias them.
func TestStoredBytesAreCopies(t *testing.T) {
	k := mustKeyring(t, keyA, 1)
	s, w := mustSeal(t, k, ref1, "v")
	sb, wb := s.Bytes(), w.Bytes()
	s2, _ := vault.ParseSealed(sb)
	w2, _ := vault.ParseWrappedKey(wb)
	clear(sb)
	clear(wb)
	s.Bytes()[7] ^= 1
	w.Bytes()[30] ^= 1
	mustOpen(t, k, ref1, s2, w2, "v")
	mustOpen(t, k, ref1, s, w, "v")
}

// A known answer: sealed once by mustKeyring(t, keyA, 2), and opened by an
// independent implementation of the documented format (Python, the
// cryptography package's AESGCM and an HMAC-based HKDF).
var (
	knownRef     = vault.Ref{Tenant: "ten_known", Name: "KNOWN_ANSWER", Version: 7}
	knownValue   = "known answer value"
	knownSealed  = mustHex("011f2d872cd076f236d6e6bce39c61cb3981ec240aca4f147886cec5e7b3c75779caaca03bf21ba038ed9916fa61d905f9e70b")
	knownWrapped = mustHex("01000000021abc7b601f2d872c48ba4cf62caebd96c188b20c50972e07ce91bbde5f1497f395b77a5e729bf278b9a25d482d86240650c5ed9c8305c0001b0be81d4534da7de1e9e809")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestKnownAnswer pins the stored formats and the key derivation: bytes
// written by this version must open in every later one.
func TestKnownAnswer(t *testing.T) {
	ref, value := knownRef, knownValue
	s, err := vault.ParseSealed(knownSealed)
	if err != nil {
		t.Fatal(err)
	}
	w, err := vault.ParseWrappedKey(knownWrapped)
	if err != nil {
		t.Fatal(err)
	}
	if w.KEKVersion() != 2 {
		t.Errorf("KEKVersion() = %d, want 2", w.KEKVersion())
	}
	mustOpen(t, mustKeyring(t, keyA, 2), ref, s, w, value)
	mustOpen(t, mustKeyring(t, keyA, 5), ref, s, w, value)
}

func TestConcurrentUse(t *testing.T) {
	k := mustKeyring(t, keyA, 2)
	old := mustKeyring(t, keyA, 1)
	sOld, wOld := mustSeal(t, old, ref1, "old")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ref := vault.Ref{Tenant: "ten_1", Name: "N", Version: uint64(g + 1)}
			for i := range 50 {
				value := fmt.Sprintf("value %d/%d", g, i)
				s, w, err := k.Seal(ref, []byte(value))
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := k.Open(ref, s, w); err != nil || string(got) != value {
					t.Errorf("Open = %q, %v; want %q", got, err, value)
					return
				}
				if got, err := k.Open(ref1, sOld, wOld); err != nil || string(got) != "old" {
					t.Errorf("Open old = %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestKeyMaterialNeverPrints formats master keys and keyrings every way
// fmt can, alone and inside structs, and looks for the key bytes.
func TestKeyMaterialNeverPrints(t *testing.T) {
	m := mustMaster(t, keyA)
	k := mustKeyring(t, keyA, 1)
	holder := struct {
		m  vault.MasterKey
		k  *vault.Keyring
		kv vault.Keyring
		M  vault.MasterKey
		K  *vault.Keyring
	}{m, k, *k, m, k}
	kek, err := hkdf.Key(sha256.New, keyABytes, nil, "haldir/vault/kek/v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	var forbidden []string
	for _, b := range [][]byte{keyABytes, kek, kek[:16], kek[16:]} {
		forbidden = append(forbidden,
			base64.RawURLEncoding.EncodeToString(b), base64.StdEncoding.EncodeToString(b),
			hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
			strings.Trim(fmt.Sprint(b), "[]"), fmt.Sprintf("%q", b))
	}
	for _, v := range []any{m, &m, k, *k, holder, &holder} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
			out := fmt.Sprintf(verb, v)
			for _, f := range forbidden {
				if strings.Contains(out, f) {
					t.Errorf("fmt.Sprintf(%q, %T) = %q reveals the key", verb, v, out)
				}
			}
		}
	}
	if got := m.String(); got != "vault.MasterKey(redacted)" {
		t.Errorf("String() = %q", got)
	}
	if got := fmt.Sprint(k); got != "vault.Keyring(current KEK version 1)" {
		t.Errorf("fmt.Sprint(keyring) = %q", got)
	}
}
