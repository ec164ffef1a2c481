package webhooks_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/webhooks"
)

func message(tenant, webhook, event string, at time.Time) webhooks.Message {
	return webhooks.Message{TenantID: tenant, WebhookID: webhook, EventID: event, EventType: "audit.logged",
		Body: []byte(fmt.Sprintf(`{"event_id": %q, "n": 1.50}`, event)), At: at}
}

func TestEnqueue(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, 0)
			at := time.Unix(1_700_000_000, 123)
			m := message("ten_a", "wh_1", "evt_1", at)

			id, created, err := q.Enqueue(ctx, m)
			if err != nil || !created || id != webhooks.DeliveryID("ten_a", "wh_1", "evt_1") {
				t.Fatalf("Enqueue = %q, %v, %v", id, created, err)
			}
			again := m
			again.Body = []byte(`{"changed": true}`)
			id2, created, err := q.Enqueue(ctx, again)
			if err != nil || created || id2 != id {
				t.Fatalf("second Enqueue = %q, %v, %v; want %q, false, nil", id2, created, err, id)
			}
			got, err := q.Get(ctx, "ten_a", id)
			if err != nil {
				t.Fatal(err)
			}
			want := webhooks.State{
				Job: webhooks.Job{TenantID: "ten_a", DeliveryID: id, WebhookID: "wh_1", EventID: "evt_1",
					EventType: "audit.logged", Body: m.Body, CreatedAt: at},
				Status: domain.DeliveryPending, NextAttemptAt: at, UpdatedAt: at,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stored delivery (-want +got):\n%s", diff)
			}

			// The same event for another webhook or tenant is another delivery.
			for _, other := range []webhooks.Message{message("ten_a", "wh_2", "evt_1", at), message("ten_b", "wh_1", "evt_1", at)} {
				oid, created, err := q.Enqueue(ctx, other)
				if err != nil || !created || oid == id {
					t.Errorf("Enqueue(%s/%s) = %q, %v, %v", other.TenantID, other.WebhookID, oid, created, err)
				}
			}
		})
	}
}

func TestEnqueueTx(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, 0)
			for _, tc := range []struct {
				name   string
				commit bool
			}{{"rolled back", false}, {"committed", true}} {
				t.Run(tc.name, func(t *testing.T) {
					m := message("ten_a", "wh_1", "evt_"+tc.name, time.Now())
					tx, err := db.Write.BeginTx(ctx, nil)
					if err != nil {
						t.Fatal(err)
					}
					id, created, err := q.EnqueueTx(ctx, tx, m)
					if err != nil || !created {
						t.Fatalf("EnqueueTx = %v, %v", created, err)
					}
					// A duplicate inside the transaction neither fails nor
					// aborts it.
					if _, created, err := q.EnqueueTx(ctx, tx, m); err != nil || created {
						t.Fatalf("duplicate EnqueueTx = %v, %v", created, err)
					}
					if tc.commit {
						err = tx.Commit()
					} else {
						err = tx.Rollback()
					}
					if err != nil {
						t.Fatal(err)
					}
					_, err = q.Get(ctx, "ten_a", id)
					if tc.commit && err != nil || !tc.commit && !errors.Is(err, webhooks.ErrNotFound) {
						t.Errorf("after %s: Get = %v", tc.name, err)
					}
				})
			}
		})
	}
}

func TestEnqueueRefuses(t *testing.T) {
	db, _ := openDB(t, sqltest.Backends()[0])
	q := webhooks.NewQueue(db, 0)
	ok := message("ten_a", "wh_1", "evt_1", time.Now())
	for _, tc := range []struct {
		name string
		edit func(*webhooks.Message)
	}{
		{"no tenant", func(m *webhooks.Message) { m.TenantID = "" }},
		{"no webhook", func(m *webhooks.Message) { m.WebhookID = "" }},
		{"no event id", func(m *webhooks.Message) { m.EventID = "" }},
		{"no event type", func(m *webhooks.Message) { m.EventType = "" }},
		{"not json", func(m *webhooks.Message) { m.Body = []byte("{oops") }},
		{"empty body", func(m *webhooks.Message) { m.Body = nil }},
		{"too big", func(m *webhooks.Message) { m.Body = []byte(`"` + string(make([]byte, webhooks.MaxBody)) + `"`) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ok
			tc.edit(&m)
			if _, _, err := q.Enqueue(context.Background(), m); err == nil {
				t.Error("Enqueue accepted it")
			}
		})
	}
}

func jobIDs(jobs []webhooks.Job) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.EventID)
	}
	sort.Strings(ids)
	return ids
}

func TestClaimLease(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			lease := time.Minute
			q := webhooks.NewQueue(db, lease)
			t0 := time.Unix(1_700_000_000, 0)
			for i, ev := range []string{"evt_1", "evt_2", "evt_3"} {
				if _, _, err := q.Enqueue(ctx, message("ten_a", "wh_1", ev, t0.Add(time.Duration(i)*time.Second))); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := q.Enqueue(ctx, message("ten_a", "wh_1", "evt_later", t0.Add(time.Hour))); err != nil {
				t.Fatal(err)
			}
			for _, step := range []struct {
				name  string
				now   time.Time
				limit int
				want  []string
			}{
				{"nothing due yet", t0.Add(-time.Second), 10, nil},
				{"oldest two", t0.Add(5 * time.Second), 2, []string{"evt_1", "evt_2"}},
				{"the rest that is due", t0.Add(5 * time.Second), 10, []string{"evt_3"}},
				{"all leased", t0.Add(30 * time.Second), 10, nil},
				{"lease over", t0.Add(5*time.Second + lease), 10, []string{"evt_1", "evt_2", "evt_3"}},
				{"limit zero", t0.Add(2 * time.Hour), 0, nil},
				{"leases over again, later one due", t0.Add(time.Hour), 10, []string{"evt_1", "evt_2", "evt_3", "evt_later"}},
			} {
				jobs, err := q.Claim(ctx, step.now, step.limit)
				if err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if diff := cmp.Diff(step.want, jobIDs(jobs)); diff != "" {
					t.Errorf("%s: claimed (-want +got):\n%s", step.name, diff)
				}
			}
		})
	}
}

// TestClaimExclusive runs many concurrent claimers, on two database
// handles: every delivery is claimed exactly once.
func TestClaimExclusive(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, where := openDB(t, b)
			queues := []*webhooks.Queue{webhooks.NewQueue(db, time.Hour), webhooks.NewQueue(reopen(t, db, where), time.Hour)}
			const n = 300
			var want []string
			for i := range n {
				ev := fmt.Sprintf("evt_%03d", i)
				want = append(want, ev)
				if _, _, err := queues[0].Enqueue(ctx, message("ten_a", "wh_1", ev, time.Now())); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now()
			var mu sync.Mutex
			var got []string
			var wg sync.WaitGroup
			for c := range 8 {
				wg.Go(func() {
					q := queues[c%2]
					for {
						jobs, err := q.Claim(ctx, now, 7)
						if err != nil {
							t.Error(err)
							return
						}
						if len(jobs) == 0 {
							return
						}
						mu.Lock()
						for _, j := range jobs {
							got = append(got, j.EventID)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			sort.Strings(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecord(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, time.Minute)
			t0 := time.Unix(1_700_000_000, 0)
			for _, tc := range []struct {
				name       string
				result     webhooks.Result
				next       time.Time
				wantStatus domain.DeliveryStatus
				wantNext   time.Time
			}{
				{"2xx delivers", webhooks.Result{StatusCode: 204}, time.Time{}, domain.DeliveryDelivered, t0.Add(25 * time.Millisecond)},
				{"500 retries", webhooks.Result{StatusCode: 500, Error: "HTTP 500 Internal Server Error"}, t0.Add(time.Hour), domain.DeliveryPending, t0.Add(time.Hour)},
				{"timeout retries", webhooks.Result{Error: "timeout"}, t0.Add(time.Minute), domain.DeliveryPending, t0.Add(time.Minute)},
				{"last failure fails", webhooks.Result{StatusCode: 503, Error: "HTTP 503 Service Unavailable"}, time.Time{}, domain.DeliveryFailed, t0.Add(25 * time.Millisecond)},
				{"410 disables", webhooks.Result{StatusCode: 410, Error: "HTTP 410 Gone", Gone: true}, t0.Add(time.Hour), domain.DeliveryDisabled, t0.Add(25 * time.Millisecond)},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ev := "evt_" + tc.name
					id, _, err := q.Enqueue(ctx, message("ten_a", "wh_1", ev, t0))
					if err != nil {
						t.Fatal(err)
					}
					jobs, err := q.Claim(ctx, t0, 100)
					if err != nil || len(jobs) != 1 {
						t.Fatalf("Claim = %d jobs, %v", len(jobs), err)
					}
					r := tc.result
					r.Start, r.Duration = t0, 25*time.Millisecond
					r.Excerpt = "the receiver's body, never stored"
					if err := q.Record(ctx, jobs[0], r, tc.next); err != nil {
						t.Fatal(err)
					}
					got, err := q.Get(ctx, "ten_a", id)
					if err != nil {
						t.Fatal(err)
					}
					want := webhooks.State{Job: jobs[0], Status: tc.wantStatus, NextAttemptAt: tc.wantNext,
						LastStatusCode: tc.result.StatusCode, LastError: tc.result.Error, UpdatedAt: t0.Add(25 * time.Millisecond)}
					want.Attempts, want.LeaseUntil = 1, time.Time{}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("state (-want +got):\n%s", diff)
					}
					attempts, err := q.List(ctx, "ten_a", domain.DeliveryFilter{EventID: ev})
					if err != nil {
						t.Fatal(err)
					}
					wantAttempts := []domain.DeliveryAttempt{{DeliveryID: id, EventID: ev, WebhookID: "wh_1", EventType: "audit.logged",
						Attempt: 1, StatusCode: tc.result.StatusCode, Error: tc.result.Error, Duration: 25 * time.Millisecond,
						CreatedAt: t0, Status: tc.wantStatus}}
					if diff := cmp.Diff(wantAttempts, attempts); diff != "" {
						t.Errorf("attempts (-want +got):\n%s", diff)
					}
					// A finished delivery is never claimed again; a retrying one
					// is claimed at its next time.
					later, err := q.Claim(ctx, t0.Add(48*time.Hour), 100)
					if err != nil {
						t.Fatal(err)
					}
					if wantN := map[bool]int{true: 1, false: 0}[tc.wantStatus == domain.DeliveryPending]; len(later) != wantN {
						t.Errorf("later Claim = %d jobs, want %d", len(later), wantN)
					}
					for _, j := range later {
						q.Record(ctx, j, webhooks.Result{Start: t0, StatusCode: 200}, time.Time{})
					}
				})
			}
		})
	}
}

// TestRecordLeaseLost: a worker whose lease ran out, and whose delivery
// another worker took, cannot record its attempt, whether it finishes
// after the new owner recorded or before.
func TestRecordLeaseLost(t *testing.T) {
	for _, b := range sqltest.Backends() {
		for _, order := range []string{"new owner records first", "stale worker records first"} {
			t.Run(b.Name+"/"+order, func(t *testing.T) {
				ctx := context.Background()
				db, _ := openDB(t, b)
				q := webhooks.NewQueue(db, time.Minute)
				t0 := time.Now()
				id, _, err := q.Enqueue(ctx, message("ten_a", "wh_1", "evt_1", t0))
				if err != nil {
					t.Fatal(err)
				}
				slow, err := q.Claim(ctx, t0, 1)
				if err != nil || len(slow) != 1 {
					t.Fatalf("Claim = %v, %v", slow, err)
				}
				fast, err := q.Claim(ctx, t0.Add(time.Minute), 1)
				if err != nil || len(fast) != 1 {
					t.Fatalf("Claim after the lease = %v, %v", fast, err)
				}
				recordFast := func() {
					t.Helper()
					if err := q.Record(ctx, fast[0], webhooks.Result{Start: t0, StatusCode: 500, Error: "HTTP 500"}, t0.Add(time.Hour)); err != nil {
						t.Fatal(err)
					}
				}
				if order == "new owner records first" {
					recordFast()
				}
				if err := q.Record(ctx, slow[0], webhooks.Result{Start: t0, StatusCode: 200}, time.Time{}); !errors.Is(err, webhooks.ErrLeaseLost) {
					t.Errorf("stale Record = %v, want ErrLeaseLost", err)
				}
				if order == "stale worker records first" {
					recordFast()
				}
				st, err := q.Get(ctx, "ten_a", id)
				if err != nil || st.Status != domain.DeliveryPending || st.Attempts != 1 || st.LastStatusCode != 500 {
					t.Errorf("Get = %+v, %v; want pending after the one recorded attempt", st, err)
				}
			})
		}
	}
}

// TestRenew: a renewal moves the lease's end forward, so the delivery is
// not claimed at the old end; once the lease ran out and another claim
// took the delivery, the first claim can neither renew, nor record, nor
// disable it.
func TestRenew(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			lease := 10 * time.Second
			q := webhooks.NewQueue(db, lease)
			t0 := time.Unix(1_700_000_000, 0)
			id, _, err := q.Enqueue(ctx, message("ten_a", "wh_1", "evt_1", t0))
			if err != nil {
				t.Fatal(err)
			}
			jobs, err := q.Claim(ctx, t0, 1)
			if err != nil || len(jobs) != 1 {
				t.Fatalf("Claim = %v, %v", jobs, err)
			}
			mine := jobs[0]
			if !mine.LeaseUntil.Equal(t0.Add(lease)) {
				t.Fatalf("LeaseUntil = %v, want %v", mine.LeaseUntil, t0.Add(lease))
			}
			for _, at := range []time.Duration{3 * time.Second, 6 * time.Second, 9 * time.Second} {
				if err := q.Renew(ctx, &mine, t0.Add(at)); err != nil {
					t.Fatalf("Renew at +%v: %v", at, err)
				}
				if !mine.LeaseUntil.Equal(t0.Add(at + lease)) {
					t.Errorf("Renew at +%v: LeaseUntil = %v, want %v", at, mine.LeaseUntil, t0.Add(at+lease))
				}
				if st, _ := q.Get(ctx, "ten_a", id); !st.NextAttemptAt.Equal(mine.LeaseUntil) {
					t.Errorf("stored lease end %v, want %v", st.NextAttemptAt, mine.LeaseUntil)
				}
			}
			// A clock gone back still moves the lease's end forward.
			before := mine.LeaseUntil
			if err := q.Renew(ctx, &mine, t0); err != nil || !mine.LeaseUntil.After(before) {
				t.Errorf("Renew with an earlier clock = %v, LeaseUntil %v; want after %v", err, mine.LeaseUntil, before)
			}
			if got, err := q.Claim(ctx, t0.Add(lease+time.Second), 1); err != nil || len(got) != 0 {
				t.Fatalf("Claim at the first lease's end = %v, %v; want nothing, the lease was renewed", got, err)
			}
			// The renewals stop, as a dead worker's do; another claim takes the
			// delivery when the lease runs out.
			takeover := mine.LeaseUntil
			got, err := q.Claim(ctx, takeover, 1)
			if err != nil || len(got) != 1 {
				t.Fatalf("Claim at the renewed lease's end = %v, %v", got, err)
			}
			theirs := got[0]
			if err := q.Renew(ctx, &mine, takeover); !errors.Is(err, webhooks.ErrLeaseLost) {
				t.Errorf("Renew of the lost lease = %v, want ErrLeaseLost", err)
			}
			if err := q.Record(ctx, mine, webhooks.Result{Start: takeover, StatusCode: 200}, time.Time{}); !errors.Is(err, webhooks.ErrLeaseLost) {
				t.Errorf("Record with the lost lease = %v, want ErrLeaseLost", err)
			}
			if err := webhooks.Disable(ctx, q, mine, "test"); !errors.Is(err, webhooks.ErrLeaseLost) {
				t.Errorf("disable with the lost lease = %v, want ErrLeaseLost", err)
			}
			if err := q.Renew(ctx, &theirs, takeover.Add(time.Second)); err != nil {
				t.Errorf("the new owner's Renew = %v", err)
			}
			if err := q.Record(ctx, theirs, webhooks.Result{Start: takeover, StatusCode: 204}, time.Time{}); err != nil {
				t.Errorf("the new owner's Record = %v", err)
			}
			if st, err := q.Get(ctx, "ten_a", id); err != nil || st.Status != domain.DeliveryDelivered || st.Attempts != 1 || st.LastStatusCode != 204 {
				t.Errorf("Get = %+v, %v; want delivered by the new owner's one attempt", st, err)
			}
			if err := q.Renew(ctx, &theirs, takeover.Add(2*time.Second)); !errors.Is(err, webhooks.ErrLeaseLost) {
				t.Errorf("Renew after the recording = %v, want ErrLeaseLost", err)
			}
		})
	}
}

func TestListAndTenantIsolation(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, time.Minute)
			t0 := time.Unix(1_700_000_000, 0)
			// Same webhook and event ids in two tenants.
			for i, m := range []webhooks.Message{
				message("ten_a", "wh_1", "evt_1", t0),
				message("ten_a", "wh_2", "evt_2", t0),
				message("ten_b", "wh_1", "evt_1", t0),
			} {
				if _, _, err := q.Enqueue(ctx, m); err != nil {
					t.Fatal(err)
				}
				_ = i
			}
			// Three attempts each, one second apart.
			for round := range 3 {
				now := t0.Add(time.Duration(round) * time.Hour)
				jobs, err := q.Claim(ctx, now, 10)
				if err != nil || len(jobs) != 3 {
					t.Fatalf("round %d: Claim = %d, %v", round, len(jobs), err)
				}
				sort.Slice(jobs, func(i, j int) bool { return jobs[i].DeliveryID < jobs[j].DeliveryID })
				for k, j := range jobs {
					r := webhooks.Result{Start: now.Add(time.Duration(k) * time.Second), StatusCode: 500, Error: "HTTP 500 Internal Server Error"}
					if err := q.Record(ctx, j, r, now.Add(time.Minute)); err != nil {
						t.Fatal(err)
					}
				}
			}
			type row struct {
				Tenant, Event, Webhook string
				Attempt                int
			}
			summarise := func(tenant string, as []domain.DeliveryAttempt) []row {
				var out []row
				for _, a := range as {
					out = append(out, row{tenant, a.EventID, a.WebhookID, a.Attempt})
				}
				return out
			}
			for _, tc := range []struct {
				name   string
				tenant string
				filter domain.DeliveryFilter
				want   int // rows
				check  func(t *testing.T, as []domain.DeliveryAttempt)
			}{
				{name: "all of a tenant", tenant: "ten_a", want: 6},
				{name: "other tenant sees only its own", tenant: "ten_b", want: 3},
				{name: "unknown tenant sees nothing", tenant: "ten_c", want: 0},
				{name: "limit", tenant: "ten_a", filter: domain.DeliveryFilter{Limit: 2}, want: 2},
				{name: "by event", tenant: "ten_a", filter: domain.DeliveryFilter{EventID: "evt_1"}, want: 3},
				{name: "by webhook", tenant: "ten_a", filter: domain.DeliveryFilter{WebhookID: "wh_2"}, want: 3},
				{name: "by event of the other tenant", tenant: "ten_b", filter: domain.DeliveryFilter{EventID: "evt_2"}, want: 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					as, err := q.List(ctx, tc.tenant, tc.filter)
					if err != nil {
						t.Fatal(err)
					}
					if len(as) != tc.want {
						t.Fatalf("List = %d rows, want %d: %v", len(as), tc.want, summarise(tc.tenant, as))
					}
					for i := 1; i < len(as); i++ {
						if as[i].CreatedAt.After(as[i-1].CreatedAt) {
							t.Errorf("not newest first: %v", summarise(tc.tenant, as))
						}
					}
					for _, a := range as {
						if a.DeliveryID != webhooks.DeliveryID(tc.tenant, a.WebhookID, a.EventID) {
							t.Errorf("%s sees delivery %s of another tenant", tc.tenant, a.DeliveryID)
						}
					}
				})
			}
			if _, err := q.Get(ctx, "ten_b", webhooks.DeliveryID("ten_a", "wh_2", "evt_2")); !errors.Is(err, webhooks.ErrNotFound) {
				t.Errorf("ten_b Get of ten_a's delivery = %v, want ErrNotFound", err)
			}
			as, _ := q.List(ctx, "ten_a", domain.DeliveryFilter{Limit: 1})
			if diff := cmp.Diff([]int{3}, []int{as[0].Attempt}); diff != "" || !as[0].CreatedAt.Equal(t0.Add(2*time.Hour+time.Second)) {
				t.Errorf("newest = %+v", as[0])
			}
		})
	}
}

func TestDisableWebhook(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t, b)
			q := webhooks.NewQueue(db, time.Minute)
			now := time.Now()
			for _, m := range []webhooks.Message{
				message("ten_a", "wh_1", "evt_1", now), message("ten_a", "wh_1", "evt_2", now),
				message("ten_a", "wh_2", "evt_1", now), message("ten_b", "wh_1", "evt_1", now),
			} {
				if _, _, err := q.Enqueue(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			n, err := q.DisableWebhook(ctx, "ten_a", "wh_1")
			if err != nil || n != 2 {
				t.Fatalf("DisableWebhook = %d, %v; want 2", n, err)
			}
			jobs, err := q.Claim(ctx, now, 10)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, j := range jobs {
				got[j.TenantID+"/"+j.WebhookID+"/"+j.EventID] = true
			}
			if diff := cmp.Diff(map[string]bool{"ten_a/wh_2/evt_1": true, "ten_b/wh_1/evt_1": true}, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("still claimable (-want +got):\n%s", diff)
			}
		})
	}
}
