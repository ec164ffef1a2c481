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
// queue's claims split the work, and a delivery claimed by a process that
// died is taken up again when its lease ends. Fill the fields, then call
// Run; zero optional fields take defaults.
type Worker struct {
	Queue     *Queue    // required
	Endpoints Endpoints // required
	// Guard re-checks each URL before an attempt and, unless Client is
	// set, guards every connection.
	Guard outbound.Guard
	// Client sends the deliveries; nil means Guard.Client(Timeout).
	Client *http.Client
	// Timeout bounds one attempt (outbound.DefaultTimeout when ≤ 0); it must be
	// shorter than the queue's lease.
	Timeout time.Duration
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
	if timeout >= w.Queue.lease {
		return fmt.Errorf("webhooks: worker timeout %v must be shorter than the queue lease %v", timeout, w.Queue.lease)
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
	r := &run{w: w, client: client, timeout: timeout, log: log}

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
	log     *slog.Logger
}

// attempt makes and records one attempt of j.
func (r *run) attempt(ctx context.Context, j Job) {
	w := r.w
	log := r.log.With("tenant_id", j.TenantID, "webhook_id", j.WebhookID, "delivery_id", j.DeliveryID, "attempt", j.Attempts+1)
	url, secrets, active, err := w.Endpoints.Endpoint(ctx, j.TenantID, j.WebhookID)
	if err != nil {
		log.Warn("webhooks: endpoint lookup failed; retrying after the lease", "err", err)
		return
	}
	if !active {
		if err := w.Queue.disable(ctx, j, "webhook inactive"); err != nil {
			log.Warn("webhooks: cannot disable delivery", "err", err)
		}
		return
	}
	actx, cancel := context.WithTimeout(ctx, r.timeout)
	start := time.Now()
	var res Result
	if err := w.Guard.CheckURL(actx, url); err != nil {
		res = Result{Start: start, Duration: time.Since(start), Error: "url refused: " + strings.TrimPrefix(err.Error(), "outbound: ")}
	} else {
		res = Deliver(actx, r.client, Delivery{ID: j.EventID, URL: url, Secrets: secrets, Body: j.Body})
	}
	cancel()
	var next time.Time
	if !res.OK() && !res.Gone {
		if d, ok := w.Backoff.Next(j.Attempts+1, res.RetryAfter, nil); ok {
			next = res.Start.Add(res.Duration).Add(d)
		}
	}
	if err := w.Queue.Record(ctx, j, res, next); err != nil {
		log.Warn("webhooks: cannot record attempt", "err", err)
		return
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
