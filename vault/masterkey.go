package vault

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// MasterKeySize is the length in bytes of a master key.
const MasterKeySize = 32

// fingerprintPrefix starts every Fingerprint; the digit is the derivation
// version, so a future change of derivation is detectable.
const fingerprintPrefix = "kcv1_"

// MasterKey is the 32-byte root secret (HALDIR_ENCRYPTION_KEY) from which
// KEKs derive. The zero MasterKey is invalid. It never prints: every fmt
// verb renders it as "vault.MasterKey(redacted)", and the bytes are hidden
// so that even a struct holding it in an unexported field prints no key.
type MasterKey struct {
	key hidden[*[MasterKeySize]byte]
}

// hidden holds a value in a closure, where neither fmt (whatever the verb,
// however deeply nested) nor any reflection-based printer can reach it.
// Key material in this package is only ever stored this way.
type hidden[T any] func() T

func hide[T any](v T) hidden[T] { return func() T { return v } }

// GenerateMasterKey returns a new random master key, base64url encoded
// without padding (43 characters), suitable for HALDIR_ENCRYPTION_KEY.
func GenerateMasterKey() string {
	var b [MasterKeySize]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// masterKeyEncodings are the accepted spellings of a master key. The
// strings they accept for 32 bytes differ in alphabet and padding only, so
// trying them in turn cannot decode one string to two different keys.
var masterKeyEncodings = [...]*base64.Encoding{
	base64.RawURLEncoding.Strict(),
	base64.URLEncoding.Strict(),
	base64.RawStdEncoding.Strict(),
	base64.StdEncoding.Strict(),
}

// ParseMasterKey decodes s, 32 bytes in base64url or standard base64,
// padded or not, surrounding white space ignored; it rejects anything
// else, including the all-zero key, with an error wrapping
// ErrInvalidMasterKey that never repeats s.
func ParseMasterKey(s string) (MasterKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return MasterKey{}, fmt.Errorf("%w: empty; generate one with GenerateMasterKey (32 random bytes, base64url)", ErrInvalidMasterKey)
	}
	for _, enc := range masterKeyEncodings {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != MasterKeySize {
			return MasterKey{}, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrInvalidMasterKey, len(b), MasterKeySize)
		}
		k := new([MasterKeySize]byte)
		copy(k[:], b)
		clear(b)
		if subtle.ConstantTimeCompare(k[:], make([]byte, MasterKeySize)) == 1 {
			return MasterKey{}, fmt.Errorf("%w: all bytes are zero", ErrInvalidMasterKey)
		}
		return MasterKey{key: hide(k)}, nil
	}
	return MasterKey{}, fmt.Errorf("%w: not base64url or base64 of %d bytes", ErrInvalidMasterKey, MasterKeySize)
}

// valid reports whether m came from ParseMasterKey.
func (m MasterKey) valid() bool { return m.key != nil }

// derive returns n bytes of HKDF-SHA256 output of m for info.
func (m MasterKey) derive(info string, n int) []byte {
	out, err := hkdf.Key(sha256.New, m.key()[:], nil, info, n)
	if err != nil {
		panic("vault: hkdf: " + err.Error()) // only for n > 255*32, a programmer error
	}
	return out
}

// Fingerprint returns a key-check value for m, "kcv1_" and 32 hex digits
// derived with HKDF-SHA256(info="haldir/vault/check"): store it next to
// the encrypted data and compare with CheckFingerprint at startup to catch
// a wrong master key before decrypting anything. It reveals nothing about
// m and is safe to log. It panics on the zero MasterKey.
func (m MasterKey) Fingerprint() string {
	if !m.valid() {
		panic("vault: Fingerprint of the zero MasterKey")
	}
	return fingerprintPrefix + hex.EncodeToString(m.derive("haldir/vault/check", 16))
}

// CheckFingerprint returns nil if fp is m's Fingerprint, an error wrapping
// ErrWrongKey if it is another key's, and one wrapping ErrMalformed if fp
// is not a fingerprint at all. The comparison takes constant time. It
// panics on the zero MasterKey.
func (m MasterKey) CheckFingerprint(fp string) error {
	hexPart, ok := strings.CutPrefix(fp, fingerprintPrefix)
	if !ok || len(hexPart) != 32 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return fmt.Errorf("%w: a key fingerprint is %q followed by 32 lowercase hex digits", ErrMalformed, fingerprintPrefix)
	}
	if subtle.ConstantTimeCompare([]byte(fp), []byte(m.Fingerprint())) != 1 {
		return fmt.Errorf("%w: its fingerprint differs from the one stored with the existing data", ErrWrongKey)
	}
	return nil
}

// String returns "vault.MasterKey(redacted)", never the key.
func (m MasterKey) String() string { return "vault.MasterKey(redacted)" }

// Format renders m as "vault.MasterKey(redacted)" for every verb, so no
// fmt or log call can print the key.
func (m MasterKey) Format(f fmt.State, verb rune) {
	io.WriteString(f, m.String())
}
