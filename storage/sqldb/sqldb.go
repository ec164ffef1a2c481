// Package sqldb opens Haldir's SQL database: embedded SQLite files
// (modernc.org/sqlite, pure Go) or PostgreSQL (pgx through database/sql).
//
// On Postgres everything lives in one database. On SQLite, which lets one
// writer at a time into a file, the ledger has a file of its own and
// everything else, the read models first, lives in a second one (DB.State),
// so that appending to the ledger never waits for a projection's
// transaction, nor a projection for an append. A projection and its
// checkpoint are always in the same file, so one transaction moves both.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/haldir-dev/haldir/events"
)

// Dialect names a SQL database family.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is an open database. Write serialises writers: for SQLite it holds a
// single connection, so writers queue in Go instead of spinning on SQLite's
// busy handler; for Postgres Write and Read are the same pool.
type DB struct {
	Dialect Dialect
	Write   *sql.DB
	Read    *sql.DB
	// Path is the SQLite database file, empty for Postgres.
	Path string
	// Stmts caches statements prepared on Write; nil for Postgres.
	Stmts *StmtCache
	reads readStmts
	// url is the Postgres connection string, for Listen.
	url string
	// state is the SQLite database of everything but the ledger; nil when
	// this database holds it all (Postgres, or a DB that is the state).
	state *DB
}

// State returns the database holding everything but the ledger: the read
// models (the projections' tables and checkpoints), the queues the
// projections fill (webhook deliveries, the anomaly outbox), the vault's
// data keys, signed tree checkpoints and dashboard sign-ins. It is db
// itself on Postgres. The read models can be rebuilt from the ledger; the
// rest cannot, so back up both files.
func (db *DB) State() *DB {
	if db.state != nil {
		return db.state
	}
	return db
}

// SQLite file names inside the data directory: the ledger (with the
// idempotency keys of the requests that append to it), and the state
// (State).
const (
	DatabaseFile = "haldir.db"
	StateFile    = "state.db"
)

// OpenSQLite opens (creating if needed) the SQLite databases in dir: the
// ledger file, and beside it the state file (State). Both use WAL,
// foreign keys and synchronous=FULL (a commit is fsynced before it
// returns; read-model transactions relax it, see RelaxedTx).
func OpenSQLite(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqldb: create data directory: %w", err)
	}
	db, err := openSQLiteFile(filepath.Join(dir, DatabaseFile))
	if err != nil {
		return nil, err
	}
	state, err := openSQLiteFile(filepath.Join(dir, StateFile))
	if err != nil {
		db.Close()
		return nil, err
	}
	db.state = state
	return db, nil
}

// openSQLiteFile opens one SQLite file: a single writer connection and a
// pool of read-only ones.
func openSQLiteFile(path string) (*DB, error) {
	// Create the file owner-only before SQLite does (it would use 0644);
	// the WAL and shared-memory files inherit its mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	dsn := func(extra string) string {
		return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)" +
			"&_pragma=foreign_keys(ON)&_pragma=temp_store(MEMORY)&_pragma=mmap_size(268435456)" + extra
	}
	// Writers take the write lock at BEGIN (IMMEDIATE), so a transaction
	// never fails half-way when it first writes; readers stay DEFERRED.
	// The writer's page cache (32 MiB, against SQLite's 2 MiB default)
	// holds a large batch's dirty pages without spilling them to the WAL
	// mid-transaction.
	w, err := sql.Open("sqlite", dsn("&_txlock=immediate&_pragma=cache_size(-32768)"))
	if err != nil {
		return nil, fmt.Errorf("sqldb: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqldb: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn("&_pragma=query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqldb: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	r.SetConnMaxIdleTime(0)
	return &DB{Dialect: SQLite, Write: w, Read: r, Path: path, Stmts: NewStmtCache(w)}, nil
}

// OpenPostgres connects to the database at url (postgres://…) with a pool of
// at most maxConns connections.
func OpenPostgres(ctx context.Context, url string, maxConns int) (*DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open postgres: %w", redact(err, url))
	}
	if maxConns <= 0 {
		maxConns = 16
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqldb: connect to postgres: %w", redact(err, url))
	}
	return &DB{Dialect: Postgres, Write: db, Read: db, url: url}, nil
}

// redact removes a connection string (which may hold a password) from an
// error message.
func redact(err error, url string) error {
	if url == "" || !strings.Contains(err.Error(), url) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), url, "postgres://…"))
}

// Close closes both pools, and the state database's.
func (db *DB) Close() error {
	db.reads.close()
	if db.Stmts != nil {
		db.Stmts.Close()
	}
	err := db.Write.Close()
	if db.Read != db.Write {
		err = errors.Join(err, db.Read.Close())
	}
	if db.state != nil {
		err = errors.Join(err, db.state.Close())
	}
	return err
}

// ExecTx runs query in q, through the statement cache when there is one
// (it binds to a *sql.Tx; other queriers run the query directly).
func (db *DB) ExecTx(ctx context.Context, q Querier, query string, args ...any) (sql.Result, error) {
	if tx, ok := q.(*sql.Tx); ok && db.Stmts != nil {
		if s := db.Stmts.lookup(query); s != nil {
			return tx.StmtContext(ctx, s).ExecContext(ctx, args...)
		}
	}
	return q.ExecContext(ctx, query, args...)
}

// PrepareTx returns query prepared for tx: the cached statement bound to tx
// when there is one, else a statement prepared now. Close it after use.
func (db *DB) PrepareTx(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if db.Stmts != nil {
		if s := db.Stmts.lookup(query); s != nil {
			return tx.StmtContext(ctx, s), nil
		}
	}
	return tx.PrepareContext(ctx, query)
}

// QueryRowTx runs a single-row query in q, through the statement cache
// when there is one (as ExecTx).
func (db *DB) QueryRowTx(ctx context.Context, q Querier, query string, args ...any) *sql.Row {
	if tx, ok := q.(*sql.Tx); ok && db.Stmts != nil {
		if s := db.Stmts.lookup(query); s != nil {
			return tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
		}
	}
	return q.QueryRowContext(ctx, query, args...)
}

// Ping checks that the database answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.Read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Rebind rewrites "?" placeholders to "$1, $2, …" for Postgres. Queries are
// written with "?" and must not contain literal question marks.
func (db *DB) Rebind(query string) string {
	return Rebind(db.Dialect, query)
}

// Rebind rewrites "?" placeholders for d.
func Rebind(d Dialect, query string) string {
	if d != Postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// IsUniqueViolation reports whether err is a unique-constraint violation
// (SQLSTATE 23505, or SQLite's SQLITE_CONSTRAINT_UNIQUE / PRIMARYKEY).
func IsUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code()
		return code == 2067 || code == 1555 // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsStorageFailure reports whether err says the database could not write
// for want of storage or resources rather than because of what was
// written: a full disk, a read-only database, an I/O error. Retrying the
// same write may succeed once the condition is lifted. It matches SQLite's
// primary result codes SQLITE_FULL, SQLITE_IOERR (every extended
// SQLITE_IOERR_* code), SQLITE_READONLY and SQLITE_CANTOPEN, and the
// Postgres SQLSTATE classes 53 (insufficient resources: 53100 disk_full,
// 53200 out_of_memory, 53300 too_many_connections…) and 58 (system error:
// 58030 io_error…) and 25006 read_only_sql_transaction (a standby, or
// default_transaction_read_only), never the message text.
func IsStorageFailure(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return strings.HasPrefix(pg.Code, "53") || strings.HasPrefix(pg.Code, "58") || pg.Code == "25006"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code of an extended one
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN:
			return true
		}
	}
	return false
}

// IsAppendOnlyViolation reports whether err is the refusal raised by the
// ledger's append-only triggers.
func IsAppendOnlyViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "HA001"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == 1811 // SQLITE_CONSTRAINT_TRIGGER, from RAISE(ABORT, …)
	}
	return false
}

// Unavailable wraps err in events.ErrUnavailable when it is a storage
// failure (IsStorageFailure), so that callers answer 503 with Retry-After;
// every other error is returned as it is.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, events.ErrUnavailable) || !IsStorageFailure(err) {
		return err
	}
	return fmt.Errorf("%w: %w", events.ErrUnavailable, err)
}

// ExecBatch runs the statements of b on conn in one round trip and
// returns their command tags. On failure it returns the tags of the
// statements that succeeded, so len(tags) is the index of the one that
// failed; the statements after it did not run.
func ExecBatch(ctx context.Context, conn *sql.Conn, b *pgx.Batch) (tags []pgconn.CommandTag, err error) {
	err = OnPgx(conn, func(pc *pgx.Conn) error {
		br := pc.SendBatch(ctx, b)
		for range b.Len() {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			tags = append(tags, tag)
		}
		return br.Close()
	})
	return tags, err
}

// RollbackConn ends the transaction conn's session holds, if any, on
// Postgres; a connection that cannot is closed, so that the pool drops it.
func RollbackConn(ctx context.Context, conn *sql.Conn) {
	OnPgx(conn, func(pc *pgx.Conn) error {
		if pc.PgConn().TxStatus() == 'I' {
			return nil
		}
		if _, err := pc.Exec(ctx, "ROLLBACK"); err != nil {
			pc.Close(ctx)
		}
		return nil
	})
}

// OnPgx runs f on the pgx connection under conn, a connection of a
// Postgres pool, for what database/sql cannot express (pipelined
// batches). f must not use conn itself.
func OnPgx(conn *sql.Conn, f func(*pgx.Conn) error) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("sqldb: the Postgres pool's driver is %T, not pgx", dc)
		}
		return f(c.Conn())
	})
}
