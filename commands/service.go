// Package commands turns requests into ledger events: each command loads
// the state it decides on, asks package domain to decide, appends the
// decision with the stream version it was made on, and waits until the
// projections show it, so the caller reads its own write.
package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// Waiter is what commands wait on for read-your-writes: the projector.
type Waiter interface {
	WaitFor(ctx context.Context, position int64) error
	// Reached reports, without waiting, whether the read models include
	// position.
	Reached(position int64) bool
}

// Actor is who issues a command and the request facts recorded in each
// event's metadata.
type Actor struct {
	Tenant    string
	KeyPrefix string
	RequestID string
	// IdempotencyKey is the request's Idempotency-Key, recorded in each
	// event's metadata. Set it with WithIdempotencyKey, which also makes
	// the request's ids derived from it.
	IdempotencyKey string
	// Route names the operation (for example "POST /v1/sessions") so the
	// same idempotency key on two endpoints derives different ids.
	Route string
	// seq numbers the ids derived in this request (WithIdempotencyKey).
	seq *idSequence
}

func (a Actor) meta(sessionID, agentID string) events.Metadata {
	return events.Metadata{Actor: a.KeyPrefix, SessionID: sessionID, AgentID: agentID, RequestID: a.RequestID, IdempotencyKey: a.IdempotencyKey}
}

// Reads are the projected reads commands decide with where deciding on a
// cached aggregate would be unsafe across replicas, or where the ledger
// has no index (request id to approval stream). projections.Queries
// implements it.
type Reads interface {
	Session(ctx context.Context, tenant, id string) (domain.Session, bool, error)
	ApprovalRules(ctx context.Context, tenant string) ([]domain.ApprovalRule, error)
	ApprovalBinding(ctx context.Context, tenant, requestID string) (string, bool, error)
	// OpenApprovals returns the bindings of a session's requests that are
	// pending or approved and unused.
	OpenApprovals(ctx context.Context, tenant, sessionID string) ([]string, error)
	// LiveSessions returns the ids of the tenant's sessions of agentID ("" for
	// every agent) that are neither revoked nor expired at now.
	LiveSessions(ctx context.Context, tenant, agentID string, now time.Time) ([]string, error)
	Webhook(ctx context.Context, tenant, id string) (domain.Webhook, bool, error)
}

// URLGuard checks outbound URLs a caller gave us (outbound.Guard).
type URLGuard interface {
	CheckURL(ctx context.Context, raw string) error
}

// Service runs commands. It is safe for concurrent use.
type Service struct {
	store    events.Store
	waiter   Waiter
	log      *slog.Logger
	now      func() time.Time
	sessions *sessionRepo
	kills    killSwitches
	vault    *Vault
	reads    Reads
	guard    URLGuard
	// settleTimeout bounds the wait for projections after a command.
	settleTimeout time.Duration
	// positions are the tenants' last appended positions (AwaitTenant).
	positions tenantPositions
	// ackDurable: hot commands answer once durable (acknowledge).
	ackDurable bool
}

// Options configure a Service.
type Options struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxCachedSessions bounds the session aggregate cache (default 100,000).
	MaxCachedSessions int
	// Vault enables the secret commands; nil leaves them unavailable.
	Vault *Vault
	// Reads serves projected reads (secrets, approvals).
	Reads Reads
	// Guard checks webhook URLs; nil refuses every URL.
	Guard URLGuard
	// SettleTimeout bounds a command's wait for the projections to show
	// what it appended (default 5 s).
	SettleTimeout time.Duration
	// AcknowledgeDurable has the hot commands (see acknowledge) answer as
	// soon as their events are durable, without waiting for the read
	// models: a later request of the tenant to this process still sees
	// them (AwaitTenant), and a request to another process that echoes
	// their position. Without it they settle like every other command, so
	// that every replica sharing the read models shows them at once.
	AcknowledgeDurable bool
}

// New returns a Service appending to store and waiting on waiter.
func New(store events.Store, waiter Waiter, log *slog.Logger, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxCachedSessions == 0 {
		opts.MaxCachedSessions = 100_000
	}
	if opts.SettleTimeout == 0 {
		opts.SettleTimeout = 5 * time.Second
	}
	s := &Service{store: store, waiter: waiter, log: log, now: func() time.Time { return opts.Now().UTC() }, settleTimeout: opts.SettleTimeout, vault: opts.Vault, reads: opts.Reads, guard: opts.Guard,
		ackDurable: opts.AcknowledgeDurable}
	if s.guard == nil {
		s.guard = refuseAll{}
	}
	s.sessions = newSessionRepo(store, opts.MaxCachedSessions)
	s.kills.init(store)
	return s
}

// proposal is an event a decision produced, before it has an id or version.
type proposal struct {
	typ     string
	payload any
}

func encode(p any) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("commands: event payload %T is not encodable: %v", p, err))
	}
	return b
}

// append appends proposed events and waits for the projections. A retried
// idempotent command whose derived ids are already recorded gets the
// recorded events back, whatever it decided this time.
func (s *Service) append(ctx context.Context, ps ...events.Proposed) ([]events.Event, error) {
	recs, err := s.appendDurable(ctx, ps...)
	if err != nil {
		return nil, err
	}
	s.settle(ctx, recs)
	return recs, nil
}

// appendDurable is append without the wait for the projections.
func (s *Service) appendDurable(ctx context.Context, ps ...events.Proposed) ([]events.Event, error) {
	recs, err := s.store.Append(ctx, ps...)
	if errors.Is(err, events.ErrDuplicateID) {
		recs, err = recorded(ctx, s.store, ps)
	}
	if err == nil {
		s.wrote(recs)
	}
	return recs, err
}

// wrote records recs as the latest writes of their tenants (AwaitTenant).
func (s *Service) wrote(recs []events.Event) {
	for i := range recs {
		s.positions.note(recs[i].Tenant, recs[i].Position)
	}
}

// acknowledge ends a hot command, one on every agent's request path
// (sessions, audit, payments, governed calls), whose decisions read the
// ledger and aggregates, not read models. With AcknowledgeDurable its
// events are durable and it answers at once with their position: the read
// models show them to a later request of the tenant on this replica
// (AwaitTenant), and on any replica to a request that echoes the
// position. Without, it settles.
func (s *Service) acknowledge(ctx context.Context, recs []events.Event) {
	if !s.ackDurable {
		s.settle(ctx, recs)
		return
	}
	s.wrote(recs)
	if len(recs) > 0 {
		s.answered(ctx, recs[len(recs)-1].Position)
	}
}

// answered records, for the response, a position a command answers without
// having waited for the read models to reach it; with AcknowledgeDurable
// it first holds the command to the projections' pace (keepUp).
func (s *Service) answered(ctx context.Context, pos int64) {
	if s.ackDurable {
		s.keepUp(ctx, pos)
	}
	noteWritten(ctx, pos, s.waiter == nil || s.waiter.Reached(pos))
}

// MaxUnprojected bounds how far the read models may trail a hot write
// answered once durable: past it the write waits until they are within
// the bound again. Writers are then held to the pace of the projections,
// so the read models stay a bounded distance behind the ledger however
// long the load lasts, instead of falling ever further behind.
const MaxUnprojected = 500

// keepUp holds a hot write whose position is more than MaxUnprojected
// ahead of the read models (see MaxUnprojected), within the settle bound.
func (s *Service) keepUp(ctx context.Context, pos int64) {
	if s.waiter == nil || pos <= MaxUnprojected || s.waiter.Reached(pos-MaxUnprojected) {
		return
	}
	if err := s.AwaitPosition(context.WithoutCancel(ctx), pos-MaxUnprojected); err != nil {
		s.log.Warn("projections lag behind the ledger by more than the bound", "position", pos, "bound", MaxUnprojected, "err", err)
	}
}

// AwaitTenant waits, within the settle bound, until the read models include
// every event this process has appended for tenant, so that a request sees
// the tenant's earlier writes on this replica without naming a position.
// It returns at once when they already do, the usual case.
func (s *Service) AwaitTenant(ctx context.Context, tenant string) error {
	// Outcomes of governed calls may still be on their way to the ledger
	// (CompleteCall): they are part of what the tenant wrote.
	if drained := s.positions.pending(tenant); drained != nil {
		t := time.NewTimer(s.settleTimeout)
		defer t.Stop()
		select {
		case <-drained:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return ErrNotProjected
		}
	}
	return s.AwaitPosition(ctx, s.positions.get(tenant))
}

// appendUnsettled appends like append but does not wait for projections,
// and returns the position of the last event; the caller settles it
// (SettleLater) unless the outcome is an observation no query must show
// at once.
func (s *Service) appendUnsettled(ctx context.Context, ps ...events.Proposed) (int64, error) {
	recs, err := s.appendDurable(ctx, ps...)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	pos := recs[len(recs)-1].Position
	s.answered(ctx, pos)
	return pos, nil
}

// SettleLater starts settling position in the background, for a hot
// command that overlaps the wait with other work (a governed call, with
// its upstream call); wait returns once settled. With AcknowledgeDurable
// there is nothing to wait for (see acknowledge).
func (s *Service) SettleLater(ctx context.Context, position int64) (wait func()) {
	if s.ackDurable {
		return func() {}
	}
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		s.Settle(ctx, position)
	}()
	return func() { <-settled }
}

// recorded returns the stored events with the ids of ps.
func recorded(ctx context.Context, store events.Store, ps []events.Proposed) ([]events.Event, error) {
	out := make([]events.Event, 0, len(ps))
	for _, p := range ps {
		e, ok, err := store.Lookup(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("commands: event %s reported as duplicate but not found", p.ID)
		}
		if e.Tenant != p.Tenant || e.Stream != p.Stream {
			// Ids are derived so that this cannot happen (ids.go); if it
			// does, say so rather than pass another event off as this one.
			return nil, fmt.Errorf("commands: event id %s is already taken by an event on another stream", p.ID)
		}
		out = append(out, e)
	}
	return out, nil
}

// settle waits until the projections include recs (see Settle).
func (s *Service) settle(ctx context.Context, recs []events.Event) {
	s.wrote(recs)
	if len(recs) > 0 {
		s.Settle(ctx, recs[len(recs)-1].Position)
	}
}

// Settle waits, within a bound, for the projections to reach position,
// giving read-your-writes to a command that appended without waiting. A
// timeout does not fail the command, whose events are durable: it is
// logged and recorded in the request's Written (see WithWritten), which the
// API turns into a header.
func (s *Service) Settle(ctx context.Context, position int64) {
	err := s.AwaitPosition(context.WithoutCancel(ctx), position)
	if err != nil {
		s.log.Warn("projections lag behind a committed command", "position", position, "err", err)
	}
	noteWritten(ctx, position, err == nil)
}

// ErrNotProjected is returned by AwaitPosition when the read models do not
// reach the position within the bound; the API answers it as a retryable
// 503.
var ErrNotProjected = domain.Errorf(domain.CodeUnavailable, "the read models have not caught up with that ledger position yet; retry shortly")

// AwaitPosition waits, within the settle bound, until the read models
// include ledger position, for a read that must see a write (made here or
// on another replica). It returns ErrNotProjected on timeout.
func (s *Service) AwaitPosition(ctx context.Context, position int64) error {
	if s.waiter == nil || position <= 0 || s.waiter.Reached(position) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.settleTimeout)
	defer cancel()
	if err := s.waiter.WaitFor(ctx, position); err != nil {
		if ctx.Err() != nil {
			return ErrNotProjected
		}
		return err
	}
	return nil
}

// Session is session for the API's reads on the hot routes (Haldir's MCP
// tool list), which do not wait for the tenant's writes.
func (s *Service) Session(ctx context.Context, tenant, id string) (domain.Session, bool, error) {
	return s.session(ctx, tenant, id)
}

// session reads a session from the read model for a decision that must see
// a revocation made on any replica (revocations settle before they
// answer). A session the read model does not hold yet may have been
// created by this tenant a moment ago, acknowledged before its projection:
// the read is retried once the read models include the tenant's writes.
func (s *Service) session(ctx context.Context, tenant, id string) (domain.Session, bool, error) {
	ses, found, err := s.reads.Session(ctx, tenant, id)
	if err != nil || found || s.waiter == nil || s.positions.get(tenant) == 0 {
		return ses, found, err
	}
	// Read again even if the read models have meanwhile caught up: they
	// may have done so after the first read.
	if err := s.AwaitTenant(ctx, tenant); err != nil {
		return ses, false, err
	}
	return s.reads.Session(ctx, tenant, id)
}

// retryPause reports whether a decision that lost a version race on its
// attempt-th try should be re-made, after waiting a little: the first
// retries go at once (a replica's own pipelined writes conflict only once),
// later ones wait a random time up to a bound that doubles each attempt,
// capped at 20 ms, so that writers on several replicas desynchronise.
func retryPause(ctx context.Context, attempt int) bool {
	if attempt >= maxDecisionRetries || ctx.Err() != nil {
		return false
	}
	if attempt < 2 {
		return true
	}
	bound := min(time.Millisecond<<min(attempt-2, 5), 20*time.Millisecond)
	t := time.NewTimer(rand.N(bound) + time.Millisecond/4)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type refuseAll struct{}

func (refuseAll) CheckURL(context.Context, string) error {
	return errors.New("commands: no outbound URL guard is configured")
}
