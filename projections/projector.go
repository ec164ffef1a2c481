// Package projections builds Haldir's read models from the ledger.
//
// A Handler applies events to the tables it owns. Handlers are bundled in
// named, ordered Groups; each group has one checkpoint, stored in the same
// transaction as the read-model changes, so an event's effect is applied
// exactly once even though delivery is at-least-once. The Projector runs
// every group as a watermill consumer fed by a LedgerSubscriber.
//
// Read models can be dropped and rebuilt from the ledger at any time
// (Rebuild), and a replay into scratch tables must equal the live tables
// (Check).
package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// Handler applies ledger events to read-model tables.
type Handler interface {
	// Tables lists the tables the handler owns, in creation order.
	Tables() []string
	// Apply applies e inside tx. It must be idempotent in effect only
	// together with the group checkpoint: it is called once per event per
	// transaction, and a rolled-back transaction is replayed whole.
	Apply(ctx context.Context, tx *Tx, e *events.Event) error
}

// Flusher is implemented by handlers that aggregate a transaction's events
// in memory (in Tx.Batch) and write them once, at the end: Flush is called
// once per transaction, after the last Apply and before the checkpoint
// moves, also when nothing was applied.
type Flusher interface {
	Flush(ctx context.Context, tx *Tx) error
}

// flush calls every Flusher of g, in order.
func flush(ctx context.Context, g Group, tx *Tx) error {
	for _, h := range g.Handlers {
		if f, ok := h.(Flusher); ok {
			if err := f.Flush(ctx, tx); err != nil {
				return fmt.Errorf("projections: %s: flush: %w", g.Name, err)
			}
		}
	}
	return nil
}

// Group is a named, ordered set of handlers sharing one checkpoint.
type Group struct {
	Name     string
	Handlers []Handler
	// Async groups feed background work (the webhook outbox), not the
	// queries clients make, so WaitFor does not wait for them.
	Async bool
	// Observe, when set, is called for every event the group passes, in
	// order, once the transaction that passed it has committed and before
	// WaitFor learns of it, whether this process applied the event or
	// another replica had: it keeps per-process caches in step with the
	// ledger.
	Observe func(e *events.Event)
}

// Tables returns every table of the group's handlers.
func (g Group) Tables() []string {
	var out []string
	for _, h := range g.Handlers {
		out = append(out, h.Tables()...)
	}
	return out
}

// maxBatch bounds how many events one projection transaction applies.
const maxBatch = 512

// Under a steady stream of appends a group commits at most once per
// interval, so that each transaction applies many events: a projection
// transaction's fixed cost (its commit, the checkpoint, the Merkle tree's
// flush) is most of its cost. An Async group waits asyncInterval, which
// is what its consumers (a webhook delivery, an anomaly flag) may wait
// beyond the commit of the event they act on. Another group waits
// readInterval, and not at all while a request waits for it (WaitFor).
const (
	asyncInterval = 25 * time.Millisecond
	readInterval  = 20 * time.Millisecond
)

// Projector runs groups against a store. Create it with NewProjector and
// run it with Run.
type Projector struct {
	db      *sqldb.DB
	store   events.Store
	log     *slog.Logger
	router  *message.Router
	runners map[string]*runner
}

// NewProjector prepares the groups' checkpoints and a watermill router with
// one consumer handler per group.
func NewProjector(ctx context.Context, db *sqldb.DB, store events.Store, log *slog.Logger, groups ...Group) (*Projector, error) {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermillLogger(log))
	if err != nil {
		return nil, err
	}
	p := &Projector{db: db, store: store, log: log, router: router, runners: map[string]*runner{}}
	for _, g := range groups {
		r := &runner{group: g, db: db, log: log.With("projection", g.Name), changed: make(chan struct{})}
		pos, err := r.ensureCheckpoint(ctx)
		if err != nil {
			return nil, err
		}
		r.committed.Store(pos)
		sub := &LedgerSubscriber{
			Store:      store,
			Checkpoint: r.readCheckpoint,
			OnError:    func(err error) { r.log.Warn("ledger read failed; retrying", "err", err) },
		}
		router.AddConsumerHandler(g.Name, "ledger", sub, r.handle)
		p.runners[g.Name] = r
	}
	return p, nil
}

// Run runs the projections until ctx is cancelled or Close is called.
func (p *Projector) Run(ctx context.Context) error { return p.router.Run(ctx) }

// Running is closed once every group is consuming.
func (p *Projector) Running() <-chan struct{} { return p.router.Running() }

// Close stops the projections, letting in-flight transactions finish.
func (p *Projector) Close() error { return p.router.Close() }

// Position returns the committed checkpoint of the named group.
func (p *Projector) Position(group string) int64 {
	if r, ok := p.runners[group]; ok {
		return r.committed.Load()
	}
	return 0
}

// Advanced returns a channel closed the next time the named group commits,
// for consumers of what it writes (the webhook worker wakes on the outbox).
func (p *Projector) Advanced(group string) <-chan struct{} {
	r, ok := p.runners[group]
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// WaitFor blocks until every group but the Async ones has committed
// position pos or beyond, or ctx ends. It gives read-your-writes: a command
// waits for its event's position before it answers.
func (p *Projector) WaitFor(ctx context.Context, pos int64) error {
	for _, r := range p.runners {
		if r.group.Async {
			continue
		}
		if err := r.waitFor(ctx, pos); err != nil {
			return err
		}
	}
	return nil
}

// Reached reports whether every group but the Async ones has committed
// position pos, without waiting.
func (p *Projector) Reached(pos int64) bool {
	for _, r := range p.runners {
		if !r.group.Async && r.committed.Load() < pos {
			return false
		}
	}
	return true
}

// runner applies one group's events. The router delivers one message at a
// time (the subscriber waits for each Ack), so its fields need no lock; the
// goroutine changes between messages, with the channel hand-off ordering
// the accesses.
type runner struct {
	group Group
	db    *sqldb.DB
	log   *slog.Logger

	buf     []events.Event // received, not yet applied
	tx      *sqldb.RelaxedTx
	ptx     *Tx
	applied int64 // last position applied in tx (or the checkpoint at its start)
	pending int   // events applied in tx

	committed atomic.Int64
	mu        sync.Mutex
	changed   chan struct{}
	// lastCommit is when the group last committed (see readInterval).
	lastCommit time.Time
	// waiters counts the WaitFor calls waiting for the group; hurry is
	// closed, under mu, when one starts waiting.
	waiters atomic.Int32
	hurry   chan struct{}
}

func (r *runner) ensureCheckpoint(ctx context.Context) (int64, error) {
	q := "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, 0, ?) ON CONFLICT (name) DO NOTHING"
	if _, err := r.db.Write.ExecContext(ctx, r.db.Rebind(q), r.group.Name, time.Now().UnixNano()); err != nil {
		return 0, fmt.Errorf("projections: create checkpoint %s: %w", r.group.Name, err)
	}
	return r.readCheckpoint(ctx)
}

func (r *runner) readCheckpoint(ctx context.Context) (int64, error) {
	return readCheckpoint(ctx, r.db.Read, r.db.Dialect, r.group.Name, false)
}

func readCheckpoint(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, d sqldb.Dialect, name string, lock bool) (int64, error) {
	var pos int64
	if err := q.QueryRowContext(ctx, sqldb.Rebind(d, checkpointQuery(d, lock)), name).Scan(&pos); err != nil {
		return 0, fmt.Errorf("projections: read checkpoint %s: %w", name, err)
	}
	return pos, nil
}

// checkpointQuery reads a group's checkpoint, locking the row on Postgres
// when lock is set (so that one replica applies a batch at a time).
func checkpointQuery(d sqldb.Dialect, lock bool) string {
	if lock && d == sqldb.Postgres {
		return "SELECT position FROM checkpoints WHERE name = ? FOR UPDATE"
	}
	return "SELECT position FROM checkpoints WHERE name = ?"
}

var errGap = errors.New("projections: event ahead of checkpoint; resyncing")

// handle is the group's watermill handler. It collects events and applies
// them in one transaction when the ledger holds no more for now (the flush
// mark) or the batch is full, so the transaction, and SQLite's single
// write lock, is held only while applying. Acknowledging an event before
// it is applied is safe: a failure nacks the batch's last message, and the
// subscriber reads again from the stored checkpoint.
func (r *runner) handle(m *message.Message) error {
	r.buf = append(r.buf, FromMessage(m))
	if m.Metadata.Get(metaFlush) != "1" && len(r.buf) < maxBatch {
		return nil
	}
	if len(r.buf) < maxBatch {
		r.pause(m.Context())
	}
	batch := r.buf
	r.buf = r.buf[:0]
	return r.apply(context.WithoutCancel(m.Context()), batch)
}

// apply applies batch in one transaction with the group's checkpoint.
func (r *runner) apply(ctx context.Context, batch []events.Event) error {
	if err := r.begin(ctx); err != nil {
		return err
	}
	for i := range batch {
		e := &batch[i]
		switch {
		case e.Position <= r.applied:
			// Already applied, by this process before a resync or by
			// another replica: skip it.
			continue
		case e.Position != r.applied+1:
			r.rollback()
			return errGap
		}
		for _, h := range r.group.Handlers {
			if err := h.Apply(ctx, r.ptx, e); err != nil {
				r.rollback()
				r.log.Error("projection failed; the event will be retried", "position", e.Position, "type", e.Type, "err", err)
				return err
			}
		}
		r.applied = e.Position
		r.pending++
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	if r.group.Observe != nil {
		for i := range batch {
			r.group.Observe(&batch[i])
		}
	}
	r.advance(r.applied)
	return nil
}

// begin starts a batch. Its commit is not flushed to disk: a read model
// moves atomically with its checkpoint, so a power loss can only roll back
// whole batches, which the ledger replays (see sqldb.RelaxedTx).
//
// The checkpoint row is read, locked on Postgres, as the transaction's
// first statement, and moved as its last (see sqldb.BeginRelaxedQuery).
func (r *runner) begin(ctx context.Context) error {
	var pos int64
	tx, err := r.db.BeginRelaxedQuery(ctx, []any{&pos}, r.db.Rebind(checkpointQuery(r.db.Dialect, true)), r.group.Name)
	if err != nil {
		return fmt.Errorf("projections: begin and read checkpoint %s: %w", r.group.Name, err)
	}
	r.tx, r.ptx, r.applied, r.pending = tx, newTx(tx.Q, r.db, ""), pos, 0
	return nil
}

func (r *runner) commit(ctx context.Context) error {
	if err := flush(ctx, r.group, r.ptx); err != nil {
		r.rollback()
		return err
	}
	var err error
	if r.pending > 0 {
		err = r.tx.CommitAfter(ctx, r.db.Rebind("UPDATE checkpoints SET position = ?, updated_at = ? WHERE name = ?"),
			r.applied, time.Now().UnixNano(), r.group.Name)
	} else {
		err = r.tx.Commit()
	}
	if err != nil {
		r.tx = nil
		return fmt.Errorf("projections: move checkpoint and commit: %w", err)
	}
	r.tx = nil
	r.lastCommit = time.Now()
	return nil
}

func (r *runner) rollback() {
	if r.tx != nil {
		r.tx.Rollback()
		r.tx = nil
	}
}

// pause holds the subscriber, after the group's last commit, for the rest
// of its interval (see readInterval), so that the events appended
// meanwhile join the next batch; a request waiting for the group ends the
// pause at once.
func (r *runner) pause(ctx context.Context) {
	interval := readInterval
	if r.group.Async {
		interval = asyncInterval
	}
	wait := interval - time.Since(r.lastCommit)
	if wait <= 0 {
		return
	}
	var hurry chan struct{}
	if !r.group.Async {
		r.mu.Lock()
		if r.hurry == nil {
			r.hurry = make(chan struct{})
		}
		hurry = r.hurry
		r.mu.Unlock()
		if r.waiters.Load() > 0 {
			return
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-hurry:
	case <-ctx.Done():
	}
	r.mu.Lock()
	if r.hurry == hurry {
		r.hurry = nil
	}
	r.mu.Unlock()
}

// advance publishes a committed position to waiters.
func (r *runner) advance(pos int64) {
	if pos <= r.committed.Load() {
		return
	}
	r.committed.Store(pos)
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *runner) waitFor(ctx context.Context, pos int64) error {
	if r.committed.Load() >= pos {
		return nil
	}
	r.waiters.Add(1)
	defer r.waiters.Add(-1)
	r.mu.Lock()
	if r.hurry != nil {
		close(r.hurry)
		r.hurry = nil
	}
	r.mu.Unlock()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if r.committed.Load() >= pos {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: %s has not reached position %d: %w", r.group.Name, pos, ctx.Err())
		}
	}
}

// watermillLogger routes watermill's logs to slog, one level quieter: the
// router reports every start and stop at Info.
func watermillLogger(log *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelDebug: slog.LevelDebug - 4,
	})
}

// Tx is a read-model transaction. Queries name tables in braces, such as
// "{sessions}", and use "?" placeholders; Tx maps the names to the live or
// scratch tables and the placeholders to the dialect's.
type Tx struct {
	tx      sqldb.Querier
	db      *sqldb.DB
	dialect sqldb.Dialect
	prefix  string
	// described memoises Describe for the event being applied, so the
	// handlers of a group decode its payload once.
	describedAt int64
	described   AuditEntry
	// ahead, when set, holds Describe of the events from position
	// aheadFrom on, computed beforehand (by a replay's reader).
	ahead     []AuditEntry
	aheadFrom int64
	// batch holds what Flushers accumulate during the transaction.
	batch map[string]any
}

// Batch returns the transaction's accumulator named key, made by init on
// first use. It is discarded with the transaction.
func Batch[T any](t *Tx, key string, init func() T) T {
	if t.batch == nil {
		t.batch = map[string]any{}
	}
	v, ok := t.batch[key]
	if !ok {
		v = init()
		t.batch[key] = v
	}
	return v.(T)
}

// Query runs a query returning rows.
func (t *Tx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.rewrite(q), args...)
}

func newTx(tx sqldb.Querier, db *sqldb.DB, prefix string) *Tx {
	return &Tx{tx: tx, db: db, dialect: db.Dialect, prefix: prefix}
}

// Dialect returns the database dialect, for the rare query that differs.
func (t *Tx) Dialect() sqldb.Dialect { return t.dialect }

// InvalidateChannel is the Postgres notification channel on which a
// projection tells every replica that a cached read of what changed is
// stale; the payload names it ("key:<prefix>"). Notifications are sent at
// the projection's commit, before the command that caused it answers.
const InvalidateChannel = "haldir_invalidate"

// Invalidate notifies every replica, at commit, that cached reads of what
// names are stale. It does nothing on SQLite (one process) and while
// rebuilding into scratch tables.
func (t *Tx) Invalidate(ctx context.Context, what string) error {
	if t.dialect != sqldb.Postgres || t.prefix != "" {
		return nil
	}
	_, err := t.tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", InvalidateChannel, what)
	return err
}

// Exec runs a statement.
func (t *Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.db.ExecTx(ctx, t.tx, t.rewrite(q), args...)
}

// QueryRow runs a query returning at most one row.
func (t *Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.db.QueryRowTx(ctx, t.tx, t.rewrite(q), args...)
}

// Describe returns Describe(e), decoding e's payload only once per event.
func (t *Tx) Describe(e *events.Event) AuditEntry {
	if i := e.Position - t.aheadFrom; t.ahead != nil && i >= 0 && i < int64(len(t.ahead)) {
		return t.ahead[i]
	}
	if t.describedAt != e.Position || e.Position == 0 {
		t.described, t.describedAt = Describe(e), e.Position
	}
	return t.described
}

var rewritten sync.Map // "prefix|dialect|query" -> string

func (t *Tx) rewrite(q string) string {
	key := t.prefix + "|" + string(t.dialect) + "|" + q
	if s, ok := rewritten.Load(key); ok {
		return s.(string)
	}
	s := sqldb.Rebind(t.dialect, expandTables(q, t.prefix))
	rewritten.Store(key, s)
	return s
}

// expandTables replaces each "{name}" in q with prefix+name.
func expandTables(q, prefix string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(q, '{')
		if i < 0 {
			b.WriteString(q)
			return b.String()
		}
		j := strings.IndexByte(q[i:], '}')
		if j < 0 {
			b.WriteString(q)
			return b.String()
		}
		b.WriteString(q[:i])
		b.WriteString(prefix)
		b.WriteString(q[i+1 : i+j])
		q = q[i+j+1:]
	}
}
