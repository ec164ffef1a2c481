// Package sqlstore implements the ledger (events.Store) on SQLite and
// PostgreSQL.
//
// All appends go through one group-commit writer per process: concurrent
// Append calls queue, the writer takes everything queued, checks each call's
// expected stream versions, assigns tenant sequence numbers, global
// positions and chain hashes, writes the lot in one transaction and
// acknowledges every call after the commit is durable. On Postgres the
// transaction first takes an advisory lock, so appends from several
// processes are serialised too, and positions become visible in the order
// they were assigned.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/sqldb"
)

// ledgerLock is the Postgres advisory lock key that serialises appends.
const ledgerLock = 7368200

// Limits of the writer.
const (
	maxBatchEvents = 1024 // events per transaction
	insertChunk    = 256  // rows per INSERT statement
	maxCachedKeys  = 200_000
)

// Store is a SQL ledger. Create it with Open; it is safe for concurrent use.
type Store struct {
	db    *sqldb.DB
	queue chan *appendCall
	stop  chan struct{}
	done  chan struct{}
	// closeMu guards closed: Append holds it for reading while enqueueing so
	// that Close never closes the queue under a sender.
	closeMu sync.RWMutex
	closed  bool

	wakeMu sync.Mutex
	wake   chan struct{}

	head atomic.Int64 // last committed position known to this process

	// Writer-goroutine state; no locking needed.
	lastPos    int64 // the position the caches below are valid for; -1 = unknown
	versions   map[streamKey]int64
	tenantHead map[string]events.TenantHead
	now        func() time.Time
}

type streamKey struct{ tenant, stream string }

type appendCall struct {
	events []events.Proposed
	result chan appendResult
}

type appendResult struct {
	events []events.Event
	err    error
}

// Open returns a Store on db and starts its writer. The schema must already
// be migrated.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	s := &Store{
		db:         db,
		queue:      make(chan *appendCall, 4096),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		wake:       make(chan struct{}),
		lastPos:    -1,
		versions:   make(map[streamKey]int64),
		tenantHead: make(map[string]events.TenantHead),
		now:        func() time.Time { return time.Now().UTC() },
	}
	h, err := s.Head(ctx)
	if err != nil {
		return nil, err
	}
	s.head.Store(h)
	go s.writer()
	return s, nil
}

// DB returns the database the store writes to.
func (s *Store) DB() *sqldb.DB { return s.db }

// Append implements events.Store.
func (s *Store) Append(ctx context.Context, batch ...events.Proposed) ([]events.Event, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	if len(batch) > maxBatchEvents {
		return nil, fmt.Errorf("%w: %d events in one append (at most %d)", events.ErrInvalid, len(batch), maxBatchEvents)
	}
	for i := range batch {
		if err := batch[i].Validate(); err != nil {
			return nil, err
		}
	}
	call := &appendCall{events: batch, result: make(chan appendResult, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, events.ErrClosed
	}
	select {
	case s.queue <- call:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	r := <-call.result // the writer always answers, even on Close
	return r.events, r.err
}

// Appended implements events.Store.
func (s *Store) Appended() <-chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	return s.wake
}

func (s *Store) notify() {
	s.wakeMu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.wakeMu.Unlock()
}

// LastAppended returns the highest position this process has committed (or
// seen at open). It costs no I/O.
func (s *Store) LastAppended() int64 { return s.head.Load() }

// Close stops the writer after it has answered every queued call.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.closeMu.Unlock()
	<-s.done
	return nil
}

func (s *Store) writer() {
	defer close(s.done)
	calls := make([]*appendCall, 0, 64)
	for {
		var first *appendCall
		select {
		case first = <-s.queue:
		case <-s.stop:
			// Answer whatever is still queued, then stop.
			for {
				select {
				case c := <-s.queue:
					s.commit([]*appendCall{c})
				default:
					return
				}
			}
		}
		calls = append(calls[:0], first)
		n := len(first.events)
	drain:
		for n < maxBatchEvents {
			select {
			case c := <-s.queue:
				calls = append(calls, c)
				n += len(c.events)
			default:
				break drain
			}
		}
		s.commit(calls)
	}
}

// commit writes calls in one transaction and answers each of them.
func (s *Store) commit(calls []*appendCall) {
	results, last, err := s.write(calls)
	if err != nil {
		s.lastPos = -1 // caches may describe rows that were rolled back
		for _, c := range calls {
			c.result <- appendResult{err: err}
		}
		return
	}
	if last > 0 {
		s.head.Store(last)
	}
	for i, c := range calls {
		c.result <- results[i]
	}
	if last > 0 {
		s.notify()
	}
}

// pending is the writer's view of the rows being written in one transaction.
type pending struct {
	versions map[streamKey]int64
	heads    map[string]events.TenantHead
	byID     map[string]*events.Event
	rows     []events.Event
	pos      int64
}

func (s *Store) write(calls []*appendCall) (results []appendResult, last int64, err error) {
	ctx := context.Background()
	tx, err := s.db.Write.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("events: begin append: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if s.db.Dialect == sqldb.Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", ledgerLock); err != nil {
			return nil, 0, fmt.Errorf("events: lock ledger: %w", err)
		}
	}
	var head int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(position), 0) FROM events").Scan(&head); err != nil {
		return nil, 0, fmt.Errorf("events: read head: %w", err)
	}
	if head != s.lastPos || len(s.versions) > maxCachedKeys || len(s.tenantHead) > maxCachedKeys {
		// Another process appended, or a transaction failed: the caches
		// may be stale.
		clear(s.versions)
		clear(s.tenantHead)
		s.lastPos = head
	}

	existing, err := s.lookupIDs(ctx, tx, calls)
	if err != nil {
		return nil, 0, err
	}
	p := &pending{
		versions: make(map[streamKey]int64),
		heads:    make(map[string]events.TenantHead),
		byID:     make(map[string]*events.Event),
		pos:      head,
	}
	now := s.now()
	results = make([]appendResult, len(calls))
	for i, c := range calls {
		results[i] = s.plan(ctx, tx, p, existing, c.events, now)
		if results[i].err != nil && !isDecisionError(results[i].err) {
			return nil, 0, results[i].err
		}
	}
	if err := s.insert(ctx, tx, p.rows); err != nil {
		return nil, 0, err
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("events: commit append: %w", err)
	}
	for k, v := range p.versions {
		s.versions[k] = v
	}
	for k, v := range p.heads {
		s.tenantHead[k] = v
	}
	s.lastPos = p.pos
	// Results point into p.rows only through copies made in plan.
	return results, p.pos, nil
}

func isDecisionError(err error) bool {
	return errors.Is(err, events.ErrConflict) || errors.Is(err, events.ErrDuplicateID) || errors.Is(err, events.ErrInvalid)
}

// plan assigns versions, sequence numbers, positions and hashes to one
// call's events, adding them to p, or returns the call's error leaving p
// unchanged.
func (s *Store) plan(ctx context.Context, tx *sql.Tx, p *pending, existing map[string]events.Event, batch []events.Proposed, now time.Time) appendResult {
	// Idempotent retry: the first event's id is already recorded (or
	// planned in this transaction by an earlier call).
	if prior, ok := s.recorded(p, existing, batch[0].ID); ok {
		out := make([]events.Event, 0, len(batch))
		out = append(out, prior)
		if !sameContent(&batch[0], &prior) {
			return appendResult{err: fmt.Errorf("%w: %s", events.ErrDuplicateID, batch[0].ID)}
		}
		for _, pr := range batch[1:] {
			e, ok := s.recorded(p, existing, pr.ID)
			if !ok || !sameContent(&pr, &e) {
				return appendResult{err: fmt.Errorf("%w: %s", events.ErrDuplicateID, pr.ID)}
			}
			out = append(out, e)
		}
		return appendResult{events: out}
	}
	versions := map[streamKey]int64{}
	heads := map[string]events.TenantHead{}
	pos := p.pos
	out := make([]events.Event, 0, len(batch))
	seen := map[string]bool{}
	for i := range batch {
		pr := &batch[i]
		if _, dup := s.recorded(p, existing, pr.ID); dup || seen[pr.ID] {
			return appendResult{err: fmt.Errorf("%w: %s", events.ErrDuplicateID, pr.ID)}
		}
		seen[pr.ID] = true
		key := streamKey{pr.Tenant, pr.Stream}
		cur, ok := versions[key]
		if !ok {
			v, err := s.streamVersion(ctx, tx, p, key)
			if err != nil {
				return appendResult{err: err}
			}
			cur = v
		}
		if pr.ExpectedVersion != events.AnyVersion && pr.ExpectedVersion != cur {
			return appendResult{err: &events.ConflictError{Tenant: pr.Tenant, Stream: pr.Stream, Expected: pr.ExpectedVersion, Actual: cur}}
		}
		h, ok := heads[pr.Tenant]
		if !ok {
			th, err := s.headOf(ctx, tx, p, pr.Tenant)
			if err != nil {
				return appendResult{err: err}
			}
			h = th
		}
		pos++
		e := events.Event{
			ID:         pr.ID,
			Tenant:     pr.Tenant,
			Stream:     pr.Stream,
			Version:    cur + 1,
			Type:       pr.Type,
			Payload:    pr.Payload,
			Metadata:   events.EncodeMetadata(pr.Meta),
			RecordedAt: now,
			Seq:        h.Seq + 1,
			Position:   pos,
			PrevHash:   h.Hash,
		}
		e.Hash = events.ComputeHash(&e)
		versions[key] = e.Version
		heads[pr.Tenant] = events.TenantHead{Seq: e.Seq, Hash: e.Hash}
		out = append(out, e)
	}
	// The call succeeds: fold its state into the transaction's.
	for k, v := range versions {
		p.versions[k] = v
	}
	for k, v := range heads {
		p.heads[k] = v
	}
	p.pos = pos
	start := len(p.rows)
	p.rows = append(p.rows, out...)
	for i := start; i < len(p.rows); i++ {
		p.byID[p.rows[i].ID] = &p.rows[i]
	}
	return appendResult{events: out}
}

func (s *Store) recorded(p *pending, existing map[string]events.Event, id string) (events.Event, bool) {
	if e, ok := existing[id]; ok {
		return e, true
	}
	if e, ok := p.byID[id]; ok {
		return *e, true
	}
	return events.Event{}, false
}

func sameContent(p *events.Proposed, e *events.Event) bool {
	return p.Tenant == e.Tenant && p.Stream == e.Stream && p.Type == e.Type &&
		string(p.Payload) == string(e.Payload) && string(events.EncodeMetadata(p.Meta)) == string(e.Metadata)
}

func (s *Store) streamVersion(ctx context.Context, tx *sql.Tx, p *pending, key streamKey) (int64, error) {
	if v, ok := p.versions[key]; ok {
		return v, nil
	}
	if v, ok := s.versions[key]; ok {
		return v, nil
	}
	var v int64
	err := tx.QueryRowContext(ctx, s.db.Rebind("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE tenant_id = ? AND stream = ?"),
		key.tenant, key.stream).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("events: read stream version: %w", err)
	}
	s.versions[key] = v
	return v, nil
}

func (s *Store) headOf(ctx context.Context, tx *sql.Tx, p *pending, tenant string) (events.TenantHead, error) {
	if h, ok := p.heads[tenant]; ok {
		return h, nil
	}
	if h, ok := s.tenantHead[tenant]; ok {
		return h, nil
	}
	h, err := tenantHead(ctx, tx, s.db.Dialect, tenant)
	if err != nil {
		return h, err
	}
	s.tenantHead[tenant] = h
	return h, nil
}

type queryer interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func tenantHead(ctx context.Context, q queryer, d sqldb.Dialect, tenant string) (events.TenantHead, error) {
	var h events.TenantHead
	var hash []byte
	err := q.QueryRowContext(ctx, sqldb.Rebind(d, "SELECT seq, hash FROM events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1"), tenant).Scan(&h.Seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return events.TenantHead{}, nil
	}
	if err != nil {
		return h, fmt.Errorf("events: read tenant head: %w", err)
	}
	if len(hash) != events.HashSize {
		return h, fmt.Errorf("events: tenant %q head has a %d-byte hash", tenant, len(hash))
	}
	copy(h.Hash[:], hash)
	return h, nil
}

// lookupIDs returns the already-recorded events among the ids of calls.
func (s *Store) lookupIDs(ctx context.Context, tx *sql.Tx, calls []*appendCall) (map[string]events.Event, error) {
	ids := make([]any, 0, len(calls))
	for _, c := range calls {
		for _, e := range c.events {
			ids = append(ids, e.ID)
		}
	}
	found := map[string]events.Event{}
	for start := 0; start < len(ids); start += insertChunk {
		chunk := ids[start:min(start+insertChunk, len(ids))]
		q := selectColumns + " WHERE event_id IN (" + placeholders(len(chunk)) + ")"
		rows, err := tx.QueryContext(ctx, s.db.Rebind(q), chunk...)
		if err != nil {
			return nil, fmt.Errorf("events: look up event ids: %w", err)
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			found[e.ID] = e
		}
	}
	return found, nil
}

func placeholders(n int) string {
	b := make([]byte, 0, 2*n)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '?')
	}
	return string(b)
}

const insertPrefix = "INSERT INTO events (position, tenant_id, seq, event_id, stream, stream_version, type, payload, metadata, recorded_at, prev_hash, hash) VALUES "

func (s *Store) insert(ctx context.Context, tx *sql.Tx, rows []events.Event) error {
	for start := 0; start < len(rows); start += insertChunk {
		chunk := rows[start:min(start+insertChunk, len(rows))]
		args := make([]any, 0, 12*len(chunk))
		q := make([]byte, 0, len(insertPrefix)+len(chunk)*28)
		q = append(q, insertPrefix...)
		for i := range chunk {
			e := &chunk[i]
			if i > 0 {
				q = append(q, ',')
			}
			q = append(q, "(?,?,?,?,?,?,?,?,?,?,?,?)"...)
			args = append(args, e.Position, e.Tenant, e.Seq, e.ID, e.Stream, e.Version, e.Type,
				e.Payload, e.Metadata, e.RecordedAt.UnixNano(), e.PrevHash[:], e.Hash[:])
		}
		if _, err := tx.ExecContext(ctx, s.db.Rebind(string(q)), args...); err != nil {
			return fmt.Errorf("events: insert: %w", err)
		}
	}
	return nil
}
