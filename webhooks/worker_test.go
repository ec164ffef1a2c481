package webhooks_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/internal/outbound"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/webhooks"
)

// fastBackoff keeps retries quick in tests.
var fastBackoff = webhooks.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 20}

// start runs w until the returned stop is called (or the test ends); stop
// waits for Run to return.
func start(t *testing.T, w *webhooks.Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitStatus(t *testing.T, q *webhooks.Queue, tenant, id string, within time.Duration) webhooks.State {
	t.Helper()
	var st webhooks.State
	waitFor(t, within, "delivery "+id+" to finish", func() bool {
		var err error
		st, err = q.Get(context.Background(), tenant, id)
		if err != nil {
			t.Fatal(err)
		}
		return st.Status != domain.DeliveryPending
	})
	return st
}

// attemptsOf returns the recorded attempts of an event, oldest first.
func attemptsOf(t *testing.T, q *webhooks.Queue, tenant, event string) []domain.DeliveryAttempt {
	t.Helper()
	as, err := q.List(context.Background(), tenant, domain.DeliveryFilter{EventID: event, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(as)
	return as
}

func TestWorkerRetries(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, 10*time.Second)
			secrets := []string{webhooks.NewSecret(), webhooks.NewSecret()} // a rotation in progress
			scripts := map[string][]reply{}
			var scriptMu sync.Mutex
			rcv := newReceiver(t, secrets, func(id string, n int) reply {
				scriptMu.Lock()
				defer scriptMu.Unlock()
				s := scripts[id]
				return s[min(n, len(s))-1]
			})
			eps := &endpoints{}
			eps.set("ten_a", "wh_1", endpoint{url: rcv.URL(), secrets: secrets, active: true})
			eps.set("ten_a", "wh_gone", endpoint{url: rcv.URL(), secrets: secrets, active: true})
			var goneMu sync.Mutex
			var gone []string
			start(t, &webhooks.Worker{
				Queue: q, Endpoints: eps, Guard: outbound.Guard{AllowPrivate: true},
				Timeout: 300 * time.Millisecond, Interval: 10 * time.Millisecond,
				Backoff: webhooks.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 3},
				OnGone: func(_ context.Context, tenant, webhook string) error {
					goneMu.Lock()
					defer goneMu.Unlock()
					gone = append(gone, tenant+"/"+webhook)
					return nil
				},
			})

			type attempt struct {
				Code     int
				Error    string
				Status   domain.DeliveryStatus
				Attempts int
			}
			for _, tc := range []struct {
				name    string
				webhook string
				script  []reply
				want    []int // status code per attempt, 0 for none
				errs    []string
				final   domain.DeliveryStatus
				check   func(t *testing.T, as []domain.DeliveryAttempt)
			}{
				{name: "fails twice then succeeds", webhook: "wh_1",
					script: []reply{{status: 500}, {status: 503}, {status: 200}},
					want:   []int{500, 503, 200}, errs: []string{"HTTP 500 Internal Server Error", "HTTP 503 Service Unavailable", ""},
					final: domain.DeliveryDelivered},
				{name: "timeout then success", webhook: "wh_1",
					script: []reply{{hang: true}, {status: 204}},
					want:   []int{0, 204}, errs: []string{"timeout", ""}, final: domain.DeliveryDelivered,
					check: func(t *testing.T, as []domain.DeliveryAttempt) {
						if as[0].Duration < 250*time.Millisecond {
							t.Errorf("timed-out attempt lasted %v", as[0].Duration)
						}
					}},
				{name: "429 with Retry-After then success", webhook: "wh_1",
					script: []reply{{status: 429, retryAfter: "1"}, {status: 200}},
					want:   []int{429, 200}, errs: []string{"HTTP 429 Too Many Requests", ""}, final: domain.DeliveryDelivered,
					check: func(t *testing.T, as []domain.DeliveryAttempt) {
						if gap := as[1].CreatedAt.Sub(as[0].CreatedAt); gap < time.Second {
							t.Errorf("retried %v after a Retry-After of 1s", gap)
						}
					}},
				{name: "redirect is not followed", webhook: "wh_1",
					script: []reply{{status: 302, location: "http://169.254.169.254/"}, {status: 200}},
					want:   []int{302, 200}, errs: []string{"HTTP 302 Found", ""}, final: domain.DeliveryDelivered},
				{name: "410 disables", webhook: "wh_gone",
					script: []reply{{status: 410}, {status: 200}},
					want:   []int{410}, errs: []string{"HTTP 410 Gone"}, final: domain.DeliveryDisabled},
				{name: "gives up", webhook: "wh_1",
					script: []reply{{status: 500}},
					want:   []int{500, 500, 500}, errs: []string{"HTTP 500 Internal Server Error", "HTTP 500 Internal Server Error", "HTTP 500 Internal Server Error"},
					final: domain.DeliveryFailed},
			} {
				t.Run(tc.name, func(t *testing.T) {
					event := "evt_" + strings.ReplaceAll(tc.name, " ", "_")
					scriptMu.Lock()
					scripts[event] = tc.script
					scriptMu.Unlock()
					id, _, err := q.Enqueue(ctx, message("ten_a", tc.webhook, event, time.Time{}))
					if err != nil {
						t.Fatal(err)
					}
					if tc.script[0].retryAfter != "" {
						// While waiting out Retry-After, the next attempt is
						// scheduled no sooner than the attempt plus its value.
						var st webhooks.State
						waitFor(t, 5*time.Second, "the first attempt", func() bool {
							st, err = q.Get(ctx, "ten_a", id)
							return err == nil && st.Attempts >= 1
						})
						first := attemptsOf(t, q, "ten_a", event)[0]
						if st.Attempts == 1 && st.NextAttemptAt.Before(first.CreatedAt.Add(first.Duration).Add(time.Second)) {
							t.Errorf("next attempt at %v, before the attempt at %v plus Retry-After 1s", st.NextAttemptAt, first.CreatedAt)
						}
					}
					st := waitStatus(t, q, "ten_a", id, 10*time.Second)
					as := attemptsOf(t, q, "ten_a", event)
					var gotCodes []int
					var gotErrs []string
					for i, a := range as {
						gotCodes = append(gotCodes, a.StatusCode)
						gotErrs = append(gotErrs, a.Error)
						if a.Attempt != i+1 || a.Duration < 0 || a.Status != tc.final {
							t.Errorf("attempt %d: %+v", i+1, a)
						}
					}
					if diff := cmp.Diff(tc.want, gotCodes); diff != "" {
						t.Errorf("status codes (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(tc.errs, gotErrs); diff != "" {
						t.Errorf("errors (-want +got):\n%s", diff)
					}
					if st.Status != tc.final || st.Attempts != len(tc.want) || st.LastStatusCode != tc.want[len(tc.want)-1] {
						t.Errorf("final state %s after %d attempts (last %d), want %s after %d", st.Status, st.Attempts, st.LastStatusCode, tc.final, len(tc.want))
					}
					requests, ok := rcv.counts()
					wantOK := 0
					if tc.final == domain.DeliveryDelivered {
						wantOK = 1
					}
					if requests[event] != len(tc.want) || ok[event] != wantOK {
						t.Errorf("receiver saw %d requests and answered 2xx %d times, want %d and %d", requests[event], ok[event], len(tc.want), wantOK)
					}
					if tc.check != nil {
						tc.check(t, as)
					}
				})
			}
			goneMu.Lock()
			defer goneMu.Unlock()
			if diff := cmp.Diff([]string{"ten_a/wh_gone"}, gone); diff != "" {
				t.Errorf("OnGone calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWorkerRestart stops a worker in the middle of retries, leaves a
// claim behind as a crashed process would, and starts a new worker on a
// new database handle: every event is delivered successfully exactly once.
func TestWorkerRestart(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, where := openDB(t, b)
			lease := time.Second
			secrets := []string{webhooks.NewSecret()}
			var healthyMu sync.Mutex
			healthy := false
			rcv := newReceiver(t, secrets, func(string, int) reply {
				healthyMu.Lock()
				defer healthyMu.Unlock()
				if healthy {
					return reply{status: 200}
				}
				return reply{status: 500}
			})
			eps := &endpoints{}
			eps.set("ten_a", "wh_1", endpoint{url: rcv.URL(), secrets: secrets, active: true})
			q1 := webhooks.NewQueue(db, lease)
			const n = 20
			var events []string
			for i := range n {
				ev := fmt.Sprintf("evt_%02d", i)
				events = append(events, ev)
				if _, _, err := q1.Enqueue(ctx, message("ten_a", "wh_1", ev, time.Time{})); err != nil {
					t.Fatal(err)
				}
			}
			worker := func(q *webhooks.Queue) *webhooks.Worker {
				return &webhooks.Worker{Queue: q, Endpoints: eps, Guard: outbound.Guard{AllowPrivate: true},
					Timeout: 500 * time.Millisecond, Interval: 10 * time.Millisecond, Backoff: fastBackoff, Parallel: 4}
			}
			stop := start(t, worker(q1))
			waitFor(t, 10*time.Second, "two failed attempts of every event", func() bool {
				requests, _ := rcv.counts()
				for _, ev := range events {
					if requests[ev] < 2 {
						return false
					}
				}
				return true
			})
			stop()

			for _, ev := range events {
				st, err := q1.Get(ctx, "ten_a", webhooks.DeliveryID("ten_a", "wh_1", ev))
				if err != nil || st.Status != domain.DeliveryPending || st.Attempts < 2 {
					t.Fatalf("%s after the stop: %+v, %v", ev, st, err)
				}
			}
			// Deliveries the stopped worker had claimed stay leased until
			// the lease runs out; wait until at least five are due again.
			waitFor(t, 10*time.Second, "five deliveries due again", func() bool {
				var due int
				db.Read.QueryRow(db.Rebind("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?"),
					time.Now().UnixNano()).Scan(&due)
				return due >= 5
			})
			// A process that claims and dies without recording: the new
			// worker takes those deliveries up once the lease has run out.
			claimedAt := time.Now()
			abandoned, err := q1.Claim(ctx, claimedAt, 5)
			if err != nil || len(abandoned) != 5 {
				t.Fatalf("Claim = %d, %v; want 5 deliveries left to claim", len(abandoned), err)
			}

			healthyMu.Lock()
			healthy = true
			healthyMu.Unlock()
			q2 := webhooks.NewQueue(reopen(t, db, where), lease)
			start(t, worker(q2))
			for _, ev := range events {
				st := waitStatus(t, q2, "ten_a", webhooks.DeliveryID("ten_a", "wh_1", ev), 15*time.Second)
				if st.Status != domain.DeliveryDelivered {
					t.Errorf("%s: %s", ev, st.Status)
				}
			}
			requests, ok := rcv.counts()
			for _, ev := range events {
				as := attemptsOf(t, q2, "ten_a", ev)
				if ok[ev] != 1 || requests[ev] != len(as) {
					t.Errorf("%s: answered 2xx %d times, %d requests for %d recorded attempts; want 1 success and one request per attempt", ev, ok[ev], requests[ev], len(as))
				}
			}
			for _, j := range abandoned {
				as := attemptsOf(t, q2, "ten_a", j.EventID)
				if last := as[len(as)-1]; last.CreatedAt.Before(claimedAt.Add(lease)) {
					t.Errorf("%s attempted at %v, inside the abandoned lease (until %v)", j.EventID, last.CreatedAt, claimedAt.Add(lease))
				}
			}
		})
	}
}

// TestWorkersConcurrent runs two workers, each on its own database handle
// as two replicas would, over the same deliveries: no attempt is made
// twice, and each event succeeds exactly once.
func TestWorkersConcurrent(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, where := openDB(t, b)
			secrets := []string{webhooks.NewSecret()}
			rcv := newReceiver(t, secrets, func(_ string, n int) reply {
				if n == 1 {
					return reply{status: 500}
				}
				return reply{status: 200}
			})
			eps := &endpoints{}
			eps.set("ten_a", "wh_1", endpoint{url: rcv.URL(), secrets: secrets, active: true})
			// Postgres: two pools, as two replicas. SQLite serves one
			// process, whose workers share its single writer.
			db2 := db
			if db.Dialect == sqldb.Postgres {
				db2 = reopen(t, db, where)
			}
			qs := []*webhooks.Queue{webhooks.NewQueue(db, 5*time.Second), webhooks.NewQueue(db2, 5*time.Second)}
			n := 150
			if db.Dialect == sqldb.SQLite {
				n = 50 // modernc SQLite is slow under -race
			}
			var events []string
			for i := range n {
				ev := fmt.Sprintf("evt_%03d", i)
				events = append(events, ev)
				if _, _, err := qs[0].Enqueue(ctx, message("ten_a", "wh_1", ev, time.Time{})); err != nil {
					t.Fatal(err)
				}
			}
			for _, q := range qs {
				start(t, &webhooks.Worker{Queue: q, Endpoints: eps, Guard: outbound.Guard{AllowPrivate: true},
					Timeout: 2 * time.Second, Interval: 5 * time.Millisecond, Backoff: fastBackoff, Parallel: 8})
			}
			for _, ev := range events {
				if st := waitStatus(t, qs[1], "ten_a", webhooks.DeliveryID("ten_a", "wh_1", ev), 30*time.Second); st.Status != domain.DeliveryDelivered {
					t.Fatalf("%s: %s", ev, st.Status)
				}
			}
			requests, ok := rcv.counts()
			for _, ev := range events {
				as := attemptsOf(t, qs[0], "ten_a", ev)
				if requests[ev] != 2 || ok[ev] != 1 || len(as) != 2 {
					t.Errorf("%s: %d requests, %d successes, %d recorded attempts; want 2, 1, 2", ev, requests[ev], ok[ev], len(as))
				}
			}
		})
	}
}

// TestWorkerTenantIsolation: two tenants use the same webhook id; each
// tenant's events reach only that tenant's endpoint, signed with its
// secret.
func TestWorkerTenantIsolation(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, 10*time.Second)
			secretA, secretB := webhooks.NewSecret(), webhooks.NewSecret()
			ok := func(string, int) reply { return reply{status: 200} }
			rcvA, rcvB := newReceiver(t, []string{secretA}, ok), newReceiver(t, []string{secretB}, ok)
			var lookupsMu sync.Mutex
			lookups := map[string]int{}
			eps := &endpoints{}
			eps.set("ten_a", "wh_1", endpoint{url: rcvA.URL(), secrets: []string{secretA}, active: true})
			eps.set("ten_b", "wh_1", endpoint{url: rcvB.URL(), secrets: []string{secretB}, active: true})
			counting := webhooks.EndpointsFunc(func(ctx context.Context, tenant, webhook string) (string, []string, bool, error) {
				lookupsMu.Lock()
				lookups[tenant+"/"+webhook]++
				lookupsMu.Unlock()
				return eps.Endpoint(ctx, tenant, webhook)
			})
			start(t, &webhooks.Worker{Queue: q, Endpoints: counting, Guard: outbound.Guard{AllowPrivate: true},
				Timeout: time.Second, Interval: 10 * time.Millisecond, Backoff: fastBackoff})
			for _, m := range []webhooks.Message{
				message("ten_a", "wh_1", "evt_a1", time.Time{}),
				message("ten_a", "wh_1", "evt_a2", time.Time{}),
				message("ten_b", "wh_1", "evt_b1", time.Time{}),
			} {
				id, _, err := q.Enqueue(ctx, m)
				if err != nil {
					t.Fatal(err)
				}
				waitStatus(t, q, m.TenantID, id, 10*time.Second)
			}
			gotA, _ := rcvA.counts()
			gotB, _ := rcvB.counts()
			if diff := cmp.Diff(map[string]int{"evt_a1": 1, "evt_a2": 1}, gotA); diff != "" {
				t.Errorf("tenant A's endpoint got (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int{"evt_b1": 1}, gotB); diff != "" {
				t.Errorf("tenant B's endpoint got (-want +got):\n%s", diff)
			}
			lookupsMu.Lock()
			defer lookupsMu.Unlock()
			if diff := cmp.Diff(map[string]int{"ten_a/wh_1": 2, "ten_b/wh_1": 1}, lookups); diff != "" {
				t.Errorf("endpoint lookups (-want +got):\n%s", diff)
			}
			for tenant, want := range map[string]int{"ten_a": 2, "ten_b": 1} {
				as, err := q.List(ctx, tenant, domain.DeliveryFilter{})
				if err != nil || len(as) != want {
					t.Errorf("List(%s) = %d attempts, %v; want %d", tenant, len(as), err, want)
				}
			}
		})
	}
}

func TestWorkerRefusesOrSkips(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, 10*time.Second)
			secrets := []string{webhooks.NewSecret()}
			rcv := newReceiver(t, secrets, func(string, int) reply { return reply{status: 200} })
			eps := &endpoints{}
			eps.set("ten_a", "wh_inactive", endpoint{url: rcv.URL(), secrets: secrets, active: false})
			eps.set("ten_a", "wh_private", endpoint{url: rcv.URL(), secrets: secrets, active: true})
			// The worker's guard refuses private addresses: its Client is
			// the guard's own, and the URL is re-checked at delivery time.
			start(t, &webhooks.Worker{Queue: q, Endpoints: eps, Guard: outbound.Guard{},
				Timeout: time.Second, Interval: 10 * time.Millisecond,
				Backoff: webhooks.Backoff{Base: time.Millisecond, Max: time.Millisecond, MaxAttempts: 2}})
			for _, tc := range []struct {
				name, webhook string
				want          domain.DeliveryStatus
				wantAttempts  []string
			}{
				{"inactive webhook", "wh_inactive", domain.DeliveryDisabled, nil},
				{"unknown webhook", "wh_unknown", domain.DeliveryDisabled, nil},
				{"private url refused at delivery", "wh_private", domain.DeliveryFailed,
					[]string{"url refused: address not allowed: loopback address", "url refused: address not allowed: loopback address"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					event := "evt_" + tc.webhook
					id, _, err := q.Enqueue(ctx, message("ten_a", tc.webhook, event, time.Time{}))
					if err != nil {
						t.Fatal(err)
					}
					if st := waitStatus(t, q, "ten_a", id, 10*time.Second); st.Status != tc.want {
						t.Errorf("status %s, want %s", st.Status, tc.want)
					}
					var got []string
					for _, a := range attemptsOf(t, q, "ten_a", event) {
						got = append(got, a.Error)
					}
					if diff := cmp.Diff(tc.wantAttempts, got); diff != "" {
						t.Errorf("attempt errors (-want +got):\n%s", diff)
					}
				})
			}
			if requests, _ := rcv.counts(); len(requests) != 0 {
				t.Errorf("the receiver got requests: %v", requests)
			}
		})
	}
}

func TestWorkerWake(t *testing.T) {
	db, _ := openDB(t, sqltest.Backends()[0])
	q := webhooks.NewQueue(db, 10*time.Second)
	secrets := []string{webhooks.NewSecret()}
	rcv := newReceiver(t, secrets, func(string, int) reply { return reply{status: 200} })
	eps := &endpoints{}
	eps.set("ten_a", "wh_1", endpoint{url: rcv.URL(), secrets: secrets, active: true})
	wake := make(chan struct{}, 1)
	start(t, &webhooks.Worker{Queue: q, Endpoints: eps, Guard: outbound.Guard{AllowPrivate: true},
		Timeout: time.Second, Interval: time.Hour, Wake: wake})
	id, _, err := q.Enqueue(context.Background(), message("ten_a", "wh_1", "evt_1", time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	wake <- struct{}{}
	if st := waitStatus(t, q, "ten_a", id, 5*time.Second); st.Status != domain.DeliveryDelivered {
		t.Errorf("status %s", st.Status)
	}
}

func TestWorkerConfig(t *testing.T) {
	db, _ := openDB(t, sqltest.Backends()[0])
	eps := &endpoints{}
	for _, tc := range []struct {
		name string
		w    webhooks.Worker
	}{
		{"no queue", webhooks.Worker{Endpoints: eps}},
		{"no endpoints", webhooks.Worker{Queue: webhooks.NewQueue(db, 0)}},
		{"renewal not under the lease", webhooks.Worker{Queue: webhooks.NewQueue(db, time.Second), Endpoints: eps, Renew: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.w.Run(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "webhooks: ") {
				t.Errorf("Run = %v, want a webhooks: error", err)
			}
		})
	}
}
