package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/events/sqlstore"
	"github.com/haldir-dev/haldir/storage/sqldb/sqltest"
)

// BenchmarkAppend appends single-event calls from 1, 8 and 32 concurrent
// writers, each call durable before it returns, and reports events/s.
func BenchmarkAppend(b *testing.B) {
	payload := []byte(`{"session_id":"ses_abcdefghijklmnopqrstuvwx","tool":"stripe","action":"charge","cost_usd":29.99,"details":{"customer":"cus_123"}}`)
	for _, be := range sqltest.Backends() {
		for _, writers := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/writers=%d", be.Name, writers), func(b *testing.B) {
				db, _ := be.Open(b)
				ctx := context.Background()
				s, err := sqlstore.Open(ctx, db)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := 0; w < writers; w++ {
					n := b.N / writers
					if w < b.N%writers {
						n++
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < n; i++ {
							_, err := s.Append(ctx, events.Proposed{ID: events.NewID(), Tenant: fmt.Sprintf("t_%d", w%4),
								Stream: fmt.Sprintf("session/%d", w), ExpectedVersion: events.AnyVersion, Type: "audit.logged", Payload: payload,
								Meta: events.Metadata{Actor: "hld_abcdefgh", RequestID: "req_0123456789"}})
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkVerify recomputes the chain of a 100,000-event ledger and
// reports events/s.
func BenchmarkVerify(b *testing.B) {
	const n = 100_000
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db, _ := be.Open(b)
			ctx := context.Background()
			s, err := sqlstore.Open(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := make([]events.Proposed, 0, 1000)
			for i := 0; i < n; i++ {
				batch = append(batch, events.Proposed{ID: fmt.Sprintf("evt_v_%d", i), Tenant: fmt.Sprintf("t_%d", i%8), Stream: fmt.Sprintf("s/%d", i%100),
					ExpectedVersion: events.AnyVersion, Type: "audit.logged", Payload: []byte(`{"tool":"stripe","action":"charge","cost_usd":1.5}`)})
				if len(batch) == cap(batch) {
					if _, err := s.Append(ctx, batch...); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				r, err := events.VerifyAll(ctx, s, nil)
				if err != nil || r.Checked != n {
					b.Fatalf("verify: %d checked, %v", r.Checked, err)
				}
			}
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
