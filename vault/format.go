package vault

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// MaxValueSize is the largest secret value Seal accepts, in bytes.
const MaxValueSize = 64 << 10

// maxTenantLen bounds Ref.Tenant; tenants are opaque IDs to this package.
const maxTenantLen = 255

// formatV1 is the first byte of every Sealed and WrappedKey written today.
const formatV1 = 1

// Layout of the stored formats; see the package documentation.
const (
	hintSize  = 4
	checkSize = 4
	nonceSize = 12 // AES-GCM standard nonce
	tagSize   = 16 // AES-GCM tag
	dekSize   = 32 // AES-256

	sealedHeader = 1 + hintSize // format, ref hint; nonce||ciphertext||tag follow
	sealedMin    = sealedHeader + nonceSize + tagSize
	sealedMax    = sealedMin + MaxValueSize

	wrappedHeader = 1 + 4 + checkSize + hintSize // format, KEK version, KEK check, ref hint
	wrappedSize   = wrappedHeader + nonceSize + dekSize + tagSize
)

// AAD labels; a new format gets new labels.
const (
	labelValue = "haldir/vault/v1/value"
	labelDEK   = "haldir/vault/v1/dek"
	labelHint  = "haldir/vault/v1/ref"
)

// Ref identifies the secret version a ciphertext belongs to. Both
// ciphertexts of a secret version are bound to all three fields.
type Ref struct {
	Tenant  string // opaque tenant ID, 1 to 255 bytes
	Name    string // secret name, see ValidName
	Version uint64 // secret version, from 1
}

// validate returns an error wrapping ErrInvalidRef if r cannot be sealed.
func (r Ref) validate() error {
	switch {
	case r.Tenant == "" || len(r.Tenant) > maxTenantLen:
		return fmt.Errorf("%w: tenant must be 1 to %d bytes", ErrInvalidRef, maxTenantLen)
	case !ValidName(r.Name):
		return fmt.Errorf("%w: secret name must be 1 to %d characters of A-Z a-z 0-9 _ . -", ErrInvalidRef, maxNameLen)
	case r.Version == 0:
		return fmt.Errorf("%w: secret version must be at least 1", ErrInvalidRef)
	}
	return nil
}

// appendBinding appends label || u32be len(tenant) || tenant ||
// u32be len(name) || name || u64be version to b.
func (r Ref) appendBinding(b []byte, label string) []byte {
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Tenant)))
	b = append(b, r.Tenant...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Name)))
	b = append(b, r.Name...)
	return binary.BigEndian.AppendUint64(b, r.Version)
}

// valueAAD is the additional authenticated data of a sealed value.
func (r Ref) valueAAD() []byte {
	return r.appendBinding(make([]byte, 0, len(labelValue)+16+len(r.Tenant)+len(r.Name)), labelValue)
}

// dekAAD is the additional authenticated data of a DEK wrapped under KEK
// version kekVersion.
func (r Ref) dekAAD(kekVersion uint32) []byte {
	b := r.appendBinding(make([]byte, 0, len(labelDEK)+20+len(r.Tenant)+len(r.Name)), labelDEK)
	return binary.BigEndian.AppendUint32(b, kekVersion)
}

// hint is the diagnostic ref digest stored in both formats. It lets a
// failed open say "moved" rather than "modified"; it protects nothing.
func (r Ref) hint() [hintSize]byte {
	sum := sha256.Sum256(r.appendBinding(make([]byte, 0, len(labelHint)+16+len(r.Tenant)+len(r.Name)), labelHint))
	return [hintSize]byte(sum[:hintSize])
}

// Sealed is a secret value encrypted under its own data key, in the format
// described in the package documentation. It is not secret and belongs in
// the ledger. The zero Sealed is invalid and fails to open.
type Sealed struct {
	b []byte
}

// ParseSealed checks the framing of stored bytes and returns them as a
// Sealed, keeping a copy of b; it returns an error wrapping ErrMalformed
// for anything Seal cannot have written. It does not authenticate: only
// Keyring.Open does.
func ParseSealed(b []byte) (Sealed, error) {
	switch {
	case len(b) == 0:
		return Sealed{}, fmt.Errorf("%w: sealed value is empty", ErrMalformed)
	case b[0] != formatV1:
		return Sealed{}, fmt.Errorf("%w: sealed value has unknown format %d", ErrMalformed, b[0])
	case len(b) < sealedMin || len(b) > sealedMax:
		return Sealed{}, fmt.Errorf("%w: sealed value is %d bytes, want %d to %d", ErrMalformed, len(b), sealedMin, sealedMax)
	}
	return Sealed{b: append([]byte(nil), b...)}, nil
}

// Bytes returns the stored form of s, a fresh copy that ParseSealed
// accepts; nil for the zero Sealed.
func (s Sealed) Bytes() []byte {
	if s.b == nil {
		return nil
	}
	return append([]byte(nil), s.b...)
}

// WrappedKey is a data key encrypted under a KEK version, in the format
// described in the package documentation. It is not secret, but it must
// live outside the ledger: deleting it crypto-shreds its Sealed value. The
// zero WrappedKey is invalid and fails to open.
type WrappedKey struct {
	b []byte
}

// ParseWrappedKey checks the framing of stored bytes and returns them as a
// WrappedKey, keeping a copy of b; it returns an error wrapping
// ErrMalformed for anything Seal or Rewrap cannot have written. It does
// not authenticate: only Keyring.Open and Keyring.Rewrap do.
func ParseWrappedKey(b []byte) (WrappedKey, error) {
	switch {
	case len(b) == 0:
		return WrappedKey{}, fmt.Errorf("%w: wrapped key is empty", ErrMalformed)
	case b[0] != formatV1:
		return WrappedKey{}, fmt.Errorf("%w: wrapped key has unknown format %d", ErrMalformed, b[0])
	case len(b) != wrappedSize:
		return WrappedKey{}, fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrMalformed, len(b), wrappedSize)
	}
	return WrappedKey{b: append([]byte(nil), b...)}, nil
}

// Bytes returns the stored form of w, a fresh copy that ParseWrappedKey
// accepts; nil for the zero WrappedKey.
func (w WrappedKey) Bytes() []byte {
	if w.b == nil {
		return nil
	}
	return append([]byte(nil), w.b...)
}

// KEKVersion returns the KEK version w is wrapped under, 0 for the zero
// WrappedKey. Store it in its own column to find keys left to rewrap after
// a rotation.
func (w WrappedKey) KEKVersion() uint32 {
	if len(w.b) != wrappedSize {
		return 0
	}
	return binary.BigEndian.Uint32(w.b[1:5])
}

// wrapped field accessors; valid only on a non-zero WrappedKey.
func (w WrappedKey) check() []byte { return w.b[5:9] }
func (w WrappedKey) hint() []byte  { return w.b[9:13] }
func (w WrappedKey) body() []byte  { return w.b[wrappedHeader:] }
