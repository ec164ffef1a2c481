package webhooks_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/internal/outbound"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/webhooks"
)

// The lease figures of the in-process tests: small, so that a takeover
// takes a second of wall time, with five renewals a lease.
const (
	testLease = time.Second
	testRenew = 200 * time.Millisecond
)

// hit is one request a slowReceiver got.
type hit struct {
	id      string
	arrived time.Time
	ended   time.Time // zero while in flight
	status  int       // the answer; 0 when the client went away first
	aborted bool      // the client went away before the answer
}

// slowReceiver is a webhook endpoint on a real HTTP server on 127.0.0.1
// that verifies every signature with webhooks.Verify and answers the n-th
// request (from 1) as answer says: answer may block, and returns the status
// to send, or 0 to hang until the client goes away. Unlike receiver, it
// allows concurrent requests for one webhook-id: a takeover makes them.
type slowReceiver struct {
	t       *testing.T
	srv     *httptest.Server
	secrets []string
	answer  func(ctx context.Context, n int) int

	mu      sync.Mutex
	hits    []*hit
	arrival []chan struct{} // arrival[n-1] closes when n requests arrived
	end     []chan struct{} // end[n-1] closes when request n ended
}

func newSlowReceiver(t *testing.T, secrets []string, answer func(ctx context.Context, n int) int) *slowReceiver {
	r := &slowReceiver{t: t, secrets: secrets, answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *slowReceiver) URL() string { return r.srv.URL + "/hook" }

// chans returns the channels of request n, creating them.
func (r *slowReceiver) chans(n int) (arrived, ended chan struct{}) {
	for len(r.arrival) < n {
		r.arrival = append(r.arrival, make(chan struct{}))
		r.end = append(r.end, make(chan struct{}))
	}
	return r.arrival[n-1], r.end[n-1]
}

// arrived is closed when n requests have arrived.
func (r *slowReceiver) arrived(n int) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, _ := r.chans(n)
	return a
}

// ended is closed when request n has ended.
func (r *slowReceiver) ended(n int) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, e := r.chans(n)
	return e
}

// await waits for c or fails the test after within.
func await(t *testing.T, c <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(within):
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
}

// requests returns copies of the requests so far.
func (r *slowReceiver) requests() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hit
	for _, h := range r.hits {
		out = append(out, *h)
	}
	return out
}

func (r *slowReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		r.t.Errorf("receiver: read body: %v", err)
	}
	if err := webhooks.Verify(r.secrets, req.Header, body, time.Now(), 0); err != nil {
		r.t.Errorf("receiver: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	h := &hit{id: req.Header.Get(webhooks.HeaderID), arrived: time.Now()}
	r.mu.Lock()
	r.hits = append(r.hits, h)
	n := len(r.hits)
	arrived, ended := r.chans(n)
	close(arrived)
	r.mu.Unlock()

	status := r.answer(req.Context(), n)
	if status == 0 {
		<-req.Context().Done()
	}
	r.mu.Lock()
	h.ended = time.Now()
	if req.Context().Err() != nil {
		h.aborted = true
	} else {
		h.status = status
	}
	close(ended)
	r.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
	}
}

// logRecorder is a slog.Handler keeping every message.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" || a.Key == "err" {
			msg += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	l.msgs = append(l.msgs, msg)
	return nil
}

// matching returns the messages containing sub.
func (l *logRecorder) matching(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			out = append(out, m)
		}
	}
	return out
}

// TestLeaseTakeover: worker A claims a delivery to a slow receiver and
// stops renewing its lease, as a frozen or dead replica would; worker B,
// on its own database handle, takes the delivery over within the lease
// and delivers it. The receiver gets the webhook-id exactly twice (one
// duplicate, A's and B's), and only B's attempt is recorded: A either
// finishes after the takeover, and its outcome is refused, or resumes
// renewing, finds the lease lost and abandons its request.
func TestLeaseTakeover(t *testing.T) {
	for _, b := range sqltest.Backends() {
		for _, tc := range []struct {
			name   string
			resume bool
			// wantLog is what A logs when it finds the lease lost.
			wantLog string
		}{
			{"frozen A's late outcome is refused", false, "lease lost before the attempt was recorded"},
			{"resumed A abandons its request", true, "lease lost; attempt abandoned and not recorded reason=webhooks: delivery lease lost"},
		} {
			t.Run(b.Name+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				db, where := openDB(t, b)
				qA, qB := webhooks.NewQueue(reopen(t, db, where), testLease), webhooks.NewQueue(reopen(t, db, where), testLease)
				secrets := []string{webhooks.NewSecret()}
				var rcv *slowReceiver
				rcv = newSlowReceiver(t, secrets, func(ctx context.Context, n int) int {
					switch {
					case n == 1 && tc.resume:
						return 0 // A's request hangs until A gives it up
					case n == 1:
						// A's request outlives its lease: it answers once B has
						// taken the delivery over and sent it too.
						select {
						case <-rcv.arrived(2):
						case <-time.After(10 * time.Second):
						}
						time.Sleep(100 * time.Millisecond)
						return 200
					case tc.resume:
						// B's request outlives B's lease (which B renews) and
						// ends after A's.
						select {
						case <-rcv.ended(1):
						case <-time.After(10 * time.Second):
						}
						time.Sleep(testLease)
						return 200
					default:
						time.Sleep(testLease + 500*time.Millisecond)
						return 200
					}
				})
				eps := &endpoints{}
				eps.set("ten_a", "wh_1", endpoint{url: rcv.URL(), secrets: secrets, active: true})
				var frozen atomic.Bool
				frozen.Store(true)
				logA, logB := &logRecorder{}, &logRecorder{}
				worker := func(q *webhooks.Queue, log *logRecorder) *webhooks.Worker {
					// Parallel 1: while its attempt runs, a worker does not claim.
					return &webhooks.Worker{Queue: q, Endpoints: eps, Guard: outbound.Guard{AllowPrivate: true},
						Timeout: 10 * time.Second, Renew: testRenew, Interval: 10 * time.Millisecond, Backoff: fastBackoff,
						Parallel: 1, Log: slog.New(log)}
				}
				a := worker(qA, logA)
				webhooks.SetRenewing(a, func() bool { return !frozen.Load() })
				start(t, a)
				id, _, err := qA.Enqueue(ctx, message("ten_a", "wh_1", "evt_1", time.Time{}))
				if err != nil {
					t.Fatal(err)
				}
				await(t, rcv.arrived(1), 10*time.Second, "A's request")
				st, err := qB.Get(ctx, "ten_a", id)
				if err != nil || st.Status != domain.DeliveryPending || st.Attempts != 0 {
					t.Fatalf("delivery in flight: %+v, %v", st, err)
				}
				leaseEnd := st.NextAttemptAt // A never renews it
				start(t, worker(qB, logB))

				await(t, rcv.arrived(2), 10*time.Second, "B to take the delivery over")
				if tc.resume {
					resumed := time.Now()
					frozen.Store(false)
					await(t, rcv.ended(1), 5*time.Second, "A to abandon its request")
					if h := rcv.requests()[0]; !h.aborted || h.ended.Sub(resumed) > testRenew+time.Second {
						t.Errorf("A's request: %+v, resumed at %v; want it abandoned within a renewal", h, resumed)
					}
				}
				final := waitStatus(t, qB, "ten_a", id, 15*time.Second)

				hits := rcv.requests()
				if len(hits) != 2 {
					t.Fatalf("receiver got %d requests, want 2 (A's and B's): %+v", len(hits), hits)
				}
				for _, h := range hits {
					if h.id != "evt_1" {
						t.Errorf("webhook-id %q, want evt_1", h.id)
					}
				}
				duplicates := len(hits) - 1
				if duplicates != 1 {
					t.Errorf("%d duplicates, want 1", duplicates)
				}
				wantA := map[bool]string{false: "answered 200", true: "aborted"}[tc.resume]
				if gotA := map[bool]string{false: "answered 200", true: "aborted"}[hits[0].aborted]; gotA != wantA || !tc.resume && hits[0].status != 200 {
					t.Errorf("A's request %+v, want %s", hits[0], wantA)
				}
				if hits[1].aborted || hits[1].status != 200 {
					t.Errorf("B's request %+v, want answered 200", hits[1])
				}
				takeover := hits[1].arrived.Sub(leaseEnd)
				t.Logf("B took over %v after A's lease ended, %v after A's claim (lease %v)",
					takeover.Round(time.Millisecond), (takeover + testLease).Round(time.Millisecond), testLease)
				if takeover < 0 || takeover > time.Second {
					t.Errorf("B sent %v after A's lease ended at %v; want within [0, 1s]", takeover, leaseEnd)
				}

				as := attemptsOf(t, qB, "ten_a", "evt_1")
				if len(as) != 1 || as[0].StatusCode != 200 || as[0].Attempt != 1 {
					t.Errorf("recorded attempts %+v, want B's one attempt, 200", as)
				}
				if final.Status != domain.DeliveryDelivered || final.Attempts != 1 {
					t.Errorf("final state %+v, want delivered after 1 attempt", final)
				}
				// B's attempt outlived its lease: it renewed, so A, polling
				// again once its own attempt ended, did not take it back.
				if len(as) == 1 && as[0].Duration < testLease {
					t.Errorf("B's attempt lasted %v, want longer than the lease", as[0].Duration)
				}
				if got := logA.matching(tc.wantLog); len(got) != 1 {
					t.Errorf("A logged %q, want one %q", logA.matching("lease"), tc.wantLog)
				}
				if got := logB.matching("lease"); len(got) != 0 {
					t.Errorf("B logged %q", got)
				}
			})
		}
	}
}

// TestLeaseRenewedNotTakenOver: a live attempt lasting three leases, whose
// worker keeps renewing, is not taken over by a second worker polling the
// same database all along: its lease never lapses, the receiver gets the
// message once, and the one attempt is recorded.
func TestLeaseRenewedNotTakenOver(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, where := openDB(t, b)
			qA, qB := webhooks.NewQueue(reopen(t, db, where), testLease), webhooks.NewQueue(reopen(t, db, where), testLease)
			secrets := []string{webhooks.NewSecret()}
			slow := 3 * testLease
			rcv := newSlowReceiver(t, secrets, func(ctx context.Context, n int) int {
				time.Sleep(slow)
				return 200
			})
			eps := &endpoints{}
			eps.set("ten_a", "wh_1", endpoint{url: rcv.URL(), secrets: secrets, active: true})
			logA, logB := &logRecorder{}, &logRecorder{}
			worker := func(q *webhooks.Queue, log *logRecorder) *webhooks.Worker {
				return &webhooks.Worker{Queue: q, Endpoints: eps, Guard: outbound.Guard{AllowPrivate: true},
					Timeout: 10 * time.Second, Renew: testRenew, Interval: 5 * time.Millisecond, Backoff: fastBackoff,
					Log: slog.New(log)}
			}
			start(t, worker(qA, logA))
			id, _, err := qA.Enqueue(ctx, message("ten_a", "wh_1", "evt_1", time.Time{}))
			if err != nil {
				t.Fatal(err)
			}
			await(t, rcv.arrived(1), 10*time.Second, "A's request")
			start(t, worker(qB, logB))

			// While the attempt runs, its lease always ends in the future.
			leaseEnds := map[time.Time]bool{}
			for {
				now := time.Now()
				st, err := qB.Get(ctx, "ten_a", id)
				if err != nil {
					t.Fatal(err)
				}
				if st.Status != domain.DeliveryPending {
					break
				}
				if !st.NextAttemptAt.After(now) {
					t.Fatalf("the lease of the attempt in flight lapsed: it ended at %v, now is %v", st.NextAttemptAt, now)
				}
				leaseEnds[st.NextAttemptAt] = true
				if time.Since(now) > 20*time.Second {
					t.Fatal("the delivery did not finish")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(leaseEnds) < 5 {
				t.Errorf("saw %d lease ends during a %v attempt renewed every %v; want at least 5", len(leaseEnds), slow, testRenew)
			}
			final, err := qB.Get(ctx, "ten_a", id)
			if err != nil || final.Status != domain.DeliveryDelivered || final.Attempts != 1 {
				t.Errorf("final state %+v, %v; want delivered after 1 attempt", final, err)
			}
			if hits := rcv.requests(); len(hits) != 1 || hits[0].status != 200 {
				t.Errorf("receiver got %+v, want one request, answered 200", hits)
			}
			as := attemptsOf(t, qB, "ten_a", "evt_1")
			if len(as) != 1 || as[0].StatusCode != 200 || as[0].Duration < slow {
				t.Errorf("recorded attempts %+v, want one of at least %v, 200", as, slow)
			}
			for name, l := range map[string]*logRecorder{"A": logA, "B": logB} {
				if got := l.matching("lease"); len(got) != 0 {
					t.Errorf("%s logged %q", name, got)
				}
			}
		})
	}
}
