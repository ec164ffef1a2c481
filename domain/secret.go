package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Secret event types.
const (
	TypeSecretStored       = "secret.stored"
	TypeSecretDeleted      = "secret.deleted"
	TypeSecretAccessed     = "secret.accessed"
	TypeSecretAccessDenied = "secret.access_denied"
)

// DefaultSecretScope is the session scope a secret requires when none is
// given.
const DefaultSecretScope = "read"

// SecretStream returns the stream of a secret's values: stored and
// deleted events only, so that reads never conflict with writes.
func SecretStream(name string) string { return "secret/" + name }

// SecretAccessStream returns the stream recording reads of a secret.
func SecretAccessStream(name string) string { return "secret-access/" + name }

// SecretStored records a new version of a secret. Sealed is the value's
// ciphertext; the data key that opens it is held outside the ledger under
// KeyID, so deleting that key makes Sealed unrecoverable.
type SecretStored struct {
	Name          string `json:"name"`
	Version       uint64 `json:"version"`
	ScopeRequired string `json:"scope_required"`
	KeyID         string `json:"key_id"`
	Sealed        []byte `json:"sealed"`
}

// SecretDeleted records that a secret's data keys were destroyed.
type SecretDeleted struct {
	Name    string `json:"name"`
	Version uint64 `json:"last_version"`
}

// SecretAccessed records a successful read. It never carries the value.
type SecretAccessed struct {
	Name      string `json:"name"`
	Version   uint64 `json:"version"`
	SessionID string `json:"session_id"`
	AgentID   string `json:"agent_id"`
	// Via is "api" for GET /v1/secrets/{name}, "proxy" for injection
	// into an upstream tool call.
	Via string `json:"via"`
}

// SecretAccessDenied records a refused read and why.
type SecretAccessDenied struct {
	Name      string `json:"name"`
	SessionID string `json:"session_id,omitempty"`
	AgentID   string `json:"agent_id,omitempty"`
	Via       string `json:"via"`
	Code      Code   `json:"code"`
	Reason    string `json:"reason"`
}

// Secret is the aggregate of one secret's stream.
type Secret struct {
	Name          string
	Version       uint64 // latest value version, counting across deletions
	ScopeRequired string
	KeyID         string
	Sealed        []byte
	Deleted       bool
	// StreamVersion is the stream version the state reflects.
	StreamVersion int64
}

// Exists reports whether the secret has a readable current version.
func (s *Secret) Exists() bool { return s.StreamVersion > 0 && !s.Deleted }

// Apply folds one event of the secret's stream into s.
func (s *Secret) Apply(typ string, payload []byte, version int64) error {
	switch typ {
	case TypeSecretStored:
		var e SecretStored
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("domain: %s: %w", typ, err)
		}
		s.Name, s.Version, s.ScopeRequired, s.KeyID, s.Sealed, s.Deleted = e.Name, e.Version, e.ScopeRequired, e.KeyID, e.Sealed, false
	case TypeSecretDeleted:
		s.Deleted, s.KeyID, s.Sealed = true, "", nil
	}
	s.StreamVersion = version
	return nil
}

// DecideAccess decides whether session ses may read the secret; exists
// and sesFound say whether the secret and the session were found. Exactly
// one of the results is non-nil: the event to record either way.
func DecideAccess(sec Secret, exists bool, ses Session, sesFound bool, via string, now time.Time) (*SecretAccessed, *SecretAccessDenied) {
	deny := func(code Code, reason string) (*SecretAccessed, *SecretAccessDenied) {
		d := &SecretAccessDenied{Name: sec.Name, Via: via, Code: code, Reason: reason}
		if sesFound {
			d.SessionID, d.AgentID = ses.ID, ses.AgentID
		}
		return nil, d
	}
	switch {
	case !exists:
		return deny(CodeNotFound, "no such secret")
	case !sesFound:
		return deny(CodeSessionInvalid, "reading a secret needs a valid session (X-Session-ID header or session_id query)")
	case !ses.Valid(now):
		return deny(CodeSessionInvalid, "the session is revoked or expired")
	case !Grants(ses.Scopes, sec.ScopeRequired):
		return deny(CodeInsufficientScope, fmt.Sprintf("the session does not hold the %q scope this secret requires", sec.ScopeRequired))
	}
	return &SecretAccessed{Name: sec.Name, Version: sec.Version, SessionID: ses.ID, AgentID: ses.AgentID, Via: via}, nil
}
