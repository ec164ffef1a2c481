package sqlstore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

func TestMain(m *testing.M) {
	if target := os.Getenv("HALDIR_CRASH_CHILD"); target != "" {
		crashChild(target)
		return
	}
	os.Exit(m.Run())
}

// crashChild is the child half of TestCrashSafety. It appends from eight
// goroutines until killed and prints each acknowledged event id on its own
// line, only after Append returned.
func crashChild(target string) {
	ctx := context.Background()
	db, err := openTarget(ctx, target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := sqlstore.Open(ctx, db)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("evt_crash_%d_%d_%d", os.Getpid(), w, i)
				_, err := s.Append(ctx, events.Proposed{ID: id, Tenant: fmt.Sprintf("t_%d", w%2), Stream: fmt.Sprintf("w/%d", w),
					ExpectedVersion: events.AnyVersion, Type: "test.crash", Payload: []byte(`{"i":` + fmt.Sprint(i) + `}`)})
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

func openTarget(ctx context.Context, target string) (*sqldb.DB, error) {
	if strings.HasPrefix(target, "postgres://") {
		return sqldb.OpenPostgres(ctx, target, 8)
	}
	return sqldb.OpenSQLite(target)
}

// TestCrashSafety kills a writing process with SIGKILL at an arbitrary
// moment, three times, and checks after each kill that every acknowledged
// event is stored and the chain verifies.
func TestCrashSafety(t *testing.T) {
	for _, b := range sqltest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db, target := b.Open(t)
			ctx := context.Background()
			var total int
			for round := 0; round < 3; round++ {
				acked := runAndKill(t, target, time.Duration(300+200*round)*time.Millisecond)
				if len(acked) == 0 {
					t.Fatalf("round %d: the child acknowledged nothing before it was killed", round)
				}
				total += len(acked)
				s, err := sqlstore.Open(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				stored := map[string]bool{}
				for after := int64(0); ; {
					page, err := s.ReadAll(ctx, after, 5000)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range page {
						stored[e.ID] = true
					}
					if len(page) < 5000 {
						break
					}
					after = page[len(page)-1].Position
				}
				for _, id := range acked {
					if !stored[id] {
						t.Errorf("round %d: acknowledged event %s is missing after SIGKILL", round, id)
					}
				}
				r, err := events.VerifyAll(ctx, s, nil)
				if err != nil {
					t.Fatalf("round %d: chain broken after SIGKILL: %v", round, err)
				}
				s.Close()
				t.Logf("round %d: %d acknowledged, %d stored, chain of %d verified", round, len(acked), len(stored), r.Checked)
			}
		})
	}
}

func runAndKill(t *testing.T, target string, after time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "HALDIR_CRASH_CHILD="+target)
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
	killed := false
	for !killed {
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
	for l := range lines { // whatever was fully written before the kill
		if id, ok := strings.CutPrefix(l, "ACK "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	return acked
}
