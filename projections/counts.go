package projections

import (
	"context"

	"github.com/haldir-dev/haldir/events"
)

// EventCounts counts ledger events per tenant and event type, with the
// first and last position of each. The compliance manifest answers "is this
// population complete?" from it.
type EventCounts struct{}

// Tables implements Handler.
func (EventCounts) Tables() []string { return []string{"event_counts"} }

// Apply implements Handler.
func (EventCounts) Apply(ctx context.Context, tx *Tx, e *events.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO {event_counts} (tenant_id, type, count, first_position, last_position) VALUES (?, ?, 1, ?, ?)
ON CONFLICT (tenant_id, type) DO UPDATE SET count = {event_counts}.count + 1, last_position = excluded.last_position`,
		e.Tenant, e.Type, e.Position, e.Position)
	return err
}
