package domain

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns prefix + "_" + 24 characters of crypto/rand entropy
// (120 bits), for example "ses_k3j…". IDs are opaque; only the prefix has
// meaning.
func NewID(prefix string) string {
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("domain: crypto/rand failed: " + err.Error()) // unrecoverable: the OS has no entropy
	}
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// ValidID reports whether s looks like an ID made by NewID with prefix.
func ValidID(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 24 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// NewIDFromBytes returns prefix + "_" + the ID encoding of 15 bytes, for
// ids that must be derived deterministically (idempotent retries).
func NewIDFromBytes(prefix string, b []byte) string {
	var buf [15]byte
	copy(buf[:], b)
	return prefix + "_" + idEncoding.EncodeToString(buf[:])
}
