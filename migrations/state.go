package migrations

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/haldir-dev/haldir/storage/sqldb"
)

// ledgerFileTables are the SQLite tables whose rows live in the ledger
// file (sqldb.DatabaseFile). Every other table's rows live in the state
// file (sqldb.StateFile).
var ledgerFileTables = map[string]bool{
	"schema_migrations": true, "events": true, "idempotency_keys": true, "store_probe": true,
}

// adoptState moves the state of a SQLite store made when one file held
// everything into the state file: every table but the ledger file's, with
// the projections' checkpoints, the webhook queue and the vault's data
// keys. It copies in one transaction, then empties the ledger file's copies
// in another; a crash between the two leaves copies that the next start
// empties. A store already split, or new, is left as it is.
func adoptState(ctx context.Context, db *sqldb.DB) error {
	state := db.State()
	tables, err := stateTables(ctx, state)
	if err != nil {
		return err
	}
	held, err := holdsState(ctx, db, tables)
	if err != nil || !held {
		return err
	}
	moved, err := holdsState(ctx, state, tables)
	if err != nil {
		return err
	}
	if !moved {
		if err := copyState(ctx, state, db.Path, tables); err != nil {
			return err
		}
	}
	return emptyTables(ctx, db, tables)
}

// emptyTables deletes every row of tables in db, in one transaction, with
// their triggers (the append-only ones of signed checkpoints) lifted for
// the transaction.
func emptyTables(ctx context.Context, db *sqldb.DB, tables []string) error {
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrations: empty the ledger file's state: %w", err)
	}
	defer tx.Rollback()
	for i := len(tables) - 1; i >= 0; i-- { // children before parents
		triggers, err := triggersOf(ctx, tx, tables[i])
		if err != nil {
			return err
		}
		for name := range triggers {
			if _, err := tx.ExecContext(ctx, "DROP TRIGGER "+quote(name)); err != nil {
				return fmt.Errorf("migrations: lift %s: %w", name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+quote(tables[i])); err != nil {
			return fmt.Errorf("migrations: empty the ledger file's %s: %w", tables[i], err)
		}
		for name, def := range triggers {
			if _, err := tx.ExecContext(ctx, def); err != nil {
				return fmt.Errorf("migrations: restore %s: %w", name, err)
			}
		}
	}
	return tx.Commit()
}

// triggersOf returns the names and definitions of table's triggers.
func triggersOf(ctx context.Context, tx *sql.Tx, table string) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", table)
	if err != nil {
		return nil, fmt.Errorf("migrations: list the triggers of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return nil, err
		}
		out[name] = def
	}
	return out, rows.Err()
}

// stateTables lists the state file's tables that are not ledger file
// tables, in creation order.
func stateTables(ctx context.Context, state *sqldb.DB) ([]string, error) {
	rows, err := state.Write.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
	if err != nil {
		return nil, fmt.Errorf("migrations: list the state tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		if !ledgerFileTables[name] {
			out = append(out, name)
		}
	}
	return out, rows.Err()
}

// holdsState reports whether any of tables has a row in db.
func holdsState(ctx context.Context, db *sqldb.DB, tables []string) (bool, error) {
	for _, t := range tables {
		var one int
		err := db.Write.QueryRowContext(ctx, "SELECT 1 FROM "+quote(t)+" LIMIT 1").Scan(&one)
		if err == nil {
			return true, nil
		}
		if err != sql.ErrNoRows {
			return false, fmt.Errorf("migrations: read %s: %w", t, err)
		}
	}
	return false, nil
}

// copyState copies tables from the ledger file at ledgerPath into the
// state file, in one transaction.
func copyState(ctx context.Context, state *sqldb.DB, ledgerPath string, tables []string) (err error) {
	conn, err := state.Write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "ATTACH DATABASE ? AS ledger", ledgerPath); err != nil {
		return fmt.Errorf("migrations: attach the ledger file: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "DETACH DATABASE ledger")
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, "INSERT INTO main."+quote(t)+" SELECT * FROM ledger."+quote(t)); err != nil {
			return fmt.Errorf("migrations: move %s to the state file: %w", t, err)
		}
	}
	return tx.Commit()
}

func quote(name string) string { return `"` + name + `"` }
