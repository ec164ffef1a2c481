package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// RelaxedTx is a write transaction whose commit is not flushed to disk
// before it returns. Use it only for state rebuilt from the ledger (read
// models and their checkpoints, which commit atomically together): a power
// loss may roll back the newest such transactions, never half of one, and
// the ledger replays them. Ledger appends always use durable commits.
type RelaxedTx struct {
	*sql.Tx
	conn *sql.Conn // SQLite: the writer connection, held for the transaction
	done bool
}

// BeginRelaxed starts a RelaxedTx. On Postgres it is an ordinary
// transaction with synchronous_commit off. On SQLite, where synchronous is
// a connection setting, it takes the single writer connection, lowers
// synchronous to NORMAL for the transaction and restores FULL after it.
func (db *DB) BeginRelaxed(ctx context.Context) (*RelaxedTx, error) {
	if db.Dialect == Postgres {
		tx, err := db.Write.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			tx.Rollback()
			return nil, err
		}
		return &RelaxedTx{Tx: tx}, nil
	}
	conn, err := db.Write.Conn(ctx)
	if err != nil {
		return nil, err
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
	return &RelaxedTx{Tx: tx, conn: conn}, nil
}

// Commit commits and, on SQLite, restores durable commits on the
// connection before handing it back.
func (t *RelaxedTx) Commit() error {
	err := t.Tx.Commit()
	return errors.Join(err, t.finish())
}

// Rollback rolls back and restores the connection like Commit.
func (t *RelaxedTx) Rollback() error {
	err := t.Tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) {
		err = nil
	}
	return errors.Join(err, t.finish())
}

func (t *RelaxedTx) finish() error {
	if t.conn == nil || t.done {
		return nil
	}
	t.done = true
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
