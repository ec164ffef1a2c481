package projections

import (
	"context"

	"github.com/haldir-dev/haldir/events"
)

// EventCounts counts ledger events per tenant and event type, with the
// first and last position of each. The compliance manifest answers "is this
// population complete?" from it. views.Counts are summed per transaction and
// written once (Flush).
type EventCounts struct{}

type countKey struct{ tenant, typ string }

type countSum struct{ n, first, last int64 }

// Tables implements Handler.
func (EventCounts) Tables() []string { return []string{"event_counts"} }

func countsBatch(tx *Tx) map[countKey]*countSum {
	return Batch(tx, "event_counts", func() map[countKey]*countSum { return map[countKey]*countSum{} })
}

// Apply implements Handler.
func (EventCounts) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	b := countsBatch(tx)
	k := countKey{e.Tenant, e.Type}
	s := b[k]
	if s == nil {
		s = &countSum{first: e.Position}
		b[k] = s
	}
	s.n++
	s.last = e.Position
	return nil
}

// Flush implements Flusher.
func (EventCounts) Flush(ctx context.Context, tx *Tx) error {
	for k, s := range countsBatch(tx) {
		if _, err := tx.Exec(ctx, `INSERT INTO {event_counts} (tenant_id, type, count, first_position, last_position) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, type) DO UPDATE SET count = {event_counts}.count + excluded.count, last_position = excluded.last_position`,
			k.tenant, k.typ, s.n, s.first, s.last); err != nil {
			return err
		}
	}
	clear(countsBatch(tx))
	return nil
}
