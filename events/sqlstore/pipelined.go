package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/haldir-dev/haldir/events"
	"github.com/haldir-dev/haldir/storage/sqldb"
	"github.com/jackc/pgx/v5"
)

// writePipelined is write on Postgres for a first attempt. It takes one
// round trip when the writer's caches answer everything the plan needs
// (writeOneTrip), else two rather than one per statement: the first batch
// begins the transaction, takes the ledger lock and reads the head (and
// the versions of the streams the cache does not know); the second inserts
// the rows, notifies the other replicas and commits. The statements of a
// batch still run in order, each with its own snapshot, so what is read
// after the lock is what the last append committed. Lookups the plan needs
// in between (a stream or tenant head the caches lack) run on the same
// connection, inside the transaction.
//
// A failed batch leaves the transaction aborted; it is rolled back before
// the connection goes back to the pool (which discards a connection still
// in a transaction anyway).
func (s *Store) writePipelined(calls []*appendCall) (results []appendResult, last int64, err error) {
	ctx := context.Background()
	conn, err := s.db.Write.Conn(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("events: begin append: %w", err)
	}
	defer conn.Close()
	defer func() {
		if err != nil {
			sqldb.RollbackConn(ctx, conn)
		}
	}()
	if results, last, done, err := s.writeOneTrip(ctx, conn, calls); done || err != nil {
		return results, last, err
	}

	want, tenants, streams := s.unknownStreams(calls)
	var head int64
	fetched := map[streamKey]int64{}
	err = sqldb.OnPgx(conn, func(pc *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue("SELECT pg_advisory_xact_lock($1)", int64(ledgerLock))
		b.Queue("SELECT COALESCE(MAX(position), 0) FROM events")
		if want != nil {
			b.Queue(selectVersions, tenants, streams)
		}
		br := pc.SendBatch(ctx, b)
		err := func() error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("events: begin append: %w", err)
			}
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("events: lock ledger: %w", err)
			}
			if err := br.QueryRow().Scan(&head); err != nil {
				return fmt.Errorf("events: read head: %w", err)
			}
			if want == nil {
				return nil
			}
			rows, err := br.Query()
			if err != nil {
				return fmt.Errorf("events: read stream versions: %w", err)
			}
			defer rows.Close()
			return readVersions(rows, want, fetched)
		}()
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("events: begin append: %w", cerr)
		}
		return err
	})
	if err != nil {
		return nil, 0, err
	}

	s.validateCaches(head)
	// Read under the lock, after the head: current whether or not the
	// caches were just cleared.
	for k, v := range fetched {
		s.versions[k] = v
	}
	p := newPending(head, true)
	now := s.now()
	results = make([]appendResult, len(calls))
	existing := map[string]events.Event{}
	for i, c := range calls {
		results[i] = s.plan(ctx, conn, p, existing, c.events, now)
		if results[i].err != nil && !isDecisionError(results[i].err) {
			return nil, 0, results[i].err
		}
	}

	b := &pgx.Batch{}
	if len(p.rows) > 0 {
		b.Queue(insertMany, insertColumns(p.rows)...)
		// Wake the other replicas' consumers at commit (LedgerChannel).
		b.Queue("SELECT pg_notify($1, $2)", LedgerChannel, strconv.FormatInt(p.pos, 10))
	}
	b.Queue("COMMIT")
	if _, err = sendAll(conn, b); err != nil {
		return nil, 0, err
	}
	s.committed(p)
	return results, p.pos, nil
}

// insertGuarded is insertMany for a plan made against the writer's caches:
// it inserts nothing unless the ledger's head is still $13, the position
// the caches describe. (The primary key on position would refuse a stale
// plan too; the guard makes that a quiet miss rather than an error and a
// retry with every id looked up.)
const insertGuarded = insertMany + `
WHERE (SELECT COALESCE(MAX(position), 0) FROM events) = $13`

// writeOneTrip writes calls in one round trip (begin, lock, insert,
// notify, commit, pipelined) when nothing needs reading first: the caches
// describe the ledger up to s.lastPos, know every stream and tenant head
// the calls touch, and every call plans without a decision error (a
// conflict found against a cache is confirmed by a read instead). The
// insert is guarded by the head, so if another process appended since, it
// writes nothing, and done is false: the caller writes the batch again
// after reading. A violated UNIQUE constraint (a retried id) fails it as
// it fails write.
func (s *Store) writeOneTrip(ctx context.Context, conn *sql.Conn, calls []*appendCall) (results []appendResult, last int64, done bool, err error) {
	if s.lastPos < 0 || !s.plannable(calls) {
		return nil, 0, false, nil
	}
	head := s.lastPos
	p := newPending(head, true)
	now := s.now()
	results = make([]appendResult, len(calls))
	existing := map[string]events.Event{}
	for i, c := range calls {
		if results[i] = s.plan(ctx, conn, p, existing, c.events, now); results[i].err != nil {
			return nil, 0, false, nil
		}
	}
	if len(p.rows) == 0 {
		return nil, 0, false, nil
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT pg_advisory_xact_lock($1)", int64(ledgerLock))
	b.Queue(insertGuarded, append(insertColumns(p.rows), head)...)
	b.Queue("SELECT pg_notify($1, $2)", LedgerChannel, strconv.FormatInt(p.pos, 10))
	b.Queue("COMMIT")
	inserted, err := sendAll(conn, b)
	if err != nil {
		return nil, 0, false, err
	}
	if inserted != int64(len(p.rows)) {
		return nil, 0, false, nil // another process appended: read, then write
	}
	s.committed(p)
	s.oneTrip = true
	return results, p.pos, true, nil
}

// plannable reports whether plan can decide calls from the caches alone:
// every tenant's head is cached, and every stream's version is cached or
// the event proposes a new stream (versionFor's optimistic case).
func (s *Store) plannable(calls []*appendCall) bool {
	streams := map[streamKey]bool{}
	tenants := map[string]bool{}
	for _, c := range calls {
		for i := range c.events {
			pr := &c.events[i]
			k := streamKey{pr.Tenant, pr.Stream}
			if _, ok := s.versions[k]; !ok && !streams[k] && pr.ExpectedVersion != 0 {
				return false
			}
			if _, ok := s.tenantHead[pr.Tenant]; !ok && !tenants[pr.Tenant] {
				return false
			}
			streams[k], tenants[pr.Tenant] = true, true
		}
	}
	return true
}

// sendAll runs the statements of b (ending in COMMIT) in one round trip
// and returns how many rows its INSERT, if any, wrote.
func sendAll(conn *sql.Conn, b *pgx.Batch) (inserted int64, err error) {
	tags, err := sqldb.ExecBatch(context.Background(), conn, b)
	if err != nil {
		return 0, fmt.Errorf("events: %s: %w", statementName(b.QueuedQueries[min(len(tags), b.Len()-1)].SQL), err)
	}
	for _, tag := range tags {
		if tag.Insert() {
			inserted = tag.RowsAffected()
		}
	}
	return inserted, nil
}

// statementName names a pipelined statement in an error.
func statementName(query string) string {
	switch query {
	case "BEGIN":
		return "begin append"
	case insertMany, insertGuarded:
		return "insert"
	case "COMMIT":
		return "commit append"
	}
	if strings.Contains(query, "pg_notify") {
		return "notify"
	}
	return "lock ledger"
}
