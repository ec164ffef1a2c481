package webhooks

import "context"

// SetRenewing makes w ask renewing before each lease renewal and skip the
// renewal when it answers false, as a frozen or dead process would.
func SetRenewing(w *Worker, renewing func() bool) { w.renewing = renewing }

// Disable is the queue's disable, for tests.
func Disable(ctx context.Context, q *Queue, j Job, reason string) error {
	return q.disable(ctx, j, reason)
}
