package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier runs statements: a *sql.Tx, or a *sql.Conn holding a
// transaction that was begun on it.
type Querier interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// RelaxedTx is a write transaction whose commit is not flushed to disk
// before it returns. Use it only for state rebuilt from the ledger (read
// models and their checkpoints, which commit atomically together): a power
// loss may roll back the newest such transactions, never half of one, and
// the ledger replays them. Ledger appends always use durable commits.
//
// On Postgres its first statement and its last go in one round trip with
// the begin and the commit (BeginRelaxedQuery, CommitAfter), so a short
// transaction costs two round trips plus its own statements.
type RelaxedTx struct {
	// Q runs the transaction's statements.
	Q    Querier
	db   *DB
	tx   *sql.Tx   // SQLite
	conn *sql.Conn // the connection, held for the transaction
	pg   bool
	done bool
}

// BeginRelaxedQuery starts a RelaxedTx whose first statement is query, a
// query returning one row, scanned into dest (for example, locking a
// checkpoint row). On Postgres, BEGIN, synchronous_commit off for the
// transaction and query go in one round trip. On SQLite, where synchronous
// is a connection setting, it takes the single writer connection, lowers
// synchronous to NORMAL for the transaction and restores FULL after it.
func (db *DB) BeginRelaxedQuery(ctx context.Context, dest []any, query string, args ...any) (*RelaxedTx, error) {
	conn, err := db.Write.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if db.Dialect == Postgres {
		t := &RelaxedTx{Q: conn, conn: conn, pg: true}
		err := OnPgx(conn, func(pc *pgx.Conn) error {
			b := &pgx.Batch{}
			b.Queue("BEGIN")
			b.Queue("SET LOCAL synchronous_commit = off")
			b.Queue(query, args...)
			br := pc.SendBatch(ctx, b)
			_, err := br.Exec()
			if err == nil {
				_, err = br.Exec()
			}
			if err == nil {
				err = br.QueryRow().Scan(dest...)
			}
			return errors.Join(err, br.Close())
		})
		if err != nil {
			t.Rollback()
			return nil, err
		}
		return t, nil
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		conn.Close()
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		restoreDurable(conn)
		return nil, err
	}
	t := &RelaxedTx{Q: tx, db: db, tx: tx, conn: conn}
	if err := tx.QueryRowContext(ctx, query, args...).Scan(dest...); err != nil {
		t.Rollback()
		return nil, err
	}
	return t, nil
}

// Commit commits and, on SQLite, restores durable commits on the
// connection before handing it back.
func (t *RelaxedTx) Commit() error { return t.CommitAfter(context.Background(), "") }

// CommitAfter runs the statement query (none when empty), then commits; on
// Postgres both in one round trip. Either way the transaction is over.
func (t *RelaxedTx) CommitAfter(ctx context.Context, query string, args ...any) error {
	if t.done {
		return sql.ErrTxDone
	}
	if !t.pg {
		var err error
		if query != "" {
			_, err = t.db.ExecTx(ctx, t.tx, query, args...)
		}
		if err == nil {
			err = t.tx.Commit()
		} else {
			t.tx.Rollback()
		}
		return errors.Join(err, t.finish())
	}
	b := &pgx.Batch{}
	if query != "" {
		b.Queue(query, args...)
	}
	b.Queue("COMMIT")
	if _, err := ExecBatch(ctx, t.conn, b); err != nil {
		t.Rollback()
		return err
	}
	return t.finish()
}

// Rollback rolls back and restores the connection like Commit. It does
// nothing once the transaction is over.
func (t *RelaxedTx) Rollback() error {
	if t.done {
		return nil
	}
	if t.pg {
		RollbackConn(context.Background(), t.conn)
		return t.finish()
	}
	err := t.tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) {
		err = nil
	}
	return errors.Join(err, t.finish())
}

func (t *RelaxedTx) finish() error {
	if t.done {
		return nil
	}
	t.done = true
	if t.pg {
		return t.conn.Close()
	}
	return restoreDurable(t.conn)
}

// restoreDurable sets synchronous back to FULL and releases conn. If that
// fails, the connection is discarded rather than left to commit ledger
// appends without flushing them.
func restoreDurable(conn *sql.Conn) error {
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "PRAGMA synchronous = FULL"); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("sqldb: could not restore durable commits; connection discarded: %w", err)
	}
	return nil
}
