package kurrentstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/events"
)

func decision(tenant, stream string, expected int64, payload string) events.Proposed {
	return events.Proposed{ID: events.NewID(), Tenant: tenant, Stream: stream, ExpectedVersion: expected, Type: "test.decided", Payload: []byte(payload)}
}

// TestKurrentDBReplicas: three stores on one ledger stand for three
// replicas, each with eight writers. Half the appends are read-decide-
// append decisions on one shared stream per tenant, retried on conflict;
// the other half need no check. No decision may be lost or doubled, every
// position must be taken exactly once and seen in order by a tailer, every
// replica must end with the same ledger, and the chain must verify.
func TestKurrentDBReplicas(t *testing.T) {
	url := serverURL(t)
	ledger := newLedger(t)
	const replicas, writers, perWriter = 3, 8, 30
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = openStore(t, url, ledger)
	}
	ctx := context.Background()
	total := int64(replicas * writers * perWriter)

	// Replica 2 learns of replica 0's appends through its subscription.
	wake := stores[2].Appended()
	if _, err := stores[0].Append(ctx, decision("t_0", "warmup", 0, "0")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("replica 2's Appended did not fire after replica 0 appended")
	}
	total++

	tailed := make(chan error, 1)
	seen := map[string]int64{}
	go func() {
		var last int64
		deadline := time.Now().Add(3 * time.Minute)
		for last < total {
			if time.Now().After(deadline) {
				tailed <- fmt.Errorf("tailer stuck at position %d of %d", last, total)
				return
			}
			w := stores[1].Appended()
			page, err := stores[1].Tail(ctx, last, 256)
			if err != nil {
				tailed <- err
				return
			}
			for _, e := range page {
				if e.Position != last+1 {
					tailed <- fmt.Errorf("tailer on replica 1 saw position %d after %d", e.Position, last)
					return
				}
				if _, dup := seen[e.ID]; dup {
					tailed <- fmt.Errorf("tailer saw %s twice", e.ID)
					return
				}
				seen[e.ID] = e.Position
				last = e.Position
			}
			if len(page) == 0 {
				select {
				case <-w:
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		tailed <- nil
	}()

	type ack struct {
		id      string
		tenant  string
		version int64
		shared  bool
	}
	var mu sync.Mutex
	var acks []ack
	var conflicts int
	var wg sync.WaitGroup
	for r := range replicas {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := stores[r]
				tenant := fmt.Sprint("t_", w%2)
				for i := range perWriter {
					if i%2 == 1 {
						p := decision(tenant, fmt.Sprintf("w/%d/%d", r, w), events.AnyVersion, fmt.Sprint(i))
						if _, err := s.Append(ctx, p); err != nil {
							t.Errorf("replica %d writer %d: %v", r, w, err)
							return
						}
						mu.Lock()
						acks = append(acks, ack{id: p.ID, tenant: tenant})
						mu.Unlock()
						continue
					}
					for attempt := 0; ; attempt++ {
						cur, err := s.ReadStream(ctx, tenant, "budget", 0)
						if err != nil {
							t.Errorf("replica %d: read: %v", r, err)
							return
						}
						v := int64(len(cur))
						if v > 0 {
							v = cur[len(cur)-1].Version
						}
						p := decision(tenant, "budget", v, fmt.Sprintf(`{"r":%d,"w":%d,"i":%d}`, r, w, i))
						got, err := s.Append(ctx, p)
						if err == nil {
							mu.Lock()
							acks = append(acks, ack{id: p.ID, tenant: tenant, version: got[0].Version, shared: true})
							mu.Unlock()
							break
						}
						if !errors.Is(err, events.ErrConflict) {
							t.Errorf("replica %d writer %d: decision: %v", r, w, err)
							return
						}
						mu.Lock()
						conflicts++
						mu.Unlock()
						if attempt > 2000 {
							t.Errorf("replica %d writer %d: starved after %d conflicts", r, w, attempt)
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if err := <-tailed; err != nil {
		t.Fatal(err)
	}

	versions := map[string]map[int64]string{}
	for _, a := range acks {
		if _, ok := seen[a.id]; !ok {
			t.Errorf("acknowledged event %s was never tailed", a.id)
		}
		if !a.shared {
			continue
		}
		if versions[a.tenant] == nil {
			versions[a.tenant] = map[int64]string{}
		}
		if other, dup := versions[a.tenant][a.version]; dup {
			t.Errorf("tenant %s: decisions %s and %s both acknowledged at version %d", a.tenant, other, a.id, a.version)
		}
		versions[a.tenant][a.version] = a.id
	}
	for tenant, vs := range versions {
		for v := int64(1); v <= int64(len(vs)); v++ {
			if _, ok := vs[v]; !ok {
				t.Errorf("tenant %s: no acknowledged decision at version %d of %d", tenant, v, len(vs))
			}
		}
		got, err := stores[0].ReadStream(ctx, tenant, "budget", 0)
		if err != nil || len(got) != len(vs) {
			t.Errorf("tenant %s: budget stream holds %d events (%v), %d decisions were acknowledged", tenant, len(got), err, len(vs))
		}
	}
	var retries int64
	for i, s := range stores {
		if h, err := s.Head(ctx); err != nil || h != total {
			t.Errorf("replica %d: head %d (%v), want %d", i, h, err, total)
		}
		r, err := events.VerifyAll(ctx, s, nil)
		if err != nil || r.Checked != total {
			t.Errorf("replica %d: VerifyAll checked %d: %v", i, r.Checked, err)
		}
		for _, tenant := range []string{"t_0", "t_1"} {
			seq, hash, err := s.TenantHead(ctx, tenant)
			s0, h0, _ := stores[0].TenantHead(ctx, tenant)
			if err != nil || seq != s0 || hash != h0 || seq != r.Heads[tenant].Seq {
				t.Errorf("replica %d: tenant %s head %d %x (%v), replica 0 has %d %x", i, tenant, seq, hash[:4], err, s0, h0[:4])
			}
		}
		retries += s.conflicts.Load()
	}
	t.Logf("%d events from %d replicas; %d decisions re-run after ErrConflict; %d appends re-planned after WrongExpectedVersion", total, replicas, conflicts, retries)
}

// TestKurrentDBReopen: a store opened on an existing ledger (a new or
// restarted replica) knows every stream's version and tenant head, and an
// older store that has not heard of the newer one's appends still decides
// against what is stored.
func TestKurrentDBReopen(t *testing.T) {
	url := serverURL(t)
	ledger := newLedger(t)
	ctx := context.Background()
	a := openStore(t, url, ledger)
	const streams = 40
	n := 0
	for i := range streams {
		for range i%3 + 1 {
			if _, err := a.Append(ctx, decision(fmt.Sprint("t", i%2), fmt.Sprint("s/", i), events.AnyVersion, "{}")); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	b := openStore(t, url, ledger)
	for i := range streams {
		tenant, stream := fmt.Sprint("t", i%2), fmt.Sprint("s/", i)
		want := int64(i%3 + 1)
		_, err := b.Append(ctx, decision(tenant, stream, want-1, "stale"))
		var ce *events.ConflictError
		if !errors.As(err, &ce) || ce.Actual != want {
			t.Errorf("%s: stale decision on the new replica: %v, want ConflictError{Actual: %d}", stream, err, want)
		}
		got, err := b.Append(ctx, decision(tenant, stream, want, "right"))
		if err != nil || got[0].Version != want+1 {
			t.Fatalf("%s: decision at the right version on the new replica: %v", stream, err)
		}
		// The old replica decides on what it last saw: now stale.
		_, err = a.Append(ctx, decision(tenant, stream, want, "old view"))
		if !errors.As(err, &ce) || ce.Actual != want+1 {
			t.Errorf("%s: the old replica's stale decision: %v, want ConflictError{Actual: %d}", stream, err, want+1)
		}
	}
	for _, s := range []*Store{a, b} {
		if r, err := events.VerifyAll(ctx, s, nil); err != nil || r.Checked != int64(n+streams) {
			t.Errorf("VerifyAll: checked %d (%v), want %d", r.Checked, err, n+streams)
		}
	}
}

// crashChild is the child half of TestKurrentDBCrashSafety: it appends
// from eight goroutines until killed and prints each acknowledged id only
// after Append returned.
func crashChild(ledger string) {
	ctx := context.Background()
	s, err := OpenURL(ctx, os.Getenv(envServer), Options{Ledger: ledger})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("evt_crash_%d_%d_%d", os.Getpid(), w, i)
				_, err := s.Append(ctx, events.Proposed{ID: id, Tenant: fmt.Sprint("t_", w%2), Stream: fmt.Sprint("w/", w),
					ExpectedVersion: events.AnyVersion, Type: "test.crash", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))})
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				mu.Lock()
				out.WriteString("ACK " + id + "\n")
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKurrentDBCrashSafety kills a writing replica with SIGKILL at an
// arbitrary moment, three times, while another replica in this process
// keeps appending to the same ledger. After each kill every acknowledged
// event of both is stored, the surviving replica still appends, and the
// chain verifies.
func TestKurrentDBCrashSafety(t *testing.T) {
	url := serverURL(t)
	ledger := newLedger(t)
	ctx := context.Background()
	survivor := openStore(t, url, ledger)
	for round := range 3 {
		stop := make(chan struct{})
		var mine []string
		done := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				p := decision("t_0", "survivor", events.AnyVersion, fmt.Sprint(i))
				if _, err := survivor.Append(ctx, p); err != nil {
					done <- err
					return
				}
				mine = append(mine, p.ID)
			}
		}()
		acked := runAndKill(t, ledger, time.Duration(300+200*round)*time.Millisecond)
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("round %d: the surviving replica failed: %v", round, err)
		}
		if len(acked) == 0 {
			t.Fatalf("round %d: the child acknowledged nothing before it was killed", round)
		}
		fresh := openStore(t, url, ledger)
		for _, id := range append(acked, mine...) {
			if _, ok, err := fresh.Lookup(ctx, id); err != nil || !ok {
				t.Errorf("round %d: acknowledged event %s is missing after SIGKILL (%v)", round, id, err)
			}
		}
		r, err := events.VerifyAll(ctx, fresh, nil)
		if err != nil {
			t.Fatalf("round %d: chain broken after SIGKILL: %v", round, err)
		}
		if _, err := survivor.Append(ctx, decision("t_1", "after", events.AnyVersion, "x")); err != nil {
			t.Fatalf("round %d: the surviving replica cannot append after the kill: %v", round, err)
		}
		t.Logf("round %d: child acknowledged %d, survivor %d; chain of %d verified", round, len(acked), len(mine), r.Checked)
	}
}

func runAndKill(t *testing.T, ledger string, after time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HALDIR_KDB_CRASH_CHILD="+ledger)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1<<16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var acked []string
	timer := time.NewTimer(after)
	for killed := false; !killed; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child exited before it was killed: %v", cmd.Wait())
			}
			if id, ok := strings.CutPrefix(l, "ACK "); ok {
				acked = append(acked, id)
			}
		case <-timer.C:
			if len(acked) == 0 {
				timer.Reset(100 * time.Millisecond)
				continue
			}
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	for l := range lines {
		if id, ok := strings.CutPrefix(l, "ACK "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	return acked
}
