package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/haldir-dev/haldir/internal/outbound"
)

// Endpoints tells a Worker where a tenant's webhook lives. Registrations
// are kept elsewhere (on the ledger); the worker asks at every attempt, so
// a changed URL, a rotated secret or a deactivation applies at once.
type Endpoints interface {
	// Endpoint returns the URL and the secrets to sign with (more than one
	// during a rotation's grace period) of the tenant's webhook, and
	// whether it is active. An unknown webhook is inactive, not an error;
	// an error means "cannot tell now" and the delivery is retried after
	// its lease.
	Endpoint(ctx context.Context, tenantID, webhookID string) (url string, secrets []string, active bool, err error)
}

// EndpointsFunc adapts a function to Endpoints.
type EndpointsFunc func(ctx context.Context, tenantID, webhookID string) (string, []string, bool, error)

// Endpoint calls f.
func (f EndpointsFunc) Endpoint(ctx context.Context, tenantID, webhookID string) (string, []string, bool, error) {
	return f(ctx, tenantID, webhookID)
}

// The Worker defaults.
const (
	DefaultInterval = time.Second
	DefaultParallel = 8
)

// Worker delivers a Queue's due deliveries. Every replica may run one: the
// queue's claims split the work. While an attempt runs, its worker renews
// the delivery's lease every Renew, so a live attempt, however slow, is
// never taken over; the leases of a worker that died (or froze) run out
// within the queue's lease of their last renewal, and other workers then
// take those deliveries over. Delivery is at least once: the dead worker's
// receiver may have got the message already, and gets it again with the
// same webhook-id. Fill the fields, then call Run; zero optional fields
// take defaults.
//
// A worker that finds its lease taken over (its renewal is refused, or
// the lease ran out before a renewal got through) abandons the attempt:
// it cancels the request and records nothing, leaving the delivery to
// its new owner (or, when nobody took it yet, to the next claim). Should
// the takeover happen between its last renewal and the recording, the
// recording is refused (ErrLeaseLost) and the new owner's outcome stands.
type Worker struct {
	Queue     *Queue    // required
	Endpoints Endpoints // required
	// Guard re-checks each URL before an attempt and, unless Client is
	// set, guards every connection.
	Guard outbound.Guard
	// Client sends the deliveries; nil means Guard.Client(Timeout).
	Client *http.Client
	// Timeout bounds one attempt (outbound.DefaultTimeout when ≤ 0). It may
	// exceed the queue's lease, which is renewed while the attempt runs.
	Timeout time.Duration
	// Renew is how often the lease of each delivery in flight is renewed
	// (a third of the queue's lease when ≤ 0); it must be shorter than the
	// lease.
	Renew time.Duration
	// Interval is how often the queue is polled (DefaultInterval).
	Interval time.Duration
	// Wake, if set, makes the worker poll at once when it receives, for
	// example after a delivery was enqueued.
	Wake <-chan struct{}
	// Parallel bounds concurrent attempts (DefaultParallel).
	Parallel int
	// Backoff is the retry schedule.
	Backoff Backoff
	// OnGone, if set, is called after a 410 Gone answer has disabled a
	// delivery, so that the webhook can be disabled.
	OnGone func(ctx context.Context, tenantID, webhookID string) error
	// Log receives failures; nil discards them.
	Log *slog.Logger
	// OnAttempt, if set, is told the outcome of every attempt made (for
	// metrics): OutcomeDelivered, OutcomeRetrying, OutcomeFailed,
	// OutcomeGone or OutcomeAbandoned.
	OnAttempt func(outcome string)

	// renewing, when set (by tests), is asked before each renewal; false
	// skips it, as a frozen or dead process would.
	renewing func() bool
}

// Run delivers until ctx ends, then waits for the attempts in flight to
// finish and be recorded (each bounded by Timeout) and returns nil. It
// returns an error at once when the worker is misconfigured.
func (w *Worker) Run(ctx context.Context) error {
	if w.Queue == nil || w.Endpoints == nil {
		return errors.New("webhooks: worker needs a Queue and Endpoints")
	}
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = outbound.DefaultTimeout
	}
	renew := w.Renew
	if renew <= 0 {
		renew = w.Queue.lease / 3
	}
	if renew >= w.Queue.lease {
		return fmt.Errorf("webhooks: worker lease renewal every %v must be more often than the queue lease %v", renew, w.Queue.lease)
	}
	interval, parallel := w.Interval, w.Parallel
	if interval <= 0 {
		interval = DefaultInterval
	}
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	client := w.Client
	if client == nil {
		client = w.Guard.Client(timeout)
	}
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &run{w: w, client: client, timeout: timeout, renew: renew, log: log}

	// Attempts in flight finish even when ctx ends: an attempt cut short
	// would be recorded as a failure although the receiver may have got
	// the message, and sent again.
	work := context.WithoutCancel(ctx)
	done := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	inFlight, poll := 0, true
	for {
		if poll && inFlight < parallel && ctx.Err() == nil {
			want := parallel - inFlight
			// work, not ctx: a claim cut short could leave deliveries
			// leased to nobody until the lease ends.
			jobs, err := w.Queue.Claim(work, time.Now(), want)
			if err != nil {
				log.Warn("webhooks: claim failed; retrying", "err", err)
			}
			for _, j := range jobs {
				inFlight++
				wg.Go(func() {
					r.attempt(work, j)
					done <- struct{}{}
				})
			}
			// A full claim may have left more due: claim again as soon
			// as a slot frees.
			poll = err == nil && len(jobs) == want
		}
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			inFlight--
		case <-tick.C:
			poll = true
		case <-w.Wake:
			poll = true
		}
	}
}

type run struct {
	w       *Worker
	client  *http.Client
	timeout time.Duration
	renew   time.Duration
	log     *slog.Logger
}

// errLeaseExpired is why an attempt is abandoned when its lease ran out
// before a renewal got through (the database could not be reached): by
// then another worker may have claimed the delivery.
var errLeaseExpired = errors.New("webhooks: delivery lease ran out before it could be renewed")

// hold renews j's lease every r.renew until release is called. The
// returned context is cancelled, with cause ErrLeaseLost or
// errLeaseExpired, when the lease is lost; release stops the renewals and
// returns j with its lease as last renewed, and that cause (nil while the
// lease holds).
func (r *run) hold(ctx context.Context, j Job, log *slog.Logger) (held context.Context, release func() (Job, error)) {
	held, lose := context.WithCancelCause(ctx)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(r.renew)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if r.w.renewing != nil && !r.w.renewing() {
				continue
			}
			// Bounded by the lease's end (or, for a lease that already ran
			// out, one renewal period), not by release: a renewal cut short
			// may have been applied all the same, and leave this worker with
			// a stale token, which costs the attempt.
			rctx, cancel := context.WithTimeout(ctx, max(time.Until(j.LeaseUntil), r.renew))
			err := r.w.Queue.Renew(rctx, &j, time.Now())
			cancel()
			switch {
			case err == nil:
			case errors.Is(err, ErrLeaseLost):
				lose(ErrLeaseLost)
				return
			case !time.Now().Before(j.LeaseUntil):
				log.Warn("webhooks: cannot renew lease", "err", err)
				lose(errLeaseExpired)
				return
			default:
				log.Warn("webhooks: cannot renew lease; retrying", "err", err)
			}
		}
	}()
	return held, func() (Job, error) {
		close(quit)
		<-done
		cause := context.Cause(held)
		lose(nil)
		return j, cause
	}
}

// The outcomes of an attempt, as OnAttempt reports them.
const (
	OutcomeDelivered = "delivered" // a 2xx answer
	OutcomeRetrying  = "retrying"  // failed; another attempt is scheduled
	OutcomeFailed    = "failed"    // failed, and the retries are exhausted
	OutcomeGone      = "gone"      // 410 Gone: the delivery is disabled
	OutcomeAbandoned = "abandoned" // the lease was lost: not recorded
)

func (w *Worker) outcome(o string) {
	if w.OnAttempt != nil {
		w.OnAttempt(o)
	}
}

// attempt makes and records one attempt of j.
func (r *run) attempt(ctx context.Context, j Job) {
	w := r.w
	log := r.log.With("tenant_id", j.TenantID, "webhook_id", j.WebhookID, "delivery_id", j.DeliveryID, "attempt", j.Attempts+1)
	held, release := r.hold(ctx, j, log)
	res, active, err := r.send(held, j)
	j, lost := release()
	switch {
	case lost != nil:
		// Another worker has the delivery (or may have it), and sends it
		// itself: recording this attempt would overwrite its outcome.
		log.Info("webhooks: delivery lease lost; attempt abandoned and not recorded", "reason", lost.Error())
		w.outcome(OutcomeAbandoned)
		return
	case err != nil:
		log.Warn("webhooks: endpoint lookup failed; retrying after the lease", "err", err)
		return
	case !active:
		if err := w.Queue.disable(ctx, j, "webhook inactive"); err != nil {
			log.Warn("webhooks: cannot disable delivery", "err", err)
		}
		return
	}
	var next time.Time
	if !res.OK() && !res.Gone {
		if d, ok := w.Backoff.Next(j.Attempts+1, res.RetryAfter, nil); ok {
			next = res.Start.Add(res.Duration).Add(d)
		}
	}
	if err := w.Queue.Record(ctx, j, res, next); errors.Is(err, ErrLeaseLost) {
		log.Info("webhooks: delivery lease lost before the attempt was recorded; the new owner's outcome stands",
			"status_code", res.StatusCode)
		w.outcome(OutcomeAbandoned)
		return
	} else if err != nil {
		log.Warn("webhooks: cannot record attempt", "err", err)
		return
	}
	switch {
	case res.OK():
		w.outcome(OutcomeDelivered)
	case res.Gone:
		w.outcome(OutcomeGone)
	case !next.IsZero():
		w.outcome(OutcomeRetrying)
	default:
		w.outcome(OutcomeFailed)
	}
	if !res.OK() {
		log.Info("webhooks: delivery attempt failed", "status_code", res.StatusCode, "error", res.Error,
			"response_excerpt", res.Excerpt, "given_up", next.IsZero())
	}
	if res.Gone && w.OnGone != nil {
		if err := w.OnGone(ctx, j.TenantID, j.WebhookID); err != nil {
			log.Warn("webhooks: OnGone failed", "err", err)
		}
	}
}

// send looks j's webhook up and, when it is active, makes the attempt.
func (r *run) send(ctx context.Context, j Job) (res Result, active bool, err error) {
	w := r.w
	url, secrets, active, err := w.Endpoints.Endpoint(ctx, j.TenantID, j.WebhookID)
	if err != nil || !active {
		return Result{}, active, err
	}
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	if err := w.Guard.CheckURL(actx, url); err != nil {
		return Result{Start: start, Duration: time.Since(start), Error: "url refused: " + strings.TrimPrefix(err.Error(), "outbound: ")}, true, nil
	}
	return Deliver(actx, r.client, Delivery{ID: j.EventID, URL: url, Secrets: secrets, Body: j.Body}), true, nil
}
