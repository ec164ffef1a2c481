package events_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

// sequential verifies the ledger one event at a time, the reference that
// the parallel VerifyAll must agree with.
func sequential(ctx context.Context, s events.Store) (int64, error) {
	v := events.NewVerifier(true)
	for after := int64(0); ; {
		page, err := s.ReadAll(ctx, after, 1000)
		var ce *events.CorruptError
		if errors.As(err, &ce) {
			return ce.Position, nil
		}
		if err != nil {
			return 0, err
		}
		for i := range page {
			if err := v.Check(&page[i]); err != nil {
				return err.(*events.VerifyError).Position, nil
			}
			after = page[i].Position
		}
		if len(page) < 1000 {
			return 0, nil
		}
	}
}

// TestParallelVerifyAgreesWithSequential tampers with random rows, range
// boundaries included, and checks that the parallel verifier names the same
// first bad position as a sequential pass.
func TestParallelVerifyAgreesWithSequential(t *testing.T) {
	defer events.SetParallelism(4, 50)()
	ctx := context.Background()
	db, _ := sqltest.OpenSQLite(t)
	s, err := sqlstore.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 400 // four ranges of 100
	var batch []events.Proposed
	for i := 0; i < n; i++ {
		batch = append(batch, events.Proposed{ID: events.NewID(), Tenant: fmt.Sprintf("t_%d", i%3), Stream: fmt.Sprintf("s/%d", i%7),
			ExpectedVersion: events.AnyVersion, Type: "test.v", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	if _, err := s.Append(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	if r, err := events.VerifyAll(ctx, s, nil); err != nil || r.Checked != n {
		t.Fatalf("VerifyAll on an intact ledger = %d checked, %v", r.Checked, err)
	}

	tamper := func(q string, args ...any) {
		t.Helper()
		if err := sqltest.Tamper(ctx, db, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	positions := []int64{1, 100, 101, 200, 201, 300, 301, 400}
	for i := 0; i < 12; i++ {
		positions = append(positions, 1+rng.Int64N(n))
	}
	for _, pos := range positions {
		for _, c := range []struct{ name, flip, undo string }{
			{"payload", "UPDATE events SET payload = payload || 'x' WHERE position = ?", "UPDATE events SET payload = substr(payload, 1, length(payload) - 1) WHERE position = ?"},
			{"seq", "UPDATE events SET seq = seq + 1000 WHERE position = ?", "UPDATE events SET seq = seq - 1000 WHERE position = ?"},
			{"moved", "UPDATE events SET position = position + 100000 WHERE position = ?", "UPDATE events SET position = position - 100000 WHERE position = ?"},
		} {
			t.Run(fmt.Sprintf("%s@%d", c.name, pos), func(t *testing.T) {
				tamper(c.flip, pos)
				defer tamper(c.undo, pos+map[bool]int64{true: 100000}[c.name == "moved"])
				want, err := sequential(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				if want == 0 {
					t.Fatalf("the sequential verifier missed a %s change at %d", c.name, pos)
				}
				_, err = events.VerifyAll(ctx, s, nil)
				var ve *events.VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("VerifyAll = %v, want a VerifyError at %d", err, want)
				}
				if ve.Position != want {
					t.Errorf("VerifyAll names position %d (%s), sequential names %d", ve.Position, ve.Reason, want)
				}
			})
		}
	}
	// Deleting a row and renumbering the rest keeps positions gapless;
	// only the tenant chains notice, and across a range boundary only the
	// stitching step can.
	for _, pos := range []int64{98, 99, 100, 101, 102, 199, 200, 250, 300} {
		t.Run(fmt.Sprintf("deleted-and-renumbered@%d", pos), func(t *testing.T) {
			victim, err := s.ReadAll(ctx, pos-1, 1)
			if err != nil || len(victim) != 1 {
				t.Fatalf("read victim: %v", err)
			}
			v := victim[0]
			tamper("DELETE FROM events WHERE position = ?", pos)
			tamper("UPDATE events SET position = -(position - 1) WHERE position > ?", pos)
			tamper("UPDATE events SET position = -position WHERE position < 0")
			defer func() {
				tamper("UPDATE events SET position = -(position + 1) WHERE position >= ?", pos)
				tamper("UPDATE events SET position = -position WHERE position < 0")
				tamper("INSERT INTO events (position, tenant_id, seq, event_id, stream, stream_version, type, payload, metadata, recorded_at, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
					v.Position, v.Tenant, v.Seq, v.ID, v.Stream, v.Version, v.Type, v.Payload, v.Metadata, v.RecordedAt.UnixNano(), v.PrevHash[:], v.Hash[:])
			}()
			want, err := sequential(ctx, s)
			if err != nil || want == 0 {
				t.Fatalf("sequential verifier: position %d, %v", want, err)
			}
			_, err = events.VerifyAll(ctx, s, nil)
			var ve *events.VerifyError
			if !errors.As(err, &ve) || ve.Position != want {
				t.Errorf("VerifyAll = %v, sequential names position %d", err, want)
			}
		})
	}
	if _, err := events.VerifyAll(ctx, s, nil); err != nil {
		t.Fatalf("after undoing every change: %v", err)
	}
}
