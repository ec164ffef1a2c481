package webhooks_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/domain"
	"github.com/haldir-dev/haldir/internal/outbound"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
	"github.com/haldir-dev/haldir/webhooks"
)

// The environment of the replica process TestLeaseTakeoverAfterKill9
// starts (this test binary, running TestLeaseReplicaProcess).
const (
	envReplica = "HALDIR_WEBHOOKS_TEST_REPLICA" // "sqlite" or "postgres"
	envWhere   = "HALDIR_WEBHOOKS_TEST_WHERE"   // the database's URL or directory
	envURL     = "HALDIR_WEBHOOKS_TEST_URL"     // the receiver
	envSecret  = "HALDIR_WEBHOOKS_TEST_SECRET"
)

// takeoverBound is how soon the survivors must take over the deliveries in
// flight of a replica killed with kill -9.
const takeoverBound = 30 * time.Second

// TestLeaseReplicaProcess is not a test: run by TestLeaseTakeoverAfterKill9
// in a process of its own, it is a replica delivering webhooks with the
// production defaults (NewQueue(db, 0), no Timeout, no Renew), until it is
// killed.
func TestLeaseReplicaProcess(t *testing.T) {
	dialect := os.Getenv(envReplica)
	if dialect == "" {
		t.Skip("run by TestLeaseTakeoverAfterKill9")
	}
	var db *sqldb.DB
	var err error
	if dialect == "postgres" {
		db, err = sqldb.OpenPostgres(context.Background(), os.Getenv(envWhere), 4)
	} else {
		db, err = sqldb.OpenSQLite(os.Getenv(envWhere))
	}
	if err != nil {
		t.Fatal(err)
	}
	url, secret := os.Getenv(envURL), os.Getenv(envSecret)
	w := &webhooks.Worker{Queue: webhooks.NewQueue(db, 0),
		Endpoints: webhooks.EndpointsFunc(func(context.Context, string, string) (string, []string, bool, error) {
			return url, []string{secret}, true, nil
		}),
		Guard: outbound.Guard{AllowPrivate: true},
		Log:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Fatal(w.Run(context.Background())) // returns only when misconfigured
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLeaseTakeoverAfterKill9: a replica process, with the production
// lease and renewal figures, has a delivery in flight to a slow receiver
// when it is killed with SIGKILL; a surviving replica, polling the same
// database all along, takes the delivery over within takeoverBound and
// delivers it. The receiver gets the webhook-id twice: the killed
// replica's request, cut off by the kill, and the survivor's.
func TestLeaseTakeoverAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a production lease")
	}
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db, where := openDB(t, b)
			secrets := []string{webhooks.NewSecret()}
			rcv := newSlowReceiver(t, secrets, func(ctx context.Context, n int) int {
				if n == 1 {
					return 0 // the killed replica's request hangs until its connection drops
				}
				return 200
			})
			q := webhooks.NewQueue(db, 0)
			id, _, err := q.Enqueue(ctx, message("ten_a", "wh_1", "evt_1", time.Time{}))
			if err != nil {
				t.Fatal(err)
			}

			var out syncBuffer
			cmd := exec.Command(os.Args[0], "-test.run=^TestLeaseReplicaProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), envReplica+"="+b.Name, envWhere+"="+where, envURL+"="+rcv.URL(), envSecret+"="+secrets[0])
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killed := false
			t.Cleanup(func() {
				if !killed {
					cmd.Process.Kill()
					cmd.Wait()
				}
				if t.Failed() {
					t.Logf("replica process output:\n%s", out.String())
				}
			})
			await(t, rcv.arrived(1), 30*time.Second, "the replica process's request")

			// The survivor: production figures too, on its own handle.
			logS := &logRecorder{}
			start(t, &webhooks.Worker{Queue: webhooks.NewQueue(reopen(t, db, where), 0), Endpoints: webhooks.EndpointsFunc(
				func(context.Context, string, string) (string, []string, bool, error) {
					return rcv.URL(), secrets, true, nil
				}), Guard: outbound.Guard{AllowPrivate: true}, Log: slog.New(logS)})
			time.Sleep(2 * time.Second)
			if n := len(rcv.requests()); n != 1 {
				t.Fatalf("the survivor sent while the replica was alive: %d requests", n)
			}

			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killedAt := time.Now()
			killed = true
			cmd.Wait()

			select {
			case <-rcv.arrived(2):
			case <-time.After(takeoverBound):
				st, _ := q.Get(ctx, "ten_a", id)
				t.Fatalf("the survivor did not take the killed replica's delivery over within %v of kill -9 "+
					"(DefaultLease %v; the delivery's lease ends %v after the kill)",
					takeoverBound, webhooks.DefaultLease, st.NextAttemptAt.Sub(killedAt).Round(time.Second))
			}
			hits := rcv.requests()
			takeover := hits[1].arrived.Sub(killedAt)
			t.Logf("taken over %v after kill -9 (DefaultLease %v, renewed every %v, polled every %v)",
				takeover.Round(time.Millisecond), webhooks.DefaultLease, webhooks.DefaultLease/3, webhooks.DefaultInterval)
			if takeover > webhooks.DefaultLease+webhooks.DefaultInterval+time.Second {
				t.Errorf("taken over %v after the kill, want within a lease and a poll interval", takeover)
			}

			st := waitStatus(t, q, "ten_a", id, 15*time.Second)
			if st.Status != domain.DeliveryDelivered || st.Attempts != 1 {
				t.Errorf("final state %+v, want delivered after 1 attempt", st)
			}
			await(t, rcv.ended(1), 5*time.Second, "the killed replica's request to end")
			hits = rcv.requests()
			if len(hits) != 2 || !hits[0].aborted || hits[1].status != 200 {
				t.Errorf("receiver got %+v; want the killed replica's request cut off and the survivor's answered 200", hits)
			}
			if duplicates := len(hits) - 1; duplicates != 1 {
				t.Errorf("%d duplicates of the webhook-id, want 1", duplicates)
			}
			if as := attemptsOf(t, q, "ten_a", "evt_1"); len(as) != 1 || as[0].StatusCode != 200 {
				t.Errorf("recorded attempts %+v, want the survivor's one", as)
			}
			if got := logS.matching("lease"); len(got) != 0 {
				t.Errorf("the survivor logged %q", got)
			}
		})
	}
}
