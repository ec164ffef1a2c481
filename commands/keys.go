package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// Key limits.
const (
	keyPrefixLen  = 12 // "hld_" + 8 characters: shown, logged, used to revoke
	MaxKeyNameLen = 128
	MaxTenantName = 128
)

// NewKey is a freshly minted API key. Key is shown once and never stored.
type NewKey struct {
	Key    string
	Prefix string
	Name   string
	Scopes domain.KeyScopes
	// RateLimit is the key's own limit in requests a minute; 0 = default.
	RateLimit int
	Created   events.Event
}

// Tenant is a freshly created tenant with its first key.
type Tenant struct {
	TenantID string
	Name     string
	Key      NewKey
}

// mintKey returns "hld_" + base64url(32 random bytes), its prefix and the
// hex SHA-256 that is stored in its place.
func mintKey() (key, prefix, hash string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("commands: crypto/rand failed: " + err.Error())
	}
	key = "hld_" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(key))
	return key, key[:keyPrefixLen], hex.EncodeToString(sum[:])
}

// HashKey returns the stored form of an API key: hex SHA-256.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyPrefix returns the public prefix of key, or "" when key is too short
// to be one of ours.
func KeyPrefix(key string) string {
	if len(key) < keyPrefixLen || key[:4] != "hld_" {
		return ""
	}
	return key[:keyPrefixLen]
}

func validName(field, name string, max int) error {
	if len(name) > max {
		return domain.Invalid(field, "%s is longer than %d characters", field, max)
	}
	return nil
}

// keyCreation names the event that creates a key where ids are derived:
// the key's stream is named after its random prefix, which a retry would
// not mint again.
const keyCreation = "key creation"

// keyEvents returns the events that create a key in tenant, the first with
// id.
func (a Actor) keyEvents(id, tenant, name string, scopes domain.KeyScopes, rateLimit int) ([]events.Proposed, NewKey) {
	key, prefix, hash := mintKey()
	nk := NewKey{Key: key, Prefix: prefix, Name: name, Scopes: scopes, RateLimit: rateLimit}
	return []events.Proposed{{ID: id, Tenant: tenant, Stream: domain.KeyStream(prefix), ExpectedVersion: 0,
		Type: domain.TypeKeyCreated, Payload: encode(domain.KeyCreated{Prefix: prefix, Name: name, Scopes: scopes, KeyHash: hash, RateLimit: rateLimit}),
		Meta: events.Metadata{Actor: a.KeyPrefix, RequestID: a.RequestID, IdempotencyKey: a.IdempotencyKey}}}, nk
}

// ErrInstallClosed is returned by Bootstrap once any tenant exists.
var ErrInstallClosed = domain.Errorf(domain.CodeUnauthenticated, "this install already has API keys: authenticate with a key that holds admin:write to create another")

// Bootstrap creates the first tenant and its "*" key on a fresh install,
// without authentication. Exactly one concurrent caller can succeed: the
// registration is appended to the install stream expecting it empty.
func (s *Service) Bootstrap(ctx context.Context, a Actor, name string) (Tenant, error) {
	if name == "" {
		name = "default"
	}
	return s.createTenant(ctx, a, name, true)
}

// CreateTenant creates a tenant and its first "*" key (operator action).
func (s *Service) CreateTenant(ctx context.Context, a Actor, name string) (Tenant, error) {
	if name == "" {
		return Tenant{}, domain.Invalid("name", "name is required")
	}
	return s.createTenant(ctx, a, name, false)
}

func (s *Service) createTenant(ctx context.Context, a Actor, name string, bootstrap bool) (Tenant, error) {
	if err := validName("name", name, MaxTenantName); err != nil {
		return Tenant{}, err
	}
	tenant := a.newID("tnt")
	expected := events.AnyVersion
	if bootstrap {
		expected = 0
	}
	meta := events.Metadata{Actor: a.KeyPrefix, RequestID: a.RequestID, IdempotencyKey: a.IdempotencyKey}
	ps := []events.Proposed{
		{ID: a.eventID(domain.TenantsStream), Tenant: domain.InstallTenant, Stream: domain.TenantsStream, ExpectedVersion: expected,
			Type: domain.TypeTenantRegistered, Payload: encode(domain.TenantRegistered{TenantID: tenant, Bootstrap: bootstrap}), Meta: meta},
		{ID: a.eventID(domain.TenantStream(tenant)), Tenant: tenant, Stream: domain.TenantStream(tenant), ExpectedVersion: 0,
			Type: domain.TypeTenantCreated, Payload: encode(domain.TenantCreated{TenantID: tenant, Name: name}), Meta: meta},
	}
	keyEvents, key := a.keyEvents(a.eventID(keyCreation), tenant, "default", domain.KeyScopes{"*"}, 0)
	recs, err := s.append(ctx, append(ps, keyEvents...)...)
	if errors.Is(err, events.ErrConflict) && bootstrap {
		return Tenant{}, ErrInstallClosed
	}
	if err != nil {
		return Tenant{}, err
	}
	created, err := decodeRecorded[domain.TenantCreated](recs[1])
	if err != nil {
		return Tenant{}, err
	}
	kc, err := decodeRecorded[domain.KeyCreated](recs[2])
	if err != nil {
		return Tenant{}, err
	}
	if kc.Prefix != key.Prefix {
		// An idempotent retry: the key minted now is not the one
		// recorded, and the recorded one was shown once already.
		return Tenant{}, domain.Errorf(domain.CodeConflict, "this request was already completed; the key it created is shown only once")
	}
	key.Created = recs[2]
	return Tenant{TenantID: created.TenantID, Name: created.Name, Key: key}, nil
}

// CreateKey mints a key in the actor's tenant. creator is the scopes of the
// key making the request: a key can never mint a key broader than itself.
// scopes must name at least one scope; a caller wanting the default passes
// domain.DefaultKeyScopes.
func (s *Service) CreateKey(ctx context.Context, a Actor, creator domain.KeyScopes, name string, scopes []string, rateLimit int) (NewKey, error) {
	if err := validName("name", name, MaxKeyNameLen); err != nil {
		return NewKey{}, err
	}
	ks, err := domain.ParseKeyScopes(scopes)
	if err != nil {
		return NewKey{}, err
	}
	if !creator.Covers(ks) {
		return NewKey{}, &domain.Error{Code: domain.CodeInsufficientScope, Message: "a key cannot create a key with scopes it does not hold itself",
			Field: "scopes", Extra: map[string]any{"required": []string(ks), "granted": []string(creator)}}
	}
	id := a.eventID(keyCreation)
	for attempt := 0; ; attempt++ {
		ps, key := a.keyEvents(id, a.Tenant, name, ks, rateLimit)
		recs, err := s.append(ctx, ps...)
		if errors.Is(err, events.ErrConflict) && attempt < 3 {
			continue // prefix collision: mint another
		}
		if err != nil {
			return NewKey{}, err
		}
		kc, err := decodeRecorded[domain.KeyCreated](recs[0])
		if err != nil {
			return NewKey{}, err
		}
		if kc.Prefix != key.Prefix {
			return NewKey{}, domain.Errorf(domain.CodeConflict, "this request was already completed; the key it created is shown only once")
		}
		key.Created = recs[0]
		return key, nil
	}
}

// RecordVerificationFailure records that the tenant's chain failed to
// verify at firstBadSeq, once per break: every replica verifying the same
// broken chain calls it, and only the first appends. The decision is made
// on the verification stream and appended with the version it was made
// on, so of racing replicas one appends and the others, on conflict,
// re-read and find the break recorded. It reports whether this call
// appended.
func (s *Service) RecordVerificationFailure(ctx context.Context, a Actor, firstBadSeq int64, reason string) (bool, error) {
	id := a.eventID(domain.VerificationStream)
	for attempt := 0; ; attempt++ {
		evs, err := s.store.ReadStream(ctx, a.Tenant, domain.VerificationStream, 0)
		if err != nil {
			return false, err
		}
		var version int64
		if n := len(evs); n > 0 {
			last := evs[n-1]
			version = last.Version
			var f domain.VerificationFailed
			if err := json.Unmarshal(last.Payload, &f); err != nil {
				return false, fmt.Errorf("commands: %s: %w", last.Type, err)
			}
			if f.FirstBadSeq == firstBadSeq {
				return false, nil // this break is already recorded
			}
		}
		_, err = s.append(ctx, events.Proposed{ID: id, Tenant: a.Tenant, Stream: domain.VerificationStream, ExpectedVersion: version,
			Type: domain.TypeVerificationFailed, Payload: encode(domain.VerificationFailed{FirstBadSeq: firstBadSeq, Reason: reason}),
			Meta: events.Metadata{Actor: a.KeyPrefix, RequestID: a.RequestID}})
		if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		}
		return err == nil, err
	}
}

// RevokeKey revokes one of the tenant's keys. Revoking twice is harmless.
func (s *Service) RevokeKey(ctx context.Context, a Actor, prefix string) error {
	if len(prefix) != keyPrefixLen {
		return domain.Errorf(domain.CodeNotFound, "no key with prefix %q", prefix)
	}
	evs, err := s.store.ReadStream(ctx, a.Tenant, domain.KeyStream(prefix), 0)
	if err != nil {
		return err
	}
	if len(evs) == 0 {
		return domain.Errorf(domain.CodeNotFound, "no key with prefix %q", prefix)
	}
	last := evs[len(evs)-1]
	if last.Type == domain.TypeKeyRevoked {
		return nil
	}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.KeyStream(prefix)), Tenant: a.Tenant, Stream: domain.KeyStream(prefix), ExpectedVersion: last.Version,
		Type: domain.TypeKeyRevoked, Payload: encode(domain.KeyRevoked{Prefix: prefix}),
		Meta: events.Metadata{Actor: a.KeyPrefix, RequestID: a.RequestID, IdempotencyKey: a.IdempotencyKey}})
	if errors.Is(err, events.ErrConflict) {
		return nil // revoked concurrently
	}
	return err
}
