// Package sqltest gives tests a real, migrated, empty database: a SQLite file
// in t.TempDir(), or a Postgres database of its own cloned from a migrated
// template.
//
// Postgres is found through HALDIR_TEST_POSTGRES (a URL whose role may
// CREATE DATABASE), default postgres://haldir:haldir@127.0.0.1:5432/postgres.
// When it cannot be reached the test is skipped, except under CI=true, where
// it fails: CI must never pass by skipping the Postgres half of the suite.
package sqltest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/haldir-dev/haldir/migrations"
	"github.com/haldir-dev/haldir/storage/sqldb"
)

// DefaultPostgresURL is used when HALDIR_TEST_POSTGRES is unset.
const DefaultPostgresURL = "postgres://haldir:haldir@127.0.0.1:5432/postgres?sslmode=disable"

// Backend names a database kind for table-driven tests.
type Backend struct {
	Name string
	// Open returns a migrated, empty database, closed at cleanup, and the
	// URL or directory it lives at.
	Open func(t testing.TB) (*sqldb.DB, string)
}

// Backends returns SQLite and Postgres, for tests that run against both.
func Backends() []Backend {
	return []Backend{{"sqlite", OpenSQLite}, {"postgres", OpenPostgres}}
}

// OpenSQLite returns a migrated SQLite database in a fresh directory, and
// that directory.
func OpenSQLite(t testing.TB) (*sqldb.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqldb.OpenSQLite(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := migrations.Up(context.Background(), db, nil); err != nil {
		t.Fatal(err)
	}
	return db, dir
}

// AdminURL returns the Postgres URL tests create databases through.
func AdminURL() string {
	if u := os.Getenv("HALDIR_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

var template struct {
	once sync.Once
	name string
	err  error
}

// OpenPostgres returns a migrated, empty Postgres database of the test's
// own, dropped at cleanup, and its URL.
func OpenPostgres(t testing.TB) (*sqldb.DB, string) {
	t.Helper()
	u := NewPostgresDatabase(t)
	db, err := sqldb.OpenPostgres(context.Background(), u, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, u
}

// NewPostgresDatabase creates a migrated, empty database and returns its URL.
// The database is dropped at cleanup.
func NewPostgresDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("pgx", AdminURL())
	if err == nil {
		err = admin.PingContext(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		msg := fmt.Sprintf("postgres unavailable at %s: %v", redacted(AdminURL()), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: Postgres tests must run, not skip)")
		}
		t.Skip(msg + " (set HALDIR_TEST_POSTGRES, or run under CI=true to make this fatal)")
	}
	defer admin.Close()
	template.once.Do(func() { template.name, template.err = makeTemplate(ctx, admin) })
	if template.err != nil {
		t.Fatalf("postgres template: %v", template.err)
	}
	name := "haldir_t_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template.name)); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		c, err := sql.Open("pgx", AdminURL())
		if err != nil {
			return
		}
		defer c.Close()
		c.ExecContext(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
	})
	return withDatabase(AdminURL(), name)
}

// makeTemplate creates, once per migration set, a database with every
// migration applied, from which test databases are cloned cheaply.
func makeTemplate(ctx context.Context, admin *sql.DB) (string, error) {
	all, err := migrations.Available(sqldb.Postgres)
	if err != nil {
		return "", err
	}
	var sum strings.Builder
	for _, m := range all {
		sum.WriteString(m.Checksum)
	}
	name := "haldir_tpl_" + shortHash(sum.String())
	// Serialise template creation across concurrently running test binaries.
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(7368299)"); err != nil {
		return "", err
	}
	defer conn.ExecContext(ctx, "SELECT pg_advisory_unlock(7368299)")
	var exists bool
	if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	conn.ExecContext(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", building))
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s", building)); err != nil {
		return "", err
	}
	db, err := sqldb.OpenPostgres(ctx, withDatabase(AdminURL(), building), 2)
	if err != nil {
		return "", err
	}
	_, err = migrations.Up(ctx, db, nil)
	db.Close()
	if err != nil {
		return "", err
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, name)); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + name
	return u.String()
}

func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// Tamper runs q with the append-only triggers of the ledger and of the
// published checkpoints lifted, as an attacker with direct database access
// could.
func Tamper(ctx context.Context, db *sqldb.DB, q string, args ...any) error {
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var lift, restore []string
	switch db.Dialect {
	case sqldb.SQLite:
		lift = []string{"DROP TRIGGER events_append_only_update", "DROP TRIGGER events_append_only_delete",
			"DROP TRIGGER IF EXISTS tree_checkpoints_append_only_update", "DROP TRIGGER IF EXISTS tree_checkpoints_append_only_delete"}
		restore = []string{
			"CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'haldir: the ledger is append-only'); END",
			"CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'haldir: the ledger is append-only'); END",
			"CREATE TRIGGER tree_checkpoints_append_only_update BEFORE UPDATE ON tree_checkpoints BEGIN SELECT RAISE(ABORT, 'haldir: published checkpoints are append-only'); END",
			"CREATE TRIGGER tree_checkpoints_append_only_delete BEFORE DELETE ON tree_checkpoints BEGIN SELECT RAISE(ABORT, 'haldir: published checkpoints are append-only'); END",
		}
	case sqldb.Postgres:
		lift = []string{"ALTER TABLE events DISABLE TRIGGER USER", "ALTER TABLE tree_checkpoints DISABLE TRIGGER USER"}
		restore = []string{"ALTER TABLE events ENABLE TRIGGER USER", "ALTER TABLE tree_checkpoints ENABLE TRIGGER USER"}
	}
	for _, s := range lift {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("lift protection: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, db.Rebind(q), args...); err != nil {
		return err
	}
	for _, s := range restore {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("restore protection: %w", err)
		}
	}
	return tx.Commit()
}
