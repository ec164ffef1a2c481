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
// they were assigned. There a transaction's statements are pipelined: one
// round trip when the writer's caches decide the batch, two otherwise
// (pipelined.go).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// ledgerLock is the Postgres advisory lock key that serialises appends.
const ledgerLock = 7368200

// Limits of the writer.
const (
	maxBatchEvents = 1024 // events per transaction
	maxCachedKeys  = 200_000
	ringSize       = 8192 // recently committed events kept for tailing readers
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

	// health is the outcome of the last write attempt, for Ready; probeMu
	// lets one probe run at a time.
	health  writeHealth
	probeMu sync.Mutex

	// ring holds the events this process committed most recently, in
	// position order, so that a tailing reader in the same process need
	// not read back what was just written. Positions in it may jump where
	// another process appended in between.
	ringMu sync.RWMutex
	ring   []events.Event

	// Writer-goroutine state; no locking needed.
	lastPos    int64 // the position the caches below are valid for; -1 = unknown
	versions   map[streamKey]int64
	tenantHead map[string]events.TenantHead
	now        func() time.Time
	oneTrip    bool // the last commit was written by writeOneTrip

	// observer, when set, is told of every commit (OnCommit).
	observer atomic.Pointer[func(CommitStats)]

	// foreign is the highest position another writer (or a transaction
	// whose outcome is unknown) may have appended: every position above it
	// up to head was appended by this store. watched holds, per watched
	// stream name, the last position this store appended one at
	// (StreamWatcher).
	foreign  atomic.Int64
	watchMu  sync.RWMutex
	watched  map[string]*atomic.Int64
	anyWatch atomic.Bool
}

// CommitStats describes one group commit: the transaction that wrote the
// events of every append queued together.
type CommitStats struct {
	// Events is how many events the transaction held; Appends how many
	// Append calls it answered.
	Events, Appends int
	// Duration is the transaction's time, from begin to durable commit.
	Duration time.Duration
	// Err is the commit's failure, nil when it was made durable.
	Err error
	// OneTrip is set when, on Postgres, the writer's caches decided the
	// batch and it was written in one round trip (writeOneTrip).
	OneTrip bool
}

// OnCommit has fn called, on the writer goroutine, after every group
// commit (for metrics; fn must be quick). nil stops the calls.
func (s *Store) OnCommit(fn func(CommitStats)) {
	if fn == nil {
		s.observer.Store(nil)
		return
	}
	s.observer.Store(&fn)
}

type streamKey struct{ tenant, stream string }

type appendCall struct {
	events []events.Proposed
	result chan appendResult
	// deferrable: every event is (see events.Proposed.Deferrable).
	deferrable bool
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
	s.foreign.Store(h) // appended before this store opened
	go s.writer()
	return s, nil
}

// DB returns the database the store writes to.
func (s *Store) DB() *sqldb.DB { return s.db }

// Append implements events.Store.
func (s *Store) Append(ctx context.Context, batch ...events.Proposed) ([]events.Event, error) {
	wait, err := s.AppendAsync(ctx, batch...)
	if err != nil {
		return nil, err
	}
	return wait()
}

// AppendAsync implements events.Store.
func (s *Store) AppendAsync(ctx context.Context, batch ...events.Proposed) (func() ([]events.Event, error), error) {
	if len(batch) == 0 {
		return func() ([]events.Event, error) { return nil, nil }, nil
	}
	if len(batch) > maxBatchEvents {
		return nil, fmt.Errorf("%w: %d events in one append (at most %d)", events.ErrInvalid, len(batch), maxBatchEvents)
	}
	for i := range batch {
		if err := batch[i].Validate(); err != nil {
			return nil, err
		}
	}
	call := &appendCall{events: batch, result: make(chan appendResult, 1), deferrable: true}
	for i := range batch {
		call.deferrable = call.deferrable && batch[i].Deferrable
	}
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
	return func() ([]events.Event, error) {
		r := <-call.result // the writer always answers, even on Close
		return r.events, r.err
	}, nil
}

// LedgerChannel is the Postgres notification channel an append notifies
// at commit, with the new head position as payload, so that every replica
// listening (Wake) tails the ledger at once instead of at its next poll.
const LedgerChannel = "haldir_ledger"

// Wake tells this store's waiters (Appended) that another process may have
// appended; call it on a LedgerChannel notification.
func (s *Store) Wake() { s.notify() }

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
		if first.deferrable {
			// Hold it for the next append to share the commit with.
			timer := time.NewTimer(events.DeferLimit)
			select {
			case c := <-s.queue:
				calls = append(calls, c)
				n += len(c.events)
			case <-timer.C:
			case <-s.stop:
			}
			timer.Stop()
		}
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

// commit writes calls in one transaction and answers each of them. A
// transaction the store could not write for want of storage fails every
// call with events.ErrUnavailable and makes the store unready (Ready).
//
// The first attempt does not look up event ids, nor the versions of
// unknown streams proposed as new (versionFor): a retried id and a stale
// "new" decision are rare, and the UNIQUE constraints on event_id and on
// (tenant_id, stream, stream_version) catch them. Only then is the batch
// rolled back and written again with every id and version looked up first.
func (s *Store) commit(calls []*appendCall) {
	start := time.Now()
	s.oneTrip = false
	results, last, err := s.write(calls, false)
	if err != nil && sqldb.IsUniqueViolation(err) {
		s.lastPos = -1
		results, last, err = s.write(calls, true)
	}
	err = sqldb.Unavailable(err)
	s.health.record(err)
	if fn := s.observer.Load(); fn != nil {
		n := 0
		for _, c := range calls {
			n += len(c.events)
		}
		(*fn)(CommitStats{Events: n, Appends: len(calls), Duration: time.Since(start), Err: err, OneTrip: s.oneTrip && err == nil})
	}
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
	// optimistic: a stream the caches do not know, proposed at expected
	// version 0, is taken to be new without reading it (streamVersion).
	optimistic bool
}

func newPending(head int64, optimistic bool) *pending {
	return &pending{
		versions:   make(map[streamKey]int64),
		heads:      make(map[string]events.TenantHead),
		byID:       make(map[string]*events.Event),
		pos:        head,
		optimistic: optimistic,
	}
}

// validateCaches clears the writer's caches unless they describe the
// ledger up to head, the position the transaction read under the lock.
func (s *Store) validateCaches(head int64) {
	if head != s.lastPos {
		// Another process appended, or a transaction failed: what lies
		// up to head is not known to be this store's.
		if head > s.foreign.Load() {
			s.foreign.Store(head)
		}
	}
	if head != s.lastPos || len(s.versions) > maxCachedKeys || len(s.tenantHead) > maxCachedKeys {
		// The caches may be stale.
		clear(s.versions)
		clear(s.tenantHead)
		s.lastPos = head
	}
}

func (s *Store) write(calls []*appendCall, lookup bool) (results []appendResult, last int64, err error) {
	if s.db.Dialect == sqldb.Postgres && !lookup {
		return s.writePipelined(calls)
	}
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
	if err := s.db.QueryRowTx(ctx, tx, "SELECT COALESCE(MAX(position), 0) FROM events").Scan(&head); err != nil {
		return nil, 0, fmt.Errorf("events: read head: %w", err)
	}
	s.validateCaches(head)

	if s.db.Dialect == sqldb.Postgres {
		if err := s.prefetchVersions(ctx, tx, calls); err != nil {
			return nil, 0, err
		}
	}
	existing := map[string]events.Event{}
	if lookup {
		for _, c := range calls {
			found, err := s.lookupIDs(ctx, tx, c.events)
			if err != nil {
				return nil, 0, err
			}
			for id, e := range found {
				existing[id] = e
			}
		}
	}
	p := newPending(head, !lookup)
	now := s.now()
	results = make([]appendResult, len(calls))
	for i, c := range calls {
		results[i] = s.plan(ctx, tx, p, existing, c.events, now)
		if results[i].err != nil && !isDecisionError(results[i].err) {
			return nil, 0, results[i].err
		}
	}
	if err := s.insert(ctx, tx, p.rows); err != nil {
		return nil, 0, fmt.Errorf("events: insert: %w", err)
	}
	if s.db.Dialect == sqldb.Postgres && len(p.rows) > 0 {
		// Wake the other replicas' consumers at commit (LedgerChannel).
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", LedgerChannel, strconv.FormatInt(p.pos, 10)); err != nil {
			return nil, 0, fmt.Errorf("events: notify: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("events: commit append: %w", err)
	}
	s.committed(p)
	return results, p.pos, nil
}

// WatchStream implements events.StreamWatcher. Events of the stream this
// store appended before the call count as appended at the call.
func (s *Store) WatchStream(stream string) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watched == nil {
		s.watched = map[string]*atomic.Int64{}
	}
	if s.watched[stream] == nil {
		w := &atomic.Int64{}
		w.Store(s.head.Load())
		s.watched[stream] = w
	}
	s.anyWatch.Store(true)
}

// Quiet implements events.StreamWatcher: every position in (after,
// before) is this store's (none above foreign is another's), and none of
// them holds the stream (the last one that did is at or below after).
func (s *Store) Quiet(stream string, after, before int64) bool {
	s.watchMu.RLock()
	w := s.watched[stream]
	s.watchMu.RUnlock()
	return w != nil && before <= s.head.Load() && s.foreign.Load() <= after && w.Load() <= after
}

// committed folds a committed transaction's rows into the writer's caches.
func (s *Store) committed(p *pending) {
	if s.anyWatch.Load() {
		s.watchMu.RLock()
		for i := range p.rows {
			if w := s.watched[p.rows[i].Stream]; w != nil {
				w.Store(p.rows[i].Position)
			}
		}
		s.watchMu.RUnlock()
	}
	for k, v := range p.versions {
		s.versions[k] = v
	}
	for k, v := range p.heads {
		s.tenantHead[k] = v
	}
	s.lastPos = p.pos
	s.remember(p.rows)
}

// sqlTx is what an append's lookups run on: the transaction, or on
// Postgres the connection whose session holds it (writePipelined).
type sqlTx interface {
	queryer
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}

func isDecisionError(err error) bool {
	return errors.Is(err, events.ErrConflict) || errors.Is(err, events.ErrDuplicateID) || errors.Is(err, events.ErrInvalid)
}

// plan assigns versions, sequence numbers, positions and hashes to one
// call's events, adding them to p, or returns the call's error leaving p
// unchanged.
func (s *Store) plan(ctx context.Context, tx sqlTx, p *pending, existing map[string]events.Event, batch []events.Proposed, now time.Time) appendResult {
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
			v, err := s.versionFor(ctx, tx, p, key, pr.ExpectedVersion)
			if err != nil {
				return appendResult{err: err}
			}
			cur = v
		}
		if pr.ExpectedVersion != events.AnyVersion && pr.ExpectedVersion != cur {
			// A retry of a recorded call also lands here; ids are only
			// looked up when needed.
			if _, known := existing[batch[0].ID]; !known {
				found, err := s.lookupIDs(ctx, tx, batch)
				if err != nil {
					return appendResult{err: err}
				}
				if _, ok := found[batch[0].ID]; ok {
					for id, e := range found {
						existing[id] = e
					}
					return s.plan(ctx, tx, p, existing, batch, now)
				}
			}
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
		e := h.Next(*pr, cur+1, pos, now)
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

// prefetchVersions caches, in one query, the versions of the streams the
// calls name that the cache does not know (0 for new streams). On Postgres
// each lookup would be a round trip made while the ledger lock is held; a
// batch of new sessions names a new stream each.
func (s *Store) prefetchVersions(ctx context.Context, tx *sql.Tx, calls []*appendCall) error {
	want, tenants, streams := s.unknownStreams(calls)
	if want == nil {
		return nil
	}
	rows, err := tx.QueryContext(ctx, selectVersions, tenants, streams)
	if err != nil {
		return fmt.Errorf("events: read stream versions: %w", err)
	}
	defer rows.Close()
	return readVersions(rows, want, s.versions)
}

// readVersions puts the versions selectVersions returned for want into
// into, and 0 for the streams of want it did not return (new streams).
func readVersions(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}, want map[streamKey]bool, into map[streamKey]int64) error {
	for rows.Next() {
		var k streamKey
		var v int64
		if err := rows.Scan(&k.tenant, &k.stream, &v); err != nil {
			return fmt.Errorf("events: read stream versions: %w", err)
		}
		into[k] = v
		delete(want, k)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("events: read stream versions: %w", err)
	}
	for k := range want {
		into[k] = 0
	}
	return nil
}

const selectVersions = `SELECT e.tenant_id, e.stream, MAX(e.stream_version) FROM events e
JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, stream) ON e.tenant_id = k.tenant_id AND e.stream = k.stream
GROUP BY e.tenant_id, e.stream`

// unknownStreams returns the streams the calls name that the version cache
// does not know, as a set and as selectVersions' arguments; nil when fewer
// than two (one lookup costs the same either way).
func (s *Store) unknownStreams(calls []*appendCall) (want map[streamKey]bool, tenants, streams []string) {
	want = map[streamKey]bool{}
	for _, c := range calls {
		for _, pr := range c.events {
			k := streamKey{pr.Tenant, pr.Stream}
			if _, known := s.versions[k]; known || want[k] {
				continue
			}
			want[k] = true
			tenants, streams = append(tenants, k.tenant), append(streams, k.stream)
		}
	}
	if len(want) < 2 {
		return nil, nil, nil
	}
	return want, tenants, streams
}

// versionFor returns the version of the stream key that an event proposed
// at expected is decided against. On a first attempt (p.optimistic) a
// stream the caches do not know, proposed as new, is taken to be new
// without a read: new streams (a session, a call) are most appends, and
// if the stream exists after all the insert breaks UNIQUE (tenant_id,
// stream, stream_version), and commit writes the batch again with every
// version read, so the stale decision gets its conflict.
func (s *Store) versionFor(ctx context.Context, tx sqlTx, p *pending, key streamKey, expected int64) (int64, error) {
	if v, ok := p.versions[key]; ok {
		return v, nil
	}
	if v, ok := s.versions[key]; ok {
		return v, nil
	}
	if expected == 0 && p.optimistic {
		return 0, nil
	}
	return s.streamVersion(ctx, tx, p, key)
}

func (s *Store) streamVersion(ctx context.Context, tx sqlTx, p *pending, key streamKey) (int64, error) {
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

func (s *Store) headOf(ctx context.Context, tx sqlTx, p *pending, tenant string) (events.TenantHead, error) {
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

// lookupIDs returns the already-recorded events among the ids of batch.
func (s *Store) lookupIDs(ctx context.Context, tx sqlTx, batch []events.Proposed) (map[string]events.Event, error) {
	found := map[string]events.Event{}
	for _, p := range batch {
		rows, err := tx.QueryContext(ctx, s.db.Rebind(selectColumns+" WHERE event_id = ?"), p.ID)
		if err != nil {
			return nil, fmt.Errorf("events: look up event id: %w", err)
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

const insertOne = "INSERT INTO events (position, tenant_id, seq, event_id, stream, stream_version, type, payload, metadata, recorded_at, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"

// insertMany inserts any number of rows with one statement shape, so
// Postgres parses and plans it once per connection.
const insertMany = `INSERT INTO events (position, tenant_id, seq, event_id, stream, stream_version, type, payload, metadata, recorded_at, prev_hash, hash)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::bytea[], $9::bytea[], $10::bigint[], $11::bytea[], $12::bytea[])`

func (s *Store) insert(ctx context.Context, tx *sql.Tx, rows []events.Event) error {
	if len(rows) == 0 {
		return nil
	}
	if s.db.Dialect == sqldb.Postgres {
		_, err := tx.ExecContext(ctx, insertMany, insertColumns(rows)...)
		return err
	}
	stmt, err := s.db.PrepareTx(ctx, tx, insertOne)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range rows {
		e := &rows[i]
		if _, err := stmt.ExecContext(ctx, e.Position, e.Tenant, e.Seq, e.ID, e.Stream, e.Version, e.Type,
			e.Payload, e.Metadata, e.RecordedAt.UnixNano(), e.PrevHash[:], e.Hash[:]); err != nil {
			return err
		}
	}
	return nil
}

// insertColumns returns insertMany's arguments for rows: one array per
// column.
func insertColumns(rows []events.Event) []any {
	n := len(rows)
	pos, seq, ver, at := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	tenant, id, stream, typ := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	payload, meta, prev, hash := make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i := range rows {
		e := &rows[i]
		pos[i], seq[i], ver[i], at[i] = e.Position, e.Seq, e.Version, e.RecordedAt.UnixNano()
		tenant[i], id[i], stream[i], typ[i] = e.Tenant, e.ID, e.Stream, e.Type
		payload[i], meta[i], prev[i], hash[i] = e.Payload, e.Metadata, e.PrevHash[:], e.Hash[:]
	}
	return []any{pos, tenant, seq, id, stream, ver, typ, payload, meta, at, prev, hash}
}

// remember adds committed rows to the ring of recent events.
func (s *Store) remember(rows []events.Event) {
	if len(rows) == 0 {
		return
	}
	s.ringMu.Lock()
	defer s.ringMu.Unlock()
	s.ring = append(s.ring, rows...)
	// Trim only once the ring holds twice its size, so that copying the
	// survivors costs O(1) per event, amortised.
	if len(s.ring) > 2*ringSize {
		s.ring = append(make([]events.Event, 0, 2*ringSize+maxBatchEvents), s.ring[len(s.ring)-ringSize:]...)
	}
}

// Recent implements events.RecentReader: up to limit events with
// consecutive positions starting at after+1 from the ring, or nil when the
// ring does not hold after+1.
func (s *Store) Recent(after int64, limit int) []events.Event {
	s.ringMu.RLock()
	defer s.ringMu.RUnlock()
	n := len(s.ring)
	if n == 0 || after+1 < s.ring[0].Position || after+1 > s.ring[n-1].Position {
		return nil
	}
	i := sort.Search(n, func(i int) bool { return s.ring[i].Position >= after+1 })
	if i == n || s.ring[i].Position != after+1 {
		return nil
	}
	j := i + 1
	for j < n && j-i < limit && s.ring[j].Position == s.ring[j-1].Position+1 {
		j++
	}
	return append([]events.Event(nil), s.ring[i:j]...)
}
