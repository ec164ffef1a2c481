package commands

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/vault"
)

// loadWebhook folds a webhook's stream.
func (s *Service) loadWebhook(ctx context.Context, tenant, id string) (domain.Webhook, error) {
	var w domain.Webhook
	evs, err := s.store.ReadStream(ctx, tenant, domain.WebhookStream(id), 0)
	if err != nil {
		return w, err
	}
	for i := range evs {
		if err := w.Apply(evs[i].Type, evs[i].Payload, evs[i].Version); err != nil {
			return w, err
		}
	}
	return w, nil
}

var errNoWebhook = domain.Errorf(domain.CodeNotFound, "no such webhook in this tenant")

// sealWebhookSecret seals a signing secret like a vault secret, under the
// webhook's reserved name, and stores its data key.
func (s *Service) sealWebhookSecret(ctx context.Context, tenant, id string, version uint64, secret string) (keyID string, sealed []byte, err error) {
	if s.vault == nil {
		return "", nil, errNoVault
	}
	ring, err := s.vault.Keyring(ctx, false)
	if err != nil {
		return "", nil, err
	}
	ref := vault.Ref{Tenant: tenant, Name: domain.WebhookSecretName(id), Version: version}
	sl, wrapped, err := ring.Seal(ref, []byte(secret))
	if err != nil {
		return "", nil, err
	}
	keyID = domain.NewID("dek")
	if err := s.vault.Keys.Put(ctx, vault.DataKey{KeyID: keyID, Tenant: tenant, Name: ref.Name, Version: version, Wrapped: wrapped}); err != nil {
		return "", nil, err
	}
	return keyID, sl.Bytes(), nil
}

// RegisterWebhook adds an endpoint after checking its URL against the SSRF
// guard, and returns it with its signing secret (shown once).
func (s *Service) RegisterWebhook(ctx context.Context, a Actor, rawURL, name string, eventsFilter []string) (domain.Webhook, string, error) {
	if len(rawURL) > domain.MaxWebhookURLLen {
		return domain.Webhook{}, "", domain.Invalid("url", "url is longer than %d characters", domain.MaxWebhookURLLen)
	}
	if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return domain.Webhook{}, "", domain.Invalid("url", "url must be an http(s) URL")
	}
	if err := s.guard.CheckURL(ctx, rawURL); err != nil {
		return domain.Webhook{}, "", domain.Invalid("url", "url is refused: %v (private, loopback and link-local addresses are not allowed unless HALDIR_ALLOW_PRIVATE_NETWORKS=true)", errors.Unwrap(err))
	}
	filter, err := domain.ValidateWebhookEvents(eventsFilter)
	if err != nil {
		return domain.Webhook{}, "", err
	}
	if name == "" {
		name = domain.DefaultWebhookName
	}
	id := a.newID("whk")
	secret := domain.NewWebhookSecret()
	keyID, sealed, err := s.sealWebhookSecret(ctx, a.Tenant, id, 1, secret)
	if err != nil {
		return domain.Webhook{}, "", err
	}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.WebhookStream(id)), Tenant: a.Tenant, Stream: domain.WebhookStream(id), ExpectedVersion: 0,
		Type: domain.TypeWebhookRegistered, Payload: encode(domain.WebhookRegistered{WebhookID: id, URL: rawURL, Name: name, Events: filter, KeyID: keyID, Sealed: sealed}),
		Meta: a.meta("", "")})
	if err != nil {
		s.vault.Keys.Delete(context.WithoutCancel(ctx), keyID)
		return domain.Webhook{}, "", err
	}
	w, err := s.loadWebhook(ctx, a.Tenant, id)
	if err == nil && w.KeyID != keyID {
		// An idempotent retry: the secret made now is not the recorded one.
		s.vault.Keys.Delete(context.WithoutCancel(ctx), keyID)
		return w, "", domain.Errorf(domain.CodeConflict, "this request was already completed; the secret it created is shown only once")
	}
	return w, secret, err
}

// RotateWebhookSecret gives a webhook a new signing secret. The previous
// one stays valid for grace, during which deliveries carry both signatures.
func (s *Service) RotateWebhookSecret(ctx context.Context, a Actor, id string, grace time.Duration) (domain.Webhook, string, error) {
	if grace < 0 || grace > domain.MaxWebhookGrace {
		return domain.Webhook{}, "", domain.Invalid("grace_seconds", "grace_seconds must be between 0 and 7 days")
	}
	w, err := s.loadWebhook(ctx, a.Tenant, id)
	if err != nil {
		return w, "", err
	}
	if w.StreamVersion == 0 {
		return w, "", errNoWebhook
	}
	secret := domain.NewWebhookSecret()
	version := w.SecretVersion + 1
	keyID, sealed, err := s.sealWebhookSecret(ctx, a.Tenant, id, version, secret)
	if err != nil {
		return w, "", err
	}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.WebhookStream(id)), Tenant: a.Tenant, Stream: domain.WebhookStream(id), ExpectedVersion: w.StreamVersion,
		Type: domain.TypeWebhookSecretRotated, Payload: encode(domain.WebhookSecretRotated{WebhookID: id, Version: version, KeyID: keyID, Sealed: sealed,
			PreviousExpiresAt: s.now().Add(grace).Truncate(time.Second)}), Meta: a.meta("", "")})
	if err != nil {
		s.vault.Keys.Delete(context.WithoutCancel(ctx), keyID)
		if errors.Is(err, events.ErrConflict) {
			return w, "", domain.Errorf(domain.CodeConflict, "the webhook changed at the same time; retry")
		}
		return w, "", err
	}
	w, err = s.loadWebhook(ctx, a.Tenant, id)
	return w, secret, err
}

// DisableWebhook stops deliveries to an endpoint (for example after it
// answered 410 Gone). Disabling twice is harmless.
func (s *Service) DisableWebhook(ctx context.Context, tenant, id, reason string) error {
	w, err := s.loadWebhook(ctx, tenant, id)
	if err != nil {
		return err
	}
	if w.StreamVersion == 0 {
		return errNoWebhook
	}
	if !w.Active {
		return nil
	}
	a := Actor{Tenant: tenant, KeyPrefix: "system", Route: "webhook disable"}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.WebhookStream(id)), Tenant: tenant, Stream: domain.WebhookStream(id), ExpectedVersion: w.StreamVersion,
		Type: domain.TypeWebhookDisabled, Payload: encode(domain.WebhookDisabled{WebhookID: id, Reason: reason}), Meta: a.meta("", "")})
	if errors.Is(err, events.ErrConflict) {
		return nil
	}
	return err
}

// WebhookEndpoint returns where to deliver a tenant's webhook and the
// secrets to sign with: the current one, and the previous one while its
// grace period lasts. It implements the delivery worker's lookup.
func (s *Service) WebhookEndpoint(ctx context.Context, tenant, id string) (string, []string, bool, error) {
	w, found, err := s.reads.Webhook(ctx, tenant, id)
	if err != nil || !found {
		return "", nil, false, err
	}
	if s.vault == nil {
		return "", nil, false, errNoVault
	}
	open := func(keyID string, version uint64, sealedBytes []byte) (string, error) {
		key, found, err := s.vault.Keys.Get(ctx, tenant, domain.WebhookSecretName(id), keyID)
		if err != nil || !found {
			return "", errors.Join(err, errors.New("commands: webhook signing key missing"))
		}
		sealed, err := vault.ParseSealed(sealedBytes)
		if err != nil {
			return "", err
		}
		ring, err := s.vault.Keyring(ctx, false)
		if err != nil {
			return "", err
		}
		v, err := ring.Open(vault.Ref{Tenant: tenant, Name: domain.WebhookSecretName(id), Version: version}, sealed, key.Wrapped)
		if errors.Is(err, vault.ErrUnknownKEKVersion) {
			if ring, err = s.vault.Keyring(ctx, true); err == nil {
				v, err = ring.Open(vault.Ref{Tenant: tenant, Name: domain.WebhookSecretName(id), Version: version}, sealed, key.Wrapped)
			}
		}
		return string(v), err
	}
	current, err := open(w.KeyID, w.SecretVersion, w.Sealed)
	if err != nil {
		return "", nil, false, err
	}
	secrets := []string{current}
	if w.PrevKeyID != "" && s.now().Before(w.PrevExpiresAt) {
		if prev, err := open(w.PrevKeyID, w.PrevVersion, w.PrevSealed); err == nil {
			secrets = append(secrets, prev)
		}
	}
	return w.URL, secrets, w.Active, nil
}
