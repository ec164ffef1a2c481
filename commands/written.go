package commands

import (
	"context"
	"sync"
	"sync/atomic"
)

// Written is what one request's commands appended, for read-your-writes
// across requests and replicas: the ledger position of the last event they
// appended, and whether the read models had reached it when they
// answered. The API returns both in response headers (Haldir-Position, and
// Haldir-Read-Your-Writes: pending when a projection wait timed out), so a
// 2xx never silently promises a read it cannot keep; a client that echoes
// Haldir-Position on a read, to any replica, is answered only once the read
// models have reached it (AwaitPosition).
type Written struct {
	mu       sync.Mutex
	position int64
	pending  bool
}

type writtenKey struct{}

// WithWritten returns ctx carrying a fresh Written that the commands run
// with ctx fill in.
func WithWritten(ctx context.Context) (context.Context, *Written) {
	w := &Written{}
	return context.WithValue(ctx, writtenKey{}, w), w
}

// note records an appended position, and whether the read models showed it
// when the command answered.
func noteWritten(ctx context.Context, position int64, visible bool) {
	w, _ := ctx.Value(writtenKey{}).(*Written)
	if w == nil || position <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.position = max(w.position, position)
	w.pending = w.pending || !visible
}

// Position returns the ledger position of the last event appended, 0 for
// none.
func (w *Written) Position() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.position
}

// Pending reports whether a command answered before the read models
// reached what it appended (its projection wait timed out): the write is
// durable, but a read may not show it yet.
func (w *Written) Pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// tenantPositions maps tenants to the highest position this process has
// appended for them, and counts the appends handed to the writer whose
// outcome nobody waits for (Service.CompleteCall). Entries are never
// removed: one per tenant.
type tenantPositions struct{ m sync.Map } // tenant -> *tenantWrites

type tenantWrites struct {
	pos atomic.Int64
	mu  sync.Mutex
	// inflight counts the unawaited appends; drained is closed when it
	// falls to zero (nil while it is zero).
	inflight int
	drained  chan struct{}
}

func (t *tenantPositions) of(tenant string) *tenantWrites {
	v, ok := t.m.Load(tenant)
	if !ok {
		v, _ = t.m.LoadOrStore(tenant, new(tenantWrites))
	}
	return v.(*tenantWrites)
}

func (t *tenantPositions) note(tenant string, pos int64) {
	w := t.of(tenant)
	for {
		cur := w.pos.Load()
		if pos <= cur || w.pos.CompareAndSwap(cur, pos) {
			return
		}
	}
}

func (t *tenantPositions) get(tenant string) int64 {
	if v, ok := t.m.Load(tenant); ok {
		return v.(*tenantWrites).pos.Load()
	}
	return 0
}

// begin counts an unawaited append of tenant; call the returned function
// once its outcome is known (and its position noted).
func (t *tenantPositions) begin(tenant string) (end func()) {
	w := t.of(tenant)
	w.mu.Lock()
	if w.inflight == 0 {
		w.drained = make(chan struct{})
	}
	w.inflight++
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.inflight--; w.inflight == 0 {
			close(w.drained)
			w.drained = nil
		}
	}
}

// pending returns a channel closed once every unawaited append of tenant
// counted so far has its outcome, or nil when none is under way.
func (t *tenantPositions) pending(tenant string) <-chan struct{} {
	v, ok := t.m.Load(tenant)
	if !ok {
		return nil
	}
	w := v.(*tenantWrites)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.drained
}
