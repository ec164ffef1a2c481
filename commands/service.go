// Package commands turns requests into ledger events: each command loads
// the state it decides on, asks package domain to decide, appends the
// decision with the stream version it was made on, and waits until the
// projections show it, so the caller reads its own write.
package commands

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/events"
)

// Waiter is what commands wait on for read-your-writes: the projector.
type Waiter interface {
	WaitFor(ctx context.Context, position int64) error
}

// Actor is who issues a command and the request facts recorded in each
// event's metadata.
type Actor struct {
	Tenant    string
	KeyPrefix string
	RequestID string
	// IdempotencyKey, when set, makes event ids derived from it, so that a
	// retry of a request interrupted by a crash dedupes in the ledger.
	IdempotencyKey string
	// Route names the operation (for example "POST /v1/sessions") so the
	// same idempotency key on two endpoints derives different ids.
	Route string
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// eventID returns the id of the command's i-th event.
func (a Actor) eventID(i int) string {
	if a.IdempotencyKey == "" {
		return events.NewID()
	}
	return a.derive("evt", i)
}

// newID returns a fresh id with prefix, or one derived from the idempotency
// key so that a retried command names the same resource.
func (a Actor) newID(prefix string) string {
	if a.IdempotencyKey == "" {
		return domain.NewID(prefix)
	}
	return a.derive(prefix, 0)
}

func (a Actor) derive(prefix string, i int) string {
	h := sha256.New()
	for _, s := range []string{"haldir/idempotency/v1", a.Tenant, a.Route, a.IdempotencyKey, prefix, fmt.Sprint(i)} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	sum := h.Sum(nil)
	if prefix == "evt" {
		return "evt_" + idEncoding.EncodeToString(sum[:15])
	}
	return domain.NewIDFromBytes(prefix, sum[:15])
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
	Webhook(ctx context.Context, tenant, id string) (domain.Webhook, bool, error)
}

// URLGuard checks outbound URLs a caller gave us (webhooks.Guard).
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
	vault    *Vault
	reads    Reads
	guard    URLGuard
	// settleTimeout bounds the wait for projections after a command.
	settleTimeout time.Duration
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
	s := &Service{store: store, waiter: waiter, log: log, now: func() time.Time { return opts.Now().UTC() }, settleTimeout: 5 * time.Second, vault: opts.Vault, reads: opts.Reads, guard: opts.Guard}
	if s.guard == nil {
		s.guard = refuseAll{}
	}
	s.sessions = newSessionRepo(store, opts.MaxCachedSessions)
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
	return recs, err
}

// appendUnsettled appends like append but does not wait for projections;
// the caller settles the returned position itself (see Settle).
func (s *Service) appendUnsettled(ctx context.Context, ps ...events.Proposed) (int64, error) {
	recs, err := s.appendDurable(ctx, ps...)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	return recs[len(recs)-1].Position, nil
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
		out = append(out, e)
	}
	return out, nil
}

// settle waits until the projections include recs (see Settle).
func (s *Service) settle(ctx context.Context, recs []events.Event) {
	if len(recs) > 0 {
		s.Settle(ctx, recs[len(recs)-1].Position)
	}
}

// Settle waits, within a bound, for the projections to reach position,
// giving read-your-writes to a command that appended without waiting. A
// timeout is logged, not returned: the events are durable, only slower to
// show.
func (s *Service) Settle(ctx context.Context, position int64) {
	if s.waiter == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.settleTimeout)
	defer cancel()
	if err := s.waiter.WaitFor(ctx, position); err != nil {
		s.log.Warn("projections lag behind a committed command", "position", position, "err", err)
	}
}

type refuseAll struct{}

func (refuseAll) CheckURL(context.Context, string) error {
	return errors.New("commands: no outbound URL guard is configured")
}
