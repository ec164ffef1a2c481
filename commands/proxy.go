package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/vault"
)

// UpstreamConfig is the part of an upstream's registration sealed like a
// secret: its environment and request headers.
type UpstreamConfig struct {
	Env     map[string]string `json:"env,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// RegisterUpstream records an upstream MCP server for the tenant, sealing
// its environment and headers. A second registration of a name conflicts.
func (s *Service) RegisterUpstream(ctx context.Context, a Actor, reg domain.UpstreamRegistered, cfg UpstreamConfig) error {
	if reg.URL != "" {
		if err := s.guard.CheckURL(ctx, reg.URL); err != nil {
			return domain.Invalid("url", "url is refused: %v (private, loopback and link-local addresses are not allowed unless HALDIR_ALLOW_PRIVATE_NETWORKS=true)", errors.Unwrap(err))
		}
	}
	if len(cfg.Env) > 0 || len(cfg.Headers) > 0 {
		if s.vault == nil {
			return errNoVault
		}
		plain, _ := json.Marshal(cfg)
		ring, err := s.vault.Keyring(ctx, false)
		if err != nil {
			return err
		}
		ref := vault.Ref{Tenant: a.Tenant, Name: domain.UpstreamConfigName(reg.Name), Version: 1}
		sealed, wrapped, err := ring.Seal(ref, plain)
		if err != nil {
			return err
		}
		reg.KeyID = domain.NewID("dek")
		if err := s.vault.Keys.Put(ctx, vault.DataKey{KeyID: reg.KeyID, Tenant: a.Tenant, Name: ref.Name, Version: 1, Wrapped: wrapped}); err != nil {
			return err
		}
		reg.SealedConfig = sealed.Bytes()
	}
	_, err := s.append(ctx, events.Proposed{ID: a.eventID(domain.UpstreamStream(reg.Name)), Tenant: a.Tenant, Stream: domain.UpstreamStream(reg.Name), ExpectedVersion: 0,
		Type: domain.TypeUpstreamRegistered, Payload: encode(reg), Meta: a.meta("", "")})
	if errors.Is(err, events.ErrConflict) {
		if reg.KeyID != "" {
			s.vault.Keys.Delete(context.WithoutCancel(ctx), reg.KeyID)
		}
		return domain.Errorf(domain.CodeConflict, "an upstream named %q is already registered", reg.Name)
	}
	return err
}

// OpenUpstreamConfig decrypts an upstream's sealed environment and headers.
func (s *Service) OpenUpstreamConfig(ctx context.Context, tenant string, reg domain.UpstreamRegistered) (UpstreamConfig, error) {
	var cfg UpstreamConfig
	if reg.KeyID == "" {
		return cfg, nil
	}
	if s.vault == nil {
		return cfg, errNoVault
	}
	name := domain.UpstreamConfigName(reg.Name)
	key, found, err := s.vault.Keys.Get(ctx, tenant, name, reg.KeyID)
	if err != nil || !found {
		return cfg, errors.Join(err, fmt.Errorf("commands: the data key of upstream %s is missing", reg.Name))
	}
	sealed, err := vault.ParseSealed(reg.SealedConfig)
	if err != nil {
		return cfg, err
	}
	ring, err := s.vault.Keyring(ctx, false)
	if err != nil {
		return cfg, err
	}
	plain, err := ring.Open(vault.Ref{Tenant: tenant, Name: name, Version: 1}, sealed, key.Wrapped)
	if errors.Is(err, vault.ErrUnknownKEKVersion) {
		if ring, err = s.vault.Keyring(ctx, true); err == nil {
			plain, err = ring.Open(vault.Ref{Tenant: tenant, Name: name, Version: 1}, sealed, key.Wrapped)
		}
	}
	if err != nil {
		return cfg, err
	}
	return cfg, json.Unmarshal(plain, &cfg)
}

// UpstreamSettings returns an upstream's environment and headers, opened
// from their sealed form, with every {{secret:NAME}} filled from the vault
// (each read recorded, see ReadSecretForUpstream).
func (s *Service) UpstreamSettings(ctx context.Context, tenant string, reg domain.UpstreamRegistered) (env, headers map[string]string, err error) {
	cfg, err := s.OpenUpstreamConfig(ctx, tenant, reg)
	if err != nil {
		return nil, nil, err
	}
	fill := func(m map[string]string) (map[string]string, error) {
		out := map[string]string{}
		for k, v := range m {
			filled, _, err := vault.Resolve(v, func(name string) (string, error) {
				return s.ReadSecretForUpstream(ctx, tenant, reg.Name, name)
			})
			if err != nil {
				return nil, err
			}
			out[k] = filled.(string)
		}
		return out, nil
	}
	if env, err = fill(cfg.Env); err != nil {
		return nil, nil, err
	}
	if headers, err = fill(cfg.Headers); err != nil {
		return nil, nil, err
	}
	return env, headers, nil
}

// ReadSecretForUpstream returns a secret for an upstream's own
// configuration ({{secret:NAME}} in its headers or environment). The read
// is recorded like any other, via "upstream:<name>"; no session is
// involved, since the registration itself was an admin's decision.
func (s *Service) ReadSecretForUpstream(ctx context.Context, tenant, upstream, name string) (string, error) {
	if s.vault == nil {
		return "", errNoVault
	}
	sec, err := s.secret(ctx, tenant, name)
	if err != nil {
		return "", err
	}
	a := Actor{Tenant: tenant, KeyPrefix: "system", Route: "upstream config"}
	via := "upstream:" + upstream
	if !sec.Exists() {
		s.append(ctx, events.Proposed{ID: a.eventID(domain.SecretAccessStream(name)), Tenant: tenant, Stream: domain.SecretAccessStream(name), ExpectedVersion: events.AnyVersion,
			Type: domain.TypeSecretAccessDenied, Payload: encode(domain.SecretAccessDenied{Name: name, Via: via, Code: domain.CodeNotFound, Reason: "no such secret"})})
		return "", domain.Errorf(domain.CodeNotFound, "the upstream's configuration names a secret that does not exist")
	}
	if _, err := s.append(ctx, events.Proposed{ID: a.eventID(domain.SecretAccessStream(name)), Tenant: tenant, Stream: domain.SecretAccessStream(name), ExpectedVersion: events.AnyVersion,
		Type: domain.TypeSecretAccessed, Payload: encode(domain.SecretAccessed{Name: name, Version: sec.Version, Via: via})}); err != nil {
		return "", err
	}
	v, err := s.open(ctx, tenant, sec)
	return string(v), err
}

// toolState folds a tool's pin stream: the pinned hash, and whether the
// tool is quarantined.
func (s *Service) toolState(ctx context.Context, tenant, tool string) (hash string, quarantined bool, version int64, err error) {
	hash, _, quarantined, version, err = s.toolPin(ctx, tenant, tool)
	return hash, quarantined, version, err
}

// toolPin is toolState with the pinned definition's text, where the
// ledger has it: from the pin, or from the quarantine an approval lifted.
func (s *Service) toolPin(ctx context.Context, tenant, tool string) (hash string, definition json.RawMessage, quarantined bool, version int64, err error) {
	evs, err := s.store.ReadStream(ctx, tenant, domain.ToolStream(tool), 0)
	if err != nil {
		return "", nil, false, 0, err
	}
	var offered json.RawMessage // the definition a quarantine holds back
	for _, e := range evs {
		switch e.Type {
		case domain.TypeToolPinned:
			var p domain.ToolPinned
			json.Unmarshal(e.Payload, &p)
			hash, definition, quarantined = p.Hash, p.Definition, false
		case domain.TypeToolApproved:
			var p domain.ToolApproved
			json.Unmarshal(e.Payload, &p)
			hash, definition, quarantined = p.Hash, offered, false
		case domain.TypeToolQuarantined:
			var p domain.ToolQuarantined
			json.Unmarshal(e.Payload, &p)
			quarantined, offered = true, p.NewDefinition
		}
		version = e.Version
	}
	return hash, definition, quarantined, version, nil
}

// ObserveTool records what a discovery found for a tool: a first sight pins
// its definition; a definition that differs from the pin quarantines the
// tool until an admin approves it. It returns whether the tool may be
// called with definition hash. definition, the text hash covers, is kept
// with the pin and the quarantine (up to domain.MaxToolDefinitionLen) so
// that a change can be shown as a diff.
func (s *Service) ObserveTool(ctx context.Context, tenant, tool, hash string, definition json.RawMessage) (bool, error) {
	if len(definition) > domain.MaxToolDefinitionLen || !json.Valid(definition) {
		definition = nil
	}
	pinned, pinnedDefinition, quarantined, version, err := s.toolPin(ctx, tenant, tool)
	if err != nil {
		return false, err
	}
	a := Actor{Tenant: tenant, KeyPrefix: "system", Route: "tool discovery"}
	var p events.Proposed
	switch {
	case version == 0:
		p = events.Proposed{Type: domain.TypeToolPinned, Payload: encode(domain.ToolPinned{Tool: tool, Hash: hash, Definition: definition})}
	case hash == pinned && !quarantined:
		return true, nil
	case hash == pinned && quarantined:
		return false, nil
	case quarantined:
		return false, nil // already quarantined; the admin approves the current definition
	default:
		p = events.Proposed{Type: domain.TypeToolQuarantined, Payload: encode(domain.ToolQuarantined{Tool: tool, PinnedHash: pinned, NewHash: hash,
			PinnedDefinition: pinnedDefinition, NewDefinition: definition})}
	}
	p.ID, p.Tenant, p.Stream, p.ExpectedVersion, p.Meta = a.eventID(domain.ToolStream(tool)), tenant, domain.ToolStream(tool), version, a.meta("", "")
	if _, err := s.append(ctx, p); err != nil && !errors.Is(err, events.ErrConflict) {
		return false, err
	}
	return p.Type == domain.TypeToolPinned, nil
}

// ApproveTool accepts a tool's current definition hash, lifting a
// quarantine.
func (s *Service) ApproveTool(ctx context.Context, a Actor, tool, hash string) error {
	_, _, version, err := s.toolState(ctx, a.Tenant, tool)
	if err != nil {
		return err
	}
	if version == 0 {
		return domain.Errorf(domain.CodeNotFound, "no tool %q has been discovered in this tenant", truncateID(tool))
	}
	_, err = s.append(ctx, events.Proposed{ID: a.eventID(domain.ToolStream(tool)), Tenant: a.Tenant, Stream: domain.ToolStream(tool), ExpectedVersion: version,
		Type: domain.TypeToolApproved, Payload: encode(domain.ToolApproved{Tool: tool, Hash: hash, ApprovedBy: a.KeyPrefix}), Meta: a.meta("", "")})
	if errors.Is(err, events.ErrConflict) {
		return domain.Errorf(domain.CodeConflict, "the tool changed at the same time; look again and retry")
	}
	return err
}

// AddPolicy records a proxy policy.
func (s *Service) AddPolicy(ctx context.Context, a Actor, p domain.Policy) (domain.Policy, error) {
	if err := domain.ValidatePolicy(p); err != nil {
		return p, err
	}
	p.PolicyID = a.newID("pol")
	recs, err := s.append(ctx, events.Proposed{ID: a.eventID(domain.PoliciesStream), Tenant: a.Tenant, Stream: domain.PoliciesStream, ExpectedVersion: events.AnyVersion,
		Type: domain.TypePolicyAdded, Payload: encode(p), Meta: a.meta("", "")})
	if err != nil {
		return p, err
	}
	return decodeRecorded[domain.Policy](recs[0])
}

// DenyCall records a refused call. It was never forwarded.
func (s *Service) DenyCall(ctx context.Context, a Actor, d domain.ToolCallDenied) error {
	id := a.newID("cal")
	recs, err := s.appendDurable(ctx, events.Proposed{ID: a.eventID(domain.CallStream(id)), Tenant: a.Tenant, Stream: domain.CallStream(id), ExpectedVersion: 0,
		Type: domain.TypeToolCallDenied, Payload: encode(d), Meta: a.meta(d.SessionID, d.AgentID)})
	if err == nil {
		s.acknowledge(ctx, recs)
	}
	return err
}

// AllowCall records a call about to be forwarded, naming it with a new
// call id; if it cannot be recorded, the caller must not forward the call.
// It returns once the event is durable, with the call id and the event's
// position, without waiting for projections: the caller settles it
// (SettleLater) while the call is under way.
func (s *Service) AllowCall(ctx context.Context, a Actor, c domain.ToolCallAllowed) (callID string, position int64, err error) {
	c.CallID = a.newID("cal")
	position, err = s.appendUnsettled(ctx, events.Proposed{ID: a.eventID(domain.CallStream(c.CallID)), Tenant: a.Tenant, Stream: domain.CallStream(c.CallID), ExpectedVersion: 0,
		Type: domain.TypeToolCallAllowed, Payload: encode(c), Meta: a.meta(c.SessionID, c.AgentID)})
	return c.CallID, position, err
}

// CompleteCall records a forwarded call's outcome. It hands the event to
// the ledger writer and returns without waiting for the commit, so that
// the call's answer does not wait for a second group commit after the
// upstream's: the outcome is an observation, not a decision (the decision,
// AllowCall, was durable before the call was forwarded). A failure to make
// it durable is logged. The tenant's next request on this process waits
// for it (AwaitTenant), so a read still shows it.
func (s *Service) CompleteCall(ctx context.Context, a Actor, c domain.ToolCallCompleted) error {
	ps := []events.Proposed{{ID: a.eventID(domain.CallStream(c.CallID)), Tenant: a.Tenant, Stream: domain.CallStream(c.CallID), ExpectedVersion: 1,
		Type: domain.TypeToolCallCompleted, Payload: encode(c), Meta: a.meta("", ""), Deferrable: true}}
	end := s.positions.begin(a.Tenant)
	wait, err := s.store.AppendAsync(ctx, ps...)
	if err != nil {
		end()
		return err
	}
	go func() {
		defer end()
		recs, err := wait()
		if errors.Is(err, events.ErrDuplicateID) {
			recs, err = recorded(context.Background(), s.store, ps)
		}
		if err != nil {
			s.log.Error("could not record a governed call's outcome", "call", c.CallID, "err", err)
			return
		}
		s.wrote(recs)
	}()
	return nil
}

// ReserveSpend authorises a governed call's cost against the session's cap
// (approval rules are the caller's to apply first).
func (s *Service) ReserveSpend(ctx context.Context, a Actor, sessionID string, amount domain.Money, description string) (PaymentResult, error) {
	if err := domain.CheckCost("cost_usd", amount); err != nil {
		return PaymentResult{}, err
	}
	return s.authorize(ctx, a, sessionID, amount, "USD", description)
}

// ReleaseSpend returns a reservation to the session's budget, for a call
// that failed before the upstream could act on it.
func (s *Service) ReleaseSpend(ctx context.Context, a Actor, sessionID, authID string, amount domain.Money, reason string) error {
	recs, err := s.sessions.update(ctx, a, sessionID, s.now, func(ses domain.Session) (decision, error) {
		return decision{proposals: []proposal{{domain.TypePaymentReleased, domain.PaymentReleased{AuthorizationID: authID, SessionID: sessionID, Amount: amount, Reason: reason}}},
			meta: a.meta(sessionID, ses.AgentID)}, nil
	})
	if err != nil {
		return err
	}
	s.settle(ctx, recs)
	return nil
}

// Gate applies the tenant's approval rules to a governed call: nil when no
// rule applies or an approval of this exact call was just used, else an
// approval_required error carrying the request.
func (s *Service) Gate(ctx context.Context, a Actor, c domain.Call) error { return s.gate(ctx, a, c) }
