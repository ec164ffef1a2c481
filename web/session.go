package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/haldir-dev/haldir/vault"
)

// Session is one dashboard sign-in as the server keeps it. The browser
// holds only the random token whose SHA-256 is TokenHash; the API key the
// session acts with is sealed with the vault keyring, bound to TokenHash.
type Session struct {
	TokenHash string
	Tenant    string
	KeyPrefix string
	KeyName   string
	// Sealed and Wrapped are the sealed key and its wrapped data key
	// (vault.Keyring.Seal).
	Sealed, Wrapped []byte
	CreatedAt       time.Time
	ExpiresAt       time.Time
}

// SessionStore keeps sessions where every replica sees them (package
// web/sqlsessions keeps them in the database).
type SessionStore interface {
	// Create stores a new session.
	Create(ctx context.Context, s Session) error
	// Get returns the live session with tokenHash: found is false when it
	// is unknown, revoked or expired at now.
	Get(ctx context.Context, tokenHash string, now time.Time) (s Session, found bool, err error)
	// Revoke ends one session.
	Revoke(ctx context.Context, tokenHash string, now time.Time) error
	// RevokeKey ends every session of tenant's key prefix.
	RevokeKey(ctx context.Context, tenant, prefix string, now time.Time) error
	// Sweep deletes the sessions that expired before cutoff.
	Sweep(ctx context.Context, cutoff time.Time) (int64, error)
}

// newToken returns a fresh cookie token: 32 random bytes, base64url.
func newToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashToken is what the store keys a session by.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte("haldir/dashboard/session\x00" + token))
	return hex.EncodeToString(sum[:])
}

// csrfToken is the session's anti-forgery token: an HMAC of a fixed label
// under the cookie token, so only a holder of the cookie's value (never a
// cross-site page, which cannot read it) can produce it, and the server
// needs to store nothing more.
func csrfToken(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("haldir/dashboard/csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// keyRef binds a sealed key to its session row: a sealed key moved to
// another row does not open.
func keyRef(tenant, tokenHash string) vault.Ref {
	return vault.Ref{Tenant: tenant, Name: "dashboard." + tokenHash[:48], Version: 1}
}
