package commands

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// RecordFlag appends a flag the detectors raised. Its event id is derived
// from the flag id, so appending it again, from another replica or after a
// replay, records nothing new; RecordFlag then succeeds.
func (s *Service) RecordFlag(ctx context.Context, tenant string, f domain.AnomalyFlagged) error {
	if f.FlagID != domain.FlagID(tenant, f.Detector, f.Evidence) {
		return domain.Invalid("flag_id", "a flag's id is derived from its detector and evidence")
	}
	a := Actor{Tenant: tenant, KeyPrefix: "system", Route: "anomaly detection"}.WithIdempotencyKey(f.FlagID)
	_, err := s.appendDurable(ctx, events.Proposed{ID: a.eventID(domain.AnomalyStream(f.FlagID)), Tenant: tenant, Stream: domain.AnomalyStream(f.FlagID),
		ExpectedVersion: 0, Type: domain.TypeAnomalyFlagged, Payload: encode(f), Meta: a.meta(f.SessionID, f.AgentID)})
	if errors.Is(err, events.ErrConflict) {
		return nil // flagged already
	}
	return err
}

// AckAnomaly acknowledges a flag. Acknowledging it twice changes nothing.
func (s *Service) AckAnomaly(ctx context.Context, a Actor, flagID, note string) (bool, error) {
	evs, err := s.store.ReadStream(ctx, a.Tenant, domain.AnomalyStream(flagID), 0)
	if err != nil {
		return false, err
	}
	if len(evs) == 0 {
		return false, domain.Errorf(domain.CodeNotFound, "no such anomaly")
	}
	if len(evs) > 1 {
		return false, nil
	}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.AnomalyStream(flagID)), Tenant: a.Tenant, Stream: domain.AnomalyStream(flagID), ExpectedVersion: 1,
		Type: domain.TypeAnomalyAcknowledged, Payload: encode(domain.AnomalyAcknowledged{FlagID: flagID, By: by(a), Note: note}), Meta: a.meta("", "")})
	if errors.Is(err, events.ErrConflict) {
		return false, nil // acknowledged at the same time
	}
	return err == nil, err
}

// AnomalySettings returns the tenant's detector settings from the ledger,
// or defaults when it has set none.
func (s *Service) AnomalySettings(ctx context.Context, tenant string, defaults domain.AnomalySettings) (domain.AnomalySettings, error) {
	evs, err := s.store.ReadStream(ctx, tenant, domain.AnomalySettingsStream, 0)
	if err != nil || len(evs) == 0 {
		return defaults, err
	}
	var set domain.AnomalySettings
	return set, json.Unmarshal(evs[len(evs)-1].Payload, &set)
}

// SetAnomalySettings records new detector settings; they apply to the
// events after them.
func (s *Service) SetAnomalySettings(ctx context.Context, a Actor, set domain.AnomalySettings) error {
	if err := set.Check(); err != nil {
		return err
	}
	_, err := s.append(ctx, events.Proposed{ID: a.eventID(domain.AnomalySettingsStream), Tenant: a.Tenant, Stream: domain.AnomalySettingsStream,
		ExpectedVersion: events.AnyVersion, Type: domain.TypeAnomalySettingsChanged, Payload: encode(set), Meta: a.meta("", "")})
	return err
}
