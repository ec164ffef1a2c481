package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// Keyring seals and opens secret values. It holds one or more master keys,
// each the source of a consecutive range of KEK versions, and the current
// KEK version, under which it wraps every new or rewrapped data key; it
// can derive every version from 1 to the current one. A Keyring is
// immutable and safe for concurrent use; rotation returns a new Keyring.
// The zero Keyring is unusable: build one with NewKeyring.
//
// The current version is not stored here: the caller persists it (and the
// master key Fingerprint) and rebuilds the Keyring at startup, for example
// NewKeyring(a, 3) then RotateMaster(b) for "versions 1-3 from master key
// a, version 4 from master key b".
type Keyring struct {
	epochs  []epoch // ascending by first; epochs[0].first == 1; never mutated
	current uint32
	cur     hidden[*kek] // the current version's KEK, derived once
}

// epoch names the master key that KEK versions first and up (until the
// next epoch) derive from.
type epoch struct {
	first  uint32
	master MasterKey
}

// kek is one derived key-encryption key.
type kek struct {
	version uint32
	aead    cipher.AEAD
	check   [checkSize]byte
}

// NewKeyring returns a Keyring whose KEK versions 1 through current all
// derive from master, wrapping under version current. It fails on the
// zero MasterKey and on current 0.
func NewKeyring(master MasterKey, current uint32) (*Keyring, error) {
	if !master.valid() {
		return nil, fmt.Errorf("%w: the zero MasterKey; use ParseMasterKey", ErrInvalidMasterKey)
	}
	if current == 0 {
		return nil, errors.New("vault: the current KEK version must be at least 1")
	}
	return newKeyring([]epoch{{first: 1, master: master}}, current), nil
}

// newKeyring derives the current KEK of a Keyring over epochs.
func newKeyring(epochs []epoch, current uint32) *Keyring {
	k := &Keyring{epochs: epochs, current: current}
	k.cur = hide(deriveKEK(k.masterFor(current), current))
	return k
}

// Rotate returns a Keyring whose current KEK version is one higher and
// derives from the same master key as k's current one; k is unchanged.
// Data keys wrapped under older versions keep opening; Rewrap moves them
// to the new version.
func (k *Keyring) Rotate() (*Keyring, error) {
	if k.current == math.MaxUint32 {
		return nil, errors.New("vault: KEK versions exhausted")
	}
	return newKeyring(k.epochs, k.current+1), nil
}

// RotateMaster returns a Keyring whose current KEK version is one higher
// and derives from master, keeping k's master keys for the older
// versions; k is unchanged. Once every WrappedKey has been rewrapped, a
// Keyring built from master alone (NewKeyring(master, version)) opens
// them all, and the old master key can be destroyed.
func (k *Keyring) RotateMaster(master MasterKey) (*Keyring, error) {
	if !master.valid() {
		return nil, fmt.Errorf("%w: the zero MasterKey; use ParseMasterKey", ErrInvalidMasterKey)
	}
	if k.current == math.MaxUint32 {
		return nil, errors.New("vault: KEK versions exhausted")
	}
	return newKeyring(append(slices.Clip(k.epochs), epoch{first: k.current + 1, master: master}), k.current+1), nil
}

// Current returns the KEK version under which k wraps data keys.
func (k *Keyring) Current() uint32 { return k.current }

// masterFor returns the master key KEK version v derives from; 1 <= v <= current.
func (k *Keyring) masterFor(v uint32) MasterKey {
	for i := len(k.epochs) - 1; i > 0; i-- {
		if v >= k.epochs[i].first {
			return k.epochs[i].master
		}
	}
	return k.epochs[0].master
}

// kek returns KEK version v, deriving it unless it is the current one.
func (k *Keyring) kek(v uint32) (*kek, error) {
	switch {
	case v == 0 || v > k.current:
		return nil, fmt.Errorf("%w: %d (this keyring's current version is %d)", ErrUnknownKEKVersion, v, k.current)
	case v == k.current:
		return k.cur(), nil
	}
	return deriveKEK(k.masterFor(v), v), nil
}

// deriveKEK derives KEK version v and its check value from m.
func deriveKEK(m MasterKey, v uint32) *kek {
	n := strconv.FormatUint(uint64(v), 10)
	key := m.derive("haldir/vault/kek/v"+n, 32)
	c := &kek{version: v, aead: newAEAD(key)}
	copy(c.check[:], m.derive("haldir/vault/kek-check/v"+n, checkSize))
	return c
}

// newAEAD returns AES-256-GCM with random 96-bit nonces prepended to the
// ciphertext. Random nonces are safe for 2^32 messages per key: a data key
// seals one value, and a KEK version wraps one data key per Seal or
// Rewrap, so rotate well before a version has wrapped 2^32 keys.
func newAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("vault: " + err.Error()) // keys are always 32 bytes
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic("vault: " + err.Error()) // block is always crypto/aes
	}
	return aead
}

// Seal encrypts value for ref under a fresh random data key and returns
// the sealed value (for the ledger) and the data key wrapped under the
// current KEK version (for the key table). It fails on an invalid ref
// (ErrInvalidRef) and on a value longer than MaxValueSize (ErrTooLarge).
func (k *Keyring) Seal(ref Ref, value []byte) (Sealed, WrappedKey, error) {
	if err := ref.validate(); err != nil {
		return Sealed{}, WrappedKey{}, err
	}
	if len(value) > MaxValueSize {
		return Sealed{}, WrappedKey{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(value), MaxValueSize)
	}
	var dek [dekSize]byte
	rand.Read(dek[:]) // never fails: crypto/rand crashes the program instead
	hint := ref.hint()

	s := make([]byte, 0, sealedMin+len(value))
	s = append(s, formatV1)
	s = append(s, hint[:]...)
	s = newAEAD(dek[:]).Seal(s, nil, value, ref.valueAAD())
	return Sealed{b: s}, k.wrap(ref, hint, dek[:]), nil
}

// Open returns the value sealed for ref, unwrapping its data key from w.
// Its errors wrap ErrWrongKey (w was wrapped under another master key),
// ErrWrongRef (s or w was sealed for another tenant, name or version),
// ErrUnknownKEKVersion, ErrTampered (modified bytes, or s and w from
// different Seal calls), ErrMalformed (a zero Sealed or WrappedKey) or
// ErrInvalidRef.
func (k *Keyring) Open(ref Ref, s Sealed, w WrappedKey) ([]byte, error) {
	if err := ref.validate(); err != nil {
		return nil, err
	}
	if len(s.b) < sealedMin {
		return nil, fmt.Errorf("%w: the zero Sealed; use ParseSealed", ErrMalformed)
	}
	hint := ref.hint()
	dek, err := k.unwrap(ref, hint, w)
	if err != nil {
		return nil, err
	}
	hintOK := bytes.Equal(s.b[1:sealedHeader], hint[:])
	value, err := newAEAD(dek).Open(nil, nil, s.b[sealedHeader:], ref.valueAAD())
	switch {
	case err == nil && hintOK:
		return value, nil
	case err == nil:
		return nil, fmt.Errorf("%w: the sealed value's header was changed", ErrTampered)
	case !hintOK:
		return nil, fmt.Errorf("%w: the sealed value was sealed for another secret", ErrWrongRef)
	default:
		return nil, fmt.Errorf("%w: the sealed value failed authentication", ErrTampered)
	}
}

// Rewrap returns the data key in w wrapped under k's current KEK version,
// leaving the data key, and so the Sealed value, unchanged. It fails as
// Open does when w does not open for ref. Rewrapping a key already under
// the current version is allowed and only changes its nonce.
func (k *Keyring) Rewrap(ref Ref, w WrappedKey) (WrappedKey, error) {
	if err := ref.validate(); err != nil {
		return WrappedKey{}, err
	}
	hint := ref.hint()
	dek, err := k.unwrap(ref, hint, w)
	if err != nil {
		return WrappedKey{}, err
	}
	return k.wrap(ref, hint, dek), nil
}

// wrap encrypts dek for ref under the current KEK.
func (k *Keyring) wrap(ref Ref, hint [hintSize]byte, dek []byte) WrappedKey {
	c := k.cur()
	b := make([]byte, 0, wrappedSize)
	b = append(b, formatV1)
	b = binary.BigEndian.AppendUint32(b, c.version)
	b = append(b, c.check[:]...)
	b = append(b, hint[:]...)
	b = c.aead.Seal(b, nil, dek, ref.dekAAD(c.version))
	return WrappedKey{b: b}
}

// unwrap decrypts the data key in w for ref, whose hint is given. When authentication fails it
// uses the KEK check and ref hint to say why: a check mismatch means
// another master key, a hint mismatch another secret, neither a change.
func (k *Keyring) unwrap(ref Ref, hint [hintSize]byte, w WrappedKey) ([]byte, error) {
	if len(w.b) != wrappedSize {
		return nil, fmt.Errorf("%w: the zero WrappedKey; use ParseWrappedKey", ErrMalformed)
	}
	c, err := k.kek(w.KEKVersion())
	if err != nil {
		return nil, err
	}
	checkOK := subtle.ConstantTimeCompare(w.check(), c.check[:]) == 1
	hintOK := bytes.Equal(w.hint(), hint[:])
	dek, err := c.aead.Open(nil, nil, w.body(), ref.dekAAD(c.version))
	switch {
	case err == nil && checkOK && hintOK:
		return dek, nil
	case err == nil:
		return nil, fmt.Errorf("%w: the wrapped data key's header was changed", ErrTampered)
	case !checkOK:
		return nil, fmt.Errorf("%w: the data key was wrapped under another master key's KEK version %d", ErrWrongKey, c.version)
	case !hintOK:
		return nil, fmt.Errorf("%w: the data key was wrapped for another secret", ErrWrongRef)
	default:
		return nil, fmt.Errorf("%w: the wrapped data key failed authentication", ErrTampered)
	}
}

// String describes k without key material.
func (k Keyring) String() string {
	return "vault.Keyring(current KEK version " + strconv.FormatUint(uint64(k.current), 10) + ")"
}

// Format renders k as String does for every verb, so no fmt or log call
// can print key material. Its receiver is a value so that it also covers
// a Keyring printed by value.
func (k Keyring) Format(f fmt.State, verb rune) {
	io.WriteString(f, k.String())
}

// DataKey is a secret version's data key as stored outside the ledger,
// wrapped by a key-encryption key.
type DataKey struct {
	KeyID   string
	Tenant  string
	Name    string
	Version uint64
	Wrapped WrappedKey
}
