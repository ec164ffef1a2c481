package idempotency_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/storage/idempotency"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

// t0 has nanoseconds, so a store that truncated created_at would show.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// equateEmpty treats a nil and an empty response alike: a SQL NULL and an
// empty blob are both "no body".
var equateEmpty = cmpopts.EquateEmpty()

func newStore(t *testing.T, b sqltest.Backend) *idempotency.Store {
	t.Helper()
	db, _ := b.Open(t)
	return idempotency.New(db)
}

func mustReserve(t *testing.T, s *idempotency.Store, tenant, key, hash string, now time.Time) {
	t.Helper()
	reserved, existing, err := s.Reserve(context.Background(), tenant, key, hash, now)
	if err != nil {
		t.Fatalf("Reserve(%s, %s): %v", tenant, key, err)
	}
	if !reserved {
		t.Fatalf("Reserve(%s, %s) = not reserved (existing %+v), want reserved", tenant, key, existing)
	}
}

func get(t *testing.T, s *idempotency.Store, tenant, key string) (domain.Reservation, bool) {
	t.Helper()
	rec, found, err := s.Get(context.Background(), tenant, key)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", tenant, key, err)
	}
	return rec, found
}

func TestNewKeepsKeys48Hours(t *testing.T) {
	if got := idempotency.New(nil).Retention; got != 48*time.Hour {
		t.Errorf("New(db).Retention = %v, want 48h", got)
	}
}

// TestLifecycle walks one key through the sequences of calls the API
// makes, and checks what Get and a duplicate Reserve then see.
func TestLifecycle(t *testing.T) {
	type step func(t *testing.T, s *idempotency.Store, tenant string)
	const key = "key-1"
	reserve := func(hash string, now time.Time) step {
		return func(t *testing.T, s *idempotency.Store, tenant string) { mustReserve(t, s, tenant, key, hash, now) }
	}
	complete := func(st domain.ReservationStatus, body []byte) step {
		return func(t *testing.T, s *idempotency.Store, tenant string) {
			if err := s.Complete(context.Background(), tenant, key, st, body, t0.Add(time.Second)); err != nil {
				t.Fatalf("Complete: %v", err)
			}
		}
	}
	release := func(t *testing.T, s *idempotency.Store, tenant string) {
		if err := s.Release(context.Background(), tenant, key); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
	cases := []struct {
		name  string
		steps []step
		// want is what Get returns afterwards; nil means not found.
		want *domain.Reservation
	}{
		{
			name:  "nothing reserved",
			steps: nil,
			want:  nil,
		},
		{
			name:  "reserved is in progress, created at the reservation time",
			steps: []step{reserve("h1", t0)},
			want:  &domain.Reservation{RequestHash: "h1", Status: domain.ReservationInProgress, CreatedAt: t0},
		},
		{
			name:  "completed stores the response",
			steps: []step{reserve("h1", t0), complete(domain.ReservationCompleted, []byte(`{"status":201,"body":{"id":"x"}}`))},
			want: &domain.Reservation{RequestHash: "h1", Status: domain.ReservationCompleted, CreatedAt: t0,
				Response: []byte(`{"status":201,"body":{"id":"x"}}`)},
		},
		{
			name:  "unreplayable stores no body",
			steps: []step{reserve("h1", t0), complete(domain.ReservationUnreplayable, nil)},
			want:  &domain.Reservation{RequestHash: "h1", Status: domain.ReservationUnreplayable, CreatedAt: t0},
		},
		{
			name:  "released in progress is gone",
			steps: []step{reserve("h1", t0), release},
			want:  nil,
		},
		{
			name:  "released then reserved again by a retry",
			steps: []step{reserve("h1", t0), release, reserve("h2", t0.Add(time.Minute))},
			want:  &domain.Reservation{RequestHash: "h2", Status: domain.ReservationInProgress, CreatedAt: t0.Add(time.Minute)},
		},
		{
			name:  "release does not drop a completed key",
			steps: []step{reserve("h1", t0), complete(domain.ReservationCompleted, []byte("r")), release},
			want:  &domain.Reservation{RequestHash: "h1", Status: domain.ReservationCompleted, CreatedAt: t0, Response: []byte("r")},
		},
		{
			name:  "release does not drop an unreplayable key",
			steps: []step{reserve("h1", t0), complete(domain.ReservationUnreplayable, nil), release},
			want:  &domain.Reservation{RequestHash: "h1", Status: domain.ReservationUnreplayable, CreatedAt: t0},
		},
		{
			name:  "release of an unknown key is harmless",
			steps: []step{release},
			want:  nil,
		},
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// One database; each case has a tenant of its own.
			s := newStore(t, b)
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tenant := fmt.Sprintf("t_%d", i)
					for _, st := range tc.steps {
						st(t, s, tenant)
					}
					rec, found := get(t, s, tenant, key)
					if tc.want == nil {
						if found {
							t.Fatalf("Get found %+v, want nothing", rec)
						}
						// With nothing stored, the key is free to reserve.
						mustReserve(t, s, tenant, key, "h-new", t0)
						return
					}
					if !found {
						t.Fatal("Get found nothing")
					}
					if diff := cmp.Diff(*tc.want, rec, equateEmpty); diff != "" {
						t.Errorf("Get (-want +got):\n%s", diff)
					}
					// A duplicate, with the same or another body, does not
					// get the key and sees the stored record instead.
					for _, hash := range []string{tc.want.RequestHash, "h-other"} {
						reserved, existing, err := s.Reserve(context.Background(), tenant, key, hash, t0.Add(time.Hour))
						if err != nil {
							t.Fatal(err)
						}
						if reserved {
							t.Fatalf("duplicate Reserve with hash %s reserved a held key", hash)
						}
						if diff := cmp.Diff(*tc.want, existing, equateEmpty); diff != "" {
							t.Errorf("duplicate Reserve with hash %s: existing (-want +got):\n%s", hash, diff)
						}
					}
				})
			}
		})
	}
}

func TestTakeOver(t *testing.T) {
	const key = "key-1"
	later := t0.Add(2 * time.Minute)
	cases := []struct {
		name string
		// setup runs after the key is reserved at t0.
		setup    func(t *testing.T, s *idempotency.Store, tenant string)
		observed time.Time // the created_at the caller saw
		wantOK   bool
		want     *domain.Reservation // Get afterwards; nil means not found
	}{
		{
			name:     "in progress as observed",
			observed: t0,
			wantOK:   true,
			want:     &domain.Reservation{RequestHash: "h1", Status: domain.ReservationInProgress, CreatedAt: later},
		},
		{
			name:     "observed an older reservation",
			observed: t0.Add(-time.Nanosecond),
			wantOK:   false,
			want:     &domain.Reservation{RequestHash: "h1", Status: domain.ReservationInProgress, CreatedAt: t0},
		},
		{
			name: "another duplicate took it over first",
			setup: func(t *testing.T, s *idempotency.Store, tenant string) {
				if ok, err := s.TakeOver(context.Background(), tenant, key, t0, t0.Add(time.Minute)); err != nil || !ok {
					t.Fatalf("first TakeOver = %v, %v; want true", ok, err)
				}
			},
			observed: t0,
			wantOK:   false,
			want:     &domain.Reservation{RequestHash: "h1", Status: domain.ReservationInProgress, CreatedAt: t0.Add(time.Minute)},
		},
		{
			name: "completed meanwhile",
			setup: func(t *testing.T, s *idempotency.Store, tenant string) {
				if err := s.Complete(context.Background(), tenant, key, domain.ReservationCompleted, []byte("r"), t0.Add(time.Second)); err != nil {
					t.Fatal(err)
				}
			},
			observed: t0,
			wantOK:   false,
			want:     &domain.Reservation{RequestHash: "h1", Status: domain.ReservationCompleted, CreatedAt: t0, Response: []byte("r")},
		},
		{
			name: "released meanwhile",
			setup: func(t *testing.T, s *idempotency.Store, tenant string) {
				if err := s.Release(context.Background(), tenant, key); err != nil {
					t.Fatal(err)
				}
			},
			observed: t0,
			wantOK:   false,
			want:     nil,
		},
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := newStore(t, b)
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tenant := fmt.Sprintf("t_%d", i)
					mustReserve(t, s, tenant, key, "h1", t0)
					if tc.setup != nil {
						tc.setup(t, s, tenant)
					}
					ok, err := s.TakeOver(context.Background(), tenant, key, tc.observed, later)
					if err != nil {
						t.Fatal(err)
					}
					if ok != tc.wantOK {
						t.Errorf("TakeOver = %v, want %v", ok, tc.wantOK)
					}
					rec, found := get(t, s, tenant, key)
					switch {
					case tc.want == nil && found:
						t.Errorf("Get found %+v, want nothing", rec)
					case tc.want != nil && !found:
						t.Error("Get found nothing")
					case tc.want != nil:
						if diff := cmp.Diff(*tc.want, rec, equateEmpty); diff != "" {
							t.Errorf("Get (-want +got):\n%s", diff)
						}
					}
				})
			}
		})
	}
}

// TestConcurrentReserveHasOneOwner races many requests for one key, as
// duplicates arriving at several replicas at once do: exactly one owns it
// and every other sees the owner's reservation.
func TestConcurrentReserveHasOneOwner(t *testing.T) {
	const n = 32
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := newStore(t, b)
			type result struct {
				reserved bool
				existing domain.Reservation
				err      error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r := &results[i]
					r.reserved, r.existing, r.err = s.Reserve(context.Background(), "t_a", "race", "h", t0.Add(time.Duration(i)))
				}()
			}
			close(start)
			wg.Wait()
			owners := 0
			var owner time.Time
			for i, r := range results {
				if r.err != nil {
					t.Fatalf("Reserve %d: %v", i, r.err)
				}
				if r.reserved {
					owners++
					owner = t0.Add(time.Duration(i))
				}
			}
			if owners != 1 {
				t.Fatalf("%d of %d concurrent Reserve calls own the key, want exactly 1", owners, n)
			}
			want := domain.Reservation{RequestHash: "h", Status: domain.ReservationInProgress, CreatedAt: owner}
			for i, r := range results {
				if r.reserved {
					continue
				}
				if diff := cmp.Diff(want, r.existing, equateEmpty); diff != "" {
					t.Errorf("Reserve %d: existing (-want +got):\n%s", i, diff)
				}
			}
			got, _ := get(t, s, "t_a", "race")
			if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConcurrentTakeOverHasOneOwner races duplicates that all found the
// same orphaned reservation: only one may run the command again.
func TestConcurrentTakeOverHasOneOwner(t *testing.T) {
	const n = 16
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := newStore(t, b)
			mustReserve(t, s, "t_a", "orphan", "h", t0)
			oks := make([]bool, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					oks[i], errs[i] = s.TakeOver(context.Background(), "t_a", "orphan", t0, t0.Add(time.Minute+time.Duration(i)))
				}()
			}
			close(start)
			wg.Wait()
			won := 0
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("TakeOver %d: %v", i, errs[i])
				}
				if oks[i] {
					won++
				}
			}
			if won != 1 {
				t.Errorf("%d of %d concurrent TakeOver calls won, want exactly 1", won, n)
			}
		})
	}
}

// TestTenantsAreIsolated uses one key in two tenants: each is its own
// reservation, and nothing done to one is seen by the other.
func TestTenantsAreIsolated(t *testing.T) {
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := newStore(t, b)
			mustReserve(t, s, "t_a", "shared", "ha", t0)
			mustReserve(t, s, "t_b", "shared", "hb", t0.Add(time.Second))
			mustReserve(t, s, "t_c", "shared", "hc", t0.Add(2*time.Second))

			if err := s.Complete(ctx, "t_a", "shared", domain.ReservationCompleted, []byte("a's response"), t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := s.Release(ctx, "t_b", "shared"); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.TakeOver(ctx, "t_a", "shared", t0.Add(2*time.Second), t0.Add(time.Hour)); err != nil || ok {
				t.Fatalf("TakeOver in t_a with t_c's created_at = %v, %v; want false", ok, err)
			}

			want := map[string]*domain.Reservation{
				"t_a": {RequestHash: "ha", Status: domain.ReservationCompleted, CreatedAt: t0, Response: []byte("a's response")},
				"t_b": nil,
				"t_c": {RequestHash: "hc", Status: domain.ReservationInProgress, CreatedAt: t0.Add(2 * time.Second)},
				"t_d": nil,
			}
			got := map[string]*domain.Reservation{}
			for tenant := range want {
				if rec, found := get(t, s, tenant, "shared"); found {
					got[tenant] = &rec
				} else {
					got[tenant] = nil
				}
			}
			if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
				t.Errorf("records by tenant (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpire(t *testing.T) {
	now := t0.Add(100 * time.Hour)
	cases := []struct {
		name      string
		retention time.Duration
		// created is each key's reservation time; completed keys are
		// completed right after.
		created   map[string]time.Time
		completed []string
		wantGone  int64
		wantKept  []string
	}{
		{
			name:      "default retention drops what is older than 48 hours",
			retention: 48 * time.Hour,
			created: map[string]time.Time{
				"old-done":     now.Add(-72 * time.Hour),
				"old-orphan":   now.Add(-49 * time.Hour),
				"just-expired": now.Add(-48*time.Hour - time.Nanosecond),
				"at-limit":     now.Add(-48 * time.Hour),
				"recent":       now.Add(-time.Hour),
				"in-flight":    now,
			},
			completed: []string{"old-done", "recent"},
			wantGone:  3,
			wantKept:  []string{"at-limit", "in-flight", "recent"},
		},
		{
			name:      "a shorter retention",
			retention: time.Hour,
			created: map[string]time.Time{
				"a": now.Add(-2 * time.Hour),
				"b": now.Add(-30 * time.Minute),
			},
			wantGone: 1,
			wantKept: []string{"b"},
		},
		{
			name:      "nothing to expire",
			retention: 48 * time.Hour,
			created:   map[string]time.Time{"a": now},
			wantGone:  0,
			wantKept:  []string{"a"},
		},
	}
	ctx := context.Background()
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s := newStore(t, b)
					s.Retention = tc.retention
					for key, at := range tc.created {
						mustReserve(t, s, "t_a", key, "h", at)
						// The same keys in another tenant, so that
						// expiry is shown to be by age in every tenant.
						mustReserve(t, s, "t_b", key, "h", at)
					}
					for _, key := range tc.completed {
						if err := s.Complete(ctx, "t_a", key, domain.ReservationCompleted, []byte("r"), tc.created[key].Add(time.Second)); err != nil {
							t.Fatal(err)
						}
					}
					n, err := s.Expire(ctx, now)
					if err != nil {
						t.Fatal(err)
					}
					if n != 2*tc.wantGone {
						t.Errorf("Expire = %d, want %d", n, 2*tc.wantGone)
					}
					for _, tenant := range []string{"t_a", "t_b"} {
						var kept []string
						for key := range tc.created {
							if _, found := get(t, s, tenant, key); found {
								kept = append(kept, key)
							}
						}
						if diff := cmp.Diff(tc.wantKept, kept, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
							t.Errorf("%s: kept keys (-want +got):\n%s", tenant, diff)
						}
					}
					// An expired key can be reserved afresh.
					for key, at := range tc.created {
						if at.Before(now.Add(-tc.retention)) {
							mustReserve(t, s, "t_a", key, "h-new", now)
						}
					}
				})
			}
		})
	}
}
