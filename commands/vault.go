package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/vault"
)

// Vault configures the secret commands: the data-key store and a way to
// obtain the keyring, reloaded when a rotation by another process moved
// data keys to a KEK version this process does not know yet.
type Vault struct {
	Keys KeyStore
	// Keyring returns the current keyring; reload asks for a fresh one.
	Keyring func(ctx context.Context, reload bool) (*vault.Keyring, error)
}

// KeyStore keeps the secrets' data keys outside the ledger, so that
// deleting them destroys the plaintext for good (crypto-shredding). The
// SQL implementation is package keystore.
type KeyStore interface {
	// Put stores a data key.
	Put(ctx context.Context, k vault.DataKey) error
	// Get returns the data key keyID of the tenant's secret name.
	Get(ctx context.Context, tenant, name, keyID string) (vault.DataKey, bool, error)
	// Delete destroys one data key.
	Delete(ctx context.Context, keyID string) error
	// DeleteSecret destroys every data key of the tenant's secret name.
	DeleteSecret(ctx context.Context, tenant, name string) error
	// DeleteOtherVersions destroys the secret's data keys but keep.
	DeleteOtherVersions(ctx context.Context, tenant, name, keep string) error
}

var errNoVault = domain.Errorf(domain.CodeUnavailable, "the vault is not configured on this server")

// secret loads a secret's aggregate from the ledger.
func (s *Service) secret(ctx context.Context, tenant, name string) (domain.Secret, error) {
	sec := domain.Secret{Name: name}
	evs, err := s.store.ReadStream(ctx, tenant, domain.SecretStream(name), 0)
	if err != nil {
		return sec, err
	}
	for i := range evs {
		if err := sec.Apply(evs[i].Type, evs[i].Payload, evs[i].Version); err != nil {
			return sec, err
		}
	}
	return sec, nil
}

func validSecretName(name string) error {
	if !vault.ValidName(name) {
		return domain.Invalid("name", "a secret name is 1-128 characters of letters, digits, '_', '.' and '-'")
	}
	if strings.HasPrefix(name, "webhook.") {
		return domain.Invalid("name", "names starting with \"webhook.\" are reserved for webhook signing secrets")
	}
	return nil
}

// StoreSecret seals value as a new version of secret name. The value's
// ciphertext goes to the ledger; its data key to the key store, and the
// data keys of earlier versions are destroyed.
func (s *Service) StoreSecret(ctx context.Context, a Actor, name string, value []byte, scopeRequired string) (domain.SecretStored, error) {
	if s.vault == nil {
		return domain.SecretStored{}, errNoVault
	}
	if err := validSecretName(name); err != nil {
		return domain.SecretStored{}, err
	}
	if len(value) > vault.MaxValueSize {
		return domain.SecretStored{}, domain.Invalid("value", "value is larger than %d bytes", vault.MaxValueSize)
	}
	if scopeRequired == "" {
		scopeRequired = domain.DefaultSecretScope
	}
	if !domain.ValidSessionScope(scopeRequired) {
		return domain.SecretStored{}, domain.Invalid("scope_required", "scope_required is not a valid session scope")
	}
	ring, err := s.vault.Keyring(ctx, false)
	if err != nil {
		return domain.SecretStored{}, err
	}
	id := a.eventID(domain.SecretStream(name))
	for attempt := 0; ; attempt++ {
		sec, err := s.secret(ctx, a.Tenant, name)
		if err != nil {
			return domain.SecretStored{}, err
		}
		version := sec.Version + 1
		sealed, wrapped, err := ring.Seal(vault.Ref{Tenant: a.Tenant, Name: name, Version: version}, value)
		if err != nil {
			return domain.SecretStored{}, err
		}
		keyID := domain.NewID("dek")
		if err := s.vault.Keys.Put(ctx, vault.DataKey{KeyID: keyID, Tenant: a.Tenant, Name: name, Version: version, Wrapped: wrapped}); err != nil {
			return domain.SecretStored{}, err
		}
		stored := domain.SecretStored{Name: name, Version: version, ScopeRequired: scopeRequired, KeyID: keyID, Sealed: sealed.Bytes()}
		recs, err := s.append(ctx, events.Proposed{ID: id, Tenant: a.Tenant, Stream: domain.SecretStream(name),
			ExpectedVersion: sec.StreamVersion, Type: domain.TypeSecretStored, Payload: encode(stored), Meta: a.meta("", "")})
		if err != nil {
			s.vault.Keys.Delete(context.WithoutCancel(ctx), keyID) // never named by an event
			if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
				continue
			}
			return domain.SecretStored{}, err
		}
		got, err := decodeRecorded[domain.SecretStored](recs[0])
		if err != nil {
			return got, err
		}
		if got.KeyID != keyID {
			// An idempotent retry returned the recorded store; the key
			// made now is not the one it names.
			s.vault.Keys.Delete(context.WithoutCancel(ctx), keyID)
			return got, nil
		}
		if err := s.vault.Keys.DeleteOtherVersions(ctx, a.Tenant, name, keyID); err != nil {
			s.log.Warn("could not destroy the data keys of earlier secret versions", "secret", name, "err", err)
		}
		return got, nil
	}
}

// ReadSecret returns the current value of secret name to a valid session
// holding the secret's scope. The read or the refusal is appended to the
// ledger before anything is returned; if that append fails, nothing is.
func (s *Service) ReadSecret(ctx context.Context, a Actor, name, sessionID, via string) ([]byte, error) {
	if s.vault == nil {
		return nil, errNoVault
	}
	if err := validSecretName(name); err != nil {
		return nil, domain.Errorf(domain.CodeNotFound, "no such secret")
	}
	sec, err := s.secret(ctx, a.Tenant, name)
	if err != nil {
		return nil, err
	}
	var ses domain.Session
	found := false
	if sessionID != "" && domain.ValidID("ses", sessionID) {
		// The projected session, not the cached aggregate: a revocation on
		// another replica must count at once.
		if ses, found, err = s.session(ctx, a.Tenant, sessionID); err != nil {
			return nil, err
		}
	}
	sec.Name = name
	ok, denied := domain.DecideAccess(sec, sec.Exists(), ses, found, via, s.now())
	if denied == nil {
		if err := s.alive(ctx, a.Tenant, ses.AgentID, cachedKills); err != nil {
			denied = killedAccess(ok, err)
		}
	}
	p := events.Proposed{ID: a.eventID(domain.SecretAccessStream(name)), Tenant: a.Tenant, Stream: domain.SecretAccessStream(name), ExpectedVersion: events.AnyVersion,
		Meta: a.meta(sessionID, ses.AgentID)}
	if denied != nil {
		p.Type, p.Payload = domain.TypeSecretAccessDenied, encode(denied)
		if _, err := s.append(ctx, p); err != nil {
			return nil, err
		}
		return nil, &domain.Error{Code: denied.Code, Message: denied.Reason}
	}
	p.Type, p.Payload = domain.TypeSecretAccessed, encode(ok)
	recs, err := s.append(ctx, p)
	if err != nil {
		return nil, err
	}
	// A kill that committed before the read did: the value is not
	// returned, and the refusal follows the read in the ledger.
	if err := s.alive(ctx, a.Tenant, ses.AgentID, recs[0].Position); err != nil {
		p.ID, p.Type, p.Payload = a.eventID(domain.SecretAccessStream(name)), domain.TypeSecretAccessDenied, encode(killedAccess(ok, err))
		if _, aerr := s.append(context.WithoutCancel(ctx), p); aerr != nil {
			return nil, aerr
		}
		return nil, err
	}
	return s.open(ctx, a.Tenant, sec)
}

// RecordSecretRefusal records a read of secret name refused before the
// vault decided (the API key lacked vault:read).
func (s *Service) RecordSecretRefusal(ctx context.Context, a Actor, name, sessionID string, code domain.Code, reason string) error {
	if !vault.ValidName(name) {
		return nil // not a secret name: nothing a read could have reached
	}
	d := domain.SecretAccessDenied{Name: name, Via: "api", Code: code, Reason: reason}
	if domain.ValidID("ses", sessionID) {
		d.SessionID = sessionID
	}
	_, err := s.append(ctx, events.Proposed{ID: a.eventID(domain.SecretAccessStream(name)), Tenant: a.Tenant, Stream: domain.SecretAccessStream(name),
		ExpectedVersion: events.AnyVersion, Type: domain.TypeSecretAccessDenied, Payload: encode(d), Meta: a.meta(d.SessionID, "")})
	return err
}

// open decrypts a secret's current version.
func (s *Service) open(ctx context.Context, tenant string, sec domain.Secret) ([]byte, error) {
	key, found, err := s.vault.Keys.Get(ctx, tenant, sec.Name, sec.KeyID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, domain.Errorf(domain.CodeNotFound, "no such secret (its data key was destroyed)")
	}
	sealed, err := vault.ParseSealed(sec.Sealed)
	if err != nil {
		return nil, fmt.Errorf("commands: stored ciphertext of %s: %w", sec.Name, err)
	}
	ref := vault.Ref{Tenant: tenant, Name: sec.Name, Version: sec.Version}
	for reload := false; ; reload = true {
		ring, err := s.vault.Keyring(ctx, reload)
		if err != nil {
			return nil, err
		}
		value, err := ring.Open(ref, sealed, key.Wrapped)
		switch {
		case err == nil:
			return value, nil
		case errors.Is(err, vault.ErrUnknownKEKVersion) && !reload:
			continue // rotated by another process: reload the ring
		case errors.Is(err, vault.ErrWrongKey), errors.Is(err, vault.ErrUnknownKEKVersion):
			s.log.Error("secret cannot be opened with the configured encryption key", "secret", sec.Name, "err", err)
			return nil, domain.Errorf(domain.CodeUnavailable, "this secret cannot be decrypted with the server's encryption key (HALDIR_ENCRYPTION_KEY); an operator must restore the right key")
		default:
			s.log.Error("secret ciphertext failed authentication", "secret", sec.Name, "err", err)
			return nil, domain.Errorf(domain.CodeUnavailable, "this secret's stored ciphertext failed its integrity check and cannot be returned")
		}
	}
}

// DeleteSecret destroys every data key of secret name, then records the
// deletion. The ciphertext stays in the ledger, which still verifies; the
// plaintext is gone.
func (s *Service) DeleteSecret(ctx context.Context, a Actor, name string) error {
	if s.vault == nil {
		return errNoVault
	}
	if err := validSecretName(name); err != nil {
		return domain.Errorf(domain.CodeNotFound, "no such secret")
	}
	id := a.eventID(domain.SecretStream(name))
	for attempt := 0; ; attempt++ {
		sec, err := s.secret(ctx, a.Tenant, name)
		if err != nil {
			return err
		}
		if !sec.Exists() {
			return domain.Errorf(domain.CodeNotFound, "no such secret")
		}
		// Keys first: a crash after this leaves an unreadable secret that a
		// repeated DELETE finishes, never a deleted one that still opens.
		if err := s.vault.Keys.DeleteSecret(ctx, a.Tenant, name); err != nil {
			return err
		}
		_, err = s.append(ctx, events.Proposed{ID: id, Tenant: a.Tenant, Stream: domain.SecretStream(name), ExpectedVersion: sec.StreamVersion,
			Type: domain.TypeSecretDeleted, Payload: encode(domain.SecretDeleted{Name: name, Version: sec.Version}), Meta: a.meta("", "")})
		if errors.Is(err, events.ErrConflict) && retryPause(ctx, attempt) {
			continue
		}
		return err
	}
}

// Injected is the outcome of resolving secret placeholders in an upstream
// call's arguments.
type Injected struct {
	Arguments []byte
	// Names are the secrets used; Values their plaintexts, for redacting
	// upstream responses. Neither may be logged.
	Names  []string
	Values []string
}

// InjectSecrets replaces every {{secret:NAME}} in the JSON arguments with
// the secret's value, for session sessionID, so that the agent never holds
// it. Each use is checked and recorded like a read via the API; one refused
// secret refuses the whole call.
func (s *Service) InjectSecrets(ctx context.Context, a Actor, sessionID string, arguments []byte) (Injected, error) {
	var mu sync.Mutex
	var values []string
	out, names, err := vault.ResolveJSON(arguments, func(name string) (string, error) {
		v, err := s.ReadSecret(ctx, a, name, sessionID, "proxy")
		if err != nil {
			return "", err
		}
		mu.Lock()
		values = append(values, string(v))
		mu.Unlock()
		return string(v), nil
	})
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return Injected{}, de
		}
		if errors.Is(err, vault.ErrMalformedPlaceholder) {
			return Injected{}, domain.Invalid("arguments", "arguments hold a malformed {{secret:NAME}} placeholder")
		}
		return Injected{}, err
	}
	return Injected{Arguments: out, Names: names, Values: values}, nil
}

// killedAccess is the refusal of the read ok describes, by a kill switch.
func killedAccess(ok *domain.SecretAccessed, err error) *domain.SecretAccessDenied {
	d := &domain.SecretAccessDenied{Code: domain.CodeAgentKilled, Reason: err.Error()}
	if ok != nil {
		d.Name, d.SessionID, d.AgentID, d.Via = ok.Name, ok.SessionID, ok.AgentID, ok.Via
	}
	var de *domain.Error
	if errors.As(err, &de) {
		d.Reason = de.Message
	}
	return d
}
