package commands

import (
	"encoding/json"
	"fmt"

	"github.com/haldir-dev/haldir/events"
)

// decodeRecorded decodes a recorded event's payload. Responses are built
// from what the ledger holds, so an idempotent retry answers exactly as the
// original did.
func decodeRecorded[T any](e events.Event) (T, error) {
	var v T
	if err := json.Unmarshal(e.Payload, &v); err != nil {
		return v, fmt.Errorf("commands: decode %s %s: %w", e.Type, e.ID, err)
	}
	return v, nil
}
