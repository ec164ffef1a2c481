// Package migrations holds Haldir's schema as numbered SQL files per dialect
// (sqlite/0001_ledger.sql, postgres/0001_ledger.sql, …), embedded in the
// binary, and applies them. Each applied file is recorded with its SHA-256;
// a file changed after it was applied is reported, never re-run.
package migrations

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/haldir-dev/haldir/storage/sqldb"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// Migration is one numbered schema file and, once applied, when.
type Migration struct {
	Version   int
	Name      string
	Checksum  string
	AppliedAt time.Time // zero when pending
	// Modified is true when the applied checksum differs from the file's.
	Modified bool
}

// Pending reports whether m has not been applied.
func (m Migration) Pending() bool { return m.AppliedAt.IsZero() }

// Available returns the embedded migrations for d in version order.
func Available(d sqldb.Dialect) ([]Migration, error) {
	dir := string(d)
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: no migrations for %s: %w", d, err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migrations: file %s is not named NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(files, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := range out {
		if out[i].Version != i+1 {
			return nil, fmt.Errorf("migrations: %s: versions must count 1, 2, 3… without gaps", out[i].Name)
		}
	}
	return out, nil
}

const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    checksum   TEXT    NOT NULL,
    applied_at BIGINT  NOT NULL
)`

// Status returns every available migration with its applied state. On
// SQLite, whose ledger and state have a file each (sqldb.DB.State), a
// migration counts as applied once both files have it.
func Status(ctx context.Context, db *sqldb.DB) ([]Migration, error) {
	all, err := fileStatus(ctx, db)
	if err != nil || db.State() == db {
		return all, err
	}
	state, err := fileStatus(ctx, db.State())
	if err != nil {
		return nil, err
	}
	for i := range all {
		if state[i].Pending() {
			all[i].AppliedAt = time.Time{}
		}
		all[i].Modified = all[i].Modified || state[i].Modified
	}
	return all, nil
}

// fileStatus is Status for one database file.
func fileStatus(ctx context.Context, db *sqldb.DB) ([]Migration, error) {
	all, err := Available(db.Dialect)
	if err != nil {
		return nil, err
	}
	if err := ensureTable(ctx, db); err != nil {
		return nil, err
	}
	applied, err := appliedMigrations(ctx, db.Write)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if a, ok := applied[all[i].Version]; ok {
			all[i].AppliedAt = a.AppliedAt
			all[i].Modified = a.Checksum != all[i].Checksum
		}
	}
	return all, nil
}

// ensureTable creates schema_migrations. On Postgres it does so under the
// migrations' advisory lock: CREATE TABLE IF NOT EXISTS is not safe against
// a concurrent creator (two replicas starting on a new database), which
// fails on the catalog's unique index.
func ensureTable(ctx context.Context, db *sqldb.DB) error {
	if db.Dialect != sqldb.Postgres {
		if _, err := db.Write.ExecContext(ctx, createTable); err != nil {
			return fmt.Errorf("migrations: create schema_migrations: %w", err)
		}
		return nil
	}
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrations: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7368201)"); err != nil {
		return fmt.Errorf("migrations: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, createTable); err != nil {
		return fmt.Errorf("migrations: create schema_migrations: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrations: create schema_migrations: %w", err)
	}
	return nil
}

func appliedMigrations(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) (map[int]Migration, error) {
	rows, err := q.QueryContext(ctx, "SELECT version, name, checksum, applied_at FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[int]Migration{}
	for rows.Next() {
		var m Migration
		var at int64
		if err := rows.Scan(&m.Version, &m.Name, &m.Checksum, &at); err != nil {
			return nil, err
		}
		m.AppliedAt = time.Unix(0, at).UTC()
		out[m.Version] = m
	}
	return out, rows.Err()
}

// Up applies every pending migration, each in its own transaction, and
// returns those it applied. It refuses to run when an applied migration's
// file has changed. Concurrent callers on Postgres are serialised with an
// advisory lock; SQLite has a single writer.
//
// On SQLite both files get every migration: the ledger file's other
// tables stay empty, and the state file's ledger table too. A store made
// when one file held everything has its state moved (adoptState).
func Up(ctx context.Context, db *sqldb.DB, progress func(Migration)) ([]Migration, error) {
	done, err := upFile(ctx, db, progress)
	if err != nil || db.State() == db {
		return done, err
	}
	if _, err := upFile(ctx, db.State(), nil); err != nil {
		return done, err
	}
	return done, adoptState(ctx, db)
}

// upFile is Up for one database file.
func upFile(ctx context.Context, db *sqldb.DB, progress func(Migration)) ([]Migration, error) {
	status, err := fileStatus(ctx, db)
	if err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range status {
		if m.Modified {
			return done, fmt.Errorf("migrations: %s was changed after it was applied (checksum differs); restore the original file", m.Name)
		}
		if !m.Pending() {
			continue
		}
		applied, err := apply(ctx, db, m)
		if err != nil {
			return done, err
		}
		if applied {
			m.AppliedAt = time.Now().UTC()
			done = append(done, m)
			if progress != nil {
				progress(m)
			}
		}
	}
	return done, nil
}

func apply(ctx context.Context, db *sqldb.DB, m Migration) (applied bool, err error) {
	body, err := fs.ReadFile(files, path.Join(string(db.Dialect), m.Name+".sql"))
	if err != nil {
		return false, err
	}
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrations: %s: %w", m.Name, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if db.Dialect == sqldb.Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7368201)"); err != nil {
			return false, fmt.Errorf("migrations: lock: %w", err)
		}
	}
	// Another process may have applied it while we waited for the lock.
	var n int
	if err := tx.QueryRowContext(ctx, db.Rebind("SELECT COUNT(*) FROM schema_migrations WHERE version = ?"), m.Version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, tx.Rollback()
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return false, fmt.Errorf("migrations: apply %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"),
		m.Version, m.Name, m.Checksum, time.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("migrations: record %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrations: commit %s: %w", m.Name, err)
	}
	return true, nil
}
